// After an update replaces a file, hard links to it elsewhere in the replica
// are made again, even in directories the update did not touch; the look for
// them reads only subtrees that hold a link (treeHasHardlinks, remembered per
// tree id), so an update of a tree without links reads no unchanged subtree.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { linkSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createVolume } from '../../../src/site/volumes.ts';
import { createSnapshot } from '../../../src/site/snapshots.ts';
import { readManifest, treeHasHardlinks } from '../../../src/snapshot/graph.ts';
import { decodeTree } from '../../../src/snapshot/format.ts';
import type { ObjectId } from '../../../src/core/ids.ts';
import type { ObjectReader } from '../../../src/store/types.ts';
import { applyTree } from '../../../src/replication/apply.ts';
import { assertTreesEqual } from '../../helpers.ts';
import { withLocalSite } from '../local-site.ts';

test('a file replaced by an update is linked again where an untouched directory links to it', async () => {
  await withLocalSite('links', async ({ dir: tmpPath, site, pool }) => {
    const data = join(tmpPath, 'data');
    mkdirSync(join(data, 'a'), { recursive: true });
    mkdirSync(join(data, 'b', 'c'), { recursive: true });
    mkdirSync(join(data, 'z'), { recursive: true });
    writeFileSync(join(data, 'a', 'f'), 'first\n');
    linkSync(join(data, 'a', 'f'), join(data, 'b', 'c', 'l'));
    writeFileSync(join(data, 'z', 'plain'), 'no links here\n');
    createVolume(site, 'v', { members: [{ path: data }] });
    const root = async () => readManifest(site.store, (await createSnapshot(site, 'v', { pool })).snapshot.manifest).members[0].root;
    const first = await root();
    writeFileSync(join(data, 'a', 'f'), 'second, longer\n'); // same inode: both names change
    const second = await root();

    const replica = join(tmpPath, 'replica');
    await applyTree(replica, null, first, { store: site.store });
    assert.equal(readFileSync(join(replica, 'b', 'c', 'l'), 'utf8'), 'first\n');
    await applyTree(replica, first, second, { store: site.store });
    assert.equal(readFileSync(join(replica, 'b', 'c', 'l'), 'utf8'), 'second, longer\n');
    assert.equal(statSync(join(replica, 'b', 'c', 'l')).ino, statSync(join(replica, 'a', 'f')).ino, 'the link is to the new file');
    assertTreesEqual(replica, data);
  });
});

test('treeHasHardlinks reads a subtree once: a second question about it, or a tree sharing it, decodes nothing already known', async () => {
  await withLocalSite('links-memo', async ({ dir: tmpPath, site, pool }) => {
    const data = join(tmpPath, 'data');
    for (const d of ['p/q', 'r']) mkdirSync(join(data, d), { recursive: true });
    writeFileSync(join(data, 'p', 'q', 'x'), 'x\n');
    writeFileSync(join(data, 'r', 'y'), 'y\n');
    createVolume(site, 'v', { members: [{ path: data }] });
    const snap = async () => readManifest(site.store, (await createSnapshot(site, 'v', { pool })).snapshot.manifest).members[0].root;
    const one = await snap();
    const reads: ObjectId[] = [];
    const counting: ObjectReader = { has: (id) => site.store.has(id), info: (id) => site.store.info(id), get: (id) => (reads.push(id), site.store.get(id)) };
    assert.equal(treeHasHardlinks(counting, one), false);
    assert.equal(reads.length, 4, 'root, p, p/q, r');
    reads.length = 0;
    assert.equal(treeHasHardlinks(counting, one), false);
    assert.equal(reads.length, 0);
    // a change in r: the new root and the new r are read; p (unchanged) is known
    writeFileSync(join(data, 'r', 'y'), 'y changed\n');
    linkSync(join(data, 'r', 'y'), join(data, 'r', 'z'));
    const two = await snap();
    assert.equal(treeHasHardlinks(counting, two), true);
    const rTree = decodeTree(site.store.get(two)).entries.find((e) => e.name.toString() === 'r')!.tree!;
    assert.deepEqual(reads.sort(), [two, rTree].sort());
  });
});
