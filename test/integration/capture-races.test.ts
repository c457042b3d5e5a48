// Files that vanish or change while a snapshot is being taken. The race is
// arranged deterministically: a chunk pool that removes (or rewrites) the file
// just before reading it, after the walker has listed and stat'ed it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Site } from '../../src/site/site.ts';
import { createVolume } from '../../src/site/volumes.ts';
import { collectGarbage, createSnapshot, executeDeleteSnapshots, planDeleteSnapshots } from '../../src/site/snapshots.ts';
import { readManifest } from '../../src/snapshot/graph.ts';
import { restoreTree } from '../../src/snapshot/restore.ts';
import { verifySnapshots } from '../../src/snapshot/verify.ts';
import { ChunkPool } from '../../src/snapshot/chunk-pool.ts';
import { tempDir } from '../helpers.ts';

class RacingPool extends ChunkPool {
  readonly #before: (path: Buffer) => void;
  constructor(before: (path: Buffer) => void) {
    super({ workers: 1 });
    this.#before = before;
  }
  override chunkFile(path: Buffer, sizeHint?: number) {
    this.#before(path);
    return super.chunkFile(path, sizeHint);
  }
}

test('a file that vanishes during capture is reported; the snapshot completes with the others', async () => {
  const tmp = tempDir();
  const site = Site.init(join(tmp.path, 'home'), 'race');
  const pool = new RacingPool((p) => {
    if (p.toString().endsWith('/goes-away')) unlinkSync(p);
    if (p.toString().endsWith('/dir-goes/inner')) rmSync(join(tmp.path, 'data', 'dir-goes'), { recursive: true });
  });
  try {
    const data = join(tmp.path, 'data');
    mkdirSync(join(data, 'dir-goes'), { recursive: true });
    writeFileSync(join(data, 'a-stays'), 'a\n');
    writeFileSync(join(data, 'goes-away'), 'soon gone\n');
    writeFileSync(join(data, 'dir-goes', 'inner'), 'inner\n');
    writeFileSync(join(data, 'z-stays'), 'z\n');
    createVolume(site, 'v', { members: [{ path: data }] });
    const warnings: Array<{ path: string; problem: string }> = [];
    const r = await createSnapshot(site, 'v', { pool, onWarning: (w) => warnings.push(w) });
    assert.deepEqual(warnings.map((w) => [w.path, w.problem]).sort(), [['data:dir-goes/inner', 'vanished'], ['data:goes-away', 'vanished']]);
    assert.equal(r.warnings.length, 2);
    const m = readManifest(site.store, r.snapshot.manifest);
    const out = join(tmp.path, 'out');
    restoreTree(m.members[0].root, '', out, { store: site.store });
    assert.equal(readFileSync(join(out, 'a-stays'), 'utf8'), 'a\n');
    assert.equal(readFileSync(join(out, 'z-stays'), 'utf8'), 'z\n');
    assert.equal(existsSync(join(out, 'goes-away')), false);
    assert.equal(existsSync(join(out, 'dir-goes', 'inner')), false);
    assert.equal(verifySnapshots(site.store, [r.snapshot]).damaged.length, 0);
    // The stats count only what was captured.
    assert.equal(r.stats.files, 2);
  } finally {
    await pool.close();
    site.close();
    tmp.cleanup();
  }
});

test('a file replaced by a directory between stat and read is reported, not followed', async () => {
  const tmp = tempDir();
  const site = Site.init(join(tmp.path, 'home'), 'race');
  const data = join(tmp.path, 'data');
  const pool = new RacingPool((p) => {
    if (p.toString().endsWith('/swapped')) {
      unlinkSync(p);
      mkdirSync(p);
      writeFileSync(join(p.toString(), 'x'), 'x');
    }
  });
  try {
    mkdirSync(data);
    writeFileSync(join(data, 'swapped'), 'file\n');
    writeFileSync(join(data, 'other'), 'other\n');
    createVolume(site, 'v', { members: [{ path: data }] });
    const warnings: Array<{ path: string; problem: string }> = [];
    const r = await createSnapshot(site, 'v', { pool, onWarning: (w) => warnings.push(w) });
    assert.deepEqual(warnings.map((w) => w.path), ['data:swapped']);
    const out = join(tmp.path, 'out');
    restoreTree(readManifest(site.store, r.snapshot.manifest).members[0].root, '', out, { store: site.store });
    assert.equal(readFileSync(join(out, 'other'), 'utf8'), 'other\n');
    assert.equal(existsSync(join(out, 'swapped')), false);
  } finally {
    await pool.close();
    site.close();
    tmp.cleanup();
  }
});

test('garbage collection waits for a capture in progress: a snapshot deleted mid-capture does not take the new chunks', async () => {
  const tmp = tempDir();
  const site = Site.init(join(tmp.path, 'home'), 'gc-race');
  const data = join(tmp.path, 'data');
  mkdirSync(data, { recursive: true });
  writeFileSync(join(data, 'a'), 'first version of a\n'.repeat(1000));
  createVolume(site, 'v', { members: [{ path: data }] });
  const first = await createSnapshot(site, 'v');
  // New content for `a` (new chunks, named by no snapshot until the capture commits), and a last file.
  writeFileSync(join(data, 'a'), 'second version of a, different chunks\n'.repeat(1000));
  writeFileSync(join(data, 'z-last'), 'last\n');
  let busy: unknown;
  let deferred: unknown = 'not run';
  const pool = new (class extends ChunkPool {
    override async chunkFile(path: Buffer, sizeHint?: number) {
      if (path.toString().endsWith('/z-last')) {
        await new Promise((r) => setTimeout(r, 300)); // let `a`'s chunks reach the store
        // The old snapshot goes while the capture runs: its collection must wait.
        deferred = executeDeleteSnapshots(site, planDeleteSnapshots(site, 'v', [first.snapshot.id])).gc;
        try {
          collectGarbage(site);
        } catch (err) {
          busy = err;
        }
      }
      return super.chunkFile(path, sizeHint);
    }
  })({ workers: 1 });
  try {
    const second = await createSnapshot(site, 'v', { pool });
    assert.equal(deferred, undefined, 'the collection should have been deferred');
    assert.equal((busy as { code?: string })?.code, 'STORE_BUSY');
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    const gcs = site.catalog.db.all<{ outcome: string }>("SELECT outcome FROM events WHERE kind = 'gc'");
    assert.deepEqual(gcs.map((g) => g.outcome), ['ok'], 'the deferred collection ran once the capture was done');
    assert.equal(verifySnapshots(site.store, [second.snapshot]).damaged.length, 0);
    const out = join(tmp.path, 'out');
    restoreTree(readManifest(site.store, second.snapshot.manifest).members[0].root, '', out, { store: site.store });
    assert.equal(readFileSync(join(out, 'a'), 'utf8'), 'second version of a, different chunks\n'.repeat(1000));
  } finally {
    await pool.close();
    site.close();
    tmp.cleanup();
  }
});
