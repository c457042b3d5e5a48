// Staging (src/replication/stage.ts): a baseline's trees, handed to a Stager
// bottom up as they arrive, are written into the member's staging area, each
// taking in its staged subdirectories; the apply then moves staged subtrees
// into place instead of writing them. The runner here stages in-process with
// stageTree, as an apply worker would. What must hold: the replica comes out
// equal to the source; a tree holding a hard link (and every tree above it)
// is not staged; a tree that occurs twice is taken once and written at its
// other place; what the apply is told was written is what lstat sees in
// place; a staging area left by an earlier process (nothing recorded) is
// still used; the member root's own files are moved from the staged root,
// never written a second time; nothing is left in the staging area.
import { dirEntries } from '../../../src/snapshot/dir-pages.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, linkSync, lstatSync, mkdirSync, readdirSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createVolume } from '../../../src/site/volumes.ts';
import { createSnapshot } from '../../../src/site/snapshots.ts';
import { readManifest } from '../../../src/snapshot/graph.ts';
import type { ObjectId } from '../../../src/core/ids.ts';
import type { ObjectReader } from '../../../src/store/types.ts';
import { applyTree } from '../../../src/replication/apply.ts';
import { STAGE_DIR, Stager, stageTree, type StageRecord, type StageRunner } from '../../../src/replication/stage.ts';
import { dropStagedFiles, putStagedFiles, stagedFilesOf } from '../../../src/catalog/secondaries.ts';
import type { Catalog } from '../../../src/catalog/catalog.ts';
import type { CachedFile } from '../../../src/snapshot/stat-cache.ts';
import { assertTreesEqual } from '../../helpers.ts';
import { withLocalSite } from '../local-site.ts';

/** Every tree below `root` (root included), each after all of its subtrees: the order a transfer sends them. */
function bottomUp(store: ObjectReader, root: ObjectId): ObjectId[] {
  const out: ObjectId[] = [];
  const seen = new Set<string>();
  const visit = (id: ObjectId) => {
    if (seen.has(id)) return;
    seen.add(id);
    for (const e of dirEntries(store, id)) if (e.type === 'dir') visit(e.tree!);
    out.push(id);
  };
  visit(root);
  return out;
}

function sourceTree(data: string, withLink: boolean): void {
  const files = (dir: string, n: number) => {
    mkdirSync(join(data, dir), { recursive: true });
    for (let i = 0; i < n; i++) writeFileSync(join(data, dir, `f${i}`), `${dir} ${i}\n`.repeat(i + 3));
  };
  files('a', 2);
  files('a/x', 3);
  files('a/x/y', 1);
  files('a/empty', 0);
  files('b/empty', 0); // the same (empty) tree as a/empty
  files('dup1', 2);
  files('dup2', 0);
  for (let i = 0; i < 2; i++) writeFileSync(join(data, 'dup2', `f${i}`), `dup1 ${i}\n`.repeat(i + 3)); // dup2 = dup1
  symlinkSync('../a/f0', join(data, 'a', 'x', 'sym'));
  writeFileSync(join(data, 'root-file'), 'at the root\n');
  if (withLink) {
    files('linked/inner', 1);
    linkSync(join(data, 'a', 'f1'), join(data, 'linked', 'inner', 'hard')); // a hard link: not staged, nor what is above it
  }
  for (const d of ['a', 'a/x', 'a/empty', 'b', 'dup1', 'dup2']) utimesSync(join(data, d), new Date('2016-01-02T03:04:05Z'), new Date('2016-01-02T03:04:05Z'));
  utimesSync(join(data, 'dup2'), new Date('2015-01-02T03:04:05Z'), new Date('2015-01-02T03:04:05Z'));
}

/** The record a daemon gives its Stager (receive/host.ts): the catalog's stage_written rows. */
function catalogRecord(cat: Catalog, volume: string): StageRecord {
  return { put: (rows) => putStagedFiles(cat, volume, rows), of: (tree) => stagedFilesOf(cat, volume, tree), drop: (tree) => dropStagedFiles(cat, volume, tree) };
}
const stagedRows = (cat: Catalog, volume: string) => cat.db.all<{ tree: string }>('SELECT tree FROM stage_written WHERE volume = ?', volume).map((r) => r.tree);

test('a baseline staged as its trees arrive is moved into place by the apply, and comes out equal', async () => {
  await withLocalSite('stage', async ({ dir: tmp, site, pool }) => {
    const data = join(tmp, 'data');
    sourceTree(data, true);
    createVolume(site, 'v', { members: [{ path: data }] });
    const snap = (await createSnapshot(site, 'v', { pool })).snapshot;
    const root = readManifest(site.store, snap.manifest).members[0].root;
    const trees = bottomUp(site.store, root);
    const entries = (id: ObjectId) => dirEntries(site.store, id);
    const linkedTree = entries(root).find((e) => e.name.toString() === 'linked')!.tree!;

    const replica = join(tmp, 'replica');
    mkdirSync(replica);
    const ran: ObjectId[] = [];
    const run: StageRunner = async (job) => {
      await new Promise((r) => setTimeout(r, 2)); // answer later, as a worker would
      ran.push(job.tree);
      return stageTree(job.root, job.tree, { store: site.store });
    };
    // What the staging wrote is kept in the catalog, not in memory (a million files' worth at a
    // baseline); rows another staging of the volume left are dropped when this one begins.
    putStagedFiles(site.catalog, 'v', [[root, Buffer.from('old'), Buffer.from('stale')]]);
    const stager = new Stager(replica, run, site.store, catalogRecord(site.catalog, 'v'));
    assert.deepEqual(stagedRows(site.catalog, 'v'), [], 'a new staging drops the rows of an earlier one');
    for (const id of trees) stager.add(id, entries(id));
    await stager.drain();
    const recorded = new Set(stagedRows(site.catalog, 'v'));
    assert.ok(recorded.size >= 3 && [...recorded].every((t) => ran.includes(t as ObjectId)), `rows per staged tree: ${[...recorded].join(', ')}`);
    // Neither the tree holding the hard link nor the root (above it) was even tried.
    assert.ok(!ran.includes(linkedTree) && !ran.includes(root), 'a tree holding a hard link is not staged');
    assert.equal(stager.counts.failed, 0);
    const area = join(replica, STAGE_DIR);
    // Whole staged trees sit at the top of the area; those taken into a parent sit inside it.
    const top = readdirSync(area).sort();
    assert.ok(top.every((n) => /^[0-9a-f]{64}$/.test(n)), `only finished trees are left: ${top.join(', ')}`);

    const written = new Map<string, CachedFile>();
    const stats = await applyTree(replica, null, root, {
      store: site.store,
      staged: stager.take,
      onFileWritten: (dir, name, f) => written.set(dir ? `${dir}/${name}` : name, f),
    });
    assert.deepEqual(stagedRows(site.catalog, 'v'), [], 'the rows of every tree taken are gone once the apply read them');
    putStagedFiles(site.catalog, 'v', [[root, Buffer.from('x'), Buffer.from('left')]]);
    stager.clear();
    assert.deepEqual(stagedRows(site.catalog, 'v'), [], 'clearing the staging drops its rows');
    assert.ok(!existsSync(area), 'the staging area is gone');
    assertTreesEqual(replica, data);
    assert.ok(stager.counts.taken >= 3, JSON.stringify(stager.counts));
    // Files of staged subtrees are reported under their place in the replica, as lstat sees them there.
    for (const rel of ['a/x/y/f0', 'a/f0', 'dup1/f1', 'dup2/f1', 'linked/inner/f0', 'root-file']) {
      const f = written.get(rel);
      assert.ok(f, `${rel} reported as written (got ${[...written.keys()].join(', ')})`);
      const st = lstatSync(join(replica, rel), { bigint: true });
      assert.deepEqual([f.ino, f.size, f.mtimeNs, f.ctimeNs], [st.ino, Number(st.size), st.mtimeNs, st.ctimeNs], rel);
    }
    assert.ok(stats.created >= 15, JSON.stringify(stats));
  });
});

test('a staging area left by an earlier process is used without its record; bad ids are ignored', async () => {
  await withLocalSite('stage-restart', async ({ dir: tmp, site, pool }) => {
    const data = join(tmp, 'data');
    sourceTree(data, false);
    createVolume(site, 'v', { members: [{ path: data }] });
    const snap = (await createSnapshot(site, 'v', { pool })).snapshot;
    const root = readManifest(site.store, snap.manifest).members[0].root;
    const replica = join(tmp, 'replica');
    mkdirSync(replica);
    const run: StageRunner = async (job) => stageTree(job.root, job.tree, { store: site.store });
    const first = new Stager(replica, run, site.store);
    for (const id of bottomUp(site.store, root)) first.add(id, dirEntries(site.store, id));
    await first.drain();
    // Staging the same tree again finds it done.
    const again = stageTree(Buffer.from(replica), root, { store: site.store });
    assert.equal(again.staged, true);
    assert.equal(again.existed, true);
    // A name that is not a tree id is never a path.
    assert.equal(stageTree(Buffer.from(replica), '../../etc' as ObjectId, { store: site.store }).staged, false);

    // A new process: nothing recorded, the root's subtrees are inside the staged root.
    const second = new Stager(replica, run, site.store);
    await second.drain();
    assert.equal(second.take('../x' as ObjectId, Buffer.from(join(replica, 'nowhere'))), undefined);
    await applyTree(replica, null, root, { store: site.store, staged: second.take });
    assert.ok(second.counts.taken >= 3, `the earlier staging was used: ${JSON.stringify(second.counts)}`);
    second.clear();
    assertTreesEqual(replica, data);
    assert.ok(!existsSync(join(tmp, 'nowhere')) && !existsSync(join(replica, 'nowhere')));
  });
});

test('a staged tree something was taken out of is not taken whole by a later process (a crash mid-apply)', async () => {
  await withLocalSite('stage-broken', async ({ dir: tmp, site, pool }) => {
    const data = join(tmp, 'data');
    sourceTree(data, true); // the root holds a hard link below it: `a` sits at the top of the area, whole
    createVolume(site, 'v', { members: [{ path: data }] });
    const snap = (await createSnapshot(site, 'v', { pool })).snapshot;
    const root = readManifest(site.store, snap.manifest).members[0].root;
    const entries = (id: ObjectId) => dirEntries(site.store, id);
    const aTree = entries(root).find((e) => e.name.toString() === 'a')!.tree!;
    const xTree = entries(aTree).find((e) => e.name.toString() === 'x')!.tree!;
    const replica = join(tmp, 'replica');
    mkdirSync(replica);
    const run: StageRunner = async (job) => stageTree(job.root, job.tree, { store: site.store });
    const first = new Stager(replica, run, site.store);
    for (const id of bottomUp(site.store, root)) first.add(id, entries(id));
    await first.drain();
    const area = join(replica, STAGE_DIR);
    assert.ok(existsSync(join(area, aTree)), '`a` is staged whole at the top of the area');
    // An apply that took a/x out (as for another place holding the same tree) and then died.
    mkdirSync(join(tmp, 'elsewhere'));
    assert.ok(first.take(xTree, Buffer.from(join(tmp, 'elsewhere', 'x'))));
    assert.ok(!existsSync(join(area, aTree)) && existsSync(join(area, `${aTree}.broken`)), '`a` is marked broken on disk');

    // The next process must not take `a` whole: it lacks x.
    const second = new Stager(replica, run, site.store);
    await second.drain();
    await applyTree(replica, null, root, { store: site.store, staged: second.take });
    second.clear();
    assertTreesEqual(replica, data);
  });
});

test('subtrees an earlier process staged, taken into a tree staged now, are still found and taken', async () => {
  await withLocalSite('stage-mixed', async ({ dir: tmp, site, pool }) => {
    const data = join(tmp, 'data');
    sourceTree(data, false);
    createVolume(site, 'v', { members: [{ path: data }] });
    const snap = (await createSnapshot(site, 'v', { pool })).snapshot;
    const root = readManifest(site.store, snap.manifest).members[0].root;
    const entries = (id: ObjectId) => dirEntries(site.store, id);
    const replica = join(tmp, 'replica');
    mkdirSync(replica);
    const run: StageRunner = async (job) => stageTree(job.root, job.tree, { store: site.store });
    // The earlier process staged everything but the root, then died.
    const first = new Stager(replica, run, site.store);
    for (const id of bottomUp(site.store, root).filter((id) => id !== root)) first.add(id, entries(id));
    await first.drain();
    // This process receives the root: its staging takes the earlier subtrees in, with no record of them.
    const second = new Stager(replica, run, site.store);
    second.add(root, entries(root));
    await second.drain();
    assert.ok(!existsSync(join(replica, STAGE_DIR, entries(root).find((e) => e.name.toString() === 'a')!.tree!)), '`a` was taken into the staged root');
    await applyTree(replica, null, root, { store: site.store, staged: second.take });
    second.clear();
    assertTreesEqual(replica, data);
    const topDirs = entries(root).filter((e) => e.type === 'dir').length;
    assert.ok(second.counts.taken >= topDirs - 1, `the earlier subtrees were taken out of the staged root: ${JSON.stringify(second.counts)} of ${topDirs}`);
  });
});

test('the member root staged whole: its own files are moved into place, not written again, and a later process never takes the root as whole', async () => {
  await withLocalSite('stage-root', async ({ dir: tmp, site, pool }) => {
    const data = join(tmp, 'data');
    sourceTree(data, false); // no hard link: the root itself is staged, with its file `root-file`
    createVolume(site, 'v', { members: [{ path: data }] });
    const snap = (await createSnapshot(site, 'v', { pool })).snapshot;
    const root = readManifest(site.store, snap.manifest).members[0].root;
    const entries = (id: ObjectId) => dirEntries(site.store, id);
    const run: StageRunner = async (job) => stageTree(job.root, job.tree, { store: site.store });
    const stageAll = async (replica: string) => {
      mkdirSync(replica);
      const stager = new Stager(replica, run, site.store);
      for (const id of bottomUp(site.store, root)) stager.add(id, entries(id));
      await stager.drain();
      return stager;
    };

    const replica = join(tmp, 'replica');
    const stager = await stageAll(replica);
    const area = join(replica, STAGE_DIR);
    const staged = lstatSync(join(area, root, 'root-file'));
    const written = new Map<string, CachedFile>();
    await applyTree(replica, null, root, { store: site.store, staged: stager.take, stagedEntry: stager.takeEntry, onFileWritten: (d, n, f) => written.set(d ? `${d}/${n}` : n, f) });
    const inPlace = lstatSync(join(replica, 'root-file'), { bigint: true });
    assert.equal(inPlace.ino, BigInt(staged.ino), 'the root file was moved from the staging area, not written again');
    const f = written.get('root-file');
    assert.deepEqual([f?.ino, f?.size, f?.ctimeNs], [inPlace.ino, Number(inPlace.size), inPlace.ctimeNs], 'reported as lstat sees it in place');
    assert.ok(!existsSync(join(area, root)) && existsSync(join(area, `${root}.broken`)), 'the staged root, no longer whole, is marked broken');
    stager.clear();
    assertTreesEqual(replica, data);

    // A crash right after the first root file was moved: the next process writes the rest.
    const replica2 = join(tmp, 'replica2');
    const first = await stageAll(replica2);
    assert.ok(first.takeEntry(root, Buffer.from('root-file'), Buffer.from(join(replica2, 'root-file'))));
    assert.ok(existsSync(join(replica2, STAGE_DIR, `${root}.broken`)));
    const second = new Stager(replica2, run, site.store);
    await second.drain();
    await applyTree(replica2, null, root, { store: site.store, staged: second.take, stagedEntry: second.takeEntry });
    second.clear();
    assertTreesEqual(replica2, data);
  });
});
