// Two sites that disagree, on real daemons.
// - Split brain: the secondary is forced to take over while the old primary
//   is down; the old primary comes back still running its application, and
//   both write. Updates refuse, scheduled and manual (FAILED_OVER, then the
//   mirror is broken off and stays so); `ferry status`, text and --json, says
//   `split-brain` at both sites and what each side changed since the base
//   (counts and bytes, the peer's side fetched over the DR route); failback
//   at the site that yields ends it, its writes kept in a snapshot.
// - Clock skew: one site's clock is an hour behind (FERRY_TEST_CLOCK_OFFSET_MS, a
//   test hook); a migrate there and back, with updates each way, works: no
//   check compares times taken on different clocks.
// - Min delay: scheduled updates respect --min-delay, not only manual ones.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertTreesEqual } from '../helpers.ts';
import { cleanupSites, copyTree, KiB, createSite, pairSites, waitFor, writeChange, type TestSite } from '../harness/index.ts';

const sites: TestSite[] = [];
after(() => cleanupSites(sites));

const roleOf = (s: TestSite): string => (s.catalog((db) => db.prepare("SELECT role FROM volumes WHERE name = 'vol'").get()) as { role: string }).role;
const mirrorRow = (s: TestSite, peer: string): { state: string; base: string | null; last_success_at: number | null } =>
  s.catalog((db) => db.prepare("SELECT * FROM mirrors WHERE volume = 'vol' AND peer = ?").get(peer)) as any;

function smallTree(dir: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'top.txt'), 'the application\'s main file\n'.repeat(10));
  writeFileSync(join(dir, 'gone.txt'), 'removed later at one site\n');
  writeChange(dir, 'blob.bin', 12 * KiB);
}

async function startWith(site: TestSite, env: Record<string, string>, opts: { tick?: number } = {}): Promise<void> {
  const saved: Record<string, string | undefined> = {};
  for (const k of Object.keys(env)) {
    saved[k] = process.env[k];
    process.env[k] = env[k];
  }
  try {
    await site.start(opts);
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

test('split brain: updates refuse, status says so and what each side changed, failback ends it', async () => {
  const [east, west] = await Promise.all([createSite('east'), createSite('west')]);
  sites.push(east, west);
  const data = join(east.dir, 'data');
  smallTree(data);
  east.defineVolume('vol', [data]);
  await Promise.all([east.start({ tick: 200 }), west.start({ tick: 200 })]);
  await pairSites(east, west);
  await east.json(['mirror', 'create', 'vol', '--to', 'west', '--schedule', '1s']);
  await east.json(['mirror', 'initialize', 'vol', '--to', 'west', '--wait']);
  const replica = await west.memberPath('vol');
  assertTreesEqual(replica, data);

  // ---- east goes down; west is forced to take over (east is not told)
  await east.stop();
  const fo = await west.json(['failover', 'vol', '--force']);
  assert.equal(fo.notified, false);
  const base = fo.plan.snapshot as string;
  assert.equal(roleOf(west), 'primary');
  assert.equal(mirrorRow(east, 'west').state, 'idle', 'east does not know');

  // ---- both write after the base: west in production, east (its application still running) too
  writeChange(replica, 'west-1.bin', 5 * KiB);
  writeChange(replica, 'west-2.bin', 7 * KiB);
  await west.json(['snapshot', 'create', 'vol', '--name', 'west-after']);
  writeChange(data, 'east-only.bin', 3 * KiB);
  writeFileSync(join(data, 'top.txt'), 'east changed this\n');
  rmSync(join(data, 'gone.txt'));
  const eastLive = copyTree(data, join(east.dir, 'east-live'));
  const westLive = copyTree(replica, join(west.dir, 'west-live'));

  // ---- east comes back: its scheduled update is refused by west (FAILED_OVER) and breaks the mirror off;
  // nothing of east reached west's data
  await east.start({ tick: 200 });
  await waitFor('the scheduled update to be refused', () => mirrorRow(east, 'west').state === 'broken-off', 30_000, 100);
  const err = (east.catalog((db) => db.prepare("SELECT last_error FROM mirrors WHERE volume = 'vol'").get()) as { last_error: string }).last_error;
  assert.match(err, /FAILED_OVER/);
  assertTreesEqual(replica, westLive);
  // ... and from now on neither a manual update (even forced) nor the schedule moves anything.
  await east.refused(['mirror', 'update', 'vol', '--wait', '--force'], 4, 'MIRROR_STATE', /broken off/);
  const lastOk = mirrorRow(east, 'west').last_success_at;
  await new Promise((r) => setTimeout(r, 2500));
  assert.equal(mirrorRow(east, 'west').last_success_at, lastOk, 'the schedule sent nothing');
  assert.equal(mirrorRow(east, 'west').state, 'broken-off');
  assertTreesEqual(replica, westLive);

  // ---- status at east (the divergent writes are in a snapshot the refused update took)
  const st = await east.json(['status']);
  const m = st.volumes.find((v: any) => v.name === 'vol').mirrors[0];
  assert.equal(m.state, 'split-brain');
  assert.equal(m.health, 'warn');
  assert.equal(m.divergence.splitBrain, true);
  assert.equal(m.divergence.base, base);
  assert.equal(m.divergence.here.site, 'east');
  assert.deepEqual(
    { added: m.divergence.here.added, modified: m.divergence.here.modified, removed: m.divergence.here.removed, bytesAdded: m.divergence.here.bytesAdded },
    { added: 1, modified: 1, removed: 1, bytesAdded: 3 * KiB },
  );
  assert.equal(m.divergence.peer.site, 'west');
  assert.equal(m.divergence.peer.role, 'primary');
  assert.deepEqual(
    { added: m.divergence.peer.added, modified: m.divergence.peer.modified, removed: m.divergence.peer.removed, bytesAdded: m.divergence.peer.bytesAdded },
    { added: 2, modified: 0, removed: 0, bytesAdded: 12 * KiB },
  );
  const text = await east.ferry(['status']);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /-> west:vol {2}split-brain/);
  assert.match(text.stdout, /SPLIT BRAIN: both sites are primary and both wrote after base/);
  assert.match(text.stdout, /here {2}east \(primary\): \+1 ~1 -1 files, 3.0 KiB added/);
  assert.match(text.stdout, /peer {2}west \(primary\): \+2 ~0 -0 files, 12.0 KiB added/);

  // ---- status at west: the same, seen from the other side
  const wst = (await west.json(['status'])).volumes.find((v: any) => v.name === 'vol');
  assert.equal(wst.role, 'primary');
  assert.equal(wst.secondary.state, 'split-brain');
  assert.equal(wst.secondary.divergence.here.added, 2);
  assert.equal(wst.secondary.divergence.peer.site, 'east');
  assert.equal(wst.secondary.divergence.peer.removed, 1);
  const wtext = await west.ferry(['status']);
  assert.match(wtext.stdout, /secondary of east:vol .* split-brain/);
  // Each site's status says what ends it from there: a failback runs at the old primary only (west,
  // which took over, has no mirror to fail back over, and is refused).
  assert.match(wtext.stdout, /for east to yield, run `ferry failback vol` there[\s\S]*for this site to yield, .*`ferry volume remove vol --force`/);
  await west.refused(['failback', 'vol'], 4, 'MIRROR_STATE');
  const etext = await east.ferry(['status']);
  const yieldHere = /for this site to yield, run `ferry (failback [^`]+)` here/.exec(etext.stdout);
  assert.ok(yieldHere, etext.stdout);

  // ---- ferry picks no winner; the operator does: east yields (its writes kept), west stays primary
  const fb = await east.json(yieldHere[1].split(' '));
  assert.match(fb.kept, /^failback-kept-/);
  assertTreesEqual(await east.restore('vol', fb.kept, 'kept'), eastLive);
  assertTreesEqual(data, westLive);
  assert.equal(roleOf(east), 'secondary');
  assert.equal(roleOf(west), 'primary');
  const after = (await west.json(['status'])).volumes.find((v: any) => v.name === 'vol');
  assert.equal(after.secondary, undefined);
  // back to replicating (its 1 s schedule may have started the next update already)
  assert.ok(['idle', 'updating'].includes(after.mirrors[0].state), `mirror state ${after.mirrors[0].state}`);
  assert.equal(after.mirrors[0].divergence, undefined);
});

test('clock skew: a site an hour behind migrates and replicates both ways', async () => {
  const [east, west] = await Promise.all([createSite('east-skew'), createSite('west-skew')]);
  sites.push(east, west);
  const data = join(east.dir, 'data');
  smallTree(data);
  east.defineVolume('vol', [data]);
  await Promise.all([east.start(), startWith(west, { FERRY_TEST_CLOCK_OFFSET_MS: String(-3600_000) })]);
  await pairSites(east, west);
  await east.json(['mirror', 'create', 'vol', '--to', 'west-skew']);
  await east.json(['mirror', 'initialize', 'vol', '--to', 'west-skew', '--wait']);
  const replica = await west.memberPath('vol');
  const westNow = (await west.json(['status'])).site.now as number;
  assert.ok(Date.now() - westNow > 3500_000, 'west\'s clock is an hour behind');

  // east -> west -> (migrate) west -> east
  const mg = await east.json(['migrate', 'vol', '--to', 'west-skew']);
  assert.ok(mg.final);
  assert.equal(roleOf(west), 'primary');
  writeChange(replica, 'written-at-west.bin', 4 * KiB);
  // west's snapshots are an hour "older" than the final snapshot east took: still accepted
  const u = await west.json(['mirror', 'update', 'vol', '--wait']);
  assert.equal(u.applied, true);
  assertTreesEqual(data, replica);
  const west2 = await west.json(['migrate', 'vol', '--to', 'east-skew']);
  assert.ok(west2.final);
  assert.equal(roleOf(east), 'primary');
  writeChange(data, 'written-at-east.bin', 4 * KiB);
  await east.json(['mirror', 'update', 'vol', '--wait']);
  assertTreesEqual(replica, data);

  // failover at west (an hour behind) and failback at east: both ways again
  const fo = await west.json(['failover', 'vol']);
  assert.equal(fo.notified, true);
  writeChange(replica, 'after-failover.bin', 2 * KiB);
  const fb = await east.json(['failback', 'vol']);
  assert.equal(fb.update.applied, true);
  assertTreesEqual(data, replica);
  writeChange(replica, 'after-failback.bin', 2 * KiB);
  await west.json(['mirror', 'update', 'vol', '--wait']);
  assertTreesEqual(data, replica);
});

test('scheduled updates respect --min-delay', async () => {
  const [east, west] = await Promise.all([createSite('east-md'), createSite('west-md')]);
  sites.push(east, west);
  const data = join(east.dir, 'data');
  smallTree(data);
  east.defineVolume('vol', [data]);
  await Promise.all([east.start({ tick: 100 }), west.start()]);
  await pairSites(east, west);
  // Every second by schedule, but at least 3 s apart by min delay.
  await east.json(['mirror', 'create', 'vol', '--to', 'west-md', '--schedule', '1s', '--min-delay', '3s']);
  await east.json(['mirror', 'initialize', 'vol', '--to', 'west-md', '--wait']);
  const since = Date.now();
  await waitFor('three scheduled updates', () => {
    const n = (east.catalog((db) => db.prepare("SELECT count(*) AS n FROM events WHERE kind = 'replication.update' AND outcome = 'ok' AND at >= ?").get(since)) as { n: number }).n;
    return n >= 3;
  }, 60_000, 200);
  const times = (east.catalog((db) => db.prepare("SELECT at FROM events WHERE kind = 'replication.update' AND outcome = 'ok' ORDER BY id").all()) as Array<{ at: number }>).map((r) => r.at);
  for (let i = 1; i < times.length; i++) assert.ok(times[i] - times[i - 1] >= 3000, `updates ${times[i] - times[i - 1]} ms apart, within the 3 s min delay: ${times.join(', ')}`);
  // A manual update within the min delay is still refused unless forced.
  await east.refused(['mirror', 'update', 'vol', '--wait'], 4, 'MIRROR_STATE', /min delay/);
  void readFileSync;
});
