// Single-core throughput of capture's CPU stages: FastCDC, SHA-256, zstd
// (levels 1 and 3, per 1 MiB chunk as the workers compress), on random and
// on text-like data, 256 MiB each (MIB=<n> to change), plus the cost of the
// compress-a-sample-first heuristic on incompressible data.
//   ./node_modules/.bin/node bench/micro/chunker.ts
import { createHash, randomFillSync } from 'node:crypto';
import { constants as zc, zstdCompressSync } from 'node:zlib';
import { FastCdc } from '../../src/snapshot/fastcdc.ts';
import { maybeCompress } from '../../src/snapshot/chunk-worker.ts';

const MIB = Number(process.env.MIB ?? 256);
const SIZE = MIB * 1024 * 1024;
const WINDOW = 8 * 1024 * 1024;
const CHUNK = 1024 * 1024;

function randomData(): Buffer {
  const b = Buffer.allocUnsafeSlow(SIZE);
  for (let o = 0; o < SIZE; o += 65536) randomFillSync(b, o, Math.min(65536, SIZE - o));
  return b;
}

/** Words, numbers and punctuation picked by an LCG: compresses about 3-4x, like source code or logs. */
function textData(): Buffer {
  const words = 'the of and to in is that for it as with was on be at by this had not are but from or have an they which one you were all she there would their we him been has when who will more no if out so said what up its about into than them can only other new some could time these two may then do first any my now such like our over man me even most made after also did many before must through back years where much your way well down should because each just those people how too little state good very make world still own see men work long get here between both life being under never day same another know while last might us great old year off come since against go came right used take three'.split(' ');
  const wbufs = words.map((w) => Buffer.from(w));
  const b = Buffer.allocUnsafeSlow(SIZE);
  let x = 12345;
  let o = 0;
  while (o < SIZE) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const r = x >>> 8;
    if (r % 17 === 0) {
      o += b.write(String(r % 100000), o, 'latin1');
    } else {
      const w = wbufs[r % wbufs.length];
      o += w.copy(b, o);
    }
    if (o < SIZE) b[o++] = r % 13 === 0 ? 0x0a : r % 7 === 0 ? 0x2c : 0x20;
  }
  return b;
}

function rate(bytes: number, ms: number): string {
  return `${((bytes / 1e6) / (ms / 1000)).toFixed(0).padStart(6)} MB/s`;
}

function time(f: () => void): number {
  const t = performance.now();
  f();
  return performance.now() - t;
}

function bench(name: string, data: Buffer): void {
  // warm up on a slice, then measure
  const cdc = new FastCdc();
  cdc.push(data.subarray(0, 16 * 1024 * 1024));
  cdc.finish();
  let chunks = 0;
  const cdcMs = time(() => {
    for (let o = 0; o < data.length; o += WINDOW) chunks += cdc.push(data.subarray(o, o + WINDOW)).length;
    chunks += cdc.finish().length;
  });
  console.log(`${name.padEnd(7)} fastcdc   ${rate(data.length, cdcMs)}  (${chunks} chunks, mean ${(data.length / chunks / 1024).toFixed(0)} KiB)`);

  const shaMs = time(() => {
    for (let o = 0; o < data.length; o += CHUNK) createHash('sha256').update(data.subarray(o, o + CHUNK)).digest();
  });
  console.log(`${name.padEnd(7)} sha256    ${rate(data.length, shaMs)}`);

  for (const level of [1, 3]) {
    let out = 0;
    const zMs = time(() => {
      for (let o = 0; o < data.length; o += CHUNK) {
        const c = data.subarray(o, o + CHUNK);
        out += zstdCompressSync(c, { pledgedSrcSize: c.length, params: { [zc.ZSTD_c_compressionLevel]: level } }).length;
      }
    });
    console.log(`${name.padEnd(7)} zstd -${level}  ${rate(data.length, zMs)}  (ratio ${(out / data.length).toFixed(3)})`);
  }

  // the policy the workers apply: sample first (default) vs always compressing
  for (const useSample of [true, false]) {
    let stored = 0;
    const ms = time(() => {
      for (let o = 0; o < data.length; o += CHUNK) {
        const c = data.subarray(o, o + CHUNK);
        stored += maybeCompress(c, 3, useSample)?.length ?? c.length;
      }
    });
    console.log(`${name.padEnd(7)} policy ${useSample ? 'sample' : 'always'} ${rate(data.length, ms)}  (stored ${(stored / data.length).toFixed(3)})`);
  }
}

console.log(`node ${process.version}, ${MIB} MiB per data set, one thread`);
bench('random', randomData());
bench('text', textData());
