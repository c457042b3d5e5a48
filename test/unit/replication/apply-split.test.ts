// applyTree hands new directories to ApplyOptions.subtrees: a new directory
// near the member root that has subdirectories is walked by the member's
// applier and its subdirectories go out one by one (so one large directory
// does not keep a single worker busy); a new directory without
// subdirectories, or deeper down, goes out whole. The runner here applies
// each job in-process with applySubtree, as a worker would, so the replica
// must come out equal, hard links across jobs included.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { linkSync, mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createVolume } from '../../../src/site/volumes.ts';
import { createSnapshot } from '../../../src/site/snapshots.ts';
import { readManifest } from '../../../src/snapshot/graph.ts';
import { applySubtree, applyTree, type SubtreeRunner } from '../../../src/replication/apply.ts';
import { assertTreesEqual } from '../../helpers.ts';
import { withLocalSite } from '../local-site.ts';

test('new directories near the root are split into their subdirectories; the rest go whole', async () => {
  await withLocalSite('split', async ({ dir: tmpPath, site, pool }) => {
    const data = join(tmpPath, 'data');
    const files = (dir: string, n: number) => {
      mkdirSync(join(data, dir), { recursive: true });
      for (let i = 0; i < n; i++) writeFileSync(join(data, dir, `f${i}`), `${dir} ${i}\n`.repeat(i + 1));
    };
    files('big', 2); // files of its own, and subdirectories: split
    files('big/a', 3);
    files('big/b', 3);
    files('big/b/deep', 2); // inside a job: goes with big/b
    files('flat', 4); // no subdirectories: whole
    files('top-files-only', 0);
    writeFileSync(join(data, 'root-file'), 'at the root\n');
    linkSync(join(data, 'big', 'a', 'f1'), join(data, 'big', 'b', 'deep', 'link')); // across two jobs
    for (const d of ['big', 'big/b', 'flat']) utimesSync(join(data, d), new Date('2017-03-04T05:06:07Z'), new Date('2017-03-04T05:06:07Z'));
    createVolume(site, 'v', { members: [{ path: data }] });
    const snap = (await createSnapshot(site, 'v', { pool })).snapshot;
    const root = readManifest(site.store, snap.manifest).members[0].root;

    const handed: string[] = [];
    const subtrees: SubtreeRunner = async (job) => {
      handed.push(job.rel);
      await new Promise((r) => setTimeout(r, 5)); // finish after the walk went on, as a worker would
      return { ...applySubtree(job.root, job.dir, job.rel, job.tree, job.meta, { store: site.store }), written: [], warnings: [] };
    };
    const replica = join(tmpPath, 'replica');
    const stats = await applyTree(replica, null, root, { store: site.store, subtrees });
    assert.deepEqual(handed.sort(), ['big/a', 'big/b', 'flat', 'top-files-only']);
    assert.ok(stats.created >= 17, JSON.stringify(stats));
    assertTreesEqual(replica, data);
  });
});
