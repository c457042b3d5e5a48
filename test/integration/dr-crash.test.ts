// Crash safety of the DR workflows, end to end on two real daemons (east and
// west, each reaching the other through a loopback TCP proxy). For every
// named crash point of failover, failback and migrate (FERRY_TEST_CRASH_AT, a test
// hook: the daemon running the workflow SIGKILLs itself right after that
// durable step), the workflow is run and the daemon dies there; then the
// command is rerun, or only the daemon restarted (it resumes the journal at
// start), and the sites must end consistent: the roles as the workflow
// promises (exactly one primary after a failback or a migrate; a migrate
// either done or rolled back with the application's post hook run where the
// application now lives), no step done twice (one failover snapshot, one
// kept snapshot), nothing lost (the old primary's divergent writes restore
// from the kept snapshot), and the replica equal to the primary byte for
// byte after the next update. Then a TCP reset between the sites during each
// workflow, and a failover racing an apply in flight (FERRY_TEST_PAUSE_AT holds
// the apply after it wrote the replica): without --force it waits for the
// apply, with --force it cancels it and rolls the replica back.
//
// The cases run as one table on one pair of sites: a failover and a failback
// swap the roles, and so does a completed migrate, so each case starts where
// the previous one ended.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertTreesEqual } from '../helpers.ts';
import { cleanupSites, copyTree, KiB, createSite, waitFor, writeChange, type TestSite } from '../harness/index.ts';
import { TcpProxy } from '../harness/tcp-proxy.ts';
import { Site } from '../../src/site/site.ts';
import { createVolume } from '../../src/site/volumes.ts';

const sites: TestSite[] = [];
const proxies: TcpProxy[] = [];
after(async () => {
  await cleanupSites(sites);
  await Promise.all(proxies.map((p) => p.close().catch(() => {})));
});

interface World {
  east: TestSite;
  west: TestSite;
  /** the member path of `vol` at each site */
  data: Map<TestSite, string>;
  /** the proxy a site's calls to the other cross */
  via: Map<TestSite, TcpProxy>;
  hookLog: Map<TestSite, string>;
  primary: TestSite;
  secondary: TestSite;
}

let w: World | undefined;
let n = 0;

const roleOf = (s: TestSite): string => (s.catalog((db) => db.prepare("SELECT role FROM volumes WHERE name = 'vol'").get()) as { role: string }).role;
const secRow = (s: TestSite): { source_site: string; state: string; applied: string | null; applying: string | null; consistent: number } | undefined =>
  s.catalog((db) => db.prepare("SELECT * FROM secondaries WHERE volume = 'vol'").get()) as any;
const mirrorTo = (s: TestSite, peer: TestSite): { state: string; base: string | null; last_error: string | null } | undefined =>
  s.catalog((db) => db.prepare("SELECT * FROM mirrors WHERE volume = 'vol' AND peer = ?").get(peer.name)) as any;
const running = (s: TestSite): Array<{ kind: string; step: string }> => s.catalog((db) => db.prepare("SELECT kind, step FROM workflows WHERE state = 'running'").all()) as any;
const named = (s: TestSite, prefix: string): string[] => s.snapshotRows('vol').filter((r) => r.name?.startsWith(prefix)).map((r) => r.id);
const hookLines = (s: TestSite, what: string): number => (existsSync(w!.hookLog.get(s)!) ? readFileSync(w!.hookLog.get(s)!, 'utf8').split('\n').filter((l) => l === what).length : 0);

/** Start a site's daemon with extra environment (test hooks) for this daemon only. */
async function startWith(site: TestSite, env: Record<string, string>): Promise<void> {
  const saved: Record<string, string | undefined> = {};
  for (const k of Object.keys(env)) {
    saved[k] = process.env[k];
    process.env[k] = env[k];
  }
  try {
    await site.start();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

/** The daemon of `site` killed itself at the crash point: wait for it, and forget the process. */
async function died(site: TestSite, step: string): Promise<void> {
  const p = site.proc!;
  await waitFor(`[${site.name}] the daemon to die at ${step}`, () => p.exitCode !== null || p.signalCode !== null, 60_000, 50);
  assert.equal(p.signalCode, 'SIGKILL', `[${site.name}] the daemon exited ${p.exitCode} instead of dying at ${step}:\n${site.log.slice(-3000)}`);
  assert.match(site.log, new RegExp(`crash point ${step}`), `[${site.name}] died elsewhere than at ${step}`);
  await site.stop();
}

async function restartWith(site: TestSite, env: Record<string, string>): Promise<void> {
  await site.stop();
  await startWith(site, env);
}

/** No workflow left in progress at either site (the daemons' resume at start has settled them). */
async function settled(): Promise<void> {
  await waitFor('the journals to settle', () => running(w!.east).length === 0 && running(w!.west).length === 0, 60_000, 200);
}

/** Exactly one primary, the other its secondary (active), its mirror there idle: then one more update makes the replica equal byte for byte. */
async function assertInStep(primary: TestSite, secondary: TestSite, label: string): Promise<void> {
  assert.equal(roleOf(primary), 'primary', `${label}: ${primary.name} should be primary`);
  assert.equal(roleOf(secondary), 'secondary', `${label}: ${secondary.name} should be secondary`);
  const sec = secRow(secondary)!;
  assert.equal(sec.source_site, primary.id, `${label}: ${secondary.name} follows ${primary.name}`);
  assert.equal(sec.state, 'active');
  assert.equal(secRow(primary), undefined, `${label}: ${primary.name} keeps no secondary relation`);
  assert.equal(mirrorTo(secondary, primary), undefined, `${label}: the secondary keeps no mirror`);
  assert.ok(['idle'].includes(mirrorTo(primary, secondary)!.state), `${label}: mirror state ${mirrorTo(primary, secondary)!.state}`);
  writeChange(w!.data.get(primary)!, `step-${++n}.bin`, 3 * KiB);
  await primary.json(['mirror', 'update', 'vol', '--wait', '--force']);
  assertTreesEqual(w!.data.get(secondary)!, w!.data.get(primary)!);
  assert.deepEqual(running(primary), []);
  assert.deepEqual(running(secondary), []);
  w!.primary = primary;
  w!.secondary = secondary;
}

test('setup: two sites through TCP proxies, a small volume mirrored east -> west', async () => {
  const [east, west] = await Promise.all([createSite('east'), createSite('west')]);
  sites.push(east, west);
  const data = new Map<TestSite, string>([
    [east, join(east.dir, 'data')],
    [west, join(west.dir, 'replica')],
  ]);
  const hookLog = new Map<TestSite, string>([
    [east, join(east.dir, 'hooks.log')],
    [west, join(west.dir, 'hooks.log')],
  ]);
  const hooks = (s: TestSite) => ({
    pre: { command: `echo "pre $FERRY_REASON" >> ${hookLog.get(s)}`, timeout: 20 },
    post: { command: `echo "post $FERRY_REASON" >> ${hookLog.get(s)}`, timeout: 20 },
  });
  const d = data.get(east)!;
  mkdirSync(join(d, 'etc'), { recursive: true });
  for (let i = 0; i < 4; i++) writeFileSync(join(d, 'etc', `app-${i}.conf`), `setting = ${i}\n`.repeat(20));
  writeChange(d, 'blob.bin', 16 * KiB);
  east.defineVolume('vol', [`data=${d}`], hooks(east));
  // The replica at west is created by its operator, with the application's hooks for when it runs there.
  mkdirSync(data.get(west)!);
  const s = Site.open(west.home, { command: 'test setup' });
  try {
    createVolume(s, 'vol', { members: [{ name: 'data', path: data.get(west)! }], hooks: hooks(west), role: 'secondary' });
  } finally {
    s.close();
  }
  await Promise.all([east.start(), west.start()]);
  const toWest = await TcpProxy.start(west.port!);
  const toEast = await TcpProxy.start(east.port!);
  proxies.push(toWest, toEast);
  await Promise.all([east.json(['site', 'add', 'west', toWest.url, '--id', west.id]), west.json(['site', 'add', 'east', toEast.url, '--id', east.id])]);
  await east.json(['mirror', 'create', 'vol', '--to', 'west']);
  await east.json(['mirror', 'initialize', 'vol', '--to', 'west', '--wait']);
  assertTreesEqual(data.get(west)!, d);
  w = { east, west, data, via: new Map([[east, toWest], [west, toEast]]), hookLog, primary: east, secondary: west };
});

// ---------------------------------------------------------------- failover, then failback (roles swap each cycle)

type Recover = 'rerun' | 'restart';
const CYCLES: Array<{ failover: string; foRecover: Recover; failback: string; fbRecover: Recover }> = [
  { failover: 'failover:after-notice', foRecover: 'rerun', failback: 'failback:after-keep', fbRecover: 'rerun' },
  { failover: 'failover:after-promote', foRecover: 'restart', failback: 'failback:after-demote', fbRecover: 'restart' },
  { failover: 'failover:after-snapshot', foRecover: 'rerun', failback: 'failback:after-resync', fbRecover: 'rerun' },
  { failover: 'failover:after-promote', foRecover: 'rerun', failback: 'failback:serve-after-reverse', fbRecover: 'rerun' },
  { failover: 'failover:after-notice', foRecover: 'restart', failback: 'failback:after-keep', fbRecover: 'restart' },
];

for (const c of CYCLES) {
  test(`crash at ${c.failover} (${c.foRecover}), then at ${c.failback} (${c.fbRecover})`, async () => {
    assert.ok(w, 'setup failed');
    const P = w.primary;
    const S = w.secondary;
    const label = `${c.failover}/${c.failback}`;

    // ---- failover at S, which dies at the crash point
    const base = mirrorTo(P, S)!.base!;
    const promoted = copyTree(w.data.get(S)!, join(S.dir, `promoted-${++n}`));
    const failoverSnaps = named(S, 'failover-').length;
    await restartWith(S, { FERRY_TEST_CRASH_AT: c.failover });
    const r = await S.ferry(['failover', 'vol', '--json']);
    assert.notEqual(r.code, 0, `${label}: failover should not report success when its daemon died`);
    await died(S, c.failover);
    assert.equal(running(S)[0]?.kind, 'failover', `${label}: the journal shows the failover in progress`);
    await S.start();
    if (c.foRecover === 'rerun') {
      const fo = await S.json(['failover', 'vol']);
      assert.equal(fo.plan.snapshot, base);
    } else await settled();
    assert.equal(roleOf(S), 'primary', `${label}: ${S.name} is primary after the failover`);
    assert.equal(secRow(S)!.state, 'broken-off');
    assert.equal(secRow(S)!.applied, base, 'the base is what was promoted');
    assert.equal(mirrorTo(P, S)!.state, 'broken-off', `${label}: the old primary was told`);
    assert.equal(named(S, 'failover-').length, failoverSnaps + 1, `${label}: exactly one failover snapshot`);
    assert.ok(S.catalog((db) => db.prepare('SELECT 1 FROM holds WHERE snapshot = ?').get(base)), 'the base stays held for failback');
    assertTreesEqual(w.data.get(S)!, promoted);
    assert.deepEqual(running(S), []);

    // ---- both write: production at S, divergent writes at the old primary P
    writeChange(w.data.get(S)!, `prod-${n}.bin`, 5 * KiB);
    writeChange(w.data.get(P)!, `divergent-${n}.bin`, 3 * KiB);
    const divergent = copyTree(w.data.get(P)!, join(P.dir, `divergent-${n}`));
    const keptBefore = named(P, 'failback-kept-');

    // ---- failback at P; the site running the crashing step dies
    const dying = c.failback === 'failback:serve-after-reverse' ? S : P;
    await restartWith(dying, { FERRY_TEST_CRASH_AT: c.failback });
    const fb = await P.ferry(['failback', 'vol', '--json']);
    assert.notEqual(fb.code, 0, `${label}: failback should not report success when a daemon died`);
    await died(dying, c.failback);
    assert.equal(running(P)[0]?.kind, 'failback', `${label}: the journal at ${P.name} shows the failback in progress`);
    await dying.start();
    if (c.fbRecover === 'rerun') {
      const done = await P.json(['failback', 'vol']);
      assert.match(done.kept, /^failback-kept-/);
    } else {
      if (dying !== P) await restartWith(P, {});
      await settled();
    }
    const kept = named(P, 'failback-kept-').filter((id) => !keptBefore.includes(id));
    assert.equal(kept.length, 1, `${label}: exactly one kept snapshot (${kept.join(', ')})`);
    assertTreesEqual(await P.restore('vol', kept[0], 'kept'), divergent);
    await assertInStep(S, P, label);
  });
}

// ---------------------------------------------------------------- migrate

const MIGRATE: Array<{ step: string; recover: Recover; at: 'primary' | 'target' }> = [
  { step: 'migrate:after-pre-hook', recover: 'restart', at: 'primary' },
  { step: 'migrate:after-final', recover: 'rerun', at: 'primary' },
  { step: 'migrate:after-repoint', recover: 'restart', at: 'primary' },
  { step: 'migrate:after-demote', recover: 'restart', at: 'primary' },
  { step: 'migrate:after-demote', recover: 'rerun', at: 'primary' },
  { step: 'migrate:after-accept', recover: 'restart', at: 'primary' },
  { step: 'migrate:accept-after-promote', recover: 'restart', at: 'target' },
  { step: 'migrate:accept-after-promote', recover: 'rerun', at: 'target' },
];

for (const c of MIGRATE) {
  test(`migrate crashed at ${c.step} (${c.recover})`, async () => {
    assert.ok(w, 'setup failed');
    const P = w.primary;
    const S = w.secondary;
    const dying = c.at === 'primary' ? P : S;
    const postP = hookLines(P, 'post migrate');
    const postS = hookLines(S, 'post migrate');
    await restartWith(dying, { FERRY_TEST_CRASH_AT: c.step });
    const r = await P.ferry(['migrate', 'vol', '--to', S.name, '--json']);
    assert.notEqual(r.code, 0, `${c.step}: migrate should not report success when a daemon died`);
    await died(dying, c.step);
    await dying.start();
    // Never both primary, whatever the step.
    assert.ok(!(roleOf(P) === 'primary' && roleOf(S) === 'primary'), `${c.step}: both sites primary after the crash`);
    let expectDone: boolean;
    if (c.recover === 'rerun') {
      const m = await P.json(['migrate', 'vol', '--to', S.name]);
      assert.ok(m.final, `${c.step}: the rerun completes the migrate`);
      expectDone = true;
    } else {
      if (dying !== P) await restartWith(P, {});
      await settled();
      // Unaccepted migrates roll back; accepted ones are finished.
      expectDone = c.step === 'migrate:after-accept' || c.step === 'migrate:accept-after-promote';
    }
    if (expectDone) {
      await assertInStep(S, P, c.step);
      assert.ok(hookLines(S, 'post migrate') > postS, `${c.step}: the application was started at ${S.name}`);
    } else {
      await assertInStep(P, S, c.step);
      assert.ok(hookLines(P, 'post migrate') > postP, `${c.step}: the application was restarted at ${P.name} (rollback)`);
      assert.equal(hookLines(S, 'post migrate'), postS, `${c.step}: nothing started at ${S.name}`);
    }
  });
}

// ---------------------------------------------------------------- TCP resets between the sites

test('a TCP reset during each workflow: it stops cleanly, and the rerun completes', async () => {
  assert.ok(w, 'setup failed');
  const pause = join(w.east.dir, `release-${Date.now()}`);
  {
    // Failover: the notice cannot cross; without --force nothing changes and the journal closes.
    const P = w.primary;
    const S = w.secondary;
    w.via.get(S)!.resetAfter(0);
    await S.refused(['failover', 'vol'], 6, 'PEER_UNREACHABLE');
    assert.equal(roleOf(S), 'secondary');
    assert.deepEqual(running(S), []);
    assert.equal(mirrorTo(P, S)!.state, 'idle');
    w.via.get(S)!.pass();
    await S.json(['failover', 'vol']);
    assert.equal(mirrorTo(P, S)!.state, 'broken-off');
    writeChange(w.data.get(P)!, `tcp-divergent.bin`, 2 * KiB);
    // Failback: held after the demotion, then the resync from the new primary is reset.
    await restartWith(P, { FERRY_TEST_PAUSE_AT: 'failback:after-demote', FERRY_TEST_PAUSE_FILE: pause });
    const fb = P.ferry(['failback', 'vol', '--json']);
    await waitFor('the failback to be demoted', () => running(P)[0]?.step === 'demoted');
    w.via.get(S)!.resetAfter(0);
    writeFileSync(pause, '');
    const cut = await fb;
    assert.notEqual(cut.code, 0, 'the failback reports the cut');
    assert.equal(running(P)[0]?.step, 'demoted', 'the journal waits at the demotion');
    w.via.get(S)!.pass();
    await restartWith(P, {});
    await P.json(['failback', 'vol']);
    await assertInStep(S, P, 'failback after a reset');
  }
  {
    // Migrate: held after the demotion, then the acceptance cannot cross (nor can the question
    // that follows): both stay secondary, nothing decided, until the rerun settles it.
    const P = w.primary;
    const S = w.secondary;
    const postP = hookLines(P, 'post migrate');
    const pause2 = `${pause}-2`;
    await restartWith(P, { FERRY_TEST_PAUSE_AT: 'migrate:after-demote', FERRY_TEST_PAUSE_FILE: pause2 });
    const mg = P.ferry(['migrate', 'vol', '--to', S.name, '--json']);
    await waitFor('the migrate to be demoted', () => running(P)[0]?.step === 'demoted');
    w.via.get(P)!.resetAfter(0);
    writeFileSync(pause2, '');
    const cut = await mg;
    assert.equal(cut.code, 6, `the migrate reports an unreachable peer: ${cut.stdout} ${cut.stderr}`);
    assert.equal(roleOf(P), 'secondary');
    assert.equal(roleOf(S), 'secondary');
    const st = await P.volumeStatus('vol');
    assert.equal(st.workflow.kind, 'migrate');
    assert.equal(st.workflow.step, 'demoted');
    w.via.get(P)!.pass();
    await restartWith(P, {});
    const m = await P.json(['migrate', 'vol', '--to', S.name]);
    assert.ok(m.final);
    assert.ok(hookLines(P, 'post migrate') > postP, 'the rollback restarted the application here before the new migrate');
    await assertInStep(S, P, 'migrate after a reset');
  }
});

// ---------------------------------------------------------------- failover vs an apply in flight

test('failover waits for an apply in flight; with --force it cancels it and rolls the replica back', async () => {
  assert.ok(w, 'setup failed');
  {
    const P = w.primary;
    const S = w.secondary;
    const release = join(S.dir, `release-apply-${Date.now()}`);
    await restartWith(S, { FERRY_TEST_PAUSE_AT: 'apply:after-write', FERRY_TEST_PAUSE_FILE: release });
    writeChange(w.data.get(P)!, 'in-flight.bin', 8 * KiB);
    const upd = P.ferry(['mirror', 'update', 'vol', '--wait', '--json']);
    await waitFor('the apply to be in flight', () => secRow(S)!.applying ?? undefined);
    const T = secRow(S)!.applying!;
    const fo = S.ferry(['failover', 'vol', '--json']);
    await waitFor('the failover to wait for the apply', () => running(S)[0]?.step === 'notified').catch(async (err) => {
      const r = await fo;
      throw new Error(`${(err as Error).message}; the failover ended ${r.code}: ${r.stdout} ${r.stderr}`);
    });
    assert.equal(roleOf(S), 'secondary', 'not promoted while the apply writes');
    writeFileSync(release, '');
    const foR = await fo;
    assert.equal(foR.code, 0, foR.stderr);
    assert.equal(secRow(S)!.applied, T, 'the apply finished first, and its snapshot is the base');
    assert.equal(secRow(S)!.consistent, 1);
    const u = await upd;
    assert.equal(u.code, 0, `the update in flight completed: ${u.stderr}`);
    assert.equal(mirrorTo(P, S)!.state, 'broken-off', 'the end of the update does not undo the failover notice');
    assert.equal(mirrorTo(P, S)!.base, T);
    assertTreesEqual(w.data.get(S)!, w.data.get(P)!);
    await restartWith(S, {});
    writeChange(w.data.get(P)!, 'div-after-wait.bin', 1 * KiB);
    await P.json(['failback', 'vol']);
    await assertInStep(S, P, 'after waiting for the apply');
  }
  {
    // --force: the apply is held after writing the replica; the failover cancels it, rolls the
    // replica back to the base, and (crash point) dies right after the rollback; the rerun finishes.
    const P = w.primary;
    const S = w.secondary;
    const before = copyTree(w.data.get(S)!, join(S.dir, `before-forced-${Date.now()}`));
    const base = secRow(S)!.applied;
    await restartWith(S, { FERRY_TEST_PAUSE_AT: 'apply:after-write', FERRY_TEST_PAUSE_FILE: join(S.dir, 'never'), FERRY_TEST_CRASH_AT: 'failover:after-rollback' });
    writeChange(w.data.get(P)!, 'cancelled.bin', 8 * KiB);
    const upd = P.ferry(['mirror', 'update', 'vol', '--wait', '--json']);
    await waitFor('the apply to be in flight', () => secRow(S)!.applying ?? undefined);
    // Held after writing the replica (the pause comes after the writes), before verifying it.
    await waitFor('the apply to have written the replica', () => existsSync(join(w!.data.get(S)!, 'cancelled.bin')));
    const fo = await S.ferry(['failover', 'vol', '--force', '--json']);
    assert.notEqual(fo.code, 0);
    await died(S, 'failover:after-rollback');
    const u = await upd;
    assert.notEqual(u.code, 0, 'the cancelled update fails');
    assert.equal(mirrorTo(P, S)!.state, 'broken-off');
    await S.start();
    const done = await S.json(['failover', 'vol']);
    assert.equal(done.plan.snapshot, base);
    assert.equal(roleOf(S), 'primary');
    assert.equal(secRow(S)!.applied, base);
    assert.equal(secRow(S)!.consistent, 1);
    assertTreesEqual(w.data.get(S)!, before);
    await P.json(['failback', 'vol']);
    await assertInStep(S, P, 'after a forced failover');
  }
});
