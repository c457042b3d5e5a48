// What a chunk is stored as: compressed with zstd when that pays (a sample
// of the data says whether it would), raw otherwise; the encoder reuses one
// zstd stream per worker. Used by the chunk workers (chunk-worker.ts) and by
// anything that stores an object whole (prepareObject).
import * as zlib from 'node:zlib';
import { constants as zc, zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import { hashBytes } from '../core/ids.ts';
import { CODEC_NONE, CODEC_ZSTD, type Codec } from '../store/types.ts';

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
