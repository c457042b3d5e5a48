// A failing scheduled update waits before it is tried again, on a real
// daemon: with a 1 s schedule, a pre hook that fails (HOOK_FAILED) or a peer
// that refuses the source after its snapshot is taken (PEER_UNTRUSTED) is
// retried after a backoff that grows (at least 5 s, never every tick), each
// failure counted, so the application is not quiesced every second and
// snapshots do not pile up. Counted over a window: a behaviour, not a speed
// (a busy machine only makes fewer attempts).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { cleanupSites, createSite, pairSites, waitFor, withCatalog, type TestSite } from '../harness/index.ts';

const sites: TestSite[] = [];
after(() => cleanupSites(sites));

/** The window over which attempts are counted; before these fixes a 1 s schedule tried about once a second. */
const WINDOW_MS = 10_000;

test('a failing scheduled update (failed hook, refusing peer) is retried after a growing backoff, counted, and takes no snapshot per tick', { timeout: 240_000 }, async () => {
  const [a, b] = await Promise.all(['a', 'b'].map((n) => createSite(n)));
  sites.push(a, b);
  const data = join(a.dir, 'data');
  mkdirSync(data);
  writeFileSync(join(data, 'f.txt'), 'one\n');
  const hookLog = join(a.dir, 'hook.log');
  const failFlag = join(a.dir, 'fail-hook');
  const hookRuns = () => (existsSync(hookLog) ? readFileSync(hookLog, 'utf8').split('\n').filter(Boolean).length : 0);
  const snapshots = () => withCatalog(a.home, (db) => (db.prepare("SELECT count(*) AS n FROM snapshots WHERE volume = 'app'").get() as { n: number }).n);
  const events = (outcome: string) => withCatalog(a.home, (db) => db.prepare("SELECT detail FROM events WHERE kind = 'replication.update' AND outcome = ?").all(outcome).map((r: any) => JSON.parse(r.detail)));
  a.defineVolume('app', [data]);
  await Promise.all([a.start(), b.start()]);
  await pairSites(a, b);
  await a.json(['volume', 'set', 'app', '--pre', `echo run >> ${hookLog}; test ! -e ${failFlag}`]);
  await a.json(['mirror', 'create', 'app', '--to', 'b', '--schedule', '1s']);
  await a.json(['mirror', 'initialize', 'app', '--to', 'b', '--wait']);

  // 1. The pre hook fails: no snapshot is taken, and the next try waits.
  writeFileSync(failFlag, '');
  await waitFor('the first failed scheduled update', () => a.mirrorRow('app', 'b').lastError?.code === 'HOOK_FAILED', 30_000, 50);
  const runs0 = hookRuns();
  const snaps0 = snapshots();
  const failures0 = a.mirrorRow('app', 'b').failures;
  await sleep(WINDOW_MS);
  const m1 = a.mirrorRow('app', 'b');
  const tries = hookRuns() - runs0;
  assert.ok(tries <= 3, `${tries} pre hook runs in ${WINDOW_MS / 1000} s with a failing hook: retried without backoff`);
  assert.equal(snapshots(), snaps0, 'a failed pre hook took a snapshot');
  assert.equal(m1.failures - failures0, tries, 'every failure is counted');
  assert.ok(m1.nextRunAt! > Date.now(), 'the next try is in the future');
  await waitFor('a retry after the backoff', () => a.mirrorRow('app', 'b').failures >= failures0 + 2, 40_000, 200);
  const waits = events('failed').map((d) => d.retryInMs as number);
  assert.ok(waits.length >= 2 && waits.every((w) => w >= 4_000), `waits ${waits}`);
  assert.ok(waits[1] > waits[0], `the backoff grows: ${waits}`);
  const status = await a.mirror('app', 'b');
  assert.equal(status.health, 'warn');
  assert.match(status.healthReasons.join('; '), /last error: HOOK_FAILED/);

  // A manual update succeeds once the hook does: the count starts again.
  rmSync(failFlag);
  await a.json(['mirror', 'update', 'app', '--to', 'b', '--force', '--wait']);
  assert.equal(a.mirrorRow('app', 'b').failures, 0);

  // 2. The destination no longer knows the source: every attempt takes its snapshot, then is refused.
  await b.json(['site', 'remove', 'a']);
  await waitFor('the first refused scheduled update', () => a.mirrorRow('app', 'b').lastError?.code === 'PEER_UNTRUSTED', 30_000, 50);
  const snaps1 = snapshots();
  const failures1 = a.mirrorRow('app', 'b').failures;
  await sleep(WINDOW_MS);
  const m2 = a.mirrorRow('app', 'b');
  const taken = snapshots() - snaps1;
  assert.ok(taken <= 3, `${taken} snapshots in ${WINDOW_MS / 1000} s while the peer refuses: one per retry without backoff`);
  assert.ok(m2.failures - failures1 <= 3 && m2.failures >= 1, `failures ${failures1} -> ${m2.failures}`);
  assert.equal(m2.lastError?.code, 'PEER_UNTRUSTED');
  assert.ok(m2.nextRunAt! > Date.now(), 'the next try is in the future');
  assert.equal(a.mirrorRow('app', 'b').state, 'idle', 'a refusal is not a disconnection');
});
