// Faults injected into DR traffic as into replication traffic, on real daemons, through the one
// wrapper every peer connection has (src/transport/faults.ts, composed in transport/compose.ts;
// FERRY_TEST_FAULTS names the call): a put cut part-way through a mirror update; the failback
// call cut while the new primary resyncs (the old primary never hears how it went); and a put cut
// in a migrate's final transfer. Each time the error says the test fault fired, the workflow stops
// cleanly (roles and journal as its crash-safety promises), and the rerun completes with nothing
// lost: the replica equals the primary byte for byte, and the old primary's divergent writes
// restore from the kept snapshot.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { assertTreesEqual } from '../helpers.ts';
import { cleanupSites, copyTree, errorCode, KiB, mirroredPair, mirrorRow, waitFor, writeChange, type TestSite } from '../harness/index.ts';

const sites: TestSite[] = [];
after(() => cleanupSites(sites));

let east: TestSite;
let west: TestSite;
let data: string;

const role = (s: TestSite): string => s.catalog((db) => (db.prepare("SELECT role FROM volumes WHERE name = 'vol'").get() as { role: string }).role);
const running = (s: TestSite): Array<{ kind: string; step: string }> => s.catalog((db) => db.prepare("SELECT kind, step FROM workflows WHERE volume = 'vol' AND state = 'running'").all()).map((r: any) => ({ kind: r.kind, step: r.step }));

/** Restart a daemon with FERRY_TEST_FAULTS (or without, for '') : the rules count from its start. */
async function faults(site: TestSite, rules: string): Promise<void> {
  await site.stop();
  await site.start(rules ? { env: { FERRY_TEST_FAULTS: rules } } : {});
}

test('setup: east mirrors vol to west', async () => {
  ({ a: east, b: west, data } = await mirroredPair(sites, ['east', 'west'], { files: 2, fileSize: 256 * KiB }));
  assertTreesEqual(await west.memberPath('vol'), data);
});

test('replication: a put cut after 100 KB fails the update with the test fault; the next update completes it', async () => {
  assert.ok(east, 'setup failed');
  await faults(east, 'put:cut:bytes=100000');
  writeChange(data, 'update.bin', 512 * KiB);
  const cut = await east.ferry(['mirror', 'update', 'vol', '--to', 'west', '--wait', '--json']);
  assert.equal(cut.code, 6, `the update reports the cut: ${cut.stdout} ${cut.stderr}`);
  assert.equal(errorCode(cut), 'TRANSFER_INTERRUPTED');
  assert.match(cut.json.error.message, /test fault put:cut/);
  await east.json(['mirror', 'update', 'vol', '--to', 'west', '--wait']);
  assertTreesEqual(await west.memberPath('vol'), data);
});

test('failback: the failback call is cut while the new primary resyncs; the old primary waits demoted, and the rerun completes', async () => {
  assert.ok(east, 'setup failed');
  await faults(east, 'dr.failback:cut');
  await west.json(['failover', 'vol']);
  const replica = await west.memberPath('vol');
  writeChange(replica, 'written-at-west.bin', 96 * KiB);
  writeChange(data, 'divergent-at-east.bin', 32 * KiB);
  const beforeFailback = copyTree(data, join(east.dir, 'before-failback'));
  const cut = await east.ferry(['failback', 'vol', '--json']);
  assert.equal(cut.code, 6, `the failback reports the cut: ${cut.stdout} ${cut.stderr}`);
  assert.equal(errorCode(cut), 'TRANSFER_INTERRUPTED');
  assert.match(cut.json.error.message, /test fault dr\.failback:cut/);
  // Stopped cleanly: demoted here, waiting for its resync; west primary.
  assert.equal(role(east), 'secondary');
  assert.equal(role(west), 'primary');
  assert.deepEqual(running(east), [{ kind: 'failback', step: 'demoted' }]);
  // West got the call and resyncs regardless; the rerun's call finds its mirror in step.
  await waitFor("west's resync to end", () => {
    const m = mirrorRow(west, 'vol', 'east');
    return m?.state === 'idle' && m.last_success_at !== null;
  }, 60_000);
  const fb = await east.json(['failback', 'vol']);
  assert.match(fb.kept, /^failback-kept-/);
  assert.deepEqual(running(east), []);
  assert.equal(role(east), 'secondary');
  assertTreesEqual(data, replica);
  // Nothing lost: east's divergent writes are in the kept snapshot.
  assertTreesEqual(await east.restore('vol', fb.kept, 'kept'), beforeFailback);
});

test("migrate: the final transfer's put is cut; the migrate rolls back, and once the secondary is brought up to date the rerun completes", async () => {
  assert.ok(east, 'setup failed');
  const replica = await west.memberPath('vol');
  await faults(west, 'put:cut:bytes=100000');
  writeChange(replica, 'before-migrate.bin', 384 * KiB);
  const cut = await west.ferry(['migrate', 'vol', '--to', 'east', '--json']);
  assert.equal(cut.code, 6, `the migrate reports the cut: ${cut.stdout} ${cut.stderr}`);
  assert.equal(errorCode(cut), 'TRANSFER_INTERRUPTED');
  assert.match(cut.json.error.message, /test fault put:cut/);
  assert.equal(role(west), 'primary', 'rolled back: west still primary');
  assert.equal(role(east), 'secondary');
  assert.deepEqual(running(west), []);
  // The secondary is behind by the final snapshot (its last update failed): migrate says to bring it
  // up to date first, and then runs.
  await west.refused(['migrate', 'vol', '--to', 'east'], 4, 'MIRROR_STATE', /not current .*`ferry mirror update vol --to east --wait` first/);
  await west.json(['mirror', 'update', 'vol', '--to', 'east', '--wait']);
  const m = await west.json(['migrate', 'vol', '--to', 'east']);
  assert.ok(m.final);
  assert.equal(role(east), 'primary');
  assert.equal(role(west), 'secondary');
  assertTreesEqual(data, replica);
  // The reversed mirror carries on.
  writeChange(data, 'after-migrate.bin', 16 * KiB);
  await east.json(['mirror', 'update', 'vol', '--to', 'west', '--wait']);
  assertTreesEqual(replica, data);
});
