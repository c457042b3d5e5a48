// Crash safety of `snapshot create`: the CLI is killed with SIGKILL at random
// points, several times. After each kill, with no manual cleanup: the site
// lock is taken over, verify passes, the catalog lists consistent snapshots,
// no pack file is left that the index does not know, and the next snapshot
// completes and restores exactly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdirSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { randomBytes, randomInt } from 'node:crypto';
import { join } from 'node:path';
import { assertTreesEqual } from '../helpers.ts';
import { assertSiteSound, killAfter, makeSite, timeCommand, writeRandomFile, writeSmallFiles } from '../harness/cli-site.ts';

const MiB = 1 << 20;

function mutate(data: string, round: number): void {
  // New content in each big file (one region) and in some small files, so every round has work to do.
  for (const name of ['big-0', 'big-1', 'big-2']) {
    const fd = openSync(join(data, name), 'r+');
    writeSync(fd, randomBytes(2 * MiB), 0, 2 * MiB, randomInt(0, 18 * MiB));
    closeSync(fd);
  }
  for (let i = 0; i < 20; i++) writeFileSync(join(data, 'small', `f${String(randomInt(0, 200)).padStart(4, '0')}`), `round ${round} ${randomBytes(8).toString('hex')}\n`);
  writeRandomFile(join(data, `new-${round}.bin`), 3 * MiB);
}

test('snapshot create killed with SIGKILL at random points leaves a sound site', async (t) => {
  const site = await makeSite();
  try {
    const data = join(site.dir, 'data');
    mkdirSync(data);
    for (const [i, size] of [20, 24, 20].entries()) writeRandomFile(join(data, `big-${i}`), size * MiB);
    writeSmallFiles(join(data, 'small'), 200);
    assert.equal((await site.ferry(['volume', 'create', 'v', '--member', data])).code, 0);

    // How long a full snapshot takes here (on a scratch site: the real one must start empty).
    const probe = await makeSite('probe');
    let normal: { code: number | null; totalMs: number; lockedMs: number };
    try {
      assert.equal((await probe.ferry(['volume', 'create', 'v', '--member', data])).code, 0);
      normal = await timeCommand(probe, ['snapshot', 'create', 'v']);
      assert.equal(normal.code, 0);
    } finally {
      probe.cleanup();
    }

    // At least 4 rounds, and until 3 kills have landed inside the command (at most 8 rounds).
    let killedMidway = 0;
    let before: string[] = [];
    let round = 0;
    for (; round < 8 && (round < 4 || killedMidway < 3); round++) {
      if (round > 0) mutate(data, round);
      // Even rounds: anywhere from ~50 ms to the normal duration. Odd rounds: after the site lock is taken.
      const afterLock = round % 2 === 1;
      const delay = afterLock ? randomInt(0, Math.max(1, normal.lockedMs)) : randomInt(50, Math.max(51, normal.totalMs));
      const k = await killAfter(site, ['snapshot', 'create', 'v'], delay, { afterLock });
      t.diagnostic(`round ${round}: kill ${delay} ms after ${afterLock ? 'the lock' : 'spawn'} (normal: ${normal.totalMs} ms, ${normal.lockedMs} ms locked): ${k.killed ? 'killed' : `had exited ${k.code}`}`);
      if (k.killed) killedMidway++;
      else assert.equal(k.code, 0);

      const ids = await assertSiteSound(site, 'v');
      // the killed snapshot is either wholly there or not at all
      assert.deepEqual(ids.slice(0, before.length), before);
      assert.ok(ids.length === before.length || ids.length === before.length + 1, `snapshots ${before.length} -> ${ids.length}`);

      // the next snapshot completes (taking over the dead process's lock) and restores exactly
      const r = await site.ferry(['snapshot', 'create', 'v', '--json']);
      assert.equal(r.code, 0, `snapshot after a kill: ${r.stderr}`);
      const out = join(site.dir, `out-${round}`);
      assert.equal((await site.ferry(['restore', 'v', '--snapshot', r.json.snapshot.id, '--target', out])).code, 0);
      assertTreesEqual(out, data);
      rmSync(out, { recursive: true });
      before = [...ids, r.json.snapshot.id];
    }
    t.diagnostic(`${killedMidway} of ${round} kills landed before the command finished`);
    // Every snapshot that survived restores (verify read all of them); one last check of the whole site.
    await assertSiteSound(site, 'v');
  } finally {
    site.cleanup();
  }
});
