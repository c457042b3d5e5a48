import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { isFerryError } from '../../../src/core/errors.ts';
import type { ObjectId } from '../../../src/core/ids.ts';
import { InjectedCrash, describePlan, executeCollect, planCollect, type GcCrashPoint } from '../../../src/store/gc.ts';
import { PackStore } from '../../../src/store/pack-store.ts';
import { PACK_HEADER_SIZE, RECORD_HEADER_SIZE, RECORD_OVERHEAD } from '../../../src/store/pack.ts';
import { flipByte, makeTestStore, noSyncIo, pseudoRandomBytes, type TestStoreHome } from './helpers.ts';

const OBJ = 4000;
const REC = OBJ + RECORD_OVERHEAD;
const PACK = PACK_HEADER_SIZE + 10 * REC;

interface Scene {
  home: TestStoreHome;
  data: Map<ObjectId, Buffer>;
  /** ids per pack, in pack order */
  packs: ObjectId[][];
  dead: Set<ObjectId>;
  isLive: (id: ObjectId) => boolean;
}

/**
 * Four packs of ten 4000-byte objects: pack A all dead (delete), B half dead
 * (repack), C one dead (keep: 10% < 25%), D all live (keep).
 */
function makeScene(options: { durable?: boolean } = {}): Scene {
  const home = makeTestStore({ packTargetSize: PACK, zstdLevel: 0, io: options.durable ? undefined : noSyncIo });
  const data = new Map<ObjectId, Buffer>();
  const packs: ObjectId[][] = [];
  for (let p = 0; p < 4; p++) {
    const ids: ObjectId[] = [];
    for (let i = 0; i < 10; i++) {
      const d = pseudoRandomBytes(OBJ, `gc-${p}-${i}`);
      const { id } = home.store.put('chunk', d);
      data.set(id, d);
      ids.push(id);
    }
    packs.push(ids);
  }
  home.store.flush();
  assert.equal(home.store.stats().packs, 4);
  const dead = new Set<ObjectId>([...packs[0], ...packs[1].slice(0, 5), packs[2][3]]);
  return { home, data, packs, dead, isLive: (id) => !dead.has(id) };
}

function packFilesOnDisk(home: TestStoreHome): string[] {
  const root = join(home.dir, 'store', 'packs');
  return readdirSync(root).flatMap((sub) => readdirSync(join(root, sub)).map((f) => f.replace(/\.pack$/, ''))).sort();
}

/** The end state every GC run (clean, or crashed then recovered and rerun) must reach. */
function assertCollected(s: Scene): void {
  const { store } = s.home;
  for (const [id, d] of s.data) {
    if (!s.dead.has(id)) assert.deepEqual(store.get(id), d, `live object ${id} reads back`);
  }
  for (const id of [...s.packs[0], ...s.packs[1].slice(0, 5)]) assert.equal(store.has(id), false, 'dead object of a deleted or repacked pack is gone');
  assert.equal(store.has(s.packs[2][3]), true, 'dead object of a kept pack stays');
  const packs = store.listPacks();
  assert.ok(packs.every((p) => p.state === 'live'));
  assert.deepEqual(packFilesOnDisk(s.home), packs.map((p) => p.name).sort());
  assert.equal(store.verifyAll().bad.length, 0);
  const st = store.stats();
  assert.equal(st.objects, 40 - 15);
  assert.equal(st.storedBytes, 2 * PACK + PACK_HEADER_SIZE + 5 * REC);
}

describe('GC', () => {
  test('plan reads the index and decides keep / delete / repack with counts and bytes', () => {
    const s = makeScene();
    try {
      const plan = planCollect(s.home.store, s.isLive);
      const byPack = plan.packs.map((d) => [d.action, d.liveObjects, d.deadObjects, d.bytesFreed]);
      assert.deepEqual(byPack, [
        ['delete', 0, 10, PACK],
        ['repack', 5, 5, PACK - 5 * REC],
        ['keep', 9, 1, 0],
        ['keep', 10, 0, 0],
      ]);
      assert.deepEqual(plan.packs[1].copy, s.packs[1].slice(5));
      assert.equal(plan.packs[2].deadBytes, REC);
      assert.deepEqual(
        { ...plan.totals },
        { packs: 4, keep: 2, delete: 1, repack: 1, liveObjects: 24, deadObjects: 16, deadBytes: 10 * REC + 5 * REC + REC, bytesFreed: PACK + PACK - 5 * REC, objectsCopied: 5, bytesCopied: 5 * REC, obsoletePacks: 0 },
      );
      assert.match(describePlan(plan), /keep 2, delete 1, repack 1/);
      // a lower threshold repacks C too
      assert.deepEqual(planCollect(s.home.store, s.isLive, { repackThreshold: 0.05 }).packs.map((d) => d.action), ['delete', 'repack', 'repack', 'keep']);
      assert.throws(() => planCollect(s.home.store, s.isLive, { repackThreshold: 2 }), (e: unknown) => isFerryError(e, 'CONFIG_INVALID'));
    } finally {
      s.home.dispose();
    }
  });

  test('execute (from a JSON round-tripped plan) frees the bytes; live objects read back verified; dead ones are gone', () => {
    const s = makeScene({ durable: true });
    try {
      const before = s.home.store.stats().storedBytes;
      const plan = JSON.parse(JSON.stringify(planCollect(s.home.store, s.isLive)));
      const r = executeCollect(s.home.store, plan);
      const [a, b] = [plan.packs[0].pack, plan.packs[1].pack];
      assert.deepEqual(r.packsDeleted, [a]);
      assert.deepEqual(r.packsRepacked, [b]);
      assert.equal(r.packsWritten.length, 1);
      assert.equal(r.objectsCopied, 5);
      assert.equal(r.objectsDropped, 15);
      assert.equal(r.bytesFreed, before - s.home.store.stats().storedBytes);
      assert.equal(r.bytesFreed, plan.totals.bytesFreed - PACK_HEADER_SIZE);
      assertCollected(s);
      s.home.reopen();
      assertCollected(s);
      // nothing left to do
      const again = planCollect(s.home.store, s.isLive);
      assert.equal(again.totals.bytesFreed, 0);
    } finally {
      s.home.dispose();
    }
  });

  test('planning refuses unflushed objects; execute refuses a plan made stale by writes', () => {
    const s = makeScene();
    try {
      s.home.store.put('chunk', Buffer.from('pending'));
      assert.throws(() => planCollect(s.home.store, s.isLive), (e: unknown) => isFerryError(e, 'INTERNAL') && /flush/.test(e.message));
      s.home.store.flush();
      const plan = planCollect(s.home.store, s.isLive);
      // a dedup hit on a "dead" object between plan and execute would resurrect it
      s.home.store.put('chunk', s.data.get(s.packs[0][0])!);
      assert.throws(() => executeCollect(s.home.store, plan), (e: unknown) => isFerryError(e, 'INTERNAL') && /plan again/.test(e.message));
      // a plan from another instance is checked against the index: a changed pack is refused
      const other = planCollect(s.home.store, s.isLive);
      const forged = { ...other, store: { token: 'elsewhere', epoch: 0 }, packs: other.packs.map((d) => ({ ...d, objects: d.objects + 1 })) };
      assert.throws(() => executeCollect(s.home.store, forged), (e: unknown) => isFerryError(e, 'INTERNAL') && /stale/.test(e.message));
      assert.equal(s.home.store.stats().packs, 5);
    } finally {
      s.home.dispose();
    }
  });

  test('a damaged live object keeps its pack out of the repack; the rest proceeds', () => {
    const s = makeScene();
    try {
      const victim = s.packs[1][7];
      const loc = [...s.home.store.iterateObjects()].find((o) => o.id === victim)!;
      flipByte(s.home.store.packPath(loc.packName), loc.offset + RECORD_HEADER_SIZE + 10);
      const r = executeCollect(s.home.store, planCollect(s.home.store, s.isLive));
      assert.deepEqual(r.skipped.map((k) => [k.pack, k.damaged]), [[loc.packName, [victim]]]);
      assert.deepEqual(r.packsRepacked, []);
      assert.equal(r.packsDeleted.length, 1);
      assert.ok(s.home.store.listPacks().some((p) => p.name === loc.packName), 'the damaged pack is kept');
      for (const [id, d] of s.data) if (!s.dead.has(id) && id !== victim) assert.deepEqual(s.home.store.get(id), d);
      assert.deepEqual(s.home.store.verifyAll().bad.map((b) => b.id), [victim]);
    } finally {
      s.home.dispose();
    }
  });

  for (const point of ['copy', 'commit', 'unlink'] as GcCrashPoint[]) {
    test(`a crash after '${point}': every row points at a durable pack; recover() and a second GC converge`, () => {
      const s = makeScene();
      try {
        const plan = planCollect(s.home.store, s.isLive);
        assert.throws(() => executeCollect(s.home.store, plan, { crashAfter: point }), (e: unknown) => e instanceof InjectedCrash && e.point === point);

        // the process dies here; a new one opens the store and recovers
        const store = s.home.crashAndReopen();
        // whatever point the crash hit, every indexed object reads back verified
        assert.equal(store.verifyAll().bad.length, 0);
        for (const [id, d] of s.data) if (!s.dead.has(id)) assert.deepEqual(store.get(id), d);
        assert.deepEqual(packFilesOnDisk(s.home), store.listPacks().map((p) => p.name).sort());
        assert.ok(store.listPacks().every((p) => p.state === 'live'));

        const second = planCollect(store, s.isLive);
        if (point === 'copy') {
          // nothing was committed: the same work is planned again
          assert.deepEqual(second.packs.map((d) => d.action), ['delete', 'repack', 'keep', 'keep']);
        } else {
          assert.equal(second.totals.bytesFreed, 0);
        }
        executeCollect(store, second);
        assertCollected(s);
      } finally {
        s.home.dispose();
      }
    });
  }

  test('recover() reports what a crashed GC left', () => {
    const s = makeScene();
    try {
      const plan = planCollect(s.home.store, s.isLive);
      assert.throws(() => executeCollect(s.home.store, plan, { crashAfter: 'copy' }), InjectedCrash);
      s.home.store.close({ flush: false });
      s.home.store = new PackStore({ db: s.home.db, dir: join(s.home.dir, 'store'), io: noSyncIo });
      let r = s.home.store.recover();
      assert.equal(r.orphanPacksDeleted.length, 1, 'the unindexed repack output');
      assert.deepEqual(r.obsoletePacksRemoved, []);

      assert.throws(() => executeCollect(s.home.store, planCollect(s.home.store, s.isLive), { crashAfter: 'commit' }), InjectedCrash);
      r = s.home.store.recover();
      assert.deepEqual(r.obsoletePacksRemoved, [plan.packs[0].pack, plan.packs[1].pack]);
      assert.deepEqual(r.orphanPacksDeleted, []);
      assert.deepEqual(r.damagedPacks, []);
      assertCollected(s);
    } finally {
      s.home.dispose();
    }
  });
});
