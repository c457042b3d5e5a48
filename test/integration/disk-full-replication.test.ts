// A full disk at the destination of a mirror (docs/replication.md,
// "Interruptions"). The destination's store sits on a small tmpfs and a
// baseline brings more than fits: the initialize fails with NO_SPACE, and what
// the destination kept must still be whole (a tree it holds has everything
// below it), since the next negotiation trusts it. Once space is freed, the
// next initialize completes, without `ferry gc` at the destination, and both
// sites verify. And a baseline never needs room for two copies of a file at
// the destination: with its replicas on a small tmpfs, files at the member
// root are moved from the staging area, not written again (docs/replication.md,
// "Applying while receiving"). Needs mount (root in a sandbox that allows
// it): skipped with the reason otherwise.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { assertTreesEqual } from '../helpers.ts';
import { assertVerifies, killDaemon, makePair, mirrorStatus, stopDaemon, writeRandomFile, writeSmallFiles, type Pair } from '../harness/proxied-pair.ts';
import { remount, tryMount, unmount } from '../harness/small-fs.ts';

const MiB = 1 << 20;

/**
 * Run `fn` on a pair whose destination has `dir` of its home (made empty) on a tmpfs of `sizeMiB`;
 * the test is skipped, with the reason, where mount is not allowed. The daemons stop before the
 * tmpfs is unmounted (the destination holds files on it).
 */
async function withSmallDir(t: TestContext, dir: string, sizeMiB: number, fn: (pair: Pair, mounted: string) => Promise<void>): Promise<void> {
  let mounted: string | undefined;
  let why: string | undefined;
  let pair: Pair;
  try {
    pair = await makePair({
      beforeStart: (b) => {
        const p = join(b.home, dir);
        rmSync(p, { recursive: true, force: true });
        mkdirSync(p);
        why = tryMount(p, sizeMiB);
        if (!why) mounted = p;
      },
    });
  } catch (err) {
    if (mounted) unmount(mounted);
    throw err;
  }
  if (!mounted) {
    await pair.cleanup();
    t.skip(why);
    return;
  }
  try {
    await fn(pair, mounted);
  } finally {
    await killDaemon(pair.a);
    await killDaemon(pair.b);
    unmount(mounted);
    await pair.cleanup();
  }
}

test('a full store at the destination during a baseline: NO_SPACE, and once space is freed the next initialize completes without gc', { timeout: 240_000 }, (t) =>
  withSmallDir(t, 'store', 8, async (pair, mounted) => {
    // 18 MiB in six directories: trees follow their chunks all through the stream, so objects the
    // receiver had already taken when the disk filled include trees above chunks it had to discard.
    for (const d of ['d1', 'd2', 'd3', 'd4', 'd5', 'd6']) {
      mkdirSync(join(pair.data, d));
      for (let i = 0; i < 2; i++) writeRandomFile(join(pair.data, d, `f${i}.bin`), 1.5 * MiB, `${d}-${i}`);
      writeSmallFiles(join(pair.data, d, 'small'), 5, d);
    }
    const full = await pair.ferry(pair.a, ['mirror', 'initialize', 'vol', '--wait', '--json']);
    assert.equal(full.code, 7, `a full disk at the destination is NO_SPACE (exit 7): ${full.stdout} ${full.stderr}`);
    assert.match(full.stderr + full.stdout, /NO_SPACE/);
    assert.match(full.stderr + full.stdout, /disk is full/);

    // Space is freed at the destination: the next initialize completes (no `ferry gc` there).
    remount(mounted, 64);
    const ok = await pair.ferry(pair.a, ['mirror', 'initialize', 'vol', '--wait', '--json']);
    assert.equal(ok.code, 0, `initialize after space was freed: ${ok.stdout} ${ok.stderr}\n${pair.b.log.join('').slice(-3000)}`);
    assertTreesEqual(pair.replica(), pair.data);
    const m = await mirrorStatus(pair);
    assert.equal(m.state, 'idle');
    assert.equal(m.base, ok.json.snapshot);

    await stopDaemon(pair.b);
    await assertVerifies(pair, pair.a);
    await assertVerifies(pair, pair.b);
  }));

test('a baseline whose files sit at the member root fits in a replica filesystem with room for one copy: the staged root files are moved into place, not written again', { timeout: 240_000 }, (t) =>
  // 15 MiB at the member root (and a little below it) in a 20 MiB filesystem for the replicas:
  // writing the root's files again beside their staged copies needed 30 MiB.
  withSmallDir(t, 'replicas', 20, async (pair) => {
    for (let i = 0; i < 3; i++) writeRandomFile(join(pair.data, `root-${i}.bin`), 5 * MiB, `root-${i}`);
    writeSmallFiles(join(pair.data, 'sub'), 5);
    const ok = await pair.ferry(pair.a, ['mirror', 'initialize', 'vol', '--wait', '--json']);
    assert.equal(ok.code, 0, `initialize into a replica filesystem with room for one copy: ${ok.stdout} ${ok.stderr}\n${pair.b.log.join('').slice(-3000)}`);
    assertTreesEqual(pair.replica(), pair.data);
    // The apply took the staged root's files into place (the event counts the staging).
    const events = await pair.ferry(pair.b, ['events', '--kind', 'replica.apply', '--json']);
    const applied = events.stdout.trim().split('\n').map((l) => JSON.parse(l)).find((e) => e.details.transition === 'inconsistent => consistent');
    assert.ok(applied?.details.staging?.staged >= 1, `the baseline was staged: ${JSON.stringify(applied)}`);
    await stopDaemon(pair.b);
    await assertVerifies(pair, pair.b);
  }));
