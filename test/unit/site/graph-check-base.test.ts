// The commit check against a base (checkSnapshotGraph with a CompleteBase): subtrees that are the
// base's at the same path are not walked, files that are the base's there are not looked up, and
// everything else is checked exactly as without a base: a chunk missing from a changed file, or
// from an unchanged file moved to another directory, is still found.
import { NO_TEST_KNOBS, installTestKnobs } from '../../../src/core/test-knobs.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FerryError } from '../../../src/core/errors.ts';
import type { ObjectId } from '../../../src/core/ids.ts';
import { checkSnapshotGraph, type CompleteBase } from '../../../src/replication/receive/graph.ts';
import { createSnapshot } from '../../../src/site/snapshots.ts';
import { createVolume } from '../../../src/site/volumes.ts';
import { decodeSnapshot, decodeTree } from '../../../src/snapshot/format.ts';
import type { ObjectReader } from '../../../src/store/types.ts';
import { withLocalSite } from '../local-site.ts';

/** The store as the check sees it, with some objects hidden (missing), counting the look-ups. */
function hiding(store: ObjectReader, hidden: Set<string>) {
  const counts = { get: 0, info: 0 };
  const r: ObjectReader = {
    has: (id) => !hidden.has(id) && store.has(id),
    get: (id) => {
      counts.get++;
      if (hidden.has(id)) throw new FerryError('OBJECT_NOT_FOUND', `object ${id} not found`);
      return store.get(id);
    },
    info: (id) => {
      counts.info++;
      return hidden.has(id) ? undefined : store.info(id);
    },
  };
  return { r, counts };
}

function fileChunks(store: ObjectReader, root: ObjectId, path: string[]): ObjectId[] {
  let tree = decodeTree(store.get(root));
  for (const [i, name] of path.entries()) {
    const e = tree.entries.find((x) => x.name.toString() === name)!;
    if (i === path.length - 1) return e.chunks!;
    tree = decodeTree(store.get(e.tree!));
  }
  throw new Error('unreachable');
}


// The read counts below are for directories stored as one tree each (the default rule: a run with
// every directory paged, FERRY_TEST_TREE_PAGE_MIN, does not change it here).
installTestKnobs(NO_TEST_KNOBS);

test('a check against the base walks only what differs from it, and still finds what is missing there', async () => {
  await withLocalSite('graph-base', async ({ dir, site, pool }) => {
    const data = join(dir, 'data');
    for (let d = 0; d < 20; d++) {
      mkdirSync(join(data, `d${d}`), { recursive: true });
      for (let f = 0; f < 20; f++) writeFileSync(join(data, `d${d}`, `f${f}`), `${d}/${f}\n`.repeat(20 + f));
    }
    createVolume(site, 'v', { members: [{ name: 'data', path: data }] });
    const first = await createSnapshot(site, 'v', { pool });
    appendFileSync(join(data, 'd3', 'f1'), 'changed\n');
    renameSync(join(data, 'd5', 'f2'), join(data, 'd6', 'moved'));
    const second = await createSnapshot(site, 'v', { pool });
    const root = (m: string) => decodeSnapshot(site.store.get(m as ObjectId)).members[0].root;
    const base: CompleteBase = { roots: new Map([['data', root(first.snapshot.manifest)]]) };

    // Everything here: complete either way; with the base, far fewer look-ups.
    const full = hiding(site.store, new Set());
    assert.equal(checkSnapshotGraph(full.r, second.snapshot.manifest, 's').missing, 0);
    const rel = hiding(site.store, new Set());
    const r = checkSnapshotGraph(rel.r, second.snapshot.manifest, 's', undefined, base);
    assert.equal(r.missing, 0);
    assert.equal(r.links, 0);
    assert.ok(full.counts.info >= 400, `full check looked up ${full.counts.info} chunks`);
    assert.ok(rel.counts.info <= 4, `the check against the base looked up ${rel.counts.info} chunks (the changed file's and the moved one's)`);
    // objects read: the manifest, then the new and the base's tree of the root, d3, d5 and d6 (not the other 17 directories)
    assert.equal(full.counts.get, 22);
    assert.equal(rel.counts.get, 9);

    // A chunk of the changed file missing: found with the base too.
    const changed = fileChunks(site.store, root(second.snapshot.manifest), ['d3', 'f1']);
    const h1 = hiding(site.store, new Set([changed.at(-1)!]));
    assert.equal(checkSnapshotGraph(h1.r, second.snapshot.manifest, 's', undefined, base).missing, 1);
    // The moved file's chunk missing (it is the base's content, at another path): found.
    const moved = fileChunks(site.store, root(second.snapshot.manifest), ['d6', 'moved']);
    const h2 = hiding(site.store, new Set([moved[0]]));
    assert.equal(checkSnapshotGraph(h2.r, second.snapshot.manifest, 's', undefined, base).missing, 1);
  });
});
