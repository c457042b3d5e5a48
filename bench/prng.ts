// Seeded, deterministic pseudo-random numbers for the benchmark data.
//
// xoshiro128** (Blackman and Vigna). Its 128-bit state comes from SHA-256 of
// the seed and the list of tags (as JSON, so 'a/b' differs from 'a', 'b' and
// 17 from '17'), so every file, extent and change gets its own stream, which
// does not depend on the order in which the others were generated. A 32-bit
// seed state would not do: among 50,000 files two would share a stream with
// a chance of about one in four (birthday bound), and an earlier XOR of the tags' hashes
// gave every one-tag stream the seed's own stream (89 % of the random bytes
// of the standard tree repeated blocks of other files).
// Never Math.random: the same seed must give the same bytes on every machine.

import { hash } from 'node:crypto';

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  /** A stream determined by the seed and the tags, e.g. new Rng(42, 'small', 17). */
  constructor(seed: number, ...tags: Array<string | number>) {
    const digest = hash('sha256', JSON.stringify([seed >>> 0, ...tags]), 'buffer');
    this.a = digest.readUInt32LE(0);
    this.b = digest.readUInt32LE(4);
    this.c = digest.readUInt32LE(8);
    this.d = digest.readUInt32LE(12);
    if ((this.a | this.b | this.c | this.d) === 0) this.a = 1;
  }

  /** Next 32-bit unsigned integer. */
  next(): number {
    const b5 = Math.imul(this.b, 5);
    const result = Math.imul((b5 << 7) | (b5 >>> 25), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = (this.d << 11) | (this.d >>> 21);
    return result;
  }

  /** Uniform float in [0, 1). */
  float(): number {
    return this.next() / 4294967296;
  }

  /** Uniform integer in [lo, hi] (inclusive); exact enough for ranges up to 2^32. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.float() * (hi - lo + 1));
  }

  /** Uniform integer in [lo, hi] for ranges beyond 2^32 (53-bit precision). */
  bigInt(lo: number, hi: number): number {
    const f = (this.next() * 2097152 + (this.next() >>> 11)) / 9007199254740992;
    return lo + Math.floor(f * (hi - lo + 1));
  }

  /** k distinct indices out of [0, n), in random order (partial Fisher-Yates). */
  sample(n: number, k: number): number[] {
    const count = Math.min(n, k);
    const swapped = new Map<number, number>();
    const out: number[] = [];
    for (let i = 0; i < count; i++) {
      const j = this.int(i, n - 1);
      const vj = swapped.get(j) ?? j;
      const vi = swapped.get(i) ?? i;
      swapped.set(j, vi);
      out.push(vj);
    }
    return out;
  }

  /**
   * Fills buf with incompressible bytes. Fast path: 4 bytes per step through
   * a Uint32Array view when the view is 4-byte aligned.
   */
  fillRandom(buf: Uint8Array): void {
    const start = buf.byteOffset;
    let i = 0;
    // Unaligned head.
    while (i < buf.length && (start + i) % 4 !== 0) buf[i++] = this.next() & 0xff;
    const words = Math.floor((buf.length - i) / 4);
    if (words > 0) {
      const view = new Uint32Array(buf.buffer, start + i, words);
      let a = this.a, b = this.b, c = this.c, d = this.d;
      for (let w = 0; w < words; w++) {
        const b5 = Math.imul(b, 5);
        view[w] = Math.imul((b5 << 7) | (b5 >>> 25), 9);
        const t = b << 9;
        c ^= a;
        d ^= b;
        b ^= c;
        a ^= d;
        c ^= t;
        d = (d << 11) | (d >>> 21);
      }
      this.a = a; this.b = b; this.c = c; this.d = d;
      i += words * 4;
    }
    while (i < buf.length) buf[i++] = this.next() & 0xff;
  }
}
