// Seed procedure 3, IBM Spectrum Scale AFM peer snapshots (mmpsnap), end to
// end on two real daemons: a peer snapshot taken while the secondary is
// down stays pending at the primary; once the secondary is back, the
// primary's scheduler delivers it (after its backoff) and it exists there
// under the same id and name, with the same content. It is held on both
// sides: a plain delete is refused at either, a peer delete at the
// secondary is refused (it belongs to the primary), and `snapshot delete
// --peer` at the primary removes it everywhere once it is no longer a base.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertTreesEqual } from '../helpers.ts';
import { cleanupSites, copyTree, KiB, MiB, mirrorWithBase, newSite, pairSites, transfersSince, waitFor, writeChange, writeVolumeData, type DrSite } from './dr-util.ts';

const sites: DrSite[] = [];
after(() => cleanupSites(sites));

const peerState = (site: DrSite, snapshot: string): string | undefined =>
  site.catalog((db) => (db.prepare('SELECT state FROM peer_snapshots WHERE snapshot = ?').get(snapshot) as { state: string } | undefined)?.state);

test('AFM peer snapshots: pending while the secondary is down, delivered on its return with the same id and name, deleted everywhere only with --peer', async () => {
  const [a, b] = await Promise.all([newSite('primary'), newSite('secondary')]);
  sites.push(a, b);
  const data = join(a.dir, 'data');
  const volBytes = writeVolumeData(data, 4, 1 * MiB);
  a.defineVolume('vol', [data]);
  await Promise.all([a.start({ tick: 200 }), b.start({ tick: 200 })]);
  await pairSites(a, b);
  await a.json(['mirror', 'create', 'vol', '--to', 'secondary']);
  const init = await a.json(['mirror', 'initialize', 'vol', '--to', 'secondary', '--wait']);
  assert.ok(init.transfer.bytes >= volBytes * 0.99 && init.transfer.bytes < volBytes * 1.05);
  const replica = await b.memberPath('vol');
  assertTreesEqual(replica, data);

  // ---- the secondary goes down; a peer snapshot is taken at the primary
  await b.stop();
  writeChange(data, 'p1/new.bin', 128 * KiB);
  writeFileSync(join(data, 'etc', 'app-0.conf'), 'at p1\n');
  const t0 = Date.now();
  const created = await a.json(['snapshot', 'create', 'vol', '--peer', '--name', 'p1', '--wait']);
  const p1 = created.snapshot;
  const expP1 = copyTree(data, join(a.dir, 'p1-content'));
  assert.equal(created.peer.deliveries.length, 1);
  assert.equal(created.peer.deliveries[0].ok, false, 'the secondary is down: not delivered');
  const peers1 = await a.json(['snapshot', 'peers', 'vol']);
  assert.deepEqual(peers1.map((p: any) => [p.id, p.name, p.secondaries.map((s: any) => `${s.mirror}=${s.state}`)]), [[p1.id, 'p1', ['vol@secondary=pending']]]);
  const down = await a.mirror('vol', 'secondary');
  assert.equal(down.health, 'warn', `health while the secondary is down: ${JSON.stringify(down.healthReasons)}`);
  // The primary moves on after the peer snapshot; the replica still shows the baseline.
  writeChange(data, 'after-p1.bin', 64 * KiB);
  assertTreesEqual(await a.restore('vol', 'p1', 'p1'), expP1);

  // ---- the secondary comes back (same address): the scheduler retries after its backoff
  await b.start({ tick: 200, port: b.port });
  await waitFor('the peer snapshot to be present at the secondary', () => peerState(a, p1.id) === 'present', 60_000, 250);
  const atB = (await b.snapshots('vol')).find((s: any) => s.id === p1.id);
  assert.ok(atB, 'p1 exists at the secondary under the same id');
  assert.equal(atB.name, 'p1');
  assert.ok(atB.holds.includes('peer'), `holds at the secondary: ${atB.holds}`);
  assertTreesEqual(replica, expP1, {}); // the retry delivered p1 itself, not a newer snapshot
  assertTreesEqual(await b.restore('vol', 'p1', 'p1-at-secondary'), expP1);
  const sent = transfersSince(a, 'vol', t0);
  assert.deepEqual(sent.map((t) => t.snapshot), [p1.id]);
  assert.ok(sent[0].bytes >= 128 * KiB && sent[0].bytes < 128 * KiB + 32 * KiB, `delivering p1 sent ${sent[0].bytes} bytes for ~128 KiB of changes`);
  const peers2 = await a.json(['snapshot', 'peers', 'vol']);
  assert.deepEqual(peers2[0].secondaries.map((s: any) => s.state), ['present']);
  assert.equal(mirrorWithBase(a, 'vol', 'secondary')!.base, p1.id);

  // ---- held on both sides
  await b.refused(['snapshot', 'delete', 'vol', 'p1'], 4, 'SNAPSHOT_HELD', /peer snapshot/);
  await a.refused(['snapshot', 'delete', 'vol', 'p1'], 4, 'SNAPSHOT_HELD', /peer snapshot/);
  // A peer snapshot is the primary's to delete, not a secondary's.
  await b.refused(['snapshot', 'delete', 'vol', 'p1', '--peer'], 4, 'MIRROR_STATE', /primary/);
  // While it is the mirror's base it cannot go anywhere: refused before anything is removed.
  await a.refused(['snapshot', 'delete', 'vol', 'p1', '--peer'], 4, 'SNAPSHOT_HELD', /base/);
  const holds = (site: DrSite) => site.catalog((db) => db.prepare('SELECT holder FROM holds WHERE snapshot = ?').all(p1.id) as Array<{ holder: string }>).map((h) => h.holder);
  assert.ok(holds(a).includes('peer') && holds(b).includes('peer'), 'nothing was removed: still a held peer snapshot on both sides');

  // ---- the next update moves the base; then --peer at the primary deletes it on both sides
  const upd = await a.json(['mirror', 'update', 'vol', '--wait']);
  assertTreesEqual(replica, data);
  assert.ok(upd.transfer.bytes >= 64 * KiB && upd.transfer.bytes < 64 * KiB + 32 * KiB, `update sent ${upd.transfer.bytes} bytes`);
  assert.ok(b.snapshotRows('vol').some((s) => s.id === p1.id), 'a peer snapshot outlives newer updates at the secondary');
  // --dry-run plans only: it names where the snapshot would go, and nothing is removed anywhere.
  const plan = await a.json(['snapshot', 'delete', 'vol', 'p1', '--peer', '--dry-run']);
  assert.deepEqual(plan.wouldRemoveAt, ['secondary']);
  assert.ok(holds(a).includes('peer') && holds(b).includes('peer'), 'a dry run removed nothing');
  const del = await a.json(['snapshot', 'delete', 'vol', 'p1', '--peer']);
  assert.equal(del.snapshot, p1.id);
  assert.deepEqual(del.removedAt, ['secondary']);
  assert.ok(!(await a.snapshots('vol')).some((s: any) => s.id === p1.id), 'gone at the primary');
  assert.ok(!(await b.snapshots('vol')).some((s: any) => s.id === p1.id), 'gone at the secondary');
  assert.deepEqual(await a.json(['snapshot', 'peers', 'vol']), []);
  assertTreesEqual(replica, data);
  console.log(`# bytes: volume ${volBytes}, baseline ${init.transfer.bytes}, p1 delivered late ${sent[0].bytes} (128 KiB changed), update ${upd.transfer.bytes} (64 KiB changed)`);
});
