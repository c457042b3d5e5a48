// A pool of worker threads that read, chunk, hash and compress files (and
// image blocks) for capture, so every core works while the main thread walks
// the tree and writes packs.
//
// Requests queue here and go out in batches (up to 64 jobs or 8 MiB of
// expected input per message), each to the least-loaded worker that has
// room (a second batch only while its current work is small), so small
// files cost one message per batch rather than per file, no worker idles
// while another has a backlog, and nothing queues behind a large file.
//
// Results stream back while a file is read (chunk-worker.ts): each worker
// frames new objects as pack records in a shared ring, and the pool hands
// each record to the job's `onChunk` as its message arrives, then releases
// the ring space. So a capture stores a large file's chunks as they come
// and memory does not grow with file size; the ring is the bound on what
// the workers have produced and the main thread not yet consumed. Without
// `onChunk` the pool copies the objects out and returns them all with the
// result (fine for small files and tests). Bytes dispatched to jobs that
// collect their results are bounded too (64 MiB by default; a job counts
// its size hint, or a guess, grown to what it actually returned).
//
// A worker that dies (a bug, never a file error) is replaced; the jobs it
// held fail with an INTERNAL error. Idle workers are unref'd so the pool
// never keeps the process alive by itself, and end after WORKER_IDLE_MS.
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { admitWorker, memory, registerWorkers, WORKER_HEAP_FRACTION, workerHeapMb } from '../core/memory.ts';
import { FerryError } from '../core/errors.ts';
import { WORKER_IDLE_MS, workerExecArgv } from '../core/worker-pool.ts';
import type { ObjectId } from '../core/ids.ts';
import type { SharedIndexRef } from '../store/index-probe.ts';
import { RECORD_HEADER_SIZE, RECORD_OVERHEAD, RECORD_TRAILER_SIZE } from '../store/pack.ts';
import type { Codec, PreparedObject } from '../store/types.ts';
import { DEFAULT_AVG, DEFAULT_MAX, DEFAULT_MIN, FastCdc } from './fastcdc.ts';
import { CTL_WORDS, RING_USED, type BatchMsg, type OutMsg, type WorkerConfig, type WorkerJob, type WorkerTestHooks } from './chunk-worker.ts';

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

/** An object as it arrives from a worker, for `onChunk`. */
export interface StreamedObject {
  kind: 'chunk';
  id: ObjectId;
  rawLength: number;
  codec: Codec;
  /**
   * The object's whole pack record as framed by the worker (header, stored
   * bytes, CRC trailer). Valid only during the call: the memory is reused.
   */
  record: Uint8Array;
  /**
   * Set when the worker found no row for the id in the job's index: the
   * index's commit epoch (StreamOptions.index.epoch()) when the job was
   * dispatched, so the store knows the lookup covered everything committed
   * before then.
   */
  absentAt?: number;
}

export interface StreamOptions {
  /**
   * Called for each new object of the job, in order, as it arrives (with
   * the job still running); the job's result then carries only ids. An
   * exception fails the job (its promise rejects with it once the worker is
   * done with the file).
   */
  onChunk?: (obj: StreamedObject) => void;
  /**
   * The store's index (only with onChunk): chunks it already holds are not
   * compressed nor shipped, their ids just come back. `epoch()` counts the
   * index's commits (see StreamedObject.absentAt).
   */
  index?: { ref: SharedIndexRef; epoch(): number };
  /**
   * The file's chunks in the snapshot before, when it is read again because it changed (only with
   * `index`, which knows their lengths): where its bytes still match them, the worker takes their
   * boundaries without the content-defined scan. The chunks come out the same either way.
   */
  old?: readonly ObjectId[];
}

export interface FileChunkResult {
  ok: true;
  /** the chunk ids, in file order */
  ids: ObjectId[];
  /** kind 'chunk', in file order (empty when the job streamed its objects to onChunk) */
  chunks: PreparedObject[];
  /** fstat of the fd after the final read */
  stat: StatSnapshot;
  /** true if the file still changed across all retries (content as last read) */
  changedDuringRead: boolean;
  /** bytes whose chunks were taken at the old chunks' boundaries without a scan (with `old` and an index) */
  hintedBytes?: number;
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
  ids: Array<ObjectId | null>;
  /** the same with their bytes (empty when the job streamed its objects to onChunk) */
  blocks: Array<PreparedObject | null>;
}

export interface ChunkPoolOptions {
  /** worker threads (default: os.availableParallelism()) */
  workers?: number;
  chunker?: ChunkerParams;
  /** zstd level for objects that compress (default 2: as fast as 1 on text here, 5% smaller; 3 is 30% slower for 4% more); 0 disables compression */
  zstdLevel?: number;
  /** re-reads of a file that changed while being read (default 3) */
  retries?: number;
  /** bound on input bytes dispatched to jobs that collect their results and not yet returned (default: the memory budget's capture share less the workers' rings) */
  maxInFlightBytes?: number;
  /** bytes of each worker's result ring (default 8 MiB; at least twice the largest chunk) */
  ringBytes?: number;
  /** fault injection: tests only */
  _test?: WorkerTestHooks;
}

/** bytes per read(): small enough that what was read is still in the CPU cache when it is chunked and hashed */
const WINDOW = 1024 * 1024;
/** measured on log text, 1 MiB chunks, this machine class: level 1 199 MB/s 3.06x, 2 199 MB/s 3.22x, 3 134 MB/s 3.37x */
export const DEFAULT_CHUNK_ZSTD_LEVEL = 2;
const DEFAULT_RING = 8 * 1024 * 1024;
const WORKER_YOUNG_GENERATION_MB = 4;
const BATCH_JOBS = 64;
const BATCH_BYTES = 8 * 1024 * 1024;
const BATCHES_PER_WORKER = 2;
/** a worker gets a second batch only while its outstanding work is below this */
const SECOND_BATCH_BELOW = 8 * 1024 * 1024;
/** expected size of a file given no hint: typical trees are mostly small files */
const GUESS_BYTES = 128 * 1024;
/** the least a job counts for, whatever its size: per-file overhead */
const MIN_COST = 4 * 1024;

interface Job {
  msg: WorkerJob;
  /** input bytes this job is counted for in the in-flight bound (collecting jobs only) */
  cost: number;
  /** expected input bytes: batching and load balancing */
  work: number;
  received: number;
  ids: Array<ObjectId | null>;
  objects: Array<PreparedObject | null>;
  opts: StreamOptions | undefined;
  /** the index's epoch when the job went out */
  epoch: number;
  /** what onChunk threw */
  failed: unknown;
  resolve: (r: FileChunkResult | BlocksResult | FileErrorResult) => void;
  reject: (err: unknown) => void;
}

interface Slot {
  index: number;
  worker: Worker;
  ring: Buffer;
  ctl: Int32Array;
  /** batch number -> its jobs not finished yet */
  batches: Map<number, Set<Job>>;
  cost: number;
  work: number;
  refed: boolean;
  dead: boolean;
  error: Error | undefined;
  /** ends the worker once it has been idle for WORKER_IDLE_MS */
  idleTimer?: NodeJS.Timeout;
}

export class ChunkPool {
  readonly workers: number;
  readonly chunker: ChunkerParams;
  readonly #config: WorkerConfig;
  readonly #maxInFlightOpt: number | undefined;
  /** what is in flight is also counted in the memory budget's capture share */
  readonly #share = memory.share('capture');
  readonly #ringBytes: number;
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
    const zstdLevel = opts.zstdLevel ?? DEFAULT_CHUNK_ZSTD_LEVEL;
    if (!Number.isSafeInteger(zstdLevel) || zstdLevel < 0 || zstdLevel > 22) throw new FerryError('CONFIG_INVALID', `zstd level must be 0 (off) to 22, got ${zstdLevel}`);
    const retries = opts.retries ?? 3;
    if (!Number.isSafeInteger(retries) || retries < 0) throw new FerryError('CONFIG_INVALID', `retries must be a non-negative integer, got ${retries}`);
    this.workers = workers;
    registerWorkers({ name: 'ferry-chunk', workers: () => this.#slots.filter((x) => !x.dead).map((x) => x.worker) });
    this.chunker = { min: c.min, avg: c.avg, max: c.max };
    // two largest records fit, so a worker is never stuck behind one it cannot place
    this.#ringBytes = Math.max(opts.ringBytes ?? DEFAULT_RING, 2 * (c.max + RECORD_OVERHEAD) + 4096);
    this.#maxInFlightOpt = opts.maxInFlightBytes;
    const placeholder = new SharedArrayBuffer(0);
    this.#config = {
      ...this.chunker,
      zstdLevel,
      retries,
      window: WINDOW,
      flushBytes: Math.max(256 * 1024, this.#ringBytes >> 3),
      ring: placeholder,
      ctl: placeholder,
      ...(opts._test ? { test: opts._test } : {}),
    };
  }

  /**
   * Chunk one regular file (path as bytes: names need not be UTF-8). File
   * errors come back as a FileErrorResult; the promise rejects only if the
   * pool is closed or the worker dies. `sizeHint` (e.g. from the walk's
   * lstat) sharpens batching and the in-flight bound.
   */
  chunkFile(path: Buffer, sizeHint?: number, opts?: StreamOptions): Promise<FileChunkResult | FileErrorResult> {
    return this.#submit({ t: 'file', job: 0, path }, sizeHint ?? GUESS_BYTES, opts) as Promise<FileChunkResult | FileErrorResult>;
  }

  /**
   * Read [offset, offset+length) of an image file or block device in blocks
   * of blockSize (the last may be shorter); all-zero blocks come back as
   * null. Without onChunk keep ranges moderate (tens of MiB): the result
   * holds every block. A range past the end of the file gives code
   * ETRUNCATED.
   */
  hashBlocks(path: Buffer, offset: number, length: number, blockSize: number, opts?: StreamOptions): Promise<BlocksResult | FileErrorResult> {
    return this.#submit({ t: 'blocks', job: 0, path, offset, length, blockSize }, length, opts) as Promise<BlocksResult | FileErrorResult>;
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
        clearTimeout(s.idleTimer);
        return s.worker.terminate();
      }),
    );
  }

  /** jobs queued or running */
  get pending(): number {
    return this.#queue.length - this.#queueHead + this.#jobs.size;
  }

  #submit(msg: WorkerJob, size: number, opts: StreamOptions | undefined): Promise<FileChunkResult | BlocksResult | FileErrorResult> {
    if (this.#closed) return Promise.reject(new FerryError('INTERNAL', 'the chunk pool is closed'));
    return new Promise((resolve, reject) => {
      msg.job = this.#nextJob++;
      const work = Math.max(MIN_COST, Number.isFinite(size) && size > 0 ? size : 0);
      // a streaming job holds nothing here once its objects are handed over: only the per-job overhead counts
      const streaming = opts?.onChunk !== undefined;
      if (streaming && opts.index) {
        msg.index = opts.index.ref;
        if (msg.t === 'file' && opts.old && opts.old.length >= 2) msg.old = Buffer.from(opts.old.join(''), 'hex');
      }
      this.#queue.push({ msg, cost: streaming ? MIN_COST : work, work, received: 0, ids: [], objects: [], opts: streaming ? opts : undefined, epoch: 0, failed: undefined, resolve, reject });
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

  /** The bound on bytes in flight: the option, else the capture share less the rings of the workers (at least one chunk's worth). */
  #maxInFlight(): number {
    return this.#maxInFlightOpt ?? Math.max(2 * this.chunker.max, this.#share.limit - this.workers * this.#ringBytes);
  }

  /** bytes of file data handed to workers and not yet returned (collecting jobs): never past the bound but for one job alone */
  get inFlightBytes(): number {
    return this.#inFlight;
  }

  #pump(): void {
    while (!this.#closed && this.#queueHead < this.#queue.length) {
      const maxInFlight = this.#maxInFlight();
      if (this.#inFlight > 0 && this.#inFlight + this.#queue[this.#queueHead].cost > maxInFlight) break;
      const slot = this.#pickSlot();
      if (!slot) break;
      const jobs: Job[] = [];
      let bytes = 0;
      let cost = 0;
      while (this.#queueHead < this.#queue.length && jobs.length < BATCH_JOBS) {
        const next = this.#queue[this.#queueHead];
        if (jobs.length > 0 && (bytes + next.work > BATCH_BYTES || this.#inFlight + next.cost > maxInFlight)) break;
        this.#queueHead++;
        jobs.push(next);
        bytes += next.work;
        cost += next.cost;
        this.#inFlight += next.cost;
        this.#share.hold(next.cost);
        if (next.opts?.index) next.epoch = next.opts.index.epoch();
        this.#jobs.set(next.msg.job, next);
      }
      if (this.#queueHead > 1024 && this.#queueHead * 2 > this.#queue.length) {
        this.#queue.splice(0, this.#queueHead);
        this.#queueHead = 0;
      }
      const batch = this.#nextBatch++;
      slot.batches.set(batch, new Set(jobs));
      slot.cost += cost;
      slot.work += bytes;
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
      if (s.batches.size >= BATCHES_PER_WORKER || (s.batches.size > 0 && s.work >= SECOND_BATCH_BELOW)) continue;
      if (!best || s.batches.size < best.batches.size || (s.batches.size === best.batches.size && s.work < best.work)) best = s;
    }
    if (best && best.batches.size === 0) return best;
    // another worker only while the memory budget's workers share has room (the first always)
    const heapMb = workerHeapMb(WORKER_HEAP_FRACTION.chunk, this.workers);
    if (this.#slots.length < this.workers && admitWorker(heapMb, this.#slots.length === 0)) {
      try {
        return this.#spawn(heapMb);
      } catch (err) {
        memory.share('workers').release(heapMb * 1024 * 1024);
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

  #spawn(heapMb: number): Slot {
    const ring = new SharedArrayBuffer(this.#ringBytes);
    const ctl = new SharedArrayBuffer(CTL_WORDS * 4);
    const worker = new Worker(new URL('./chunk-worker.ts', import.meta.url), {
      workerData: { ferryChunkWorker: { ...this.#config, ring, ctl } },
      // A worker makes short-lived garbage at a high rate (stats, ids, message
      // objects); left alone V8 grows its young generation to tens of MiB
      // per thread. A small one costs little (scavenges of mostly dead
      // objects are cheap) and keeps the process small.
      resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB, maxOldGenerationSizeMb: heapMb },
      ...(workerExecArgv() ? { execArgv: workerExecArgv() } : {}),
      name: `ferry-chunk-${this.#nextSlot}`,
    });
    const slot: Slot = {
      index: this.#nextSlot++,
      worker,
      ring: Buffer.from(ring),
      ctl: new Int32Array(ctl),
      batches: new Map(),
      cost: 0,
      work: 0,
      refed: true,
      dead: false,
      error: undefined,
    };
    worker.on('message', (msg: OutMsg) => this.#onMessage(slot, msg));
    worker.on('error', (err) => {
      slot.error = err;
    });
    // its heap limit counts in the workers share (admitWorker) until it exits
    worker.once('exit', () => memory.share('workers').release(heapMb * 1024 * 1024));
    worker.on('exit', (code) => this.#onExit(slot, code));
    this.#slots.push(slot);
    return slot;
  }

  #setRef(slot: Slot): void {
    const busy = slot.batches.size > 0;
    if (busy === slot.refed || slot.dead) return;
    slot.refed = busy;
    clearTimeout(slot.idleTimer);
    if (busy) {
      slot.worker.ref();
      return;
    }
    slot.worker.unref();
    // idle for long: end it (its heap and ring go with it); the next capture starts another
    slot.idleTimer = setTimeout(() => {
      if (slot.dead || slot.batches.size > 0) return;
      slot.dead = true;
      const i = this.#slots.indexOf(slot);
      if (i >= 0) this.#slots.splice(i, 1);
      void slot.worker.terminate();
    }, WORKER_IDLE_MS).unref();
  }

  #finish(slot: Slot, batch: number, job: Job): void {
    this.#jobs.delete(job.msg.job);
    slot.batches.get(batch)?.delete(job);
    this.#inFlight -= job.cost;
    this.#share.release(job.cost);
    slot.cost -= job.cost;
    slot.work -= job.work;
  }

  #onMessage(slot: Slot, msg: OutMsg): void {
    try {
      if (!this.#closed) this.#take(slot, msg);
    } finally {
      // the records are consumed (stored or copied): the worker may reuse their space
      if (msg.bytes > 0) {
        Atomics.sub(slot.ctl, RING_USED, msg.bytes);
        Atomics.notify(slot.ctl, RING_USED);
      }
    }
    if (msg.done && !this.#closed) {
      const left = slot.batches.get(msg.batch);
      slot.batches.delete(msg.batch);
      // cannot happen unless the worker has a bug; never leave a caller hanging
      if (left) for (const job of left) this.#fail(slot, job, new FerryError('INTERNAL', `chunk worker ${slot.index} finished a batch without answering job ${job.msg.job}`));
      this.#setRef(slot);
      this.#pump();
    }
  }

  #take(slot: Slot, msg: OutMsg): void {
    const ring = slot.ring;
    for (const item of msg.items) {
      const job = this.#jobs.get(item.job);
      if (!job) continue;
      switch (item.t) {
        case 'chunks': {
          const onChunk = job.opts?.onChunk;
          for (const m of item.list) {
            if (m === null) {
              job.ids.push(null);
              if (!onChunk) job.objects.push(null);
              continue;
            }
            const id = m.id as ObjectId;
            job.ids.push(id);
            if (m.off < 0) {
              // the store holds it already; only streaming jobs ask the index
              if (!onChunk) job.failed ??= new FerryError('INTERNAL', `chunk worker skipped object ${id} for a job that collects its objects`);
              continue;
            }
            const record = m.own ? new Uint8Array(m.own, 0, m.len) : ring.subarray(m.off, m.off + m.len);
            if (onChunk) {
              if (job.failed !== undefined) continue;
              try {
                onChunk({ kind: 'chunk', id, rawLength: m.raw, codec: m.codec, record, ...(m.absent ? { absentAt: job.epoch } : {}) });
              } catch (err) {
                job.failed = err;
              }
              continue;
            }
            // collecting: copy the stored bytes out of the ring
            const stored = Buffer.allocUnsafe(m.len - RECORD_OVERHEAD);
            stored.set(record.subarray(RECORD_HEADER_SIZE, m.len - RECORD_TRAILER_SIZE));
            job.objects.push({ kind: 'chunk', id, rawLength: m.raw, codec: m.codec, stored });
            job.received += stored.length;
          }
          if (job.received > job.cost) {
            // a bigger file than guessed: count what it really holds
            const extra = job.received - job.cost;
            job.cost += extra;
            this.#inFlight += extra;
            this.#share.hold(extra);
            slot.cost += extra;
          }
          break;
        }
        case 'reset':
          job.ids = [];
          job.objects = [];
          break;
        case 'end':
          this.#finish(slot, msg.batch, job);
          if (job.failed !== undefined) job.reject(job.failed);
          else if (job.msg.t === 'file') {
            job.resolve({ ok: true, ids: job.ids as ObjectId[], chunks: job.objects as PreparedObject[], stat: item.stat!, changedDuringRead: item.changed, ...(item.hinted !== undefined ? { hintedBytes: item.hinted } : {}) });
          } else {
            job.resolve({ ok: true, ids: job.ids, blocks: job.objects });
          }
          break;
        case 'err':
          this.#finish(slot, msg.batch, job);
          if (job.failed !== undefined) job.reject(job.failed);
          else job.resolve({ ok: false, code: item.code, message: item.message });
          break;
      }
    }
  }

  #fail(slot: Slot, job: Job, err: Error): void {
    this.#jobs.delete(job.msg.job);
    this.#inFlight -= job.cost;
    this.#share.release(job.cost);
    slot.cost -= job.cost;
    slot.work -= job.work;
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
