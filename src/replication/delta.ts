// Deltas on the wire. A changed chunk usually differs from a chunk the
// receiver already holds in only a few places: a region of a file rewritten
// in place, data appended after the old last chunk, a 64 KiB write that
// straddles two image blocks. Sending such a chunk whole costs its full
// size; sending it as a zstd frame compressed against the old chunk (a raw
// "dictionary") costs about what changed. The sender picks the references
// (the base's chunks at the same place in the same file, or the same image
// blocks), asks the receiver whether it still has them, and sends a delta
// only where it is clearly smaller. The receiver rebuilds the raw bytes from
// its own verified copies of the references, checks them against the
// object's id like any other object, and stores them; a delta never reaches
// a pack.
import { memory } from '../core/memory.ts';
import { constants as zc, zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import { outputChunk, zstdDecodeSync } from '../store/codec.ts';
import { FerryError } from '../core/errors.ts';
import { hashBytes, type ObjectId } from '../core/ids.ts';
import { CODEC_NONE, CODEC_ZSTD, type PreparedObject } from '../store/types.ts';
import { deltaHeaderBytes, MAX_DELTA_DICT_BYTES, MAX_DELTA_REFS, WIRE_DELTA, type DeltaObject } from './protocol.ts';

/**
 * zstd level for deltas. Below 3, zstd's fast strategy indexes too little of a
 * large dictionary: a 1 MiB chunk with a 256 KiB region rewritten came out at
 * 917 KB at level 1 against 262 KB at level 3 (1.1 MiB dictionary). For a
 * dictionary of at most SMALL_DICT_BYTES (an image block's old self) level 1
 * finds the same matches (32.9 KB for a 64 KiB block half rewritten, level 3
 * 32.8 KB) at less than half the time (0.28 ms against 0.73 ms per block):
 * most of level 3's cost there is setting up its larger tables for each block.
 */
const DELTA_LEVEL = 3;
const SMALL_DICT_LEVEL = 1;
const SMALL_DICT_BYTES = 128 * 1024;
/** Level for storing a rebuilt object at the receiver (the packs' own default). */
const STORE_LEVEL = 3;
/** A delta is sent only when it saves at least this share of the object as stored. */
const MIN_SAVING = 0.2;
/** Largest window a delta may need: the dictionary plus the largest object (2^27 = 128 MiB). */
const WINDOW_LOG_MAX = 27;

function windowLogFor(bytes: number): number {
  return Math.min(WINDOW_LOG_MAX, Math.max(10, Math.ceil(Math.log2(bytes + 1))));
}

export interface DeltaSource {
  get(id: ObjectId): Buffer;
}

/**
 * `get` with the most recently read references kept, up to `maxBytes`: the
 * changed chunks of one file go one after another, and neighbours share most
 * of their references (a chunk's dictionary reaches 64 KiB into the base
 * chunks either side), so each base chunk is decoded about once, not two or
 * three times.
 */
export function cachedRefs(get: (id: ObjectId) => Buffer, maxBytes = refsCacheBytes()): RefCache {
  const kept = new Map<ObjectId, Buffer>();
  // What it keeps counts in the memory budget's refs share until it is cleared (or collected); it
  // keeps no more than its own bound, nor anything that would take the share past its limit.
  const count = { bytes: 0 };
  const share = memory.share('refs');
  const lookup = ((id: ObjectId): Buffer => {
    let b = kept.get(id);
    if (b) {
      kept.delete(id); // most recent last
      kept.set(id, b);
      return b;
    }
    b = get(id);
    // room first (the oldest go), so that adding it keeps within both bounds where it can
    for (const [k, v] of kept) {
      if (count.bytes + b.length <= maxBytes && share.used + b.length <= share.limit) break;
      kept.delete(k);
      count.bytes -= v.length;
      share.release(v.length);
    }
    // one larger than the room left (other caches hold the rest) is handed out, not kept
    if (share.used + b.length > share.limit && share.used > 0) return b;
    kept.set(id, b);
    count.bytes += b.length;
    share.hold(b.length);
    return b;
  }) as RefCache;
  lookup.clear = () => {
    kept.clear();
    share.release(count.bytes);
    count.bytes = 0;
  };
  droppedCaches.register(lookup, count);
  return lookup;
}

/** A delta reference cache: look an object up; `clear()` when done gives its bytes back to the refs share. */
export type RefCache = ((id: ObjectId) => Buffer) & { clear(): void };

/** A reference cache no longer used gives its bytes back to the refs share. */
const droppedCaches = new FinalizationRegistry<{ bytes: number }>((c) => memory.share('refs').release(c.bytes));

/** Each reference cache's bound: a third of the refs share (a sender, a receiver and an apply may each hold one). */
export function refsCacheBytes(): number {
  return Math.max(4 * 1024 * 1024, Math.floor(memory.share('refs').limit / 3));
}

/** Which references a delta uses, and which bytes of their concatenation are its dictionary. */
export interface DeltaPlan {
  refs: ObjectId[];
  offset: number;
  length: number;
}

/**
 * zstd's default tables at level 3 index a dictionary of about 1 MiB (with the
 * frame's own window beside it); a larger one needs a larger hash table, which
 * costs ~10x the time to set up, so it is used only then.
 */
const PLAIN_DICT_BYTES = 1_250_000;

function deltaParams(dictBytes: number, rawBytes: number): Record<number, number> {
  const level = dictBytes <= SMALL_DICT_BYTES ? SMALL_DICT_LEVEL : DELTA_LEVEL;
  const p: Record<number, number> = { [zc.ZSTD_c_compressionLevel]: level, [zc.ZSTD_c_windowLog]: windowLogFor(dictBytes + rawBytes) };
  if (dictBytes > PLAIN_DICT_BYTES) p[zc.ZSTD_c_hashLog] = 20;
  return p;
}

/**
 * Bytes [offset, offset + length) of the references laid end to end: only the
 * pieces that overlap the range are copied, and a range inside one reference
 * is a view of it (most are: a chunk changed in place has its base chunk's
 * range, and the references either side contribute at most DELTA_SLACK).
 */
function dictionaryOf(parts: Buffer[], offset: number, length: number): Buffer {
  const end = offset + length;
  const pieces: Buffer[] = [];
  let at = 0;
  for (const p of parts) {
    const from = Math.max(offset, at);
    const to = Math.min(end, at + p.length);
    if (from < to) pieces.push(p.subarray(from - at, to - at));
    at += p.length;
    if (at >= end) break;
  }
  return pieces.length === 1 ? pieces[0] : Buffer.concat(pieces);
}

/** The plan's dictionary from this side's references, or undefined when the plan is out of bounds. */
export function planDictionary(store: DeltaSource, plan: DeltaPlan): Buffer | undefined {
  if (plan.refs.length < 1 || plan.refs.length > MAX_DELTA_REFS || plan.length < 1 || plan.offset + plan.length > MAX_DELTA_DICT_BYTES) return undefined;
  const dictionary = dictionaryOf(plan.refs.map((r) => store.get(r)), plan.offset, plan.length);
  return dictionary.length === plan.length ? dictionary : undefined;
}

/**
 * Synchronously (on a worker: verify-pool.ts), an object as stored made into a
 * delta frame against `dictionary`: `frame` when it saves at least MIN_SAVING of
 * the stored size, nothing when it does not, `error` when the stored bytes do
 * not decode.
 */
export function encodeDelta(o: { id: string; codec: number; rawLength: number; stored: Uint8Array }, dictionary: Uint8Array, refCount: number, storedLength = o.stored.length): { frame?: Uint8Array; error?: string } {
  let raw: Uint8Array = o.stored;
  if (o.codec === CODEC_ZSTD) {
    try {
      raw = zstdDecodeSync(o.stored, o.rawLength);
    } catch (err) {
      return { error: `object ${o.id} does not decompress: ${(err as Error).message}; run \`ferry verify\`` };
    }
  }
  const frame = zstdCompressSync(raw, { dictionary, pledgedSrcSize: raw.length, chunkSize: outputChunk(raw.length), params: deltaParams(dictionary.length, raw.length) });
  return deltaHeaderBytes(refCount) + frame.length > storedLength * (1 - MIN_SAVING) ? {} : { frame };
}

/**
 * The object (its raw bytes) as a delta against the plan's dictionary, or
 * undefined when that does not pay (saves less than MIN_SAVING of `storedLength`).
 * In this thread; a sender makes its deltas on workers (sender.ts).
 */
export function makeDelta(store: DeltaSource, o: { kind: PreparedObject['kind']; id: ObjectId; raw: Buffer; storedLength: number }, plan: DeltaPlan): DeltaObject | undefined {
  const dictionary = planDictionary(store, plan);
  if (!dictionary) return undefined;
  const r = encodeDelta({ id: o.id, codec: CODEC_NONE, rawLength: o.raw.length, stored: o.raw }, dictionary, plan.refs.length, o.storedLength);
  return r.frame ? deltaObject({ kind: o.kind, id: o.id, rawLength: o.raw.length }, plan, r.frame) : undefined;
}

/** The wire record of a delta made by encodeDelta against `plan`'s dictionary. */
export function deltaObject(o: { kind: PreparedObject['kind']; id: ObjectId; rawLength: number }, plan: DeltaPlan, frame: Uint8Array): DeltaObject {
  const stored = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  return { kind: o.kind, id: o.id, rawLength: o.rawLength, codec: WIRE_DELTA, refs: plan.refs, dictOffset: plan.offset, dictLength: plan.length, stored };
}

export interface DeltaStore {
  has(id: ObjectId): boolean;
  get(id: ObjectId): Buffer;
}

/**
 * The dictionary of a delta, from this side's copies of its references (each
 * checked by its record's CRC when read). A peer's delta is untrusted input:
 * an unknown reference, references over MAX_DELTA_DICT_BYTES, or a range
 * beyond them is a PROTOCOL error naming the object.
 */
export function deltaDictionary(store: DeltaStore, o: DeltaObject): Buffer {
  const parts: Buffer[] = [];
  let size = 0;
  for (const r of o.refs) {
    if (!store.has(r)) throw new FerryError('PROTOCOL', `delta for object ${o.id} refers to ${r}, which this site does not hold`);
    const b = store.get(r);
    size += b.length;
    if (size > MAX_DELTA_DICT_BYTES) throw new FerryError('PROTOCOL', `delta for object ${o.id}: its references exceed ${MAX_DELTA_DICT_BYTES} bytes`);
    parts.push(b);
  }
  if (o.dictOffset + o.dictLength > size) throw new FerryError('PROTOCOL', `delta for object ${o.id}: dictionary [${o.dictOffset}, +${o.dictLength}) lies beyond its ${size} reference bytes`);
  return dictionaryOf(parts, o.dictOffset, o.dictLength);
}

/** What a delta rebuilds to, ready to store, or why it was refused. */
export type Rebuilt = { ok: true; codec: typeof CODEC_ZSTD | typeof CODEC_NONE; stored: Uint8Array } | { ok: false; code: 'PROTOCOL' | 'OBJECT_CORRUPT'; message: string };

/**
 * Rebuild a delta's raw bytes against its dictionary (synchronous: on a
 * verification worker, receive/intake.ts), with the output bounded by the declared
 * length; check them against the object's id; compress them for the store
 * where that pays.
 */
export function rebuildDelta(o: { id: string; rawLength: number; frame: Uint8Array }, dictionary: Uint8Array): Rebuilt {
  let raw: Buffer;
  try {
    raw = zstdDecompressSync(o.frame, {
      chunkSize: outputChunk(o.rawLength),
      dictionary,
      maxOutputLength: Math.max(o.rawLength, 1),
      params: { [zc.ZSTD_d_windowLogMax]: WINDOW_LOG_MAX },
    });
  } catch (err) {
    return { ok: false, code: 'PROTOCOL', message: `delta for object ${o.id} does not decode within its stated ${o.rawLength} bytes: ${(err as Error).message}` };
  }
  if (raw.length !== o.rawLength) return { ok: false, code: 'PROTOCOL', message: `delta for object ${o.id} decodes to ${raw.length} bytes, stated ${o.rawLength}` };
  if (hashBytes(raw) !== o.id) return { ok: false, code: 'OBJECT_CORRUPT', message: `refused object ${o.id}: the bytes its delta decodes to do not match its id` };
  const c = raw.length >= 512 ? zstdCompressSync(raw, { pledgedSrcSize: raw.length, chunkSize: outputChunk(raw.length), params: { [zc.ZSTD_c_compressionLevel]: STORE_LEVEL } }) : undefined;
  return c && c.length <= raw.length * 0.9 ? { ok: true, codec: CODEC_ZSTD, stored: c } : { ok: true, codec: CODEC_NONE, stored: raw };
}

/**
 * Rebuild a delta from this side's copies of its references, check the result against the
 * object's id, and return it ready to store (deltaDictionary, then rebuildDelta here).
 */
export function resolveDelta(store: DeltaStore, o: DeltaObject): PreparedObject {
  const r = rebuildDelta({ id: o.id, rawLength: o.rawLength, frame: o.stored }, deltaDictionary(store, o));
  if (!r.ok) throw new FerryError(r.code, r.message);
  return { kind: o.kind, id: o.id, rawLength: o.rawLength, codec: r.codec, stored: r.stored } as PreparedObject;
}
