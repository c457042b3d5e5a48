// After an apply the destination captures the replica and compares it with
// the snapshot. Files the apply itself wrote are not read again: what lstat
// saw of each once it was in place (size, mtime, ctime, inode) stands for
// the chunks it was written from. These tests write into the replica while
// the apply is held after writing, before that verification, and check that
// such a write is caught (REPLICA_MISMATCH, replica marked inconsistent) even
// when the writer keeps the size and puts the mtime back, and that the next
// update repairs the replica. A control run without the write checks that the
// written files are indeed taken without being read.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, linkSync, openSync, closeSync, writeSync, statSync, symlinkSync, utimesSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertTreesEqual } from '../helpers.ts';
import { makePair, secondaryJournal, sleep, startDaemon, stopDaemon, writeRandomFile, writeSmallFiles } from '../harness/proxied-pair.ts';
import { withCatalog } from '../harness/index.ts';

const KiB = 1024;

async function waitFor(what: string, check: () => boolean, ms = 30_000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

// Each twice: with the apply's record of what it wrote in memory, and put in the catalog file by file
// (receive/written-files.ts, as past its bound at a million files).
const VARIANTS: Array<{ label: string; env: Record<string, string> }> = [
  { label: '', env: {} },
  { label: ' (the record of written files put out of memory)', env: { FERRY_TEST_WRITTEN_IN_MEMORY: '1' } },
];

for (const v of VARIANTS) {
  test(`a write into a file the apply just wrote (same size, mtime put back) is caught by the verification; the next update repairs it${v.label}`, { timeout: 120_000 }, async () => {
    const release = join(tmpdir(), `ferry-verify-${process.pid}-${Date.now()}`);
    const pair = await makePair({ env: { FERRY_TEST_STALL_TIMEOUT_MS: '20000', ...v.env } });
    try {
      writeSmallFiles(join(pair.data, 'dir'), 10, 'f');
      await pair.json(pair.a, ['mirror', 'initialize', 'vol', '--wait']);
      assertTreesEqual(pair.replica(), pair.data);

      // Hold b's next apply after it has written the replica, before it verifies it.
      await stopDaemon(pair.b);
      await startDaemon(pair.b, { ...pair.env, FERRY_TEST_PAUSE_AT: 'apply:after-write', FERRY_TEST_PAUSE_FILE: release });
      pair.proxy.target = pair.b.port!;
      writeRandomFile(join(pair.data, 'new.bin'), 256 * KiB);
      const update = pair.ferry(pair.a, ['mirror', 'update', 'vol', '--wait', '--json']);
      const target = join(pair.replica(), 'new.bin');
      await waitFor('the apply to write new.bin and hold', () => existsSync(target) && secondaryJournal(pair.b.home)?.applying != null);
      await sleep(300); // the apply is at its pause point (only this file changed)

      // A sneaky writer: same size, a few bytes changed, mtime set back to what the apply set.
      const before = statSync(target, { bigint: true });
      const fd = openSync(target, 'r+');
      writeSync(fd, Buffer.from('not what the snapshot holds'), 0, 27, 1000);
      closeSync(fd);
      // the apply sets whole microseconds; aiming at the middle of one puts back exactly the same mtime
      const t = (Number(before.mtimeNs / 1000n) + 0.5) / 1e6;
      utimesSync(target, t, t);
      const after = statSync(target, { bigint: true });
      assert.equal(after.size, before.size);
      assert.equal(after.mtimeNs, before.mtimeNs, 'the mtime was not put back exactly: the test would prove less');
      assert.notEqual(after.ctimeNs, before.ctimeNs);

      writeFileSync(release, '');
      const r = await update;
      assert.notEqual(r.code, 0, `the update succeeded over a corrupted replica: ${r.stdout}`);
      assert.match(r.stdout + r.stderr, /REPLICA_MISMATCH|does not match the snapshot/);
      const j = secondaryJournal(pair.b.home)!;
      assert.ok(j.applying != null, 'the replica stays marked as being applied (inconsistent)');

      // The next update finishes the apply: the replica is the snapshot again.
      await stopDaemon(pair.b);
      await startDaemon(pair.b, pair.env);
      pair.proxy.target = pair.b.port!;
      const again = await pair.json(pair.a, ['mirror', 'update', 'vol', '--wait', '--force']);
      assert.equal(again.applied, true);
      assertTreesEqual(pair.replica(), pair.data);
      assert.equal(secondaryJournal(pair.b.home)?.applying ?? null, null);
    } finally {
      rmSync(release, { force: true });
      await pair.cleanup();
    }
  });

  test(`without interference, the files an apply wrote are verified from what it saw, not read again${v.label}`, { timeout: 120_000 }, async () => {
    const pair = await makePair({ env: { FERRY_TEST_STALL_TIMEOUT_MS: '20000', ...v.env } });
    try {
      writeSmallFiles(join(pair.data, 'dir'), 20, 'f');
      writeRandomFile(join(pair.data, 'big.bin'), 3 * 1024 * KiB);
      const init = await pair.json(pair.a, ['mirror', 'initialize', 'vol', '--wait']);
      assert.equal(init.applied, true);
      assertTreesEqual(pair.replica(), pair.data);
      // The apply event at b tells what its verification capture read.
      const ev = await pair.ferry(pair.b, ['events', '--kind', 'replica.apply', '--json']);
      assert.equal(ev.code, 0, ev.stderr);
      const lines = ev.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
      const done = lines.filter((e: any) => e.event.outcome === 'ok' && e.details.transition === 'inconsistent => consistent');
      assert.ok(done.length >= 1, ev.stdout.slice(0, 500));
      const v = done[done.length - 1].details.verified;
      assert.ok(v, `no verification figures in ${JSON.stringify(done[done.length - 1])}`);
      assert.equal(v.filesRead, 0, `the verification read ${v.filesRead} file(s) the apply had just written`);
      assert.ok(v.filesReused >= 21, `only ${v.filesReused} file(s) taken from what the apply saw`);
    } finally {
      await pair.cleanup();
    }
  });
}

test('an update verifies only what the apply touched: subtrees it left alone are not walked, and their stat cache carries over', { timeout: 120_000 }, async () => {
  const pair = await makePair({ env: { FERRY_TEST_STALL_TIMEOUT_MS: '20000' } });
  try {
    writeSmallFiles(join(pair.data, 'dir'), 20, 'f');
    writeSmallFiles(join(pair.data, 'other'), 5, 'g');
    await pair.json(pair.a, ['mirror', 'initialize', 'vol', '--wait']);
    // The stat cache row of each directory, by row id: a row nobody looked at is not rewritten.
    const rowIds = (home: string) => new Map(withCatalog(home, (db) => db.prepare("SELECT id, dir FROM stat_cache_rows WHERE volume = 'vol'").all() as Array<{ id: number; dir: Uint8Array }>).map((r) => [Buffer.from(r.dir).toString(), r.id]));
    const destBefore = rowIds(pair.b.home);
    writeFileSync(join(pair.data, 'other', 'g0001'), 'changed\n');
    const upd = await pair.json(pair.a, ['mirror', 'update', 'vol', '--wait']);
    assert.equal(upd.applied, true);
    assertTreesEqual(pair.replica(), pair.data);
    const ev = await pair.ferry(pair.b, ['events', '--kind', 'replica.apply', '--json']);
    const done = ev.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((e: any) => e.event.outcome === 'ok' && e.details.to === upd.snapshot);
    assert.equal(done.length, 1, ev.stdout.slice(-800));
    const v = done[0].details.verified;
    // `dir` (20 files) was left alone: the verification visited only `other` (5 files) and the root.
    assert.ok(v.filesRead + v.filesReused <= 5, `the verification visited ${v.filesRead + v.filesReused} files: ${JSON.stringify(v)}`);
    // The stat cache rows of `dir` now describe the applied snapshot (the next writes check uses them).
    const applied = secondaryJournal(pair.b.home)!.applied;
    assert.equal(applied, upd.snapshot);
    const owner = withCatalog(pair.b.home, (db) => (db.prepare('SELECT snapshot FROM stat_cache_owner WHERE volume = ?').get('vol') as { snapshot: string } | undefined)?.snapshot);
    assert.equal(owner, applied);
    const rows = withCatalog(pair.b.home, (db) => db.prepare('SELECT pending, dir FROM stat_cache_rows WHERE volume = ?').all('vol') as Array<{ pending: string; dir: Uint8Array }>);
    const dirs = rows.map((r) => Buffer.from(r.dir).toString());
    assert.ok(dirs.includes('dir') && dirs.includes('other'), `cache rows of the applied snapshot: ${JSON.stringify(dirs)}`);
    assert.ok(rows.every((r) => r.pending === ''), 'no capture\'s rows are left pending');
    // `dir` was not looked at by the verification: its row stands as it was (journal.test.ts: the source's).
    assert.ok(destBefore.has('dir'), JSON.stringify([...destBefore.keys()]));
    assert.equal(rowIds(pair.b.home).get('dir'), destBefore.get('dir'), 'the destination rewrote the row of a directory it did not look at');
    assert.notEqual(rowIds(pair.b.home).get('other'), destBefore.get('other'), 'the changed directory\'s row is new');

    // And the next update still finds writes made into a skipped subtree since.
    writeFileSync(join(pair.replica(), 'dir', 'f0003'), 'written at the replica\n');
    writeFileSync(join(pair.data, 'other', 'g0002'), 'changed again\n');
    const r = await pair.ferry(pair.a, ['mirror', 'update', 'vol', '--wait', '--json']);
    assert.notEqual(r.code, 0, 'a write into the replica must be found');
    assert.match(r.stdout + r.stderr, /REPLICA_WRITTEN|wrote into the replica/);
  } finally {
    await pair.cleanup();
  }
});

test('an initial apply writes new directories on worker threads: hard links across them, symlinks, modes and mtimes arrive', { timeout: 120_000 }, async () => {
  const pair = await makePair({ env: { FERRY_TEST_STALL_TIMEOUT_MS: '20000' } });
  try {
    // alpha, beta and gamma have subdirectories: each is walked by the member's applier and its
    // subdirectories go to the workers; delta has none and goes whole.
    for (const d of ['alpha', 'beta', 'gamma']) writeSmallFiles(join(pair.data, d, 'sub'), 8, `${d}-`);
    for (const d of ['one', 'two']) writeSmallFiles(join(pair.data, 'alpha', 'sub2', d), 4, `${d}-`);
    writeSmallFiles(join(pair.data, 'delta'), 5, 'delta-');
    linkSync(join(pair.data, 'alpha', 'sub', 'alpha-0001'), join(pair.data, 'alpha', 'sub2', 'one', 'link-to-sub')); // across two jobs of one split directory
    utimesSync(join(pair.data, 'alpha', 'sub2'), new Date('2019-05-06T07:08:09Z'), new Date('2019-05-06T07:08:09Z'));
    writeRandomFile(join(pair.data, 'alpha', 'big.bin'), 2 * 1024 * KiB);
    linkSync(join(pair.data, 'alpha', 'big.bin'), join(pair.data, 'gamma', 'big-link.bin')); // a hard link across two subtrees
    symlinkSync('../alpha/big.bin', join(pair.data, 'beta', 'to-big'));
    chmodSync(join(pair.data, 'beta', 'sub', 'beta-0002'), 0o640);
    utimesSync(join(pair.data, 'gamma', 'sub'), new Date('2020-01-02T03:04:05Z'), new Date('2020-01-02T03:04:05Z'));
    writeFileSync(join(pair.data, 'top.txt'), 'a file at the root\n');
    utimesSync(join(pair.data, 'alpha'), new Date('2018-01-01T00:00:00Z'), new Date('2018-01-01T00:00:00Z'));
    const init = await pair.json(pair.a, ['mirror', 'initialize', 'vol', '--wait']);
    assert.equal(init.applied, true);
    assertTreesEqual(pair.replica(), pair.data);
    const a = statSync(join(pair.replica(), 'alpha', 'big.bin'));
    const g = statSync(join(pair.replica(), 'gamma', 'big-link.bin'));
    assert.equal(a.ino, g.ino, 'the hard link across subtrees is a hard link in the replica');
    const ev = await pair.ferry(pair.b, ['events', '--kind', 'replica.apply', '--json']);
    const done = ev.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((e: any) => e.event.outcome === 'ok' && e.details.to === init.snapshot);
    assert.equal(done.length, 1, ev.stdout.slice(-800));
    assert.deepEqual(done[0].details.warnings, []);
    assert.ok(done[0].details.created >= 30, JSON.stringify(done[0]));
  } finally {
    await pair.cleanup();
  }
});
