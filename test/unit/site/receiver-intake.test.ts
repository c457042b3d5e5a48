// The receiver's intake (SiteReceiver.put) keeps the invariant the next
// negotiation trusts: a tree held here has everything below it. Against a real
// site whose pack files sit on a simulated small disk (writes past a size fail
// with ENOSPC, as on a full filesystem where an abandoned pack's space comes
// back) or whose fsync fails, every failure path of a request is driven: this
// request's own write failing mid-stream, another writer's failed write
// discarding objects this request stored or skipped as already here (before,
// during and after its last store), an fsync error, an object refused, a bad
// delta, a cut stream. After each, every tree in the index has everything
// below it, nothing after a failure is stored, and the same stream sent again
// once the disk has room completes the whole graph. The same rule holds for a
// local capture (PackStore's WriteSession): one whose pending objects another
// writer's failure discarded is not recorded.
import { installTestKnobs, testKnobs } from '../../../src/core/test-knobs.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { hashBytes, objectIdFromBytes } from '../../../src/core/ids.ts';
import { encodeTree, decodeTree } from '../../../src/snapshot/format.ts';
import type { TreeEntry } from '../../../src/snapshot/model.ts';
import { CODEC_NONE, type PreparedObject } from '../../../src/store/types.ts';
import { KIND_CODES, type PackFileIo } from '../../../src/store/pack.ts';
import { WIRE_DELTA, type WireObject } from '../../../src/replication/protocol.ts';
import { PROTOCOL_VERSION } from '../../../src/replication/types.ts';
import { checkSnapshotGraph } from '../../../src/replication/receive/graph.ts';
import { SiteReceiver } from '../../../src/site/receiver.ts';
import { createSnapshot } from '../../../src/site/snapshots.ts';
import { createVolume } from '../../../src/site/volumes.ts';
import type { Site } from '../../../src/site/site.ts';
import { withLocalSite } from '../local-site.ts';
import { listSnapshots } from '../../../src/catalog/snapshots.ts';

const MiB = 1 << 20;
const PEER = 'A'.repeat(52);

/** Pack file I/O on a small disk: a write reaching past `limit` bytes fails with ENOSPC; fsync fails while `fsyncFails`. */
class SmallDisk implements PackFileIo {
  limit = Infinity;
  fsyncFails = false;
  write(fd: number, buf: Uint8Array, offset: number, length: number, position: number): number {
    if (position + length > this.limit) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    return writeSync(fd, buf, offset, length, position);
  }
  fsync(): void {
    if (this.fsyncFails) throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
  }
  fsyncDir(): void {}
}

const meta = { mode: 0o644, uid: 0, gid: 0, mtimeNs: 0n, xattrs: [] as Array<[Buffer, Buffer]> };

/** A chunk of random bytes (`label` says what it stands for in the test). */
function chunk(_label: string, size = 1000): PreparedObject {
  const bytes = randomBytes(size);
  return { kind: 'chunk', id: hashBytes(bytes), rawLength: bytes.length, codec: CODEC_NONE, stored: bytes };
}

/** A tree of files (name -> its chunks) and subdirectories (name -> tree). */
function tree(files: Record<string, PreparedObject[]>, dirs: Record<string, PreparedObject> = {}): PreparedObject {
  const entries: TreeEntry[] = [
    ...Object.entries(files).map(([name, cs]) => ({ ...meta, name: Buffer.from(name), type: 'file' as const, size: cs.reduce((n, c) => n + c.rawLength, 0), chunks: cs.map((c) => c.id) })),
    ...Object.entries(dirs).map(([name, t]) => ({ ...meta, name: Buffer.from(name), type: 'dir' as const, mode: 0o755, size: 0, tree: t.id })),
  ].sort((a, b) => Buffer.compare(a.name, b.name));
  const bytes = encodeTree({ entries });
  return { kind: 'tree', id: hashBytes(bytes), rawLength: bytes.length, codec: CODEC_NONE, stored: bytes };
}

/** Every tree in the index, with what it names that the store does not hold. */
function treesLacking(site: Site): string[] {
  const out: string[] = [];
  for (const row of site.catalog.db.all<{ id: Uint8Array }>('SELECT id FROM objects WHERE kind = ?', KIND_CODES.tree)) {
    const id = objectIdFromBytes(row.id);
    for (const e of decodeTree(site.store.get(id)).entries) {
      for (const below of e.type === 'dir' ? [e.tree!] : (e.chunks ?? [])) {
        if (!site.store.info(below)) out.push(`tree ${id.slice(0, 8)} names ${e.name} (${below.slice(0, 8)}), which is not here`);
      }
    }
  }
  return out;
}

function indexed(site: Site): number {
  return site.catalog.db.get<{ n: number }>('SELECT count(*) AS n FROM objects')!.n;
}

/** A secondary of PEER (two tree members: no staging) and its receiver. */
async function receiverFor(site: Site, pool: ConstructorParameters<typeof SiteReceiver>[2]): Promise<SiteReceiver> {
  const rx = new SiteReceiver(site, PEER, pool);
  await rx.hello({ protocol: PROTOCOL_VERSION, sourceVolume: 'vol', volume: 'vol', members: [{ name: 'a', kind: 'tree' }, { name: 'b', kind: 'tree' }] });
  return rx;
}

async function* stream(objects: Array<WireObject | (() => void | Promise<void>)>): AsyncGenerator<WireObject> {
  for (const o of objects) {
    if (typeof o === 'function') await o();
    else yield o;
  }
}

/** A graph of 8 MiB of chunks: d1 over c1..c8, d2 over c9, the root over both (bottom up, as a sender sends). */
function graph() {
  const big = Array.from({ length: 8 }, (_, i) => chunk(`big ${i}`, MiB));
  const c9 = chunk('small 9');
  const d1 = tree({ f1: big.slice(0, 4), f2: big.slice(4) });
  const d2 = tree({ g: [c9] });
  const root = tree({}, { d1, d2 });
  return { all: [...big, d1, c9, d2, root], root };
}

test('a write failing mid-request (disk full): nothing taken after it is stored, no tree lacks anything, and the request sent again completes', async () => {
  const disk = new SmallDisk();
  await withLocalSite('rx', async ({ site, pool }) => {
    const rx = await receiverFor(site, pool);
    const g = graph();
    // Buffered writes of ~3 MiB: the first reaches 3 MiB, the second would reach 6 MiB and fails.
    disk.limit = 5 * MiB;
    await assert.rejects(rx.put('vol', stream(g.all)), (err: any) => err.code === 'NO_SPACE' && /disk is full/.test(err.message));
    assert.deepEqual(treesLacking(site), []);
    assert.equal(site.store.has(g.root.id), false, 'the root, taken after the failure, was stored');
    // Space is freed: the next attempt's question finds none of it durable, and the same stream completes.
    disk.limit = Infinity;
    assert.deepEqual(await rx.missing('vol', g.all.map((o) => o.id)), g.all.map(() => true));
    const r = await rx.put('vol', stream(g.all));
    assert.equal(r.stored, g.all.length);
    assert.deepEqual(treesLacking(site), []);
    assert.deepEqual(await rx.missing('vol', g.all.map((o) => o.id)), g.all.map(() => false));
  }, { storeIo: disk });
});

test('another writer\'s failed write discards what this request stored or skipped as here: nothing more is stored, and the request fails', async () => {
  const disk = new SmallDisk();
  await withLocalSite('rx', async ({ site, pool }) => {
    const rx = await receiverFor(site, pool);
    const fail = () => {
      // another writer (a capture here, another transfer) writes past the disk's end
      disk.limit = 5 * MiB;
      assert.throws(() => site.store.put('chunk', randomBytes(6 * MiB)), (err: any) => err.code === 'NO_SPACE');
      disk.limit = Infinity;
    };
    // Stored one object at a time (the budget refuses to hold more), so the failure falls between stores.
    const oneAtATime = { hold: (n: number) => n === 0 };

    // During the request: c0 was pending from the other writer (skipped here as already held), c1 stored here.
    const c0 = chunk('other writer\'s pending chunk');
    const c1 = chunk('stored here');
    const t = tree({ f: [c0, c1] });
    site.store.put('chunk', c0.stored);
    await assert.rejects(rx.put('vol', stream([c0, c1, () => assert.ok(site.store.has(c1.id)), fail, t]), undefined, oneAtATime), (err: any) => err.code === 'NO_SPACE' && /discarded/.test(err.message));
    assert.equal(site.store.has(t.id), false, 'the tree after the discard was stored');
    assert.deepEqual(treesLacking(site), []);

    // After this request's last store, before its flush: it must not answer as if all were stored.
    const c2 = chunk('last');
    const t2 = tree({ f: [c2] });
    await assert.rejects(rx.put('vol', stream([c2, t2, fail]), undefined, oneAtATime), (err: any) => err.code === 'NO_SPACE');
    assert.equal(site.store.has(t2.id), false);
    assert.deepEqual(treesLacking(site), []);

    // Sent again: complete.
    await rx.put('vol', stream([c0, c1, t, c2, t2]));
    assert.deepEqual(await rx.missing('vol', [c0, c1, t, c2, t2].map((o) => o.id)), [false, false, false, false, false]);
    assert.deepEqual(treesLacking(site), []);
  }, { storeIo: disk });
});

test('an fsync error when the request is made durable: its objects are discarded as a unit, and the request fails with IO', async () => {
  const disk = new SmallDisk();
  await withLocalSite('rx', async ({ site, pool }) => {
    const rx = await receiverFor(site, pool);
    const c = chunk('c');
    const t = tree({ f: [c] });
    disk.fsyncFails = true;
    await assert.rejects(rx.put('vol', stream([c, t])), (err: any) => err.code === 'IO');
    assert.equal(indexed(site), 0);
    disk.fsyncFails = false;
    await rx.put('vol', stream([c, t]));
    assert.deepEqual(treesLacking(site), []);
    assert.equal(site.store.has(t.id), true);
  }, { storeIo: disk });
});

test('an object refused, a bad delta, a cut stream: what came before is stored and durable, nothing after', async () => {
  await withLocalSite('rx', async ({ site, pool }) => {
    const rx = await receiverFor(site, pool);
    // refused: its bytes are not its id
    const a = chunk('a');
    const bad = { ...chunk('b'), id: chunk('not b').id };
    const ta = tree({ f: [a] });
    await assert.rejects(rx.put('vol', stream([a, bad, ta])), (err: any) => err.code === 'OBJECT_CORRUPT');
    assert.equal(site.store.has(a.id), true);
    assert.equal(site.store.has(ta.id), false);

    // a delta against a reference this site does not hold
    const c = chunk('c');
    const delta: WireObject = { kind: 'chunk', id: chunk('d').id, rawLength: 1000, codec: WIRE_DELTA, refs: [chunk('unknown').id], dictOffset: 0, dictLength: 10, stored: Buffer.alloc(20) };
    const tc = tree({ f: [c] });
    await assert.rejects(rx.put('vol', stream([c, delta, tc])), (err: any) => err.code === 'PROTOCOL');
    assert.equal(site.store.has(c.id), true);
    assert.equal(site.store.has(tc.id), false);

    // cut after a tree whose chunk came before it: both kept, durable
    const e = chunk('e');
    const te = tree({ f: [e] });
    const cutStream = stream([e, te, () => { throw Object.assign(new Error('stream reset'), { code: 'ECONNRESET' }); }]);
    await assert.rejects(rx.put('vol', cutStream), /stream reset/);
    assert.deepEqual(await rx.missing('vol', [e.id, te.id]), [false, false]);
    assert.equal(site.store.pendingCount, 0);
    assert.deepEqual(treesLacking(site), []);
  });
});

test('the negotiation answers an object as held only when it is durable: not while pending, not when its pack file is gone', async () => {
  await withLocalSite('rx', async ({ site, pool }) => {
    const rx = await receiverFor(site, pool);
    const c = chunk('c');
    site.store.put('chunk', c.stored);
    assert.deepEqual(await rx.missing('vol', [c.id]), [true], 'a pending object is not held yet');
    site.store.flush();
    assert.deepEqual(await rx.missing('vol', [c.id]), [false]);
    // the pack file is lost while the daemon runs (its row stays): asked for again
    const pack = site.catalog.db.get<{ name: string }>('SELECT name FROM packs')!.name;
    rmSync(site.store.packPath(pack));
    assert.deepEqual(await rx.missing('vol', [c.id]), [true]);
    assert.equal(site.store.listLostPacks().length, 1, 'the pack is marked lost');
    await rx.put('vol', stream([c]));
    assert.deepEqual(await rx.missing('vol', [c.id]), [false], 'stored again, it is held');
  });
});

test('a local capture whose pending objects another writer\'s failed write discarded is not recorded, and stores nothing after it', async () => {
  const disk = new SmallDisk();
  await withLocalSite('cap', async ({ dir, site, pool }) => {
    const data = join(dir, 'data');
    mkdirSync(join(data, 'sub'), { recursive: true });
    for (let i = 0; i < 3; i++) writeFileSync(join(data, 'sub', `f${i}`), randomBytes(100_000));
    createVolume(site, 'v', { members: [{ path: data }] });
    const release = join(dir, 'release');
    // Hold the capture once every member is captured, before its manifest (its objects are pending).
    const saved = testKnobs();
    installTestKnobs({ ...saved, pauseAt: ['snapshot:before-manifest'], pauseFile: release });
    try {
      const capture = createSnapshot(site, 'v', { pool });
      capture.catch(() => {});
      while (site.store.pendingCount === 0) await new Promise((r) => setTimeout(r, 10));
      disk.limit = 5 * MiB;
      assert.throws(() => site.store.put('chunk', randomBytes(6 * MiB)), (err: any) => err.code === 'NO_SPACE');
      disk.limit = Infinity;
      writeFileSync(release, '');
      await assert.rejects(capture, (err: any) => err.code === 'NO_SPACE');
      assert.equal(listSnapshots(site.catalog, 'v').length, 0, 'a snapshot was recorded whose objects were discarded');
      assert.deepEqual(treesLacking(site), []);
      const ok = await createSnapshot(site, 'v', { pool });
      assert.equal(checkSnapshotGraph(site.store, ok.snapshot.manifest as never, 'snapshot').missing, 0);
    } finally {
      installTestKnobs(saved);
    }
  }, { storeIo: disk });
});
