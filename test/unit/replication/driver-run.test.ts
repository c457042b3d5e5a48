// One attempt of the replication driver (src/replication/driver/run.ts),
// against a fake source and a fake Receiver over a real catalog: the phases
// it records, the order of its steps, and what a failure does by its class:
// a transient one (peer unreachable) waits a growing backoff, sends the same
// snapshot again, and shows `disconnected` after three in a row; a permanent
// one (refused by the peer) waits a whole period; a failover at the
// destination breaks the mirror off; a refused apply is a transfer, recorded.
import { test } from 'node:test';
import { mkdirSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { isFerryError } from '../../../src/core/errors.ts';
import { heldBy, inFlightHolder } from '../../../src/catalog/holds.ts';
import { queuedSnapshot } from '../../../src/catalog/mirrors.ts';
import { runMirrorUpdate } from '../../../src/replication/driver/run.ts';
import type { UpdateDeps } from '../../../src/replication/driver/types.ts';
import { registerPeerSnapshot } from '../../../src/site/peer-snapshots.ts';
import { eventsOf, FakeReceiver, withDriverSite, type Fixture } from './driver-fixture.ts';

const deps = (f: Fixture, rx: FakeReceiver): UpdateDeps => ({ source: f.source, connect: () => rx, random: () => 0.5 });
const transitions = (f: Fixture) => eventsOf(f.site, 'mirror.state').map((e) => e.transition);

test('an initialize, then an update: each records its phases (the destination’s that are sane numbers), the transfer and the state moves', async () => {
  await withDriverSite(async (f) => {
    const rx = new FakeReceiver();
    rx.phases = { apply: 0.5, verify: -1, check: 'soon', other: 3 };
    const init = await runMirrorUpdate(deps(f, rx), 'app', 'b', { initialize: true });
    assert.equal(init.applied, true);
    assert.equal(f.mirror().base, init.snapshot);
    assert.equal(f.mirror().state, 'idle');
    assert.deepEqual(Object.keys(init.transfer.phases ?? {}).sort(), ['commit', 'destination.apply', 'send', 'snapshot']);
    assert.equal(init.transfer.phases!['destination.apply'], 0.5);
    assert.deepEqual(transitions(f), ['uninitialized => baselining', 'baselining => idle']);
    assert.deepEqual(eventsOf(f.site, 'replication.update').map((e) => e.outcome), ['ok']);

    // A peer snapshot pending: delivered first, as a peer snapshot; then a new capture, the target.
    f.write('two');
    const p = await f.snap();
    registerPeerSnapshot(f.site, 'app', p.id);
    const up = await runMirrorUpdate(deps(f, rx), 'app', 'b', {});
    assert.deepEqual(rx.commits.slice(1).map((c) => [c.snapshot, c.peer]), [[p.id, true], [up.snapshot, false]]);
    assert.equal(up.base, init.snapshot);
    assert.equal(f.mirror().base, up.snapshot);
    assert.equal(f.source.captures, 2);
    // Nothing changed since the peer snapshot: the new snapshot's own object is all that goes.
    assert.equal(up.transfer.objects, 1);
    assert.deepEqual(transitions(f).slice(2), ['idle => updating', 'updating => idle']);
  });
});

test('transient failures: a growing backoff, the snapshot taken once and sent again, `disconnected` after three in a row, and back to idle on success', async () => {
  await withDriverSite(
    async (f) => {
      const rx = new FakeReceiver();
      await runMirrorUpdate(deps(f, rx), 'app', 'b', { initialize: true });
      f.write('two');
      rx.faults = [{ at: 'hello', error: 'PEER_UNREACHABLE', times: 3 }];
      for (const n of [1, 2, 3]) await assert.rejects(runMirrorUpdate(deps(f, rx), 'app', 'b', { scheduled: true }), (err) => isFerryError(err, 'PEER_UNREACHABLE'));
      const failed = eventsOf(f.site, 'replication.update').filter((e) => e.outcome === 'failed');
      assert.deepEqual(failed.map((e) => [e.failures, e.retryInMs, e.error.code]), [[1, 5_000, 'PEER_UNREACHABLE'], [2, 10_000, 'PEER_UNREACHABLE'], [3, 20_000, 'PEER_UNREACHABLE']]);
      assert.equal(f.source.captures, 2, 'one capture for the three attempts');
      const queued = queuedSnapshot(f.site.catalog, f.mirror().id);
      assert.ok(queued);
      assert.equal(f.mirror().state, 'disconnected');
      assert.ok(f.mirror().nextRunAt! > f.site.clock.now() + 15_000);
      const r = await runMirrorUpdate(deps(f, rx), 'app', 'b', { scheduled: true });
      assert.equal(r.snapshot, queued, 'the snapshot the failed attempts took');
      assert.equal(f.mirror().state, 'idle');
      assert.equal(f.mirror().failures, 0);
    },
    { scheduleS: 600 },
  );
});

test('a permanent failure waits a whole period and never shows `disconnected`; the capture failing is one too', async () => {
  await withDriverSite(
    async (f) => {
      const rx = new FakeReceiver();
      await runMirrorUpdate(deps(f, rx), 'app', 'b', { initialize: true });
      rx.faults = [{ at: 'hello', error: 'NOT_AUTHORIZED', times: 3 }];
      for (const n of [1, 2, 3]) await assert.rejects(runMirrorUpdate(deps(f, rx), 'app', 'b', { scheduled: true }), (err) => isFerryError(err, 'NOT_AUTHORIZED'));
      // (A scheduled retry would send the snapshot the failed attempts took: a manual update captures.)
      f.source.failCapture = 'HOOK_FAILED';
      await assert.rejects(runMirrorUpdate(deps(f, rx), 'app', 'b', {}), (err) => isFerryError(err, 'HOOK_FAILED'));
      const failed = eventsOf(f.site, 'replication.update').filter((e) => e.outcome === 'failed');
      assert.deepEqual(failed.map((e) => [e.failures, e.retryInMs]), [[1, 600_000], [2, 600_000], [3, 600_000], [4, 600_000]]);
      assert.equal(f.mirror().state, 'idle');
      assert.equal(f.mirror().lastError?.code, 'HOOK_FAILED');
    },
    { scheduleS: 600 },
  );
});

test('the destination failed over: the mirror is broken off, its base kept, nothing left in flight', async () => {
  await withDriverSite(async (f) => {
    const rx = new FakeReceiver();
    const init = await runMirrorUpdate(deps(f, rx), 'app', 'b', { initialize: true });
    rx.faults = [{ at: 'commit', error: 'FAILED_OVER' }];
    f.write('two');
    await assert.rejects(runMirrorUpdate(deps(f, rx), 'app', 'b', {}), (err) => isFerryError(err, 'FAILED_OVER'));
    assert.equal(f.mirror().state, 'broken-off');
    assert.equal(f.mirror().base, init.snapshot);
    assert.equal(f.mirror().lastError?.code, 'FAILED_OVER');
    assert.deepEqual(heldBy(f.site.catalog, inFlightHolder(f.mirror().id)), []);
    assert.deepEqual(eventsOf(f.site, 'replication.update').filter((e) => e.outcome === 'failed'), [], 'not counted as a failure to retry');
  });
});

test('an apply refused at the destination: the transfer is recorded and the base moves (the snapshot is there, complete), then REPLICA_WRITTEN', async () => {
  await withDriverSite(async (f) => {
    const rx = new FakeReceiver();
    await runMirrorUpdate(deps(f, rx), 'app', 'b', { initialize: true });
    rx.refuse = true;
    f.write('two');
    let transferred: unknown;
    await assert.rejects(runMirrorUpdate(deps(f, rx), 'app', 'b', {}), (err) => isFerryError(err, 'REPLICA_WRITTEN') && Boolean((transferred = err.details?.transferred)));
    assert.equal(f.mirror().base, transferred);
    assert.equal(f.mirror().state, 'idle');
    assert.equal(f.mirror().lastError?.code, 'REPLICA_WRITTEN');
    assert.equal(f.mirror().failures, 0);
    assert.deepEqual(eventsOf(f.site, 'replication.update').map((e) => [e.outcome, e.applied]), [['ok', true], ['warning', false]]);
  });
});

test('a refused apply names the forced command the mirror\'s state then accepts: an update once the refused snapshot is the base, an initialize while there is none', async () => {
  await withDriverSite(async (f) => {
    const rx = new FakeReceiver();
    rx.refuse = true;
    // A peer snapshot goes first and is refused: the mirror still has no base, an update would be refused.
    const p = await f.snap();
    registerPeerSnapshot(f.site, 'app', p.id);
    const first = await runMirrorUpdate(deps(f, rx), 'app', 'b', { initialize: true }).then(() => assert.fail('not refused'), (err: unknown) => err);
    assert.ok(isFerryError(first, 'REPLICA_WRITTEN'));
    assert.equal(f.mirror().base, null);
    assert.match(first.message, /^b: the replica was written: `ferry mirror initialize app --to b --force`$/);
    assert.equal(f.mirror().lastError?.message, first.message, 'the mirror\'s recorded error says the same');
    // As it says, in that state: the initialize is forced, and goes through.
    await runMirrorUpdate(deps(f, rx), 'app', 'b', { initialize: true, force: true });

    // The target refused: it is the base now, so an initialize is refused and the advice is an update.
    f.write('two');
    const second = await runMirrorUpdate(deps(f, rx), 'app', 'b', {}).then(() => assert.fail('not refused'), (err: unknown) => err);
    assert.ok(isFerryError(second, 'REPLICA_WRITTEN'));
    assert.equal(f.mirror().base, second.details?.transferred);
    assert.match(second.message, /`ferry mirror update app --to b --force`$/);
    assert.equal(f.mirror().lastError?.message, second.message);
    await assert.rejects(runMirrorUpdate(deps(f, rx), 'app', 'b', { initialize: true, force: true }), (err) => isFerryError(err, 'MIRROR_STATE'));
    await runMirrorUpdate(deps(f, rx), 'app', 'b', { force: true });
  });
});

test('the destination lost the base: the mirror needs a full sync, nothing is sent, the attempt is a failure', async () => {
  await withDriverSite(async (f) => {
    const rx = new FakeReceiver();
    await runMirrorUpdate(deps(f, rx), 'app', 'b', { initialize: true });
    rx.snapshots = [];
    const commits = rx.commits.length;
    await assert.rejects(runMirrorUpdate(deps(f, rx), 'app', 'b', {}), (err) => isFerryError(err, 'MIRROR_STATE') && /needs a full sync/.test(err.message));
    assert.equal(rx.commits.length, commits);
    assert.equal(f.mirror().state, 'needs-full-sync');
    assert.ok(transitions(f).includes('updating => needs-full-sync'));
  });
});

test('an update counts its round trips, every request it made, and the count does not grow with the number of changed files', async () => {
  await withDriverSite(async (f) => {
    const rx = new FakeReceiver();
    const init = await runMirrorUpdate(deps(f, rx), 'app', 'b', { initialize: true });
    assert.equal(init.transfer.roundTrips, rx.calls.length, `the initialize: ${rx.calls.join(' ')}`);
    const trips: number[] = [];
    for (const [round, files] of [[1, 5], [2, 400]] as const) {
      for (let i = 0; i < files; i++) writeFileSync(join(f.dir, 'data', `r${round}-${i}`), `round ${round} file ${i}\n`);
      const before = rx.calls.length;
      const up = await runMirrorUpdate(deps(f, rx), 'app', 'b', {});
      assert.equal(up.transfer.roundTrips, rx.calls.length - before, `requests made: ${rx.calls.slice(before).join(' ')}`);
      assert.ok(up.transfer.cpuSeconds !== undefined && up.transfer.cpuSeconds >= 0);
      trips.push(up.transfer.roundTrips!);
    }
    assert.equal(trips[0], trips[1], `5 changed files took ${trips[0]} round trips, 400 took ${trips[1]}`);
  });
});

test('an update with a delta base asks one question a level: the bases and the delta references go with the level that needs them', async () => {
  await withDriverSite(async (f) => {
    const rx = new FakeReceiver();
    rx.delta = true;
    const deep = join(f.dir, 'data', 'a', 'b', 'c');
    mkdirSync(deep, { recursive: true });
    const big = randomBytes(3 << 20);
    writeFileSync(join(deep, 'file.bin'), big);
    for (const d of ['a', 'a/b']) writeFileSync(join(f.dir, 'data', d, 'other.txt'), `unchanged ${d}\n`);
    await runMirrorUpdate(deps(f, rx), 'app', 'b', { initialize: true });
    randomBytes(64 * 1024).copy(big, 1 << 20);
    writeFileSync(join(deep, 'file.bin'), big);
    const before = rx.calls.length;
    const up = await runMirrorUpdate(deps(f, rx), 'app', 'b', {});
    assert.equal(up.transfer.fit?.deltas, true, JSON.stringify(up.transfer.fit));
    assert.ok((up.transfer.deltas ?? 0) > 0, 'the changed chunk went as a delta');
    // The manifest, the root, a, b, c, and the file's chunks (with their references): six questions;
    // the base of each tree and the references asked in questions of their own made eleven.
    const questions = rx.calls.slice(before).filter((c) => c === 'missing').length;
    assert.equal(questions, 6, rx.calls.slice(before).join(' '));
  });
});
