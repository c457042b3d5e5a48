// Random sequences of put / flush / reopen / crash / kill / collect (with and
// without injected GC crashes) keep the store's invariant: every object in the
// index reads back with the right bytes, and every object that was put,
// flushed and is still live is present.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { hashBytes, type ObjectId } from '../../../src/core/ids.ts';
import { InjectedCrash, executeCollect, planCollect, type GcCrashPoint } from '../../../src/store/gc.ts';
import { compressibleBytes, makeTestStore, noSyncIo, pseudoRandomBytes, type TestStoreHome } from './helpers.ts';

type Op =
  | { t: 'put'; size: number; seed: number; squeezable: boolean }
  | { t: 'flush' }
  | { t: 'reopen' }
  | { t: 'crash' }
  | { t: 'kill'; pick: number }
  | { t: 'collect'; threshold: number; crashAfter: GcCrashPoint | null };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ t: fc.constant('put' as const), size: fc.integer({ min: 0, max: 3000 }), seed: fc.integer({ min: 0, max: 25 }), squeezable: fc.boolean() }) },
  { weight: 2, arbitrary: fc.constant({ t: 'flush' as const }) },
  { weight: 1, arbitrary: fc.constant({ t: 'reopen' as const }) },
  { weight: 1, arbitrary: fc.constant({ t: 'crash' as const }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('kill' as const), pick: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant('collect' as const),
      threshold: fc.constantFrom(0, 0.25, 0.6),
      crashAfter: fc.constantFrom<GcCrashPoint | null>(null, null, 'copy', 'commit', 'unlink'),
    }),
  },
);

class Model {
  bytes = new Map<ObjectId, Buffer>();
  flushed = new Set<ObjectId>();
  pending = new Set<ObjectId>();
  dead = new Set<ObjectId>();

  flush(): void {
    for (const id of this.pending) this.flushed.add(id);
    this.pending.clear();
  }

  /** After a crash, an unflushed object is there (its pack sealed on its own) or not at all. */
  crashed(home: TestStoreHome): void {
    for (const id of this.pending) if (home.store.has(id)) this.flushed.add(id);
    this.pending.clear();
  }

  collected(home: TestStoreHome): void {
    for (const id of this.dead) {
      if (!home.store.has(id)) {
        this.flushed.delete(id);
        this.dead.delete(id);
      }
    }
  }
}

function check(home: TestStoreHome, m: Model): void {
  const { store } = home;
  for (const o of store.iterateObjects()) {
    const want = m.bytes.get(o.id);
    assert.ok(want, `indexed object ${o.id} was put by the test`);
    assert.deepEqual(store.get(o.id), want);
  }
  for (const id of [...m.flushed, ...m.pending]) {
    if (m.dead.has(id)) continue;
    assert.equal(store.has(id), true, `live object ${id} is present`);
    assert.deepEqual(store.get(id), m.bytes.get(id));
  }
}

function apply(home: TestStoreHome, m: Model, op: Op): void {
  switch (op.t) {
    case 'put': {
      const data = op.squeezable ? compressibleBytes(op.size, op.seed) : pseudoRandomBytes(op.size, op.seed);
      const id = hashBytes(data);
      const present = m.flushed.has(id) || m.pending.has(id);
      const r = home.store.put('chunk', data);
      assert.equal(r.id, id);
      assert.equal(r.added, !present);
      m.bytes.set(id, data);
      if (!present) m.pending.add(id);
      m.dead.delete(id); // referenced again
      break;
    }
    case 'flush':
      home.store.flush();
      m.flush();
      break;
    case 'reopen':
      home.reopen();
      m.flush();
      break;
    case 'crash':
      home.crashAndReopen();
      m.crashed(home);
      break;
    case 'kill': {
      const candidates = [...m.flushed].filter((id) => !m.dead.has(id)).sort();
      if (candidates.length > 0) m.dead.add(candidates[op.pick % candidates.length]);
      break;
    }
    case 'collect': {
      home.store.flush();
      m.flush();
      const isLive = (id: ObjectId) => !m.dead.has(id);
      const plan = planCollect(home.store, isLive, { repackThreshold: op.threshold });
      if (op.crashAfter) {
        assert.throws(() => executeCollect(home.store, plan, { crashAfter: op.crashAfter! }), InjectedCrash);
        home.crashAndReopen();
        check(home, m);
        executeCollect(home.store, planCollect(home.store, isLive, { repackThreshold: op.threshold }));
      } else {
        executeCollect(home.store, plan);
      }
      m.collected(home);
      break;
    }
  }
}

test('property: the index always reads back right, and nothing flushed and live is ever lost', () => {
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 10, maxLength: 40, size: 'max' }), (ops) => {
      const home = makeTestStore({ memoryDb: true, io: noSyncIo, packTargetSize: 8 << 10 });
      const m = new Model();
      try {
        for (const op of ops) {
          apply(home, m, op);
          check(home, m);
        }
        home.store.flush();
        assert.deepEqual(home.store.verifyAll().bad, []);
        // a final full collection with everything live keeps everything
        m.flush();
        m.dead.clear();
        executeCollect(home.store, planCollect(home.store, () => true));
        check(home, m);
      } finally {
        home.dispose();
      }
    }),
    { numRuns: 60 },
  );
});
