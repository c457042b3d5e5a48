// Generates the benchmark's standard data set, deterministically from a seed.
//
//   node bench/gen.ts --out DIR [--scale 1] [--seed 1] [--no-tree] [--no-image]
//
// DIR/tree       ~50,000 files of 1-64 KiB in ~2,000 directories (up to 4
//                levels deep), 200 files of 1-20 MiB, 4 files of ~200 MiB;
//                half of the bytes random, half log-like text (zstd -3 ~3.2x).
// DIR/image.img  a 4 GiB sparse image: random, text and written-zero extents
//                between holes (ftruncate; holes are never written).
//
// --scale multiplies the counts of small files, directories and medium files,
// the size of the 4 large files and the size of the image (small and medium
// file sizes stay as they are). Names tell the class of a file, which
// change.ts relies on: s*.{bin,txt} small, m*.{bin,log} medium, L*.{bin,log}
// large. The same seed and scale always give the same bytes.

import { closeSync, existsSync, ftruncateSync, mkdirSync, openSync, readdirSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { type ContentKind, fillContent, TextSource } from './content.ts';
import { Rng } from './prng.ts';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

/** The standard data set at scale 1. */
export const STANDARD = {
  directories: 2000,
  maxDepth: 4,
  smallFiles: 50000,
  smallMin: 1 * KiB,
  smallMax: 64 * KiB,
  mediumFiles: 200,
  mediumMin: 1 * MiB,
  mediumMax: 20 * MiB,
  largeFiles: 4,
  largeSize: 200 * MiB,
  imageSize: 4 * GiB,
} as const;

export interface Layout {
  seed: number;
  scale: number;
  directories: string[]; // relative paths, parents before children
  files: PlannedFile[];
}

export interface PlannedFile {
  path: string; // relative to the tree root
  size: number;
  kind: ContentKind;
  tag: string; // names the file's random stream
}

export interface GenStats {
  directories: number;
  files: number;
  bytes: number;
  randomBytes: number;
  textBytes: number;
  seconds: number;
}

export interface ImageStats {
  size: number;
  randomBytes: number;
  textBytes: number;
  zeroBytes: number; // written zeros
  holeBytes: number; // never written
  seconds: number;
}

/** Count scaled from the standard one, at least 1. */
export function scaled(count: number, scale: number): number {
  return Math.max(1, Math.round(count * scale));
}

/** Size scaled from the standard one, rounded to 4 KiB, at least minimum. */
export function scaledSize(size: number, scale: number, minimum: number): number {
  return Math.max(minimum, Math.round((size * scale) / (4 * KiB)) * 4 * KiB);
}

/** Plans the tree: directory paths and every file with its size and kind. */
export function planTree(seed: number, scale: number): Layout {
  const rng = new Rng(seed, 'layout');
  const dirCount = scaled(STANDARD.directories, scale);
  const dirs: Array<{ path: string; depth: number }> = [{ path: '', depth: 0 }];
  for (let i = 1; i <= dirCount; i++) {
    // Parent: any existing directory not at the maximum depth; early ones
    // collect more children, which gives a bushy tree a few levels deep.
    let parent = dirs[rng.int(0, dirs.length - 1)];
    while (parent.depth >= STANDARD.maxDepth) parent = dirs[rng.int(0, dirs.length - 1)];
    const name = `d${String(i).padStart(4, '0')}`;
    dirs.push({ path: parent.path ? `${parent.path}/${name}` : name, depth: parent.depth + 1 });
  }
  const pickDir = (): string => dirs[rng.int(1, dirs.length - 1)].path;
  const files: PlannedFile[] = [];
  const smallCount = scaled(STANDARD.smallFiles, scale);
  for (let i = 0; i < smallCount; i++) {
    const kind: ContentKind = i % 2 === 0 ? 'random' : 'text';
    const name = `s${String(i).padStart(5, '0')}.${kind === 'random' ? 'bin' : 'txt'}`;
    files.push({ path: `${pickDir()}/${name}`, size: rng.int(STANDARD.smallMin, STANDARD.smallMax), kind, tag: `small:${i}` });
  }
  const mediumCount = scaled(STANDARD.mediumFiles, scale);
  for (let i = 0; i < mediumCount; i++) {
    const kind: ContentKind = i % 2 === 0 ? 'random' : 'text';
    const name = `m${String(i).padStart(3, '0')}.${kind === 'random' ? 'bin' : 'log'}`;
    files.push({ path: `${pickDir()}/${name}`, size: rng.int(STANDARD.mediumMin, STANDARD.mediumMax), kind, tag: `medium:${i}` });
  }
  const largeBase = scaledSize(STANDARD.largeSize, scale, 1 * MiB);
  for (let i = 0; i < STANDARD.largeFiles; i++) {
    const kind: ContentKind = i % 2 === 0 ? 'random' : 'text';
    const name = `L${i}.${kind === 'random' ? 'bin' : 'log'}`;
    const size = Math.round(largeBase * (0.95 + 0.1 * rng.float()));
    files.push({ path: `${pickDir()}/${name}`, size, kind, tag: `large:${i}` });
  }
  return { seed, scale, directories: dirs.slice(1).map((d) => d.path), files };
}

const BLOCK = 8 * MiB;

/**
 * Writes one file with large writes, generating the next block while the
 * previous one is being written.
 */
export async function writeFileContent(
  path: string, size: number, kind: ContentKind, rng: Rng, text: TextSource,
  flags: string = 'wx', position: number | null = null,
): Promise<void> {
  const handle = await open(path, flags);
  try {
    let done = 0;
    let pending: Promise<unknown> | null = null;
    let buffers = [new Uint8Array(Math.min(size, BLOCK)), new Uint8Array(Math.min(size, BLOCK))];
    let which = 0;
    while (done < size) {
      const n = Math.min(BLOCK, size - done);
      const buf = buffers[which].subarray(0, n);
      fillContent(kind, rng, text, buf);
      if (pending) await pending;
      pending = handle.write(buf, 0, n, position === null ? null : position + done);
      done += n;
      which ^= 1;
    }
    if (pending) await pending;
    buffers = [];
  } finally {
    await handle.close();
  }
}

/** Runs jobs with at most `limit` in flight. */
async function runLimited<T>(items: T[], limit: number, job: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await job(items[next++]);
  });
  await Promise.all(workers);
}

/** Creates DIR (which must not exist or be empty) and the tree in it. */
export async function generateTree(root: string, seed: number, scale: number): Promise<GenStats> {
  const started = performance.now();
  ensureFresh(root);
  const layout = planTree(seed, scale);
  for (const dir of layout.directories) mkdirSync(join(root, dir));
  const stats: GenStats = { directories: layout.directories.length, files: 0, bytes: 0, randomBytes: 0, textBytes: 0, seconds: 0 };
  // Small files: generating content on the main thread while libuv's threads
  // create and write earlier files (file creation is the slow part on disk).
  await runLimited(layout.files, 8, async (file) => {
    const rng = new Rng(seed, file.tag);
    await writeFileContent(join(root, file.path), file.size, file.kind, rng, new TextSource(seed, rng));
    stats.files++;
    stats.bytes += file.size;
    if (file.kind === 'random') stats.randomBytes += file.size;
    else stats.textBytes += file.size;
  });
  stats.seconds = (performance.now() - started) / 1000;
  return stats;
}

/** Plans the image's extents: [offset, length, kind] with kind 'hole' left unwritten. */
export function planImage(seed: number, scale: number): { size: number; extents: Array<[number, number, ContentKind | 'zero' | 'hole']> } {
  const size = scaledSize(STANDARD.imageSize, scale, 16 * MiB);
  const rng = new Rng(seed, 'image-layout');
  const extents: Array<[number, number, ContentKind | 'zero' | 'hole']> = [];
  const maxUnits = Math.max(2, Math.round(256 * Math.min(1, scale)));
  let offset = 0;
  while (offset < size) {
    // Extents of 64 KiB .. 16 MiB (at scale 1; the upper bound scales), 64 KiB aligned.
    const length = Math.min(size - offset, rng.int(1, maxUnits) * 64 * KiB);
    const r = rng.float();
    const kind = r < 0.4 ? 'random' : r < 0.7 ? 'text' : r < 0.8 ? 'zero' : 'hole';
    extents.push([offset, length, kind]);
    offset += length;
  }
  return { size, extents };
}

/** Creates the sparse image file (which must not exist). */
export async function generateImage(path: string, seed: number, scale: number): Promise<ImageStats> {
  const started = performance.now();
  if (existsSync(path)) throw new Error(`${path} exists; the benchmark writes into fresh paths only`);
  const { size, extents } = planImage(seed, scale);
  const fd = openSync(path, 'wx');
  ftruncateSync(fd, size);
  closeSync(fd);
  const stats: ImageStats = { size, randomBytes: 0, textBytes: 0, zeroBytes: 0, holeBytes: 0, seconds: 0 };
  const zeros = new Uint8Array(Math.min(BLOCK, size));
  const handle = await open(path, 'r+');
  try {
    for (const [offset, length, kind] of extents) {
      if (kind === 'hole') {
        stats.holeBytes += length;
        continue;
      }
      if (kind === 'zero') {
        for (let done = 0; done < length; done += BLOCK) {
          const n = Math.min(BLOCK, length - done);
          await handle.write(zeros, 0, n, offset + done);
        }
        stats.zeroBytes += length;
        continue;
      }
      const rng = new Rng(seed, 'image', offset);
      await writeExtent(handle, offset, length, kind, rng, new TextSource(seed, rng));
      if (kind === 'random') stats.randomBytes += length;
      else stats.textBytes += length;
    }
  } finally {
    await handle.close();
  }
  stats.seconds = (performance.now() - started) / 1000;
  return stats;
}

async function writeExtent(
  handle: Awaited<ReturnType<typeof open>>, offset: number, length: number, kind: ContentKind, rng: Rng, text: TextSource,
): Promise<void> {
  const buffers = [new Uint8Array(Math.min(length, BLOCK)), new Uint8Array(Math.min(length, BLOCK))];
  let pending: Promise<unknown> | null = null;
  let which = 0;
  for (let done = 0; done < length; done += BLOCK) {
    const n = Math.min(BLOCK, length - done);
    const buf = buffers[which].subarray(0, n);
    fillContent(kind, rng, text, buf);
    if (pending) await pending;
    pending = handle.write(buf, 0, n, offset + done);
    which ^= 1;
  }
  if (pending) await pending;
}

/** What the data set of a seed and scale will take, from its plan (nothing is written): for the free-space check. */
export interface Footprint {
  files: number;
  directories: number;
  treeBytes: number;
  /** The tree's files rounded up to 4 KiB blocks, plus a block per directory. */
  treeAllocated: number;
  treeRandomBytes: number;
  treeTextBytes: number;
  imageSize: number;
  /** The image's extents that are written (random, text, zeros). */
  imageAllocated: number;
  imageRandomBytes: number;
  imageTextBytes: number;
}

export function footprint(seed: number, scale: number): Footprint {
  const layout = planTree(seed, scale);
  const block = (n: number): number => Math.ceil(n / (4 * KiB)) * 4 * KiB;
  const image = planImage(seed, scale);
  const sum = (f: (e: [number, number, ContentKind | 'zero' | 'hole']) => boolean): number => image.extents.filter(f).reduce((s, e) => s + e[1], 0);
  return {
    files: layout.files.length,
    directories: layout.directories.length,
    treeBytes: layout.files.reduce((s, f) => s + f.size, 0),
    treeAllocated: layout.files.reduce((s, f) => s + block(f.size), 0) + 4 * KiB * layout.directories.length,
    treeRandomBytes: layout.files.filter((f) => f.kind === 'random').reduce((s, f) => s + f.size, 0),
    treeTextBytes: layout.files.filter((f) => f.kind === 'text').reduce((s, f) => s + f.size, 0),
    imageSize: image.size,
    imageAllocated: sum((e) => e[2] !== 'hole'),
    imageRandomBytes: sum((e) => e[2] === 'random'),
    imageTextBytes: sum((e) => e[2] === 'text'),
  };
}

/** Refuses a directory with anything in it; creates it if missing. */
export function ensureFresh(dir: string): void {
  if (existsSync(dir) && readdirSync(dir).length > 0) {
    throw new Error(`${dir} is not empty; the benchmark writes into fresh directories only`);
  }
  mkdirSync(dir, { recursive: true });
}

export function parseScale(text: string | undefined): number {
  const scale = Number(text ?? '1');
  if (!(scale > 0) || scale > 10) throw new Error(`--scale must be a number in (0, 10], got ${text}`);
  return scale;
}

export function parseSeed(text: string | undefined): number {
  const seed = Number(text ?? '1');
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new Error(`--seed must be an integer in [0, 2^32), got ${text}`);
  return seed;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string' },
      scale: { type: 'string' },
      seed: { type: 'string' },
      'no-tree': { type: 'boolean' },
      'no-image': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || !values.out) {
    console.log('usage: node bench/gen.ts --out DIR [--scale 1] [--seed 1] [--no-tree] [--no-image]');
    process.exit(values.help ? 0 : 2);
  }
  const scale = parseScale(values.scale);
  const seed = parseSeed(values.seed);
  mkdirSync(values.out, { recursive: true });
  const result: Record<string, unknown> = { seed, scale };
  if (!values['no-tree']) result.tree = await generateTree(join(values.out, 'tree'), seed, scale);
  if (!values['no-image']) result.image = await generateImage(join(values.out, 'image.img'), seed, scale);
  console.log(JSON.stringify(result, null, 2));
}

if (import.meta.main) {
  main().catch((err: unknown) => {
    console.error(`gen: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
