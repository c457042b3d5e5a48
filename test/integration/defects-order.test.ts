// Snapshot order by lineage and origin, never by clocks across sites, on real
// daemons (issue 16, defects 2 and 7).
// - `latest` at a secondary is the snapshot the replica shows: after a forced
//   update kept a stray write as `replica-writes-*`, `snapshot show latest`,
//   `restore --snapshot latest` and a new link show the replicated data, not
//   the stray write (the kept snapshot is still there by name).
// - One site's clock an hour ahead (FERRY_TEST_CLOCK_OFFSET_MS): a real split brain
//   is shown as `split-brain` at both sites with each side's writes counted
//   against the base; after the failback, `latest` at the old primary is the
//   resynced snapshot (not its future-dated `failback-kept-*`), and the new
//   primary's scheduled retry after a failure takes a snapshot of its own
//   instead of sending the old primary's future-dated one (refused there).
// - A site whose clock was an hour ahead and is set right: its next updates
//   are not refused as replays (each descends from the snapshot the replica
//   shows), and its `latest` is its newest capture, not the future-dated one.
// - A split brain after an apply was refused at the secondary (the old
//   primary recorded the refused snapshot as its base, the new primary took
//   over at the one before): each side's writes are counted from where the
//   two lineages part, at both sites.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertTreesEqual } from '../helpers.ts';
import { cleanupSites, copyTree, KiB, createSite, pairSites, waitFor, writeChange, type TestSite } from '../harness/index.ts';

const sites: TestSite[] = [];
after(() => cleanupSites(sites));

const HOUR_AHEAD = { FERRY_TEST_CLOCK_OFFSET_MS: String(3600_000) };

function smallTree(dir: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'top.txt'), 'the application\'s main file\n'.repeat(10));
  writeFileSync(join(dir, 'gone.txt'), 'removed later at one site\n');
  writeChange(dir, 'blob.bin', 12 * KiB);
}

const mirrorRow = (s: TestSite, peer: string): { state: string; base: string | null; failures: number; last_error: string | null } =>
  s.catalog((db) => db.prepare("SELECT * FROM mirrors WHERE volume = 'vol' AND peer = ?").get(peer)) as any;
const snapshotRow = (s: TestSite, id: string): { id: string; name: string | null; origin: string; time: number; parent: string | null } | undefined =>
  s.catalog((db) => db.prepare('SELECT id, name, origin, time, parent FROM snapshots WHERE id = ?').get(id)) as any;

/**
 * Two daemons, paired, `vol` (a small tree) at the first mirrored to the second and initialized.
 * `first`: the first daemon's start options (its environment: a clock off), `schedule` the mirror's.
 */
async function mirroredPair(names: [string, string], o: { first?: { tick?: number; env?: Record<string, string> }; tick?: number; schedule?: string } = {}) {
  const [src, dst] = await Promise.all(names.map((n) => createSite(n)));
  sites.push(src, dst);
  const data = join(src.dir, 'data');
  smallTree(data);
  src.defineVolume('vol', [data]);
  await Promise.all([src.start(o.first), dst.start({ tick: o.tick })]);
  await pairSites(src, dst);
  await src.json(['mirror', 'create', 'vol', '--to', dst.name, ...(o.schedule ? ['--schedule', o.schedule] : [])]);
  await src.json(['mirror', 'initialize', 'vol', '--to', dst.name, '--wait']);
  const replica = await dst.memberPath('vol');
  assertTreesEqual(replica, data);
  return { src, dst, data, replica };
}

test('latest at a secondary is what the replica shows, not a kept stray write', async () => {
  const { src: prod, dst: dr, data, replica } = await mirroredPair(['order-prod', 'order-dr']);

  // A stray write at the DR site, then a forced update from production: the stray write is kept.
  writeFileSync(join(replica, 'stray.txt'), 'written at the DR site by mistake\n');
  writeChange(data, 'u1.bin', 4 * KiB);
  const u1 = await prod.json(['mirror', 'update', 'vol', '--force', '--wait']);
  assert.match(u1.writesSnapshot ?? '', /^replica-writes-/);
  assertTreesEqual(replica, data);
  const kept = await dr.json(['snapshot', 'show', 'vol', u1.writesSnapshot]);
  assert.equal(kept.name, u1.writesSnapshot, 'the kept writes stay restorable by name');

  // `latest` is the snapshot the replica shows: what a failover would see.
  const latest = await dr.json(['snapshot', 'show', 'vol', 'latest']);
  assert.equal(latest.id, u1.snapshot, `latest is ${latest.name ?? latest.id}, not the replicated snapshot ${u1.snapshot}`);
  assertTreesEqual(await dr.restore('vol', 'latest', 'latest'), data);
  const link = join(dr.dir, 'test-copy');
  const created = await dr.json(['link', 'create', link, '--volume', 'vol']);
  assert.equal(created.snapshot, u1.snapshot);
  assertTreesEqual(link, data);
  // ... and a refresh after the next update follows the replica, still not the kept writes.
  writeChange(data, 'u2.bin', 4 * KiB);
  const u2 = await prod.json(['mirror', 'update', 'vol', '--wait']);
  const refreshed = await dr.json(['link', 'refresh', link, '--force']);
  assert.equal(refreshed.to, u2.snapshot);
  assertTreesEqual(link, data);
});

test('one site an hour ahead: split brain shown against the base, failback, and the retry after it', async () => {
  const { src: east, dst: west, data, replica } = await mirroredPair(['ahead-east', 'ahead-west'], { first: { tick: 200, env: HOUR_AHEAD }, tick: 200, schedule: '1s' });
  const eastNow = (await east.json(['status'])).site.now as number;
  assert.ok(eastNow - Date.now() > 3500_000, 'east\'s clock is an hour ahead');

  // ---- east goes down, west is forced to take over; both write after the base
  await east.stop();
  const fo = await west.json(['failover', 'vol', '--force']);
  const base = fo.plan.snapshot as string;
  writeChange(replica, 'west-1.bin', 5 * KiB);
  writeChange(replica, 'west-2.bin', 7 * KiB);
  await west.json(['snapshot', 'create', 'vol', '--name', 'west-after']);
  writeChange(data, 'east-only.bin', 3 * KiB);
  rmSync(join(data, 'gone.txt'));
  const eastLive = copyTree(data, join(east.dir, 'east-live'));
  await east.start({ tick: 200, env: HOUR_AHEAD });
  await waitFor('east\'s scheduled update to be refused', () => mirrorRow(east, 'ahead-west').state === 'broken-off', 30_000, 100);

  // ---- a split brain, whatever the clocks say: each side's writes are counted against the base
  const wv = (await west.json(['status'])).volumes.find((v: any) => v.name === 'vol');
  assert.equal(wv.secondary.divergence.base, base);
  assert.equal(wv.secondary.divergence.here.newest.name, 'west-after', 'west\'s newest is its own snapshot, not east\'s future-dated base');
  assert.deepEqual([wv.secondary.divergence.here.added, wv.secondary.divergence.here.modified, wv.secondary.divergence.here.removed], [2, 0, 0]);
  assert.equal(wv.secondary.state, 'split-brain');
  const em = (await east.json(['status'])).volumes.find((v: any) => v.name === 'vol').mirrors[0];
  assert.equal(em.state, 'split-brain');
  assert.deepEqual([em.divergence.peer.added, em.divergence.here.added, em.divergence.here.removed], [2, 1, 1]);

  // ---- east yields: its writes are kept, and `latest` there is what it now shows (west's data).
  // The reversed mirror takes east's schedule: manual for now, or a scheduled update from west could
  // land between the failback and the look at `latest` (which then, rightly, is that newer snapshot).
  await east.json(['mirror', 'set', 'vol', '--to', west.name, '--schedule', 'none']);
  const fb = await east.json(['failback', 'vol']);
  assert.match(fb.kept, /^failback-kept-/);
  assertTreesEqual(await east.restore('vol', fb.kept, 'kept'), eastLive);
  assertTreesEqual(data, replica);
  const latest = await east.json(['snapshot', 'show', 'vol', 'latest']);
  assert.equal(latest.id, fb.update.snapshot, `latest at east is ${latest.name ?? latest.id}, not the resynced snapshot`);

  // ---- the reversed mirror fails once (east down), then its scheduled retry runs with east back
  assert.equal(mirrorRow(west, east.name).base, fb.update.snapshot, 'west\'s reversed mirror, manual so far, updated after the failback');
  await west.json(['mirror', 'set', 'vol', '--to', east.name, '--schedule', '1s']);
  await east.stop();
  await waitFor('west\'s scheduled update to fail', () => mirrorRow(west, 'ahead-east').failures > 0, 30_000, 100);
  writeChange(replica, 'after-failback.bin', 6 * KiB);
  const failedAt = mirrorRow(west, 'ahead-east').base;
  await east.start({ tick: 200, env: HOUR_AHEAD });
  const moved = await waitFor('west\'s retry to send a snapshot of its own', () => {
    const m = mirrorRow(west, 'ahead-east');
    return m.failures === 0 && m.base !== failedAt ? m : undefined;
  }, 60_000, 200).catch((err) => {
    const m = mirrorRow(west, 'ahead-east');
    throw new Error(`${(err as Error).message}; mirror: failures ${m.failures}, base ${m.base}, last error ${m.last_error}`);
  });
  assert.equal(snapshotRow(west, moved.base!)?.origin, west.id, 'the retry sent west\'s own snapshot');
  await waitFor('east to show west\'s data', () => {
    try {
      assertTreesEqual(data, replica);
      return true;
    } catch {
      return false;
    }
  }, 30_000, 200);
});

test('split brain after a refused apply: each side counted from where the lineages part', async () => {
  const { src: east, dst: west, data, replica } = await mirroredPair(['part-east', 'part-west']);

  // A stray write at west: east's next update is committed there but not applied (refused), and
  // east records that snapshot as its base; west still shows the one before.
  writeFileSync(join(replica, 'stray.txt'), 'written at west\n');
  writeChange(data, 'east-2.bin', 2 * KiB);
  const refused = await east.ferry(['mirror', 'update', 'vol', '--wait', '--json']);
  assert.equal(refused.json?.error?.code, 'REPLICA_WRITTEN', refused.stdout + refused.stderr);
  const eastBase = mirrorRow(east, 'part-west').base!;

  // ---- east goes down, west takes over at what it shows; both write
  await east.stop();
  const fo = await west.json(['failover', 'vol', '--force']);
  const base = fo.plan.snapshot as string;
  assert.notEqual(base, eastBase, 'the two sites recorded different bases');
  writeChange(replica, 'west-1.bin', 5 * KiB);
  await west.json(['snapshot', 'create', 'vol']);
  writeChange(data, 'east-3.bin', 3 * KiB);
  await east.start();
  // Refused: by west (FAILED_OVER), or here already, if west's failover notice reached east first.
  const after = await east.ferry(['mirror', 'update', 'vol', '--wait', '--json']);
  assert.ok(['FAILED_OVER', 'MIRROR_STATE'].includes(after.json?.error?.code), after.stdout + after.stderr);
  assert.equal(mirrorRow(east, 'part-west').state, 'broken-off');

  // ---- both sites count from the snapshot west took over at: east's two files, west's two
  const em = (await east.json(['status'])).volumes.find((v: any) => v.name === 'vol').mirrors[0];
  assert.equal(em.divergence.base, base);
  assert.deepEqual([em.divergence.here.added, em.divergence.here.removed, em.divergence.peer.added, em.divergence.peer.removed], [2, 0, 2, 0]);
  assert.equal(em.state, 'split-brain');
  const ws = (await west.json(['status'])).volumes.find((v: any) => v.name === 'vol').secondary;
  assert.equal(ws.divergence.base, base);
  assert.deepEqual([ws.divergence.here.added, ws.divergence.here.removed, ws.divergence.peer.added, ws.divergence.peer.removed], [2, 0, 2, 0]);
  assert.equal(ws.state, 'split-brain');
});

test('a clock set right after running an hour ahead: updates go on, latest is the newest capture', async () => {
  const { src: east, dst: west, data, replica } = await mirroredPair(['fixed-east', 'fixed-west'], { first: { env: HOUR_AHEAD } });
  writeChange(data, 'u1.bin', 3 * KiB);
  const u1 = await east.json(['mirror', 'update', 'vol', '--wait']);
  assert.ok(snapshotRow(east, u1.snapshot)!.time > Date.now() + 3000_000, 'taken an hour ahead');
  // the clock is set right: east's next snapshots are dated before the ones it took so far
  await east.stop();
  await east.start();
  writeChange(data, 'u2.bin', 3 * KiB);
  // the last success, an hour "ahead" on this clock now, is not believed: no --force needed (min delay 0)
  const u2 = await east.json(['mirror', 'update', 'vol', '--wait']);
  assert.equal(u2.applied, true);
  assertTreesEqual(replica, data);
  assert.equal(snapshotRow(east, u2.snapshot)!.parent, u1.snapshot);
  assert.equal((await east.json(['snapshot', 'show', 'vol', 'latest'])).id, u2.snapshot);
  writeChange(data, 'u3.bin', 3 * KiB);
  const u3 = await east.json(['mirror', 'update', 'vol', '--wait']);
  assert.equal(snapshotRow(east, u3.snapshot)!.parent, u2.snapshot, 'the lineage goes on from the newest capture');
  const clock = (await east.ferry(['events', '--kind', 'mirror.clock', '--json'])).stdout.split('\n').filter((l) => l.trim());
  assert.equal(clock.length, 1, `the future last success is reported once: ${clock.join('\n')}`);
  assertTreesEqual(replica, data);
  assert.equal((await west.json(['snapshot', 'show', 'vol', 'latest'])).id, u3.snapshot);
});
