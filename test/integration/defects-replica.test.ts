// Replica rollbacks and overwrites, end to end on two real daemons (issue 16,
// defects 1, 5, 18, 19 and 22):
// - a write into the secondary's replica while an apply runs (the apply held
//   after writing, before verifying: FERRY_TEST_PAUSE_AT=apply:after-write) makes
//   the verification fail (REPLICA_MISMATCH); the next update, plain or
//   --force, keeps the write in a replica-writes-* snapshot and brings the
//   replica to the snapshot;
// - `failover` then refuses saying the verification failed (not that the
//   apply "was cut"), and `failover --force` keeps the write in a snapshot
//   before it rolls the replica back;
// - a failover that waited for an apply in flight names the base it kept
//   (the apply's snapshot, not the one planned before the wait);
// - after `failover --force` with the old primary down, the new primary tells
//   it once it is back (its daemon retries; a restart does not forget), and
//   rerunning `failover` tells it too; its mirror then shows broken-off, and
//   split-brain once both sides wrote;
// - an immutable file (chattr +i) in the replica: the failed apply says which
//   operation on which path failed and what to do, and once the flag is
//   cleared the next update finishes the apply.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertTreesEqual } from '../helpers.ts';
import { cleanupSites, copyTree, KiB, createSite, pairSites, waitFor, writeChange, type TestSite } from '../harness/index.ts';

const sites: TestSite[] = [];
after(() => cleanupSites(sites));

interface Pair {
  a: TestSite;
  b: TestSite;
  /** the primary's member */
  data: string;
  /** the secondary's replica */
  replica: string;
  /** the file whose absence holds b's applies after they wrote the replica (FERRY_TEST_PAUSE_FILE) */
  release: string;
}

const secRow = (s: TestSite, volume = 'vol'): { applied: string | null; applying: string | null; consistent: number; state: string } | undefined =>
  s.catalog((db) => db.prepare('SELECT * FROM secondaries WHERE volume = ?').get(volume)) as any;
const roleOf = (s: TestSite, volume = 'vol'): string => (s.catalog((db) => db.prepare('SELECT role FROM volumes WHERE name = ?').get(volume)) as { role: string }).role;
const mirrorState = (s: TestSite, peer: string, volume = 'vol'): string | undefined => (s.catalog((db) => db.prepare('SELECT state FROM mirrors WHERE volume = ? AND peer = ?').get(volume, peer)) as { state: string } | undefined)?.state;
const writesSnapshots = (s: TestSite, volume = 'vol') => s.snapshotRows(volume).filter((r) => r.name?.startsWith('replica-writes-'));

function smallTree(dir: string): void {
  mkdirSync(join(dir, 'etc'), { recursive: true });
  writeFileSync(join(dir, 'top.txt'), 'the application\'s main file\n'.repeat(10));
  writeFileSync(join(dir, 'etc', 'app.conf'), 'setting = 1\n');
  writeChange(dir, 'blob.bin', 12 * KiB);
}

/**
 * Two sites, a small volume (or several) mirrored a -> b and initialized; b's applies can be held
 * after they wrote the replica (remove `release` to hold the next one).
 */
async function mirroredPair(label: string, volumes = ['vol']): Promise<Pair & { datas: Map<string, string> }> {
  const [a, b] = await Promise.all([createSite(`${label}-a`), createSite(`${label}-b`)]);
  sites.push(a, b);
  const datas = new Map<string, string>();
  for (const v of volumes) {
    const data = join(a.dir, `data-${v}`);
    smallTree(data);
    a.defineVolume(v, [data]);
    datas.set(v, data);
  }
  const release = join(b.dir, 'release');
  writeFileSync(release, '');
  await Promise.all([a.start(), b.start({ env: { FERRY_TEST_PAUSE_AT: 'apply:after-write', FERRY_TEST_PAUSE_FILE: release } })]);
  await pairSites(a, b);
  for (const v of volumes) {
    await a.json(['mirror', 'create', v, '--to', b.name]);
    await a.json(['mirror', 'initialize', v, '--to', b.name, '--wait']);
  }
  const replica = await b.memberPath(volumes[0]);
  assertTreesEqual(replica, datas.get(volumes[0])!);
  return { a, b, data: datas.get(volumes[0])!, replica, release, datas };
}

/**
 * Change the primary, start an update, and while b's apply is held after writing the replica, write
 * `stray` into the replica: the verification fails (REPLICA_MISMATCH). Returns the snapshot whose
 * apply failed and the stray file's content.
 */
async function strayWriteDuringApply(p: Pair, change: string, stray: string): Promise<{ target: string; content: string }> {
  rmSync(p.release, { force: true });
  writeChange(p.data, change, 8 * KiB);
  const update = p.a.ferry(['mirror', 'update', 'vol', '--wait', '--json']);
  const target = await waitFor('the apply to hold after writing the replica', () => {
    const r = secRow(p.b);
    return r?.applying && existsSync(join(p.replica, change)) ? r.applying : undefined;
  }, 60_000, 50);
  const content = `written into the replica while ${target} was applied\n`;
  mkdirSync(join(p.replica, ...stray.split('/').slice(0, -1)), { recursive: true });
  writeFileSync(join(p.replica, stray), content);
  writeFileSync(p.release, '');
  const r = await update;
  assert.equal(r.code, 5, `the update should fail its verification: ${r.stdout} ${r.stderr}`);
  assert.equal(r.json?.error?.code, 'REPLICA_MISMATCH', r.stdout);
  // (a write below a directory the apply left alone shows as that directory's change)
  assert.ok(r.json.error.message.includes(stray.split('/')[0]), `the mismatch names where the replica differs: ${r.json.error.message}`);
  const row = secRow(p.b)!;
  assert.equal(row.applying, target, 'the replica stays marked as being applied');
  assert.equal(row.consistent, 0);
  return { target, content };
}

/** The replica-writes-* snapshots at b that appeared since `before`, restored: the one holding `stray` with `content`. */
async function keptIn(b: TestSite, before: Array<{ id: string }>, stray: string, content: string, volume = 'vol'): Promise<string> {
  const fresh = writesSnapshots(b, volume).filter((s) => !before.some((x) => x.id === s.id));
  assert.ok(fresh.length >= 1, `no replica-writes-* snapshot kept the write: ${JSON.stringify(b.snapshotRows(volume).map((s) => s.name))}`);
  for (const s of fresh) {
    const dir = await b.restore(volume, s.id, 'kept');
    if (existsSync(join(dir, stray)) && readFileSync(join(dir, stray), 'utf8') === content) return s.name!;
  }
  assert.fail(`none of ${fresh.map((s) => s.name).join(', ')} holds ${stray}`);
}

test('a write into the replica during an apply: the next update keeps it in a snapshot and converges (plain, then --force)', async () => {
  const p = await mirroredPair('converge');

  // ---- plain update
  const before1 = writesSnapshots(p.b);
  const s1 = await strayWriteDuringApply(p, 'change-1.bin', 'stray-1.txt');
  const next = await p.a.json(['mirror', 'update', 'vol', '--wait']);
  assert.equal(next.applied, true);
  assertTreesEqual(p.replica, p.data);
  const row = secRow(p.b)!;
  assert.equal(row.applying, null);
  assert.equal(row.consistent, 1);
  assert.equal(row.applied, next.snapshot);
  const kept1 = await keptIn(p.b, before1, 'stray-1.txt', s1.content);
  assert.equal(next.writesSnapshot, kept1, 'the update says where the write was kept');

  // ---- update --force
  const before2 = writesSnapshots(p.b);
  const s2 = await strayWriteDuringApply(p, 'change-2.bin', 'etc/stray-2.conf');
  const forced = await p.a.json(['mirror', 'update', 'vol', '--wait', '--force']);
  assert.equal(forced.applied, true);
  assertTreesEqual(p.replica, p.data);
  assert.equal(secRow(p.b)!.consistent, 1);
  await keptIn(p.b, before2, 'etc/stray-2.conf', s2.content);

  // ---- and the mirror goes on: no write, no snapshot kept
  const before3 = writesSnapshots(p.b);
  writeChange(p.data, 'change-3.bin', 4 * KiB);
  const calm = await p.a.json(['mirror', 'update', 'vol', '--wait']);
  assert.equal(calm.writesSnapshot, undefined);
  assertTreesEqual(p.replica, p.data);
  assert.deepEqual(writesSnapshots(p.b), before3);
});

test('failover after an apply failed its verification: the refusal says so; --force keeps the write in a snapshot before rolling back', async () => {
  const p = await mirroredPair('failover');
  const base = secRow(p.b)!.applied!;
  const atBase = copyTree(p.replica, join(p.b.dir, 'at-base'));
  const before = writesSnapshots(p.b);
  const s = await strayWriteDuringApply(p, 'change.bin', 'app-output.log');

  const refused = await p.b.refused(['failover', 'vol'], 4, 'MIRROR_STATE', /--force/);
  const msg = refused.json.error.message as string;
  assert.doesNotMatch(msg, /was cut/, `the apply was not cut, its verification failed: ${msg}`);
  assert.match(msg, /REPLICA_MISMATCH|does not match/, msg);
  assert.ok(msg.includes(s.target), msg);
  assert.equal(roleOf(p.b), 'secondary');

  const fo = await p.b.json(['failover', 'vol', '--force']);
  assert.equal(roleOf(p.b), 'primary');
  assert.equal(secRow(p.b)!.applied, base);
  assertTreesEqual(p.replica, atBase);
  const kept = await keptIn(p.b, before, 'app-output.log', s.content);
  assert.equal(fo.rollback?.kept, kept, 'the failover says where what was in the replica is kept');
});

test('a failover that waited for an apply in flight names the base actually kept', async () => {
  const p = await mirroredPair('wait');
  const planned = secRow(p.b)!.applied!;
  rmSync(p.release, { force: true });
  writeChange(p.data, 'in-flight.bin', 8 * KiB);
  const update = p.a.ferry(['mirror', 'update', 'vol', '--wait', '--json']);
  const target = await waitFor('the apply to hold after writing the replica', () => {
    const r = secRow(p.b);
    return r?.applying && existsSync(join(p.replica, 'in-flight.bin')) ? r.applying : undefined;
  }, 60_000, 50);
  const fo = p.b.ferry(['failover', 'vol', '--json']);
  await waitFor('the failover to wait for the apply', () => p.b.catalog((db) => db.prepare("SELECT step FROM workflows WHERE state = 'running'").get() as { step: string } | undefined)?.step === 'notified', 60_000, 50);
  writeFileSync(p.release, '');
  const r = await fo;
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.json.plan.snapshot, planned, 'the plan was made before the wait');
  assert.equal(r.json.base, target, 'the result names the base kept: the snapshot the apply completed');
  assert.equal(secRow(p.b)!.applied, target);
  const held = p.b.catalog((db) => db.prepare("SELECT snapshot FROM holds WHERE holder LIKE 'mirror-from:%'").all() as Array<{ snapshot: string }>).map((h) => h.snapshot);
  assert.ok(held.includes(target), `the base ${target} is held for failback: ${held}`);
  assert.equal((await update).code, 0);
  // The recorded result, shown again, names it too.
  const again = await p.b.ferry(['failover', 'vol']);
  assert.equal(again.code, 0, again.stderr);
  assert.ok(again.stdout.includes(`base ${target} kept for failback`), again.stdout);
  assert.ok(!again.stdout.includes(planned), again.stdout);
});

test('an old primary that was down during failover --force is told once it is back: by rerunning failover, and by the daemon (which a restart does not make forget)', async () => {
  const p = await mirroredPair('notice', ['vol', 'vol2']);
  const { a, b } = p;
  await a.stop();

  // ---- both volumes taken over while a is down
  const fo = await b.json(['failover', 'vol', '--force']);
  assert.equal(fo.notified, false);
  const fo2 = await b.json(['failover', 'vol2', '--force']);
  assert.equal(fo2.notified, false);
  const still = await b.json(['failover', 'vol']);
  assert.equal(still.notified, false, 'a is still down: not told');
  assert.ok(still.notifyError, 'says why');
  const sec = (await b.volumeStatus('vol')).secondary;
  assert.equal(sec.notice?.state, 'pending', `status at the new primary shows the old primary not told yet: ${JSON.stringify(sec)}`);
  const text = await b.ferry(['status']);
  assert.match(text.stdout, /not told yet of the failover/, text.stdout);

  // ---- a is back while b's daemon is stopped: rerunning failover (in-process) tells it of vol2
  await b.stop();
  await a.start({ port: a.port });
  const rerun = await b.json(['failover', 'vol2']);
  assert.equal(rerun.notified, true, `a rerun tells the old primary: ${JSON.stringify(rerun)}`);
  assert.equal(mirrorState(a, b.name, 'vol2'), 'broken-off');
  assert.equal(mirrorState(a, b.name), 'idle', 'vol: nobody told a yet');

  // ---- a down again; b's daemon restarts (its first try fails) and keeps trying: a is told of vol once back
  await a.stop();
  writeFileSync(join(p.data, 'top.txt'), 'a\'s application kept writing, unaware\n');
  await b.start();
  await waitFor('the restarted daemon\'s first try', async () => (await b.volumeStatus('vol')).secondary.notice?.attempts >= 3, 30_000, 250);
  assert.equal((await b.volumeStatus('vol')).secondary.notice.state, 'pending');
  await a.start({ port: a.port });
  assert.equal(mirrorState(a, b.name), 'idle');
  await waitFor('the new primary to tell the old one (vol)', () => mirrorState(a, b.name) === 'broken-off', 60_000, 250);
  const m = await a.mirror('vol', b.name);
  assert.equal(m.state, 'broken-off');
  assert.equal(m.health, 'warn');
  assert.equal(m.lastError?.code, 'FAILED_OVER');
  await waitFor('the new primary to record that it was told', async () => (await b.volumeStatus('vol')).secondary.notice?.state === 'told', 30_000, 250);
  // told, a kept what its application wrote in a snapshot
  const kept = await waitFor('the old primary to keep its writes', () => a.snapshotRows('vol').find((r) => r.name?.startsWith('failover-notice-')), 30_000, 250);
  assert.ok(readFileSync(join(await a.restore('vol', kept.id, 'told'), 'top.txt'), 'utf8').includes('unaware'));

  // ---- the new primary wrote too: split brain, shown at the old primary
  writeFileSync(join(p.replica, 'etc', 'app.conf'), 'setting = 2 (b is primary)\n');
  await b.json(['snapshot', 'create', 'vol']);
  await waitFor('split-brain at the old primary', async () => (await a.mirror('vol', b.name)).state === 'split-brain', 30_000, 500);
  const at = await a.ferry(['status']);
  assert.match(at.stdout, /SPLIT BRAIN/, at.stdout);
  // an update the old primary tries is refused and its mirror stays off
  await a.refused(['mirror', 'update', 'vol', '--wait'], 4, 'MIRROR_STATE', /broken off/);
});

/** chattr works here (root, a filesystem with inode flags); otherwise the test is skipped. */
function canChattr(dir: string): boolean {
  const f = join(dir, 'probe');
  writeFileSync(f, '');
  const ok = spawnSync('chattr', ['+i', f]).status === 0;
  if (ok) spawnSync('chattr', ['-i', f]);
  rmSync(f, { force: true });
  return ok;
}

test('an immutable file in the replica: the failed apply says which operation on which path failed and what to do; cleared, the next update finishes', async (t) => {
  const p = await mirroredPair('immutable');
  if (!canChattr(p.b.dir)) return t.skip('chattr +i is not available here (needs root and a filesystem with inode flags)');
  const locked = join(p.replica, 'etc', 'app.conf');
  assert.equal(spawnSync('chattr', ['+i', locked]).status, 0);
  try {
    assert.match(spawnSync('lsattr', [locked], { encoding: 'utf8' }).stdout, /^\S*i\S* /);
    writeFileSync(join(p.data, 'etc', 'app.conf'), 'setting = 3\n');
    writeChange(p.data, 'more.bin', 4 * KiB);
    const r = await p.a.ferry(['mirror', 'update', 'vol', '--wait', '--json']);
    assert.equal(r.code, 7, `${r.stdout} ${r.stderr}`);
    const msg = r.json.error.message as string;
    assert.equal(r.json.error.code, 'IO');
    assert.doesNotMatch(msg, /can read it/, msg);
    assert.match(msg, /rename/, msg);
    assert.ok(msg.includes(locked), `names the path: ${msg}`);
    assert.match(msg, /EPERM/, msg);
    assert.ok(msg.includes(`chattr -i ${locked}`), `says what to do: ${msg}`);
    // the secondary says why its replica is inconsistent
    const refused = await p.b.refused(['failover', 'vol'], 4, 'MIRROR_STATE');
    assert.match(refused.json.error.message, /EPERM/, refused.json.error.message);
    assert.doesNotMatch(refused.json.error.message, /was cut/);
  } finally {
    spawnSync('chattr', ['-i', locked]);
  }
  const next = await p.a.json(['mirror', 'update', 'vol', '--wait']);
  assert.equal(next.applied, true);
  assertTreesEqual(p.replica, p.data);
  assert.equal(next.writesSnapshot, undefined, 'the unfinished apply left only its own work: nothing to keep');
});
