// Verification of received objects on worker threads. A receiver checks every
// object against its id before storing it (decompress with a bound, compare
// the length, hash): on an initial replication that is the destination's
// main cost while the objects stream in, and on the main thread it queues
// behind TLS, HTTP/2 and the pack writes. Here batches of objects go to a
// couple of workers, so that receiving, checking and storing overlap; the
// receiver still stores in arrival order, and only what a worker passed.
// Deltas go the same way (rebuild): the receiver makes each one's dictionary
// from its own copies of the references, and a worker decodes the frame
// against it, checks length and hash, and compresses the result for the
// store. With node's asynchronous zstd, each delta cost the main thread
// about 0.3 ms per call (three calls a delta), which for 2,000 image blocks
// was most of an update's send.
//
// Owns: the check itself (the workers are core/worker-pool.ts). Must never:
// report an object as good without having decompressed and hashed it.
import { isMainThread, workerData } from 'node:worker_threads';
import { zstdDecodeSync } from '../store/codec.ts';
import { hashBytes, type ObjectId } from '../core/ids.ts';
import { CODEC_NONE, CODEC_ZSTD } from '../store/types.ts';
import { serveWorker, WorkerPool } from '../core/worker-pool.ts';
import { WORKER_HEAP_FRACTION, workerHeapMb } from '../core/memory.ts';
import { encodeDelta, rebuildDelta, type Rebuilt } from './delta.ts';

export interface ToVerify {
  id: ObjectId;
  codec: number;
  rawLength: number;
  stored: Uint8Array;
}

/**
 * A batch as it crosses to a worker: the stored bytes of all objects copied
 * into one ArrayBuffer that is transferred, not cloned. Cloning a Uint8Array
 * copies its whole backing ArrayBuffer, and a received object is usually a
 * view into a larger stream buffer.
 */
interface Batch {
  op: 'verify';
  items: Array<{ id: ObjectId; codec: number; rawLength: number; length: number }>;
  bytes: ArrayBuffer;
}

/** A delta to rebuild: its frame and the dictionary the receiver made from its references (delta.ts). */
export interface ToRebuild {
  id: ObjectId;
  rawLength: number;
  frame: Uint8Array;
  dictionary: Uint8Array;
}

/** Deltas as they cross to a worker: each frame, then its dictionary, in one transferred buffer. */
interface RebuildBatch {
  op: 'rebuild';
  items: Array<{ id: ObjectId; rawLength: number; frameLength: number; dictLength: number }>;
  bytes: ArrayBuffer;
}

/** An object as stored and the dictionary to make it a delta against (the sender's side). */
export interface ToEncode {
  id: ObjectId;
  codec: number;
  rawLength: number;
  stored: Uint8Array;
  dictionary: Uint8Array;
  refCount: number;
}

interface EncodeBatch {
  op: 'encode';
  items: Array<{ id: ObjectId; codec: number; rawLength: number; storedLength: number; dictLength: number; refCount: number }>;
  bytes: ArrayBuffer;
}

export type Encoded = ReturnType<typeof encodeDelta>;

/** One transferable buffer holding `parts` end to end. */
function packed(parts: Uint8Array[]): ArrayBuffer {
  let total = 0;
  for (const p of parts) total += p.length;
  const bytes = new ArrayBuffer(total);
  const all = new Uint8Array(bytes);
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return bytes;
}

/** Why `o` is not what it claims, or null: the checks PackStore.putPrepared makes of an untrusted object. */
export function verifyObject(o: { id: string; codec: number; rawLength: number; stored: Uint8Array }): string | null {
  let raw: Uint8Array = o.stored;
  if (o.codec === CODEC_ZSTD) {
    try {
      raw = zstdDecodeSync(o.stored, o.rawLength);
    } catch {
      return `refused object ${o.id}: it does not decompress within its stated length ${o.rawLength}`;
    }
  } else if (o.codec !== CODEC_NONE) {
    return `object ${o.id}: unknown codec ${o.codec}`;
  }
  if (raw.length !== o.rawLength) return `refused object ${o.id}: ${raw.length} bytes, stated ${o.rawLength}`;
  if (hashBytes(raw) !== o.id) return `refused object ${o.id}: its bytes do not match its id`;
  return null;
}

const WORKERS = 2;

/** A small pool of verification workers, started on first use. `role`: the receiver's checks (verify) or a sender's deltas (encode), each its part of the memory budget's workers share. */
export class VerifyPool {
  readonly #pool: WorkerPool<Batch | RebuildBatch | EncodeBatch, Array<string | null> | Rebuilt[] | Encoded[]>;

  constructor(role: 'verify' | 'encode' = 'verify') {
    this.#pool = new WorkerPool({
      url: new URL(import.meta.url),
      workerData: { ferryVerifyWorker: true },
      size: WORKERS,
      name: role === 'verify' ? 'ferry-verify' : 'ferry-encode',
      resourceLimits: { maxYoungGenerationSizeMb: 8 },
      heapMb: () => workerHeapMb(WORKER_HEAP_FRACTION[role], WORKERS),
    });
  }

  /** For each object, null when it verified, else the reason it did not. */
  verify(items: ToVerify[]): Promise<Array<string | null>> {
    const bytes = packed(items.map((o) => o.stored));
    return this.#pool.run({ op: 'verify', items: items.map((o) => ({ id: o.id, codec: o.codec, rawLength: o.rawLength, length: o.stored.length })), bytes }, [bytes]) as Promise<Array<string | null>>;
  }

  /** Rebuild deltas (rebuildDelta): for each, the object ready to store or why it was refused. */
  rebuild(items: ToRebuild[]): Promise<Rebuilt[]> {
    const bytes = packed(items.flatMap((o) => [o.frame, o.dictionary]));
    return this.#pool.run({ op: 'rebuild', items: items.map((o) => ({ id: o.id, rawLength: o.rawLength, frameLength: o.frame.length, dictLength: o.dictionary.length })), bytes }, [bytes]) as Promise<Rebuilt[]>;
  }

  /** Make objects into deltas against their dictionaries (encodeDelta), for a sender. */
  encode(items: ToEncode[]): Promise<Encoded[]> {
    const bytes = packed(items.flatMap((o) => [o.stored, o.dictionary]));
    const meta = items.map((o) => ({ id: o.id, codec: o.codec, rawLength: o.rawLength, storedLength: o.stored.length, dictLength: o.dictionary.length, refCount: o.refCount }));
    return this.#pool.run({ op: 'encode', items: meta, bytes }, [bytes]) as Promise<Encoded[]>;
  }

  close(): Promise<void> {
    return this.#pool.close();
  }
}

/**
 * `check` on each item in order. Node's synchronous zlib and zstd keep a failed call's output
 * buffer and decoder (both sized to the declared length: up to 64 MiB each) until this thread's
 * event loop turns, so after each refusal the loop is let turn before the next decode: a batch of
 * frames that fail late (a bad checksum after 64 MiB of output, 2 KB on the wire) holds one such
 * decode at a time, not the batch's worth. Refusals are rare in honest traffic: this costs nothing
 * there.
 */
async function releasing<T, R>(items: T[], check: (item: T) => R, refused: (r: R) => boolean): Promise<R[]> {
  const out: R[] = [];
  for (const item of items) {
    const r = check(item);
    out.push(r);
    if (refused(r)) await new Promise((resolve) => setImmediate(resolve));
  }
  return out;
}

if (!isMainThread && (workerData as { ferryVerifyWorker?: boolean } | null)?.ferryVerifyWorker) {
  serveWorker<Batch | RebuildBatch | EncodeBatch, Array<string | null> | Rebuilt[] | Encoded[]>((m) => {
    let at = 0;
    const take = (n: number) => {
      const v = new Uint8Array(m.bytes, at, n);
      at += n;
      return v;
    };
    if (m.op === 'encode') return releasing(m.items, (o) => encodeDelta({ id: o.id, codec: o.codec, rawLength: o.rawLength, stored: take(o.storedLength) }, take(o.dictLength), o.refCount), (r) => r.error !== undefined);
    if (m.op === 'rebuild') return releasing(m.items, (o) => rebuildDelta({ id: o.id, rawLength: o.rawLength, frame: take(o.frameLength) }, take(o.dictLength)), (r) => !r.ok);
    return releasing(m.items, (o) => verifyObject({ id: o.id, codec: o.codec, rawLength: o.rawLength, stored: take(o.length) }), (r) => r !== null);
  });
}
