// The helpers' daemon start (test/integration/daemons.ts), which the soak and every integration test
// use: a start that fails is over only once its process has exited, so the next start (the soak's
// next step) never meets the orphan's site lock or port.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Site } from '../../src/site/site.ts';
import { tempDir } from '../helpers.ts';
import { runningDaemons, startDaemon, stopDaemon } from '../harness/index.ts';

test('a daemon start that gives up (not ready in time) has waited for its process to exit; the next start succeeds', async () => {
  const tmp = tempDir('ferry-start-');
  const home = join(tmp.path, 'home');
  Site.init(home, 'x').close();
  let log = '';
  const o = { name: 'x', onOutput: (t: string) => (log += t), output: () => log };
  try {
    const before = runningDaemons().length;
    await assert.rejects(startDaemon(home, { ...o, timeoutMs: 1 }), /timed out/);
    assert.equal(runningDaemons().length, before, 'the failed start left its process running (or not yet reaped)');
    const d = await startDaemon(home, o);
    await stopDaemon(d.proc);
  } finally {
    tmp.cleanup();
  }
});
