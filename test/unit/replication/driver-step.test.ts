// One step of the replication driver (src/replication/driver/step.ts): send
// what the destination lacks, commit it, and only then move the base. Against
// a fake Receiver and a real catalog: a step cut at the send or at the
// commit, or whose apply the destination refused, leaves the base where it
// was and still held, and records nothing delivered; one that completes
// moves the base (and its hold) and says so in its event.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isFerryError } from '../../../src/core/errors.ts';
import { holdersOf } from '../../../src/catalog/holds.ts';
import { setMirrorBase } from '../../../src/catalog/mirrors.ts';
import { pendingPeerSnapshots } from '../../../src/catalog/peer-snapshots.ts';
import { runStep, type StepContext } from '../../../src/replication/driver/step.ts';
import type { SnapshotRecord } from '../../../src/catalog/snapshots.ts';
import { registerPeerSnapshot } from '../../../src/site/peer-snapshots.ts';
import { eventsOf, FakeReceiver, withDriverSite, type Fixture } from './driver-fixture.ts';

const step = (kind: 'peer' | 'sibling', s: SnapshotRecord) => ({ kind, snapshot: { id: s.id, name: s.name, manifest: s.manifest } });

/** A mirror at base s0 and a peer snapshot p1 pending for it. */
async function atBase(f: Fixture): Promise<{ s0: SnapshotRecord; p1: SnapshotRecord; rx: FakeReceiver; ctx: () => StepContext }> {
  const s0 = await f.snap();
  setMirrorBase(f.site.catalog, f.mirror().id, s0.id, { state: 'idle' });
  f.write('two');
  const p1 = await f.snap();
  registerPeerSnapshot(f.site, 'app', p1.id);
  const rx = new FakeReceiver();
  return { s0, p1, rx, ctx: () => ({ catalog: f.site.catalog, store: f.site.store, rx, mirror: f.mirror() }) };
}

function assertNothingMoved(f: Fixture, s0: SnapshotRecord, p1: SnapshotRecord): void {
  assert.equal(f.mirror().base, s0.id, 'the base stays');
  assert.deepEqual(holdersOf(f.site.catalog, s0.id).filter((h) => h.startsWith('mirror:')), ['mirror:app@b'], 'and stays held');
  assert.deepEqual(holdersOf(f.site.catalog, p1.id).filter((h) => h.startsWith('mirror:')), [], 'the step snapshot is not the base');
  assert.deepEqual(pendingPeerSnapshots(f.site.catalog, f.mirror().id).map((p) => p.id), [p1.id], 'the peer snapshot is still to deliver');
  assert.deepEqual(eventsOf(f.site, 'snapshot.peer').filter((e) => e.presentAt), [], 'nothing said delivered');
}

test('a step that fails at the send moves nothing: the base stays, held', async () => {
  await withDriverSite(async (f) => {
    const { s0, p1, rx, ctx } = await atBase(f);
    rx.faults = [{ at: 'put', error: 'PEER_UNREACHABLE' }];
    await assert.rejects(runStep(ctx(), step('peer', p1)), (err) => isFerryError(err, 'PEER_UNREACHABLE'));
    assert.deepEqual(rx.commits, [], 'no commit after a failed send');
    assertNothingMoved(f, s0, p1);
  });
});

test('a step that fails at the commit moves nothing, though its objects arrived', async () => {
  await withDriverSite(async (f) => {
    const { s0, p1, rx, ctx } = await atBase(f);
    rx.faults = [{ at: 'commit', error: 'TRANSFER_INTERRUPTED' }];
    await assert.rejects(runStep(ctx(), step('peer', p1)), (err) => isFerryError(err, 'TRANSFER_INTERRUPTED'));
    assert.ok(rx.objects.has(p1.manifest), 'the snapshot was sent');
    assertNothingMoved(f, s0, p1);
  });
});

test('a step whose apply the destination refused (writes in the replica) moves nothing and says what it transferred', async () => {
  await withDriverSite(async (f) => {
    const { s0, p1, rx, ctx } = await atBase(f);
    rx.refuse = true;
    await assert.rejects(runStep(ctx(), step('peer', p1)), (err) => isFerryError(err, 'REPLICA_WRITTEN') && err.details?.transferred === p1.id && err.details?.writesSnapshot === 'W');
    assertNothingMoved(f, s0, p1);
  });
});

test('a peer snapshot step that completes: committed as a peer snapshot, present, the base (and its hold) moved to it, one event', async () => {
  await withDriverSite(async (f) => {
    const { s0, p1, rx, ctx } = await atBase(f);
    const r = await runStep(ctx(), step('peer', p1));
    assert.equal(r.peer, true);
    assert.deepEqual(rx.commits.map((c) => [c.snapshot, c.peer]), [[p1.id, true]]);
    assert.equal(f.mirror().base, p1.id);
    assert.deepEqual(holdersOf(f.site.catalog, s0.id).filter((h) => h.startsWith('mirror:')), []);
    assert.deepEqual(holdersOf(f.site.catalog, p1.id).filter((h) => h.startsWith('mirror:')), ['mirror:app@b']);
    assert.deepEqual(pendingPeerSnapshots(f.site.catalog, f.mirror().id), []);
    assert.deepEqual(eventsOf(f.site, 'snapshot.peer').filter((e) => e.presentAt).map((e) => [e.snapshot, e.presentAt]), [[p1.id, 'b']]);
  });
});

test("a sibling's base step that completes: committed (not as a peer snapshot), the base moved, the event gives the reason and the bytes", async () => {
  await withDriverSite(async (f) => {
    const { s0, rx, ctx } = await atBase(f);
    f.write('three');
    const b = await f.snap();
    const r = await runStep(ctx(), step('sibling', b));
    assert.equal(r.peer, false);
    assert.deepEqual(rx.commits.map((c) => [c.snapshot, c.peer]), [[b.id, false]]);
    assert.equal(f.mirror().base, b.id);
    const [e] = eventsOf(f.site, 'mirror.base');
    assert.deepEqual([e.from, e.to, e.bytes], [s0.id, b.id, r.sent.bytesSent]);
    assert.match(e.reason, /a sibling secondary holds it/);
  });
});
