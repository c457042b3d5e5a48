// Seed procedure 5, failover and failback edge cases, end to end on two real
// daemons: `failover --dry-run` changes nothing; with the old primary down a
// failover is refused (PEER_UNREACHABLE) unless forced; the old primary,
// back up and unaware, is refused by the new one (FAILED_OVER) and breaks
// its mirror off; `failback --dry-run` prints the plan (what is kept, the
// base, the bytes expected) and changes nothing; when the base is gone from
// one side, failback reports NEEDS_FULL_SYNC and changes nothing, and
// `--full` then resyncs (moving only what the old primary lacks), keeping its
// divergent writes in a snapshot. And a new primary whose home was restored
// from a backup taken before its failover (it is a secondary again as far as
// its catalog knows): failback at the old primary says so and what works,
// and `mirror update` rejoins the broken-off mirror, its writes kept first.
// A failback left at step demoted whose new primary removed its mirror back
// (it serves the failback no more): the rerun says so and names
// `failover --force`, which abandons it with nothing lost (soak seed 5).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertTreesEqual } from '../helpers.ts';
import { cleanupSites, copyTree, KiB, MiB, mirroredPair, mirrorWithBase, createSite, pairSites, waitFor, writeChange, writeVolumeData, type TestSite } from '../harness/index.ts';
import { Site } from '../../src/site/site.ts';
import { createVolume } from '../../src/site/volumes.ts';

const sites: TestSite[] = [];
after(() => cleanupSites(sites));

/** Left by the first test for the second. */
let after1: { a: TestSite; divergent: string[]; before: string[] } | undefined;

const secondaryRow = (site: TestSite): { state: string; applied: string } | undefined =>
  site.catalog((db) => db.prepare("SELECT state, applied FROM secondaries WHERE volume = 'vol'").get()) as any;
const roleOf = (site: TestSite): string => (site.catalog((db) => db.prepare("SELECT role FROM volumes WHERE name = 'vol'").get()) as { role: string }).role;

test('failover and failback edge cases: dry runs, unreachable old primary, lost base and --full', async () => {
  const [a, b] = await Promise.all([createSite('east'), createSite('west')]);
  sites.push(a, b);
  const data = join(a.dir, 'data');
  const volBytes = writeVolumeData(data, 8, 1 * MiB);
  a.defineVolume('vol', [data]);
  await Promise.all([a.start(), b.start()]);
  await pairSites(a, b);
  await a.json(['mirror', 'create', 'vol', '--to', 'west']);
  await a.json(['mirror', 'initialize', 'vol', '--to', 'west', '--wait']);
  const replica = await b.memberPath('vol');
  assertTreesEqual(replica, data);
  writeChange(data, 'u1.bin', 64 * KiB);
  const u1 = await a.json(['mirror', 'update', 'vol', '--wait']);
  assertTreesEqual(replica, data);

  // ---- failover --dry-run: a plan, and nothing changes
  const snapsB = b.snapshotRows('vol');
  const dry = await b.json(['failover', 'vol', '--dry-run']);
  assert.equal(dry.plan.snapshot, u1.snapshot);
  assert.equal(dry.plan.oldPrimary, 'east');
  assert.equal(dry.plan.consistent, true);
  assert.equal(dry.plan.steps.length, 3);
  assert.equal(roleOf(b), 'secondary');
  assert.equal(secondaryRow(b)!.state, 'active');
  assert.deepEqual(b.snapshotRows('vol'), snapsB);
  assert.equal(mirrorWithBase(a, 'vol', 'west')!.state, 'idle');
  // ... and replication goes on as before.
  writeChange(data, 'u2.bin', 48 * KiB);
  const u2 = await a.json(['mirror', 'update', 'vol', '--wait']);
  assertTreesEqual(replica, data);
  assert.ok(u2.transfer.bytes >= 48 * KiB && u2.transfer.bytes < 48 * KiB + 32 * KiB, `update sent ${u2.transfer.bytes} bytes`);

  // ---- the old primary is down: refused without --force, nothing changes; forced, it works
  await a.stop();
  const snapsB2 = b.snapshotRows('vol');
  await b.refused(['failover', 'vol'], 6, 'PEER_UNREACHABLE', /--force/);
  assert.equal(roleOf(b), 'secondary');
  assert.equal(secondaryRow(b)!.state, 'active');
  assert.deepEqual(b.snapshotRows('vol'), snapsB2);
  const fo = await b.json(['failover', 'vol', '--force']);
  assert.equal(fo.notified, false);
  assert.ok(fo.notifyError, 'says the old primary could not be told');
  assert.equal(roleOf(b), 'primary');
  assert.equal(secondaryRow(b)!.state, 'broken-off');
  assert.match(b.snapshotRows('vol').find((s) => s.id === fo.snapshot)!.name!, /^failover-/);
  assertTreesEqual(replica, data);

  // ---- both sides write: the new primary in production, the old one (still down, its application running) divergently
  writeChange(replica, 'west/prod.bin', 150 * KiB);
  writeFileSync(join(replica, 'etc', 'app-1.conf'), 'west is primary now\n');
  writeChange(data, 'east/divergent.bin', 80 * KiB);
  rmSync(join(data, 'big-2.bin'));

  // ---- the old primary comes back, unaware: its update is refused by the new primary and its mirror breaks off.
  // (It comes back at another port first, so that west, which keeps telling it of the failover, cannot
  // reach it before its own update does: this is the path where it learns from the refusal.)
  const eastPort = a.port;
  await a.start({ port: 0 });
  await a.refused(['mirror', 'update', 'vol', '--wait'], 4, 'FAILED_OVER', /failback/);
  assert.equal(mirrorWithBase(a, 'vol', 'west')!.state, 'broken-off');
  // ... and its status says so (west wrote nothing into a snapshot yet: no split brain to show)
  const told = await a.mirror('vol', 'west');
  assert.equal(told.state, 'broken-off');
  assert.equal(told.health, 'warn');
  assert.equal(told.lastError?.code, 'FAILED_OVER');
  // back at its address (failback needs west to reach it); west's notice, if it comes, changes nothing now
  await a.stop();
  await a.start({ port: eastPort });
  const beforeFailback = copyTree(data, join(a.dir, 'before-failback'));
  const westLive = copyTree(replica, join(b.dir, 'west-live'));
  const snapsA = a.snapshotRows('vol');
  const divergent = snapsA.filter((s) => s.time > snapsA.find((x) => x.id === u2.snapshot)!.time);
  assert.equal(divergent.length, 1, 'the refused update took a snapshot of the divergent writes first');

  // ---- failback --dry-run: prints the plan, changes nothing
  const text = await a.ferry(['failback', 'vol', '--dry-run']);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /failback of vol from west:vol would:/);
  assert.match(text.stdout, /failback-kept-<time>/);
  assert.ok(text.stdout.includes(`base: ${u2.snapshot}`), text.stdout);
  assert.ok(text.stdout.includes(divergent[0].id), `the plan names the divergent snapshot: ${text.stdout}`);
  assert.match(text.stdout, /expected to move: about 15\d(\.\d+)? KiB/);
  const plan = (await a.json(['failback', 'vol', '--dry-run'])).plan;
  assert.equal(plan.base, u2.snapshot);
  assert.equal(plan.commonBase, true);
  assert.deepEqual(plan.divergentSnapshots, [divergent[0].id]);
  assert.ok(plan.expectedBytes >= 150 * KiB && plan.expectedBytes < 152 * KiB, `plan expects ${plan.expectedBytes} bytes`);
  assert.equal(roleOf(a), 'primary');
  assert.deepEqual(a.snapshotRows('vol'), snapsA);
  assert.equal(mirrorWithBase(a, 'vol', 'west')!.state, 'broken-off');
  assertTreesEqual(data, beforeFailback);

  // ---- the base is lost at the new primary (its hold removed by hand, then the snapshot deleted)
  b.catalog((db) => db.prepare('DELETE FROM holds WHERE snapshot = ?').run(u2.snapshot), { write: true });
  await b.json(['snapshot', 'delete', 'vol', u2.snapshot]);
  assert.ok(!b.snapshotRows('vol').some((s) => s.id === u2.snapshot));
  await a.refused(['failback', 'vol'], 4, 'NEEDS_FULL_SYNC', /--full/);
  assert.equal(roleOf(a), 'primary');
  assert.deepEqual(a.snapshotRows('vol'), snapsA, 'nothing kept, nothing changed');
  assertTreesEqual(data, beforeFailback);
  const nfs = await a.mirror('vol', 'west');
  assert.equal(nfs.state, 'broken-off', 'still broken off: an initialize would be refused by west');
  assert.equal(nfs.health, 'warn');

  // ---- --full: the old primary keeps its writes and resyncs; it lacks only what the new primary wrote
  const fb = await a.json(['failback', 'vol', '--full']);
  assert.equal(fb.plan.full, true);
  assert.equal(fb.plan.commonBase, false);
  assert.match(fb.kept, /^failback-kept-/);
  const sent = fb.update.transfer.bytes;
  assert.ok(sent >= 150 * KiB && sent < 150 * KiB + 64 * KiB, `full failback sent ${sent} bytes (the old primary lacked ~150 KiB; volume ${volBytes})`);
  assertTreesEqual(data, westLive);
  assertTreesEqual(replica, westLive);
  assertTreesEqual(await a.restore('vol', fb.kept, 'kept'), beforeFailback);
  assert.equal(roleOf(a), 'secondary');
  const back = mirrorWithBase(b, 'vol', 'east')!;
  assert.equal(back.state, 'idle');
  assert.equal(back.base, fb.update.snapshot);
  after1 = { a, divergent: divergent.map((s) => s.id), before: snapsA.map((s) => s.id) };
  console.log(`# bytes: volume ${volBytes}, update ${u2.transfer.bytes} (48 KiB changed), failback plan ${plan.expectedBytes}, full failback ${sent} (150 KiB written at the new primary)`);
});

test('the old primary\'s own snapshots, the divergent one the failback plan lists among them, survive the failback', () => {
  assert.ok(after1, 'the first test did not get this far');
  const now = after1.a.snapshotRows('vol').map((s) => s.id);
  for (const id of after1.divergent) assert.ok(now.includes(id), `divergent snapshot ${id}, listed by the failback plan, is gone after the failback`);
  for (const id of after1.before) assert.ok(now.includes(id), `snapshot ${id}, taken here as primary, is gone after the failback`);
});

test('a new primary whose home was restored from a backup taken before its failover: failback says what works, and mirror update rejoins it, keeping what it wrote', async () => {
  // b's replica is where its operator put it, outside its home (a home restore leaves it as it is).
  let replica = '';
  const { a, b, data } = await mirroredPair(sites, ['restored-a', 'restored-b'], {
    fileSize: 256 * KiB,
    beforeStart: (_a, b) => {
      replica = join(b.dir, 'replica');
      mkdirSync(replica);
      const s = Site.open(b.home, { command: 'test setup' });
      try {
        createVolume(s, 'vol', { members: [{ name: 'data', path: replica }], role: 'secondary' });
      } finally {
        s.close();
      }
    },
  });
  // A backup of b's home, taken while its daemon is stopped.
  await b.stop();
  const backup = join(b.dir, 'home-backup');
  execFileSync('cp', ['-a', b.home, backup]);
  await b.start();
  // b takes over (a is told); production runs at b for a while.
  await b.json(['failover', 'vol']);
  assert.equal(mirrorWithBase(a, 'vol', b.name)!.state, 'broken-off');
  writeFileSync(join(replica, 'written-at-b.txt'), 'production at b\n');
  const atB = copyTree(replica, join(b.dir, 'as-primary'));
  // b's home is restored from the backup: its catalog knows nothing of the failover.
  await b.stop();
  rmSync(b.home, { recursive: true, force: true });
  execFileSync('cp', ['-a', backup, b.home]);
  await b.start();
  assert.equal(roleOf(b), 'secondary');
  // a: failback has nothing to fail back from, and says what works instead.
  await a.refused(['failback', 'vol'], 4, 'MIRROR_STATE', /secondary again.*mirror update vol --to restored-b/s);
  writeChange(data, 'at-a.bin', 32 * KiB);
  // mirror update rejoins the broken-off mirror; b's writes as primary are kept there before anything is overwritten.
  const first = await a.refused(['mirror', 'update', 'vol', '--to', b.name, '--wait'], 4, 'REPLICA_WRITTEN');
  const kept = first.json.error.details.writesSnapshot;
  assert.match(kept, /^replica-writes-/);
  assert.equal(mirrorWithBase(a, 'vol', b.name)!.state, 'idle', 'the mirror is in step again');
  const u = await a.json(['mirror', 'update', 'vol', '--to', b.name, '--wait', '--force']);
  assert.ok(u.transfer.bytes < 32 * KiB + 32 * KiB, `the update sent ${u.transfer.bytes} bytes for ~32 KiB written at a`);
  assertTreesEqual(replica, data);
  assertTreesEqual(await b.restore('vol', kept, 'kept'), atB);
});

test('a failback whose new primary is lost after this site demoted itself: failover --force here undoes the demotion; split brain shows once the other is back, and the failback rerun ends it', async () => {
  const { a, b, data } = await mirroredPair(sites, ['fblost-a', 'fblost-b']);
  await b.json(['failover', 'vol']);
  // a fails back: it demotes itself, then b is lost before it resyncs a.
  const pause = join(a.dir, 'release');
  await a.stop();
  await a.start({ env: { FERRY_TEST_PAUSE_AT: 'failback:after-demote', FERRY_TEST_PAUSE_FILE: pause } });
  const fb = a.ferry(['failback', 'vol', '--json']);
  await waitFor('a to demote itself', () => a.catalog((db) => (db.prepare("SELECT step FROM workflows WHERE state = 'running'").get() as { step: string } | undefined)?.step === 'demoted'), 60_000);
  await b.stop('SIGKILL');
  writeFileSync(pause, '');
  const r = await fb;
  assert.equal(r.code, 6, `${r.stdout} ${r.stderr}`);
  assert.match(r.json?.error?.message ?? r.stderr, /failover vol --force/, 'the error names the way out');
  assert.equal(roleOf(a), 'secondary');
  await a.refused(['failover', 'vol'], 4, 'MIRROR_STATE', /failover vol --force/);
  const fo = await a.json(['failover', 'vol', '--force']);
  assert.match(fo.instead, /demotion is undone/);
  assert.equal(roleOf(a), 'primary');
  assert.equal(secondaryRow(a), undefined);
  assert.equal(mirrorWithBase(a, 'vol', b.name)!.state, 'broken-off', 'back as it was after b\'s failover');
  assert.deepEqual(a.catalog((db) => db.prepare("SELECT kind FROM workflows WHERE state = 'running'").all()), []);
  // b comes back primary; both write: split brain at both.
  await b.start();
  writeChange(data, 'at-a.bin', 4 * KiB);
  await a.json(['snapshot', 'create', 'vol']);
  const bRep = await b.memberPath('vol');
  writeChange(bRep, 'at-b.bin', 4 * KiB);
  await b.json(['snapshot', 'create', 'vol']);
  assert.equal((await a.mirror('vol', b.name)).state, 'split-brain');
  assert.equal((await b.volumeStatus('vol')).secondary.state, 'split-brain');
  // The failback, run again, ends it: a's writes kept, a follows b.
  const fb2 = await a.json(['failback', 'vol']);
  assert.match(fb2.kept, /^failback-kept-/);
  assert.equal(roleOf(a), 'secondary');
  assertTreesEqual(data, bRep);
});

test('a failback left at step demoted whose new primary no longer serves it (it removed its mirror here): the rerun says so and how to abandon it; failover --force does, nothing lost', async () => {
  const { a, b, data } = await mirroredPair(sites, ['fbgone-a', 'fbgone-b']);
  await b.json(['failover', 'vol']);
  writeChange(data, 'at-a.bin', 4 * KiB);
  const atA = copyTree(data, join(a.dir, 'at-a-copy'));
  // a fails back; b dies right after it created the reverse mirror (soak seed 5: a's daemon died there).
  await b.stop();
  await b.start({ env: { FERRY_TEST_CRASH_AT: 'failback:serve-after-reverse' } });
  const fb = await a.ferry(['failback', 'vol', '--json']);
  assert.notEqual(fb.code, 0, `${fb.stdout} ${fb.stderr}`);
  const p = b.proc!;
  await waitFor('b to die at its crash point', () => p.exitCode !== null || p.signalCode !== null, 60_000, 50);
  await b.stop();
  await a.stop();
  // b, back, drops its mirror to a before a's failback is run again: b serves no failback to a now.
  await b.start();
  await b.json(['mirror', 'remove', 'vol', '--to', a.name]);
  await a.start();
  const stuck = () => a.catalog((db) => db.prepare("SELECT kind, step FROM workflows WHERE state = 'running'").all()) as Array<{ kind: string; step: string }>;
  const r = await a.refused(['failback', 'vol'], 4, 'MIRROR_STATE', /failover vol --force/);
  assert.match(r.json?.error?.message ?? r.stderr, /failback-kept-/, 'names the snapshot that keeps this site\'s writes');
  assert.deepEqual(stuck().map((x) => x.step), ['demoted']);
  // The way out the error names: failover --force abandons the failback; a is primary with its own writes.
  const fo = await a.json(['failover', 'vol', '--force']);
  assert.match(fo.instead, /demotion is undone/);
  assert.equal(roleOf(a), 'primary');
  assert.equal(secondaryRow(a), undefined);
  assert.deepEqual(stuck(), []);
  assertTreesEqual(data, atA);
  writeChange(data, 'after.bin', 4 * KiB);
  await a.json(['snapshot', 'create', 'vol']);
});

test('failback at a secondary whose primary is no longer paired here says to pair it again (soak seed 8, step 809: a TypeError)', async () => {
  const { a, b } = await mirroredPair(sites, ['unpaired-a', 'unpaired-b']);
  await b.json(['site', 'remove', a.name]);
  assert.equal(secondaryRow(b)!.state, 'active', 'b is still the secondary of a');
  await b.refused(['failback', 'vol', '--to', a.name], 3, 'PEER_NOT_FOUND', new RegExp(`not paired with this site[\\s\\S]*ferry site add NAME URL --id ${a.id}`));
  assert.equal(roleOf(b), 'secondary', 'nothing changed');
});
