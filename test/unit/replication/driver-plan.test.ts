// The replication driver's plan (src/replication/driver/plan.ts), against a
// real catalog: whether a mirror may update, which snapshot it sends, and the
// steps once the destination's hello is known (peer snapshots pending, a
// sibling's base, the target), for each situation an update meets.
import { PROTOCOL_VERSION } from '../../../src/replication/types.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isFerryError } from '../../../src/core/errors.ts';
import { recordFailure, setMirrorBase, setMirrorPaused, type Mirror } from '../../../src/catalog/mirrors.ts';
import { findSnapshot, insertSnapshotRow } from '../../../src/catalog/snapshots.ts';
import { checkTarget, checkUpdate, planSteps, planTarget } from '../../../src/replication/driver/plan.ts';
import type { HelloResponse } from '../../../src/replication/types.ts';
import { registerPeerSnapshot } from '../../../src/site/peer-snapshots.ts';
import { withDriverSite } from './driver-fixture.ts';
import type { Site } from '../../../src/site/site.ts';

const hello = (snapshots: string[], o: { applied?: string | null; delta?: boolean } = {}): HelloResponse => ({
  protocol: PROTOCOL_VERSION,
  volume: 'app',
  snapshots: snapshots.map((id) => ({ id, name: null, time: 0 })),
  applied: o.applied ?? snapshots.at(-1) ?? null,
  applying: false,
  replicas: [],
  ...(o.delta ? { delta: true } : {}),
});
/** A snapshot row of volume `app` at `site` (taken there unless `origin` says), with the time and parent given. */
const rowAt = (site: Site) => (id: string, time: number, parent: string | null, origin = site.id) => {
  insertSnapshotRow(site.catalog, { id, volume: 'app', name: null, time, origin, parent, manifest: 'm'.repeat(64), stats: {} });
  return findSnapshot(site.catalog, 'app', id)!;
};
const refused = (re: RegExp) => (err: unknown) => isFerryError(err, 'MIRROR_STATE') && re.test(err.message);
const kinds = (steps: Array<{ kind: string; snapshot: { id: string } }>) => steps.map((s) => `${s.kind}:${s.snapshot.id}`);

test('a fresh mirror: only an initialize may run; it captures, sending early, and its one step is the target, without a delta base', async () => {
  await withDriverSite(async ({ site, mirror, snap }) => {
    const m = mirror();
    const now = site.clock.now();
    assert.throws(() => checkUpdate(m, {}, now, 'primary'), refused(/no baseline yet; run `ferry mirror initialize app --to b`/));
    checkUpdate(m, { initialize: true }, now, 'primary');
    assert.deepEqual(planTarget(site.catalog, m, { initialize: true }, now), { kind: 'capture', early: true });
    const t = await snap();
    const plan = planSteps(site.catalog, m, t, hello([], { delta: true }), { initialize: true });
    assert.deepEqual(kinds(plan.steps), [`target:${t.id}`]);
    assert.equal(plan.steps[0].deltaBase, undefined);
    assert.deepEqual(plan.found, []);
    assert.equal(plan.adopt, undefined);
  });
});

test('an initialized mirror: states that may not update are refused with what to do; an update captures without the early stream', async () => {
  await withDriverSite(async ({ site, mirror, snap }) => {
    const s0 = await snap();
    setMirrorBase(site.catalog, mirror().id, s0.id, { state: 'idle', lastSuccessAt: site.clock.now() });
    const m = mirror();
    const now = site.clock.now();
    assert.throws(() => checkUpdate(m, { initialize: true }, now, 'primary'), refused(/already initialized \(idle\)/));
    assert.throws(() => checkUpdate({ ...m, minDelayS: 60 }, {}, now + 1000, 'primary'), refused(/within its min delay of 60 s; wait or use --force/));
    checkUpdate({ ...m, minDelayS: 60 }, { force: true }, now + 1000, 'primary');
    checkUpdate({ ...m, minDelayS: 60 }, { scheduled: true }, now + 1000, 'primary');
    // Broken off (its destination failed over), with a base or not: update and initialize are both
    // refused with the same decision, the failback last (in full without a base), never each other.
    for (const base of [m.base, null]) {
      for (const initialize of [false, true]) {
        assert.throws(() => checkUpdate({ ...m, base, state: 'broken-off' }, { initialize }, now, 'primary'), refused(base ? /broken off: .*`ferry failback app --to b`$/ : /broken off: .*`ferry failback app --to b --full` \(in full/));
      }
    }
    assert.throws(() => checkUpdate({ ...m, state: 'needs-full-sync' }, {}, now, 'primary'), refused(/for a full sync/));
    assert.throws(() => checkUpdate(m, {}, now, 'secondary'), refused(/is a secondary here/));
    setMirrorPaused(site.catalog, m.id, true);
    assert.throws(() => checkUpdate(mirror(), {}, now, 'primary'), refused(/paused/));
    checkUpdate(mirror(), { force: true }, now, 'primary');
    assert.deepEqual(planTarget(site.catalog, m, {}, now), { kind: 'capture', early: false });
    // A named snapshot is the target; one older than the base is refused once known.
    const named = planTarget(site.catalog, m, { snapshot: s0.id }, now);
    assert.deepEqual(named.kind === 'named' && named.snapshot.id, s0.id);
    const s1 = await snap();
    setMirrorBase(site.catalog, m.id, s1.id);
    assert.throws(() => checkTarget(site.catalog, { ...m, base: s1.id }, s0), refused(/older than the mirror's base/));
  });
});

test('a scheduled retry after a failure sends the snapshot the failed attempt took, while it is young and newer than the base', async () => {
  await withDriverSite(
    async ({ site, mirror, snap }) => {
      const s0 = await snap();
      setMirrorBase(site.catalog, mirror().id, s0.id, { state: 'idle' });
      const s1 = await snap();
      recordFailure(site.catalog, mirror().id, { failures: 1, error: { code: 'PEER_UNREACHABLE', message: 'x' }, nextRunAt: 0, queued: s1.id });
      const m = mirror();
      const now = site.clock.now();
      const queued = planTarget(site.catalog, m, { scheduled: true }, now);
      assert.equal(queued.kind === 'queued' && queued.snapshot.id, s1.id);
      // Not for a manual update, nor once its schedule period has passed: a new capture then.
      assert.deepEqual(planTarget(site.catalog, m, {}, now), { kind: 'capture', early: false });
      assert.deepEqual(planTarget(site.catalog, m, { scheduled: true }, s1.time + 600_000), { kind: 'capture', early: false });
    },
    { scheduleS: 600 },
  );
});

test('pending peer snapshots go first, oldest first; one the destination holds is found, one newer than the target waits', async () => {
  await withDriverSite(async ({ site, mirror, snap }) => {
    const s0 = await snap();
    setMirrorBase(site.catalog, mirror().id, s0.id, { state: 'idle' });
    const p1 = await snap();
    const p2 = await snap();
    const t = await snap();
    const p3 = await snap();
    for (const p of [p1, p2, p3]) registerPeerSnapshot(site, 'app', p.id);
    const m: Mirror = mirror();
    const plan = planSteps(site.catalog, m, t, hello([s0.id, p1.id], { delta: true }), {});
    assert.deepEqual(plan.found.map((p) => p.id), [p1.id]);
    assert.deepEqual(kinds(plan.steps), [`peer:${p2.id}`, `target:${t.id}`]);
    // The delta base is the mirror's base, not the peer snapshot delivered before the target.
    assert.equal(plan.steps.at(-1)!.deltaBase, s0.manifest);
    // The target being a peer snapshot itself: it is the target step, not a peer step too.
    assert.deepEqual(kinds(planSteps(site.catalog, m, p2, hello([s0.id, p1.id]), {}).steps), [`target:${p2.id}`]);
  });
});

test("a sibling secondary's base the destination lacks goes before the target; one at or before what the destination shows does not", async () => {
  await withDriverSite(
    async ({ site, mirror, snap }) => {
      const s0 = await snap();
      const s1 = await snap();
      const t = await snap();
      setMirrorBase(site.catalog, mirror('b').id, s0.id, { state: 'idle' });
      setMirrorBase(site.catalog, mirror('c').id, s1.id, { state: 'idle' });
      const m = mirror('b');
      assert.deepEqual(kinds(planSteps(site.catalog, m, t, hello([s0.id]), {}).steps), [`sibling:${s1.id}`, `target:${t.id}`]);
      // The destination holds it already, or shows something newer: nothing to deliver but the target.
      assert.deepEqual(kinds(planSteps(site.catalog, m, t, hello([s0.id, s1.id]), {}).steps), [`target:${t.id}`]);
      // A destination that keeps one snapshot only has no room for it.
      assert.deepEqual(kinds(planSteps(site.catalog, { ...m, keepSnapshots: 1 }, t, hello([s0.id]), {}).steps), [`target:${t.id}`]);
      // The sibling's base is the target itself: it is sent once, as the target.
      setMirrorBase(site.catalog, mirror('c').id, t.id);
      assert.deepEqual(kinds(planSteps(site.catalog, m, t, hello([s0.id]), {}).steps), [`target:${t.id}`]);
    },
    { siblings: true },
  );
});

test('the base at the destination: a newer snapshot taken here is adopted (its commit answer was lost); none at all means a full sync and no step', async () => {
  await withDriverSite(async ({ site, mirror, snap }) => {
    const s0 = await snap();
    const s1 = await snap();
    const t = await snap();
    setMirrorBase(site.catalog, mirror().id, s0.id, { state: 'idle' });
    const m = mirror();
    const adopted = planSteps(site.catalog, m, t, hello([s1.id], { delta: true }), {});
    assert.equal(adopted.adopt?.id, s1.id);
    assert.deepEqual(kinds(adopted.steps), [`target:${t.id}`]);
    assert.equal(adopted.steps[0].deltaBase, s1.manifest, 'deltas against the adopted base');
    const lost = planSteps(site.catalog, m, t, hello([]), {});
    assert.equal(lost.baseLost, s0.id);
    assert.deepEqual(lost.steps, []);
    // An initialize ignores the base: the target, in full.
    assert.deepEqual(kinds(planSteps(site.catalog, m, t, hello([]), { initialize: true }).steps), [`target:${t.id}`]);
  });
});

test('a target older by this site\'s clock than the base (the clock was set back): the snapshots between go first, oldest first', async () => {
  await withDriverSite(async ({ site, mirror }) => {
    const t0 = Date.UTC(2026, 0, 1, 12);
    const row = rowAt(site);
    // Ids in the order taken; times as the clock said: s0, then s1 and s2 (not sent), then the clock
    // went back ten minutes before s3.
    const s0 = row('01M90000000000000000000000', t0, null);
    const s1 = row('01M90000000000000000000001', t0 + 60_000, s0.id);
    const s2 = row('01M90000000000000000000002', t0 + 120_000, s1.id);
    const s3 = row('01M90000000000000000000003', t0 - 600_000, s2.id);
    setMirrorBase(site.catalog, mirror().id, s0.id);
    const m = mirror();
    assert.deepEqual(kinds(planSteps(site.catalog, m, s3, hello([s0.id]), {}).steps), [`lineage:${s1.id}`, `lineage:${s2.id}`, `target:${s3.id}`]);
    // One of them already there: not sent again.
    assert.deepEqual(kinds(planSteps(site.catalog, m, s3, hello([s0.id, s1.id]), {}).steps), [`lineage:${s2.id}`, `target:${s3.id}`]);
    // A full sync (no base: a failback --full) goes from the newest of the target's lineage the
    // destination holds; into an empty replica, the target alone.
    assert.deepEqual(kinds(planSteps(site.catalog, m, s3, hello([s0.id], { applied: 'K'.repeat(26) }), { initialize: true }).steps), [`lineage:${s1.id}`, `lineage:${s2.id}`, `target:${s3.id}`]);
    assert.deepEqual(kinds(planSteps(site.catalog, m, s3, hello([]), { initialize: true }).steps), [`target:${s3.id}`]);
    // A clock that did not go back: the target alone, as always.
    const s4 = row('01M90000000000000000000004', t0 + 180_000, s3.id);
    assert.deepEqual(kinds(planSteps(site.catalog, m, s4, hello([s0.id]), {}).steps), [`target:${s4.id}`]);
    // The soak's shape (seed 1, 12 minutes, step 537): the destination holds y, taken before the clock
    // went back an hour, and shows t1, taken after it; n (not sent) and the target x come later on the
    // same clock as t1, so each is newer than t1 and older than y. The destination compares x with y.
    const y = row('01M90000000000000000000010', t0 + 3_600_000, s4.id);
    const t1 = row('01M90000000000000000000011', t0 + 200_000, y.id);
    const n = row('01M90000000000000000000012', t0 + 260_000, t1.id);
    const x = row('01M90000000000000000000013', t0 + 320_000, n.id);
    setMirrorBase(site.catalog, m.id, t1.id);
    const m2 = mirror();
    assert.deepEqual(kinds(planSteps(site.catalog, m2, x, hello([y.id, t1.id], { applied: t1.id }), {}).steps), [`lineage:${n.id}`, `target:${x.id}`]);
    // Its parent is what the replica shows: the destination sees that, nothing extra.
    assert.deepEqual(kinds(planSteps(site.catalog, m2, n, hello([y.id, t1.id], { applied: t1.id }), {}).steps), [`target:${n.id}`]);
  });
});

// The replay of soak seed 1380349686 (step 1073): an initialize delivered a peer snapshot p this site
// took before its clock was set back, then a target taken after the step whose lineage here does not
// reach p (this site took the volume over since at another site's snapshot). The destination refused
// the target as older than p. Each step names the newest of this site's own that the destination
// holds and that it took before (`after`); and its lineage's, where its parent is not there (`ancestor`).
test('each step names what the destination holds that it comes after: by lineage where its parent is not there, by the order this site took them', async () => {
  await withDriverSite(async ({ site, mirror }) => {
    const t0 = Date.UTC(2026, 0, 1, 12);
    const row = rowAt(site);
    const p = row('01M90000000000000000000009', t0 + 3_600_000, null);
    registerPeerSnapshot(site, 'app', p.id);
    const f = row('01M90000000000000000000005', t0, 'Z'.repeat(26), 'O'.repeat(52)); // another site's, taken over at
    const t = row('01M90000000000000000000001', t0 - 600_000, f.id);
    const m = mirror();
    const plan = planSteps(site.catalog, m, t, hello([]), { initialize: true });
    assert.deepEqual(kinds(plan.steps), [`peer:${p.id}`, `target:${t.id}`]);
    assert.equal(plan.steps[0].after, undefined, 'nothing of this site is there before it');
    assert.equal(plan.steps[1].after, p.id, 'the target comes after the peer snapshot, in the order this site took them');
    assert.equal(plan.steps[1].ancestor, undefined, 'no lineage joins them');
    // A parent the destination does not hold: the newest of the lineage it holds is named.
    const u = row('01M90000000000000000000002', t0 - 500_000, t.id);
    const v = row('01M90000000000000000000003', t0 - 400_000, u.id);
    const plan2 = planSteps(site.catalog, m, v, hello([p.id, t.id], { applied: t.id }), {});
    assert.equal(plan2.steps.at(-1)!.ancestor, t.id);
  });
});

// The replay of soak seed 1380349686 (its final check): a lineage step, now followed through deleted
// snapshots, reached a snapshot another site took (where this one took the volume over); the
// destination refuses what its sender did not take, and the failback's resync stopped there. Only this
// site's own snapshots go as steps, lineage or a sibling's base.
test('lineage steps and siblings\' bases are only this site\'s own snapshots', async () => {
  await withDriverSite(async ({ site, mirror }) => {
    const t0 = Date.UTC(2026, 0, 1, 12);
    const row = rowAt(site);
    const s0 = row('01M90000000000000000000010', t0, null);
    const f = row('01M90000000000000000000011', t0 + 1000, s0.id, 'O'.repeat(52));
    const s1 = row('01M90000000000000000000001', t0 - 600_000, f.id);
    const t = row('01M90000000000000000000002', t0 - 500_000, s1.id);
    setMirrorBase(site.catalog, mirror().id, s0.id);
    assert.deepEqual(kinds(planSteps(site.catalog, mirror(), t, hello([s0.id]), {}).steps), [`lineage:${s1.id}`, `target:${t.id}`]);
  });
});

// The replay of soak seed 1380349686 (its final check, again): a site that took the volume over
// (failover) held a peer snapshot its old primary took; a new mirror made it pending there, and the
// failback's resync sent it, which the destination refuses (a site sends only what it took): the
// failback never finished. Such a snapshot is found where the destination holds it, and otherwise
// not delivered (its pending row goes, with an event), never sent.
test('a pending peer snapshot another site took is found where the destination holds it, else not delivered, never sent', async () => {
  await withDriverSite(async ({ site, mirror, snap }) => {
    const s0 = await snap();
    setMirrorBase(site.catalog, mirror().id, s0.id, { state: 'idle' });
    const t0 = Date.UTC(2026, 0, 1, 12);
    const theirs = (id: string) => {
      rowAt(site)(id, t0, s0.id, 'O'.repeat(52));
      registerPeerSnapshot(site, 'app', id);
      return id;
    };
    const held = theirs('01M90000000000000000000021');
    const lost = theirs('01M90000000000000000000022');
    const t = await snap();
    const plan = planSteps(site.catalog, mirror(), t, hello([s0.id, held], { applied: s0.id }), {});
    assert.deepEqual(kinds(plan.steps), [`target:${t.id}`]);
    assert.deepEqual(plan.found.map((p) => p.id), [held]);
    assert.deepEqual(plan.undeliverable?.map((p) => p.id), [lost]);
  });
});
