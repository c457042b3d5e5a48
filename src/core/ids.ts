// Identifiers. Each is a branded string made only by its parser or
// generator, so an unchecked string cannot pass where an id is expected.
import { blake3 } from '@napi-rs/blake-hash';
import { FerryError } from './errors.ts';
import { systemClock, systemRandom, type Clock, type RandomSource } from './clock.ts';

declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

/** Content address of a stored object: lowercase hex BLAKE3-256 of its uncompressed bytes. */
export type ObjectId = Brand<string, 'ObjectId'>;
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

export function newSnapshotId(clock: Clock = systemClock, random: RandomSource = systemRandom): SnapshotId {
  let t = clock.now();
  if (!Number.isSafeInteger(t) || t < 0 || t > 2 ** 48 - 1) throw new FerryError('INTERNAL', `clock out of ULID range: ${t}`);
  let time = '';
  for (let i = 0; i < 10; i++) {
    time = CROCKFORD[t % 32] + time;
    t = Math.floor(t / 32);
  }
  const r = random(10);
  // 80 bits -> 16 base32 chars, 5 bits at a time
  let bits = 0;
  let acc = 0;
  let rand = '';
  for (const byte of r) {
    acc = (acc << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      rand += CROCKFORD[(acc >> bits) & 31];
    }
    acc &= (1 << bits) - 1;
  }
  return (time + rand) as SnapshotId;
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
