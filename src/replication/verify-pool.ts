// Verification of received objects on worker threads. A receiver checks every
// object against its id before storing it (decompress with a bound, compare
// the length, hash): on an initial replication that is the destination's
// main cost while the objects stream in, and on the main thread it queues
// behind TLS, HTTP/2 and the pack writes. Here batches of objects go to a
// couple of workers, so that receiving, checking and storing overlap; the
// receiver still stores in arrival order, and only what a worker passed.
//
// Owns: the check itself (the workers are core/worker-pool.ts). Must never:
// report an object as good without having decompressed and hashed it.
import { isMainThread, workerData } from 'node:worker_threads';
import { zstdDecodeSync } from '../store/codec.ts';
import { hashBytes, type ObjectId } from '../core/ids.ts';
import { CODEC_NONE, CODEC_ZSTD } from '../store/types.ts';
import { serveWorker, WorkerPool } from '../core/worker-pool.ts';

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
  items: Array<{ id: ObjectId; codec: number; rawLength: number; length: number }>;
  bytes: ArrayBuffer;
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

/** A small pool of verification workers, started on first use. */
export class VerifyPool {
  readonly #pool = new WorkerPool<Batch, Array<string | null>>({
    url: new URL(import.meta.url),
    workerData: { ferryVerifyWorker: true },
    size: WORKERS,
    name: 'ferry-verify',
    resourceLimits: { maxYoungGenerationSizeMb: 8 },
  });

  /** For each object, null when it verified, else the reason it did not. */
  verify(items: ToVerify[]): Promise<Array<string | null>> {
    let total = 0;
    for (const o of items) total += o.stored.length;
    const bytes = new ArrayBuffer(total);
    const all = new Uint8Array(bytes);
    let at = 0;
    for (const o of items) {
      all.set(o.stored, at);
      at += o.stored.length;
    }
    return this.#pool.run({ items: items.map((o) => ({ id: o.id, codec: o.codec, rawLength: o.rawLength, length: o.stored.length })), bytes }, [bytes]);
  }

  close(): Promise<void> {
    return this.#pool.close();
  }
}

if (!isMainThread && (workerData as { ferryVerifyWorker?: boolean } | null)?.ferryVerifyWorker) {
  serveWorker<Batch, Array<string | null>>(({ items, bytes }) => {
    let at = 0;
    return items.map((o) => {
      const stored = new Uint8Array(bytes, at, o.length);
      at += o.length;
      return verifyObject({ id: o.id, codec: o.codec, rawLength: o.rawLength, stored });
    });
  });
}
