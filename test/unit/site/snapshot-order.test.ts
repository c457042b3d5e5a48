// The order of a volume's snapshots at one site when some were taken at
// another site, on another clock (here: an hour ahead): `latest`, the parent
// of the next snapshot, retention's "newest", the receiver's replay check and
// the release of older replication snapshots follow lineage and the order
// this site recorded them in, never the other site's times.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { newSnapshotId } from '../../../src/core/ids.ts';
import { sendSnapshot } from '../../../src/replication/sender.ts';
import { PROTOCOL_VERSION, type CommitRequest } from '../../../src/replication/types.ts';
import { SiteReceiver } from '../../../src/site/receiver.ts';
import { Site } from '../../../src/site/site.ts';
import { ChunkPool } from '../../../src/snapshot/chunk-pool.ts';
import { assertTreesEqual, tempDir } from '../../helpers.ts';
import { createSnapshot, type SnapshotRecord } from '../../../src/site/snapshots.ts';
import { createVolume } from '../../../src/site/volumes.ts';
import { londonToTokyo, withLocalSite } from '../local-site.ts';
import { holdReplica, release, replicaHolder } from '../../../src/catalog/holds.ts';
import { breakOffSecondary, repointSecondary } from '../../../src/catalog/secondaries.ts';
import { setVolumeRole } from '../../../src/catalog/volumes.ts';
import { compareSnapshots, deleteSnapshotRow, descendsFrom, findSnapshot, insertSnapshotRow, latestSnapshot, lineage, listSnapshots, recordedOrder, resolveSnapshot } from '../../../src/catalog/snapshots.ts';

const OTHER_SITE = 'A'.repeat(52);

/** A snapshot as another site took it an hour ahead of this one's clock (same data as `like`). */
function receivedFromAhead(site: Site, like: SnapshotRecord, name: string | null = null): SnapshotRecord {
  const id = newSnapshotId({ now: () => Date.now() + 3600_000 });
  site.catalog.tx(() => insertSnapshotRow(site.catalog, { id, volume: like.volume, name, time: Date.now() + 3600_000, origin: OTHER_SITE, parent: like.id, manifest: like.manifest, stats: { replicated: true } }));
  return findSnapshot(site.catalog, like.volume, id)!;
}

test('latest, the next parent and retention follow this site\'s order, not another site\'s clock', async () => {
  await withLocalSite('order', async ({ dir, site, pool }) => {
    const data = join(dir, 'data');
    mkdirSync(data);
    writeFileSync(join(data, 'a.txt'), 'one\n');
    createVolume(site, 'vol', { members: [{ kind: 'tree', path: data }], retention: { last: 2 } });
    const s1 = (await createSnapshot(site, 'vol', { pool })).snapshot;
    // Another site's snapshot arrives (dated an hour ahead); then this site takes two more.
    const ahead = receivedFromAhead(site, s1);
    assert.equal(latestSnapshot(site.catalog, 'vol')?.id, ahead.id, 'the snapshot received last is what the data is at');
    writeFileSync(join(data, 'b.txt'), 'two\n');
    const s2 = (await createSnapshot(site, 'vol', { pool })).snapshot;
    assert.equal(s2.parent, ahead.id);
    assert.ok(compareSnapshots(site.catalog, s2, ahead) > 0, 'a snapshot taken after one received is newer, whatever the times say');
    // keep-last 2 took s1 already: the lineage goes as far as the snapshots here, and names s1 as the last parent
    assert.deepEqual(lineage(site.catalog, 'vol', s2.id), [s2.id, ahead.id]);
    assert.ok(descendsFrom(site.catalog, s2.id, s1.id) && !descendsFrom(site.catalog, s1.id, s2.id) && !descendsFrom(site.catalog, s2.id, s2.id));
    writeFileSync(join(data, 'c.txt'), 'three\n');
    const s3 = (await createSnapshot(site, 'vol', { pool })).snapshot;
    assert.equal(s3.parent, s2.id);
    assert.equal(latestSnapshot(site.catalog, 'vol')?.id, s3.id);
    assert.equal(resolveSnapshot(site.catalog, 'vol', 'latest').id, s3.id);
    // keep-last 2 keeps this site's two newest, not the future-dated one
    assert.deepEqual(listSnapshots(site.catalog, 'vol').map((s) => s.id).sort(), [s2.id, s3.id].sort());
  });
});

test('kept writes are never latest, and their names are reserved', async () => {
  await withLocalSite('kept', async ({ dir, site, pool }) => {
    const data = join(dir, 'data');
    mkdirSync(data);
    writeFileSync(join(data, 'a.txt'), 'one\n');
    createVolume(site, 'vol', { members: [{ kind: 'tree', path: data }] });
    const s1 = (await createSnapshot(site, 'vol', { pool })).snapshot;
    await assert.rejects(createSnapshot(site, 'vol', { pool, name: 'failback-kept-mine' }), /ferry's own/);
    await assert.rejects(createSnapshot(site, 'vol', { pool, name: 'replica-writes-x' }), /ferry's own/);
    writeFileSync(join(data, 'stray.txt'), 'kept\n');
    const kept = (await createSnapshot(site, 'vol', { pool, name: 'failback-kept-2026', keptWrites: true })).snapshot;
    assert.equal(kept.parent, s1.id);
    assert.equal(resolveSnapshot(site.catalog, 'vol', 'latest').id, s1.id);
    assert.equal(resolveSnapshot(site.catalog, 'vol', 'failback-kept-2026').id, kept.id, 'restorable by name');
    const next = (await createSnapshot(site, 'vol', { pool })).snapshot;
    assert.equal(next.parent, s1.id, 'a kept snapshot is never a parent');
  });
});

/**
 * Three sites in one process, as after a re-point: london took snapshot L0; seattle (its clock an
 * hour ahead) followed london, took over at L0 and took s1 and s2 (s1's parent is L0); tokyo
 * followed seattle, keeping 3 (it shows s2 and holds s1), and now follows london.
 */
async function reFollowed(fn: (c: { london: Site; tokyo: Site; pool: ChunkPool; londonData: string; replica: string; l0: SnapshotRecord; s2: SnapshotRecord }) => Promise<void>): Promise<void> {
  const tmp = tempDir();
  const london = Site.init(join(tmp.path, 'london'), 'london');
  const seattle = Site.init(join(tmp.path, 'seattle'), 'seattle', { clock: { now: () => Date.now() + 3600_000 } });
  const tokyo = Site.init(join(tmp.path, 'tokyo'), 'tokyo');
  const pool = new ChunkPool({ workers: 1 });
  const hello = (volume: string, keep: number) => ({ protocol: PROTOCOL_VERSION, sourceVolume: volume, volume, members: [{ name: 'data', kind: 'tree' as const }], keep });
  const replicate = async (from: Site, rx: SiteReceiver, s: SnapshotRecord) => {
    await sendSnapshot(from.store, rx, 'vol', s.manifest);
    return rx.commit('vol', { snapshot: s.id, manifest: s.manifest, force: true });
  };
  try {
    const londonData = join(tmp.path, 'data');
    mkdirSync(londonData);
    writeFileSync(join(londonData, 'a.txt'), 'london\n');
    createVolume(london, 'vol', { members: [{ kind: 'tree', path: londonData }] });
    const l0 = (await createSnapshot(london, 'vol', { pool })).snapshot;
    // seattle follows london, then takes over at L0 (as a failover: promoted, the relation broken off)
    const toSeattle = new SiteReceiver(seattle, london.id, pool);
    const seattleData = (await toSeattle.hello(hello('vol', 1))).replicas[0].path;
    assert.equal((await replicate(london, toSeattle, l0)).applied, true);
    setVolumeRole(seattle.catalog, 'vol', 'primary');
    breakOffSecondary(seattle.catalog, 'vol');
    writeFileSync(join(seattleData, 'b.txt'), 'seattle 1\n');
    const s1 = (await createSnapshot(seattle, 'vol', { pool })).snapshot;
    assert.equal(s1.parent, l0.id, 'seattle took over at L0');
    // tokyo follows seattle
    const toTokyo = new SiteReceiver(tokyo, seattle.id, pool);
    const replica = (await toTokyo.hello(hello('vol', 3))).replicas[0].path;
    assert.equal((await replicate(seattle, toTokyo, s1)).applied, true);
    writeFileSync(join(seattleData, 'c.txt'), 'seattle 2\n');
    const s2 = (await createSnapshot(seattle, 'vol', { pool })).snapshot;
    assert.equal((await replicate(seattle, toTokyo, s2)).applied, true);
    assertTreesEqual(replica, seattleData);
    // tokyo now follows london (as a re-point does: the snapshot it shows held for london)
    tokyo.catalog.tx(() => {
      repointSecondary(tokyo.catalog, 'vol', london.id, 'vol');
      release(tokyo.catalog, replicaHolder(seattle.id));
      holdReplica(tokyo.catalog, 'vol', london.id, s2.id);
    });
    await fn({ london, tokyo, pool, londonData, replica, l0, s2: findSnapshot(tokyo.catalog, 'vol', s2.id)! });
  } finally {
    await pool.close();
    for (const s of [london, seattle, tokyo]) s.close();
    tmp.cleanup();
  }
}

test('a snapshot the replica\'s own descends from is refused, whichever site took them', async () => {
  await reFollowed(async ({ london, tokyo, pool, replica, l0 }) => {
    const rx = new SiteReceiver(tokyo, london.id, pool);
    await rx.hello({ protocol: PROTOCOL_VERSION, sourceVolume: 'vol', volume: 'vol', members: [{ name: 'data', kind: 'tree' }], keep: 3 });
    await sendSnapshot(london.store, rx, 'vol', l0.manifest);
    await assert.rejects(rx.commit('vol', { snapshot: l0.id, manifest: l0.manifest, force: true }), /older than .*descends from it/);
    assert.ok(existsSync(join(replica, 'c.txt')), 'the replica was not rolled back');
  });
});

test('a secondary releases the snapshots it received before the one applied, whatever their source\'s clock said', async () => {
  await reFollowed(async ({ london, tokyo, pool, londonData, replica, s2 }) => {
    assert.ok(s2.time > Date.now() + 3000_000, 'seattle\'s snapshots are dated an hour ahead');
    writeFileSync(join(londonData, 'd.txt'), 'london again\n');
    const l1 = (await createSnapshot(london, 'vol', { pool })).snapshot;
    const rx = new SiteReceiver(tokyo, london.id, pool);
    await rx.hello({ protocol: PROTOCOL_VERSION, sourceVolume: 'vol', volume: 'vol', members: [{ name: 'data', kind: 'tree' }], keep: 1 });
    await sendSnapshot(london.store, rx, 'vol', l1.manifest);
    assert.equal((await rx.commit('vol', { snapshot: l1.id, manifest: l1.manifest, force: true })).applied, true);
    assertTreesEqual(replica, londonData);
    assert.deepEqual(listSnapshots(tokyo.catalog, 'vol').map((s) => s.id), [l1.id], 'keep 1: seattle\'s s1 and s2, received before, are released');
  });
});

test('a snapshot whose parent never came is taken through the ancestor its source names, and a replay naming an old one is still refused', async () => {
  await londonToTokyo({ keep: 1 }, async ({ london, tokyo, pool, data, replica, send }) => {
    const a0 = (await createSnapshot(london, 'vol', { pool })).snapshot;
    assert.equal((await send(a0)).applied, true);
    writeFileSync(join(data, 'b.txt'), 'two\n');
    const m = (await createSnapshot(london, 'vol', { pool })).snapshot; // never sent
    writeFileSync(join(data, 'c.txt'), 'three\n');
    const a1 = (await createSnapshot(london, 'vol', { pool })).snapshot;
    assert.equal(a1.parent, m.id);
    assert.equal((await send(a1, { ancestor: a0.id })).applied, true);
    assert.ok(descendsFrom(tokyo.catalog, a1.id, a0.id), 'tokyo sees a1 descend from a0 through m, as london said');
    // m's commit, replayed late with the ancestor it would have named: refused, the replica stays.
    await assert.rejects(send(m, { ancestor: a0.id }), /older than .*a replayed or out-of-order snapshot is refused/);
    assertTreesEqual(replica, data);
    // An ancestor that is no snapshot of this volume here is not taken.
    await assert.rejects(send(a1, { ancestor: 'x' }), /commit.ancestor/);
  });
});

/**
 * london (its clock an hour ahead) takes `old` (never sent) and `p` (sent, with its order when
 * `sendSeq`), forgets both (nothing links what it takes next to p), its clock goes back the hour, and
 * it takes `t`; tokyo follows london.
 */
async function clockedBack(sendSeq: boolean, fn: (c: { london: Site; send: (s: SnapshotRecord, o?: { after?: string; seq?: boolean }) => Promise<{ applied: boolean }>; replica: string; data: string; old: SnapshotRecord; p: SnapshotRecord; t: SnapshotRecord }) => Promise<void>): Promise<void> {
  let offset = 3600_000;
  await londonToTokyo({ keep: 3, clock: { now: () => Date.now() + offset } }, async ({ london, pool, data, replica, send: commit }) => {
    const seqs = new Map<string, number>();
    const send = (s: SnapshotRecord, o: { after?: string; seq?: boolean } = {}) => commit(s, { ...(o.after ? { after: o.after } : {}), ...(o.seq ? { seq: seqs.get(s.id)! } : {}) });
    const take = async () => {
      const s = (await createSnapshot(london, 'vol', { pool })).snapshot;
      seqs.set(s.id, recordedOrder(london.catalog, s.id));
      return s;
    };
    const old = await take();
    writeFileSync(join(data, 'b.txt'), 'two\n');
    const p = await take();
    assert.equal((await send(p, { seq: sendSeq })).applied, true);
    london.catalog.tx(() => {
      for (const s of [old, p]) deleteSnapshotRow(london.catalog, 'vol', s.id);
    });
    offset = 0;
    writeFileSync(join(data, 'c.txt'), 'three\n');
    const t = await take();
    assert.equal(t.parent, null);
    assert.ok(seqs.get(t.id)! > seqs.get(p.id)!, 'the order london took them in');
    await fn({ london, send, replica, data, old, p, t });
  });
}

test('a snapshot its source took after one it sent before its clock was set back is taken on the source\'s word (after), a replay naming an older one is not', async () => {
  await clockedBack(false, async ({ send, replica, data, old, p, t }) => {
    await assert.rejects(send(t), /older than .*a replayed or out-of-order snapshot is refused/, 'by the clock alone, refused');
    assert.equal((await send(t, { after: p.id })).applied, true, 'london says it took t after p');
    assertTreesEqual(replica, data);
    // old, replayed, naming nothing: refused.
    await assert.rejects(send(old), /a replayed or out-of-order snapshot is refused/);
  });
});

test('what one source sent is ordered by the order it took them in (seq), not by its clock, where it said it; a replay is refused by it', async () => {
  await clockedBack(true, async ({ send, replica, data, old, t }) => {
    await assert.rejects(send(t), /a replayed or out-of-order snapshot is refused/, 'without its order, by the clock: refused');
    assert.equal((await send(t, { seq: true })).applied, true, 'taken after p, in london\'s order');
    assertTreesEqual(replica, data);
    await assert.rejects(send(old, { seq: true }), /older than .*a replayed or out-of-order snapshot is refused/, 'taken before p: refused by its order');
  });
});
