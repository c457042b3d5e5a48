// The memory budget (src/core/memory.ts) and each structure bounded by one
// of its shares: the share itself waits when full and wakes in order; the
// budget's shares fit in it; a delta reference cache, the chunk pool's bytes
// in flight, a worker pool's count of workers and a catalog connection's page
// cache never go past their bound. Each case sets a small budget and puts it
// back after.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { CATALOG_CONNECTIONS, DEFAULT_MEMORY_BUDGET, memory, MemoryBudget, SHARE_NAMES, Share } from '../../../src/core/memory.ts';
import { isFerryError } from '../../../src/core/errors.ts';
import { cachedRefs } from '../../../src/replication/delta.ts';
import { ChunkPool } from '../../../src/snapshot/chunk-pool.ts';
import { WorkerPool } from '../../../src/core/worker-pool.ts';
import { Sqlite } from '../../../src/core/sqlite.ts';
import { hashBytes, type ObjectId } from '../../../src/core/ids.ts';

const MiB = 1024 * 1024;

afterEach(() => memory.configure(DEFAULT_MEMORY_BUDGET, 'default'));

test('a share: acquire waits while it is full and wakes in order; one unit larger than the share runs alone', async () => {
  const s = new Share('t', 10);
  await s.acquire(6);
  const order: string[] = [];
  const a = s.acquire(6).then(() => order.push('a'));
  const b = s.acquire(2).then(() => order.push('b'));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(order, [], 'both wait: the first does not fit, the second queues behind it');
  assert.equal(s.tryHold(5), false);
  s.release(6);
  await Promise.all([a, b]);
  assert.deepEqual(order, ['a', 'b']);
  assert.equal(s.used, 8);
  assert.ok(s.peak <= s.limit, `peak ${s.peak} within the limit ${s.limit}`);
  s.release(8);
  assert.equal(s.tryHold(25), true, 'nothing held: a unit larger than the share still goes, alone');
  assert.equal(s.fits(1), false);
  s.release(25);
});

test('the budget: its shares fit in it at the default and at 96 MiB; below 96 MiB it is refused with a clear error', () => {
  for (const total of [DEFAULT_MEMORY_BUDGET, 96 * MiB]) {
    const b = new MemoryBudget(total);
    const sum = SHARE_NAMES.reduce((n, name) => n + b.share(name).limit, 0);
    assert.ok(sum <= total, `shares ${sum / MiB} MiB within the budget ${total / MiB} MiB`);
    for (const name of SHARE_NAMES) assert.ok(b.share(name).limit > 0, name);
  }
  assert.throws(() => new MemoryBudget(64 * MiB), (e: unknown) => isFerryError(e) && e.code === 'CONFIG_INVALID' && /at least 96 MiB/.test(e.message));
});

test('a delta reference cache keeps at most its bound, counted in the refs share, whatever it is asked for', () => {
  const share = memory.share('refs');
  share.resetPeak();
  const before = share.used;
  const bound = 3 * MiB;
  const get = cachedRefs((id: ObjectId) => Buffer.alloc(MiB, id.length), bound);
  for (let i = 0; i < 20; i++) get(hashBytes(Buffer.from(String(i))));
  assert.ok(share.used - before <= bound, `held ${(share.used - before) / MiB} MiB, bound 3 MiB`);
  assert.ok(share.peak - before <= bound + MiB, 'never more than the bound and the one being added');
});

test('the chunk pool: file bytes in flight stay within the capture share, however many files are handed to it at once', async () => {
  memory.configure(96 * MiB, 'test');
  const dir = mkdtempSync(join(tmpdir(), 'ferry-mem-'));
  const pool = new ChunkPool({ workers: 2, chunker: { min: 2048, avg: 8192, max: 32768 } });
  try {
    const share = memory.share('capture');
    share.resetPeak();
    const files: string[] = [];
    for (let i = 0; i < 24; i++) {
      const f = join(dir, `f${i}`);
      writeFileSync(f, randomBytes(MiB)); // 24 MiB in all, over the 12 MiB share
      files.push(f);
    }
    const results = await Promise.all(files.map((f) => pool.chunkFile(Buffer.from(f), MiB)));
    for (const r of results) assert.equal(r.ok, true);
    assert.ok(share.peak > 0, 'the pool counts what it has in flight');
    assert.ok(share.peak <= share.limit, `peak ${share.peak / MiB} MiB within the share ${share.limit / MiB} MiB`);
    assert.equal(pool.inFlightBytes, 0);
  } finally {
    await pool.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a worker pool starts a second worker only while the workers share has room: the jobs all run on the first', async () => {
  memory.configure(96 * MiB, 'test'); // workers share 43 MiB: one worker of 32 MiB, not two
  const share = memory.share('workers');
  share.resetPeak();
  const pool = new WorkerPool<{ op: 'verify'; items: Array<{ id: string; codec: number; rawLength: number; length: number }>; bytes: ArrayBuffer }, Array<string | null>>({
    url: new URL('../../../src/replication/verify-pool.ts', import.meta.url),
    workerData: { ferryVerifyWorker: true },
    size: 4,
    name: 'test-budget',
    heapMb: () => 32,
  });
  try {
    const jobs = Array.from({ length: 8 }, (_, i) => {
      const raw = Buffer.from(`job ${i}`);
      const bytes = new ArrayBuffer(raw.length);
      new Uint8Array(bytes).set(raw);
      return pool.run({ op: 'verify', items: [{ id: hashBytes(raw), codec: 0, rawLength: raw.length, length: raw.length }], bytes }, [bytes]);
    });
    assert.deepEqual(await Promise.all(jobs), Array.from({ length: 8 }, () => [null]));
    assert.equal(pool.workers, 1, 'one worker: a second would pass the share');
    assert.ok(share.peak <= share.limit, `workers share peak ${share.peak / MiB} MiB within ${share.limit / MiB} MiB`);
  } finally {
    await pool.close();
  }
  memory.configure(DEFAULT_MEMORY_BUDGET, 'test'); // 115 MiB: room for three more
  const wide = new WorkerPool<unknown, unknown>({ url: new URL('../../../src/replication/verify-pool.ts', import.meta.url), workerData: { ferryVerifyWorker: true }, size: 3, name: 'test-wide', heapMb: () => 32 });
  try {
    const raw = Buffer.from('x');
    await Promise.all(Array.from({ length: 6 }, () => {
      const bytes = new ArrayBuffer(1);
      new Uint8Array(bytes).set(raw);
      return wide.run({ op: 'verify', items: [{ id: hashBytes(raw), codec: 0, rawLength: 1, length: 1 }], bytes }, [bytes]);
    }));
    assert.ok(wide.workers > 1, 'with room in the share the pool grows as before');
  } finally {
    await wide.close();
  }
});

test('a catalog connection: its page cache is its part of the catalog share, and counted while it is open', () => {
  memory.configure(96 * MiB, 'test');
  const dir = mkdtempSync(join(tmpdir(), 'ferry-mem-'));
  const share = memory.share('catalog');
  const before = share.used;
  try {
    const db = new Sqlite(join(dir, 'c.db'));
    const kib = -(db.db.prepare('PRAGMA cache_size').get() as { cache_size: number }).cache_size;
    assert.equal(kib, Math.floor(share.limit / CATALOG_CONNECTIONS) >> 10);
    assert.equal(share.used - before, Math.floor(share.limit / CATALOG_CONNECTIONS));
    db.close();
    assert.equal(share.used, before);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
