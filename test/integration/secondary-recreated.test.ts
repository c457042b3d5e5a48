// A secondary whose volume was removed (`volume remove --force`: its snapshots go, the peer snapshots
// and the mirror's base among them) and bound again over the same replica files (`volume create
// --secondary`), on two real daemons. The source finds at its next contact that the destination no
// longer holds what it claimed there: its peer snapshots there are pending again (and delivered again),
// its base is dropped (the mirror needs a full sync), and `mirror initialize` works; the replica's
// files, which no apply of the new volume wrote, are kept in a snapshot there and need --force to be
// replaced, as any writes into a replica. Found by the soak (seed 1, three sites).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanupSites, mirroredPair, mirrorRow, suggestedCommand, type TestSite } from '../harness/index.ts';

const peerState = (a: TestSite, id: string): string | undefined =>
  (a.catalog((db) => db.prepare("SELECT state FROM peer_snapshots WHERE snapshot = ? AND mirror = 'vol@b'").get(id)) as { state: string } | undefined)?.state;

test('a secondary removed and bound again over its replica: the source drops its stale claims there, and initialize works', async () => {
  const sites: TestSite[] = [];
  try {
    const { a, b, data } = await mirroredPair(sites, ['a', 'b']);
    const p1 = (await a.json(['snapshot', 'create', 'vol', '--name', 'p1', '--peer', '--wait'])).snapshot.id as string;
    assert.equal(peerState(a, p1), 'present');
    const replica = await b.memberPath('vol');
    await b.json(['volume', 'remove', 'vol', '--force']);
    await b.json(['volume', 'create', 'vol', '--member', replica, '--secondary']);
    writeFileSync(join(data, 'after.txt'), 'written after b was bound again\n');

    // The next update finds b without the base and without p1: nothing it claimed there stands.
    await a.refused(['mirror', 'update', 'vol', '--to', 'b', '--wait', '--force'], 4, 'MIRROR_STATE', /no longer has the base[\s\S]*mirror initialize/);
    const m = mirrorRow(a, 'vol', 'b');
    assert.equal(m.state, 'needs-full-sync');
    assert.equal(m.base, null, 'the base b no longer holds is still the mirror\'s');
    assert.equal(peerState(a, p1), 'pending', 'p1 still reported present at b, which no longer holds it');
    const holds = (a.catalog((db) => db.prepare("SELECT count(*) AS n FROM holds WHERE holder = 'mirror:vol@b'").get()) as { n: number }).n;
    assert.equal(holds, 0, 'a hold for a base b no longer holds');

    // Initialize: the replica's files were not written by an apply of the new volume: kept in a
    // snapshot at b, and the refusal says how to go on.
    const refusal = await a.refused(['mirror', 'initialize', 'vol', '--to', 'b', '--wait'], 4, 'REPLICA_WRITTEN', /bound over files no apply wrote/);
    const kept = b.snapshotRows('vol').filter((s) => s.name?.startsWith('replica-writes-'));
    assert.equal(kept.length, 1, 'the replica\'s files are kept in a snapshot before anything replaces them');
    // As the refusal says, run as it stands: p1 was refused before the target was sent, so the mirror
    // has no base yet and the command is a forced initialize (an update is refused in that state).
    const advice = suggestedCommand(refusal);
    assert.deepEqual(advice, ['mirror', 'initialize', 'vol', '--to', 'b', '--force']);
    await a.json([...advice, '--wait']);
    const after = mirrorRow(a, 'vol', 'b');
    assert.equal(after.state, 'idle');
    assert.ok(b.snapshotRows('vol').some((s) => s.id === after.base), 'the new base is at b');
    assert.equal(peerState(a, p1), 'present', 'p1 delivered again');
    assert.equal(b.snapshotRows('vol').find((s) => s.id === p1)?.name, 'p1');
  } finally {
    await cleanupSites(sites);
  }
});
