// Found by the soak (seed 1, 65 minutes): a source whose clock was set back ten minutes, with a
// snapshot taken (and not sent) before the step: its next update was refused by the destination as a
// replay (PROTOCOL), where the design says a clock set back does not hold a mirror's updates
// (docs/dr.md). The destination's lineage check walks only the snapshots it holds and could not see
// that the new snapshot descends, through the one never sent, from the one it shows. Now the source
// delivers the snapshots between first (replication/driver/plan.ts, lineage steps).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { cleanupSites, KiB, createSite, pairSites, writeChange, writeVolumeData, type TestSite } from '../harness/index.ts';

test('an update after the source\'s clock was set back, with a snapshot in between that was never sent, is applied', async () => {
  const sites: TestSite[] = [];
  try {
    const [a, b] = await Promise.all([createSite('cb-a'), createSite('cb-b')]);
    sites.push(a, b);
    const data = join(a.dir, 'data');
    writeVolumeData(data, 1, 16 * KiB);
    a.defineVolume('vol', [data]);
    await Promise.all([a.start(), b.start()]);
    await pairSites(a, b);
    await a.json(['mirror', 'create', 'vol', '--to', b.name]);
    await a.json(['mirror', 'initialize', 'vol', '--to', b.name, '--wait']);
    writeChange(data, 'one.bin', 4 * KiB);
    await a.json(['snapshot', 'create', 'vol', '--name', 'between']);
    await a.stop();
    await a.start({ env: { FERRY_TEST_CLOCK_OFFSET_MS: '-600000' } });
    writeChange(data, 'two.bin', 4 * KiB);
    const r = await a.ferry(['mirror', 'update', 'vol', '--to', b.name, '--wait', '--force', '--json']);
    assert.equal(r.code, 0, `refused: ${r.stdout}${r.stderr}`);
    // The snapshot in between went first, then the target: both are at the destination.
    const between = a.snapshotRows('vol').find((s) => s.name === 'between')!;
    const held = b.snapshotRows('vol').map((s) => s.id);
    assert.ok(held.includes(between.id) && held.includes(JSON.parse(r.stdout).snapshot), `at the destination: ${held.join(', ')}`);
  } finally {
    await cleanupSites(sites);
  }
});
