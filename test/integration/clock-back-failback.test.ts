// Found by the 12-minute soak of seed 1 (steps 652 to 1632: `failback v2` refused PROTOCOL again
// and again): a failback whose new primary's clock was set back since the old primary last received
// a snapshot from it. The old primary's replica shows its kept snapshot (failback-kept-*), which
// nothing the new primary sends descends from, and it holds a snapshot the new primary took before
// its clock went back: the resync's target, older by that clock, was refused as a replay. Like
// clock-back-update.test.ts, but the target reaches the replica through a failback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { cleanupSites, createSite, KiB, pairSites, writeChange, writeVolumeData, type TestSite } from '../harness/index.ts';

const HOUR_AHEAD = { FERRY_TEST_CLOCK_OFFSET_MS: String(3600_000) };

test('a failback to a site whose clock was set back since the old primary received its snapshots is applied', async () => {
  const sites: TestSite[] = [];
  try {
    const [a, b] = await Promise.all([createSite('cbf-a'), createSite('cbf-b')]);
    sites.push(a, b);
    const data = join(b.dir, 'data');
    writeVolumeData(data, 2, 8 * KiB);
    b.defineVolume('vol', [data]);
    // b is the primary, its clock an hour ahead: a receives snapshots b took at that time.
    await Promise.all([a.start(), b.start({ env: HOUR_AHEAD })]);
    await pairSites(a, b);
    await b.json(['mirror', 'create', 'vol', '--to', a.name]);
    await b.json(['mirror', 'initialize', 'vol', '--to', a.name, '--wait']);
    writeChange(data, 'ahead.bin', 4 * KiB);
    await b.json(['mirror', 'update', 'vol', '--to', a.name, '--wait']);
    // a takes over, b fails back and follows a.
    await a.json(['failover', 'vol']);
    await b.json(['failback', 'vol']);
    // b's clock is set right (an hour back), and b takes over again; a, the old primary, fails back.
    await b.stop();
    await b.start();
    await b.json(['failover', 'vol']);
    const replica = await b.memberPath('vol');
    writeChange(replica, 'after-step.bin', 4 * KiB);
    const r = await a.ferry(['failback', 'vol', '--json']);
    assert.equal(r.code, 0, `refused: ${r.stdout}${r.stderr}`);
    const target = JSON.parse(r.stdout).update.snapshot as string;
    assert.ok(a.snapshotRows('vol').some((s) => s.id === target), 'the resync\'s snapshot is at the old primary');
    const sec = a.catalog((db) => db.prepare('SELECT applied FROM secondaries WHERE volume = ?').get('vol')) as { applied: string };
    assert.equal(sec.applied, target);
  } finally {
    await cleanupSites(sites);
  }
});
