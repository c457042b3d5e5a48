// Identifiers. Each is a branded string made only by its parser or
// generator, so an unchecked string cannot pass where an id is expected.
import { blake3 } from '@napi-rs/blake-hash';
import { FerryError } from './errors.ts';
import { systemClock, systemRandom, type Clock, type RandomSource } from './clock.ts';

declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

/** Content address of a stored object: lowercase hex BLAKE3-256 of its uncompressed bytes. */
export type ObjectId = Brand<string, 'ObjectId'>;

/** The same ids in the same order (a file's chunk list against another's); false when either is missing. */
export function sameIds(a: readonly ObjectId[] | undefined, b: readonly ObjectId[] | undefined): boolean {
  if (!a || !b || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
/** A snapshot's identity: a ULID (time-ordered, 26 chars Crockford base32). */
export type SnapshotId = Brand<string, 'SnapshotId'>;

// Object ids are BLAKE3-256. SHA-256 was the first choice, but this class of
// machine has no SHA instructions: node:crypto hashes 370 MB/s per core,
// slower than reading the disk and three times slower than chunking, while
// BLAKE3 (a prebuilt N-API module, no compiler needed) does 4.9 GB/s. The
// store's format version names the hash (docs/formats.md).
export const HASH_NAME = 'blake3';
export const HASH_BYTES = 32;

const HEX64 = /^[0-9a-f]{64}$/;

export function isObjectId(s: string): s is ObjectId {
  return HEX64.test(s);
}

export function parseObjectId(s: string): ObjectId {
  if (!HEX64.test(s)) throw new FerryError('OBJECT_CORRUPT', `not an object id: ${JSON.stringify(s.slice(0, 80))}`);
  return s as ObjectId;
}

export function objectIdFromBytes(b: Uint8Array): ObjectId {
  if (b.length !== HASH_BYTES) throw new FerryError('OBJECT_CORRUPT', `object id must be ${HASH_BYTES} bytes, got ${b.length}`);
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex') as ObjectId;
}

export function objectIdToBytes(id: ObjectId): Buffer {
  return Buffer.from(id, 'hex');
}

export function hashBytes(data: Uint8Array): ObjectId {
  const b = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return blake3(b).toString('hex') as ObjectId;
}

// ULID: 48-bit millisecond time + 80 random bits, Crockford base32.
const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const ULID_RE = /^[0-7][0-9A-HJKMNP-TV-Z]{25}$/;
const MAX_ULID_TIME = 2 ** 48 - 1;

/**
 * The last id each clock made (a monotonic ULID factory per clock: the process's real clock is one
 * sequence, each test clock another, so a test clock set in the future never drags the real one's ids along).
 */
const lastIds = new WeakMap<Clock, { time: number; random: string }>();

function encodeTime(t: number): string {
  let time = '';
  for (let i = 0; i < 10; i++) {
    time = CROCKFORD[t % 32] + time;
    t = Math.floor(t / 32);
  }
  return time;
}

function encodeRandom(r: Uint8Array): string {
  // 80 bits -> 16 base32 chars, 5 bits at a time
  let bits = 0;
  let acc = 0;
  let rand = '';
  for (const byte of r.subarray(0, 10)) {
    acc = (acc << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      rand += CROCKFORD[(acc >> bits) & 31];
    }
    acc &= (1 << bits) - 1;
  }
  return rand;
}

/** The base32 string one larger, or undefined when it is all 'Z' (it would wrap). */
function incrementBase32(s: string): string | undefined {
  const chars = s.split('');
  for (let i = chars.length - 1; i >= 0; i--) {
    const v = CROCKFORD.indexOf(chars[i]);
    if (v < 31) {
      chars[i] = CROCKFORD[v + 1];
      return chars.join('');
    }
    chars[i] = '0';
  }
  return undefined;
}

/**
 * A new snapshot id. Ids one clock makes in this process always increase, so snapshots one site
 * takes sort by id in the order they were taken: within one millisecond (and while the clock is
 * behind the last id, after it stepped back) the random part of the last id is incremented instead
 * of drawn anew (the ULID spec's monotonic factory); at its maximum it carries into the next
 * millisecond rather than wrap.
 */
export function newSnapshotId(clock: Clock = systemClock, random: RandomSource = systemRandom): SnapshotId {
  const now = clock.now();
  if (!Number.isSafeInteger(now) || now < 0 || now > MAX_ULID_TIME) throw new FerryError('INTERNAL', `clock out of ULID range: ${now}`);
  const last = lastIds.get(clock);
  let time = now;
  let rand: string;
  const next = last && now <= last.time ? incrementBase32(last.random) : undefined;
  if (last && now <= last.time && next !== undefined) {
    time = last.time;
    rand = next;
  } else {
    if (last && now <= last.time) time = last.time + 1; // the random part ran out in that millisecond
    if (time > MAX_ULID_TIME) throw new FerryError('INTERNAL', `clock out of ULID range: ${time}`);
    rand = encodeRandom(random(10));
  }
  lastIds.set(clock, { time, random: rand });
  return (encodeTime(time) + rand) as SnapshotId;
}

export function parseSnapshotId(s: string): SnapshotId {
  const up = s.toUpperCase();
  if (!ULID_RE.test(up)) throw new FerryError('USAGE', `not a snapshot id (26-character ULID): ${JSON.stringify(s.slice(0, 80))}`);
  return up as SnapshotId;
}

export function isSnapshotId(s: string): boolean {
  return ULID_RE.test(s.toUpperCase());
}

/** Milliseconds encoded in a ULID. */
export function snapshotIdTime(id: SnapshotId): number {
  let t = 0;
  for (let i = 0; i < 10; i++) t = t * 32 + CROCKFORD.indexOf(id[i]);
  return t;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$/;

/** Volume, member, snapshot and site names: safe in paths, URLs and labels. */
export function parseName(s: string, what: string): string {
  if (!NAME_RE.test(s)) {
    throw new FerryError('USAGE', `${what} name ${JSON.stringify(s)} is not valid: use 1-128 letters, digits, '.', '_', '-', '@', '+', starting with a letter or digit`);
  }
  return s;
}
