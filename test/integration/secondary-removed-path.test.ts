// A former primary made secondary by `migrate`, then removed there (`volume remove --force`: its
// files stay), on two real daemons. The new primary's next contact makes a new replica under the
// replica root (never at the removed volume's member path), so what was written at the old path
// afterwards is left alone by the initialize that follows; and files found in the new replica that
// no apply wrote are kept in a replica-writes snapshot and refused without --force. Found by the
// soak (seed 5, three sites), where the soak's model took a write that changed nothing (nothing to
// delete in the new, empty replica) for a write of its own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanupSites, mirroredPair, mirrorRow, suggestedCommand, type TestSite } from '../harness/index.ts';

test('a migrated-away secondary removed at a: the old path keeps what was written there, the new replica is checked for writes', async () => {
  const sites: TestSite[] = [];
  try {
    const { a, b, data } = await mirroredPair(sites, ['a', 'b']);
    await a.json(['migrate', 'vol', '--to', 'b']);
    await a.json(['volume', 'remove', 'vol', '--force']);
    writeFileSync(join(data, 'mine.txt'), 'written at the removed volume\'s path\n');

    // b's next update makes a new secondary at a, under a's replica root: it needs a full sync.
    await b.refused(['mirror', 'update', 'vol', '--to', 'a', '--wait', '--force'], 4, 'MIRROR_STATE', /full sync/);
    const replica = await a.memberPath('vol');
    assert.notEqual(replica, data, 'the new secondary was bound at the removed volume\'s member path');

    // Something written into the new replica before any apply: kept, and refused without --force.
    writeFileSync(join(replica, 'stray.txt'), 'written into the new replica\n');
    const refusal = await b.refused(['mirror', 'initialize', 'vol', '--to', 'a', '--wait'], 4, 'REPLICA_WRITTEN', /--force/);
    const kept = a.snapshotRows('vol').filter((s) => s.name?.startsWith('replica-writes-'));
    assert.equal(kept.length, 1, 'the files in the new replica are kept in a snapshot before anything replaces them');
    // The refused snapshot arrived at a (only its apply was refused): the mirror stands on it, so the
    // refusal names an update (an initialize is refused now), and that command, run as it stands, works.
    const advice = suggestedCommand(refusal);
    assert.deepEqual(advice, ['mirror', 'update', 'vol', '--to', 'a', '--force']);
    assert.match(mirrorRow(b, 'vol', 'a').last_error ?? '', /`ferry mirror update vol --to a --force`/, 'the mirror\'s recorded error gives the same advice');
    await b.json([...advice, '--wait']);
    assert.equal(mirrorRow(b, 'vol', 'a').state, 'idle');
    assert.ok(a.snapshotRows('vol').some((s) => s.id === kept[0].id), 'the replica-writes snapshot outlives the forced initialize');

    // The removed volume's files, and what was written there after, are untouched.
    assert.equal(readFileSync(join(data, 'mine.txt'), 'utf8'), 'written at the removed volume\'s path\n');
  } finally {
    await cleanupSites(sites);
  }
});
