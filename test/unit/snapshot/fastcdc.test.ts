import { hashBytes } from '../../../src/core/ids.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { cutPoints, FastCdc, GEAR } from '../../../src/snapshot/fastcdc.ts';
import { isFerryError } from '../../../src/core/errors.ts';

const SMALL = { min: 2048, avg: 8192, max: 32768 };

/** Deterministic pseudo-random bytes (xorshift32): the same on every machine, forever. */
function prng(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x >>> 24;
  }
  return out;
}

/** The algorithm written as plainly as possible, byte by byte, one chunk at a time. */
function reference(data: Uint8Array, min: number, avg: number, max: number): number[] {
  const bits = Math.round(Math.log2(avg));
  const maskS = (0xffffffff << (32 - (bits + 2))) | 0;
  const maskL = (0xffffffff << (32 - (bits - 2))) | 0;
  const out: number[] = [];
  let start = 0;
  while (start < data.length) {
    const left = data.length - start;
    if (left <= min) {
      out.push(data.length);
      break;
    }
    const limit = Math.min(left, max);
    let h = 0;
    let len = limit;
    for (let i = min; i < limit; i++) {
      h = ((h << 1) + GEAR[data[start + i]]) | 0;
      if ((h & (i < avg ? maskS : maskL)) === 0) {
        len = i + 1;
        break;
      }
    }
    start += len;
    out.push(start);
  }
  return out;
}

test('the gear table is frozen (changing it changes every chunk id)', () => {
  assert.equal(GEAR.length, 256);
  assert.equal(createHash('sha256').update(new Uint8Array(GEAR.buffer, GEAR.byteOffset, GEAR.byteLength)).digest('hex'), '8c56bd81e4c5acbb35cc16b4da7ac091737f0aad0dad66979ecfedb7a29f2b9b');
  assert.equal(GEAR[0], 929134858);
  assert.equal(GEAR[255], -433390211);
});

test('fixed input has fixed cut points (the dedup contract)', () => {
  assert.deepEqual(
    cutPoints(prng(256 * 1024, 42), SMALL),
    [9710, 19068, 27885, 36670, 45556, 47967, 59860, 68280, 79944, 82641, 95063, 100316, 110763, 122904, 132079, 143793, 153899, 163288, 170119, 177145, 185721, 195061, 205450, 214713, 223240, 232376, 240960, 258991, 262144],
  );
  // default parameters: 256 KiB / 1 MiB / 4 MiB
  assert.deepEqual(cutPoints(prng(8 << 20, 7)), [1125682, 2269347, 4050859, 5104763, 6506476, 7893800, 8388608]);
});

test('matches the plain reference implementation, at every alignment', () => {
  const buf = prng((1 << 20) + 3, 99);
  for (const [min, avg, max] of [
    [2048, 8192, 32768],
    [64, 64, 64],
    [100, 300, 1000],
    [64, 256, 256],
    [1, 64, 4096],
  ]) {
    for (let skew = 0; skew < 4; skew++) {
      const d = buf.subarray(skew, skew + (1 << 20));
      assert.deepEqual(cutPoints(d, { min, avg, max }), reference(d, min, avg, max), `${min}/${avg}/${max} skew ${skew}`);
    }
  }
});

test('streaming over any split gives the one-shot cut points', () => {
  const data = prng(400 * 1024, 5);
  const whole = cutPoints(data, SMALL);
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: data.length }), { maxLength: 40 }), fc.integer({ min: 0, max: 3 }), (splits, skew) => {
      // a copy at a different byteOffset exercises the unaligned paths too
      const backing = new Uint8Array(data.length + 4);
      backing.set(data, skew);
      const d = backing.subarray(skew, skew + data.length);
      const points = [...new Set(splits)].sort((a, b) => a - b);
      const c = new FastCdc(SMALL);
      const got: number[] = [];
      let prev = 0;
      for (const p of [...points, data.length]) {
        got.push(...c.push(d.subarray(prev, p)));
        prev = p;
      }
      got.push(...c.finish());
      assert.deepEqual(got, whole);
    }),
    { numRuns: 60 },
  );
});

test('cut() from each chunk start, given max bytes or the rest, gives the one-shot cut points', () => {
  for (const opts of [SMALL, { min: 4096, avg: 4096, max: 16384 }]) {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 300 * 1024 }), fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 0, max: 3 }), (n, seed, skew) => {
        const data = seed % 3 === 0 ? new Uint8Array(n) : prng(n, seed);
        const backing = new Uint8Array(n + 4 + opts.max);
        backing.set(data, skew);
        const c = new FastCdc(opts);
        const got: number[] = [];
        for (let pos = 0; pos < n; ) {
          // at least max bytes (and a few more, maybe past the data: cut() must not look past max), or the rest
          const more = pos + opts.max < n;
          pos += c.cut(backing.subarray(skew + pos, skew + (more ? pos + opts.max + (seed % 5) : n)));
          got.push(pos);
        }
        assert.deepEqual(got, cutPoints(data, opts));
      }),
      { numRuns: 40 },
    );
  }
});

test('every chunk is within [min, max] except the last; the last ends the data', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 2 ** 31 }), fc.integer({ min: 0, max: 300 * 1024 }), (seed, n) => {
      const cuts = cutPoints(prng(n, seed), SMALL);
      if (n === 0) return assert.deepEqual(cuts, []);
      assert.equal(cuts[cuts.length - 1], n);
      let prev = 0;
      cuts.forEach((c, i) => {
        const len = c - prev;
        assert.ok(len <= SMALL.max && len >= 1);
        if (i < cuts.length - 1) assert.ok(len >= SMALL.min, `chunk ${i} is ${len} bytes`);
        prev = c;
      });
    }),
    { numRuns: 40 },
  );
});

test('data smaller than min is one chunk; empty data is none; finish resets', () => {
  assert.deepEqual(cutPoints(new Uint8Array(0), SMALL), []);
  assert.deepEqual(cutPoints(prng(2000, 1), SMALL), [2000]);
  const c = new FastCdc(SMALL);
  assert.deepEqual(c.push(prng(100, 2)), []);
  assert.deepEqual(c.finish(), [100]);
  assert.deepEqual(c.finish(), []);
  assert.equal(c.position, 0);
  assert.deepEqual(c.push(prng(100, 3)), []);
  assert.deepEqual(c.finish(), [100]);
});

test('unchanging input (all zeros) is cut at max', () => {
  const cuts = cutPoints(new Uint8Array(100_000), SMALL);
  assert.deepEqual(cuts, [32768, 65536, 98304, 100000]);
});

function chunkIds(data: Uint8Array): Set<string> {
  const ids = new Set<string>();
  let prev = 0;
  for (const c of cutPoints(data, SMALL)) {
    ids.add(hashBytes(data.subarray(prev, c)));
    prev = c;
  }
  return ids;
}

test('inserting 100 bytes in the middle changes at most 3 chunks', () => {
  for (const seed of [11, 12, 13]) {
    const data = prng(2 << 20, seed);
    const mid = (1 << 20) + seed * 1000;
    const edited = new Uint8Array(data.length + 100);
    edited.set(data.subarray(0, mid));
    edited.set(prng(100, seed + 1000), mid);
    edited.set(data.subarray(mid), mid + 100);
    const before = chunkIds(data);
    const after = chunkIds(edited);
    const fresh = [...after].filter((id) => !before.has(id)).length;
    assert.ok(fresh >= 1 && fresh <= 3, `${fresh} new chunks`);
    assert.ok(before.size > 150, `${before.size} chunks`);
  }
});

test('mean chunk size is near avg (normalized chunking)', () => {
  const data = prng(4 << 20, 77);
  const n = cutPoints(data, SMALL).length;
  const mean = data.length / n;
  assert.ok(mean > 7000 && mean < 12000, `mean ${mean}`);
});

test('rejects bad parameters', () => {
  for (const bad of [{ min: 0 }, { min: 10, avg: 5, max: 20 }, { avg: 32, min: 16, max: 64 }, { max: 2 ** 31 }, { min: 1.5 }]) {
    assert.throws(() => new FastCdc(bad), (e) => isFerryError(e, 'CONFIG_INVALID'));
  }
});
