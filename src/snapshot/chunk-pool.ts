// A pool of worker threads that read, chunk, hash and compress files (and
// image blocks) for capture, so every core works while the main thread walks
// the tree and writes packs.
//
// Requests queue here and go out in batches (up to 64 jobs or 8 MiB of
// expected input per message), each to the least-loaded worker that has
// fewer than two batches outstanding, so small files cost one message per
// batch rather than per file and no worker idles while another has a
// backlog. Results come back in messages of up to ~8 MiB whose stored bytes
// are transferred, not copied. The bytes dispatched but not yet returned are
// bounded (64 MiB by default; a job counts its size hint, or a guess, grown
// to what it actually returned): callers beyond that simply wait.
//
// A worker that dies (a bug, never a file error) is replaced; the jobs it
// held fail with an INTERNAL error. Idle workers are unref'd so the pool
// never keeps the process alive by itself.
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { FerryError } from '../core/errors.ts';
import type { ObjectId } from '../core/ids.ts';
import type { PreparedObject } from '../store/types.ts';
import { DEFAULT_AVG, DEFAULT_MAX, DEFAULT_MIN, FastCdc } from './fastcdc.ts';
import type { BatchMsg, OutMsg, WorkerConfig, WorkerJob, WorkerTestHooks } from './chunk-worker.ts';

export interface ChunkerParams {
  min: number;
  avg: number;
  max: number;
}

export interface StatSnapshot {
  size: number;
  mtimeNs: bigint;
  ctimeNs: bigint;
  ino: bigint;
}

export interface FileChunkResult {
  ok: true;
  /** kind 'chunk', in file order; stored bytes transferred (not copied) from the worker */
  chunks: PreparedObject[];
  /** fstat of the fd after the final read */
  stat: StatSnapshot;
  /** true if the file still changed across all retries (content as last read) */
  changedDuringRead: boolean;
}

/** A file that could not be read: code is the errno name (ENOENT, EACCES, EISDIR, ELOOP...), EFTYPE for other non-regular files. */
export interface FileErrorResult {
  ok: false;
  code: string;
  message: string;
}

export interface BlocksResult {
  ok: true;
  /** one per block in order; null for an all-zero block (not hashed, not stored) */
  blocks: Array<PreparedObject | null>;
}

export interface ChunkPoolOptions {
  /** worker threads (default: os.availableParallelism()) */
  workers?: number;
  chunker?: ChunkerParams;
  /** zstd level for objects that compress (default 3; 0 disables compression) */
  zstdLevel?: number;
  /** re-reads of a file that changed while being read (default 3) */
  retries?: number;
  /** bound on input bytes dispatched to workers and not yet returned (default 64 MiB) */
  maxInFlightBytes?: number;
  /** fault injection: tests only */
  _test?: WorkerTestHooks;
}

const WINDOW = 8 * 1024 * 1024;
const FLUSH_BYTES = 8 * 1024 * 1024;
const BATCH_JOBS = 64;
const BATCH_BYTES = 8 * 1024 * 1024;
const BATCHES_PER_WORKER = 2;
/** expected size of a file given no hint: typical trees are mostly small files */
const GUESS_BYTES = 128 * 1024;
/** the least a job counts for, whatever its size: per-file overhead */
const MIN_COST = 4 * 1024;

/**
 * Workers inherit the parent's node options, but `node -e`/`-p` and
 * `--input-type` make a worker die at startup; in that case (only) start
 * workers with no options (NODE_OPTIONS still applies).
 */
function workerExecArgv(): string[] | undefined {
  return process.execArgv.some((x) => /^(-e|-p|-pe|--eval|--print|--input-type)(=|$)/.test(x)) ? [] : undefined;
}

interface Job {
  msg: WorkerJob;
  /** input bytes this job is counted for in the in-flight bound */
  cost: number;
  received: number;
  objects: Array<PreparedObject | null>;
  resolve: (r: FileChunkResult | BlocksResult | FileErrorResult) => void;
  reject: (err: Error) => void;
}

interface Slot {
  index: number;
  worker: Worker;
  /** batch number -> its jobs not finished yet */
  batches: Map<number, Set<Job>>;
  cost: number;
  refed: boolean;
  dead: boolean;
  error: Error | undefined;
}

export class ChunkPool {
  readonly workers: number;
  readonly chunker: ChunkerParams;
  readonly #config: WorkerConfig;
  readonly #maxInFlight: number;
  readonly #slots: Slot[] = [];
  readonly #queue: Job[] = [];
  #queueHead = 0;
  readonly #jobs = new Map<number, Job>();
  #nextJob = 1;
  #nextBatch = 1;
  #nextSlot = 0;
  #inFlight = 0;
  #scheduled = false;
  #closed = false;

  constructor(opts: ChunkPoolOptions = {}) {
    const workers = opts.workers ?? availableParallelism();
    if (!Number.isSafeInteger(workers) || workers < 1) throw new FerryError('CONFIG_INVALID', `chunk pool workers must be a positive integer, got ${workers}`);
    const c = opts.chunker ?? { min: DEFAULT_MIN, avg: DEFAULT_AVG, max: DEFAULT_MAX };
    new FastCdc(c); // validates
    const zstdLevel = opts.zstdLevel ?? 3;
    if (!Number.isSafeInteger(zstdLevel) || zstdLevel < 0 || zstdLevel > 22) throw new FerryError('CONFIG_INVALID', `zstd level must be 0 (off) to 22, got ${zstdLevel}`);
    const retries = opts.retries ?? 3;
    if (!Number.isSafeInteger(retries) || retries < 0) throw new FerryError('CONFIG_INVALID', `retries must be a non-negative integer, got ${retries}`);
    this.workers = workers;
    this.chunker = { min: c.min, avg: c.avg, max: c.max };
    this.#maxInFlight = opts.maxInFlightBytes ?? 64 * 1024 * 1024;
    this.#config = { ...this.chunker, zstdLevel, retries, window: WINDOW, flushBytes: FLUSH_BYTES, ...(opts._test ? { test: opts._test } : {}) };
  }

  /**
   * Chunk one regular file (path as bytes: names need not be UTF-8). File
   * errors come back as a FileErrorResult; the promise rejects only if the
   * pool is closed or the worker dies. `sizeHint` (e.g. from the walk's
   * lstat) sharpens batching and the in-flight bound.
   */
  chunkFile(path: Buffer, sizeHint?: number): Promise<FileChunkResult | FileErrorResult> {
    return this.#submit({ t: 'file', job: 0, path }, sizeHint ?? GUESS_BYTES) as Promise<FileChunkResult | FileErrorResult>;
  }

  /**
   * Read [offset, offset+length) of an image file or block device in blocks
   * of blockSize (the last may be shorter); all-zero blocks come back as
   * null. Keep ranges moderate (tens of MiB): the result holds every block.
   * A range past the end of the file gives code ETRUNCATED.
   */
  hashBlocks(path: Buffer, offset: number, length: number, blockSize: number): Promise<BlocksResult | FileErrorResult> {
    return this.#submit({ t: 'blocks', job: 0, path, offset, length, blockSize }, length) as Promise<BlocksResult | FileErrorResult>;
  }

  /** Stop the workers. Jobs not finished yet reject. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const err = new FerryError('INTERNAL', 'the chunk pool was closed while jobs were pending');
    for (let i = this.#queueHead; i < this.#queue.length; i++) this.#queue[i].reject(err);
    this.#queue.length = 0;
    this.#queueHead = 0;
    for (const job of this.#jobs.values()) job.reject(err);
    this.#jobs.clear();
    const slots = this.#slots.splice(0);
    await Promise.all(
      slots.map((s) => {
        s.dead = true;
        return s.worker.terminate();
      }),
    );
  }

  /** jobs queued or running */
  get pending(): number {
    return this.#queue.length - this.#queueHead + this.#jobs.size;
  }

  #submit(msg: WorkerJob, size: number): Promise<FileChunkResult | BlocksResult | FileErrorResult> {
    if (this.#closed) return Promise.reject(new FerryError('INTERNAL', 'the chunk pool is closed'));
    return new Promise((resolve, reject) => {
      msg.job = this.#nextJob++;
      const cost = Math.max(MIN_COST, Number.isFinite(size) && size > 0 ? size : 0);
      this.#queue.push({ msg, cost, received: 0, objects: [], resolve, reject });
      this.#schedule();
    });
  }

  /** Dispatch on the next turn, so calls made together share batches. */
  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#pump();
    });
  }

  #pump(): void {
    while (!this.#closed && this.#queueHead < this.#queue.length) {
      if (this.#inFlight > 0 && this.#inFlight + this.#queue[this.#queueHead].cost > this.#maxInFlight) break;
      const slot = this.#pickSlot();
      if (!slot) break;
      const jobs: Job[] = [];
      let bytes = 0;
      while (this.#queueHead < this.#queue.length && jobs.length < BATCH_JOBS) {
        const next = this.#queue[this.#queueHead];
        if (jobs.length > 0 && (bytes + next.cost > BATCH_BYTES || this.#inFlight + next.cost > this.#maxInFlight)) break;
        this.#queueHead++;
        jobs.push(next);
        bytes += next.cost;
        this.#inFlight += next.cost;
        this.#jobs.set(next.msg.job, next);
      }
      if (this.#queueHead > 1024 && this.#queueHead * 2 > this.#queue.length) {
        this.#queue.splice(0, this.#queueHead);
        this.#queueHead = 0;
      }
      const batch = this.#nextBatch++;
      slot.batches.set(batch, new Set(jobs));
      slot.cost += bytes;
      this.#setRef(slot);
      const out: BatchMsg = { t: 'batch', batch, jobs: jobs.map((j) => j.msg) };
      slot.worker.postMessage(out);
    }
    if (this.#queueHead === this.#queue.length && this.#queueHead > 0) {
      this.#queue.length = 0;
      this.#queueHead = 0;
    }
  }

  /** the live worker with the least outstanding work and room for a batch; starts workers as needed */
  #pickSlot(): Slot | undefined {
    let best: Slot | undefined;
    for (const s of this.#slots) {
      if (s.batches.size >= BATCHES_PER_WORKER) continue;
      if (!best || s.batches.size < best.batches.size || (s.batches.size === best.batches.size && s.cost < best.cost)) best = s;
    }
    if (best && best.batches.size === 0) return best;
    if (this.#slots.length < this.workers) {
      try {
        return this.#spawn();
      } catch (err) {
        if (best) return best;
        if (this.#slots.length > 0) return undefined;
        // no worker can start: fail what waits rather than hang
        const e = new FerryError('INTERNAL', `cannot start a chunk worker: ${(err as Error).message}`, { cause: err });
        for (let i = this.#queueHead; i < this.#queue.length; i++) this.#queue[i].reject(e);
        this.#queue.length = 0;
        this.#queueHead = 0;
        return undefined;
      }
    }
    return best;
  }

  #spawn(): Slot {
    const worker = new Worker(new URL('./chunk-worker.ts', import.meta.url), {
      workerData: { ferryChunkWorker: this.#config },
      ...(workerExecArgv() ? { execArgv: workerExecArgv() } : {}),
      name: `ferry-chunk-${this.#nextSlot}`,
    });
    const slot: Slot = { index: this.#nextSlot++, worker, batches: new Map(), cost: 0, refed: true, dead: false, error: undefined };
    worker.on('message', (msg: OutMsg) => this.#onMessage(slot, msg));
    worker.on('error', (err) => {
      slot.error = err;
    });
    worker.on('exit', (code) => this.#onExit(slot, code));
    this.#slots.push(slot);
    return slot;
  }

  #setRef(slot: Slot): void {
    const busy = slot.batches.size > 0;
    if (busy === slot.refed || slot.dead) return;
    slot.refed = busy;
    if (busy) slot.worker.ref();
    else slot.worker.unref();
  }

  #finish(slot: Slot, batch: number, job: Job): void {
    this.#jobs.delete(job.msg.job);
    slot.batches.get(batch)?.delete(job);
    this.#inFlight -= job.cost;
    slot.cost -= job.cost;
  }

  #onMessage(slot: Slot, msg: OutMsg): void {
    if (this.#closed) return;
    const buf = msg.buf;
    for (const item of msg.items) {
      const job = this.#jobs.get(item.job);
      if (!job) continue;
      switch (item.t) {
        case 'chunks': {
          for (const m of item.list) {
            if (m === null) {
              job.objects.push(null);
              continue;
            }
            job.objects.push({ kind: 'chunk', id: m.id as ObjectId, rawLength: m.raw, codec: m.codec, stored: new Uint8Array(buf!, m.off, m.len) });
            job.received += m.len;
          }
          if (job.received > job.cost) {
            // a bigger file than guessed: count what it really holds
            const extra = job.received - job.cost;
            job.cost += extra;
            this.#inFlight += extra;
            slot.cost += extra;
          }
          break;
        }
        case 'reset':
          job.objects = [];
          break;
        case 'end':
          this.#finish(slot, msg.batch, job);
          if (job.msg.t === 'file') {
            job.resolve({ ok: true, chunks: job.objects as PreparedObject[], stat: item.stat!, changedDuringRead: item.changed });
          } else {
            job.resolve({ ok: true, blocks: job.objects });
          }
          break;
        case 'err':
          this.#finish(slot, msg.batch, job);
          job.resolve({ ok: false, code: item.code, message: item.message });
          break;
      }
    }
    if (msg.done) {
      const left = slot.batches.get(msg.batch);
      slot.batches.delete(msg.batch);
      // cannot happen unless the worker has a bug; never leave a caller hanging
      if (left) for (const job of left) this.#fail(slot, job, new FerryError('INTERNAL', `chunk worker ${slot.index} finished a batch without answering job ${job.msg.job}`));
      this.#setRef(slot);
      this.#pump();
    }
  }

  #fail(slot: Slot, job: Job, err: Error): void {
    this.#jobs.delete(job.msg.job);
    this.#inFlight -= job.cost;
    slot.cost -= job.cost;
    job.reject(err);
  }

  #onExit(slot: Slot, code: number): void {
    if (slot.dead) return; // terminated by close()
    slot.dead = true;
    const i = this.#slots.indexOf(slot);
    if (i >= 0) this.#slots.splice(i, 1);
    const why = slot.error ? `${slot.error.message}` : `exit code ${code}`;
    for (const jobs of slot.batches.values()) {
      for (const job of jobs) {
        const path = Buffer.from(job.msg.path).toString();
        this.#fail(slot, job, new FerryError('INTERNAL', `chunk worker ${slot.index} died (${why}) while reading ${path}; the file was not captured`, { cause: slot.error, details: { path } }));
      }
    }
    slot.batches.clear();
    if (!this.#closed) this.#pump(); // starts a replacement if work is queued
  }
}
