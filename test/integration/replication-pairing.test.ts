// Pairing between real daemons: a site that is not paired is refused
// (PEER_UNTRUSTED) by whichever daemon it connects to, and the source's error
// names its id and the `ferry site add` that fixes it; a peer pinned with the
// wrong id is refused by the client before anything is sent; a site cannot be
// unpaired while mirrors use it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertTreesEqual } from '../helpers.ts';
import { assertRefused, cleanupSites, createSite, type TestSite } from '../harness/index.ts';

const sites: TestSite[] = [];
after(() => cleanupSites(sites));

// 52 characters of the site-id alphabet, the last one carrying no bits: a valid id no site has.
const FAKE_ID = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567ABCDEFGHIJKLMNOPQRSA';

async function volumeWithData(s: TestSite, vol: string): Promise<string> {
  const data = join(s.dir, `data-${vol}`);
  mkdirSync(data);
  writeFileSync(join(data, 'f.txt'), `${s.name}:${vol}\n`);
  s.defineVolume(vol, [data]);
  return data;
}

test('unpaired and wrongly pinned sites are refused; site remove is refused while mirrors use the site', async () => {
  const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((n) => createSite(n)));
  sites.push(a, b, c);
  const [data] = await Promise.all([volumeWithData(a, 'vol'), volumeWithData(c, 'cvol')]);
  await Promise.all([a.start(), b.start(), c.start()]);

  // a pins b, but b has not paired a: b's daemon refuses a, and a's error says how to fix it.
  // Meanwhile, the other way round: c pins a, a has not paired c; a's daemon refuses c.
  const aToB = async () => {
    await a.json(['site', 'add', 'b', b.url!, '--id', b.id]);
    await a.json(['mirror', 'create', 'vol', '--to', 'b']);
    return a.ferry(['mirror', 'initialize', 'vol', '--to', 'b', '--wait', '--json']);
  };
  const cToA = async () => {
    await c.json(['site', 'add', 'a', a.url!, '--id', a.id]);
    await c.json(['mirror', 'create', 'cvol', '--to', 'a']);
    return c.ferry(['mirror', 'initialize', 'cvol', '--to', 'a', '--wait', '--json']);
  };
  const [r1, r2] = await Promise.all([aToB(), cToA()]);
  assertRefused(r1, 4, 'PEER_UNTRUSTED');
  const msg = r1.json.error.message as string;
  assert.ok(msg.includes(a.id), `the error does not name the source's id ${a.id}: ${msg}`);
  assert.match(msg, /ferry site add NAME URL --id/);
  assert.match(msg, /site b does not know/);
  assertRefused(r2, 4, 'PEER_UNTRUSTED', /site a does not know/);
  assert.ok(r2.json.error.message.includes(c.id));
  const [aStatus, bStatus] = await Promise.all([a.status(), b.status()]);
  const m1 = aStatus.volumes[0].mirrors[0];
  assert.equal(m1.state, 'uninitialized');
  assert.equal(m1.lastError.code, 'PEER_UNTRUSTED');
  assert.equal(m1.failures, 1, 'a refusal is counted (issue 16 defect 6: every failure waits a backoff)');
  assert.equal(m1.state, 'uninitialized', 'and it is no transient failure: the mirror does not show disconnected');
  // Nothing was created at either destination for the unpaired source.
  assert.deepEqual(bStatus.volumes, []);
  assert.ok(!existsSync(join(b.home, 'replicas', 'vol')));
  assert.deepEqual(aStatus.volumes.map((v: any) => v.name), ['vol']);
  assert.ok(!existsSync(join(a.home, 'replicas', 'cvol')));

  // Once b pairs a, the same initialize goes through.
  await b.json(['site', 'add', 'a', a.url!, '--id', a.id]);
  await a.json(['mirror', 'initialize', 'vol', '--to', 'b', '--wait']);
  assertTreesEqual((await b.json(['volume', 'show', 'vol'])).members[0].path, data);

  // a pins "c" at c's URL with the wrong id: a's client drops the connection, naming both ids.
  await a.json(['site', 'add', 'c', c.url!, '--id', FAKE_ID]);
  await a.json(['mirror', 'create', 'vol', '--to', 'c']);
  const r3 = await a.ferry(['mirror', 'initialize', 'vol', '--to', 'c', '--wait', '--json']);
  assertRefused(r3, 4, 'PEER_UNTRUSTED', /presented site id/);
  assert.ok(r3.json.error.message.includes(c.id), r3.json.error.message);
  assert.ok(r3.json.error.message.includes(FAKE_ID), r3.json.error.message);
  assert.match(r3.json.error.message, /ferry site remove c/);

  // site remove is refused while a mirror uses the site, and nothing changes.
  assertRefused(await a.ferry(['site', 'remove', 'c', '--json']), 4, 'MIRROR_EXISTS', /mirror/);
  assertRefused(await a.ferry(['site', 'remove', 'b', '--json']), 4, 'MIRROR_EXISTS');
  // Re-pair c properly: remove the mirror, unpair, pair with the right id.
  await a.json(['mirror', 'remove', 'vol', '--to', 'c']);
  await a.json(['site', 'remove', 'c']);
  await a.json(['site', 'add', 'c', c.url!, '--id', c.id]);
  assert.deepEqual((await a.json(['site', 'list'])).peers.map((p: any) => [p.name, p.id]), [['b', b.id], ['c', c.id]]);
  // The mirror to b was not disturbed by any of it.
  const mb = await a.mirror('vol', 'b');
  assert.equal(mb.state, 'idle');
  assert.equal(mb.health, 'up');
});
