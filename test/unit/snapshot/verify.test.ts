// verifySnapshots: a damaged object is reported with every snapshot and path
// that uses it, even when the snapshots share the subtree that holds it; sound
// objects are read once however many snapshots share them.
import { dirEntries } from '../../../src/snapshot/dir-pages.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FerryError } from '../../../src/core/errors.ts';
import type { ObjectId } from '../../../src/core/ids.ts';
import { createVolume } from '../../../src/site/volumes.ts';
import { createSnapshot } from '../../../src/site/snapshots.ts';
import { readManifest } from '../../../src/snapshot/graph.ts';
import { verifySnapshots } from '../../../src/snapshot/verify.ts';
import type { ObjectReader } from '../../../src/store/types.ts';
import { withLocalSite } from '../local-site.ts';

/** A reader over the real store that fails for chosen ids and counts reads. */
function damagedReader(store: ObjectReader, bad: Set<string>): ObjectReader & { reads: Map<string, number> } {
  const reads = new Map<string, number>();
  return {
    reads,
    has: (id) => store.has(id),
    info: (id) => store.info(id),
    get(id: ObjectId) {
      reads.set(id, (reads.get(id) ?? 0) + 1);
      if (bad.has(id)) throw new FerryError('OBJECT_CORRUPT', `object ${id} is damaged (test)`);
      return store.get(id);
    },
  };
}

function entryOf(store: ObjectReader, tree: ObjectId, name: string) {
  const e = dirEntries(store, tree).find((x) => x.name.toString() === name);
  assert.ok(e, `no entry ${name}`);
  return e;
}

test('damage inside a subtree shared by several snapshots names every snapshot and path', async () => {
  await withLocalSite('verify', async ({ dir: tmpPath, site, pool }) => {
    const data = join(tmpPath, 'data');
    mkdirSync(join(data, 'shared', 'deeper'), { recursive: true });
    writeFileSync(join(data, 'shared', 'deeper', 'victim'), 'victim contents\n');
    writeFileSync(join(data, 'shared', 'fine'), 'fine\n');
    writeFileSync(join(data, 'top'), 'one\n');
    createVolume(site, 'v', { members: [{ path: data }] });
    const s1 = (await createSnapshot(site, 'v', { pool })).snapshot;
    writeFileSync(join(data, 'top'), 'two\n');
    const s2 = (await createSnapshot(site, 'v', { pool })).snapshot;
    writeFileSync(join(data, 'top'), 'three\n');
    const s3 = (await createSnapshot(site, 'v', { pool })).snapshot;

    const root1 = readManifest(site.store, s1.manifest).members[0].root;
    const shared = entryOf(site.store, root1, 'shared').tree!;
    assert.equal(entryOf(site.store, readManifest(site.store, s3.manifest).members[0].root, 'shared').tree, shared, 'the subtree should be shared');
    const victim = entryOf(site.store, entryOf(site.store, shared, 'deeper').tree!, 'victim').chunks![0];

    // A damaged chunk deep in the shared subtree.
    const r1 = damagedReader(site.store, new Set([victim]));
    const report = verifySnapshots(r1, [s1, s2, s3]);
    assert.deepEqual(report.damagedSnapshots, [s1.id, s2.id, s3.id]);
    assert.equal(report.damaged.length, 1);
    assert.deepEqual(report.damaged[0].usedBy.map((u) => [u.snapshot, u.member, u.path]), [s1.id, s2.id, s3.id].map((id) => [id, 'data', 'shared/deeper/victim']));
    // The damaged chunk was read once; the sound chunk beside it too.
    assert.equal(r1.reads.get(victim), 1);
    const fine = entryOf(site.store, shared, 'fine').chunks![0];
    assert.equal(r1.reads.get(fine), 1);

    // A damaged tree object: the directory is named in every snapshot, read once.
    const deeper = entryOf(site.store, shared, 'deeper').tree!;
    const r2 = damagedReader(site.store, new Set([deeper]));
    const report2 = verifySnapshots(r2, [s1, s2, s3]);
    assert.deepEqual(report2.damagedSnapshots, [s1.id, s2.id, s3.id]);
    assert.deepEqual(report2.damaged.map((d) => [d.kind, d.usedBy.map((u) => u.path)]), [['tree', ['shared/deeper', 'shared/deeper', 'shared/deeper']]]);
    assert.equal(r2.reads.get(deeper), 1);

    // Nothing damaged: every object is read exactly once, and the counts agree.
    const r3 = damagedReader(site.store, new Set());
    const clean = verifySnapshots(r3, [s1, s2, s3]);
    assert.deepEqual(clean.damagedSnapshots, []);
    assert.ok([...r3.reads.values()].every((n) => n === 1), JSON.stringify([...r3.reads]));
    assert.equal(clean.objectsChecked, r3.reads.size);
  });
});

test('an undamaged snapshot is not named when it shares only sound parts with a damaged one', async () => {
  await withLocalSite('verify', async ({ dir: tmpPath, site, pool }) => {
    const data = join(tmpPath, 'data');
    mkdirSync(join(data, 'common'), { recursive: true });
    writeFileSync(join(data, 'common', 'c'), 'common\n');
    createVolume(site, 'v', { members: [{ path: data }] });
    const s1 = (await createSnapshot(site, 'v', { pool })).snapshot;
    writeFileSync(join(data, 'only-in-2'), 'second only\n');
    const s2 = (await createSnapshot(site, 'v', { pool })).snapshot;
    const only = entryOf(site.store, readManifest(site.store, s2.manifest).members[0].root, 'only-in-2').chunks![0];
    const report = verifySnapshots(damagedReader(site.store, new Set([only])), [s1, s2]);
    assert.deepEqual(report.damagedSnapshots, [s2.id]);
    assert.deepEqual(report.damaged[0].usedBy.map((u) => u.path), ['only-in-2']);
  });
});
