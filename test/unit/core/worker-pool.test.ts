// WorkerPool (src/core/worker-pool.ts): a worker idle for `idleMs` ends, so
// a daemon at rest does not keep every pool's heaps; a job within idleMs
// keeps it; the next job after it ended starts a new one and is answered as
// before. Run with the verification workers' module.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WorkerPool } from '../../../src/core/worker-pool.ts';
import { hashBytes } from '../../../src/core/ids.ts';

type Verify = { op: 'verify'; items: Array<{ id: string; codec: number; rawLength: number; length: number }>; bytes: ArrayBuffer };

function job(text: string): Verify {
  const raw = Buffer.from(text);
  const bytes = new ArrayBuffer(raw.length);
  new Uint8Array(bytes).set(raw);
  return { op: 'verify', items: [{ id: hashBytes(raw), codec: 0, rawLength: raw.length, length: raw.length }], bytes };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('a worker idle for idleMs ends; work within idleMs keeps it; the next job starts another', async () => {
  const pool = new WorkerPool<Verify, Array<string | null>>({ url: new URL('../../../src/replication/verify-pool.ts', import.meta.url), workerData: { ferryVerifyWorker: true }, size: 2, name: 'test-idle', idleMs: 300 });
  try {
    assert.equal(pool.workers, 0, 'workers start on first use');
    assert.deepEqual(await pool.run(job('first')), [null]);
    assert.equal(pool.workers, 1);
    await sleep(100);
    // Work within the idle time keeps the worker.
    assert.deepEqual(await pool.run(job('second')), [null]);
    await sleep(200);
    assert.equal(pool.workers, 1, 'idle for less than idleMs since its last job: still there');
    await sleep(400);
    assert.equal(pool.workers, 0, 'idle for longer than idleMs: ended');
    assert.deepEqual(await pool.run(job('after')), [null], 'a new worker answers');
    assert.equal(pool.workers, 1);
    // A wrong object is still refused by the new worker (it really ran the check).
    const bad = job('bad');
    bad.items[0].id = hashBytes(Buffer.from('other'));
    assert.match((await pool.run(bad))[0]!, /do not match/);
  } finally {
    await pool.close();
  }
});
