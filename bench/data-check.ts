// Checks that generated benchmark data is what it claims to be (bench/gen.ts):
// no 4 KiB block of random content occurs twice anywhere (at any byte offset,
// in any file or the image), text blocks seldom repeat, and text compresses
// about as documented. Data that repeats lets a deduplicating tool (ferry,
// restic, borg) store and send less than the data set's size, and flatters it.
//
//   node bench/data-check.ts DIR [--scale 1] [--seed 1]     (DIR as made by gen.ts)
//
// The unit test test/unit/bench/data.test.ts runs it on a small tree and image.

import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { constants as zlib, zstdCompressSync } from 'node:zlib';

import { type ContentKind } from './content.ts';
import { parseScale, parseSeed, planImage } from './gen.ts';

const BLOCK = 4096;

/** A stretch of a file with known content kind. */
export interface Region {
  path: string;
  offset: number;
  length: number;
  kind: ContentKind;
}

export interface DataReport {
  /** Aligned 4 KiB blocks of random content that were looked for. */
  randomBlocks: number;
  /** Of those, how many occur somewhere else too (any file, any byte offset). */
  randomRepeats: number;
  /** Bytes scanned (every byte offset of each) for copies of the random blocks. */
  scannedBytes: number;
  /** Aligned 4 KiB blocks of text. */
  textBlocks: number;
  /** Text blocks whose content occurs as another aligned text block too. */
  textRepeats: number;
  /** Raw / compressed, zstd level 3, each text region in pieces of at most 1 MiB. */
  textZstdRatio: number;
  /** Raw / compressed, zstd level 3, random regions (about 1: incompressible). */
  randomZstdRatio: number;
  examples: string[];
}

/** Regions of a tree made by gen.ts: *.bin random, everything else text. */
export function treeRegions(root: string): Region[] {
  const out: Region[] = [];
  const visit = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) visit(path);
      else if (entry.isFile()) out.push({ path, offset: 0, length: statSync(path).size, kind: entry.name.endsWith('.bin') ? 'random' : 'text' });
    }
  };
  visit(root);
  return out;
}

/** Regions of an image made by gen.ts with this seed and scale (its random and text extents). */
export function imageRegions(path: string, seed: number, scale: number): Region[] {
  return planImage(seed, scale).extents
    .filter((e): e is [number, number, ContentKind] => e[2] === 'random' || e[2] === 'text')
    .map(([offset, length, kind]) => ({ path, offset, length, kind }));
}

/** A 32-bit key of 8 bytes, spread for the bitmap. */
function key(w0: number, w1: number): number {
  return (Math.imul(w0 ^ Math.imul(w1, 0x9e3779b1), 0x85ebca6b) ^ w1) >>> 0;
}

const BITMAP_BITS = 1 << 24;

/**
 * Looks for every aligned 4 KiB block of the random regions at every byte
 * offset of every region (random and text), counts the blocks found more than
 * once; hashes aligned text blocks and counts repeats; compresses samples.
 */
export function checkData(regions: Region[]): DataReport {
  const files = new Map<string, Buffer>();
  const bytesOf = (r: Region): Buffer => {
    let buf = files.get(r.path);
    if (!buf) {
      buf = readFileSync(r.path);
      files.set(r.path, buf);
    }
    return buf.subarray(r.offset, r.offset + r.length);
  };
  const report: DataReport = {
    randomBlocks: 0, randomRepeats: 0, scannedBytes: 0, textBlocks: 0, textRepeats: 0, textZstdRatio: 0, randomZstdRatio: 0, examples: [],
  };

  // Index the random blocks by their first 8 bytes.
  const bitmap = new Uint8Array(BITMAP_BITS / 8);
  const blocks = new Map<number, Array<{ buf: Buffer; at: number; where: string; seen: number; first: string }>>();
  const all: Array<{ seen: number; where: string }> = [];
  for (const r of regions) {
    if (r.kind !== 'random') continue;
    const buf = bytesOf(r);
    for (let at = 0; at + BLOCK <= buf.length; at += BLOCK) {
      const k = key(buf.readUInt32LE(at), buf.readUInt32LE(at + 4));
      bitmap[(k & (BITMAP_BITS - 1)) >>> 3] |= 1 << (k & 7);
      const entry = { buf, at, where: `${r.path}@${r.offset + at}`, seen: 0, first: '' };
      const list = blocks.get(k);
      if (list) list.push(entry);
      else blocks.set(k, [entry]);
      all.push(entry);
    }
  }
  report.randomBlocks = all.length;

  // Scan every byte offset of every region for them.
  for (const r of regions) {
    const buf = bytesOf(r);
    report.scannedBytes += buf.length;
    if (buf.length < BLOCK) continue;
    let w0 = buf.readUInt32LE(0);
    let w1 = buf.readUInt32LE(4);
    const last = buf.length - BLOCK;
    for (let p = 0; ; p++) {
      const k = key(w0, w1);
      if (bitmap[(k & (BITMAP_BITS - 1)) >>> 3] & (1 << (k & 7))) {
        for (const b of blocks.get(k) ?? []) {
          if (b.buf.compare(buf, p, p + BLOCK, b.at, b.at + BLOCK) === 0) {
            b.seen++;
            const here = `${r.path}@${r.offset + p}`;
            if (b.seen === 1) b.first = here;
            else if (b.seen === 2 && report.examples.length < 5) report.examples.push(`random block ${b.where} found at ${b.first} and ${here}`);
          }
        }
      }
      if (p === last) break;
      w0 = (w0 >>> 8) | (buf[p + 4] << 24);
      w1 = (w1 >>> 8) | (buf[p + 8] << 24);
    }
  }
  report.randomRepeats = all.filter((b) => b.seen > 1).length;

  // Text: aligned blocks by hash. Compression of both kinds, in pieces of at most 1 MiB.
  const textHashes = new Map<string, number>();
  const raw = { text: 0, random: 0 };
  const packed = { text: 0, random: 0 };
  for (const r of regions) {
    const buf = bytesOf(r);
    for (let at = 0; at < buf.length; at += 1 << 20) {
      const piece = buf.subarray(at, Math.min(buf.length, at + (1 << 20)));
      raw[r.kind] += piece.length;
      packed[r.kind] += zstdCompressSync(piece, { params: { [zlib.ZSTD_c_compressionLevel]: 3 } }).length;
    }
    if (r.kind !== 'text') continue;
    for (let at = 0; at + BLOCK <= buf.length; at += BLOCK) {
      const h = createHash('sha256').update(buf.subarray(at, at + BLOCK)).digest('base64');
      textHashes.set(h, (textHashes.get(h) ?? 0) + 1);
      report.textBlocks++;
    }
  }
  for (const n of textHashes.values()) if (n > 1) report.textRepeats += n;
  report.textZstdRatio = packed.text ? raw.text / packed.text : 0;
  report.randomZstdRatio = packed.random ? raw.random / packed.random : 0;
  return report;
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { scale: { type: 'string' }, seed: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help || positionals.length !== 1) {
    console.log('usage: node bench/data-check.ts DIR [--scale 1] [--seed 1]   (DIR/tree and DIR/image.img as made by gen.ts)');
    process.exit(values.help ? 0 : 2);
  }
  const dir = positionals[0];
  const regions: Region[] = [];
  try {
    if (statSync(join(dir, 'tree')).isDirectory()) regions.push(...treeRegions(join(dir, 'tree')));
  } catch {
    // no tree
  }
  try {
    if (statSync(join(dir, 'image.img')).isFile()) regions.push(...imageRegions(join(dir, 'image.img'), parseSeed(values.seed), parseScale(values.scale)));
  } catch {
    // no image
  }
  if (regions.length === 0) throw new Error(`${dir} holds neither tree/ nor image.img`);
  const report = checkData(regions);
  console.log(JSON.stringify(report, null, 2));
  if (report.randomRepeats > 0 || report.textRepeats > 0.05 * report.textBlocks) process.exitCode = 1;
}

if (import.meta.main) {
  main().catch((err: unknown) => {
    console.error(`data-check: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
