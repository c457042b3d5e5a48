// Property: random tree -> snapshot -> restore gives the same tree, byte for
// byte and in metadata; and diff(A, B) names exactly what changed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Site } from '../../src/site/site.ts';
import { createVolume } from '../../src/site/volumes.ts';
import { createSnapshot } from '../../src/site/snapshots.ts';
import { readManifest } from '../../src/snapshot/graph.ts';
import { restoreTree } from '../../src/snapshot/restore.ts';
import { pathToText } from '../../src/snapshot/path-text.ts';
import { diffTrees, type PathChange } from '../../src/snapshot/diff.ts';
import { ChunkPool } from '../../src/snapshot/chunk-pool.ts';
import { assertTreesEqual, describeTree, tempDir } from '../helpers.ts';
import { materialize, treeArb } from '../tree-gen.ts';

test('random trees survive snapshot and restore exactly', async () => {
  const tmp = tempDir();
  const site = Site.init(join(tmp.path, 'home'), 'prop');
  const pool = new ChunkPool();
  let run = 0;
  try {
    await fc.assert(
      fc.asyncProperty(treeArb, async (nodes) => {
        run++;
        const data = join(tmp.path, `data-${run}`);
        mkdirSync(data);
        materialize(data, nodes);
        createVolume(site, `v${run}`, { members: [{ path: data }] });
        const r = await createSnapshot(site, `v${run}`, { pool });
        const m = readManifest(site.store, r.snapshot.manifest);
        const out = join(tmp.path, `out-${run}`);
        restoreTree(m.members[0].root, '', out, { store: site.store });
        assertTreesEqual(out, data);
        // A second snapshot of an unchanged tree reads nothing and has the same root.
        const again = await createSnapshot(site, `v${run}`, { pool });
        assert.equal(readManifest(site.store, again.snapshot.manifest).members[0].root, m.members[0].root);
        rmSync(out, { recursive: true });
      }),
      { numRuns: 12 },
    );
  } finally {
    await pool.close();
    site.close();
    tmp.cleanup();
  }
});

test('diff(A, B) lists exactly the paths that changed', async () => {
  const tmp = tempDir();
  const site = Site.init(join(tmp.path, 'home'), 'diff');
  const pool = new ChunkPool();
  let run = 0;
  try {
    await fc.assert(
      fc.asyncProperty(treeArb, treeArb, async (na, nb) => {
        run++;
        const a = join(tmp.path, `a-${run}`);
        const b = join(tmp.path, `b-${run}`);
        mkdirSync(a);
        mkdirSync(b);
        materialize(a, na);
        materialize(b, nb);
        createVolume(site, `a${run}`, { members: [{ path: a }] });
        createVolume(site, `b${run}`, { members: [{ path: b }] });
        const sa = await createSnapshot(site, `a${run}`, { pool });
        const sb = await createSnapshot(site, `b${run}`, { pool });
        const ra = readManifest(site.store, sa.snapshot.manifest).members[0].root;
        const rb = readManifest(site.store, sb.snapshot.manifest).members[0].root;
        const changes: PathChange[] = [];
        diffTrees(site.store, ra, rb, (c) => changes.push(c));
        // Expected from the filesystem: compare descriptions path by path.
        const da = describeTree(a);
        const db = describeTree(b);
        const key = (p: string) => pathToText(Buffer.from(p, 'latin1'));
        const expected = new Map<string, string>();
        for (const [p, e] of da) {
          const f = db.get(p);
          if (!f) expected.set(key(p), 'removed');
          else if (f.type !== e.type) expected.set(key(p), 'retyped');
          else if (f.content !== e.content || f.mode !== e.mode || f.uid !== e.uid || f.gid !== e.gid || (e.type !== 'symlink' && f.mtimeUs !== e.mtimeUs) || f.size !== e.size) expected.set(key(p), 'modified');
        }
        for (const p of db.keys()) if (!da.has(p)) expected.set(key(p), 'added');
        const got = new Map<string, string>();
        for (const c of changes) {
          const prev = got.get(c.path);
          got.set(c.path, prev && prev !== c.change ? 'retyped' : c.change);
        }
        // Hard links are stored as links to the first path; a file that is a link in one
        // tree and a file in the other is 'retyped' there. Compare only non-link paths.
        for (const [p, kind] of expected) {
          if (kind === 'retyped') assert.ok(got.has(p), `expected change at ${p}`);
          else if (kind === 'modified') assert.ok(got.has(p), `expected ${p} modified`);
          else assert.equal(got.get(p), kind, `path ${p}`);
        }
        for (const p of got.keys()) {
          if (!expected.has(p)) {
            // only hard-link re-pointing may differ without a visible change
            const e = [...da.entries()].find(([k]) => key(k) === p)?.[1];
            assert.ok(e?.ino !== undefined || [...db.entries()].find(([k]) => key(k) === p)?.[1]?.ino !== undefined, `unexpected change at ${p}`);
          }
        }
      }),
      { numRuns: 10 },
    );
  } finally {
    await pool.close();
    site.close();
    tmp.cleanup();
  }
});
