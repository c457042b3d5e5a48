// Seed procedure 4, NEC link volumes / OpenSVC snapshot sync resources, end
// to end on two real daemons: at the DR site, writable copies ("links") of
// the replicated volume at stable paths. One is refreshed on schedule: after
// a new snapshot arrives its content follows within a bounded time, and the
// writes made in it are discarded (and reported). Another is refreshed by
// hand: within its --min-delay a refresh is refused unless forced; its
// health turns from `up` to `warn` when its snapshot, measured from its
// capture time at the primary, grows older than --max-delay.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertTreesEqual } from '../helpers.ts';
import { cleanupSites, KiB, MiB, createSite, pairSites, waitFor, writeChange, writeVolumeData, type TestSite } from '../harness/index.ts';

const sites: TestSite[] = [];
after(() => cleanupSites(sites));

/** The manual link's --max-delay: long enough that `up` is seen on a loaded machine (a few CLI calls after the capture). */
const MAX_DELAY_S = 12;

const linkRow = (site: TestSite, path: string): { snapshot: string; refreshed_at: number } =>
  site.catalog((db) => db.prepare('SELECT snapshot, refreshed_at FROM links WHERE path = ?').get(path)) as any;

test('NEC/OpenSVC links at the DR site: scheduled refresh follows new snapshots, min delay refuses unless forced, health by age of the capture', async () => {
  const [a, b] = await Promise.all([createSite('prod'), createSite('dr')]);
  sites.push(a, b);
  const data = join(a.dir, 'data');
  const volBytes = writeVolumeData(data, 4, 1 * MiB);
  a.defineVolume('vol', [data]);
  await Promise.all([a.start({ tick: 200 }), b.start({ tick: 200 })]);
  await pairSites(a, b);
  await a.json(['mirror', 'create', 'vol', '--to', 'dr']);
  const init = await a.json(['mirror', 'initialize', 'vol', '--to', 'dr', '--wait']);
  assert.ok(init.transfer.bytes >= volBytes * 0.99 && init.transfer.bytes < volBytes * 1.05);
  const replica = await b.memberPath('vol');
  assertTreesEqual(replica, data);

  // ---- a link refreshed on schedule, on the secondary's volume
  const l1 = join(b.dir, 'preprod');
  const created1 = await b.json(['link', 'create', l1, '--volume', 'vol', '--schedule', '2s']);
  assert.equal(created1.snapshot, init.snapshot);
  assert.equal(created1.scheduleS, 2);
  assertTreesEqual(l1, replica);
  // The pre-production copy is used: written, and a file deleted.
  writeFileSync(join(l1, 'etc', 'app-0.conf'), 'pre-production setting\n');
  writeChange(l1, 'preprod-only/scratch.bin', 40 * KiB);
  rmSync(join(l1, 'big-1.bin'));

  // ---- production changes and replicates; the link follows within a bounded time
  writeChange(data, 'new/u1.bin', 192 * KiB);
  writeFileSync(join(data, 'etc', 'app-1.conf'), 'u1\n');
  const u1 = await a.json(['mirror', 'update', 'vol', '--wait']);
  assertTreesEqual(replica, data);
  assert.ok(u1.transfer.bytes >= 192 * KiB && u1.transfer.bytes < 192 * KiB + 32 * KiB, `update sent ${u1.transfer.bytes} bytes for ~192 KiB changed`);
  const followed = Date.now();

  // ---- meanwhile, a link refreshed by hand, with a min delay and a max delay (its age counts from u1's capture)
  const l2 = join(b.dir, 'uat');
  const created2 = await b.json(['link', 'create', l2, '--volume', 'vol', '--min-delay', '1h', '--max-delay', `${MAX_DELAY_S}s`]);
  assert.equal(created2.snapshot, u1.snapshot);
  assertTreesEqual(l2, replica);
  const u1Time = a.snapshotRows('vol').find((s) => s.id === u1.snapshot)!.time;
  const st1 = await b.status();
  const s2 = st1.links.find((l: any) => l.path === l2);
  assert.equal(s2.snapshotTime, u1Time, 'the age is measured from the capture time at the primary');
  assert.ok(s2.ageSeconds < MAX_DELAY_S, `age ${s2.ageSeconds} s (the machine is too slow for this check)`);
  assert.equal(s2.health, 'up');
  assert.equal(st1.links.find((l: any) => l.path === l1).health, 'up');

  // ---- the scheduled link has followed u1 (within a bounded time), its writes discarded and reported
  await waitFor('the scheduled link to follow the new snapshot', () => linkRow(b, l1).snapshot === u1.snapshot, 20_000, 100);
  console.log(`# the scheduled link followed within ${Date.now() - followed} ms`);
  assertTreesEqual(l1, replica);
  const ev = b.catalog((db) => db.prepare("SELECT outcome, detail FROM events WHERE kind = 'link.refresh' ORDER BY id").all()) as Array<{ outcome: string; detail: string }>;
  const scheduledEvs = ev.map((e) => ({ outcome: e.outcome, ...JSON.parse(e.detail) })).filter((e) => e.path === l1 && e.scheduled === true);
  assert.ok(scheduledEvs.some((e) => e.to === u1.snapshot), `no scheduled refresh to ${u1.snapshot}: ${JSON.stringify(ev)}`);
  // The writes go with the first scheduled refresh after them: to u1, or, when the schedule came
  // before u1 was applied (the link shows only what the replica shows), to the snapshot before.
  const refreshEv = scheduledEvs.find((e) => e.discarded > 0);
  assert.ok(refreshEv, `no scheduled refresh discarded the writes: ${JSON.stringify(ev)}`);
  assert.equal(refreshEv.outcome, 'warning', 'a refresh that discards writes says so');
  assert.ok(refreshEv.discarded >= 3, `discarded ${refreshEv.discarded}`);

  // Within --min-delay a refresh is refused and changes nothing; --force refreshes, discarding the writes.
  writeFileSync(join(l2, 'etc', 'app-2.conf'), 'a tester changed this\n');
  writeChange(l2, 'uat-only.bin', 24 * KiB);
  await b.refused(['link', 'refresh', l2], 4, 'MIRROR_STATE', /min delay/);
  const forced = await b.json(['link', 'refresh', l2, '--force'], 8);
  assert.equal(forced.to, u1.snapshot);
  assert.equal(forced.discarded, 2);
  assert.ok(forced.bytesWritten > 0 && forced.bytesWritten < 4 * KiB, `refresh wrote ${forced.bytesWritten} bytes: only what differs`);
  assertTreesEqual(l2, replica);

  // ---- no new snapshot for longer than --max-delay: warn, although the link was just refreshed
  const warned = await waitFor('the manual link to warn by age', async () => {
    const st = await b.status();
    const l = st.links.find((x: any) => x.path === l2);
    return l.health === 'warn' ? { l, now: st.site.now } : undefined;
  }, 40_000, 500);
  assert.ok(warned.l.ageSeconds > MAX_DELAY_S);
  assert.ok(Math.abs(warned.l.ageSeconds - (warned.now - u1Time) / 1000) < 0.01);
  assert.ok(warned.l.ageSeconds > (warned.now - warned.l.refreshedAt) / 1000, 'the age counts from the capture, not from the refresh');
  assertTreesEqual(l2, replica);
  assertTreesEqual(l1, replica);
  console.log(`# bytes: volume ${volBytes}, baseline ${init.transfer.bytes}, update ${u1.transfer.bytes} (192 KiB changed), forced link refresh wrote ${forced.bytesWritten}`);
});
