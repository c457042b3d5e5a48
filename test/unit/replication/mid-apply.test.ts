// A replica caught part way through an apply (from F to T) holds, entry by
// entry, what F or T has, and maybe the apply's temporaries: none of that is
// "written by someone else". A file neither has, content or metadata neither
// has, a directory neither has, or image blocks neither has, are.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, openSync, closeSync, rmSync, truncateSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { captureTree } from '../../../src/snapshot/capture.ts';
import { captureImage } from '../../../src/snapshot/capture-image.ts';
import { foreignImageBlocks, foreignTreePaths } from '../../../src/replication/mid-apply.ts';
import { withLocalSite } from '../local-site.ts';

test('a tree part way from F to T is only the apply\'s work; a write besides it is named', async () => {
  await withLocalSite('mid', async ({ dir, site, pool }) => {
    const capture = async (p: string) => (await captureTree(p, { store: site.store, pool, startedAt: Date.now() })).root;
    const F = join(dir, 'F');
    const T = join(dir, 'T');
    mkdirSync(join(F, 'sub'), { recursive: true });
    writeFileSync(join(F, 'a.txt'), 'a1\n');
    writeFileSync(join(F, 'b.txt'), 'b1\n');
    writeFileSync(join(F, 'old.txt'), 'removed by the apply\n');
    writeFileSync(join(F, 'sub', 'c.txt'), 'c1\n');
    execFileSync('cp', ['-a', F, T]);
    writeFileSync(join(T, 'a.txt'), 'a2, changed\n');
    rmSync(join(T, 'old.txt'));
    writeFileSync(join(T, 'sub', 'new.txt'), 'new in T\n');
    mkdirSync(join(T, 'newdir'));
    writeFileSync(join(T, 'newdir', 'x'), 'x\n');
    const f = await capture(F);
    const t = await capture(T);

    // Part way: a.txt and sub/new.txt as in T, old.txt gone, newdir not made yet, an apply temporary
    // half written, directory mtimes touched by the apply.
    const C = join(dir, 'C');
    execFileSync('cp', ['-a', F, C]);
    execFileSync('cp', ['-a', join(T, 'a.txt'), join(C, 'a.txt')]);
    execFileSync('cp', ['-a', join(T, 'sub', 'new.txt'), join(C, 'sub', 'new.txt')]);
    rmSync(join(C, 'old.txt'));
    writeFileSync(join(C, 'sub', '.ferry-tmp.0123456789abcdef01234567'), 'half');
    utimesSync(join(C, 'sub'), new Date(), new Date());
    assert.deepEqual(foreignTreePaths(site.store, await capture(C), f, t), []);
    assert.deepEqual(foreignTreePaths(site.store, f, f, t), [], 'not started yet');
    assert.deepEqual(foreignTreePaths(site.store, t, f, t), [], 'done');

    // Someone else's writes: a new file, content neither has, a mode neither has, a directory neither has.
    writeFileSync(join(C, 'stray.txt'), 'written by the application\n');
    writeFileSync(join(C, 'b.txt'), 'b9\n');
    chmodSync(join(C, 'sub', 'c.txt'), 0o600);
    mkdirSync(join(C, 'extra'));
    writeFileSync(join(C, 'extra', 'y'), 'y\n');
    writeFileSync(join(C, '.ferry-tmp.not-one-of-ours'), 'a name like a temporary is not one\n');
    assert.deepEqual(foreignTreePaths(site.store, await capture(C), f, t, 10), ['.ferry-tmp.not-one-of-ours', 'b.txt', 'extra/', 'stray.txt', 'sub/c.txt']);
    assert.equal(foreignTreePaths(site.store, await capture(C), f, t, 2).length, 2, 'at most `limit`');
    // with no target known (its snapshot is gone), only F counts
    assert.ok(foreignTreePaths(site.store, await capture(C), f, null, 10).includes('a.txt'));
  });
});

test('an image part way from F to T: blocks of either are the apply\'s; others, or a size neither has, are not', async () => {
  await withLocalSite('mid-img', async ({ dir, site, pool }) => {
    const B = 64 * 1024;
    const img = join(dir, 'disk.img');
    const cap = async () => (await captureImage(img, { store: site.store, pool, startedAt: Date.now() })).root;
    const put = (block: number, data: Buffer) => {
      const fd = openSync(img, 'r+');
      writeSync(fd, data, 0, data.length, block * B);
      closeSync(fd);
    };
    const b0 = randomBytes(B);
    const b1 = randomBytes(B);
    const b2 = randomBytes(B);
    writeFileSync(img, Buffer.concat([b0, b1, b2]));
    const f = await cap();
    const t1 = randomBytes(B);
    const t2 = randomBytes(B);
    put(1, t1);
    put(2, t2);
    const t = await cap();
    put(2, b2); // part way: block 1 written, block 2 not yet
    assert.deepEqual(foreignImageBlocks(site.store, await cap(), f, t), []);
    put(0, randomBytes(B));
    assert.deepEqual(foreignImageBlocks(site.store, await cap(), f, t), [0]);
    truncateSync(img, 2 * B);
    assert.deepEqual(foreignImageBlocks(site.store, await cap(), f, t), [-1]);
    // A baseline part way (no image before): sized to T first, only block 1 written so far, the rest reads as zeros.
    writeFileSync(img, Buffer.alloc(0));
    truncateSync(img, 3 * B);
    put(1, t1);
    assert.deepEqual(foreignImageBlocks(site.store, await cap(), null, t), []);
    put(0, randomBytes(B));
    assert.deepEqual(foreignImageBlocks(site.store, await cap(), null, t), [0]);
  });
});
