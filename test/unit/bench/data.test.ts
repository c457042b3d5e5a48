// The benchmark's data is what docs/benchmark.md says it is: a small tree and
// image from bench/gen.ts, and the same after bench/change.ts, hold no 4 KiB
// block of random content twice (at any byte offset, in any file or the
// image), under 5 % of text blocks repeat, random content does not compress
// and text compresses about 3-4x with zstd -3. Data that repeats let
// deduplicating tools store a 4.4 GiB tree in 1.2-1.5 GiB and look faster
// than they are. Also: the generator is deterministic (same seed, same bytes;
// another seed, other bytes).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { changeImage, changeTree } from '../../../bench/change.ts';
import { checkData, imageRegions, type Region, treeRegions } from '../../../bench/data-check.ts';
import { generateImage, generateTree } from '../../../bench/gen.ts';
import { Rng } from '../../../bench/prng.ts';
import { tempDir } from '../../helpers.ts';

// 200 small files, one medium file, four large files of 1 MiB, a 16 MiB image.
const SCALE = 0.004;
const SEED = 7;

function assertHonest(what: string, regions: Region[]): void {
  const r = checkData(regions);
  const summary = `${what}: ${JSON.stringify({ ...r, examples: r.examples.slice(0, 3) })}`;
  assert.ok(r.randomBlocks > 1000, `too little random data to judge: ${summary}`);
  assert.equal(r.randomRepeats, 0, `random blocks repeat: ${summary}`);
  assert.ok(r.textBlocks > 1000, `too little text to judge: ${summary}`);
  assert.ok(r.textRepeats < 0.05 * r.textBlocks, `text blocks repeat (${r.textRepeats} of ${r.textBlocks}): ${summary}`);
  assert.ok(r.randomZstdRatio < 1.01, `random content compresses: ${summary}`);
  assert.ok(r.textZstdRatio > 2.5 && r.textZstdRatio < 5, `text does not compress about 3-4x: ${summary}`);
}

test('a small tree and image hold no repeated random block and few repeated text blocks, before and after the change', async () => {
  const tmp = tempDir('ferry-bench-data-');
  try {
    const tree = join(tmp.path, 'tree');
    const image = join(tmp.path, 'image.img');
    await generateTree(tree, SEED, SCALE);
    await generateImage(image, SEED, SCALE);
    assertHonest('generated', [...treeRegions(tree), ...imageRegions(image, SEED, SCALE)]);

    const before = readFileSync(image);
    await changeTree(tree, SEED, SCALE);
    changeImage(image, SEED, SCALE);
    // The image change writes random blocks anywhere (over text, zeros and
    // holes too): found by comparing, they join the random regions, and the
    // text regions lose them.
    const after = readFileSync(image);
    const written: Region[] = [];
    for (let at = 0; at < after.length; at += 4096) {
      if (before.compare(after, at, at + 4096, at, at + 4096) !== 0) written.push({ path: image, offset: at, length: 4096, kind: 'random' });
    }
    assert.ok(written.length > 0, 'the image change wrote nothing');
    const isWritten = (r: Region): boolean => written.some((w) => w.offset < r.offset + r.length && r.offset < w.offset + w.length);
    const text = imageRegions(image, SEED, SCALE).filter((r) => r.kind === 'text').flatMap((r) => {
      const parts: Region[] = [];
      for (let at = r.offset; at < r.offset + r.length; at += 4096) {
        const piece = { ...r, offset: at, length: Math.min(4096, r.offset + r.length - at) };
        if (!isWritten(piece)) parts.push(piece);
      }
      return parts;
    });
    const random = imageRegions(image, SEED, SCALE).filter((r) => r.kind === 'random');
    assertHonest('changed', [...treeRegions(tree), ...random, ...written.filter((w) => !random.some((r) => r.offset <= w.offset && w.offset < r.offset + r.length)), ...text]);
  } finally {
    tmp.cleanup();
  }
});

test('the generator is deterministic: the same seed gives the same bytes, another seed others', async () => {
  const tmp = tempDir('ferry-bench-det-');
  try {
    const digest = (dir: string): string => {
      const h = createHash('sha256');
      for (const r of treeRegions(dir)) h.update(r.path.slice(dir.length)).update(readFileSync(r.path));
      return h.digest('hex');
    };
    const scale = 0.001;
    await generateTree(join(tmp.path, 'a'), SEED, scale);
    await generateTree(join(tmp.path, 'b'), SEED, scale);
    await generateTree(join(tmp.path, 'c'), SEED + 1, scale);
    assert.equal(digest(join(tmp.path, 'a')), digest(join(tmp.path, 'b')));
    assert.notEqual(digest(join(tmp.path, 'a')), digest(join(tmp.path, 'c')));
  } finally {
    tmp.cleanup();
  }
});

test('streams differ per tag list: one tag, several tags, their order and the seed all matter', () => {
  const first = (rng: Rng): string => Array.from({ length: 4 }, () => rng.next().toString(16)).join(' ');
  const streams = [
    first(new Rng(1)),
    first(new Rng(1, 'small:0')),
    first(new Rng(1, 'small:1')),
    first(new Rng(2, 'small:0')),
    first(new Rng(1, 'image', 0)),
    first(new Rng(1, 'image', 65536)),
    first(new Rng(1, 65536, 'image')),
    first(new Rng(1, 'image/65536')),
    first(new Rng(1, 'a', 'b')),
    first(new Rng(1, 'a/b')),
  ];
  assert.equal(new Set(streams).size, streams.length, streams.join('\n'));
  assert.equal(first(new Rng(1, 'small:0')), first(new Rng(1, 'small:0')));
});
