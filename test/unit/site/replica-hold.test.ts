// The snapshot a replica shows stays held at the secondary until another is applied: a commit that
// is refused (writes found in the replica) or whose apply fails leaves the replica showing the
// snapshot it showed, and that one must not go with retention or a delete (the soak, seed
// 1396988058, step 247: the commit moved the replica's hold to its snapshot before the apply,
// the apply was refused, and retention at the secondary then took the snapshot the replica showed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSnapshot, executeDeleteSnapshots, planDeleteSnapshots, type SnapshotRecord } from '../../../src/site/snapshots.ts';
import { getSecondary } from '../../../src/catalog/secondaries.ts';
import { isHeld } from '../../../src/catalog/holds.ts';
import { londonToTokyo } from '../local-site.ts';

test('a refused commit leaves the snapshot the replica shows held; the next applied one takes its place', async () => {
  await londonToTokyo({ keep: 1 }, async ({ london, tokyo, pool, data, replica, send: commit }) => {
    const send = (s: SnapshotRecord, force = false) => commit(s, { force });
    const s1 = (await createSnapshot(london, 'vol', { pool })).snapshot;
    assert.equal((await send(s1)).applied, true);
    // Someone writes into the replica; london's next snapshot is refused there (not forced).
    writeFileSync(join(replica, 'stray.txt'), 'written at tokyo\n');
    writeFileSync(join(data, 'b.txt'), 'two\n');
    const s2 = (await createSnapshot(london, 'vol', { pool })).snapshot;
    const refused = await send(s2);
    assert.equal(refused.applied, false);
    assert.ok(refused.writesSnapshot, 'the writes were kept');
    assert.equal(getSecondary(tokyo.catalog, 'vol')!.applied, s1.id, 'the replica still shows s1');
    assert.ok(isHeld(tokyo.catalog, s1.id), 'what the replica shows stays held');
    assert.throws(() => executeDeleteSnapshots(tokyo, planDeleteSnapshots(tokyo, 'vol', [s1.id])), /cannot be deleted while the hold exists/);
    // Refused again with a newer one: s1 and the newest stay held, s2 (never shown) no longer.
    writeFileSync(join(data, 'c.txt'), 'three\n');
    const s3 = (await createSnapshot(london, 'vol', { pool })).snapshot;
    assert.equal((await send(s3)).applied, false);
    assert.ok(isHeld(tokyo.catalog, s1.id) && isHeld(tokyo.catalog, s3.id) && !isHeld(tokyo.catalog, s2.id), 'held: what the replica shows and the newest committed');
    // Forced, s3 is applied: s1 is no longer what the replica shows, and is held no more.
    assert.equal((await send(s3, true)).applied, true);
    assert.equal(getSecondary(tokyo.catalog, 'vol')!.applied, s3.id);
    assert.ok(isHeld(tokyo.catalog, s3.id), 'the snapshot applied is held');
    assert.ok(!isHeld(tokyo.catalog, s1.id), 'the one it replaced is not');
  });
});
