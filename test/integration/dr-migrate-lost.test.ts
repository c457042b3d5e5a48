// A migrate whose target is lost after the primary demoted itself, on three
// real daemons: seattle migrates to london (tokyo, the other secondary, is
// handed to london first); london dies before seattle hears its answer, so
// no site is primary and the migrate cannot settle. `ferry failover --force`
// at seattle makes it primary again: the migrate's journal is closed, tokyo
// is asked back, the application restarts at seattle, and production goes on
// there, replicated to tokyo by differences. When london comes back:
//   - it never accepted: it is still seattle's secondary; seattle's daemon
//     finds that out and restores its mirror to london from the final
//     snapshot, so the next update is difference-based;
//   - it had accepted (it died right after its promotion): it does not start
//     the application, both sites are primary, `ferry status` says
//     `split-brain` at both once both wrote, and `ferry failback` at london
//     ends it (its writes kept in a snapshot).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertTreesEqual } from '../helpers.ts';
import { cleanupSites, KiB, createSite, pairPlain, waitFor, writeChange, writeVolumeData, type TestSite } from '../harness/index.ts';

const sites: TestSite[] = [];
after(() => cleanupSites(sites));

let t: { seattle: TestSite; london: TestSite; tokyo: TestSite; data: string; logs: Map<TestSite, string> } | undefined;

const roleOf = (s: TestSite): string => (s.catalog((db) => db.prepare("SELECT role FROM volumes WHERE name = 'vol'").get()) as { role: string }).role;
const secOf = (s: TestSite): { source_site: string; state: string; applied: string } | undefined => s.catalog((db) => db.prepare("SELECT * FROM secondaries WHERE volume = 'vol'").get()) as any;
const mirrorOf = (s: TestSite, peer: string): { state: string; base: string | null } | undefined => s.catalog((db) => db.prepare("SELECT * FROM mirrors WHERE volume = 'vol' AND peer = ?").get(peer)) as any;
const running = (s: TestSite): Array<{ kind: string; step: string }> => s.catalog((db) => db.prepare("SELECT kind, step FROM workflows WHERE state = 'running'").all()) as any;
const posts = (s: TestSite): number => (existsSync(t!.logs.get(s)!) ? readFileSync(t!.logs.get(s)!, 'utf8').split('\n').filter((l) => l === 'post migrate').length : 0);

test('setup: seattle primary, mirrored to london and tokyo; each site has the application\'s hooks', async () => {
  const [seattle, london, tokyo] = await Promise.all([createSite('seattle-lost'), createSite('london-lost'), createSite('tokyo-lost')]);
  sites.push(seattle, london, tokyo);
  const data = join(seattle.dir, 'data');
  writeVolumeData(data, 4, 128 * KiB);
  const logs = new Map([seattle, london, tokyo].map((s) => [s, join(s.dir, 'hooks.log')]));
  const hooks = (s: TestSite) => ({ pre: { command: `echo "pre $FERRY_REASON" >> ${logs.get(s)}`, timeout: 20 }, post: { command: `echo "post $FERRY_REASON" >> ${logs.get(s)}`, timeout: 20 } });
  seattle.defineVolume('vol', [data], hooks(seattle));
  await Promise.all([seattle.start(), london.start(), tokyo.start()]);
  await Promise.all([pairPlain(seattle, london), pairPlain(seattle, tokyo), pairPlain(london, tokyo)]);
  for (const to of ['london', 'tokyo']) {
    await seattle.json(['mirror', 'create', 'vol', '--to', to]);
    await seattle.json(['mirror', 'initialize', 'vol', '--to', to, '--wait']);
  }
  // london runs the application's hooks when it is primary (set on its replica volume).
  await london.json(['volume', 'set', 'vol', '--pre', hooks(london).pre.command, '--post', hooks(london).post.command]);
  t = { seattle, london, tokyo, data, logs };
});

/** seattle migrates to london; `loseLondon` makes london die at the right moment; the migrate cannot settle. */
async function strandedMigrate(loseLondon: () => Promise<void>): Promise<void> {
  const { seattle, london, tokyo } = t!;
  await loseLondon();
  const r = await seattle.ferry(['migrate', 'vol', '--to', 'london', '--json']);
  assert.equal(r.code, 6, `the migrate cannot settle while london is gone: ${r.stdout} ${r.stderr}`);
  assert.match(r.json?.error?.message ?? r.stderr, /failover vol --force/, 'the error names the way out');
  assert.equal(roleOf(seattle), 'secondary', 'seattle demoted itself');
  assert.equal(secOf(tokyo)!.source_site, london.id, 'tokyo was handed to london');
  assert.equal(running(seattle)[0]?.step, 'demoted');
  await seattle.refused(['migrate', 'vol', '--to', 'london'], 6, 'PEER_UNREACHABLE');
}

/** `failover --force` at seattle: primary again, the migrate closed, tokyo back, the application restarted. */
async function forceSeattle(label: string): Promise<string> {
  const { seattle, london, tokyo, data } = t!;
  const before = posts(seattle);
  const fo = await seattle.json(['failover', 'vol', '--force']);
  assert.equal(fo.notified, false);
  assert.equal(roleOf(seattle), 'primary', `${label}: seattle is primary`);
  assert.deepEqual(running(seattle), [], `${label}: no workflow left in progress`);
  const mig = seattle.catalog((db) => db.prepare("SELECT state, plan FROM workflows WHERE kind = 'migrate' ORDER BY started_at DESC LIMIT 1").get()) as { state: string; plan: string };
  assert.equal(mig.state, 'rolled-back', `${label}: the migrate is closed`);
  assert.equal(JSON.parse(mig.plan).forced.unresolved, true, `${label}: london's answer is still owed`);
  assert.equal(secOf(seattle)!.state, 'broken-off', `${label}: london may have taken over: the relation is broken off, its base kept`);
  assert.equal(mirrorOf(seattle, 'london'), undefined, `${label}: no mirror pushes to a site whose role is unknown`);
  assert.ok(posts(seattle) > before, `${label}: the application was restarted at seattle`);
  assert.equal(secOf(tokyo)!.source_site, seattle.id, `${label}: tokyo follows seattle again`);
  // Production goes on at seattle, replicated to tokyo by differences.
  writeChange(data, `prod-${label}.bin`, 24 * KiB);
  const u = await seattle.json(['mirror', 'update', 'vol', '--to', 'tokyo', '--wait']);
  assert.ok(u.transfer.bytes < 24 * KiB + 24 * KiB, `${label}: update to tokyo sent ${u.transfer.bytes} bytes for ~24 KiB`);
  assertTreesEqual(await tokyo.memberPath('vol'), data);
  void london;
  return fo.snapshot;
}

test('the target dies before accepting: failover --force at the demoted primary; back, the target follows it again by differences', async () => {
  assert.ok(t, 'setup failed');
  const { seattle, london, data } = t;
  const pause = join(seattle.dir, 'release-demoted');
  await strandedMigrate(async () => {
    await seattle.stop();
    await seattle.start({ env: { FERRY_TEST_PAUSE_AT: 'migrate:after-demote', FERRY_TEST_PAUSE_FILE: pause } });
    // london dies once seattle demoted itself, before seattle asks it to accept.
    void waitFor('seattle to demote itself', () => running(seattle)[0]?.step === 'demoted', 60_000, 100).then(async () => {
      await london.stop('SIGKILL');
      writeFileSync(pause, '');
    });
  });
  const final = secOf(seattle)!.applied;
  await forceSeattle('never-accepted');
  // london returns: it is still seattle's secondary (it never heard the accept). seattle's daemon finds out.
  await london.start();
  assert.equal(roleOf(london), 'secondary');
  assert.equal(secOf(london)!.source_site, seattle.id);
  await seattle.stop();
  await seattle.start();
  await waitFor('seattle to restore its mirror to london', () => mirrorOf(seattle, 'london')?.state === 'idle', 60_000);
  assert.equal(mirrorOf(seattle, 'london')!.base, final, 'from the final snapshot both hold');
  assert.equal(secOf(seattle), undefined, 'london did not take over: no broken-off relation is left');
  const u = await seattle.json(['mirror', 'update', 'vol', '--to', 'london', '--wait']);
  assert.ok(u.transfer.bytes < 24 * KiB + 32 * KiB, `update to london sent ${u.transfer.bytes} bytes for ~24 KiB written since`);
  assertTreesEqual(await london.memberPath('vol'), data);
  assert.equal(posts(london), 0, 'london never started the application');
});

test('the target dies right after accepting: back, it does not start the application; split brain is reported; failback there ends it', async () => {
  assert.ok(t, 'setup failed');
  const { seattle, london, tokyo, data } = t;
  await strandedMigrate(async () => {
    await london.stop();
    await london.start({ env: { FERRY_TEST_CRASH_AT: 'migrate:accept-after-promote' } });
  });
  await forceSeattle('accepted');
  // london comes back primary (its promotion was done); it asks seattle before starting the application.
  await london.stop(); // it died at the crash point
  await london.start();
  await waitFor('london to settle its half of the migrate', () => running(london).length === 0, 60_000);
  assert.equal(roleOf(london), 'primary');
  assert.equal(posts(london), 0, 'london did not start the application: seattle is primary');
  assert.equal(mirrorOf(london, 'seattle')!.state, 'broken-off');
  // Both write: split brain, at both sites.
  const lRep = await london.memberPath('vol');
  writeChange(lRep, 'written-at-london.bin', 8 * KiB);
  await london.json(['snapshot', 'create', 'vol']);
  await seattle.json(['snapshot', 'create', 'vol']);
  const sv = await seattle.volumeStatus('vol');
  assert.equal(sv.secondary.state, 'split-brain', JSON.stringify(sv.secondary));
  const lm = await london.mirror('vol', 'seattle');
  assert.equal(lm.state, 'split-brain', JSON.stringify(lm));
  // seattle's daemon records what london's answer turned out to be.
  await seattle.stop();
  await seattle.start();
  await waitFor('seattle to learn london is primary', () => {
    const p = JSON.parse((seattle.catalog((db) => db.prepare("SELECT plan FROM workflows WHERE kind = 'migrate' ORDER BY started_at DESC LIMIT 1").get()) as { plan: string }).plan);
    return p.forced.unresolved === false && p.forced.outcome === 'both-primary';
  }, 60_000);
  // london yields: its writes are kept, it follows seattle by differences.
  const fb = await london.json(['failback', 'vol']);
  assert.match(fb.kept, /^failback-kept-/);
  assert.equal(roleOf(london), 'secondary');
  assert.equal(secOf(london)!.source_site, seattle.id);
  assertTreesEqual(lRep, data);
  assert.ok(existsSync(join(await london.restore('vol', fb.kept, 'kept'), 'written-at-london.bin')), 'london\'s write is kept');
  assert.equal(secOf(tokyo)!.source_site, seattle.id);
  assert.equal(mirrorOf(seattle, 'london')!.state, 'idle');
});
