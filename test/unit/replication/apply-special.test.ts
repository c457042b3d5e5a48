// A special file the apply cannot make (here a device node without the
// right to make one) fails the apply at once with a message that says why;
// before, it was skipped with a warning and the verification after the
// apply then failed with REPLICA_MISMATCH on every attempt.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createVolume } from '../../../src/site/volumes.ts';
import { createSnapshot } from '../../../src/site/snapshots.ts';
import { readManifest } from '../../../src/snapshot/graph.ts';
import { applyTree } from '../../../src/replication/apply.ts';
import { isFerryError } from '../../../src/core/errors.ts';
import { withLocalSite } from '../local-site.ts';

test('a device node the apply may not make fails the apply with the reason, not a mismatch later', { skip: process.getuid?.() === 0 ? false : 'making the device node of the source needs root' }, async () => {
  await withLocalSite('special', async ({ dir: tmpPath, site, pool }) => {
    const data = join(tmpPath, 'data');
    mkdirSync(data);
    writeFileSync(join(data, 'a-file'), 'x\n');
    execFileSync('mknod', ['-m', '600', join(data, 'null'), 'c', '1', '3']);
    createVolume(site, 'v', { members: [{ path: data }] });
    const snap = (await createSnapshot(site, 'v', { pool })).snapshot;
    const root = readManifest(site.store, snap.manifest).members[0].root;
    // noOwner: as a daemon that is not root (device nodes need root)
    await assert.rejects(applyTree(join(tmpPath, 'replica'), null, root, { store: site.store, noOwner: true }), (err: unknown) => {
      assert.ok(isFerryError(err, 'IO'), String(err));
      assert.match((err as Error).message, /cannot make .*null in the replica: chardev 1:3 not recreated \(needs root and mknod\); a replica without it can never match/);
      return true;
    });
    // with the right, it is made
    await applyTree(join(tmpPath, 'replica2'), null, root, { store: site.store });
  });
});
