// Staging under faults (docs/replication.md, "Applying while receiving"). A
// baseline's trees travel during the capture (the early stream) and the
// destination writes them into `<replica>/.ferry-stage/` as they arrive. The
// source's capture is held before its manifest while the destination stages,
// and then the receiving daemon is SIGKILLed: its record of what it staged is
// gone with it. After a restart the next initialize must complete, take what
// the dead process staged into place (found again from the trees
// themselves), leave nothing in the staging area, and produce a replica equal
// to the source, verified by both sites.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertTreesEqual } from '../helpers.ts';
import { waitFor } from '../harness/index.ts';
import { assertVerifies, killDaemon, makePair, mirrorStatus, startDaemon, stopDaemon, storeTotals, writeRandomFile, writeSmallFiles } from '../harness/proxied-pair.ts';

const MiB = 1 << 20;

test('a baseline staged while its capture is held survives a receiver SIGKILL: the next initialize takes what was staged', { timeout: 180_000 }, async () => {
  const pair = await makePair();
  try {
    // Six directories of 6 MiB: each tree is followed by more than the 4 MiB the early stream holds
    // back, and at least two go before the stream's tail (what is left below one 4 MiB batch waits
    // for the capture's end) wherever its 16 MiB batches happen to be cut.
    for (const d of ['d1', 'd2', 'd3', 'd4', 'd5', 'd6']) {
      mkdirSync(join(pair.data, d));
      for (let i = 0; i < 3; i++) writeRandomFile(join(pair.data, d, `f${i}.bin`), 2 * MiB, `${d}-${i}`);
      writeSmallFiles(join(pair.data, d, 'small'), 5, d);
    }
    const release = join(pair.dir, 'release');
    await startDaemon(pair.a, { ...pair.env, FERRY_TEST_PAUSE_AT: 'snapshot:before-manifest', FERRY_TEST_PAUSE_FILE: release });

    const attempt = pair.ferry(pair.a, ['mirror', 'initialize', 'vol', '--wait', '--json']);
    const area = join(pair.replica(), '.ferry-stage');
    const staged = await waitFor('trees staged at the destination while the source capture is held', () => {
      const whole = existsSync(area) ? readdirSync(area).filter((n) => /^[0-9a-f]{64}$/.test(n)) : [];
      return whole.length >= 2 ? whole : undefined;
    }, 60_000, 100).catch((err) => {
      const seen = existsSync(area) ? readdirSync(area).join(' ') : '(no staging area)';
      throw new Error(`${(err as Error).message}; staging area: ${seen}; b stores ${JSON.stringify(storeTotals(pair.b.home))}\na: ${pair.a.log.join('').slice(-2000)}\nb: ${pair.b.log.join('').slice(-2000)}`);
    });
    await killDaemon(pair.b, 'SIGKILL');
    writeFileSync(release, '');
    const cut = await attempt;
    assert.equal(cut.code, 6, `a transient failure (exit 6): ${cut.stdout} ${cut.stderr}`);
    assert.ok(staged.every((n) => existsSync(join(area, n))), 'what was staged is still there after the kill');

    await startDaemon(pair.b, pair.env);
    pair.proxy.target = pair.b.port!;
    const ok = await pair.json(pair.a, ['mirror', 'initialize', 'vol', '--wait']);
    assertTreesEqual(pair.replica(), pair.data);
    assert.ok(!existsSync(area), 'the staging area is removed after the apply');
    const m = await mirrorStatus(pair);
    assert.equal(m.state, 'idle');
    assert.equal(m.base, ok.snapshot);

    // The apply took the dead process's staged trees into place (it had no record of them).
    const events = await pair.ferry(pair.b, ['events', '--kind', 'replica.apply', '--json']);
    const applied = events.stdout.trim().split('\n').map((l) => JSON.parse(l)).find((e) => e.details.transition === 'inconsistent => consistent');
    assert.ok(applied?.details.staging?.taken >= staged.length, `staged trees taken into place: ${JSON.stringify(applied)}`);

    await stopDaemon(pair.a);
    await stopDaemon(pair.b);
    await assertVerifies(pair, pair.a);
    await assertVerifies(pair, pair.b);
  } finally {
    await pair.cleanup();
  }
});
