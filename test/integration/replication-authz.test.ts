// Where a paired peer may write (invariant 6): only into volumes the
// destination holds as that peer's secondary. A volume that is standalone or
// primary at the destination, or the secondary of another peer, is refused
// (NOT_AUTHORIZED, exit 4) and left untouched.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertTreesEqual, describeTree } from '../helpers.ts';
import { assertRefused, cleanupSites, createSite, pairSites, type TestSite } from '../harness/index.ts';

const sites: TestSite[] = [];
after(() => cleanupSites(sites));

async function volumesWithData(s: TestSite, vols: string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const vol of vols) {
    const data = join(s.dir, `data-${vol}`);
    mkdirSync(data);
    writeFileSync(join(data, 'f.txt'), `${s.name}:${vol}\n`);
    s.defineVolume(vol, [data]);
    out[vol] = data;
  }
  return out;
}

test('a peer cannot replicate into a standalone or primary volume, nor into another peer\'s secondary', async () => {
  const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((n) => createSite(n)));
  sites.push(a, b, c);
  const [, bData, cData] = await Promise.all([
    volumesWithData(a, ['v1', 'v2', 'v3']),
    volumesWithData(b, ['local', 'bprim']),
    volumesWithData(c, ['cvol']),
  ]);
  await Promise.all([a.start(), b.start(), c.start()]);
  await Promise.all([pairSites(a, b), pairSites(b, c).then(() => c.json(['mirror', 'create', 'cvol', '--to', 'b:shared']))]);
  const before = { local: describeTree(bData.local), bprim: describeTree(bData.bprim) };

  // c makes "shared" its secondary at b; b makes "bprim" a primary (a mirror of its own to c).
  await Promise.all([
    c.json(['mirror', 'initialize', 'cvol', '--to', 'b', '--wait']),
    b.json(['mirror', 'create', 'bprim', '--to', 'c']),
    a.json(['mirror', 'create', 'v1', '--to', 'b:local']),
    a.json(['mirror', 'create', 'v2', '--to', 'b:bprim']),
    a.json(['mirror', 'create', 'v3', '--to', 'b:shared']),
  ]);
  const bs = await b.status();
  const role = (v: string) => bs.volumes.find((x: any) => x.name === v)?.role;
  assert.deepEqual([role('local'), role('bprim'), role('shared')], ['standalone', 'primary', 'secondary']);

  const [r1, r2, r3] = await Promise.all(['v1', 'v2', 'v3'].map((v) => a.ferry(['mirror', 'initialize', v, '--to', 'b', '--wait', '--json'])));
  assertRefused(r1, 4, 'NOT_AUTHORIZED', /volume local at site b is standalone, not a secondary[\s\S]*`ferry mirror remove v1 --to b`, then `ferry mirror create v1 --to b:NAME`/);
  assertRefused(r2, 4, 'NOT_AUTHORIZED', /volume bprim at site b is primary, not a secondary/);
  assertRefused(r3, 4, 'NOT_AUTHORIZED', /already the secondary of site c [\s\S]*`ferry mirror remove v3 --to b`, then `ferry mirror create v3 --to b:NAME`/);
  assert.ok(r3.json.error.message.includes(c.id), r3.json.error.message);

  // Nothing changed at b: the volumes keep their roles and data; c's replica is still c's.
  const [bs2, as2, shared] = await Promise.all([b.status(), a.status(), b.json(['volume', 'show', 'shared'])]);
  const role2 = (v: string) => bs2.volumes.find((x: any) => x.name === v)?.role;
  assert.deepEqual([role2('local'), role2('bprim'), role2('shared')], ['standalone', 'primary', 'secondary']);
  assert.equal(bs2.volumes.find((x: any) => x.name === 'shared').secondary.source, 'c');
  assert.deepEqual(describeTree(bData.local), before.local);
  assert.deepEqual(describeTree(bData.bprim), before.bprim);
  assertTreesEqual(shared.members[0].path, cData.cvol);
  for (const v of ['v1', 'v2', 'v3']) {
    const m = as2.volumes.find((x: any) => x.name === v).mirrors[0];
    assert.equal(m.state, 'uninitialized', `${v}: ${m.state}`);
    assert.equal(m.lastError.code, 'NOT_AUTHORIZED');
    assert.equal(m.failures, 1, 'a refusal is counted (every failure waits a backoff), and the mirror stays uninitialized, not disconnected');
  }
  // b holds no snapshot any of a's volumes sent.
  const listed = await Promise.all(['local', 'bprim', 'shared'].map((v) => b.json(['snapshot', 'list', v])));
  for (const snaps of listed) assert.ok(snaps.every((s: any) => s.origin !== a.id), JSON.stringify(snaps));
});
