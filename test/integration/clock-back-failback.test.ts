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

/**
 * b, the primary with its clock an hour ahead, updates a; a takes over and b fails back (follows
 * a); `meanwhile` runs; b's clock is set right, b takes over again and writes; then a, the old
 * primary, fails back (after b took a snapshot of its own, with `snapshotAfterTakeover`): it must be applied.
 */
async function failbackAfterClockStep(names: [string, string], o: { named?: boolean; snapshotAfterTakeover?: boolean; meanwhile?: (a: TestSite, b: TestSite, takenOver: string) => Promise<void> } = {}): Promise<void> {
  const sites: TestSite[] = [];
  try {
    const [a, b] = await Promise.all(names.map((n) => createSite(n)));
    sites.push(a, b);
    const data = join(b.dir, 'data');
    writeVolumeData(data, 2, 8 * KiB);
    b.defineVolume('vol', [data]);
    await Promise.all([a.start(), b.start({ env: HOUR_AHEAD })]);
    await pairSites(a, b);
    await b.json(['mirror', 'create', 'vol', '--to', a.name]);
    await b.json(['mirror', 'initialize', 'vol', '--to', a.name, '--wait']);
    if (o.named) {
      writeChange(data, 'named.bin', 4 * KiB);
      await b.json(['snapshot', 'create', 'vol', '--name', 'ahead', '--peer']);
    }
    writeChange(data, 'ahead.bin', 4 * KiB);
    await b.json(['mirror', 'update', 'vol', '--to', a.name, '--wait']);
    const takenOver = (a.catalog((db) => db.prepare('SELECT applied FROM secondaries WHERE volume = ?').get('vol')) as { applied: string }).applied;
    await a.json(['failover', 'vol']);
    await b.json(['failback', 'vol']);
    await o.meanwhile?.(a, b, takenOver);
    await b.stop();
    await b.start();
    await b.json(['failover', 'vol']);
    writeChange(await b.memberPath('vol'), 'after-step.bin', 4 * KiB);
    // b takes a snapshot of its own before a fails back: the resync's target names it, not what b took over at
    if (o.snapshotAfterTakeover) await b.json(['snapshot', 'create', 'vol']);
    const r = await a.ferry(['failback', 'vol', '--json']);
    assert.equal(r.code, 0, `refused: ${r.stdout}${r.stderr}`);
    const target = JSON.parse(r.stdout).update.snapshot as string;
    assert.ok(a.snapshotRows('vol').some((s) => s.id === target), 'the resync\'s snapshot is at the old primary');
    const sec = a.catalog((db) => db.prepare('SELECT applied FROM secondaries WHERE volume = ?').get('vol')) as { applied: string };
    assert.equal(sec.applied, target);
  } finally {
    await cleanupSites(sites);
  }
}

test('a failback to a site whose clock was set back since the old primary received its snapshots is applied', async () => {
  await failbackAfterClockStep(['cbf-a', 'cbf-b']);
});

// Found by the 12-minute soak of seed 1 again (step 652, once the test above passed): the old
// primary had since deleted the snapshot its failover took over at (retention, or by hand), and kept
// a named one received before the new primary's clock went back. The resync's first snapshot names
// the failback's base, a snapshot the old primary took itself after the one deleted: walking parents
// from it no longer reached the named one, and the resync was refused as a replay.
test('a failback is applied when the old primary no longer holds the snapshot linking its base to the one received before the clock step', async () => {
  await failbackAfterClockStep(['cbl-a', 'cbl-b'], {
    named: true,
    meanwhile: async (a, _b, takenOver) => {
      await a.json(['snapshot', 'delete', 'vol', takenOver]);
      const rows = a.snapshotRows('vol');
      assert.ok(rows.some((s) => s.name === 'ahead') && !rows.some((s) => s.id === takenOver), 'a keeps the named snapshot, not the one it took over at');
    },
  });
});

// Found by the soak of seed 5 (step 1807, `mirror update v2 --to a` from the new primary during a
// failback: refused PROTOCOL, "older than ..., which this replica already received from that
// site"). The old primary still held a snapshot the new primary had sent it in an earlier relation,
// before its clock went back, and the new primary no longer held it (deleted; in the soak, its volume
// had been removed and created again): the resync's target, whose parent is a snapshot the new
// primary took after it took over, could not be shown to come after it by lineage from either side,
// and was refused as a replay by the new primary's clock, again at every attempt. A failback starts
// a new relation: what the same site sent in an earlier one is no reference for a replay.
test('a failback is applied when the old primary holds a snapshot the new primary sent in an earlier relation, before its clock went back, and no longer holds', async () => {
  await failbackAfterClockStep(['cbr-a', 'cbr-b'], {
    snapshotAfterTakeover: true,
    meanwhile: async (a, b, takenOver) => {
      await b.json(['snapshot', 'delete', 'vol', takenOver]);
      assert.ok(a.snapshotRows('vol').some((s) => s.id === takenOver) && !b.snapshotRows('vol').some((s) => s.id === takenOver), 'a holds the snapshot b sent before its clock step, b does not');
    },
  });
});
