// Seed procedure 4, Veritas Volume Replicator with several secondaries (VVR
// Example 4), end to end on three real daemons: seattle is the primary of a
// volume replicated to london and tokyo. seattle dies (SIGKILL); london takes
// over (`failover --force`) and re-points tokyo to itself from the newest
// snapshot both hold, so only the difference crosses the wire; writes at
// london replicate to tokyo; seattle comes back and fails back (its own
// divergent writes kept in a snapshot), difference-based; `migrate --to
// seattle` at london returns the roles, and the data is equal everywhere,
// byte for byte. Two more cases: tokyo one update behind london at the
// failover (the common base is older; still incremental), and tokyo one
// update ahead (its newer snapshot is rolled back by the difference-based
// apply; its own local writes are kept in a snapshot). Paired sites that
// are not the primary's named secondaries, or a live primary that never
// announced a failover, cannot take a secondary away.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertTreesEqual } from '../helpers.ts';
import { PeerClient } from '../../src/transport/client.ts';
import { ROUTES } from '../../src/transport/http.ts';
import { loadIdentity } from '../../src/transport/identity.ts';
import { isFerryError } from '../../src/core/errors.ts';
import { cleanupSites, copyTree, KiB, createSite, pairSites, writeChange, writeVolumeData, type TestSite } from '../harness/index.ts';

const sites: TestSite[] = [];
after(() => cleanupSites(sites));

interface Trio {
  seattle: TestSite;
  london: TestSite;
  tokyo: TestSite;
  data: string;
  volBytes: number;
}

/** seattle primary of `vol`, mirrored to london and tokyo, both initialized. */
async function trio(tag: string, mirrorArgs: string[] = []): Promise<Trio> {
  const [seattle, london, tokyo] = await Promise.all([createSite(`seattle${tag}`), createSite(`london${tag}`), createSite(`tokyo${tag}`)]);
  sites.push(seattle, london, tokyo);
  // Names without the tag, as an operator would have them.
  const data = join(seattle.dir, 'data');
  const volBytes = writeVolumeData(data, 8, 256 * KiB);
  seattle.defineVolume('vol', [data]);
  await Promise.all([seattle.start(), london.start(), tokyo.start()]);
  await Promise.all([pairNamed(seattle, london), pairNamed(seattle, tokyo), pairNamed(london, tokyo)]);
  await seattle.json(['mirror', 'create', 'vol', '--to', 'london', ...mirrorArgs]);
  await seattle.json(['mirror', 'create', 'vol', '--to', 'tokyo', ...mirrorArgs]);
  await seattle.json(['mirror', 'initialize', 'vol', '--to', 'london', '--wait']);
  await seattle.json(['mirror', 'initialize', 'vol', '--to', 'tokyo', '--wait']);
  return { seattle, london, tokyo, data, volBytes };
}

/** Pair two sites under their plain names (seattle, london, tokyo). */
async function pairNamed(a: TestSite, b: TestSite): Promise<void> {
  const plain = (s: TestSite) => s.name.replace(/-.*$/, '');
  await Promise.all([a.json(['site', 'add', plain(b), b.url!, '--id', b.id]), b.json(['site', 'add', plain(a), a.url!, '--id', a.id])]);
}

async function update(src: TestSite, to: string): Promise<any> {
  return src.json(['mirror', 'update', 'vol', '--to', to, '--wait']);
}

function appliedAt(site: TestSite): string {
  return site.catalog((db) => (db.prepare("SELECT applied FROM secondaries WHERE volume = 'vol'").get() as any).applied);
}

function snapshotIds(site: TestSite): string[] {
  return site.snapshotRows('vol').map((s) => s.id);
}

test('VVR: seattle/london/tokyo, london takes over and re-points tokyo by differences, seattle fails back, migrate returns the roles', async () => {
  const { seattle, london, tokyo, data, volBytes } = await trio('');
  const lRep = await london.memberPath('vol');
  const tRep = await tokyo.memberPath('vol');

  // ---- several updates; each secondary learns its sibling from the primary's hellos
  for (let i = 1; i <= 3; i++) {
    writeChange(data, `cycle/u${i}.bin`, 64 * KiB);
    writeFileSync(join(data, 'etc', `app-${i}.conf`), `cycle ${i}\n`);
    await update(seattle, 'london');
    await update(seattle, 'tokyo');
  }
  assertTreesEqual(lRep, data);
  assertTreesEqual(tRep, data);
  const siblingsAtLondon = JSON.parse(london.catalog((db) => (db.prepare("SELECT siblings FROM secondaries WHERE volume = 'vol'").get() as any).siblings));
  assert.deepEqual(siblingsAtLondon.map((s: any) => [s.site, s.volume]), [[tokyo.id, 'vol']]);
  // With several secondaries each keeps a few replication snapshots (3), never an unbounded history,
  // and tokyo (updated last) also holds london's base: their common base.
  const lSnaps = snapshotIds(london);
  const tSnaps = snapshotIds(tokyo);
  assert.ok(lSnaps.length <= 3 && tSnaps.length <= 3, `london keeps ${lSnaps.length}, tokyo ${tSnaps.length} snapshots`);
  const londonBase = appliedAt(london);
  assert.ok(tSnaps.includes(londonBase), 'tokyo holds the snapshot london shows');

  // ---- seattle dies; london takes over and re-points tokyo
  const seattleAtDeath = copyTree(data, join(seattle.dir, 'at-death'));
  await seattle.stop('SIGKILL');
  const dry = await london.json(['failover', 'vol', '--force', '--dry-run']);
  assert.ok(dry.plan.steps.some((s: string) => /re-point tokyo:vol/.test(s)), `the plan names the re-point: ${dry.plan.steps.join('; ')}`);
  const fo = await london.json(['failover', 'vol', '--force']);
  assert.equal(fo.notified, false);
  assert.equal(fo.repointed.length, 1);
  const rp = fo.repointed[0];
  assert.equal(rp.peer, 'tokyo');
  assert.equal(rp.outcome, 'repointed', JSON.stringify(rp));
  assert.equal(rp.oldPrimary, 'unreachable');
  assert.equal(rp.base, londonBase, 'the common base is the newest snapshot both hold');
  // Nothing changed between the two: the re-point moves trees and a manifest, not the volume.
  assert.ok(rp.update.transfer.bytes < 32 * KiB, `re-point sent ${rp.update.transfer.bytes} bytes (volume ${volBytes})`);
  assertTreesEqual(tRep, lRep);
  assertTreesEqual(tRep, seattleAtDeath);
  const tVol = await tokyo.volumeStatus('vol');
  assert.equal(tVol.role, 'secondary');
  assert.equal(tVol.secondary.source, 'london');
  const lVol = await london.volumeStatus('vol');
  assert.equal(lVol.role, 'primary');
  const toTokyo = lVol.mirrors.find((m: any) => m.peer === 'tokyo');
  assert.equal(toTokyo.state, 'idle');

  // ---- production at london replicates to tokyo, by differences
  writeChange(lRep, 'london/prod-1.bin', 300 * KiB);
  writeFileSync(join(lRep, 'etc', 'app-0.conf'), 'written at london\n');
  const u = await update(london, 'tokyo');
  assert.ok(u.transfer.bytes >= 300 * KiB && u.transfer.bytes < 300 * KiB + 64 * KiB, `update london -> tokyo sent ${u.transfer.bytes} bytes for ~300 KiB`);
  assertTreesEqual(tRep, lRep);

  // ---- seattle comes back; it took divergent writes before it died (never replicated)
  writeChange(data, 'seattle/divergent.bin', 100 * KiB);
  rmSync(join(data, 'big-1.bin'));
  const seattleBefore = copyTree(data, join(seattle.dir, 'before-failback'));
  await seattle.start();
  // tokyo refuses its old primary now.
  const stale = await seattle.ferry(['mirror', 'update', 'vol', '--to', 'tokyo', '--wait', '--json']);
  assert.notEqual(stale.code, 0, 'tokyo no longer accepts updates from seattle');
  const londonLive = copyTree(lRep, join(london.dir, 'live-before-failback'));
  const fb = await seattle.json(['failback', 'vol', '--to', 'london']);
  assert.match(fb.kept, /^failback-kept-/);
  assert.equal(fb.keptDiffers, true);
  assert.deepEqual(fb.droppedMirrors, ['tokyo'], 'seattle drops its stale mirror to tokyo (tokyo follows london)');
  const fbBytes = fb.update.transfer.bytes;
  // london changed ~300 KiB since the base; seattle's own divergent file is not resent to it.
  assert.ok(fbBytes >= 300 * KiB && fbBytes < 300 * KiB + 96 * KiB, `failback sent ${fbBytes} bytes (volume ${volBytes})`);
  assertTreesEqual(data, londonLive);
  assertTreesEqual(await seattle.restore('vol', fb.kept, 'kept'), seattleBefore);

  // ---- status at each site
  const sVol = await seattle.volumeStatus('vol');
  assert.equal(sVol.role, 'secondary');
  assert.equal(sVol.secondary.source, 'london');
  assert.deepEqual(sVol.mirrors, []);
  const lVol2 = await london.volumeStatus('vol');
  assert.equal(lVol2.role, 'primary');
  assert.deepEqual(lVol2.mirrors.map((m: any) => [m.peer, m.state]).sort(), [['seattle', 'idle'], ['tokyo', 'idle']]);
  assert.equal((await tokyo.volumeStatus('vol')).secondary.source, 'london');

  // ---- migrate back to seattle: roles return, difference-based
  writeChange(lRep, 'london/prod-2.bin', 80 * KiB);
  await update(london, 'tokyo'); // migrate needs every secondary current
  // --dry-run: the plan names each secondary's base and what the final update moves at least
  // (seattle has not seen prod-2 yet, tokyo has), and changes nothing.
  const dryMigrate = await london.json(['migrate', 'vol', '--to', 'seattle', '--dry-run']);
  const expect = Object.fromEntries(dryMigrate.plan.secondaries.map((x: any) => [x.peer, x.expectedBytes]));
  assert.ok(expect.seattle >= 80 * KiB && expect.seattle < 200 * KiB, JSON.stringify(dryMigrate.plan.secondaries));
  assert.equal(expect.tokyo, 0, JSON.stringify(dryMigrate.plan.secondaries));
  assert.equal((await london.volumeStatus('vol')).role, 'primary');
  const mg = await london.json(['migrate', 'vol', '--to', 'seattle']);
  assert.equal(mg.plan.to, 'seattle');
  const sVol3 = await seattle.volumeStatus('vol');
  assert.equal(sVol3.role, 'primary');
  assert.deepEqual(sVol3.mirrors.map((m: any) => [m.peer, m.state, m.base]).sort(), [['london', 'idle', mg.final], ['tokyo', 'idle', mg.final]]);
  // seattle's mirrors were rows from before (it was primary once): their old holds went with them.
  const mirrorHolds = seattle.catalog((db) => db.prepare("SELECT holder, snapshot FROM holds WHERE holder LIKE 'mirror:%'").all() as Array<{ holder: string; snapshot: string }>);
  assert.deepEqual(mirrorHolds.filter((h) => h.snapshot !== mg.final), [], 'a stale mirror hold keeps an old snapshot');
  const lVol3 = await london.volumeStatus('vol');
  assert.equal(lVol3.role, 'secondary');
  assert.equal(lVol3.secondary.source, 'seattle');
  assert.deepEqual(lVol3.mirrors, []);
  const tVol3 = await tokyo.volumeStatus('vol');
  assert.equal(tVol3.role, 'secondary');
  assert.equal(tVol3.secondary.source, 'seattle');
  assertTreesEqual(data, lRep);
  assertTreesEqual(tRep, lRep);

  // ---- seattle is primary again: its writes reach both, by differences
  writeChange(data, 'seattle/back-home.bin', 120 * KiB);
  const b1 = await update(seattle, 'london');
  const b2 = await update(seattle, 'tokyo');
  for (const b of [b1, b2]) assert.ok(b.transfer.bytes >= 120 * KiB && b.transfer.bytes < 120 * KiB + 64 * KiB, `update from seattle sent ${b.transfer.bytes} bytes for ~120 KiB`);
  assertTreesEqual(lRep, data);
  assertTreesEqual(tRep, data);
  console.log(`# bytes: volume ${volBytes}, re-point ${rp.update.transfer.bytes}, london->tokyo ${u.transfer.bytes} (300 KiB changed), failback ${fbBytes}, back home ${b1.transfer.bytes}/${b2.transfer.bytes} (120 KiB changed)`);
});

test('VVR: tokyo one update behind london at the failover, and paired sites that may not take tokyo away', async () => {
  const { seattle, london, tokyo, data, volBytes } = await trio('-lag');
  const lRep = await london.memberPath('vol');
  const tRep = await tokyo.memberPath('vol');
  writeChange(data, 'a.bin', 32 * KiB);
  await update(seattle, 'london');
  await update(seattle, 'tokyo');
  // tokyo misses the last update: 200 KiB it never saw.
  writeChange(data, 'lagged.bin', 200 * KiB);
  await update(seattle, 'london');
  const tokyoShows = appliedAt(tokyo);
  assert.ok(!existsSync(join(tRep, 'lagged.bin')));
  assert.ok(snapshotIds(london).includes(tokyoShows), 'london holds the snapshot tokyo shows');

  // ---- nobody takes tokyo away while seattle lives and announced no failover ...
  const asLondon = new PeerClient(loadIdentity(join(london.home, 'identity')), { name: 'tokyo', id: tokyo.id, url: tokyo.url!, createdAt: 0 });
  try {
    await assert.rejects(
      asLondon.call(ROUTES.dr('takeover'), { volume: 'vol', newSourceVolume: 'vol', snapshots: snapshotIds(london), oldSource: seattle.id, oldSourceVolume: 'vol' }),
      (err) => isFerryError(err, 'MIRROR_STATE') && /did not take it over/.test(err.message),
    );
  } finally {
    asLondon.close();
  }
  // ... nor a paired site the primary never named as a secondary of the volume (even with seattle down).
  const mallory = await createSite('mallory');
  sites.push(mallory);
  await tokyo.json(['site', 'add', 'mallory', 'https://127.0.0.1:9', '--id', mallory.id]);
  await seattle.stop('SIGKILL');
  const asMallory = new PeerClient(loadIdentity(join(mallory.home, 'identity')), { name: 'tokyo', id: tokyo.id, url: tokyo.url!, createdAt: 0 });
  try {
    await assert.rejects(asMallory.call(ROUTES.dr('takeover'), { volume: 'vol', newSourceVolume: 'vol', snapshots: snapshotIds(london), oldSource: seattle.id, oldSourceVolume: 'vol' }), (err) => isFerryError(err, 'NOT_AUTHORIZED'));
  } finally {
    asMallory.close();
  }
  assert.equal((await tokyo.volumeStatus('vol')).secondary.source, 'seattle', 'tokyo still follows seattle');

  // ---- london takes over; the common base is tokyo's older snapshot; only what tokyo lacks moves
  const fo = await london.json(['failover', 'vol', '--force']);
  const rp = fo.repointed[0];
  assert.equal(rp.outcome, 'repointed', JSON.stringify(rp));
  assert.equal(rp.base, tokyoShows, 'the common base is the snapshot tokyo shows (older than london\'s)');
  const bytes = rp.update.transfer.bytes;
  assert.ok(bytes >= 200 * KiB && bytes < 200 * KiB + 48 * KiB, `re-point sent ${bytes} bytes for the 200 KiB tokyo lacked (volume ${volBytes})`);
  assertTreesEqual(tRep, lRep);
  assertTreesEqual(tRep, data);
  assert.equal((await tokyo.volumeStatus('vol')).secondary.source, 'london');
  // Running the re-point again changes nothing and sends only what changed since (nothing).
  const again = await london.json(['mirror', 'repoint', 'vol', '--to', 'tokyo']);
  assert.equal(again.outcome, 'repointed');
  assert.equal(again.oldPrimary, 'already');
  assertTreesEqual(tRep, lRep);
  console.log(`# lagged: volume ${volBytes}, re-point ${bytes} (200 KiB behind)`);
});

test('VVR: tokyo one update ahead of london at the failover: rolled back by the difference-based apply, its local writes kept', async () => {
  const { seattle, london, tokyo, data, volBytes } = await trio('-ahead');
  const lRep = await london.memberPath('vol');
  const tRep = await tokyo.memberPath('vol');
  writeChange(data, 'x.bin', 48 * KiB);
  await update(seattle, 'london');
  const londonShows = appliedAt(london);
  writeChange(data, 'only-tokyo.bin', 150 * KiB);
  await update(seattle, 'tokyo'); // tokyo gets london's base first, then its own newer snapshot
  assert.ok(snapshotIds(tokyo).includes(londonShows), 'tokyo holds the snapshot london shows');
  assert.notEqual(appliedAt(tokyo), londonShows);
  const londonAtFailover = copyTree(lRep, join(london.dir, 'at-failover'));
  await seattle.stop('SIGKILL');
  // Someone writes into tokyo's replica: never lost.
  writeFileSync(join(tRep, 'local-note.txt'), 'written at tokyo\n');
  const tokyoBefore = copyTree(tRep, join(tokyo.dir, 'before-repoint'));

  const fo = await london.json(['failover', 'vol', '--force']);
  const rp = fo.repointed[0];
  assert.equal(rp.outcome, 'repointed', JSON.stringify(rp));
  assert.equal(rp.base, londonShows, 'the common base is london\'s snapshot, older than tokyo\'s');
  assert.ok(rp.update.transfer.bytes < 32 * KiB, `re-point sent ${rp.update.transfer.bytes} bytes: tokyo has everything (volume ${volBytes})`);
  // tokyo now shows london's data: its newer snapshot's file is rolled back, its local write is gone from the replica ...
  assertTreesEqual(tRep, londonAtFailover);
  assert.ok(!existsSync(join(tRep, 'only-tokyo.bin')));
  // ... and kept in a snapshot, restorable byte for byte.
  assert.ok(rp.update.writesSnapshot?.startsWith('replica-writes-'), JSON.stringify(rp.update));
  assertTreesEqual(await tokyo.restore('vol', rp.update.writesSnapshot, 'writes'), tokyoBefore);
  console.log(`# ahead: volume ${volBytes}, re-point ${rp.update.transfer.bytes}`);
});

test('VVR: with --keep 1 tokyo ahead shares no snapshot with london: needs-full-sync, a full sync only when told', async () => {
  const { seattle, london, tokyo, data } = await trio('-nobase', ['--keep', '1']);
  const lRep = await london.memberPath('vol');
  const tRep = await tokyo.memberPath('vol');
  writeChange(data, 'x.bin', 48 * KiB);
  await update(seattle, 'london');
  writeChange(data, 'only-tokyo.bin', 64 * KiB);
  await update(seattle, 'tokyo');
  // Each secondary keeps one replication snapshot and receives no sibling's base: nothing in common.
  const common = snapshotIds(london).filter((id) => snapshotIds(tokyo).includes(id));
  assert.deepEqual(common, []);
  assert.equal(snapshotIds(tokyo).length, 1);
  await seattle.stop('SIGKILL');

  const fo = await london.json(['failover', 'vol', '--force']);
  const rp = fo.repointed[0];
  assert.equal(rp.outcome, 'needs-full-sync', JSON.stringify(rp));
  assert.equal(rp.error.code, 'NEEDS_FULL_SYNC');
  assert.equal((await london.mirror('vol', 'tokyo')).state, 'needs-full-sync');
  assert.equal((await tokyo.volumeStatus('vol')).secondary.source, 'london', 'tokyo follows london; nothing was copied');
  assert.ok(existsSync(join(tRep, 'only-tokyo.bin')), 'the replica is untouched');
  await london.refused(['mirror', 'repoint', 'vol', '--to', 'tokyo'], 4, 'NEEDS_FULL_SYNC', /--full/);
  await london.refused(['mirror', 'update', 'vol', '--to', 'tokyo', '--wait'], 4, 'MIRROR_STATE', /full sync/);
  const full = await london.json(['mirror', 'repoint', 'vol', '--to', 'tokyo', '--full']);
  assert.equal(full.outcome, 'repointed');
  assert.equal(full.base, null);
  assertTreesEqual(tRep, lRep);
  assert.equal((await london.mirror('vol', 'tokyo')).state, 'idle');
});

test('VVR: a planned takeover with seattle alive: seattle is told, agrees to tokyo following london, and fails back without --to', async () => {
  const { seattle, london, tokyo, data } = await trio('-told');
  const lRep = await london.memberPath('vol');
  const tRep = await tokyo.memberPath('vol');
  writeChange(data, 'y.bin', 40 * KiB);
  await update(seattle, 'london');
  await update(seattle, 'tokyo');
  const fo = await london.json(['failover', 'vol']);
  assert.equal(fo.notified, true);
  const rp = fo.repointed[0];
  assert.equal(rp.outcome, 'repointed', JSON.stringify(rp));
  assert.equal(rp.oldPrimary, 'agreed');
  assert.ok(rp.update.transfer.bytes < 32 * KiB, `re-point sent ${rp.update.transfer.bytes} bytes`);
  assertTreesEqual(tRep, lRep);
  // seattle: its mirror to london is broken off, the one to tokyo is gone (tokyo follows london).
  const sMirrors = (await seattle.volumeStatus('vol')).mirrors.map((m: any) => [m.peer, m.state]);
  assert.deepEqual(sMirrors, [['london', 'broken-off']]);
  assert.equal((await tokyo.volumeStatus('vol')).secondary.source, 'london');
  writeChange(lRep, 'london/after.bin', 50 * KiB);
  const fb = await seattle.json(['failback', 'vol']);
  assert.deepEqual(fb.droppedMirrors, []);
  assertTreesEqual(data, lRep);
  const u = await update(london, 'tokyo');
  assert.ok(u.transfer.bytes < 50 * KiB + 32 * KiB, `update sent ${u.transfer.bytes} bytes`);
  assertTreesEqual(tRep, lRep);
});
