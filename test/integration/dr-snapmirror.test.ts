// Seed procedure 1, NetApp SnapMirror, end to end on two real daemons:
// an application-consistent named snapshot (a pre hook writes a marker into
// the tree) is the baseline (`snapmirror initialize -s`), a later named one
// the update (`snapmirror update -s`); a DR copy test runs at the
// destination on a link (writes there are discarded by a refresh, which
// says so); then the destination is failed over, runs production, and the
// origin syncs back (`snapmirror resync -S`): it keeps its own divergent
// writes in a snapshot, and only the difference crosses the wire.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertTreesEqual } from '../helpers.ts';
import { cleanupSites, copyTree, KiB, MiB, createSite, pairSites, writeChange, writeVolumeData, type TestSite } from '../harness/index.ts';

const sites: TestSite[] = [];
after(() => cleanupSites(sites));

test('SnapMirror: named app-consistent baseline and update, DR copy test on a link, failover, difference-based sync back', async () => {
  const [a, b] = await Promise.all([createSite('prod'), createSite('dr')]);
  sites.push(a, b);
  const data = join(a.dir, 'data');
  const volBytes = writeVolumeData(data, 10, 2 * MiB);
  const marker = join(data, '.quiesced');
  // The pre hook "quiesces" the application: it leaves a marker naming the snapshot; the post hook removes it.
  await a.json(['volume', 'create', 'vol', '--member', data, '--pre', `printf %s "$FERRY_SNAPSHOT_ID" > '${marker}'`, '--post', `rm -f '${marker}'`]);
  await Promise.all([a.start(), b.start()]);
  await pairSites(a, b);

  // ---- an application-consistent named snapshot
  const nightly = (await a.json(['snapshot', 'create', 'vol', '--name', 'nightly'])).snapshot;
  assert.ok(!existsSync(marker), 'the post hook removed the marker from the live tree');
  const expNightly = await a.restore('vol', 'nightly', 'nightly');
  assert.equal(readFileSync(join(expNightly, '.quiesced'), 'utf8'), nightly.id, 'the snapshot holds the marker the pre hook wrote');
  const liveAtNightly = copyTree(expNightly, join(a.dir, 'nightly-less-marker'));
  rmSync(join(liveAtNightly, '.quiesced'));
  assertTreesEqual(liveAtNightly, data);
  // The live tree moves on after the named snapshot.
  writeFileSync(join(data, 'etc', 'app-0.conf'), 'changed after nightly\n');
  writeChange(data, 'live/after-nightly.bin', 16 * KiB);

  // ---- baseline from the named snapshot: the replica is that snapshot, marker included, not the live tree
  await a.json(['mirror', 'create', 'vol', '--to', 'dr']);
  const init = await a.json(['mirror', 'initialize', 'vol', '--to', 'dr', '--snapshot', 'nightly', '--wait']);
  assert.equal(init.snapshot, nightly.id);
  const replica = await b.memberPath('vol');
  assertTreesEqual(replica, expNightly);
  assert.ok(init.transfer.bytes >= volBytes * 0.99 && init.transfer.bytes < volBytes * 1.05, `baseline sent ${init.transfer.bytes} bytes for a ${volBytes}-byte volume`);
  assert.deepEqual((await b.snapshots('vol')).map((s: any) => [s.id, s.name]), [[nightly.id, 'nightly']]);
  const m1 = await a.mirror('vol', 'dr');
  assert.equal(m1.state, 'idle');
  assert.equal(m1.base, nightly.id);
  assert.equal(m1.lastTransfer.bytes, init.transfer.bytes);

  // ---- update to another named snapshot
  writeChange(data, 'new/weekly.bin', 256 * KiB);
  const weekly = (await a.json(['snapshot', 'create', 'vol', '--name', 'weekly'])).snapshot;
  const expWeekly = await a.restore('vol', 'weekly', 'weekly');
  writeChange(data, 'live/after-weekly.bin', 32 * KiB); // not in `weekly`: must not reach the replica
  const upd = await a.json(['mirror', 'update', 'vol', '--snapshot', 'weekly', '--wait']);
  assert.equal(upd.snapshot, weekly.id);
  assert.equal(upd.base, nightly.id);
  assertTreesEqual(replica, expWeekly);
  // What changed from nightly to weekly: 256 KiB + 16 KiB of new files, a conf file, the marker, and the trees.
  assert.ok(upd.transfer.bytes >= 272 * KiB && upd.transfer.bytes < 272 * KiB + 64 * KiB, `the named update sent ${upd.transfer.bytes} bytes for ~272 KiB of changes`);
  assert.equal((await a.mirror('vol', 'dr')).lastTransfer.bytes, upd.transfer.bytes);
  assert.deepEqual((await b.snapshots('vol')).map((s: any) => s.name).sort(), ['nightly', 'weekly']);

  // ---- DR copy test at the destination: a writable link on the secondary's volume
  const drtest = join(b.dir, 'drtest');
  const link = await b.json(['link', 'create', drtest, '--volume', 'vol']);
  assert.equal(link.snapshot, weekly.id);
  assertTreesEqual(drtest, expWeekly);
  writeFileSync(join(drtest, 'etc', 'app-1.conf'), 'a DR test wrote here\n');
  writeChange(drtest, 'test-scratch.bin', 100 * KiB);
  rmSync(join(drtest, 'big-3.bin'));
  assertTreesEqual(replica, expWeekly); // the replica is not the link
  // Production moves on and replicates; the refresh discards the test's writes, says so (exit 8), and shows the new snapshot.
  writeChange(data, 'new/u3.bin', 128 * KiB);
  const u3 = await a.json(['mirror', 'update', 'vol', '--wait']);
  const expU3 = await a.restore('vol', u3.snapshot, 'u3');
  assertTreesEqual(replica, expU3);
  assert.ok(u3.transfer.bytes >= 160 * KiB && u3.transfer.bytes < 160 * KiB + 64 * KiB, `update sent ${u3.transfer.bytes} bytes for ~160 KiB of changes`);
  const refresh = await b.json(['link', 'refresh', drtest], 8);
  assert.equal(refresh.to, u3.snapshot);
  assert.ok(refresh.discarded >= 3, `refresh reported ${refresh.discarded} discarded paths`);
  assertTreesEqual(drtest, expU3);
  await b.json(['link', 'remove', drtest]);
  assert.ok(!existsSync(drtest));

  // ---- failover: the destination runs production
  const fo = await b.json(['failover', 'vol']);
  assert.equal(fo.notified, true);
  assert.equal(fo.plan.snapshot, u3.snapshot, 'the replica promoted is the last applied snapshot');
  assert.equal((await b.volumeStatus('vol')).role, 'primary');
  assert.equal((await a.mirror('vol', 'dr')).state, 'broken-off');
  assertTreesEqual(replica, expU3);
  writeChange(replica, 'dr/written-at-dr.bin', 200 * KiB);
  writeFileSync(join(replica, 'etc', 'app-2.conf'), 'written at the DR site\n');
  // Meanwhile the origin was written too (divergent: it must not be lost silently).
  writeChange(data, 'prod/divergent.bin', 64 * KiB);
  rmSync(join(data, 'big-5.bin'));
  const beforeFailback = copyTree(data, join(a.dir, 'before-failback'));
  const drLive = copyTree(replica, join(b.dir, 'dr-live'));

  // ---- sync back: the origin becomes the DR site's secondary; only the difference moves
  const dry = await a.json(['failback', 'vol', '--dry-run']);
  assert.equal(dry.plan.base, u3.snapshot);
  assert.equal(dry.plan.commonBase, true);
  assert.ok(dry.plan.expectedBytes >= 200 * KiB && dry.plan.expectedBytes < 210 * KiB, `plan expects ${dry.plan.expectedBytes} bytes`);
  const fb = await a.json(['failback', 'vol']);
  assert.match(fb.kept, /^failback-kept-/);
  assert.equal(fb.keptDiffers, true);
  const sent = fb.update.transfer.bytes;
  assert.ok(sent >= 200 * KiB && sent < 200 * KiB + 64 * KiB, `failback sent ${sent} bytes for ~200 KiB changed at the DR site (volume ${volBytes})`);
  assert.ok(sent < volBytes * 0.02, `failback sent ${((sent / volBytes) * 100).toFixed(2)} % of the volume`);
  assertTreesEqual(data, drLive);
  assertTreesEqual(replica, drLive);
  const back = await b.mirror('vol', 'prod');
  assert.equal(back.state, 'idle');
  assert.equal(back.lastTransfer.bytes, sent);
  const aVol = await a.volumeStatus('vol');
  assert.equal(aVol.role, 'secondary');
  assert.equal(aVol.secondary.source, 'dr');
  // The origin's divergent writes are in the kept snapshot, restorable byte for byte.
  const kept = await a.restore('vol', fb.kept, 'kept');
  assert.match(readFileSync(join(kept, '.quiesced'), 'utf8'), /^[0-9A-Z]{26}$/, 'the kept snapshot was taken between the hooks');
  rmSync(join(kept, '.quiesced'));
  assertTreesEqual(kept, beforeFailback);

  // ---- the reversed mirror keeps working from the DR site
  writeChange(replica, 'dr/second.bin', 48 * KiB);
  const rev = await b.json(['mirror', 'update', 'vol', '--to', 'prod', '--wait']);
  assertTreesEqual(data, replica);
  assert.ok(rev.transfer.bytes >= 48 * KiB && rev.transfer.bytes < 48 * KiB + 32 * KiB, `reverse update sent ${rev.transfer.bytes} bytes`);
  console.log(`# bytes: volume ${volBytes}, baseline ${init.transfer.bytes}, named update ${upd.transfer.bytes}, update ${u3.transfer.bytes}, failback ${sent} (${((sent / volBytes) * 100).toFixed(2)} %, plan said ${dry.plan.expectedBytes}), reverse update ${rev.transfer.bytes}`);
});
