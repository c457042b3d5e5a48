// The change journal over a replica (src/site/journal-service.ts replicaTake, receiver.ts): once a
// verification read the replica exactly, the next writes check and verification read only what
// changed; a write into the replica is still caught and kept, whether made while the daemon runs
// or while it is down (the first update after a start walks in full).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertTreesEqual } from '../helpers.ts';
import { assertRefused, cleanupSites, createSite, pairSites, type TestSite } from '../harness/index.ts';

const sites: TestSite[] = [];
after(() => cleanupSites(sites));

/** The `journal` of the destination's replica.apply events that completed, oldest first. */
async function applies(b: TestSite): Promise<Array<{ to: string; journal?: { writesCheck: boolean; verify: boolean } }>> {
  const r = await b.ferry(['events', '--kind', 'replica.apply', '--json']);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l).details as { transition?: string; to: string; journal?: { writesCheck: boolean; verify: boolean } })
    .filter((e) => e.transition === 'inconsistent => consistent');
}

test('replica journal: updates read only what changed, and writes into the replica are caught while up and while down', async () => {
  const [a, b] = await Promise.all([createSite('a'), createSite('b')]);
  sites.push(a, b);
  const data = join(a.dir, 'data');
  for (const d of ['x', 'y', 'z']) mkdirSync(join(data, d), { recursive: true });
  for (let i = 0; i < 10; i++) writeFileSync(join(data, 'x', `f${i}`), `f${i}\n`.repeat(30));
  a.defineVolume('vol', [`data=tree:${data}`]);
  await Promise.all([a.start(), b.start()]);
  await pairSites(a, b);
  await a.json(['mirror', 'create', 'vol', '--to', 'b']);
  await a.json(['mirror', 'initialize', 'vol', '--to', 'b', '--wait']);
  const rData = (await b.json(['volume', 'show', 'vol'])).members[0].path as string;
  assertTreesEqual(rData, data);
  let ev = await applies(b);
  assert.deepEqual(ev.at(-1)?.journal, { writesCheck: false, verify: true }, 'the baseline is verified from the journal (its writes check walked in full)');

  appendFileSync(join(data, 'x', 'f3'), 'more\n');
  writeFileSync(join(data, 'y', 'new'), 'new\n');
  await a.json(['mirror', 'update', 'vol', '--to', 'b', '--wait']);
  assertTreesEqual(rData, data);
  ev = await applies(b);
  assert.deepEqual(ev.at(-1)?.journal, { writesCheck: true, verify: true });

  // A write into the replica while the daemon runs: seen by the journal, kept, the update refused.
  writeFileSync(join(rData, 'z', 'intruder'), 'written at the secondary\n');
  appendFileSync(join(data, 'x', 'f4'), 'more\n');
  const refused = await a.ferry(['mirror', 'update', 'vol', '--to', 'b', '--wait', '--json']);
  assertRefused(refused, 4, 'REPLICA_WRITTEN', /wrote into the replica/);
  assert.match(refused.json.error.details?.writesSnapshot as string, /^replica-writes-/);
  await a.json(['mirror', 'update', 'vol', '--to', 'b', '--wait', '--force']);
  assertTreesEqual(rData, data);

  // A write while the destination is down (kill -9): its journal starts empty, the first writes
  // check after the start walks in full and finds it.
  await b.stop('SIGKILL');
  writeFileSync(join(rData, 'x', 'f5'), 'overwritten while ferry was down\n');
  await b.start({ port: b.port });
  appendFileSync(join(data, 'x', 'f6'), 'more\n');
  const refused2 = await a.ferry(['mirror', 'update', 'vol', '--to', 'b', '--wait', '--json']);
  assert.equal(refused2.code, 4, refused2.stdout + refused2.stderr);
  assertRefused(refused2, 4, 'REPLICA_WRITTEN', /wrote into the replica/);
  await a.json(['mirror', 'update', 'vol', '--to', 'b', '--wait', '--force']);
  assertTreesEqual(rData, data);
  ev = await applies(b);
  assert.deepEqual(ev.at(-1)?.journal, { writesCheck: false, verify: true }, 'after the start: a full writes check, then the journal again');
  appendFileSync(join(data, 'x', 'f7'), 'more\n');
  await a.json(['mirror', 'update', 'vol', '--to', 'b', '--wait']);
  ev = await applies(b);
  assert.deepEqual(ev.at(-1)?.journal, { writesCheck: true, verify: true });
  assertTreesEqual(rData, data);
});
