// Transport fit on real daemons (replication/link-fit.ts): each transfer records the link as it
// measured it; `mirror set --deltas never` sends whole objects (the capture's chunks going early,
// while it runs), `always` deltas, `auto` the quicker way by the figures the transfers recorded; the
// replica is the source's tree every time, whichever way it went.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { assertTreesEqual } from '../helpers.ts';
import { chooseDeltas } from '../../src/replication/link-fit.ts';
import { makePair, mirrorStatus, writeRandomFile, writeSmallFiles } from '../harness/proxied-pair.ts';

const MiB = 1 << 20;

/** Rewrite 64 KiB at `count` places spread over the file. */
function scribble(path: string, size: number, count: number): void {
  const fd = openSync(path, 'r+');
  try {
    for (let i = 0; i < count; i++) writeSync(fd, randomBytes(64 * 1024), 0, 64 * 1024, Math.floor(((i + 0.5) * size) / count));
  } finally {
    closeSync(fd);
  }
}

test('each transfer records its link; --deltas never sends whole (early), always deltas, auto the quicker way', { timeout: 240_000 }, async () => {
  const pair = await makePair();
  try {
    const big = join(pair.data, 'big.bin');
    writeRandomFile(big, 24 * MiB);
    writeSmallFiles(join(pair.data, 'small'), 20);
    await pair.json(pair.a, ['mirror', 'initialize', 'vol', '--wait']);
    let m = await mirrorStatus(pair);
    assert.equal(m.deltas, 'auto');
    assert.ok(m.lastTransfer.link.whole.bytesPerSecond > 0, 'the initialize measured whole sends (24 MiB)');
    assert.equal(typeof m.lastTransfer.link.rttMs, 'number');
    assert.deepEqual(m.lastTransfer.fit, { deltas: true, reason: 'the link is not measured yet' });

    // never: whole objects, and the chunks the capture stores go while it runs.
    const set = await pair.json(pair.a, ['mirror', 'set', 'vol', '--deltas', 'never']);
    assert.equal(set.deltas, 'never');
    // The site file says it (config export writes what `config apply` would keep).
    const exported = await pair.ferry(pair.a, ['config', 'export']);
    assert.equal(exported.code, 0, exported.stderr);
    assert.match(exported.stdout, /deltas: never/);
    scribble(big, 24 * MiB, 8);
    writeRandomFile(join(pair.data, 'new-1.bin'), 12 * MiB);
    const never = await pair.json(pair.a, ['mirror', 'update', 'vol', '--wait']);
    assert.equal(never.applied, true);
    assert.equal(never.transfer.deltas, 0);
    assert.equal(never.transfer.fit.deltas, false);
    assert.ok(never.transfer.early, 'the early stream ran for the update');
    assertTreesEqual(pair.replica(), pair.data);

    // always: the changed chunks of big.bin go as deltas against the base's.
    await pair.json(pair.a, ['mirror', 'set', 'vol', '--deltas', 'always']);
    scribble(big, 24 * MiB, 8);
    const always = await pair.json(pair.a, ['mirror', 'update', 'vol', '--wait']);
    assert.ok(always.transfer.deltas > 0, 'changed chunks went as deltas');
    assert.equal(always.transfer.fit.deltas, true);
    assert.equal(always.transfer.early, undefined, 'no early stream with a delta base');
    assertTreesEqual(pair.replica(), pair.data);

    // auto: the choice the recorded figures make (whichever it is on this machine now).
    await pair.json(pair.a, ['mirror', 'set', 'vol', '--deltas', 'auto']);
    m = await mirrorStatus(pair);
    const expected = chooseDeltas('auto', m.lastTransfer.link, null, Date.now());
    scribble(big, 24 * MiB, 8);
    const auto = await pair.json(pair.a, ['mirror', 'update', 'vol', '--wait']);
    assert.equal(auto.transfer.fit.deltas, expected.deltas, `${auto.transfer.fit.reason} / expected ${expected.reason}`);
    assert.equal(auto.transfer.deltas > 0, expected.deltas);
    assertTreesEqual(pair.replica(), pair.data);

    // The setting survives status and is refused with the modes named when wrong.
    const bad = await pair.ferry(pair.a, ['mirror', 'set', 'vol', '--deltas', 'sometimes']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--deltas sometimes: choose one of auto, always, never/);
    const text = await pair.ferry(pair.a, ['status']);
    assert.match(text.stdout, /link whole [^;]*; sent (deltas \(\d+\)|whole objects)/);
  } finally {
    await pair.cleanup();
  }
});
