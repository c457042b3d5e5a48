// A small pool of worker threads that answer one message with one result:
// the receiver's verification workers (replication/verify-pool.ts) and the
// apply's subtree workers (site/apply-pool.ts). Workers start on first use,
// up to `size`, each job goes to the least busy one, and a worker holds the
// process open only while it has work (unref'd when idle). A worker that
// dies fails the jobs it had; the next job starts another.
//
// The worker side calls `serveWorker(handler)`: a handler's FerryError comes
// back to the caller as the same code and message.
import { Worker, parentPort, type ResourceLimits } from 'node:worker_threads';
import { FerryError, isFerryError, type ErrorCode } from './errors.ts';

/**
 * Workers inherit the parent's node options, but `node -e`/`-p` and
 * `--input-type` make a worker die at startup; in that case (only) start
 * workers with no options (NODE_OPTIONS still applies).
 */
export function workerExecArgv(): string[] | undefined {
  return process.execArgv.some((x) => /^(-e|-p|-pe|--eval|--print|--input-type)(=|$)/.test(x)) ? [] : undefined;
}

type Reply<Out> = { seq: number; ok: Out } | { seq: number; error: { code: string; message: string } };

interface Slot {
  worker: Worker;
  busy: number;
}

export interface WorkerPoolOptions {
  /** the worker module (it calls serveWorker when it sees `workerData`) */
  url: URL;
  workerData: unknown;
  size: number;
  name: string;
  resourceLimits?: ResourceLimits;
}

export class WorkerPool<In, Out> {
  readonly #o: WorkerPoolOptions;
  readonly #slots: Slot[] = [];
  readonly #waiting = new Map<number, { resolve: (r: Out) => void; reject: (e: Error) => void; slot: Slot }>();
  #seq = 0;
  #closed = false;

  constructor(o: WorkerPoolOptions) {
    this.#o = o;
  }

  run(msg: In): Promise<Out> {
    if (this.#closed) return Promise.reject(new FerryError('INTERNAL', `${this.#o.name} pool is closed`));
    const slot = this.#slots.length < this.#o.size && this.#slots.every((s) => s.busy > 0) ? this.#spawn() : this.#slots.reduce((a, b) => (b.busy < a.busy ? b : a));
    const seq = ++this.#seq;
    if (slot.busy++ === 0) slot.worker.ref();
    return new Promise<Out>((resolve, reject) => {
      this.#waiting.set(seq, { resolve, reject, slot });
      slot.worker.postMessage({ seq, msg });
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#slots.splice(0).map((s) => s.worker.terminate()));
  }

  #spawn(): Slot {
    const execArgv = workerExecArgv();
    const worker = new Worker(this.#o.url, {
      workerData: this.#o.workerData,
      ...(this.#o.resourceLimits ? { resourceLimits: this.#o.resourceLimits } : {}),
      ...(execArgv ? { execArgv } : {}),
      name: `${this.#o.name}-${this.#slots.length}`,
    });
    const slot: Slot = { worker, busy: 0 };
    worker.unref();
    worker.on('message', (m: Reply<Out>) => {
      const w = this.#waiting.get(m.seq);
      if (!w) return;
      this.#waiting.delete(m.seq);
      if (--w.slot.busy === 0) w.slot.worker.unref();
      if ('error' in m) w.reject(new FerryError(m.error.code as ErrorCode, m.error.message));
      else w.resolve(m.ok);
    });
    const fail = (err: Error) => {
      const i = this.#slots.indexOf(slot);
      if (i >= 0) this.#slots.splice(i, 1);
      for (const [seq, w] of this.#waiting) {
        if (w.slot !== slot) continue;
        this.#waiting.delete(seq);
        w.reject(new FerryError('INTERNAL', `a ${this.#o.name} worker failed: ${err.message}`));
      }
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`exited with code ${code}`)));
    this.#slots.push(slot);
    return slot;
  }
}

/** In a worker: answer each pool message with `handler`'s result, or its error's code and message. */
export function serveWorker<In, Out>(handler: (msg: In) => Out): void {
  const port = parentPort!;
  port.on('message', ({ seq, msg }: { seq: number; msg: In }) => {
    let reply: Reply<Out>;
    try {
      reply = { seq, ok: handler(msg) };
    } catch (err) {
      reply = { seq, error: isFerryError(err) ? { code: err.code, message: err.message } : { code: 'INTERNAL', message: String((err as Error)?.stack ?? err) } };
    }
    port.postMessage(reply);
  });
}
