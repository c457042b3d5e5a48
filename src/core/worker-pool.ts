// A small pool of worker threads that answer one message with one result:
// the receiver's verification workers (replication/verify-pool.ts) and the
// apply's subtree workers (replication/receive/apply-pool.ts). Workers start on first use,
// up to `size`, each job goes to the least busy one, and a worker holds the
// process open only while it has work (unref'd when idle); one idle for
// WORKER_IDLE_MS ends, so a daemon at rest does not keep every pool's heaps.
// With `inFlight`, a worker holds at most that many jobs and the rest wait
// here, each going
// to the first worker to finish one: jobs of very different sizes (subtrees)
// then spread evenly, where handing them out on arrival could leave one
// worker with the large ones. A worker that dies fails the jobs it had; the
// next job starts another.
//
// The worker side calls `serveWorker(handler)`: a handler's FerryError comes
// back to the caller as the same code and message.
import { Worker, parentPort, type ResourceLimits, type TransferListItem } from 'node:worker_threads';
import { FerryError, isFerryError, type ErrorCode } from './errors.ts';
import { admitWorker, memory, registerWorkers } from './memory.ts';

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
  /** ends the worker once it has been idle for idleMs */
  idleTimer?: NodeJS.Timeout;
  /** ended for idleness: its exit is no failure */
  retired?: boolean;
}

/** Idle this long, a worker ends (its heap and its open catalog go with it); the next job starts another. */
export const WORKER_IDLE_MS = 30_000;

export interface WorkerPoolOptions {
  /** the worker module (it calls serveWorker when it sees `workerData`) */
  url: URL;
  workerData: unknown;
  size: number;
  name: string;
  resourceLimits?: ResourceLimits;
  /** most jobs a worker holds at once (default: no limit, all handed out on arrival) */
  inFlight?: number;
  /** a worker idle this long ends (default WORKER_IDLE_MS) */
  idleMs?: number;
  /** each worker's old-generation heap limit in MiB, read when it starts (its part of the memory budget's workers share) */
  heapMb?: () => number;
}

interface Queued<In, Out> {
  msg: In;
  transfer?: readonly TransferListItem[];
  resolve: (r: Out) => void;
  reject: (e: Error) => void;
}

export class WorkerPool<In, Out> {
  readonly #o: WorkerPoolOptions;
  readonly #slots: Slot[] = [];
  readonly #waiting = new Map<number, { resolve: (r: Out) => void; reject: (e: Error) => void; slot: Slot }>();
  readonly #queue: Array<Queued<In, Out>> = [];
  #seq = 0;
  #closed = false;

  readonly #unregister: () => void;

  constructor(o: WorkerPoolOptions) {
    this.#o = o;
    this.#unregister = registerWorkers({ name: o.name, workers: () => this.#slots.map((s) => s.worker) });
  }

  /** Run `msg` on the least busy worker; `transfer` moves those buffers to it (they are unusable here after). */
  run(msg: In, transfer?: readonly TransferListItem[]): Promise<Out> {
    if (this.#closed) return Promise.reject(new FerryError('INTERNAL', `${this.#o.name} pool is closed`));
    return new Promise<Out>((resolve, reject) => {
      this.#queue.push({ msg, transfer, resolve, reject });
      this.#dispatch();
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#unregister();
    for (const q of this.#queue.splice(0)) q.reject(new FerryError('INTERNAL', `${this.#o.name} pool is closed`));
    await Promise.all(this.#slots.splice(0).map((s) => {
      clearTimeout(s.idleTimer);
      return s.worker.terminate();
    }));
  }

  /** workers running now (they start on demand and end when idle) */
  get workers(): number {
    return this.#slots.length;
  }

  /** Hand queued jobs to workers with room: an idle one first, a new one while under `size`, else the least busy. */
  #dispatch(): void {
    const limit = this.#o.inFlight ?? Infinity;
    while (this.#queue.length > 0 && !this.#closed) {
      // another worker only while the memory budget's workers share has room (the first always)
      const heapMb = this.#o.heapMb?.();
      const grow = this.#slots.length < this.#o.size && this.#slots.every((s) => s.busy > 0) && (!heapMb || admitWorker(heapMb, this.#slots.length === 0));
      const slot: Slot | undefined = grow ? this.#spawn(heapMb) : this.#slots.reduce<Slot | undefined>((a, b) => (!a || b.busy < a.busy ? b : a), undefined);
      if (!slot || slot.busy >= limit) return;
      const q = this.#queue.shift()!;
      const seq = ++this.#seq;
      if (slot.busy++ === 0) {
        clearTimeout(slot.idleTimer);
        slot.worker.ref();
      }
      this.#waiting.set(seq, { resolve: q.resolve, reject: q.reject, slot });
      slot.worker.postMessage({ seq, msg: q.msg }, q.transfer);
    }
  }

  #spawn(heapMb: number | undefined): Slot {
    const execArgv = workerExecArgv();
    const limits = heapMb ? { ...this.#o.resourceLimits, maxOldGenerationSizeMb: heapMb } : this.#o.resourceLimits;
    const worker = new Worker(this.#o.url, {
      workerData: this.#o.workerData,
      ...(limits ? { resourceLimits: limits } : {}),
      ...(execArgv ? { execArgv } : {}),
      name: `${this.#o.name}-${this.#slots.length}`,
    });
    const slot: Slot = { worker, busy: 0 };
    worker.unref();
    worker.on('message', (m: Reply<Out>) => {
      const w = this.#waiting.get(m.seq);
      if (!w) return;
      this.#waiting.delete(m.seq);
      if (--w.slot.busy === 0) this.#idle(w.slot);
      if ('error' in m) w.reject(new FerryError(m.error.code as ErrorCode, m.error.message));
      else w.resolve(m.ok);
      this.#dispatch();
    });
    const fail = (err: Error) => {
      if (slot.retired) return;
      clearTimeout(slot.idleTimer);
      const i = this.#slots.indexOf(slot);
      if (i >= 0) this.#slots.splice(i, 1);
      for (const [seq, w] of this.#waiting) {
        if (w.slot !== slot) continue;
        this.#waiting.delete(seq);
        w.reject(new FerryError('INTERNAL', `a ${this.#o.name} worker failed: ${err.message}`));
      }
      // jobs still queued go to the others, or to a new worker
      this.#dispatch();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`exited with code ${code}`)));
    // its heap limit counts in the memory budget's workers share while it lives
    if (heapMb) {
      worker.once('exit', () => memory.share('workers').release(heapMb * 1024 * 1024));
    }
    this.#slots.push(slot);
    return slot;
  }

  /** A worker with nothing to do: it no longer holds the process open, and ends if it stays idle. */
  #idle(slot: Slot): void {
    slot.worker.unref();
    clearTimeout(slot.idleTimer);
    slot.idleTimer = setTimeout(() => {
      if (slot.busy > 0 || slot.retired) return;
      slot.retired = true;
      const i = this.#slots.indexOf(slot);
      if (i >= 0) this.#slots.splice(i, 1);
      void slot.worker.terminate();
    }, this.#o.idleMs ?? WORKER_IDLE_MS).unref();
  }
}

/** In a worker: answer each pool message with `handler`'s result (or what its promise gives), or its error's code and message. */
export function serveWorker<In, Out>(handler: (msg: In) => Out | Promise<Out>): void {
  const port = parentPort!;
  port.on('message', async ({ seq, msg }: { seq: number; msg: In }) => {
    let reply: Reply<Out>;
    try {
      reply = { seq, ok: await handler(msg) };
    } catch (err) {
      reply = { seq, error: isFerryError(err) ? { code: err.code, message: err.message } : { code: 'INTERNAL', message: String((err as Error)?.stack ?? err) } };
    }
    port.postMessage(reply);
  });
}
