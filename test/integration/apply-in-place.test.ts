// A large file changed in a few places is patched in the replica's own file (replication/in-place.ts),
// on real daemons: the replica's inode stays, and a destination killed in the middle of the patch
// (FERRY_TEST_CRASH_AT=apply:in-place-mid: the file half old, half new) finishes the apply at restart
// without taking its own half-done work for someone's write; a write made into that file while the
// daemon was down is still kept before the apply overwrites it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { assertTreesEqual } from '../helpers.ts';
import { withCatalog } from '../harness/index.ts';
import { killDaemon, makePair, secondaryJournal, sleep, startDaemon, type Pair } from '../harness/proxied-pair.ts';

const MiB = 1 << 20;

/** Rewrite `len` bytes at each offset of the file, in place. */
function scribble(path: string, offsets: number[], len: number): void {
  const fd = openSync(path, 'r+');
  try {
    for (const at of offsets) writeSync(fd, randomBytes(len), 0, len, at);
  } finally {
    closeSync(fd);
  }
}

async function setUp(): Promise<{ pair: Pair; big: string; replicaBig: () => string }> {
  const pair = await makePair();
  const big = join(pair.data, 'big.bin');
  const fd = openSync(big, 'w');
  writeSync(fd, randomBytes(24 * MiB));
  closeSync(fd);
  await pair.json(pair.a, ['mirror', 'initialize', 'vol', '--wait']);
  return { pair, big, replicaBig: () => join(pair.replica(), 'big.bin') };
}

const keptWrites = (pair: Pair) => withCatalog(pair.b.home, (db) => db.prepare("SELECT name FROM snapshots WHERE name LIKE 'replica-writes-%'").all() as Array<{ name: string }>);

async function crashMidPatch(pair: Pair, big: string, replicaBig: string): Promise<{ target: string; old: Buffer }> {
  const old = readFileSync(replicaBig);
  scribble(big, [2 * MiB, 12 * MiB, 20 * MiB], 64 * 1024);
  await killDaemon(pair.b);
  await startDaemon(pair.b, { ...pair.env, FERRY_TEST_CRASH_AT: 'apply:in-place-mid' });
  pair.proxy.target = pair.b.port!;
  const r = await pair.ferry(pair.a, ['mirror', 'update', 'vol', '--wait', '--json']);
  assert.notEqual(r.code, 0, 'the destination died mid-apply');
  for (let i = 0; i < 200 && pair.b.daemon && pair.b.daemon.exitCode === null && pair.b.daemon.signalCode === null; i++) await sleep(50);
  await killDaemon(pair.b);
  const j = secondaryJournal(pair.b.home)!;
  assert.ok(j.applying, 'the apply is journaled as cut');
  const now = readFileSync(replicaBig);
  assert.ok(!now.equals(old) && !now.equals(readFileSync(big)), 'the file was cut half old, half new (else this tests nothing)');
  return { target: j.applying!, old };
}

test('a large file changed in a few places is patched in place; a kill mid-patch resumes without a false write', { timeout: 180_000 }, async () => {
  const { pair, big, replicaBig } = await setUp();
  try {
    const ino = statSync(replicaBig()).ino;
    scribble(big, [3 * MiB, 15 * MiB], 4096);
    const upd = await pair.json(pair.a, ['mirror', 'update', 'vol', '--wait']);
    assert.equal(upd.applied, true);
    assertTreesEqual(pair.replica(), pair.data);
    assert.equal(statSync(replicaBig()).ino, ino, 'patched in the replica\'s own file, not copied beside it');

    const { target } = await crashMidPatch(pair, big, replicaBig());
    await startDaemon(pair.b, pair.env);
    pair.proxy.target = pair.b.port!;
    for (let k = 0; k < 600 && secondaryJournal(pair.b.home)!.applying; k++) await sleep(50);
    const j = secondaryJournal(pair.b.home)!;
    assert.equal(j.applying, null, 'the restarted daemon finished the cut apply');
    assert.equal(j.applied, target);
    assertTreesEqual(pair.replica(), pair.data);
    assert.deepEqual(keptWrites(pair), [], 'the half-patched file is the apply\'s own work, not a write to keep');
    assert.equal(statSync(replicaBig()).ino, ino);
  } finally {
    await pair.cleanup();
  }
});

test('a write into a half-patched file while the destination was down is kept before the apply goes on', { timeout: 180_000 }, async () => {
  const { pair, big, replicaBig } = await setUp();
  try {
    await crashMidPatch(pair, big, replicaBig());
    // Someone writes into a part of the file the patch keeps (the first MiB) while the daemon is down.
    const theirs = Buffer.from('written at the replica while its daemon was down');
    const fd = openSync(replicaBig(), 'r+');
    writeSync(fd, theirs, 0, theirs.length, 100);
    closeSync(fd);
    const withTheirs = readFileSync(replicaBig());
    await startDaemon(pair.b, pair.env);
    pair.proxy.target = pair.b.port!;
    for (let k = 0; k < 600 && secondaryJournal(pair.b.home)!.applying; k++) await sleep(50);
    assert.equal(secondaryJournal(pair.b.home)!.applying, null);
    assertTreesEqual(pair.replica(), pair.data);
    const kept = keptWrites(pair);
    assert.equal(kept.length, 1, 'the write was kept in a snapshot');
    // The kept snapshot holds the file as it was, their write included.
    const out = join(pair.dir, 'restored');
    const r = await pair.ferry(pair.b, ['restore', 'vol', '--snapshot', kept[0].name, '--target', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(readFileSync(join(out, 'big.bin')).equals(withTheirs), 'the kept snapshot has their write');
  } finally {
    await pair.cleanup();
  }
});
