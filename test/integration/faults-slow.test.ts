// Slow links: a transfer through a proxy that adds latency and throttles
// completes and the replica matches; and a mirror's own bandwidth limit
// (`mirror create --bandwidth`) really paces the transfer (a lower bound on
// the time only: the machine may be slower, never faster).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { assertTreesEqual } from '../helpers.ts';
import { makePair, mirrorStatus, writeRandomFile, writeSmallFiles } from '../harness/proxied-pair.ts';

const MiB = 1 << 20;

test('a transfer through a delaying, throttling link completes and the replica matches', { timeout: 120_000 }, async (t) => {
  const pair = await makePair({ env: { FERRY_TEST_STALL_TIMEOUT_MS: '30000' } });
  try {
    writeRandomFile(join(pair.data, 'big.bin'), 6 * MiB);
    writeSmallFiles(join(pair.data, 'small'), 30);
    mkdirSync(join(pair.data, 'deep', 'er'), { recursive: true });
    symlinkSync('../../small/f0001', join(pair.data, 'deep', 'er', 'link'));
    pair.proxy.set({ delayMs: 25, bytesPerSecond: 4 * MiB });
    const first = await pair.json(pair.a, ['mirror', 'initialize', 'vol', '--wait']);
    assertTreesEqual(pair.replica(), pair.data);

    pair.proxy.set({ delayMs: 60, bytesPerSecond: 2 * MiB });
    writeRandomFile(join(pair.data, 'deep', 'new.bin'), 2 * MiB);
    appendFileSync(join(pair.data, 'small', 'f0003'), 'more');
    rmSync(join(pair.data, 'small', 'f0004'));
    const second = await pair.json(pair.a, ['mirror', 'update', 'vol', '--wait']);
    assertTreesEqual(pair.replica(), pair.data);
    assert.ok(second.transfer.bytes < 3 * MiB, `the update sent ${second.transfer.bytes} bytes`);
    const m = await mirrorStatus(pair);
    assert.equal(m.state, 'idle');
    assert.equal(m.lastError, null);
    t.diagnostic(JSON.stringify({ initial: first.transfer.bytes, update: second.transfer.bytes, proxyUp: pair.proxy.up, proxyDown: pair.proxy.down }));
  } finally {
    await pair.cleanup();
  }
});

test('mirror create --bandwidth 1MiB/s: a 3 MiB transfer takes at least about 2 s', { timeout: 120_000 }, async (t) => {
  const pair = await makePair({ mirrorArgs: ['--bandwidth', '1MiB/s'] });
  try {
    writeRandomFile(join(pair.data, 'three.bin'), 3 * MiB);
    const m0 = await mirrorStatus(pair);
    assert.equal(m0.bandwidth, MiB);
    const started = performance.now();
    const r = await pair.json(pair.a, ['mirror', 'initialize', 'vol', '--wait']);
    const wall = (performance.now() - started) / 1000;
    assertTreesEqual(pair.replica(), pair.data);
    assert.ok(r.transfer.bytes >= 3 * MiB);
    // 3 MiB at 1 MiB/s, less the bucket's quarter-second burst: 2.75 s at the least. Generous bound.
    assert.ok(r.transfer.seconds >= 2, `a 3 MiB transfer at 1 MiB/s took ${r.transfer.seconds} s`);
    t.diagnostic(JSON.stringify({ bytes: r.transfer.bytes, transferSeconds: r.transfer.seconds, wallSeconds: wall }));
  } finally {
    await pair.cleanup();
  }
});
