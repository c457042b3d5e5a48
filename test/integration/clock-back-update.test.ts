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

// Found by the soak (seed 1380349686, steps 1106-1327): a primary's clock was set back about 4,000 s,
// and a snapshot it took after the step (the link to its base) was deleted before the next update.
// Lineage was followed only through the snapshots a site holds, so neither the source (its own
// check: "older than the mirror's base") nor the destination (its replay check) saw that the new
// target descends from the base: the mirror was stuck until the clock caught up. A deleted snapshot
// now leaves its place in the lineage (catalog/snapshots.ts, snapshot_gone), and the source tells
// the destination which snapshot it holds the target's parent descends from.
test('an update after the source\'s clock was set back is applied though the snapshot linking it to the base was deleted since', async () => {
  const sites: TestSite[] = [];
  try {
    const { a, b, data } = await pair(sites, ['cbd-a', 'cbd-b']);
    await a.json(['mirror', 'create', 'vol', '--to', b.name]);
    const base = (await a.json(['mirror', 'initialize', 'vol', '--to', b.name, '--wait'])).snapshot as string;
    await a.stop();
    await a.start({ env: { FERRY_TEST_CLOCK_OFFSET_MS: '-600000' } });
    writeChange(data, 'one.bin', 4 * KiB);
    const link = (await a.json(['snapshot', 'create', 'vol'])).snapshot.id as string;
    writeChange(data, 'two.bin', 4 * KiB);
    const kept = (await a.json(['snapshot', 'create', 'vol'])).snapshot.id as string;
    await a.json(['snapshot', 'delete', 'vol', link]);
    writeChange(data, 'three.bin', 4 * KiB);
    const r = await a.ferry(['mirror', 'update', 'vol', '--to', b.name, '--wait', '--json']);
    assert.equal(r.code, 0, `refused: ${r.stdout}${r.stderr}`);
    const target = JSON.parse(r.stdout).snapshot as string;
    assert.ok(target < base, 'the target\'s id is older than the base by the clock');
    const sec = b.catalog((db) => db.prepare('SELECT applied FROM secondaries WHERE volume = ?').get('vol')) as { applied: string };
    assert.equal(sec.applied, target);
    // The snapshot between went first (a lineage step: the destination keeps only its newest since).
    const moved = a.catalog((db) => db.prepare("SELECT detail FROM events WHERE kind = 'mirror.base'").all()) as Array<{ detail: string }>;
    assert.ok(moved.some((e) => JSON.parse(e.detail).to === kept), `the snapshot between went first: ${JSON.stringify(moved)}`);
    // The next update, from the target on, is a plain one.
    writeChange(data, 'four.bin', 4 * KiB);
    const r2 = await a.ferry(['mirror', 'update', 'vol', '--to', b.name, '--wait', '--json']);
    assert.equal(r2.code, 0, `refused: ${r2.stdout}${r2.stderr}`);
  } finally {
    await cleanupSites(sites);
  }
});

// The soak's replay of seed 1380349686 (step 1054): peer snapshots pending across a step back of the
// source's clock were delivered by their times, the one taken after the step first; the destination
// applied the older one after it (its data went back), and the next snapshot was refused as a replay.
// They go in the order the source took them.
test('peer snapshots pending across a step back of the source\'s clock are delivered in the order they were taken', async () => {
  const sites: TestSite[] = [];
  try {
    const { a, b, data } = await pair(sites, ['cbp-a', 'cbp-b']);
    await a.json(['mirror', 'create', 'vol', '--to', b.name]);
    await a.json(['mirror', 'initialize', 'vol', '--to', b.name, '--wait']);
    await b.stop();
    writeChange(data, 'one.bin', 4 * KiB);
    const p1 = (await a.ferry(['snapshot', 'create', 'vol', '--name', 'p1', '--peer', '--json'])).json.snapshot.id as string;
    await a.stop();
    await a.start({ env: { FERRY_TEST_CLOCK_OFFSET_MS: '-600000' } });
    writeChange(data, 'two.bin', 4 * KiB);
    const p2 = (await a.ferry(['snapshot', 'create', 'vol', '--name', 'p2', '--peer', '--json'])).json.snapshot.id as string;
    assert.ok(p2 < p1, 'p2, taken after the step, is older by the clock');
    await b.start();
    const r = await a.ferry(['mirror', 'update', 'vol', '--to', b.name, '--wait', '--json']);
    assert.equal(r.code, 0, `refused: ${r.stdout}${r.stderr}`);
    const order = b.catalog((db) => db.prepare("SELECT id FROM snapshots WHERE volume = 'vol' AND name IN ('p1', 'p2') ORDER BY rowid").all()) as Array<{ id: string }>;
    assert.deepEqual(order.map((x) => x.id), [p1, p2], 'recorded at the destination in the order they were taken');
  } finally {
    await cleanupSites(sites);
  }
});
