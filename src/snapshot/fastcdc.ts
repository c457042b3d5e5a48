// FastCDC content-defined chunking (Xia et al., "FastCDC: a Fast and
// Efficient Content-Defined Chunking Approach", USENIX ATC 2016) with
// normalized chunking at level 2, on a 32-bit Gear hash.
//
// DEDUP CONTRACT: chunk boundaries decide chunk ids, and chunk ids are what
// two snapshots (and two sites) share. The gear table below (derived from a
// fixed seed), the mask construction, the cut rule and the default
// parameters are therefore frozen: changing ANY of them changes the
// boundaries of almost every file, so every chunk id changes and the next
// snapshot of an unchanged tree shares nothing with the previous one. If
// they must ever change, that is a new chunker version recorded in the
// format, never an edit here. test/unit/snapshot/fastcdc.test.ts pins a few
// literal cut offsets so an accidental change fails loudly.
//
// The algorithm, per chunk (offsets relative to the chunk start):
//   - the first `min` bytes are skipped (no hashing: cut-point skipping);
//   - from `min` the hash starts at 0 and is updated per byte as
//     h = (h << 1) + GEAR[byte]   (32-bit wrap-around);
//   - while the chunk is shorter than `avg`, cut after the byte where
//     (h & MASK_S) == 0, MASK_S having log2(avg)+2 one-bits (harder);
//   - from `avg` on, cut where (h & MASK_L) == 0, MASK_L having
//     log2(avg)-2 one-bits (easier);
//   - at `max` bytes cut unconditionally.
// The masks use the top bits of the 32-bit hash: bit k of a Gear hash
// depends on the last k+1 bytes, so the top bits see the widest window.
// Whatever input is left at the end is the last chunk (of any size >= 1).
import { createHash } from 'node:crypto';
import { FerryError } from '../core/errors.ts';

export interface ChunkerOptions {
  /** smallest chunk, except the last of a stream */
  min?: number;
  /** target chunk size; its base-2 logarithm (rounded) sets the masks */
  avg?: number;
  /** largest chunk */
  max?: number;
}

export const DEFAULT_MIN = 256 * 1024;
export const DEFAULT_AVG = 1024 * 1024;
export const DEFAULT_MAX = 4 * 1024 * 1024;

/** Seed of the gear table. Frozen: see the dedup contract above. */
export const GEAR_SEED = 'ferry/fastcdc/gear/v1';

/** 256 pseudo-random 32-bit values: SHA-256 in counter mode over GEAR_SEED. */
export const GEAR: Int32Array = buildGear(GEAR_SEED);

function buildGear(seed: string): Int32Array {
  const out = new Int32Array(256);
  let n = 0;
  for (let block = 0; n < 256; block++) {
    const counter = Buffer.alloc(4);
    counter.writeUInt32BE(block);
    const d = createHash('sha256').update(seed).update(counter).digest();
    for (let j = 0; j < 32 && n < 256; j += 4) out[n++] = d.readInt32BE(j);
  }
  return out;
}

/** A mask with the top `bits` bits of a 32-bit word set, as a signed 32-bit int. */
function topMask(bits: number): number {
  return bits >= 32 ? -1 : ((0xffffffff << (32 - bits)) | 0);
}

interface Resolved {
  min: number;
  avg: number;
  max: number;
  maskS: number;
  maskL: number;
}

function resolve(opts: ChunkerOptions | undefined): Resolved {
  const min = opts?.min ?? DEFAULT_MIN;
  const avg = opts?.avg ?? DEFAULT_AVG;
  const max = opts?.max ?? DEFAULT_MAX;
  for (const [k, v] of [['min', min], ['avg', avg], ['max', max]] as const) {
    if (!Number.isSafeInteger(v) || v < 1) throw new FerryError('CONFIG_INVALID', `chunker ${k} must be a positive integer, got ${v}`);
  }
  if (!(min <= avg && avg <= max)) throw new FerryError('CONFIG_INVALID', `chunker sizes must satisfy min <= avg <= max, got ${min}/${avg}/${max}`);
  if (avg < 64 || avg > 2 ** 29) throw new FerryError('CONFIG_INVALID', `chunker avg must be between 64 B and 512 MiB, got ${avg}`);
  if (max > 2 ** 30) throw new FerryError('CONFIG_INVALID', `chunker max must be at most 1 GiB, got ${max}`);
  const bits = Math.round(Math.log2(avg));
  return { min, avg, max, maskS: topMask(bits + 2), maskL: topMask(bits - 2) };
}

// The hot loop. It reads the data a 32-bit word at a time (one load and four
// extracts instead of four byte loads; with the word index kept in its own
// variable V8 runs this about twice as fast as the plain byte loop) and byte
// by byte at the unaligned head and the tail. `words` views the memory of
// `data` from data.byteOffset rounded down to a multiple of 4 (`skew` is the
// difference), or is null on big-endian hosts and for short inputs. Returns
// the offset just past the byte where (h & mask) == 0, or -1 when `end` is
// reached; the hash after the last byte hashed is left in scanH.
let scanH = 0;
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function scan(data: Uint8Array, words: Int32Array | null, skew: number, i: number, end: number, h: number, mask: number): number {
  const gear = GEAR;
  if (words !== null) {
    // skew = data.byteOffset & 3: data[i] is word byte (i + skew) & 3
    while (i < end && ((i + skew) & 3) !== 0) {
      h = ((h << 1) + gear[data[i++]]) | 0;
      if ((h & mask) === 0) {
        scanH = h;
        return i;
      }
    }
    // here either i is word-aligned or i == end (then wend <= wi: no loop)
    let wi = (i + skew) >> 2;
    const wend = i < end ? (end + skew) >> 2 : wi;
    while (wi < wend) {
      const w = words[wi++];
      h = ((h << 1) + gear[w & 255]) | 0;
      if ((h & mask) === 0) {
        scanH = h;
        return (wi << 2) - 3 - skew;
      }
      h = ((h << 1) + gear[(w >> 8) & 255]) | 0;
      if ((h & mask) === 0) {
        scanH = h;
        return (wi << 2) - 2 - skew;
      }
      h = ((h << 1) + gear[(w >> 16) & 255]) | 0;
      if ((h & mask) === 0) {
        scanH = h;
        return (wi << 2) - 1 - skew;
      }
      h = ((h << 1) + gear[w >>> 24]) | 0;
      if ((h & mask) === 0) {
        scanH = h;
        return (wi << 2) - skew;
      }
    }
    if (i < end) i = (wi << 2) - skew;
  }
  while (i < end) {
    h = ((h << 1) + gear[data[i++]]) | 0;
    if ((h & mask) === 0) {
      scanH = h;
      return i;
    }
  }
  scanH = h;
  return -1;
}

/** push() handles at most this much per pass, so word indexes stay 32-bit ints */
const PASS = 2 ** 30;

function wordView(data: Uint8Array): Int32Array | null {
  if (!LITTLE_ENDIAN || data.length < 64 || data.length > PASS) return null;
  const skew = data.byteOffset & 3;
  return new Int32Array(data.buffer, data.byteOffset - skew, (data.length + skew) >> 2);
}

/**
 * Streaming chunker. Feed a stream through push() in buffers of any size;
 * each call returns the chunk ends found so far as offsets from the start of
 * the stream (a chunk is [previous end, end)). finish() returns the end of
 * the last, possibly short, chunk (or nothing when the stream ended on a
 * boundary or was empty) and resets the chunker for a new stream. The ends
 * are exactly those of cutPoints() on the whole stream, however it is split.
 */
export class FastCdc {
  readonly min: number;
  readonly avg: number;
  readonly max: number;
  readonly #maskS: number;
  readonly #maskL: number;
  /** bytes of the stream consumed so far */
  #pos = 0;
  /** stream offset where the current chunk starts */
  #start = 0;
  #h = 0;

  constructor(opts?: ChunkerOptions) {
    const r = resolve(opts);
    this.min = r.min;
    this.avg = r.avg;
    this.max = r.max;
    this.#maskS = r.maskS;
    this.#maskL = r.maskL;
  }

  /** stream offset where the current (not yet cut) chunk starts */
  get pendingStart(): number {
    return this.#start;
  }

  /** bytes pushed since the stream started */
  get position(): number {
    return this.#pos;
  }

  push(data: Uint8Array): number[] {
    if (data.length > PASS) {
      const all: number[] = [];
      for (let o = 0; o < data.length; o += PASS) for (const c of this.push(data.subarray(o, o + PASS))) all.push(c);
      return all;
    }
    const cuts: number[] = [];
    const n = data.length;
    const words = wordView(data);
    const skew = data.byteOffset & 3;
    const min = this.min;
    const avg = this.avg;
    const max = this.max;
    const maskS = this.#maskS;
    const maskL = this.#maskL;
    const base = this.#pos;
    let start = this.#start;
    let h = this.#h;
    let i = 0;
    while (i < n) {
      const rel = base + i - start;
      if (rel < min) {
        // cut-point skipping: nothing before `min` can be a boundary
        const skip = min - rel;
        i = skip < n - i ? i + skip : n;
        continue;
      }
      let cut: number;
      if (rel < avg) {
        const end = avg - rel < n - i ? i + (avg - rel) : n;
        cut = scan(data, words, skew, i, end, h, maskS);
        h = scanH;
        if (cut < 0) {
          i = end;
          continue; // reached avg (go on with MASK_L) or the end of data
        }
      } else {
        const end = max - rel < n - i ? i + (max - rel) : n;
        cut = scan(data, words, skew, i, end, h, maskL);
        h = scanH;
        if (cut < 0) {
          i = end;
          if (base + i - start < max) continue; // end of data
          cut = i; // forced cut at max
        }
      }
      start = base + cut;
      cuts.push(start);
      h = 0;
      i = cut;
    }
    this.#pos = base + n;
    this.#start = start;
    this.#h = h;
    return cuts;
  }

  /**
   * The end of the chunk that starts at data[0], where `data` holds at least `max` bytes or the
   * rest of the stream: the same cut push() makes there (a chunk's end depends only on its own
   * bytes: the hash starts again at each chunk's `min`). Leaves the streaming state alone.
   */
  cut(data: Uint8Array): number {
    const n = data.length;
    if (n <= this.min) return n;
    const words = wordView(data);
    const skew = data.byteOffset & 3;
    const endS = n < this.avg ? n : this.avg;
    let c = scan(data, words, skew, this.min, endS, 0, this.#maskS);
    if (c >= 0) return c;
    if (endS === n) return n;
    const endL = n < this.max ? n : this.max;
    c = scan(data, words, skew, endS, endL, scanH, this.#maskL);
    return c >= 0 ? c : endL;
  }

  /** End the stream: returns the end of the last chunk, if any, and resets. */
  finish(): number[] {
    const out = this.#pos > this.#start ? [this.#pos] : [];
    this.reset();
    return out;
  }

  reset(): void {
    this.#pos = 0;
    this.#start = 0;
    this.#h = 0;
  }
}

/** Chunk ends of `data` chunked as one stream; the last is data.length (none for empty data). */
export function cutPoints(data: Uint8Array, opts?: ChunkerOptions): number[] {
  const c = new FastCdc(opts);
  const cuts = c.push(data);
  for (const e of c.finish()) cuts.push(e);
  return cuts;
}
