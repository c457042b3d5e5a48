// `snapshot delete --peer` at a primary with no mirror to deliver it to (none left, or only broken-off
// ones): nothing to confirm, so the snapshot goes in the request itself. Found by the soak (replay of
// seed 1380349686, step 947, a CLI killed mid-command): the request left the snapshot held
// `peer-delete` with no deletion pending, until the daemon's queue of deliveries reached it (behind
// one to an unreachable site).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { holdPeer } from '../../../src/catalog/holds.ts';
import { snapshotById } from '../../../src/catalog/snapshots.ts';
import { requestPeerDelete } from '../../../src/site/peer-snapshots.ts';
import { createSnapshot } from '../../../src/site/snapshots.ts';
import { createVolume } from '../../../src/site/volumes.ts';
import { withLocalSite } from '../local-site.ts';

test('a peer snapshot deleted where no mirror is left to tell goes at once, with no hold left behind', async () => {
  await withLocalSite('nowhere', async ({ dir, site, pool }) => {
    const data = join(dir, 'data');
    mkdirSync(data);
    writeFileSync(join(data, 'a.txt'), 'one\n');
    createVolume(site, 'vol', { members: [{ kind: 'tree', path: data }] });
    const s = (await createSnapshot(site, 'vol', { pool })).snapshot;
    site.catalog.tx(() => holdPeer(site.catalog, s.id));
    const r = requestPeerDelete(site, 'vol', s.id);
    assert.deepEqual(r.targets, []);
    assert.equal(snapshotById(site.catalog, s.id), undefined, 'deleted in the request: nothing to wait for');
  });
});
