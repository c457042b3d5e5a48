// The worker side of the chunk pool (chunk-pool.ts): file I/O, content-
// defined chunking, hashing (BLAKE3) and zstd, off the main thread. A worker takes a
// batch of jobs, runs them one after another with synchronous I/O (it has
// nothing else to do meanwhile), and posts results back in messages of up to
// about 8 MiB: every object's stored bytes are copied once into an arena
// that is transferred, not cloned, with the message.
//
// Errors met on a file (ENOENT, EACCES, EISDIR, EIO...) are results, never
// exceptions: a worker dies only on a bug, and the pool then fails that
// worker's jobs and starts another.
//
// The pure helpers (prepareObject, maybeCompress) are exported for the
// benchmark; importing this module on the main thread does nothing else.
import { closeSync, constants as fsc, fstatSync, openSync, readSync, appendFileSync, type BigIntStats } from 'node:fs';
import { hashBytes } from '../core/ids.ts';
import { constants as zc, zstdCompressSync } from 'node:zlib';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { FastCdc } from './fastcdc.ts';
import { CODEC_NONE, CODEC_ZSTD, type Codec } from '../store/types.ts';

// ---- protocol (shared with chunk-pool.ts through `import type`) ----

export interface WorkerConfig {
  min: number;
  avg: number;
  max: number;
  zstdLevel: number;
  retries: number;
  /** bytes read per read() call */
  window: number;
  /** post results once this many stored bytes are waiting */
  flushBytes: number;
  test?: WorkerTestHooks;
}

/** Fault injection for tests only. */
export interface WorkerTestHooks {
  /** append this many bytes to the file after the first read of each of the first N attempts (N = appendAttempts) */
  appendAttempts?: number;
  appendBytes?: number;
  /** exit the worker thread when asked to read a path ending with this string */
  crashOnSuffix?: string;
}

export type WorkerJob =
  | { t: 'file'; job: number; path: Uint8Array }
  | { t: 'blocks'; job: number; path: Uint8Array; offset: number; length: number; blockSize: number };

export interface BatchMsg {
  t: 'batch';
  batch: number;
  jobs: WorkerJob[];
}

export interface WireStat {
  size: number;
  mtimeNs: bigint;
  ctimeNs: bigint;
  ino: bigint;
}

/** One prepared object; its stored bytes are buf[off, off+len) of the message. */
export interface ChunkMeta {
  id: string;
  raw: number;
  codec: Codec;
  off: number;
  len: number;
}

export type OutItem =
  /** append these objects (null: an all-zero block) to the job's list */
  | { t: 'chunks'; job: number; list: Array<ChunkMeta | null> }
  /** drop the job's objects received so far (the file changed; it is read again) */
  | { t: 'reset'; job: number }
  | { t: 'end'; job: number; stat: WireStat | null; changed: boolean }
  | { t: 'err'; job: number; code: string; message: string };

export interface OutMsg {
  t: 'out';
  batch: number;
  /** the batch is finished: nothing more will come for it */
  done: boolean;
  buf: ArrayBuffer | null;
  items: OutItem[];
}

// ---- compression policy ----

/** Keep the zstd form only if it is at most this fraction of the raw size. */
export const KEEP_RATIO = 0.9;
/** Below this, a frame's overhead eats any gain: never compress. */
export const MIN_COMPRESS = 64;
/** From this size on, compress a sample first (SAMPLE_PIECES x SAMPLE_PIECE bytes, spread out, level 1). */
export const SAMPLE_FROM = 32 * 1024;
export const SAMPLE_PIECE = 4 * 1024;

function zstd(data: Uint8Array, level: number): Buffer {
  const len = data.length;
  return zstdCompressSync(data, {
    pledgedSrcSize: len,
    // one output buffer large enough for anything worth keeping
    chunkSize: Math.max(16 * 1024, Math.ceil(len * KEEP_RATIO) + 1024),
    params: { [zc.ZSTD_c_compressionLevel]: level },
  });
}

/**
 * Whether a sample of `raw` shrinks by at least 1 - KEEP_RATIO. Samples
 * 4 (8 from 256 KiB) pieces of 4 KiB spread over the data, at level 1: on
 * incompressible data this costs a few percent of compressing it all.
 */
export function sampleCompresses(raw: Uint8Array): boolean {
  const pieces = raw.length >= 256 * 1024 ? 8 : 4;
  const sample = Buffer.allocUnsafe(pieces * SAMPLE_PIECE);
  const step = Math.floor((raw.length - SAMPLE_PIECE) / (pieces - 1));
  for (let p = 0; p < pieces; p++) sample.set(raw.subarray(p * step, p * step + SAMPLE_PIECE), p * SAMPLE_PIECE);
  return zstd(sample, 1).length <= sample.length * KEEP_RATIO;
}

/** The zstd frame of `raw` if it pays (saves at least 10%), else null. */
export function maybeCompress(raw: Uint8Array, level: number, useSample = true): Buffer | null {
  if (level <= 0 || raw.length < MIN_COMPRESS) return null;
  if (useSample && raw.length >= SAMPLE_FROM && !sampleCompresses(raw)) return null;
  const z = zstd(raw, level);
  return z.length <= raw.length * KEEP_RATIO ? z : null;
}

export function prepareObject(raw: Uint8Array, level: number): { id: string; codec: Codec; stored: Uint8Array } {
  const id = hashBytes(raw);
  const z = maybeCompress(raw, level);
  return z ? { id, codec: CODEC_ZSTD, stored: z } : { id, codec: CODEC_NONE, stored: raw };
}

// ---- the worker ----

class FileError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

function errorOf(err: unknown, path: Buffer): { code: string; message: string } {
  if (err instanceof FileError) return { code: err.code, message: err.message };
  const e = err as NodeJS.ErrnoException;
  const code = typeof e?.code === 'string' ? e.code : 'EUNKNOWN';
  const msg = e?.message ?? String(err);
  return { code, message: msg.includes(path.toString()) ? msg : `${path.toString()}: ${msg}` };
}

function wireStat(st: BigIntStats): WireStat {
  return { size: Number(st.size), mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, ino: st.ino };
}

function sameStat(a: BigIntStats, b: BigIntStats): boolean {
  return a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs && a.ino === b.ino;
}

const OPEN_FILE = fsc.O_RDONLY | (fsc.O_NOFOLLOW ?? 0) | (fsc.O_NONBLOCK ?? 0);
const OPEN_IMAGE = fsc.O_RDONLY;

export class ChunkWorker {
  readonly #cfg: WorkerConfig;
  readonly #post: (msg: OutMsg, transfer: ArrayBuffer[]) => void;
  readonly #cdc: FastCdc;
  /** read buffer: a window plus the unfinished chunk carried over (< max) */
  readonly #buf: Buffer;
  #arena: ArrayBuffer;
  #used = 0;
  #items: OutItem[] = [];
  #flushes = 0;
  #zeros: Buffer = Buffer.alloc(0);

  constructor(cfg: WorkerConfig, post: (msg: OutMsg, transfer: ArrayBuffer[]) => void) {
    this.#cfg = cfg;
    this.#post = post;
    this.#cdc = new FastCdc({ min: cfg.min, avg: cfg.avg, max: cfg.max });
    this.#buf = Buffer.allocUnsafeSlow(cfg.window + cfg.max);
    this.#arena = new ArrayBuffer(cfg.flushBytes + cfg.max);
  }

  runBatch(msg: BatchMsg): void {
    this.#batch = msg.batch;
    for (const job of msg.jobs) {
      const path = Buffer.from(job.path.buffer, job.path.byteOffset, job.path.byteLength);
      if (job.t === 'file') this.#file(job.job, path);
      else this.#blocks(job.job, path, job.offset, job.length, job.blockSize);
      if (this.#used >= this.#cfg.flushBytes || this.#items.length >= 512) this.#flush(false);
    }
    this.#flush(true);
  }

  #batch = 0;

  #flush(done: boolean): void {
    if (!done && this.#items.length === 0) return;
    let buf: ArrayBuffer | null = null;
    if (this.#used > 0) {
      if (this.#used >= this.#arena.byteLength * 0.75) {
        // nearly full: hand the whole arena over and start a new one
        buf = this.#arena;
        this.#arena = new ArrayBuffer(this.#cfg.flushBytes + this.#cfg.max);
      } else {
        buf = this.#arena.slice(0, this.#used);
      }
    }
    const msg: OutMsg = { t: 'out', batch: this.#batch, done, buf, items: this.#items };
    this.#items = [];
    this.#used = 0;
    this.#flushes++;
    this.#post(msg, buf ? [buf] : []);
  }

  /** Add an object (null: a zero block) to the job's results, staging its stored bytes. */
  #add(job: number, raw: Uint8Array | null): void {
    let meta: ChunkMeta | null = null;
    if (raw) {
      const p = prepareObject(raw, this.#cfg.zstdLevel);
      const bytes = p.stored;
      // copy the stored bytes into the arena, flushing first if they do not fit
      if (this.#used + bytes.length > this.#arena.byteLength) {
        if (this.#used > 0) this.#flush(false);
        if (bytes.length > this.#arena.byteLength) this.#arena = new ArrayBuffer(bytes.length + this.#cfg.flushBytes);
      }
      const off = this.#used;
      new Uint8Array(this.#arena, off, bytes.length).set(bytes);
      this.#used += bytes.length;
      meta = { id: p.id, raw: raw.length, codec: p.codec, off, len: bytes.length };
    }
    // after any flush above: the metas always travel with the arena they point into
    const last = this.#items[this.#items.length - 1];
    if (last?.t === 'chunks' && last.job === job) last.list.push(meta);
    else this.#items.push({ t: 'chunks', job, list: [meta] });
  }

  /** Where the results stand, to take back what a failed or repeated attempt produced. */
  #mark(): { items: number; used: number; flushes: number } {
    return { items: this.#items.length, used: this.#used, flushes: this.#flushes };
  }

  /** Drop results produced since `m`: in place if not posted yet, else tell the pool to. */
  #rollback(job: number, m: { items: number; used: number; flushes: number }, tellPool: boolean): void {
    if (this.#flushes === m.flushes) {
      this.#items.length = m.items;
      this.#used = m.used;
    } else if (tellPool) {
      this.#items.push({ t: 'reset', job });
    }
  }

  #file(job: number, path: Buffer): void {
    const cfg = this.#cfg;
    if (cfg.test?.crashOnSuffix && path.toString().endsWith(cfg.test.crashOnSuffix)) process.exit(70);
    let fd: number;
    try {
      fd = openSync(path, OPEN_FILE);
    } catch (err) {
      this.#items.push({ t: 'err', job, ...errorOf(err, path) });
      return;
    }
    let mark = this.#mark();
    try {
      for (let attempt = 0; ; attempt++) {
        mark = this.#mark();
        const before = fstatSync(fd, { bigint: true });
        if (!before.isFile()) {
          throw before.isDirectory()
            ? new FileError('EISDIR', `${path.toString()}: is a directory, not a regular file`)
            : new FileError('EFTYPE', `${path.toString()}: not a regular file`);
        }
        const total = this.#readChunks(job, fd, path, Number(before.size), attempt);
        const after = fstatSync(fd, { bigint: true });
        const changed = !sameStat(before, after) || total !== Number(after.size);
        if (!changed || attempt >= cfg.retries) {
          this.#items.push({ t: 'end', job, stat: wireStat(after), changed });
          return;
        }
        // read it again: forget what this attempt produced
        this.#rollback(job, mark, true);
      }
    } catch (err) {
      // an 'err' item makes the pool drop whatever it received for the job
      this.#rollback(job, mark, false);
      this.#items.push({ t: 'err', job, ...errorOf(err, path) });
    } finally {
      closeSync(fd);
    }
  }

  /** read the whole file, chunk it and stage the chunks; returns the bytes read */
  #readChunks(job: number, fd: number, path: Buffer, expected: number, attempt: number): number {
    const cfg = this.#cfg;
    const buf = this.#buf;
    const cdc = this.#cdc;
    const test = cfg.test;
    cdc.reset();
    let total = 0;
    let carry = 0; // buf[0, carry) is the unfinished chunk: stream [total - carry, total)
    for (;;) {
      const n = readSync(fd, buf, carry, cfg.window, total);
      if (n === 0) break;
      if (test?.appendAttempts && attempt < test.appendAttempts && total === 0) appendFileSync(path, Buffer.alloc(test.appendBytes ?? 1000, 0x5a));
      const base = total - carry; // stream offset of buf[0]
      let last = base;
      for (const cut of cdc.push(buf.subarray(carry, carry + n))) {
        this.#add(job, buf.subarray(last - base, cut - base));
        last = cut;
      }
      total += n;
      carry = total - last;
      if (carry > 0 && last > base) buf.copyWithin(0, last - base, total - base);
      if (this.#used >= cfg.flushBytes) this.#flush(false);
      // a short read of a regular file means end of file; the fstat after tells if it grew
      if (n < cfg.window && total >= expected) break;
    }
    if (cdc.finish().length > 0) this.#add(job, buf.subarray(0, carry));
    return total;
  }

  #blocks(job: number, path: Buffer, offset: number, length: number, blockSize: number): void {
    const cfg = this.#cfg;
    if (cfg.test?.crashOnSuffix && path.toString().endsWith(cfg.test.crashOnSuffix)) process.exit(70);
    if (!(Number.isSafeInteger(blockSize) && blockSize > 0 && Number.isSafeInteger(offset) && offset >= 0 && Number.isSafeInteger(length) && length >= 0)) {
      this.#items.push({ t: 'err', job, code: 'EINVAL', message: `bad block range: offset ${offset}, length ${length}, block size ${blockSize}` });
      return;
    }
    let fd: number;
    try {
      fd = openSync(path, OPEN_IMAGE);
    } catch (err) {
      this.#items.push({ t: 'err', job, ...errorOf(err, path) });
      return;
    }
    const mark = this.#mark();
    try {
      const per = Math.max(1, Math.floor(cfg.window / blockSize)) * blockSize;
      const buf = per <= this.#buf.length ? this.#buf : Buffer.allocUnsafeSlow(per);
      if (this.#zeros.length < blockSize) this.#zeros = Buffer.alloc(blockSize);
      const zeros = this.#zeros;
      let done = 0;
      while (done < length) {
        const want = Math.min(per, length - done);
        let got = 0;
        while (got < want) {
          const n = readSync(fd, buf, got, want - got, offset + done + got);
          if (n === 0) throw new FileError('ETRUNCATED', `${path.toString()}: ends at byte ${offset + done + got}, before ${offset + length} (was it truncated?)`);
          got += n;
        }
        for (let b = 0; b < want; b += blockSize) {
          const block = buf.subarray(b, Math.min(want, b + blockSize));
          this.#add(job, block.equals(zeros.subarray(0, block.length)) ? null : block);
        }
        done += want;
        if (this.#used >= cfg.flushBytes) this.#flush(false);
      }
      this.#items.push({ t: 'end', job, stat: null, changed: false });
    } catch (err) {
      this.#rollback(job, mark, false);
      this.#items.push({ t: 'err', job, ...errorOf(err, path) });
    } finally {
      closeSync(fd);
    }
  }
}

if (!isMainThread && parentPort && (workerData as { ferryChunkWorker?: WorkerConfig } | null)?.ferryChunkWorker) {
  const port = parentPort;
  const w = new ChunkWorker((workerData as { ferryChunkWorker: WorkerConfig }).ferryChunkWorker, (msg, transfer) => port.postMessage(msg, transfer));
  port.on('message', (msg: BatchMsg) => w.runBatch(msg));
}
