// Applies the benchmark's standard change to a tree made by gen.ts, and
// optionally the image change, deterministically from a seed.
//
//   node bench/change.ts --tree DIR [--image FILE] [--scale 1] [--seed 1] [--round 1]
//
// Tree change (counts at scale 1, scaled like gen.ts; at least 1 each):
//   500 small files: one region rewritten in place (1 KiB .. rest of file)
//    20 medium files: 2-4 MiB appended
//     4 large files: 10 regions of 1 MiB (x scale) overwritten each
//   100 small files added, 100 deleted
// That is about 2.5 % of the tree's bytes written or removed at scale 1.
// Image change (--image): 1,000 writes of 64 KiB at random 4 KiB-aligned
// offsets. --round picks a different change for repeated rounds.

import { closeSync, openSync, readdirSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { type ContentKind, fillContent, TextSource } from './content.ts';
import { KiB, MiB, parseScale, parseSeed, scaled, scaledSize, STANDARD, writeFileContent } from './gen.ts';
import { Rng } from './prng.ts';

export const STANDARD_CHANGE = {
  modifySmall: 500,
  appendMedium: 20,
  appendMin: 2 * MiB,
  appendMax: 4 * MiB,
  largeRegions: 10,
  largeRegionSize: 1 * MiB,
  addSmall: 100,
  deleteSmall: 100,
  imageWrites: 1000,
  imageWriteSize: 64 * KiB,
} as const;

export interface ChangeStats {
  treeBytesBefore: number;
  modified: { files: number; bytes: number };
  appended: { files: number; bytes: number };
  largeRegions: { files: number; regions: number; bytes: number };
  added: { files: number; bytes: number };
  deleted: { files: number; bytes: number };
  changedBytes: number;
  changedPercent: number;
  seconds: number;
}

export interface ImageChangeStats {
  writes: number;
  bytes: number;
  seconds: number;
}

interface Entry {
  path: string; // absolute
  size: number;
}

/** Lists the tree in a fixed order: directories and files sorted by name. */
function walk(root: string): { dirs: string[]; small: Entry[]; medium: Entry[]; large: Entry[]; bytes: number } {
  const result = { dirs: [] as string[], small: [] as Entry[], medium: [] as Entry[], large: [] as Entry[], bytes: 0 };
  const visit = (dir: string): void => {
    const entries = readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        result.dirs.push(path);
        visit(path);
      } else if (entry.isFile()) {
        const size = statSync(path).size;
        result.bytes += size;
        const list = entry.name.startsWith('m') ? result.medium : entry.name.startsWith('L') ? result.large : result.small;
        list.push({ path, size });
      }
    }
  };
  visit(root);
  return result;
}

function kindOf(path: string): ContentKind {
  return path.endsWith('.bin') ? 'random' : 'text';
}

/** Overwrites [offset, offset+length) of an existing file with fresh content. */
function overwriteRegion(path: string, offset: number, length: number, kind: ContentKind, rng: Rng, text: TextSource): void {
  const fd = openSync(path, 'r+');
  try {
    const buf = new Uint8Array(Math.min(length, 8 * MiB));
    for (let done = 0; done < length; done += buf.length) {
      const part = buf.subarray(0, Math.min(buf.length, length - done));
      fillContent(kind, rng, text, part);
      writeSync(fd, part, 0, part.length, offset + done);
    }
  } finally {
    closeSync(fd);
  }
}

/** Applies the standard tree change; returns what it did. */
export async function changeTree(root: string, seed: number, scale: number, round = 1): Promise<ChangeStats> {
  const started = performance.now();
  const tree = walk(root);
  // One stream picks what to change; every write has a stream of its own.
  const rng = new Rng(seed, 'change', round);
  const stream = (...tags: Array<string | number>): [Rng, TextSource] => {
    const r = new Rng(seed, 'change', round, ...tags);
    return [r, new TextSource(seed, r)];
  };
  const stats: ChangeStats = {
    treeBytesBefore: tree.bytes,
    modified: { files: 0, bytes: 0 },
    appended: { files: 0, bytes: 0 },
    largeRegions: { files: 0, regions: 0, bytes: 0 },
    added: { files: 0, bytes: 0 },
    deleted: { files: 0, bytes: 0 },
    changedBytes: 0,
    changedPercent: 0,
    seconds: 0,
  };

  // Small files: one sample, the first part modified, the rest deleted.
  const nModify = scaled(STANDARD_CHANGE.modifySmall, scale);
  const nDelete = scaled(STANDARD_CHANGE.deleteSmall, scale);
  const picks = rng.sample(tree.small.length, nModify + nDelete).map((i) => tree.small[i]);
  for (const [k, file] of picks.slice(0, nModify).entries()) {
    const length = rng.int(Math.min(file.size, KiB), file.size);
    const offset = rng.int(0, file.size - length);
    overwriteRegion(file.path, offset, length, kindOf(file.path), ...stream('modify', k));
    stats.modified.files++;
    stats.modified.bytes += length;
  }

  for (const i of rng.sample(tree.medium.length, scaled(STANDARD_CHANGE.appendMedium, scale))) {
    const file = tree.medium[i];
    const length = rng.int(STANDARD_CHANGE.appendMin, STANDARD_CHANGE.appendMax);
    await writeFileContent(file.path, length, kindOf(file.path), ...stream('append', i), 'a');
    stats.appended.files++;
    stats.appended.bytes += length;
  }

  const regionSize = scaledSize(STANDARD_CHANGE.largeRegionSize, scale, 4 * KiB);
  for (const [f, file] of tree.large.entries()) {
    for (let r = 0; r < STANDARD_CHANGE.largeRegions; r++) {
      const length = Math.min(regionSize, file.size);
      const offset = rng.bigInt(0, file.size - length);
      overwriteRegion(file.path, offset, length, kindOf(file.path), ...stream('large', f, r));
      stats.largeRegions.regions++;
      stats.largeRegions.bytes += length;
    }
    stats.largeRegions.files++;
  }

  const nAdd = scaled(STANDARD_CHANGE.addSmall, scale);
  for (let i = 0; i < nAdd; i++) {
    const kind: ContentKind = i % 2 === 0 ? 'random' : 'text';
    const dir = tree.dirs[rng.int(0, tree.dirs.length - 1)] ?? root;
    const path = join(dir, `a${round}-${String(i).padStart(4, '0')}.${kind === 'random' ? 'bin' : 'txt'}`);
    const size = rng.int(STANDARD.smallMin, STANDARD.smallMax);
    await writeFileContent(path, size, kind, ...stream('add', i));
    stats.added.files++;
    stats.added.bytes += size;
  }

  for (const file of picks.slice(nModify)) {
    unlinkSync(file.path);
    stats.deleted.files++;
    stats.deleted.bytes += file.size;
  }

  stats.changedBytes = stats.modified.bytes + stats.appended.bytes + stats.largeRegions.bytes + stats.added.bytes + stats.deleted.bytes;
  stats.changedPercent = Math.round((10000 * stats.changedBytes) / tree.bytes) / 100;
  stats.seconds = (performance.now() - started) / 1000;
  return stats;
}

/** Applies the image change: scattered 64 KiB writes of random bytes, each from its own stream. */
export function changeImage(path: string, seed: number, scale: number, round = 1): ImageChangeStats {
  const started = performance.now();
  const size = statSync(path).size;
  const rng = new Rng(seed, 'image-change', round);
  const writes = scaled(STANDARD_CHANGE.imageWrites, scale);
  const length = STANDARD_CHANGE.imageWriteSize;
  const buf = new Uint8Array(length);
  const fd = openSync(path, 'r+');
  try {
    for (let i = 0; i < writes; i++) {
      const offset = rng.bigInt(0, Math.floor((size - length) / (4 * KiB))) * 4 * KiB;
      new Rng(seed, 'image-change', round, i).fillRandom(buf);
      writeSync(fd, buf, 0, length, offset);
    }
  } finally {
    closeSync(fd);
  }
  return { writes, bytes: writes * length, seconds: (performance.now() - started) / 1000 };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      tree: { type: 'string' },
      image: { type: 'string' },
      scale: { type: 'string' },
      seed: { type: 'string' },
      round: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || (!values.tree && !values.image)) {
    console.log('usage: node bench/change.ts [--tree DIR] [--image FILE] [--scale 1] [--seed 1] [--round 1]');
    process.exit(values.help ? 0 : 2);
  }
  const scale = parseScale(values.scale);
  const seed = parseSeed(values.seed);
  const round = Number(values.round ?? '1');
  if (!Number.isInteger(round) || round < 1) throw new Error(`--round must be a positive integer, got ${values.round}`);
  const result: Record<string, unknown> = { seed, scale, round };
  if (values.tree) result.tree = await changeTree(values.tree, seed, scale, round);
  if (values.image) result.image = changeImage(values.image, seed, scale, round);
  console.log(JSON.stringify(result, null, 2));
}

if (import.meta.main) {
  main().catch((err: unknown) => {
    console.error(`change: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
