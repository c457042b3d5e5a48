// Holds (src/catalog/holds.ts): typed holders, spelled one way, and the verbs
// that are the only writers of the table, on a real catalog.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { newSnapshotId } from '../../../src/core/ids.ts';
import {
  baseHolder, encodeHolder, handOverReplica, heldBy, holdersOf, holdInFlight, holdReplica, inFlightHolder, isHeld, linkHolder, moveBase, parseHolder, PEER_DELETE_HOLDER,
  PEER_HOLDER, hold, holdPeer, releaseInFlight, releaseMirror, releaseOrphans, replicaHolder, startPeerDelete, volumeHolders, type Holder,
} from '../../../src/catalog/holds.ts';
import { insertSnapshotRow } from '../../../src/catalog/snapshots.ts';
import { addSecondary } from '../../../src/catalog/secondaries.ts';
import { createVolume } from '../../../src/site/volumes.ts';
import type { Site } from '../../../src/site/site.ts';
import { withLocalSite } from '../local-site.ts';

test('every holder is spelled one way and read back as itself', () => {
  const holders: Holder[] = [
    baseHolder('app@tokyo'), inFlightHolder('app@tokyo'), replicaHolder('Q'.repeat(52)), PEER_HOLDER, PEER_DELETE_HOLDER, linkHolder('/srv/test:copy/a'), { kind: 'other', text: 'future:thing' },
  ];
  for (const h of holders) assert.deepEqual(parseHolder(encodeHolder(h)), h, encodeHolder(h));
  // The spellings catalogs already hold (older ferry versions wrote them by hand).
  assert.deepEqual(holders.map(encodeHolder), ['mirror:app@tokyo', 'mirror:app@tokyo:inflight', `mirror-from:${'Q'.repeat(52)}`, 'peer', 'peer-delete', 'link:/srv/test:copy/a', 'future:thing']);
});

/** A volume with `n` snapshot rows (no data: holds refer to rows only). */
function volumeWithSnapshots(site: Site, dir: string, name: string, n: number): string[] {
  const data = join(dir, name);
  mkdirSync(data);
  createVolume(site, name, { members: [{ path: data }] });
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const id = newSnapshotId(site.clock);
    insertSnapshotRow(site.catalog, { id, volume: name, name: null, time: site.clock.now(), origin: site.id, parent: ids.at(-1) ?? null, manifest: 'm'.repeat(64), stats: {} });
    ids.push(id);
  }
  return ids;
}

test('a mirror\'s base moves, its update in flight is held and released, and both go with the mirror', async () => {
  await withLocalSite('holds', async ({ dir, site }) => {
    const cat = site.catalog;
    const [s1, s2, s3] = volumeWithSnapshots(site, dir, 'app', 3);
    moveBase(cat, 'app@b', s1);
    assert.deepEqual(holdersOf(cat, s1), ['mirror:app@b']);
    holdInFlight(cat, 'app@b', s3);
    moveBase(cat, 'app@b', s2);
    assert.equal(isHeld(cat, s1), false, 'the old base is released');
    assert.deepEqual(holdersOf(cat, s2), ['mirror:app@b']);
    assert.deepEqual(holdersOf(cat, s3), ['mirror:app@b:inflight'], 'moving the base leaves the update in flight held');
    releaseInFlight(cat, 'app@b');
    assert.equal(isHeld(cat, s3), false);
    holdInFlight(cat, 'app@b', s3);
    moveBase(cat, 'app@c', s3);
    const released = releaseMirror(cat, 'app@b');
    assert.deepEqual(released.map((r) => r.holder).sort(), ['mirror:app@b', 'mirror:app@b:inflight']);
    assert.deepEqual(holdersOf(cat, s3), ['mirror:app@c'], 'another mirror\'s hold stays');
  });
});

test('a replica\'s source holds per volume; a migrate hands its holds over', async () => {
  await withLocalSite('holds', async ({ dir, site }) => {
    const cat = site.catalog;
    const [a1, a2] = volumeWithSnapshots(site, dir, 'a', 2);
    const [b1] = volumeWithSnapshots(site, dir, 'b', 1);
    const src = 'S'.repeat(52);
    const other = 'T'.repeat(52);
    holdReplica(cat, 'a', src, a1);
    holdReplica(cat, 'b', src, b1);
    holdReplica(cat, 'a', src, a2, { only: true });
    assert.equal(isHeld(cat, a1), false, 'the commit moved the hold in volume a');
    assert.deepEqual(holdersOf(cat, b1), [`mirror-from:${src}`], 'the same source\'s hold on volume b stays');
    holdReplica(cat, 'a', src, a1); // a failover keeps its base besides
    assert.deepEqual(heldBy(cat, replicaHolder(src), 'a'), [a1, a2]);
    handOverReplica(cat, 'a', src, other);
    assert.deepEqual(volumeHolders(cat, 'a'), [`mirror-from:${other}`]);
    assert.deepEqual(volumeHolders(cat, 'b'), [`mirror-from:${src}`], 'handed over in volume a only');
  });
});

test('a peer snapshot being deleted is held peer-delete instead of peer', async () => {
  await withLocalSite('holds', async ({ dir, site }) => {
    const cat = site.catalog;
    const [p] = volumeWithSnapshots(site, dir, 'app', 1);
    holdPeer(cat, p);
    holdPeer(cat, p);
    assert.deepEqual(holdersOf(cat, p), ['peer']);
    startPeerDelete(cat, p);
    assert.deepEqual(holdersOf(cat, p), ['peer-delete']);
    assert.deepEqual(heldBy(cat, PEER_DELETE_HOLDER), [p]);
  });
});

test('holds whose holder is gone are released; peer holds, live holders and unknown ones stay', async () => {
  await withLocalSite('holds', async ({ dir, site }) => {
    const cat = site.catalog;
    const [s1, s2] = volumeWithSnapshots(site, dir, 'app', 2);
    const followed = 'F'.repeat(52);
    addSecondary(cat, 'app', followed, 'app');
    for (const h of [baseHolder('app@gone'), inFlightHolder('app@gone'), linkHolder('/nowhere'), replicaHolder('G'.repeat(52))]) hold(cat, h, s1);
    for (const h of [replicaHolder(followed), PEER_HOLDER, PEER_DELETE_HOLDER, { kind: 'other', text: 'future:thing' } as Holder]) hold(cat, h, s2);
    const released = releaseOrphans(cat);
    assert.deepEqual(released.map((r) => r.holder).sort(), ['link:/nowhere', `mirror-from:${'G'.repeat(52)}`, 'mirror:app@gone', 'mirror:app@gone:inflight']);
    assert.equal(isHeld(cat, s1), false);
    assert.deepEqual(holdersOf(cat, s2), ['future:thing', `mirror-from:${followed}`, 'peer', 'peer-delete']);
    assert.deepEqual(releaseOrphans(cat), [], 'nothing left to release');
  });
});
