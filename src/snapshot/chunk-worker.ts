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
// The compression policy is compress.ts's (re-exported here for the
// benchmark); importing this module on the main thread does nothing else.
import { closeSync, constants as fsc, fstatSync, openSync, readSync, appendFileSync, type BigIntStats } from 'node:fs';
import { hashBytes } from '../core/ids.ts';
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
  /**
   * `old`: the ids of the file's chunks in the snapshot before (32 bytes each, in order), when it is
   * read again because it changed: where they still match, their boundaries are taken without the
   * content-defined scan (#readHinted). Used only with `index` (which has their lengths).
   */
  | { t: 'file'; job: number; path: Uint8Array; index?: SharedIndexRef; old?: Uint8Array }
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
  /** `hinted`: bytes whose chunks were taken at the old boundaries (no scan) */
  | { t: 'end'; job: number; stat: WireStat | null; changed: boolean; hinted?: number }
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

export { KEEP_RATIO, MIN_COMPRESS, RANDOM_BITS, SAMPLE_FROM, ZstdEncoder, looksIncompressible, maybeCompress, prepareObject, sampleCompresses } from './compress.ts';
import { maybeCompress } from './compress.ts';

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
      if (job.t === 'file') this.#file(job.job, path, job.old);
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

  /** Add an object (null: a zero block) to the job's results, framing its record in the ring; `id`: its id, when hashed already. */
  #add(job: number, raw: Uint8Array | null, hashed?: string): void {
    if (!raw) {
      this.#push(job, null);
      return;
    }
    const id = hashed ?? hashBytes(raw);
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

  #file(job: number, path: Buffer, oldIds?: Uint8Array): void {
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
        const old = oldIds && this.#index ? this.#oldChunks(oldIds, this.#index) : undefined;
        const hinted = { bytes: 0 };
        const total = old ? this.#readHinted(job, fd, path, Number(before.size), attempt, old, hinted) : this.#readChunks(job, fd, path, Number(before.size), attempt);
        const after = fstatSync(fd, { bigint: true });
        const changed = !sameStat(before, after) || total !== Number(after.size);
        if (!changed || attempt >= cfg.retries) {
          this.#items.push({ t: 'end', job, stat: wireStat(after), changed, ...(old ? { hinted: hinted.bytes } : {}) });
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

  /**
   * The old chunks' ids (hex) and lengths, as far as the index knows their lengths (a chunk whose
   * length it cannot tell ends the list: the boundaries after it are unknown). Undefined when fewer
   * than two: a file of one chunk is scanned from `min` to its end either way.
   */
  #oldChunks(ids: Uint8Array, index: SharedIndexRef): { ids: string[]; lengths: number[] } | undefined {
    const out = { ids: [] as string[], lengths: [] as number[] };
    for (let o = 0; o + 32 <= ids.length; o += 32) {
      const idBytes = ids.subarray(o, o + 32);
      const n = this.#probe.rawLength(index, idBytes);
      if (n === undefined) break;
      out.ids.push(Buffer.from(idBytes.buffer, idBytes.byteOffset, 32).toString('hex'));
      out.lengths.push(n);
    }
    return out.ids.length >= 2 ? out : undefined;
  }

  /**
   * Read the whole file and chunk it as #readChunks does (the same boundaries, so the same ids), for a
   * file that changed since the snapshot whose chunks are `old`. A chunk's end depends only on its own
   * bytes (the hash starts again at each chunk's `min`), so where a chunk starts at an old boundary
   * and the old chunk's bytes follow unchanged (its hash, which the chunk needs anyway, is the old
   * id), it ends where the old one did: taken without the scan. Elsewhere the content-defined cut is
   * found as usual, until a cut lands on an old boundary again (an edit in the middle of a file costs
   * a scan of the chunks it touches; an append, of the old last chunk and what follows). The old last
   * chunk is taken only where the file still ends with it. Returns the bytes read.
   */
  #readHinted(job: number, fd: number, path: Buffer, expected: number, attempt: number, old: { ids: string[]; lengths: number[] }, hinted: { bytes: number }): number {
    const cfg = this.#cfg;
    const buf = this.#buf; // window + max: a whole chunk after the carried bytes, then a window
    const cdc = this.#cdc;
    const test = cfg.test;
    let bufStart = 0; // file offset of buf[0]
    let bufEnd = 0; // file offset just past the bytes read
    let eof = false;
    let pos = 0; // where the next chunk starts
    let oi = 0; // the first old chunk not ending before pos
    let oldStart = 0; // where old chunk oi starts
    const last = old.ids.length - 1;
    for (;;) {
      // at least `max` bytes from pos, or the rest of the file
      while (!eof && bufEnd - pos < cfg.max) {
        if (bufEnd - bufStart + cfg.window > buf.length) {
          buf.copyWithin(0, pos - bufStart, bufEnd - bufStart);
          bufStart = pos;
        }
        const want = Math.min(cfg.window, buf.length - (bufEnd - bufStart));
        const n = readSync(fd, buf, bufEnd - bufStart, want, bufEnd);
        if (test?.appendAttempts && attempt < test.appendAttempts && bufEnd === 0) appendFileSync(path, Buffer.alloc(test.appendBytes ?? 1000, 0x5a));
        bufEnd += n;
        // a short read of a regular file means end of file; the fstat after tells if it grew
        if (n === 0 || (n < want && bufEnd >= expected)) eof = true;
      }
      const avail = bufEnd - pos;
      if (avail === 0) break;
      while (oi <= last && oldStart < pos) oldStart += old.lengths[oi++];
      const data = buf.subarray(pos - bufStart, bufEnd - bufStart);
      if (oi <= last && oldStart === pos) {
        const len = old.lengths[oi];
        if (len <= cfg.max && len <= avail && (oi < last ? len >= cfg.min : eof && len === avail)) {
          const raw = data.subarray(0, len);
          const id = hashBytes(raw);
          if (id === old.ids[oi]) {
            this.#add(job, raw, id);
            hinted.bytes += len;
            pos += len;
            if (this.#unposted >= cfg.flushBytes) this.#flush(false);
            continue;
          }
        }
      }
      const cut = cdc.cut(data);
      this.#add(job, data.subarray(0, cut));
      pos += cut;
      if (this.#unposted >= cfg.flushBytes) this.#flush(false);
    }
    return bufEnd;
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
