// Promise 5, kill -9 mid-transfer: the sending CLI, the sending daemon, and
// the receiving daemon are each SIGKILLed halfway through an update. After a
// restart the next update completes, sends only what the destination had not
// stored (measured against its object index, durable objects only), and the
// replica matches byte for byte; `ferry verify` passes on both sites.
//
// Puts are 4 MiB here (FERRY_TEST_PUT_BATCH_BYTES): a receiver makes what arrived
// durable when a put ends or is cut, which a SIGKILL of the receiver itself
// prevents, so the last put in flight is what such a kill may cost.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { assertTreesEqual, FERRY_BIN } from '../helpers.ts';
import { assertVerifies, killDaemon, makePair, mirrorStatus, sleep, startDaemon, stopDaemon, storeTotals, writeRandomFile, writeSmallFiles, type Pair } from '../harness/proxied-pair.ts';

const MiB = 1 << 20;
const BATCH = 4 * MiB;
const META_SLACK = 256 * 1024;

function addData(pair: Pair, name: string, sizes: number[]): number {
  sizes.forEach((s, i) => writeRandomFile(join(pair.data, `${name}-${i}.bin`), s * MiB));
  writeSmallFiles(join(pair.data, `${name}-small`), 20);
  let small = 0;
  for (let i = 0; i < 20; i++) small += 100 + ((i * 37) % 900);
  return sizes.reduce((a, b) => a + b, 0) * MiB + small;
}

/** A sender killed mid-update leaves no job behind it: after the restart, the mirror is not shown as updating. */
async function assertNoGhostJob(t: { test: (name: string, o: object, fn: () => Promise<void>) => Promise<unknown> }, pair: Pair): Promise<void> {
  const m = await mirrorStatus(pair);
  await t.test('the mirror does not show the dead job as still running', {}, async () => {
    assert.notEqual(m.state, 'updating', `state ${m.state} with no transfer running`);
  });
}

interface Outcome {
  volumeBytes: number;
  /** bytes the link carried up for the interrupted attempt */
  carriedBeforeKill: number;
  arrived: number;
  retryBytes: number;
}

/** Retry the update and check that only what had not arrived was sent. */
async function retryAndCheck(pair: Pair, volumeBytes: number, before: number, carried: number): Promise<Outcome> {
  const arrived = storeTotals(pair.b.home).bytes - before;
  const ok = await pair.json(pair.a, ['mirror', 'update', 'vol', '--wait']);
  const out: Outcome = { volumeBytes, carriedBeforeKill: carried, arrived, retryBytes: ok.transfer.bytes };
  assert.ok(arrived > 0, `nothing was stored before the kill: ${JSON.stringify(out)}`);
  assert.ok(out.retryBytes <= volumeBytes - arrived + META_SLACK, `the retry resent stored objects: ${JSON.stringify(out)}`);
  assert.ok(carried + out.retryBytes <= volumeBytes + BATCH + 16 * MiB, JSON.stringify(out));
  assertTreesEqual(pair.replica(), pair.data);
  const m = await mirrorStatus(pair);
  assert.equal(m.state, 'idle');
  assert.equal(m.lastError, null);
  assert.equal(m.base, ok.snapshot);
  return out;
}

test('SIGKILL of the sending CLI, the sending daemon and the receiving daemon mid-transfer: the next update resumes', { timeout: 240_000 }, async (t) => {
  const env = { FERRY_TEST_PUT_BATCH_BYTES: String(BATCH), FERRY_TEST_STALL_TIMEOUT_MS: '10000' };
  const pair = await makePair({ env });
  try {
    writeSmallFiles(join(pair.data, 'base'), 20);
    await pair.json(pair.a, ['mirror', 'initialize', 'vol', '--wait']);

    await t.test('the sending CLI (no daemon: the transfer runs in the CLI process)', async (t) => {
      const volumeBytes = addData(pair, 'cli', [16, 8]);
      const before = storeTotals(pair.b.home).bytes;
      pair.proxy.throttle(10 * MiB);
      const up0 = pair.proxy.up;
      const cli = spawn(FERRY_BIN, ['mirror', 'update', 'vol', '--wait', '--home', pair.a.home], { env: { ...process.env, FERRY_NO_PROGRESS: '1', ...env }, stdio: 'ignore' });
      const exited = new Promise<NodeJS.Signals | null>((r) => cli.once('exit', (_code, sig) => r(sig)));
      await pair.proxy.waitFor(() => pair.proxy.up - up0 > volumeBytes / 2, 60_000, 'half the transfer');
      cli.kill('SIGKILL');
      assert.equal(await exited, 'SIGKILL');
      pair.proxy.pass();
      // b sees the connection close and keeps what arrived.
      await pair.proxy.waitFor(() => pair.proxy.open === 0, 30_000, 'the dead connection to close');
      const carried = pair.proxy.up - up0;
      await sleep(200);
      await assertNoGhostJob(t, pair);
      // The dead CLI's site lock is taken over; its mirror state is left as it was.
      const out = await retryAndCheck(pair, volumeBytes, before, carried);
      t.diagnostic(JSON.stringify(out));
    });

    await t.test('the sending daemon', async (t) => {
      await startDaemon(pair.a, env);
      const volumeBytes = addData(pair, 'sender', [16, 8]);
      const before = storeTotals(pair.b.home).bytes;
      pair.proxy.throttle(10 * MiB);
      const up0 = pair.proxy.up;
      const attempt = pair.ferry(pair.a, ['mirror', 'update', 'vol', '--wait', '--json']);
      await pair.proxy.waitFor(() => pair.proxy.up - up0 > volumeBytes / 2, 60_000, 'half the transfer');
      await killDaemon(pair.a, 'SIGKILL');
      const r = await attempt;
      // Whatever the CLI said, it must not claim success for an update that did not happen.
      await t.test('the waiting CLI reports the lost daemon (exit 6, DAEMON_UNREACHABLE)', {}, () => {
        assert.equal(r.code, 6, `exit ${r.code}, stdout ${JSON.stringify(r.stdout)}, stderr ${JSON.stringify(r.stderr)}`);
        assert.equal(r.json?.error?.code, 'DAEMON_UNREACHABLE');
      });
      pair.proxy.pass();
      await pair.proxy.waitFor(() => pair.proxy.open === 0, 30_000, 'the dead connection to close');
      const carriedAll = pair.proxy.up - up0;
      await sleep(200);
      await startDaemon(pair.a, env);
      await assertNoGhostJob(t, pair);
      const out = await retryAndCheck(pair, volumeBytes, before, carriedAll);
      t.diagnostic(JSON.stringify(out));
    });

    await t.test('the receiving daemon', async (t) => {
      const volumeBytes = addData(pair, 'receiver', [16, 8]);
      const before = storeTotals(pair.b.home).bytes;
      pair.proxy.throttle(10 * MiB);
      const up0 = pair.proxy.up;
      const attempt = pair.ferry(pair.a, ['mirror', 'update', 'vol', '--wait', '--json']);
      await pair.proxy.waitFor(() => pair.proxy.up - up0 > volumeBytes / 2, 60_000, 'half the transfer');
      await killDaemon(pair.b, 'SIGKILL');
      const carried = pair.proxy.up - up0;
      const r = await attempt;
      assert.equal(r.code, 6, `${r.stdout} ${r.stderr}`);
      assert.match(r.json.error.code, /TRANSFER_INTERRUPTED|PEER_UNREACHABLE/);
      pair.proxy.pass();
      await startDaemon(pair.b, env);
      pair.proxy.target = pair.b.port!;
      const out = await retryAndCheck(pair, volumeBytes, before, carried);
      t.diagnostic(JSON.stringify(out));
    });

    await stopDaemon(pair.a);
    await stopDaemon(pair.b);
    await assertVerifies(pair, pair.a);
    await assertVerifies(pair, pair.b);
  } finally {
    await pair.cleanup();
  }
});
