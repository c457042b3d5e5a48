// Promise 5 (and 1), kill -9 mid-apply: the receiving daemon is SIGKILLed at
// varied moments after it starts applying a snapshot to the replica (the
// `secondaries.applying` journal column is watched through the catalog). Each
// time: while the apply is journaled the secondary shows consistent: false;
// after a restart the daemon finishes the interrupted apply by itself
// (Engine.resumeApplies), the replica is byte-identical to the snapshot,
// status shows consistent: true, and the next update completes; the resumed
// apply finds nothing but its own half-done work in the replica (no
// replica-writes-* snapshot is kept). Whether each
// kill landed mid-apply is read from the journal after the kill and reported.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renameSync, rmSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertTreesEqual } from '../helpers.ts';
import { withCatalog } from '../harness/index.ts';
import { assertVerifies, killDaemon, makePair, secondaryJournal, sleep, startDaemon, stopDaemon, writeRandomFile, writeSmallFiles, type Pair } from '../harness/proxied-pair.ts';

const MiB = 1 << 20;

/** Change the source: a big file rewritten, small files added, changed, removed, a directory renamed. */
function change(pair: Pair, i: number): void {
  writeRandomFile(join(pair.data, 'big.bin'), 12 * MiB);
  writeRandomFile(join(pair.data, `extra-${i}.bin`), 4 * MiB);
  writeSmallFiles(join(pair.data, `dir${i}`), 25, `n${i}-`);
  appendFileSync(join(pair.data, 'dir-base', 'b0003'), `change ${i}\n`);
  if (i > 0) {
    rmSync(join(pair.data, `extra-${i - 1}.bin`));
    renameSync(join(pair.data, `dir${i - 1}`), join(pair.data, `moved${i - 1}`));
  }
}

async function secondaryStatus(pair: Pair): Promise<any> {
  const st = await pair.json(pair.b, ['status']);
  return st.volumes.find((v: any) => v.name === 'vol').secondary;
}

test('SIGKILL of the receiver mid-apply, at varied moments: the apply resumes at restart and the replica ends byte-identical', { timeout: 240_000 }, async (t) => {
  const pair = await makePair({ env: { FERRY_TEST_STALL_TIMEOUT_MS: '20000' } });
  try {
    writeRandomFile(join(pair.data, 'big.bin'), 12 * MiB);
    writeSmallFiles(join(pair.data, 'dir-base'), 20, 'b');
    await pair.json(pair.a, ['mirror', 'initialize', 'vol', '--wait']);
    assertTreesEqual(pair.replica(), pair.data);

    // Kill delays after the journal shows the apply started (ms): at once, then at random moments
    // of an apply that takes about 150-250 ms here (some land after it ended, which must be fine too).
    const delays = [0, ...Array.from({ length: 4 }, () => Math.floor(Math.random() * 350))];
    let landed = 0;
    for (let i = 0; i < delays.length; i++) {
      change(pair, i);
      const before = secondaryJournal(pair.b.home)!;
      const attempt = pair.ferry(pair.a, ['mirror', 'update', 'vol', '--wait', '--json']);
      let done = false;
      void attempt.then(() => (done = true));
      // Watch the journal; the moment the apply is journaled, the replica must be marked inconsistent.
      let seen: { applying: string | null; consistent: number } | undefined;
      while (!done) {
        const j = secondaryJournal(pair.b.home)!;
        if (j.applying && j.applying !== before.applied) {
          seen = j;
          break;
        }
        await sleep(2);
      }
      assert.ok(seen, `update ${i} finished before its apply was seen in the journal`);
      assert.equal(seen.consistent, 0, 'while applying, the secondary must be marked inconsistent');
      const target = seen.applying!;
      if (delays[i]) await sleep(delays[i]);
      await killDaemon(pair.b, 'SIGKILL');
      const after = secondaryJournal(pair.b.home)!;
      const midApply = after.applying === target;
      if (midApply) landed++;
      const r = await attempt;
      t.diagnostic(`kill ${i}: ${delays[i]} ms after the apply started; ${midApply ? 'mid-apply' : `after it (applied ${after.applied === target})`}; the update exited ${r.code}`);
      if (midApply) {
        assert.equal(after.consistent, 0);
        // Status at the stopped site shows the interrupted apply.
        const sec = await secondaryStatus(pair);
        assert.equal(sec.consistent, false);
        assert.equal(sec.applying, target);
        assert.equal(r.code, 6, `the update must fail transiently: ${r.stdout} ${r.stderr}`);
      } else {
        assert.equal(after.applied, target);
        assert.equal(after.consistent, 1);
      }

      // Restart: the daemon finishes the interrupted apply by itself, before any update.
      await startDaemon(pair.b, pair.env);
      pair.proxy.target = pair.b.port!;
      for (let k = 0; k < 600 && secondaryJournal(pair.b.home)!.applying; k++) await sleep(50);
      const resumed = secondaryJournal(pair.b.home)!;
      assert.equal(resumed.applying, null, 'the restarted daemon did not finish the interrupted apply');
      assert.equal(resumed.applied, target);
      assert.equal(resumed.consistent, 1);
      assertTreesEqual(pair.replica(), pair.data);
      // The resumed apply checked what the replica held: only its own half-done work, nothing to keep.
      const kept = withCatalog(pair.b.home, (db) => db.prepare("SELECT name FROM snapshots WHERE name LIKE 'replica-writes-%'").all());
      assert.deepEqual(kept, [], 'a replica cut mid-apply holds only the apply\'s own work: no write to keep');
      const sec = await secondaryStatus(pair);
      assert.equal(sec.consistent, true);
      assert.equal(sec.applied, target);

      // And replication goes on from there.
      const next = await pair.json(pair.a, ['mirror', 'update', 'vol', '--wait']);
      assert.equal(next.applied, true);
      assertTreesEqual(pair.replica(), pair.data);
      assert.equal((await secondaryStatus(pair)).consistent, true);
    }
    t.diagnostic(`${landed} of ${delays.length} kills landed mid-apply`);
    assert.ok(landed >= 1, 'no kill landed mid-apply: the test did not test anything');

    await stopDaemon(pair.b);
    await assertVerifies(pair, pair.a);
    await assertVerifies(pair, pair.b);
  } finally {
    await pair.cleanup();
  }
});
