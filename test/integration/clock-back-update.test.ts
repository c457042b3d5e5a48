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

/** Two paired daemons (kept in `sites`), `vol` at the first (its environment: `env`), not mirrored yet. */
async function pair(sites: TestSite[], names: [string, string], env?: Record<string, string>): Promise<{ a: TestSite; b: TestSite; data: string }> {
  const [a, b] = await Promise.all(names.map((n) => createSite(n)));
  sites.push(a, b);
  const data = join(a.dir, 'data');
  writeVolumeData(data, 1, 16 * KiB);
  a.defineVolume('vol', [data]);
  await Promise.all([a.start(env ? { env } : undefined), b.start()]);
  await pairSites(a, b);
  return { a, b, data };
}

test('an update after the source\'s clock was set back, with a snapshot in between that was never sent, is applied', async () => {
  const sites: TestSite[] = [];
  try {
    const { a, b, data } = await pair(sites, ['cb-a', 'cb-b']);
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

// The same class as soak seed 5's step 1807 (clock-back-failback.test.ts), through a full sync: the
// destination still holds a snapshot the source sent before its clock was set back (the mirror since
// removed), and the source no longer holds it. Nothing links the new baseline to it, and it was
// refused as a replay by the source's clock. A full sync starts the relation again: it is applied.
test('a full sync is applied though the destination holds a later-dated snapshot the source sent in the earlier relation, before its clock was set back, and no longer holds', async () => {
  const sites: TestSite[] = [];
  try {
    const { a, b, data } = await pair(sites, ['cbi-a', 'cbi-b'], { FERRY_TEST_CLOCK_OFFSET_MS: String(3600_000) });
    await a.json(['mirror', 'create', 'vol', '--to', b.name]);
    const first = (await a.json(['mirror', 'initialize', 'vol', '--to', b.name, '--wait'])).snapshot as string;
    await a.json(['mirror', 'remove', 'vol', '--to', b.name]);
    await a.stop();
    await a.start();
    writeChange(data, 'after-step.bin', 4 * KiB);
    await a.json(['snapshot', 'create', 'vol']);
    await a.json(['snapshot', 'delete', 'vol', first]);
    assert.ok(b.snapshotRows('vol').some((s) => s.id === first) && !a.snapshotRows('vol').some((s) => s.id === first), 'b holds the snapshot sent before the clock step, a does not');
    await a.json(['mirror', 'create', 'vol', '--to', b.name]);
    const r = await a.ferry(['mirror', 'initialize', 'vol', '--to', b.name, '--wait', '--json']);
    assert.equal(r.code, 0, `refused: ${r.stdout}${r.stderr}`);
    const target = JSON.parse(r.stdout).snapshot as string;
    const sec = b.catalog((db) => db.prepare('SELECT applied FROM secondaries WHERE volume = ?').get('vol')) as { applied: string };
    assert.equal(sec.applied, target);
  } finally {
    await cleanupSites(sites);
  }
});
