// Seed procedure 2, HPE 3PAR Remote Copy in asynchronous periodic mode, end
// to end on two real daemons: the mirror updates itself on a schedule (each
// period sends only what changed), the secondary is promoted with
// `failover` (it snapshots itself first thing; the natural primary's mirror
// is broken off and refuses to update), production runs at the backup site,
// and `failback` at the natural primary resyncs it from the backup: its own
// divergent writes are kept in a snapshot, and only the backup's changes
// since the base cross the wire. The reversed mirror keeps the schedule.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertTreesEqual } from '../helpers.ts';
import { cleanupSites, copyTree, KiB, MiB, mirrorWithBase, createSite, pairSites, transfersSince, waitFor, writeChange, writeVolumeData, type TestSite } from '../harness/index.ts';

const sites: TestSite[] = [];
after(() => cleanupSites(sites));

/** Wait until a scheduled update of `src`'s mirror sent a snapshot taken after `t0`, and return the transfers since. */
async function nextPeriod(src: TestSite, peer: string, t0: number): Promise<Array<{ snapshot: string; bytes: number }>> {
  await waitFor(`a scheduled update of ${src.name}'s mirror after the change`, () => {
    const m = mirrorWithBase(src, 'vol', peer);
    return m && m.state === 'idle' && m.base_time !== null && m.base_time > t0;
  }, 45_000);
  return transfersSince(src, 'vol', t0);
}

test('3PAR Remote Copy: periodic updates, failover promotes the secondary, failback resyncs the natural primary by differences', async () => {
  const [a, b] = await Promise.all([createSite('natural'), createSite('backup')]);
  sites.push(a, b);
  const data = join(a.dir, 'data');
  const volBytes = writeVolumeData(data, 10, 2 * MiB);
  a.defineVolume('vol', [data]);
  await Promise.all([a.start({ tick: 200 }), b.start({ tick: 200 })]);
  await pairSites(a, b);

  await a.json(['mirror', 'create', 'vol', '--to', 'backup', '--schedule', '2s']);
  const init = await a.json(['mirror', 'initialize', 'vol', '--to', 'backup', '--wait']);
  const replica = await b.memberPath('vol');
  assertTreesEqual(replica, data);
  assert.ok(init.transfer.bytes >= volBytes * 0.99 && init.transfer.bytes < volBytes * 1.05, `baseline sent ${init.transfer.bytes} bytes for ${volBytes}`);

  // ---- periodic updates: each change reaches the backup within a period or two, and costs what changed
  const periods: number[] = [];
  for (const [i, size] of [[1, 96 * KiB], [2, 160 * KiB]] as const) {
    writeChange(data, `periodic/cycle-${i}.bin`, size);
    writeFileSync(join(data, 'etc', `app-${i}.conf`), `cycle ${i}\n`);
    const t0 = Date.now();
    const sent = await nextPeriod(a, 'backup', t0);
    assertTreesEqual(replica, data);
    const bytes = sent.reduce((n, t) => n + t.bytes, 0);
    // Every period sends a new snapshot; the ones without the change cost a few hundred bytes each.
    assert.ok(bytes >= size && bytes < size + 64 * KiB, `period ${i}: ${sent.length} update(s) sent ${bytes} bytes for a ${size}-byte change`);
    periods.push(bytes);
  }
  const up = await a.mirror('vol', 'backup');
  assert.equal(up.health, 'up');
  assert.equal(up.scheduleS, 2);
  assert.ok(up.nextRunAt > 0);

  // ---- failover at the backup site. First stop scheduling at the natural primary and let any update
  // in flight finish: a promotion racing an apply is not what this test is about.
  await a.json(['mirror', 'pause', 'vol']);
  const last = await waitFor('the mirror to be idle', () => {
    const m = mirrorWithBase(a, 'vol', 'backup');
    return m && m.state === 'idle' ? m : undefined;
  });
  assertTreesEqual(replica, data);
  const promoted = copyTree(replica, join(b.dir, 'promoted'));
  const fo = await b.json(['failover', 'vol']);
  assert.equal(fo.notified, true);
  assert.equal(fo.plan.snapshot, last.base, 'the backup promotes the last snapshot it applied');
  const foSnap = (await b.snapshots('vol')).find((s: any) => s.id === fo.snapshot);
  assert.ok(foSnap, 'the failover snapshot is listed at the backup');
  assert.match(foSnap.name, /^failover-/);
  assertTreesEqual(await b.restore('vol', fo.snapshot, 'failover'), promoted);
  assert.equal((await b.volumeStatus('vol')).role, 'primary');
  // The natural primary's mirror is broken off: no update, scheduled or asked for, even forced.
  await a.json(['mirror', 'resume', 'vol']);
  const broken = await a.mirror('vol', 'backup');
  assert.equal(broken.state, 'broken-off');
  assert.equal(broken.health, 'warn');
  await a.refused(['mirror', 'update', 'vol', '--wait', '--force'], 4, 'MIRROR_STATE', /broken off/);
  const resumedAt = Date.now();

  // ---- production at the backup; the natural primary also took writes (divergent), one of them in a snapshot
  writeChange(replica, 'backup/prod-1.bin', 200 * KiB);
  writeFileSync(join(replica, 'etc', 'app-0.conf'), 'written at the backup site\n');
  writeChange(data, 'natural/divergent-1.bin', 100 * KiB);
  const divSnap = (await a.json(['snapshot', 'create', 'vol', '--name', 'divergent-at-natural'])).snapshot;
  const divExpected = copyTree(data, join(a.dir, 'divergent-snap'));
  writeFileSync(join(data, 'etc', 'app-3.conf'), 'divergent, never snapshotted\n');
  const beforeFailback = copyTree(data, join(a.dir, 'before-failback'));
  const backupLive = copyTree(replica, join(b.dir, 'backup-live'));

  // The scheduler (a tick every 200 ms, a 2 s period) left the broken-off mirror alone meanwhile.
  await waitFor('a few scheduling periods', () => Date.now() - resumedAt > 2500);
  const still = mirrorWithBase(a, 'vol', 'backup')!;
  assert.equal(still.state, 'broken-off');
  assert.equal(still.base, last.base, 'nothing was sent after the failover');
  assert.deepEqual(transfersSince(a, 'vol', resumedAt), []);

  // ---- failback (3PAR recover): difference-based
  const fb = await a.json(['failback', 'vol']);
  assert.deepEqual(fb.plan.divergentSnapshots, ['divergent-at-natural']);
  assert.equal(fb.plan.base, last.base);
  assert.match(fb.kept, /^failback-kept-/);
  const sent = fb.update.transfer.bytes;
  assert.ok(sent >= 200 * KiB && sent < 200 * KiB + 64 * KiB, `failback sent ${sent} bytes for ~200 KiB changed at the backup (volume ${volBytes})`);
  assert.ok(sent < volBytes * 0.02, `failback sent ${((sent / volBytes) * 100).toFixed(2)} % of the volume`);
  assertTreesEqual(data, backupLive);
  assertTreesEqual(replica, backupLive);
  // Nothing of the natural primary's is lost: the kept snapshot and the earlier one restore byte for byte.
  assertTreesEqual(await a.restore('vol', fb.kept, 'kept'), beforeFailback);
  assertTreesEqual(await a.restore('vol', divSnap.id, 'divergent'), divExpected);
  assert.equal(readFileSync(join(beforeFailback, 'etc', 'app-3.conf'), 'utf8'), 'divergent, never snapshotted\n');
  const aVol = await a.volumeStatus('vol');
  assert.equal(aVol.role, 'secondary');
  assert.equal(aVol.secondary.source, 'backup');
  assert.ok(aVol.secondary.applied, 'the natural primary shows an applied snapshot'); // (consistent flips while a scheduled apply runs)

  // ---- the reversed mirror runs on the same schedule
  const rev = await b.mirror('vol', 'natural');
  assert.ok(['idle', 'updating'].includes(rev.state), `reversed mirror state ${rev.state}`); // on its 2 s schedule already
  assert.equal(transfersSince(b, 'vol', 0)[0].bytes, sent, 'the resync was the reversed mirror\'s first transfer');
  assert.equal(rev.scheduleS, 2, 'the reversed mirror keeps the schedule');
  writeChange(replica, 'backup/prod-2.bin', 64 * KiB);
  const t1 = Date.now();
  const revSent = await nextPeriod(b, 'natural', t1);
  assertTreesEqual(data, replica);
  const revBytes = revSent.reduce((n, t) => n + t.bytes, 0);
  assert.ok(revBytes >= 64 * KiB && revBytes < 128 * KiB, `reverse period sent ${revBytes} bytes for 64 KiB`);
  console.log(`# bytes: volume ${volBytes}, baseline ${init.transfer.bytes}, periods ${periods.join(', ')} (96 KiB, 160 KiB changed), failback ${sent} (${((sent / volBytes) * 100).toFixed(2)} % for 200 KiB changed), reverse period ${revBytes}`);
});
