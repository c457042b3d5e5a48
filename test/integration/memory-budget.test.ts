// The memory budget on real daemons (core/memory.ts, docs/memory.md): both
// run with `serve --memory-budget 96MiB`, the smallest allowed; a tree of a
// few thousand files is baselined, then an update larger than every share
// (files of several MiB, rewritten and added) goes through. The work must
// complete, the replica equal the source, and each share's peak as the
// daemon reports it (status --json, daemon.memory; the same figures as
// /metrics) stay within its limit: the buffers wait for room, they do not
// grow past it. A budget below the least is refused at start with a clear
// error. Figures only, no timing.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdirSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { assertTreesEqual, runFerry } from '../helpers.ts';
import { cleanupSites, createSite, pairSites, type TestSite } from '../harness/index.ts';
import { MIN_WORKER_HEAP_MB } from '../../src/core/memory.ts';

const sites: TestSite[] = [];
after(() => cleanupSites(sites));

const MiB = 1024 * 1024;
const BUDGET = ['--memory-budget', '96MiB'];

/** Every share within its limit, as the daemon reports it; the workers share may pass it by no more than one worker per pool (each pool keeps one). */
function assertWithinShares(s: TestSite, memory: any, what: string): void {
  assert.equal(memory.budget, 96 * MiB, `[${s.name}] the budget given`);
  assert.equal(memory.source, '--memory-budget');
  for (const [name, r] of Object.entries<any>(memory.shares)) {
    assert.ok(r.limit > 0, `[${s.name}] share ${name} has a limit`);
    if (name === 'workers') {
      const pools = new Set((memory.workers as Array<{ pool: string }>).map((w) => w.pool)).size;
      assert.ok(r.peak <= Math.max(r.limit, Math.max(pools, 3) * MIN_WORKER_HEAP_MB * MiB), `[${s.name}] ${what}: workers share peak ${r.peak / MiB} MiB over its limit ${r.limit / MiB} MiB by more than one worker per pool`);
    } else {
      assert.ok(r.peak <= r.limit, `[${s.name}] ${what}: share ${name} peaked at ${(r.peak / MiB).toFixed(1)} MiB, over its limit ${(r.limit / MiB).toFixed(1)} MiB`);
    }
  }
}

function scrape(s: TestSite): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get({ socketPath: join(s.home, 'ferry.sock'), path: '/metrics' }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

test('a 96 MiB budget: a few thousand files and a larger update go through, each share within its limit; below the least it is refused', async () => {
  const [a, b] = await Promise.all([createSite('a'), createSite('b')]);
  sites.push(a, b);
  const data = join(a.dir, 'data');
  for (let d = 0; d < 40; d++) {
    mkdirSync(join(data, `d${d}`), { recursive: true });
    for (let f = 0; f < 60; f++) writeFileSync(join(data, `d${d}`, `f${f}.txt`), `file ${d}/${f}\n`.repeat(1 + ((d * 60 + f) % 50)));
  }
  a.defineVolume('vol', [data]);

  // Too small a budget: refused at start, saying what to give.
  const refused = await runFerry(['serve', '--listen', '127.0.0.1:0', '--memory-budget', '32MiB'], { home: b.home, timeoutMs: 30_000 });
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr + refused.stdout, /--memory-budget/);

  await Promise.all([a.start({ args: BUDGET }), b.start({ args: BUDGET })]);
  await pairSites(a, b);
  await a.json(['mirror', 'create', 'vol', '--to', 'b']);
  await a.json(['mirror', 'initialize', 'vol', '--to', 'b', '--wait']);
  const replica = (await b.json(['volume', 'show', 'vol'])).members[0].path as string;
  assertTreesEqual(replica, data);

  // An update larger than any share: 48 MiB of new random files (not compressible), more than the
  // capture, send, receive and stream shares together, and a few hundred small files rewritten.
  for (let i = 0; i < 6; i++) writeFileSync(join(data, `big${i}.bin`), randomBytes(8 * MiB));
  for (let d = 0; d < 40; d += 4) for (let f = 0; f < 60; f += 3) writeFileSync(join(data, `d${d}`, `f${f}.txt`), `changed ${d}/${f}\n`);
  await a.json(['mirror', 'update', 'vol', '--to', 'b', '--wait']);
  assertTreesEqual(replica, data);

  for (const s of [a, b]) {
    const st = await s.json(['status']);
    const mem = st.daemon?.memory;
    assert.ok(mem, `[${s.name}] status --json has daemon.memory`);
    assertWithinShares(s, mem, 'after the update');
    assert.ok(mem.process.rss > 0 && mem.process.heapUsed > 0);
    // the same figures in /metrics
    const text = await scrape(s);
    assert.match(text, /^ferry_memory_budget_bytes 100663296$/m);
    for (const name of Object.keys(mem.shares)) assert.match(text, new RegExp(`^ferry_memory_share_limit_bytes\\{share="${name}"\\} ${mem.shares[name].limit}$`, 'm'));
  }
  // The shares that carry the transfer were used (the figures are real, not zeros).
  const src = (await a.json(['status'])).daemon.memory.shares;
  const dst = (await b.json(['status'])).daemon.memory.shares;
  assert.ok(src.capture.peak > 0 && src.send.peak > 0, 'the source counted its capture and its read-ahead');
  assert.ok(dst.receive.peak > 0 && dst.stream.peak > 0, 'the destination counted what it received');
});

test('site.memoryBudget from the site file is the budget of the next daemon; --memory-budget wins over it', async () => {
  const c = await createSite('c');
  sites.push(c);
  const file = join(c.dir, 'site.yaml');
  writeFileSync(file, 'version: 1\nsite:\n  memoryBudget: 128MiB\n');
  await c.json(['config', 'apply', file]);
  await c.start();
  let mem = (await c.json(['status'])).daemon.memory;
  assert.equal(mem.budget, 128 * MiB);
  assert.equal(mem.source, 'memory_budget');
  await c.stop();
  await c.start({ args: ['--memory-budget', '160MiB'] });
  mem = (await c.json(['status'])).daemon.memory;
  assert.equal(mem.budget, 160 * MiB);
  assert.equal(mem.source, '--memory-budget');
});
