// Promise 5, stalled links: a link that stops carrying bytes without closing
// is detected by the client's stall timeout (FERRY_TEST_STALL_TIMEOUT_MS here);
// the update fails transiently (exit 6) and the next one resumes without
// resending what arrived, whether the sender is the CLI or a daemon that
// keeps its connection to the peer between updates. And a link lost while
// the destination applies (the commit's answer never arrives) must not cost
// a full resync.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertTreesEqual } from '../helpers.ts';
import { assertVerifies, makePair, mirrorStatus, secondaryJournal, sleep, startDaemon, stopDaemon, storeTotals, writeRandomFile, writeSmallFiles, type Pair } from '../harness/proxied-pair.ts';

const MiB = 1 << 20;
const META_SLACK = 256 * 1024;
const STALL_MS = 3000;

async function baseline(pair: Pair): Promise<void> {
  writeSmallFiles(join(pair.data, 'small'), 20);
  await pair.json(pair.a, ['mirror', 'initialize', 'vol', '--wait']);
}

/** Add `mib` MiB of new data; returns its bytes. */
function addData(pair: Pair, name: string, sizes: number[]): number {
  sizes.forEach((s, i) => writeRandomFile(join(pair.data, `${name}-${i}.bin`), s * MiB));
  return sizes.reduce((a, b) => a + b, 0) * MiB;
}

/** The retry sent only what had not arrived; something had. */
function assertResumed(volumeBytes: number, arrived: number, retryBytes: number): void {
  const report = JSON.stringify({ volumeBytes, arrived, retryBytes });
  assert.ok(arrived > 0, `nothing had arrived before the stall: ${report}`);
  assert.ok(retryBytes <= volumeBytes - arrived + META_SLACK, `the retry resent stored objects: ${report}`);
}

test('a stalled link fails the update after the stall timeout; the next update resumes (CLI sender)', { timeout: 120_000 }, async (t) => {
  const pair = await makePair({ env: { FERRY_TEST_STALL_TIMEOUT_MS: String(STALL_MS) } });
  try {
    await baseline(pair);
    const volumeBytes = addData(pair, 'big', [16, 8]);
    const before = storeTotals(pair.b.home);
    pair.proxy.throttle(8 * MiB);
    const up0 = pair.proxy.up;
    const attempt = pair.ferry(pair.a, ['mirror', 'update', 'vol', '--wait', '--json']);
    await pair.proxy.waitFor(() => pair.proxy.up - up0 > volumeBytes * 0.4, 60_000, '40% of the transfer');
    pair.proxy.stall();
    const r = await attempt;
    assert.equal(r.code, 6, `${r.stdout} ${r.stderr}`);
    assert.equal(r.json.error.code, 'TRANSFER_INTERRUPTED');
    assert.match(r.json.error.message, /stalled/);
    const m = await mirrorStatus(pair);
    assert.equal(m.state, 'idle');
    assert.equal(m.lastError.code, 'TRANSFER_INTERRUPTED');

    // The link recovers: the held bytes flow, then the dead client's close; b keeps what arrived.
    pair.proxy.pass();
    await pair.proxy.waitFor(() => pair.proxy.open === 0, 30_000, 'the stalled connection to end');
    const carried = pair.proxy.up - up0;
    await sleep(200);
    const arrived = storeTotals(pair.b.home).bytes - before.bytes;
    const ok = await pair.json(pair.a, ['mirror', 'update', 'vol', '--wait']);
    t.diagnostic(JSON.stringify({ volumeBytes, carriedByFailedAttempt: carried, arrived, retryBytes: ok.transfer.bytes }));
    assertResumed(volumeBytes, arrived, ok.transfer.bytes);
    assertTreesEqual(pair.replica(), pair.data);
    assert.equal((await mirrorStatus(pair)).lastError, null);
  } finally {
    await pair.cleanup();
  }
});

test('a daemon drops a connection that stalled for good and reconnects for the next update', { timeout: 120_000 }, async (t) => {
  const env = { FERRY_TEST_STALL_TIMEOUT_MS: String(STALL_MS) };
  const pair = await makePair({ env });
  try {
    await startDaemon(pair.a, env);
    await baseline(pair);
    const volumeBytes = addData(pair, 'big', [16, 8]);
    const before = storeTotals(pair.b.home);
    pair.proxy.throttle(8 * MiB);
    const up0 = pair.proxy.up;
    const attempt = pair.ferry(pair.a, ['mirror', 'update', 'vol', '--wait', '--json']);
    await pair.proxy.waitFor(() => pair.proxy.up - up0 > volumeBytes * 0.4, 60_000, '40% of the transfer');
    // The path dies silently (no reset, ever); a new connection would get through.
    pair.proxy.freeze();
    pair.proxy.pass();
    const r = await attempt;
    const carried = pair.proxy.up - up0;
    assert.equal(r.code, 6, `${r.stdout} ${r.stderr}`);
    assert.match(r.stderr, /stalled/);
    // b's receiving end of the dead connection still waits: what it received is pending in its
    // store, not yet durable (0 bytes indexed here), but counted as present when asked.
    const arrived = storeTotals(pair.b.home).bytes - before.bytes;
    // The daemon's client must not reuse the dead session.
    const ok = await pair.json(pair.a, ['mirror', 'update', 'vol', '--wait']);
    t.diagnostic(JSON.stringify({ volumeBytes, carriedByFailedAttempt: carried, arrived, retryBytes: ok.transfer.bytes }));
    assert.ok(ok.transfer.bytes <= volumeBytes - arrived + META_SLACK, JSON.stringify({ volumeBytes, arrived, retry: ok.transfer.bytes }));
    assertTreesEqual(pair.replica(), pair.data);
    await stopDaemon(pair.a);
    await stopDaemon(pair.b);
    await assertVerifies(pair, pair.a);
    await assertVerifies(pair, pair.b);
  } finally {
    await pair.cleanup();
  }
});

test(
  'a link lost while the destination applies (the commit answer never arrives) does not cost a full resync',
  { timeout: 120_000 },
  async (t) => {
    const pair = await makePair({ env: { FERRY_TEST_STALL_TIMEOUT_MS: String(STALL_MS) } });
    try {
      await baseline(pair);
      let lost = false;
      let committed: string | null | undefined;
      const oldBase = (await mirrorStatus(pair)).base;
      for (let i = 0; i < 3 && !lost; i++) {
        addData(pair, `round${i}`, [8]);
        writeSmallFiles(join(pair.data, `more${i}`), 30);
        const applied = secondaryJournal(pair.b.home)?.applied;
        const attempt = pair.ferry(pair.a, ['mirror', 'update', 'vol', '--wait', '--json']);
        // Hold the link as soon as b has committed the new snapshot and starts applying it.
        let done = false;
        void attempt.then(() => (done = true));
        while (!done) {
          const j = secondaryJournal(pair.b.home);
          if (j && (j.applying || j.applied !== applied)) {
            pair.proxy.stall();
            break;
          }
          await sleep(2);
        }
        const r = await attempt;
        pair.proxy.pass();
        if (r.code === 0) continue; // the answer got out first: try again with more to apply
        assert.equal(r.code, 6, `${r.stdout} ${r.stderr}`);
        lost = true;
        // b applied it (its base is released there); a never heard.
        await pair.proxy.waitFor(() => pair.proxy.open === 0, 30_000, 'the stalled connection to end');
        for (let k = 0; k < 500 && secondaryJournal(pair.b.home)?.applying; k++) await sleep(20);
        committed = secondaryJournal(pair.b.home)?.applied;
        assert.notEqual(committed, applied);
        assert.equal((await mirrorStatus(pair)).base, oldBase);
      }
      assert.ok(lost, 'could not hold the commit answer in 3 tries');
      const retry = await pair.ferry(pair.a, ['mirror', 'update', 'vol', '--wait', '--json']);
      assert.equal(retry.code, 0, `${retry.stdout} ${retry.stderr}`);
      // The retry starts from what b committed, and sends next to nothing.
      assert.equal(retry.json.base, committed);
      assert.ok(retry.json.transfer.bytes < 64 * 1024, `the retry sent ${retry.json.transfer.bytes} bytes`);
      t.diagnostic(JSON.stringify({ oldBase, committedAtB: committed, retryBase: retry.json.base, retryBytes: retry.json.transfer.bytes }));
      assertTreesEqual(pair.replica(), pair.data);
      const m = await mirrorStatus(pair);
      assert.equal(m.state, 'idle');
      assert.equal(m.base, retry.json.snapshot);
    } finally {
      await pair.cleanup();
    }
  },
);

test('a commit that applies for longer than the stall timeout succeeds: the receiver keeps its answer alive', { timeout: 120_000 }, async () => {
  // b holds its apply (after writing, before verifying) until the file appears: 3x the stall timeout.
  const release = join(tmpdir(), `ferry-keepalive-${process.pid}-${Date.now()}`);
  const pair = await makePair({ env: { FERRY_TEST_STALL_TIMEOUT_MS: String(STALL_MS), FERRY_TEST_KEEPALIVE_MS: '500' } });
  try {
    await baseline(pair);
    await stopDaemon(pair.b);
    await startDaemon(pair.b, { ...pair.env, FERRY_TEST_PAUSE_AT: 'apply:after-write', FERRY_TEST_PAUSE_FILE: release });
    pair.proxy.target = pair.b.port!;
    addData(pair, 'slow', [2]);
    const timer = setTimeout(() => writeFileSync(release, ''), 3 * STALL_MS);
    const started = Date.now();
    const r = await pair.ferry(pair.a, ['mirror', 'update', 'vol', '--wait', '--json']);
    clearTimeout(timer);
    assert.equal(r.code, 0, `${r.stdout} ${r.stderr}`);
    assert.ok(Date.now() - started >= 3 * STALL_MS, 'the apply was not held: the test proves nothing');
    assert.equal(r.json.applied, true);
    assertTreesEqual(pair.replica(), pair.data);
  } finally {
    rmSync(release, { force: true });
    await pair.cleanup();
  }
});
