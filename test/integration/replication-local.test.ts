// Replication logic between two sites in one process (no network): the
// sender, the site receiver, commit and apply, and the writes check.
import { dirEntries } from '../../src/snapshot/dir-pages.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync, appendFileSync, rmSync, symlinkSync, renameSync, chmodSync, readFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Site } from '../../src/site/site.ts';
import { createVolume } from '../../src/site/volumes.ts';
import { createSnapshot } from '../../src/site/snapshots.ts';
import { SiteReceiver } from '../../src/site/receiver.ts';
import { sendSnapshot } from '../../src/replication/sender.ts';
import { ChunkPool } from '../../src/snapshot/chunk-pool.ts';
import { PROTOCOL_VERSION } from '../../src/replication/types.ts';
import { readManifest } from '../../src/snapshot/graph.ts';
import type { ObjectId } from '../../src/core/ids.ts';
import { assertTreesEqual, tempDir } from '../helpers.ts';
import { listSnapshots } from '../../src/catalog/snapshots.ts';
import { getVolume } from '../../src/catalog/volumes.ts';

test('initial and incremental transfer bring the replica exactly to each snapshot', async () => {
  const tmp = tempDir();
  const a = Site.init(join(tmp.path, 'a'), 'a');
  const b = Site.init(join(tmp.path, 'b'), 'b');
  const pool = new ChunkPool();
  try {
    const data = join(tmp.path, 'data');
    mkdirSync(join(data, 'd1', 'd2'), { recursive: true });
    writeFileSync(join(data, 'small.txt'), 'hello\n');
    writeFileSync(join(data, 'd1', 'big.bin'), randomBytes(3 << 20));
    writeFileSync(join(data, 'd1', 'd2', 'gone.txt'), 'bye');
    symlinkSync('../small.txt', join(data, 'd1', 'link'));
    createVolume(a, 'vol', { members: [{ path: data }] });
    const rx = new SiteReceiver(b, a.id, pool);
    const hello = await rx.hello({ protocol: PROTOCOL_VERSION, sourceVolume: 'vol', volume: 'vol', members: [{ name: 'data', kind: 'tree' }] });
    assert.equal(hello.applied, null);
    const replica = hello.replicas[0].path;

    const s1 = await createSnapshot(a, 'vol', { pool });
    const t1 = await sendSnapshot(a.store, rx, 'vol', s1.snapshot.manifest);
    assert.ok(t1.objectsSent >= 5);
    const c1 = await rx.commit('vol', { snapshot: s1.snapshot.id, manifest: s1.snapshot.manifest });
    assert.equal(c1.applied, true);
    assertTreesEqual(replica, data);

    // change: modify, add, remove, rename, chmod
    appendFileSync(join(data, 'small.txt'), 'more\n');
    writeFileSync(join(data, 'new.txt'), 'new');
    rmSync(join(data, 'd1', 'd2'), { recursive: true });
    renameSync(join(data, 'd1', 'big.bin'), join(data, 'big-renamed.bin'));
    chmodSync(join(data, 'new.txt'), 0o600);
    const s2 = await createSnapshot(a, 'vol', { pool });
    const t2 = await sendSnapshot(a.store, rx, 'vol', s2.snapshot.manifest);
    // The renamed 3 MiB file's chunks are already there: only metadata and the small files move.
    assert.ok(t2.rawBytesSent < 100_000, `sent ${t2.rawBytesSent} bytes`);
    const c2 = await rx.commit('vol', { snapshot: s2.snapshot.id, manifest: s2.snapshot.manifest });
    assert.equal(c2.applied, true);
    assertTreesEqual(replica, data);
    // Older replication snapshots are released at the destination; the base is held.
    const bs = listSnapshots(b.catalog, 'vol');
    assert.deepEqual(bs.map((s) => s.id), [s2.snapshot.id]);
    assert.equal(bs[0].holds.length, 1);

    // Resending the same snapshot is idempotent; an older one is refused.
    assert.equal((await rx.commit('vol', { snapshot: s2.snapshot.id, manifest: s2.snapshot.manifest })).applied, true);
    await assert.rejects(rx.commit('vol', { snapshot: s1.snapshot.id, manifest: s1.snapshot.manifest }), /incomplete|older/);

    // Someone writes into the replica: kept in a snapshot, update refused unless forced.
    writeFileSync(join(replica, 'intruder.txt'), 'local write');
    writeFileSync(join(data, 'third.txt'), '3');
    const s3 = await createSnapshot(a, 'vol', { pool });
    await sendSnapshot(a.store, rx, 'vol', s3.snapshot.manifest);
    const c3 = await rx.commit('vol', { snapshot: s3.snapshot.id, manifest: s3.snapshot.manifest });
    assert.equal(c3.applied, false);
    assert.match(c3.refused!, /wrote into the replica/);
    assert.ok(c3.writesSnapshot?.startsWith('replica-writes-'));
    assert.equal(readFileSync(join(replica, 'intruder.txt'), 'utf8'), 'local write');
    const forced = await rx.commit('vol', { snapshot: s3.snapshot.id, manifest: s3.snapshot.manifest, force: true });
    assert.equal(forced.applied, true);
    assertTreesEqual(replica, data);
    // The intruder's write is still restorable from the kept snapshot.
    assert.ok(listSnapshots(b.catalog, 'vol').some((s) => s.name === c3.writesSnapshot));

    // A peer cannot write into a volume that is not its secondary.
    const other = new SiteReceiver(b, 'SOMEONEELSE', pool);
    await assert.rejects(other.missing('vol', []), /may not write/);
    assert.equal(getVolume(b.catalog, 'vol').role, 'secondary');
  } finally {
    await pool.close();
    a.close();
    b.close();
    tmp.cleanup();
  }
});

test('an image update asks only about the blocks that differ from the base, and the commit looks up only those', async () => {
  const tmp = tempDir();
  const a = Site.init(join(tmp.path, 'a'), 'a');
  const b = Site.init(join(tmp.path, 'b'), 'b');
  const pool = new ChunkPool();
  try {
    const disk = join(tmp.path, 'disk.img');
    writeFileSync(disk, randomBytes(8 << 20)); // 128 blocks of 64 KiB
    createVolume(a, 'img', { members: [{ path: disk, kind: 'image' }] });
    const rx = new SiteReceiver(b, a.id, pool);
    const hello = await rx.hello({ protocol: PROTOCOL_VERSION, sourceVolume: 'img', volume: 'img', members: [{ name: 'disk.img', kind: 'image' }] });
    const replica = hello.replicas[0].path;
    const s1 = await createSnapshot(a, 'img', { pool });
    await sendSnapshot(a.store, rx, 'img', s1.snapshot.manifest);
    assert.equal((await rx.commit('img', { snapshot: s1.snapshot.id, manifest: s1.snapshot.manifest })).applied, true);

    const fd = openSync(disk, 'r+');
    writeSync(fd, randomBytes(4096), 0, 4096, 5 * 65536 + 100); // block 5
    writeSync(fd, randomBytes(4096), 0, 4096, 90 * 65536); // block 90
    closeSync(fd);
    const s2 = await createSnapshot(a, 'img', { pool });
    const t2 = await sendSnapshot(a.store, rx, 'img', s2.snapshot.manifest, { deltaBase: s1.snapshot.manifest });
    // manifest, image, block list, the base's list (asked whether held), 2 blocks, their 2 references
    assert.ok(t2.objectsOffered < 16, `offered ${t2.objectsOffered} ids for 2 changed blocks of 128`);
    assert.equal(t2.objectsSent, 5);
    assert.equal((await rx.commit('img', { snapshot: s2.snapshot.id, manifest: s2.snapshot.manifest })).applied, true);
    assert.ok(readFileSync(replica).equals(readFileSync(disk)), 'image replica differs');
  } finally {
    await pool.close();
    a.close();
    b.close();
    tmp.cleanup();
  }
});

test('a tree update asks only about the files that differ from the base in changed directories; the commit checks against the base and the replica is exact', async () => {
  const tmp = tempDir();
  const a = Site.init(join(tmp.path, 'a'), 'a');
  const b = Site.init(join(tmp.path, 'b'), 'b');
  const pool = new ChunkPool();
  try {
    const data = join(tmp.path, 'data');
    for (let d = 0; d < 4; d++) {
      mkdirSync(join(data, `d${d}`), { recursive: true });
      for (let f = 0; f < 50; f++) writeFileSync(join(data, `d${d}`, `f${f}`), `${d}/${f}\n`.repeat(10 + f));
    }
    createVolume(a, 'v', { members: [{ name: 'data', path: data }] });
    const rx = new SiteReceiver(b, a.id, pool);
    const hello = await rx.hello({ protocol: PROTOCOL_VERSION, sourceVolume: 'v', volume: 'v', members: [{ name: 'data', kind: 'tree' }] });
    const replica = hello.replicas[0].path;
    const s1 = await createSnapshot(a, 'v', { pool });
    await sendSnapshot(a.store, rx, 'v', s1.snapshot.manifest);
    assert.equal((await rx.commit('v', { snapshot: s1.snapshot.id, manifest: s1.snapshot.manifest })).applied, true);
    // the commit recorded that the snapshot has no hard links: the next check may take it as its base
    assert.equal(listSnapshots(b.catalog, 'v').find((x) => x.id === s1.snapshot.id)?.stats.links, 0);

    appendFileSync(join(data, 'd1', 'f7'), 'changed\n');
    writeFileSync(join(data, 'd2', 'new'), 'new\n');
    renameSync(join(data, 'd3', 'f0'), join(data, 'd2', 'moved-in'));
    const s2 = await createSnapshot(a, 'v', { pool });
    const t2 = await sendSnapshot(a.store, rx, 'v', s2.snapshot.manifest, { deltaBase: s1.snapshot.manifest });
    // manifest, root, 3 changed trees (+ the bases asked whether held), then only the chunks of
    // f7, new and moved-in: not the 150 unchanged files of the changed directories
    assert.ok(t2.objectsOffered < 20, `offered ${t2.objectsOffered} ids for 3 changed files`);
    assert.equal((await rx.commit('v', { snapshot: s2.snapshot.id, manifest: s2.snapshot.manifest })).applied, true);
    assertTreesEqual(data, replica);
  } finally {
    await pool.close();
    a.close();
    b.close();
    tmp.cleanup();
  }
});

test('a staged baseline: a write into the replica meanwhile is kept and refused, the forced apply takes what was staged; a tree with its own .ferry-stage is applied as it is', async () => {
  const tmp = tempDir();
  const a = Site.init(join(tmp.path, 'a'), 'a');
  const b = Site.init(join(tmp.path, 'b'), 'b');
  const pool = new ChunkPool();
  const lastApply = () => JSON.parse(b.catalog.db.get<{ detail: string }>("SELECT detail FROM events WHERE kind = 'replica.apply' AND outcome <> 'info' ORDER BY id DESC LIMIT 1")!.detail);
  try {
    const data = join(tmp.path, 'data');
    for (const d of ['one/deep', 'two', 'three']) {
      mkdirSync(join(data, d), { recursive: true });
      writeFileSync(join(data, d, 'file.txt'), `${d}\n`.repeat(100));
    }
    createVolume(a, 'vol', { members: [{ path: data }] });
    const rx = new SiteReceiver(b, a.id, pool);
    const hello = await rx.hello({ protocol: PROTOCOL_VERSION, sourceVolume: 'vol', volume: 'vol', members: [{ name: 'data', kind: 'tree' }] });
    const replica = hello.replicas[0].path;
    const s1 = await createSnapshot(a, 'vol', { pool });
    await sendSnapshot(a.store, rx, 'vol', s1.snapshot.manifest);
    // Someone writes into the replica before the commit: the writes check sees it (not the staging area).
    writeFileSync(join(replica, 'intruder.txt'), 'local write');
    const refused = await rx.commit('vol', { snapshot: s1.snapshot.id, manifest: s1.snapshot.manifest });
    assert.equal(refused.applied, false);
    assert.ok(refused.writesSnapshot?.startsWith('replica-writes-'), JSON.stringify(refused));
    const kept = readManifest(b.store, listSnapshots(b.catalog, 'vol').find((s) => s.name === refused.writesSnapshot)!.manifest as ObjectId);
    const keptNames = dirEntries(b.store, kept.members[0].root).map((e) => e.name.toString());
    assert.deepEqual(keptNames, ['intruder.txt'], 'the kept snapshot holds the write, not the staging area');
    const forced = await rx.commit('vol', { snapshot: s1.snapshot.id, manifest: s1.snapshot.manifest, force: true });
    assert.equal(forced.applied, true);
    assertTreesEqual(replica, data);
    assert.ok(lastApply().staging.taken >= 3, JSON.stringify(lastApply()));
    assert.ok(!existsSync(join(replica, '.ferry-stage')));

    // A second volume whose tree has an entry named like the staging area, at its root.
    const data2 = join(tmp.path, 'data2');
    mkdirSync(join(data2, '.ferry-stage', 'inner'), { recursive: true });
    writeFileSync(join(data2, '.ferry-stage', 'inner', 'mine.txt'), 'the source owns this name\n');
    mkdirSync(join(data2, 'plain'));
    writeFileSync(join(data2, 'plain', 'f.txt'), 'plain\n');
    createVolume(a, 'vol2', { members: [{ path: data2 }] });
    const hello2 = await rx.hello({ protocol: PROTOCOL_VERSION, sourceVolume: 'vol2', volume: 'vol2', members: [{ name: 'data2', kind: 'tree' }] });
    const s2 = await createSnapshot(a, 'vol2', { pool });
    await sendSnapshot(a.store, rx, 'vol2', s2.snapshot.manifest);
    const c2 = await rx.commit('vol2', { snapshot: s2.snapshot.id, manifest: s2.snapshot.manifest });
    assert.equal(c2.applied, true, JSON.stringify(c2));
    assertTreesEqual(hello2.replicas[0].path, data2);
    assert.equal(lastApply().staging, undefined, 'no staging for that snapshot');
  } finally {
    await pool.close();
    b.close();
    a.close();
    tmp.cleanup();
  }
});
