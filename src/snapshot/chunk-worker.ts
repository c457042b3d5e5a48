// The worker side of the chunk pool (chunk-pool.ts): file I/O, content-
// defined chunking, hashing (BLAKE3), zstd and the framing of pack records,
// off the main thread. A worker takes a batch of jobs and runs them one
// after another with synchronous I/O (it has nothing else to do meanwhile).
//
// Results stream back while a file is read. Each new object is framed as a
// whole pack record (header, stored bytes, CRC: pack.ts) in the worker's
// ring, a SharedArrayBuffer the main thread reads the records from and
// appends to the open pack as they are; messages carry only metadata and
// how many ring bytes the main thread may release once it has used them. The
// ring is the bound on what a worker has produced and the main thread not
// yet consumed: when it is full the worker posts what it has and waits
// (Atomics.wait) for the main thread to release space. So a 200 MiB file
// never sits in memory, and no buffer is allocated per message.
//
// When a job names the store's index (SharedIndexRef), each chunk's id is
// looked up there right after hashing: a chunk the store already holds is
// neither compressed nor shipped, only its id comes back. On an incremental
// snapshot most chunks of a re-read file are like that.
//
// Errors met on a file (ENOENT, EACCES, EISDIR, EIO...) are results, never
// exceptions: a worker dies only on a bug, and the pool then fails that
// worker's jobs and starts another.
//
// The pure helpers (prepareObject, maybeCompress) are exported for the
// benchmark; importing this module on the main thread does nothing else.
import { closeSync, constants as fsc, fstatSync, openSync, readSync, appendFileSync, type BigIntStats } from 'node:fs';
import { hashBytes } from '../core/ids.ts';
import * as zlib from 'node:zlib';
import { constants as zc, zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { FastCdc } from './fastcdc.ts';
import { CODEC_NONE, CODEC_ZSTD, type Codec } from '../store/types.ts';
import { KIND_CODES, RECORD_HEADER_SIZE, RECORD_OVERHEAD, finishRecord, writeRecordHeader } from '../store/pack.ts';
import { IndexProbe, type SharedIndexRef } from '../store/index-probe.ts';

// ---- protocol (shared with chunk-pool.ts through `import type`) ----

export interface WorkerConfig {
  min: number;
  avg: number;
  max: number;
  zstdLevel: number;
  retries: number;
  /** bytes read per read() call */
  window: number;
  /** post results once this many ring bytes are waiting to be released */
  flushBytes: number;
  /** the ring the worker frames records into (see RING_* for the control words) */
  ring: SharedArrayBuffer;
  /** Int32Array control words shared with the pool: [RING_USED] */
  ctl: SharedArrayBuffer;
  test?: WorkerTestHooks;
}

/** ctl word: ring bytes reserved by the worker and not yet released by the pool */
export const RING_USED = 0;
export const CTL_WORDS = 1;

/** Fault injection for tests only. */
export interface WorkerTestHooks {
  /** append this many bytes to the file after the first read of each of the first N attempts (N = appendAttempts) */
  appendAttempts?: number;
  appendBytes?: number;
  /** exit the worker thread when asked to read a path ending with this string */
  crashOnSuffix?: string;
}

export type WorkerJob =
  | { t: 'file'; job: number; path: Uint8Array; index?: SharedIndexRef }
  | { t: 'blocks'; job: number; path: Uint8Array; offset: number; length: number; blockSize: number; index?: SharedIndexRef };

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

/**
 * One object. `off >= 0`: its whole pack record (RECORD_HEADER_SIZE header,
 * stored bytes, CRC trailer) is ring[off, off+len), or own[0, len) when
 * `own` is set (a record too large for the ring). `off < 0`: the store's
 * index already holds it; nothing was shipped.
 */
export interface ChunkMeta {
  id: string;
  raw: number;
  codec: Codec;
  off: number;
  len: number;
  own?: ArrayBuffer;
  /** the job's index was asked and had no row for the id */
  absent?: boolean;
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
  /** ring bytes to release once the items are used */
  bytes: number;
  items: OutItem[];
}

// ---- compression policy ----

/** Keep the zstd form only if it is at most this fraction of the raw size. */
export const KEEP_RATIO = 0.9;
/** Below this, a frame's overhead eats any gain: never compress. */
export const MIN_COMPRESS = 64;
/** From this size on, estimate the entropy of a sample first and skip zstd on data that looks random. */
export const SAMPLE_FROM = 1024;
/**
 * Order-0 entropy (bits per byte) of the sample above which data is taken as
 * incompressible. Random bytes measure 7.8-8.0 on the sample sizes used
 * (1-8 KiB), text and logs 4.5-6, base64 about 6: zstd saves nothing on the
 * first and 25-75% on the others. Data that repeats at long range despite a
 * flat byte histogram (duplicated random blocks) is missed; it costs only
 * ratio, and whole duplicated chunks still deduplicate.
 */
export const RANDOM_BITS = 7.5;

/** Upper bound of a zstd frame of `n` bytes (ZSTD_COMPRESSBOUND, plus slack). */
function compressBound(n: number): number {
  return n + (n >>> 8) + (n < 128 * 1024 ? (128 * 1024 - n) >>> 11 : 0) + 1024;
}

/**
 * One zstd compression context, reused frame after frame, writing into one
 * output buffer of its own. zstdCompressSync builds a stream object, a
 * native context and an output buffer for every call: tens of microseconds
 * per small object and, per large one, a megabyte of garbage that the
 * worker's GC frees late (it made each worker's memory swing by 50-100 MiB).
 * Node has no public API for this, so it drives the native handle of a
 * ZstdCompress stream the way zlib's own synchronous path does; create()
 * checks the result round-trips and returns null otherwise (another Node
 * version), and callers then use zstdCompressSync.
 */
interface ZstdHandle {
  writeSync(flush: number, input: Uint8Array, inOff: number, inLen: number, out: Uint8Array, outOff: number, outLen: number): void;
  onerror: unknown;
}

export class ZstdEncoder {
  readonly level: number;
  readonly #stream: zlib.ZstdCompress;
  readonly #handle: ZstdHandle;
  readonly #state: Uint32Array;
  #out: Buffer;
  #error: string | undefined;
  #broken = false;

  private constructor(level: number) {
    this.level = level;
    this.#stream = new zlib.ZstdCompress({ params: { [zc.ZSTD_c_compressionLevel]: level } });
    const internals = this.#stream as unknown as { _handle?: ZstdHandle; _writeState?: Uint32Array };
    if (!internals._handle || typeof internals._handle.writeSync !== 'function' || !(internals._writeState instanceof Uint32Array)) {
      throw new Error('zstd stream internals differ');
    }
    this.#handle = internals._handle;
    this.#state = internals._writeState;
    this.#handle.onerror = (message: string) => {
      this.#error = message;
    };
    this.#out = Buffer.allocUnsafeSlow(compressBound(64 * 1024));
  }

  /** A working encoder, or null when this Node's zstd internals are not the expected ones. */
  static create(level: number): ZstdEncoder | null {
    try {
      const e = new ZstdEncoder(level);
      // two frames in a row must each decode on their own
      const a = Buffer.from('ferry zstd self-test '.repeat(700));
      const b = Buffer.alloc(5000, 7);
      for (const input of [a, b, a]) {
        const z = e.compress(input);
        if (!z || !zstdDecompressSync(z).equals(input)) return null;
      }
      return e;
    } catch {
      return null;
    }
  }

  /** The zstd frame of `input` (a view into this encoder's buffer, valid until the next call), or null on failure. */
  compress(input: Uint8Array): Buffer | null {
    if (this.#broken) return null;
    const bound = compressBound(input.length);
    if (this.#out.length < bound) this.#out = Buffer.allocUnsafeSlow(bound);
    const out = this.#out;
    this.#error = undefined;
    try {
      this.#handle.writeSync(zc.ZSTD_e_end, input, 0, input.length, out, 0, out.length);
    } catch {
      this.#broken = true;
      return null;
    }
    const availOut = this.#state[0];
    const availIn = this.#state[1];
    // with room for the whole frame, one call ends it; anything else leaves the context mid-frame: never reuse it
    if (this.#error !== undefined || availIn !== 0 || availOut === 0) {
      this.#broken = true;
      return null;
    }
    return out.subarray(0, out.length - availOut);
  }

  get broken(): boolean {
    return this.#broken;
  }
}

/** Per-thread encoders by level (each thread compresses one object at a time). */
const encoders = new Map<number, ZstdEncoder | null>();

function zstd(data: Uint8Array, level: number): Buffer {
  let e = encoders.get(level);
  if (e === undefined || e?.broken) {
    e = ZstdEncoder.create(level);
    encoders.set(level, e);
  }
  const z = e?.compress(data);
  if (z) return z;
  return zstdCompressSync(data, {
    pledgedSrcSize: data.length,
    // one output buffer large enough for anything worth keeping
    chunkSize: Math.max(16 * 1024, Math.ceil(data.length * KEEP_RATIO) + 1024),
    params: { [zc.ZSTD_c_compressionLevel]: level },
  });
}

const histogram = new Int32Array(256);
/** XLOGX[c] = c * log2(c) */
const XLOGX = new Float64Array(8 * 1024 + 1);
for (let c = 1; c < XLOGX.length; c++) XLOGX[c] = c * Math.log2(c);

/**
 * Whether a sample of `raw` looks like random bytes: the order-0 entropy of
 * 2 KiB (objects under 64 KiB) or 8 pieces of 1 KiB spread over it is above
 * RANDOM_BITS. A few microseconds, where a trial compression of a sample
 * costs tens and compressing random data in full hundreds.
 */
export function looksIncompressible(raw: Uint8Array): boolean {
  const h = histogram;
  h.fill(0);
  let n: number;
  if (raw.length < 64 * 1024) {
    n = Math.min(raw.length, 2048);
    const from = (raw.length - n) >>> 1;
    for (let i = from; i < from + n; i++) h[raw[i]]++;
  } else {
    const piece = 1024;
    const pieces = 8;
    n = piece * pieces;
    const step = Math.floor((raw.length - piece) / (pieces - 1));
    for (let p = 0; p < pieces; p++) {
      const o = p * step;
      for (let i = o; i < o + piece; i++) h[raw[i]]++;
    }
  }
  let sum = 0;
  for (let b = 0; b < 256; b++) sum += XLOGX[h[b]];
  return Math.log2(n) - sum / n > RANDOM_BITS;
}

/** The old trial: whether 4 or 8 pieces of 4 KiB compress by 10% at level 1 (kept for bench/micro). */
export function sampleCompresses(raw: Uint8Array): boolean {
  const piece = 4 * 1024;
  const pieces = raw.length >= 256 * 1024 ? 8 : 4;
  if (raw.length < piece * pieces) return zstd(raw, 1).length <= raw.length * KEEP_RATIO;
  const sample = Buffer.allocUnsafe(pieces * piece);
  const step = Math.floor((raw.length - piece) / (pieces - 1));
  for (let p = 0; p < pieces; p++) sample.set(raw.subarray(p * step, p * step + piece), p * piece);
  return zstd(sample, 1).length <= sample.length * KEEP_RATIO;
}

/**
 * The zstd frame of `raw` if it pays (saves at least 10%), else null. The
 * frame may be a view into a buffer the next call reuses: copy it (or use
 * it) before compressing anything else on this thread.
 */
export function maybeCompress(raw: Uint8Array, level: number, useSample = true): Buffer | null {
  if (level <= 0 || raw.length < MIN_COMPRESS) return null;
  if (useSample && raw.length >= SAMPLE_FROM && looksIncompressible(raw)) return null;
  const z = zstd(raw, level);
  return z.length <= raw.length * KEEP_RATIO ? z : null;
}

export function prepareObject(raw: Uint8Array, level: number): { id: string; codec: Codec; stored: Uint8Array } {
  const id = hashBytes(raw);
  const z = maybeCompress(raw, level);
  return z ? { id, codec: CODEC_ZSTD, stored: Buffer.from(z) } : { id, codec: CODEC_NONE, stored: raw };
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
const KIND_CHUNK = KIND_CODES.chunk;
/** longest a worker sleeps on a full ring before looking again */
const WAIT_MS = 1000;

interface Mark {
  items: number;
  flushes: number;
  head: number;
  unposted: number;
}

export class ChunkWorker {
  readonly #cfg: WorkerConfig;
  readonly #post: (msg: OutMsg, transfer: ArrayBuffer[]) => void;
  readonly #cdc: FastCdc;
  /** read buffer: a window plus the unfinished chunk carried over (< max) */
  readonly #buf: Buffer;
  readonly #ring: Buffer;
  readonly #ctl: Int32Array;
  readonly #probe = new IndexProbe();
  readonly #idBytes = Buffer.allocUnsafe(32);
  /** where the next record goes in the ring */
  #head = 0;
  /** ring bytes reserved since the last post (released by the pool after that post) */
  #unposted = 0;
  #items: OutItem[] = [];
  #transfer: ArrayBuffer[] = [];
  #flushes = 0;
  #batch = 0;
  /** the index the current job may skip known chunks against */
  #index: SharedIndexRef | undefined;
  #zeros: Buffer = Buffer.alloc(0);

  constructor(cfg: WorkerConfig, post: (msg: OutMsg, transfer: ArrayBuffer[]) => void) {
    this.#cfg = cfg;
    this.#post = post;
    this.#cdc = new FastCdc({ min: cfg.min, avg: cfg.avg, max: cfg.max });
    this.#buf = Buffer.allocUnsafeSlow(cfg.window + cfg.max);
    this.#ring = Buffer.from(cfg.ring);
    this.#ctl = new Int32Array(cfg.ctl);
  }

  runBatch(msg: BatchMsg): void {
    this.#batch = msg.batch;
    for (const job of msg.jobs) {
      const path = Buffer.from(job.path.buffer, job.path.byteOffset, job.path.byteLength);
      this.#index = job.index;
      if (job.t === 'file') this.#file(job.job, path);
      else this.#blocks(job.job, path, job.offset, job.length, job.blockSize);
      if (this.#unposted >= this.#cfg.flushBytes || this.#items.length >= 512) this.#flush(false);
    }
    this.#index = undefined;
    this.#flush(true);
  }

  close(): void {
    this.#probe.close();
  }

  #flush(done: boolean): void {
    if (!done && this.#items.length === 0 && this.#unposted === 0) return;
    const msg: OutMsg = { t: 'out', batch: this.#batch, done, bytes: this.#unposted, items: this.#items };
    const transfer = this.#transfer;
    this.#items = [];
    this.#transfer = [];
    this.#unposted = 0;
    this.#flushes++;
    this.#post(msg, transfer);
  }

  /**
   * Reserves `n` contiguous ring bytes and returns their offset, waiting for
   * the pool to release space when the ring is full (after posting what is
   * pending, so that it can). Space left at the end of the ring when a
   * record does not fit there is reserved too and released with it.
   */
  #reserve(n: number): number {
    const size = this.#ring.length;
    let off = this.#head;
    let need = n;
    if (off + n > size) {
      need = size - off + n;
      off = 0;
    }
    const ctl = this.#ctl;
    for (;;) {
      const used = Atomics.load(ctl, RING_USED);
      if (used + need <= size) break;
      if (this.#unposted > 0 || this.#items.length > 0) {
        this.#flush(false);
        continue;
      }
      Atomics.wait(ctl, RING_USED, used, WAIT_MS);
    }
    Atomics.add(ctl, RING_USED, need);
    this.#unposted += need;
    this.#head = off + n;
    return off;
  }

  #push(job: number, meta: ChunkMeta | null): void {
    const last = this.#items[this.#items.length - 1];
    if (last?.t === 'chunks' && last.job === job) last.list.push(meta);
    else this.#items.push({ t: 'chunks', job, list: [meta] });
  }

  /** Add an object (null: a zero block) to the job's results, framing its record in the ring. */
  #add(job: number, raw: Uint8Array | null): void {
    if (!raw) {
      this.#push(job, null);
      return;
    }
    const id = hashBytes(raw);
    const idBytes = this.#idBytes;
    idBytes.write(id, 0, 'hex');
    let absent = false;
    if (this.#index) {
      const known = this.#probe.known(this.#index, idBytes);
      if (known) {
        this.#push(job, { id, raw: raw.length, codec: CODEC_NONE, off: -1, len: 0 });
        return;
      }
      absent = known === false;
    }
    const z = maybeCompress(raw, this.#cfg.zstdLevel);
    const stored: Uint8Array = z ?? raw;
    const codec: Codec = z ? CODEC_ZSTD : CODEC_NONE;
    const len = RECORD_OVERHEAD + stored.length;
    if (len * 2 > this.#ring.length) {
      // larger than the ring can take in turn: a buffer of its own, transferred
      const own = new ArrayBuffer(len);
      const b = Buffer.from(own);
      writeRecordHeader(b, 0, KIND_CHUNK, codec, raw.length, stored.length, idBytes);
      b.set(stored, RECORD_HEADER_SIZE);
      finishRecord(b, 0, stored.length);
      this.#transfer.push(own);
      this.#push(job, { id, raw: raw.length, codec, off: 0, len, own, absent });
      this.#flush(false);
      return;
    }
    const off = this.#reserve(len);
    const ring = this.#ring;
    writeRecordHeader(ring, off, KIND_CHUNK, codec, raw.length, stored.length, idBytes);
    ring.set(stored, off + RECORD_HEADER_SIZE);
    finishRecord(ring, off, stored.length);
    this.#push(job, { id, raw: raw.length, codec, off, len, absent });
  }

  /** Where the results stand, to take back what a failed or repeated attempt produced. */
  #mark(): Mark {
    return { items: this.#items.length, flushes: this.#flushes, head: this.#head, unposted: this.#unposted };
  }

  /** Drop results produced since `m`: in place if not posted yet, else tell the pool to. */
  #rollback(job: number, m: Mark, tellPool: boolean): void {
    if (this.#flushes === m.flushes) {
      this.#items.length = m.items;
      const back = this.#unposted - m.unposted;
      if (back > 0) Atomics.sub(this.#ctl, RING_USED, back);
      this.#unposted = m.unposted;
      this.#head = m.head;
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
      // small windows: what was just read is still in the CPU cache when it is chunked, hashed and compressed
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
      if (this.#unposted >= cfg.flushBytes) this.#flush(false);
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
        if (this.#unposted >= cfg.flushBytes) this.#flush(false);
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
