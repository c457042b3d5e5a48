// A failback stopped right after this site demoted itself (a crash at failback:after-demote): the
// replica is recorded as the kept snapshot (failback-kept-*), and that snapshot is held while the
// secondary shows it, so it cannot be deleted from under the relation (the soak, seed 1, step 3389:
// `snapshot delete` took it and the secondary showed a snapshot that was not there). The rerun then
// finishes the failback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cleanupSites, KiB, mirroredPair, waitFor, writeChange, type TestSite } from '../harness/index.ts';

test('the kept snapshot a demoted secondary shows is held until the failback resyncs it', async () => {
  const sites: TestSite[] = [];
  try {
    const { a: east, b: west, data } = await mirroredPair(sites, ['kh-east', 'kh-west']);
    await east.stop();
    await west.json(['failover', 'vol', '--force']);
    writeChange(data, 'east-after.bin', 4 * KiB);
    await east.start({ env: { FERRY_TEST_CRASH_AT: 'failback:after-demote' } });
    await east.ferry(['failback', 'vol', '--json']);
    await waitFor('east to die after its demotion', () => east.proc?.exitCode !== null || east.proc?.signalCode !== null);
    east.proc = undefined;
    // The new primary down: the restarted east cannot resync (its resume of the failback waits), so
    // the kept snapshot stays what its replica shows while the delete is tried.
    await west.stop();
    await east.start();
    const applied = east.catalog((db) => (db.prepare("SELECT applied FROM secondaries WHERE volume = 'vol'").get() as { applied: string }).applied);
    const kept = east.snapshotRows('vol').find((s) => s.id === applied);
    assert.match(kept?.name ?? '', /^failback-kept-/, 'the demoted secondary shows the kept snapshot');
    await east.refused(['snapshot', 'delete', 'vol', applied], 4, 'SNAPSHOT_HELD');
    await west.start();
    await east.json(['failback', 'vol']);
    assert.equal((await east.volumeStatus('vol')).role, 'secondary');
  } finally {
    await cleanupSites(sites);
  }
});
