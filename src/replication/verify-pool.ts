// Verification of received objects on worker threads. A receiver checks every
// object against its id before storing it (decompress with a bound, compare
// the length, hash): on an initial replication that is the destination's
// main cost while the objects stream in, and on the main thread it queues
// behind TLS, HTTP/2 and the pack writes. Here batches of objects go to a
// couple of workers, so that receiving, checking and storing overlap; the
// receiver still stores in arrival order, and only what a worker passed.
//
// Owns: the workers and the batch protocol. Must never: report an object as
// good without having decompressed and hashed it; keep a worker alive when
// nothing is in flight (workers are unref'd when idle).
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { zstdDecompressSync } from 'node:zlib';
import { hashBytes, type ObjectId } from '../core/ids.ts';
import { CODEC_NONE, CODEC_ZSTD } from '../store/types.ts';

export interface ToVerify {
  id: ObjectId;
  codec: number;
  rawLength: number;
  stored: Uint8Array;
}

interface BatchIn {
  seq: number;
  items: Array<{ id: string; codec: number; rawLength: number; stored: Uint8Array }>;
}

interface BatchOut {
  seq: number;
  /** per item: null when it verified, else why not */
  results: Array<string | null>;
}

/** Why `o` is not what it claims, or null: the checks PackStore.putPrepared makes of an untrusted object. */
export function verifyObject(o: { id: string; codec: number; rawLength: number; stored: Uint8Array }): string | null {
  let raw: Uint8Array = o.stored;
  if (o.codec === CODEC_ZSTD) {
    try {
      raw = zstdDecompressSync(o.stored, { maxOutputLength: Math.max(o.rawLength, 1) });
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
  readonly #workers: Array<{ worker: Worker; busy: number }> = [];
  readonly #waiting = new Map<number, { resolve: (r: Array<string | null>) => void; reject: (e: Error) => void; slot: { worker: Worker; busy: number } }>();
  #seq = 0;
  #closed = false;

  /** For each object, null when it verified, else the reason it did not. */
  verify(items: ToVerify[]): Promise<Array<string | null>> {
    if (this.#closed) return Promise.reject(new Error('verify pool closed'));
    const slot = this.#pick();
    const seq = ++this.#seq;
    slot.busy++;
    if (slot.busy === 1) slot.worker.ref();
    return new Promise((resolve, reject) => {
      this.#waiting.set(seq, { resolve, reject, slot });
      const msg: BatchIn = { seq, items: items.map((o) => ({ id: o.id, codec: o.codec, rawLength: o.rawLength, stored: o.stored })) };
      slot.worker.postMessage(msg);
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#workers.splice(0).map((w) => w.worker.terminate()));
  }

  #pick(): { worker: Worker; busy: number } {
    if (this.#workers.length < WORKERS && this.#workers.every((w) => w.busy > 0)) return this.#spawn();
    return this.#workers.reduce((a, b) => (b.busy < a.busy ? b : a));
  }

  #spawn(): { worker: Worker; busy: number } {
    const worker = new Worker(new URL(import.meta.url), {
      workerData: { ferryVerifyWorker: true },
      resourceLimits: { maxYoungGenerationSizeMb: 8 },
      ...(process.execArgv.some((x) => /^(-e|-p|-pe|--eval|--print|--input-type)(=|$)/.test(x)) ? { execArgv: [] } : {}),
      name: `ferry-verify-${this.#workers.length}`,
    });
    const slot = { worker, busy: 0 };
    worker.unref();
    worker.on('message', (m: BatchOut) => {
      const w = this.#waiting.get(m.seq);
      if (!w) return;
      this.#waiting.delete(m.seq);
      this.#done(w.slot);
      w.resolve(m.results);
    });
    const fail = (err: Error) => {
      // every batch this worker had fails; a new worker is started for the next ones
      const i = this.#workers.indexOf(slot);
      if (i >= 0) this.#workers.splice(i, 1);
      for (const [seq, w] of this.#waiting) {
        if (w.slot !== slot) continue;
        this.#waiting.delete(seq);
        w.reject(err);
      }
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`verify worker exited (${code})`)));
    this.#workers.push(slot);
    return slot;
  }

  #done(slot: { worker: Worker; busy: number }): void {
    slot.busy--;
    if (slot.busy === 0) slot.worker.unref();
  }
}

if (!isMainThread && parentPort && (workerData as { ferryVerifyWorker?: boolean } | null)?.ferryVerifyWorker) {
  const port = parentPort;
  port.on('message', (m: BatchIn) => {
    const out: BatchOut = { seq: m.seq, results: m.items.map((o) => verifyObject(o)) };
    port.postMessage(out);
  });
}
