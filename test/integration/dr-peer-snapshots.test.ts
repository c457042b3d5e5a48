// Seed procedure 3, IBM Spectrum Scale AFM peer snapshots (mmpsnap), end to
// end on two real daemons: a peer snapshot taken while the secondary is
// down stays pending at the primary; once the secondary is back, the
// primary's scheduler delivers it (after its backoff) and it exists there
// under the same id and name, with the same content. It is held on both
// sides: a plain delete is refused at either, a peer delete at the
// secondary is refused (it belongs to the primary), and `snapshot delete
// --peer` at the primary removes it everywhere once it is no longer a base.
// A deletion while a secondary that holds it is down (its delivery's answer
// was lost: the primary shows it pending) waits for that secondary, keeping
// the snapshot here so the next update starts from it (no full sync); and
// after a migrate, or a failover and failback, the current primary deletes a
// peer snapshot at the old primary too.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertTreesEqual } from '../helpers.ts';
import { cleanupSites, copyTree, KiB, MiB, mirroredPair, mirrorWithBase, createSite, suggestedCommand, pairSites, transfersSince, waitFor, writeChange, writeVolumeData, type TestSite } from '../harness/index.ts';
import { TcpProxy } from '../harness/tcp-proxy.ts';

const sites: TestSite[] = [];
const proxies: TcpProxy[] = [];
after(async () => {
  await cleanupSites(sites);
  await Promise.all(proxies.map((p) => p.close().catch(() => {})));
});

const peerState = (site: TestSite, snapshot: string): string | undefined =>
  site.catalog((db) => (db.prepare('SELECT state FROM peer_snapshots WHERE snapshot = ?').get(snapshot) as { state: string } | undefined)?.state);

test('AFM peer snapshots: pending while the secondary is down, delivered on its return with the same id and name, deleted everywhere only with --peer', async () => {
  const [a, b] = await Promise.all([createSite('primary'), createSite('secondary')]);
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
  await b.refused(['snapshot', 'delete', 'vol', 'p1', '--peer'], 4, 'MIRROR_STATE', /primary[\s\S]*`ferry snapshot delete vol p1 --peer`/);
  // While it is the mirror's base it cannot go anywhere: refused before anything is removed, naming
  // the update that moves the base (with --to: the mirror whose base it is).
  const held = await a.refused(['snapshot', 'delete', 'vol', 'p1', '--peer'], 4, 'SNAPSHOT_HELD', /base/);
  const advice = suggestedCommand(held);
  assert.deepEqual(advice, ['mirror', 'update', 'vol', '--to', 'secondary']);
  const holds = (site: TestSite) => site.catalog((db) => db.prepare('SELECT holder FROM holds WHERE snapshot = ?').all(p1.id) as Array<{ holder: string }>).map((h) => h.holder);
  assert.ok(holds(a).includes('peer') && holds(b).includes('peer'), 'nothing was removed: still a held peer snapshot on both sides');

  // ---- the next update moves the base; then --peer at the primary deletes it on both sides
  const upd = await a.json([...advice, '--wait']);
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

test('AFM peer snapshots: deleted with --peer while a secondary that holds it unseen (its delivery answer was lost) is down: the deletion waits for it, the base survives, no full sync', async () => {
  const [a, b] = await Promise.all([createSite('lost-a'), createSite('lost-b')]);
  sites.push(a, b);
  const data = join(a.dir, 'data');
  writeVolumeData(data, 2, 256 * KiB);
  a.defineVolume('vol', [data]);
  await Promise.all([a.start({ tick: 200 }), b.start({ tick: 200 })]);
  const toB = await TcpProxy.start(b.port!);
  proxies.push(toB);
  await Promise.all([a.json(['site', 'add', b.name, toB.url, '--id', b.id]), b.json(['site', 'add', a.name, a.url!, '--id', a.id])]);
  await a.json(['mirror', 'create', 'vol', '--to', b.name]);
  await a.json(['mirror', 'initialize', 'vol', '--to', b.name, '--wait']);
  const base0 = mirrorWithBase(a, 'vol', b.name)!.base!;

  // ---- p1 is committed at b, but the answer never reaches a (the link resets while b applies it)
  const release = join(b.dir, 'release-apply');
  await b.stop();
  await b.start({ tick: 200, env: { FERRY_TEST_PAUSE_AT: 'apply:after-write', FERRY_TEST_PAUSE_FILE: release } });
  writeChange(data, 'p1.bin', 64 * KiB);
  const created = await a.json(['snapshot', 'create', 'vol', '--peer', '--name', 'p1']);
  const p1 = created.snapshot.id;
  const secB = () => b.catalog((db) => db.prepare("SELECT applied, applying FROM secondaries WHERE volume = 'vol'").get()) as { applied: string; applying: string | null };
  await waitFor('b to apply p1', () => secB().applying === p1);
  toB.resetAfter(0);
  toB.resetAll();
  await waitFor('a to give up on p1\'s delivery', () => peerState(a, p1) === 'pending' && mirrorWithBase(a, 'vol', b.name)!.state !== 'updating');
  writeFileSync(release, '');
  await waitFor('b to finish applying p1', () => secB().applied === p1 && secB().applying === null);
  assert.equal(mirrorWithBase(a, 'vol', b.name)!.base, base0, 'a never learned that b committed p1');
  assert.ok(!b.snapshotRows('vol').some((s) => s.id === base0), 'b released the old base: p1 is all it has');

  // ---- b goes down; a deletes p1 everywhere: b may hold it, so the deletion waits for b, and p1 stays here meanwhile
  await b.stop();
  toB.pass();
  const del = await a.ferry(['snapshot', 'delete', 'vol', 'p1', '--peer', '--json']);
  assert.equal(del.code, 8, `pending at an unreachable secondary: completed with warnings\n${del.stdout}\n${del.stderr}`);
  assert.deepEqual(del.json.removedAt, []);
  assert.deepEqual(del.json.pendingAt.map((x: any) => x.peer), [b.name]);
  assert.ok(a.snapshotRows('vol').some((s) => s.id === p1), 'p1 stays here until b confirms: it may be the only base both sides share');
  const peers = await a.json(['snapshot', 'peers', 'vol']);
  assert.deepEqual(peers.map((p: any) => [p.id, p.secondaries.map((s: any) => s.state)]), [[p1, ['deleting']]]);
  await a.refused(['snapshot', 'delete', 'vol', 'p1'], 4, 'SNAPSHOT_HELD');

  // ---- b is back: the next update starts from p1 (no full sync), then the deletion reaches b
  await b.start({ tick: 200 });
  writeChange(data, 'after.bin', 32 * KiB);
  const upd = await a.json(['mirror', 'update', 'vol', '--to', b.name, '--wait']);
  assert.equal(upd.base, p1, 'the update started from p1, the snapshot both sides hold');
  assert.ok(upd.transfer.bytes < 32 * KiB + 24 * KiB, `update sent ${upd.transfer.bytes} bytes for ~32 KiB of changes`);
  await waitFor('p1 to be deleted at b, then here', () => !b.snapshotRows('vol').some((s) => s.id === p1) && !a.snapshotRows('vol').some((s) => s.id === p1));
  assert.deepEqual(await a.json(['snapshot', 'peers', 'vol']), []);
  assert.equal(mirrorWithBase(a, 'vol', b.name)!.state, 'idle');
  assertTreesEqual(await b.memberPath('vol'), data);
});

test('AFM peer snapshots: after a migrate, and after a failover and failback, the current primary deletes a peer snapshot at the old primary too', async () => {
  const { a, b } = await mirroredPair(sites, ['line-a', 'line-b']);
  const p1 = (await a.json(['snapshot', 'create', 'vol', '--peer', '--name', 'p1', '--wait'])).snapshot.id;
  const has = (s: TestSite, id: string) => s.snapshotRows('vol').some((x) => x.id === id);
  assert.ok(has(b, p1));

  // ---- a migrates to b: b is the primary of p1's lineage now
  await a.json(['migrate', 'vol', '--to', b.name]);
  await a.refused(['snapshot', 'delete', 'vol', 'p1', '--peer'], 4, 'MIRROR_STATE', new RegExp(b.name));
  const d1 = await b.json(['snapshot', 'delete', 'vol', 'p1', '--peer']);
  assert.deepEqual(d1.removedAt, [a.name]);
  assert.ok(!has(a, p1) && !has(b, p1), 'p1 is gone at both sites');

  // ---- b takes p2; a fails over, b fails back: a is the primary again, through a mirror failback created
  const p2 = (await b.json(['snapshot', 'create', 'vol', '--peer', '--name', 'p2', '--wait'])).snapshot.id;
  assert.ok(has(a, p2));
  await a.json(['failover', 'vol']);
  await b.json(['failback', 'vol']);
  const d2 = await a.json(['snapshot', 'delete', 'vol', 'p2', '--peer']);
  assert.deepEqual(d2.removedAt, [b.name]);
  assert.ok(!has(a, p2) && !has(b, p2), 'p2 is gone at both sites');
});
