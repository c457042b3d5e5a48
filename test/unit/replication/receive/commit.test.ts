// The commit of a received snapshot (replication/receive/commit.ts), with a fake apply job in
// place of the real one: a snapshot is recorded and handed to the apply only when every object is
// here, the sending peer took it of the volume this secondary mirrors, and it is not older than
// what the replica shows; the apply runs under the volume's apply lock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { hashBytes, newSnapshotId, type ObjectId, type SnapshotId } from '../../../../src/core/ids.ts';
import { encodeSnapshot, encodeTree } from '../../../../src/snapshot/format.ts';
import type { SnapshotManifest, TreeEntry } from '../../../../src/snapshot/model.ts';
import { holdersOf } from '../../../../src/catalog/holds.ts';
import { addSecondary, endSecondary, finishApply, getSecondary } from '../../../../src/catalog/secondaries.ts';
import { deleteSnapshotRow, insertSnapshotRow, listSnapshots, snapshotById } from '../../../../src/catalog/snapshots.ts';
import { Commit, type Applier } from '../../../../src/replication/receive/commit.ts';
import { PROTOCOL_VERSION, type CommitResponse } from '../../../../src/replication/types.ts';
import type { Site } from '../../../../src/site/site.ts';
import { receiveHost, SiteReceiver } from '../../../../src/site/receiver.ts';
import { withLocalSite } from '../../local-site.ts';

const PEER = 'P'.repeat(52);
const OTHER = 'Q'.repeat(52);

/** An apply job that records what it was asked, and whether the volume's apply lock was held meanwhile. */
class FakeApply implements Applier {
  readonly calls: Array<{ volume: string; snapshot: string; force: boolean; locked: boolean }> = [];
  readonly site: Site;
  constructor(site: Site) {
    this.site = site;
  }
  async apply(volume: string, target: SnapshotManifest, force: boolean): Promise<CommitResponse> {
    this.calls.push({ volume, snapshot: target.id, force, locked: this.site.replicas.applying(volume) });
    finishApply(this.site.catalog, volume, target.id, {});
    return { snapshot: target.id, applied: true };
  }
}

const meta = { mode: 0o644, uid: 0, gid: 0, mtimeNs: 0n, xattrs: [] as Array<[Buffer, Buffer]> };

/**
 * A snapshot of PEER's volume `vol` (one tree member `data` holding one file of one chunk) stored
 * at `site`, the chunk too unless `withoutChunk`; returns its manifest and the manifest's id.
 */
function storeSnapshot(site: Site, o: { origin?: string; parent?: SnapshotId | null; time?: number; name?: string; withoutChunk?: boolean } = {}): { manifest: SnapshotManifest; manifestId: ObjectId } {
  const bytes = randomBytes(100);
  const s = site.store.session();
  if (!o.withoutChunk) s.put('chunk', bytes);
  const entries: TreeEntry[] = [{ ...meta, name: Buffer.from('f'), type: 'file', size: bytes.length, chunks: [hashBytes(bytes)] }];
  const tree = s.put('tree', encodeTree({ entries }));
  const manifest: SnapshotManifest = { id: newSnapshotId(site.clock), volume: 'vol', name: o.name ?? null, time: o.time ?? site.clock.now(), origin: o.origin ?? PEER, parent: o.parent ?? null, members: [{ name: 'data', kind: 'tree', root: tree.id }] };
  const { id: manifestId } = s.put('snapshot', encodeSnapshot(manifest));
  site.store.flush();
  return { manifest, manifestId };
}

/** A site with PEER's secondary `vol` (bound by a real hello), and a commit over a fake apply. */
async function withSecondary(fn: (c: { site: Site; commit: Commit; applies: FakeApply }) => Promise<void>): Promise<void> {
  await withLocalSite('rx', async ({ site, pool }) => {
    await new SiteReceiver(site, PEER, pool).hello({ protocol: PROTOCOL_VERSION, sourceVolume: 'vol', volume: 'vol', members: [{ name: 'data', kind: 'tree' }] });
    const applies = new FakeApply(site);
    await fn({ site, commit: new Commit({ host: receiveHost(site), peer: PEER, pool }, applies), applies });
  });
}

test('a complete snapshot is recorded, held, and applied under the volume lock; the GC writer ends with it', async () => {
  await withSecondary(async ({ site, commit, applies }) => {
    const { manifest, manifestId } = storeSnapshot(site);
    const r = await commit.commit('vol', { snapshot: manifest.id, manifest: manifestId });
    assert.equal(r.applied, true);
    assert.equal(typeof r.phases?.check, 'number');
    assert.deepEqual(applies.calls, [{ volume: 'vol', snapshot: manifest.id, force: false, locked: true }]);
    const row = snapshotById(site.catalog, manifest.id);
    assert.equal(row?.manifest, manifestId);
    assert.deepEqual(holdersOf(site.catalog, manifest.id), [`mirror-from:${PEER}`], 'held for the peer');
    assert.equal(site.writers, 0, 'the transfer ended with the commit');
    assert.equal(site.replicas.applying('vol'), false);
  });
});

test('a snapshot with an object missing is refused as interrupted: nothing recorded, nothing applied', async () => {
  await withSecondary(async ({ site, commit, applies }) => {
    const { manifest, manifestId } = storeSnapshot(site, { withoutChunk: true });
    await assert.rejects(commit.commit('vol', { snapshot: manifest.id, manifest: manifestId }), (err: any) => err.code === 'TRANSFER_INTERRUPTED' && /1 object\(s\) missing/.test(err.message));
    assert.deepEqual(listSnapshots(site.catalog, 'vol'), []);
    assert.deepEqual(applies.calls, []);
    assert.equal(site.writers, 0);
  });
});

test('a snapshot another site took is refused from this peer', async () => {
  await withSecondary(async ({ site, commit, applies }) => {
    const { manifest, manifestId } = storeSnapshot(site, { origin: OTHER });
    await assert.rejects(commit.commit('vol', { snapshot: manifest.id, manifest: manifestId }), (err: any) => err.code === 'NOT_AUTHORIZED' && /was taken at site/.test(err.message));
    assert.deepEqual(listSnapshots(site.catalog, 'vol'), []);
    assert.deepEqual(applies.calls, []);
  });
});

test('a snapshot older than the one the replica shows (its parent, replayed) is refused', async () => {
  await withSecondary(async ({ site, commit, applies }) => {
    const first = storeSnapshot(site);
    const second = storeSnapshot(site, { parent: first.manifest.id });
    await commit.commit('vol', { snapshot: first.manifest.id, manifest: first.manifestId });
    await commit.commit('vol', { snapshot: second.manifest.id, manifest: second.manifestId });
    await assert.rejects(commit.commit('vol', { snapshot: first.manifest.id, manifest: first.manifestId }), (err: any) => err.code === 'PROTOCOL' && /is older than/.test(err.message));
    assert.deepEqual(applies.calls.map((c) => c.snapshot), [first.manifest.id, second.manifest.id]);
  });
});

const HOUR = 3600_000;

/** Commit each snapshot in turn (each applied by the fake job). */
async function commitAll(commit: Commit, snaps: Array<{ manifest: SnapshotManifest; manifestId: ObjectId }>): Promise<void> {
  for (const s of snaps) await commit.commit('vol', { snapshot: s.manifest.id, manifest: s.manifestId });
}

/** A snapshot released here (retention, or the secondary keeping only its newest): its holds and its row go. */
function release(site: Site, id: SnapshotId): void {
  site.catalog.db.run('DELETE FROM holds WHERE snapshot = ?', id);
  deleteSnapshotRow(site.catalog, 'vol', id);
}

/** A snapshot this site took itself (an old primary's), recorded as createSnapshot would. */
function recordOwn(site: Site, o: { parent: SnapshotId | null; name?: string }): SnapshotManifest {
  const { manifest, manifestId } = storeSnapshot(site, { origin: site.catalog.siteId, parent: o.parent, ...(o.name ? { name: o.name } : {}) });
  insertSnapshotRow(site.catalog, { id: manifest.id, volume: 'vol', name: manifest.name, time: manifest.time, origin: manifest.origin, parent: manifest.parent, manifest: manifestId, stats: {} });
  return manifest;
}

test('after a clock step, a failback\'s first snapshot is applied when its parent is a snapshot this site recorded after the last one it received from the peer, though the link between them is gone', async () => {
  await withSecondary(async ({ site, commit, applies }) => {
    // Received before the peer's clock went back an hour (a named one: kept here).
    const ahead = storeSnapshot(site, { time: site.clock.now() + HOUR, name: 'ahead' });
    const takenOver = storeSnapshot(site, { time: site.clock.now() + HOUR + 1, parent: ahead.manifest.id });
    await commitAll(commit, [ahead, takenOver]);
    // This site took over at it and took its own snapshots (the failback's base among them); the one
    // it took over at is gone since (retention), and its writes are kept before the failback.
    const failover = recordOwn(site, { parent: takenOver.manifest.id, name: 'failover-x' });
    const base = recordOwn(site, { parent: failover.id });
    release(site, takenOver.manifest.id);
    const kept = recordOwn(site, { parent: base.id, name: 'failback-kept-x' });
    finishApply(site.catalog, 'vol', kept.id, {});
    // The new primary's snapshot, on its clock set back, names the base: newer than 'ahead' here.
    const resync = storeSnapshot(site, { parent: base.id });
    await commitAll(commit, [resync]);
    assert.deepEqual(applies.calls.map((c) => c.snapshot), [ahead.manifest.id, takenOver.manifest.id, resync.manifest.id]);
  });
});

test('after a clock step, a replayed snapshot is refused though its parent descends from the one received before the step', async () => {
  await withSecondary(async ({ site, commit, applies }) => {
    const now = site.clock.now();
    const ahead = storeSnapshot(site, { time: now + HOUR, name: 'ahead' });
    // After the step: each names the one before; the first is named (kept), the middle ones are released.
    const z1 = storeSnapshot(site, { time: now, parent: ahead.manifest.id, name: 'z1' });
    const z2 = storeSnapshot(site, { time: now + 1, parent: z1.manifest.id });
    const z3 = storeSnapshot(site, { time: now + 2, parent: z2.manifest.id });
    const z4 = storeSnapshot(site, { time: now + 3, parent: z3.manifest.id });
    await commitAll(commit, [ahead, z1, z2, z3, z4]);
    release(site, z2.manifest.id);
    release(site, z3.manifest.id);
    await assert.rejects(commit.commit('vol', { snapshot: z2.manifest.id, manifest: z2.manifestId }), (err: any) => err.code === 'PROTOCOL' && /is older than/.test(err.message));
    assert.equal(applies.calls.length, 5, 'the replay is not applied');
  });
});

// Soak seed 5, step 1807: what a peer sent in an earlier relation (before a failback, a migrate, a
// re-point or a full sync) is no reference for a replay in the next one. A snapshot the replica
// shows descends from is refused whatever the relation, and within one relation the check stands.

const isReplay = (err: any) => err.code === 'PROTOCOL' && /is older than .* a replayed or out-of-order snapshot is refused/.test(err.message);

test('a new relation with the peer (here a failback making this site its secondary again) is not held to what the peer sent in the earlier one; an ancestor of what the replica shows is still refused', async () => {
  await withSecondary(async ({ site, commit, applies }) => {
    const now = site.clock.now();
    // Received in the first relation, while the peer's clock was an hour ahead.
    const a1 = storeSnapshot(site, { time: now + HOUR });
    const a2 = storeSnapshot(site, { time: now + HOUR + 1, parent: a1.manifest.id });
    await commitAll(commit, [a1, a2]);
    const first = getSecondary(site.catalog, 'vol')!.relation;
    // The relation ends and a new one starts with the replica showing a2 (as a failback's demotion does).
    site.catalog.tx(() => {
      endSecondary(site.catalog, 'vol');
      addSecondary(site.catalog, 'vol', PEER, 'vol', a2.manifest.id);
    });
    assert.notEqual(getSecondary(site.catalog, 'vol')!.relation, first, 'a new relation id');
    await assert.rejects(commit.commit('vol', { snapshot: a1.manifest.id, manifest: a1.manifestId }), isReplay, 'a2, which the replica shows, descends from a1');
    // The peer's clock is right now; its snapshot names one it took that this site never received.
    const b1 = storeSnapshot(site, { time: now, parent: storeSnapshot(site, { time: now - 1 }).manifest.id });
    await commitAll(commit, [b1]);
    const b2 = storeSnapshot(site, { time: now + 1, parent: b1.manifest.id });
    await commitAll(commit, [b2]);
    // Within the new relation a snapshot older by the peer's clock than b2, not after it, is refused.
    const late = storeSnapshot(site, { time: now - 5 });
    await assert.rejects(commit.commit('vol', { snapshot: late.manifest.id, manifest: late.manifestId }), isReplay);
    await assert.rejects(commit.commit('vol', { snapshot: b1.manifest.id, manifest: b1.manifestId }), isReplay);
    assert.deepEqual(applies.calls.map((c) => c.snapshot), [a1.manifest.id, a2.manifest.id, b1.manifest.id, b2.manifest.id]);
  });
});

test('a full sync\'s first snapshot (baseline) starts the relation again: applied though older, by the peer\'s clock, than what it sent before; later snapshots are checked against the new relation', async () => {
  await withSecondary(async ({ site, commit, applies }) => {
    const now = site.clock.now();
    const ahead = storeSnapshot(site, { time: now + HOUR });
    await commitAll(commit, [ahead]);
    const base = storeSnapshot(site, { time: now });
    // As an update it is refused: older than `ahead` on the peer's clock, and nothing links them.
    await assert.rejects(commit.commit('vol', { snapshot: base.manifest.id, manifest: base.manifestId }), isReplay);
    const before = getSecondary(site.catalog, 'vol')!.relation;
    await commit.commit('vol', { snapshot: base.manifest.id, manifest: base.manifestId, baseline: true });
    assert.notEqual(getSecondary(site.catalog, 'vol')!.relation, before, 'a new relation id');
    const next = storeSnapshot(site, { time: now + 1, parent: base.manifest.id });
    await commitAll(commit, [next]);
    const late = storeSnapshot(site, { time: now - 5 });
    await assert.rejects(commit.commit('vol', { snapshot: late.manifest.id, manifest: late.manifestId }), isReplay);
    assert.deepEqual(applies.calls.map((c) => c.snapshot), [ahead.manifest.id, base.manifest.id, next.manifest.id]);
  });
});

test('a relation begun before relations were recorded (its id null after the upgrade) keeps every snapshot the peer sent as a reference', async () => {
  await withSecondary(async ({ site, commit }) => {
    const now = site.clock.now();
    const ahead = storeSnapshot(site, { time: now + HOUR });
    await commitAll(commit, [ahead]);
    site.catalog.db.run('UPDATE secondaries SET relation = NULL');
    site.catalog.db.run('UPDATE snapshots SET relation = NULL');
    const late = storeSnapshot(site, { time: now });
    await assert.rejects(commit.commit('vol', { snapshot: late.manifest.id, manifest: late.manifestId }), isReplay);
  });
});
