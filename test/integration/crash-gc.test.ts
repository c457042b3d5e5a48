// Crash safety of deletion and garbage collection: `snapshot delete` (which
// runs GC: repacks and deletes packs) is killed with SIGKILL at random points.
// Afterwards, with no manual cleanup: verify passes, the deletion happened
// wholly or not at all, every remaining snapshot restores exactly, and the
// next gc completes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertTreesEqual, runFerry } from '../helpers.ts';
import { assertSiteSound, killAfter, makeSite, timeCommand, writeRandomFile, writeSmallFiles, type TestSite } from '../harness/cli-site.ts';

const MiB = 1 << 20;

function siteAt(base: TestSite, home: string): TestSite {
  return {
    ...base,
    home,
    ferry: (args, o = {}) => runFerry(args, { home, env: o.env, timeoutMs: o.timeoutMs }),
    async json(args, expectCode = 0) {
      const r = await runFerry([...args, '--json'], { home });
      assert.equal(r.code, expectCode, `ferry ${args.join(' ')}: ${r.stderr}`);
      return r.json;
    },
  };
}

test('snapshot delete + GC killed with SIGKILL at random points leaves a sound site', async (t) => {
  const site = await makeSite();
  try {
    const data = join(site.dir, 'data');
    mkdirSync(data);
    writeSmallFiles(join(data, 'small'), 40);
    assert.equal((await site.ferry(['volume', 'create', 'v', '--member', data])).code, 0);
    // Five snapshots. Each adds a file every later snapshot keeps (A) and one only it has (B), so
    // deleting the middle ones leaves packs half dead: GC repacks them (copy, re-point, unlink).
    const ids: string[] = [];
    const refs = new Map<string, string>();
    for (let i = 0; i < 5; i++) {
      if (i > 0) rmSync(join(data, `b-${i - 1}.bin`));
      writeRandomFile(join(data, `a-${i}.bin`), 2 * MiB);
      writeRandomFile(join(data, `b-${i}.bin`), 2 * MiB);
      for (let k = 0; k < 5; k++) writeFileSync(join(data, 'small', `f${String(randomInt(0, 40)).padStart(4, '0')}`), `snapshot ${i} ${k}\n`);
      const r = await site.json(['snapshot', 'create', 'v']);
      ids.push(r.snapshot.id);
      const ref = join(site.dir, `ref-${i}`);
      execFileSync('cp', ['-a', data, ref]);
      refs.set(r.snapshot.id, ref);
    }
    const pristine = site.home;
    const doomed = ids.slice(1, 4);

    // How long the delete takes when left alone (in all, and from taking the lock).
    const probe = siteAt(site, join(site.dir, 'home-probe'));
    execFileSync('cp', ['-a', pristine, probe.home]);
    const normal = await timeCommand(probe, ['snapshot', 'delete', 'v', ...doomed]);
    assert.equal(normal.code, 0);
    assert.deepEqual(await probe.json(['snapshot', 'list', 'v']).then((l) => l.map((x: { id: string }) => x.id)), [ids[0], ids[4]]);
    const expectedRaw = (await probe.json(['info'])).store.rawBytes;
    rmSync(probe.home, { recursive: true });

    // At least 4 rounds, and until 3 kills have landed inside the command (at most 8 rounds).
    let killedMidway = 0;
    let round = 0;
    for (; round < 8 && (round < 4 || killedMidway < 3); round++) {
      const s = siteAt(site, join(site.dir, `home-${round}`));
      execFileSync('cp', ['-a', pristine, s.home]);
      // Even rounds: anywhere from ~50 ms to the normal duration. Odd rounds: after the site lock is taken.
      const afterLock = round % 2 === 1;
      const delay = afterLock ? randomInt(0, Math.max(1, normal.lockedMs)) : randomInt(50, Math.max(51, normal.totalMs));
      const k = await killAfter(s, ['snapshot', 'delete', 'v', ...doomed], delay, { afterLock });
      t.diagnostic(`round ${round}: kill ${delay} ms after ${afterLock ? 'the lock' : 'spawn'} (normal: ${normal.totalMs} ms, ${normal.lockedMs} ms locked): ${k.killed ? 'killed' : `had exited ${k.code}`}`);
      if (k.killed) killedMidway++;
      else assert.equal(k.code, 0);

      const left = await assertSiteSound(s, 'v');
      // one transaction: all three deleted, or none
      assert.ok(
        JSON.stringify(left) === JSON.stringify(ids) || JSON.stringify(left) === JSON.stringify([ids[0], ids[4]]),
        `after the kill the volume has ${left.join(', ')}`,
      );
      for (const id of left) {
        const out = join(site.dir, `out-${round}-${id}`);
        const r = await s.ferry(['restore', 'v', '--snapshot', id, '--target', out]);
        assert.equal(r.code, 0, `restore ${id}: ${r.stderr}`);
        assertTreesEqual(out, refs.get(id)!);
        rmSync(out, { recursive: true });
      }
      // The next gc completes; if the delete committed, the store ends where an uninterrupted delete left it.
      const gc = await s.ferry(['gc', '--json']);
      assert.equal(gc.code, 0, `gc after a kill: ${gc.stderr}`);
      if (left.length === 2) assert.equal((await s.json(['info'])).store.rawBytes, expectedRaw);
      await assertSiteSound(s, 'v');
      rmSync(s.home, { recursive: true });
    }
    t.diagnostic(`${killedMidway} of ${round} kills landed before the command finished`);
  } finally {
    site.cleanup();
  }
});
