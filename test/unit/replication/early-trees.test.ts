// The early stream (src/replication/early-send.ts) sends trees during the
// capture, but never one before everything it names: the negotiation skips a
// subtree the destination holds, so a tree stored there without its
// chunks or subtrees would never be completed. Against an in-memory
// receiver, with a store holding objects the capture never queued (chunks
// and a tree deduplicated at the source), this checks, over everything sent
// in order: each tree sent comes after every object it names or names only
// objects the destination already had; a chunk the capture deduplicated is
// sent ahead of its tree; a tree over a subtree nobody vouches for is left
// to the negotiation, and so is every tree above it; nothing is sent twice.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hashBytes, type ObjectId } from '../../../src/core/ids.ts';
import { encodeTree } from '../../../src/snapshot/format.ts';
import type { TreeEntry } from '../../../src/snapshot/model.ts';
import { EarlySender } from '../../../src/replication/early-send.ts';
import type { Receiver } from '../../../src/replication/types.ts';
import type { WireObject } from '../../../src/replication/protocol.ts';

const base = { mode: 0o644, uid: 0, gid: 0, mtimeNs: 0n, xattrs: [] as Array<[Buffer, Buffer]> };

/** A destination holding `have`: what is put is added to it and to `sent`, in order. */
function memoryReceiver(have: Set<ObjectId>, sent: ObjectId[]): Receiver {
  return {
    hello: async () => { throw new Error('not used'); },
    commit: async () => { throw new Error('not used'); },
    missing: async (_v, ids) => ids.map((id) => !have.has(id)),
    put: async (_v, stream: AsyncIterable<WireObject>) => {
      let n = 0;
      for await (const o of stream) {
        sent.push(o.id);
        have.add(o.id);
        n++;
      }
      return { received: n, stored: n, bytes: 0 };
    },
  };
}

test('trees go early only after everything they name; a tree over an unvouched subtree waits, with all above it', async () => {
  const objects = new Map<ObjectId, { kind: 'chunk' | 'tree'; bytes: Buffer }>();
  const chunk = (label: string): ObjectId => {
    const bytes = Buffer.from(`chunk ${label} `.repeat(100));
    const id = hashBytes(bytes);
    objects.set(id, { kind: 'chunk', bytes });
    return id;
  };
  const tree = (entries: Array<{ name: string; dir?: ObjectId; chunks?: ObjectId[] }>): ObjectId => {
    const es: TreeEntry[] = entries
      .sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)))
      .map((e) => (e.dir ? { ...base, name: Buffer.from(e.name), type: 'dir', mode: 0o755, size: 0, tree: e.dir } : { ...base, name: Buffer.from(e.name), type: 'file', size: (e.chunks ?? []).reduce((n, c) => n + objects.get(c)!.bytes.length, 0), chunks: e.chunks ?? [] }));
    const bytes = encodeTree({ entries: es });
    const id = hashBytes(bytes);
    objects.set(id, { kind: 'tree', bytes });
    return id;
  };

  // Held at the destination already: a chunk and a whole subtree.
  const cD = chunk('at destination');
  const tD = tree([{ name: 'x', chunks: [chunk('below the held tree')] }]);
  // In the source store from before (the capture deduplicated them: never queued).
  const c0 = chunk('old');
  const t9 = tree([{ name: 'old', chunks: [chunk('old, below')] }]);
  // What the capture stores, in order.
  const c1 = chunk('1');
  const c2 = chunk('2');
  const t1 = tree([{ name: 'f', chunks: [c1, c2] }]);
  const t2 = tree([{ name: 'a', dir: t1 }, { name: 'g', chunks: [c0, cD] }]);
  const t3 = tree([{ name: 'old-dir', dir: t9 }]);
  const t4 = tree([{ name: 'above-3', dir: t3 }]);
  const t5 = tree([{ name: 'held', dir: tD }, { name: 'k', chunks: [c1] }]);
  const c3 = chunk('3');
  const t6 = tree([{ name: 'h', chunks: [c3] }, { name: 'two', dir: t2 }, { name: 'five', dir: t5 }]);
  const queued = [c1, c2, t1, t2, t3, t4, t5, c3, t6];
  const names = new Map<string, string>(Object.entries({ cD, tD, c0, t9, c1, c2, t1, t2, t3, t4, t5, c3, t6 }).map(([k, v]) => [v, k]));

  const have = new Set<ObjectId>([cD, tD]);
  const sent: ObjectId[] = [];
  const receiver = memoryReceiver(have, sent);
  const store = {
    readStored: (id: ObjectId) => {
      const o = objects.get(id)!;
      return { codec: 0, rawLength: o.bytes.length, stored: o.bytes };
    },
    get: (id: ObjectId) => objects.get(id)!.bytes,
  };
  const early = new EarlySender(store, { open: async () => receiver, volume: 'v', batchBytes: 2500, minBatchBytes: 1, holdBackBytes: 0 });
  for (const id of queued) early.added(id, objects.get(id)!.kind, objects.get(id)!.bytes.length);
  // Let the batches go before the capture "ends".
  for (let i = 0; i < 50 && !queued.every((id) => have.has(id) || id === t3 || id === t4); i++) await new Promise((r) => setTimeout(r, 5));
  const stats = await early.finish();
  assert.equal(stats.error, undefined, JSON.stringify(stats));

  const shown = sent.map((id) => names.get(id) ?? id.slice(0, 8));
  assert.equal(new Set(sent).size, sent.length, `nothing twice: ${shown.join(' ')}`);
  assert.ok(!sent.includes(cD) && !sent.includes(tD), 'what the destination held is not sent');
  assert.ok(!sent.includes(t3) && !sent.includes(t4), `a tree over an unvouched subtree waits, with those above it: ${shown.join(' ')}`);
  assert.ok(!sent.includes(t9), 'an old subtree is never walked by the early stream');
  for (const t of [t1, t2, t5, t6]) assert.ok(sent.includes(t), `${names.get(t)} went early: ${shown.join(' ')}`);
  assert.ok(sent.indexOf(c0) >= 0 && sent.indexOf(c0) < sent.indexOf(t2), `the deduplicated chunk goes ahead of its tree: ${shown.join(' ')}`);
  // The invariant itself: every tree sent comes after each object it names, unless the destination had it.
  const pos = new Map(sent.map((id, i) => [id, i]));
  for (const id of sent) {
    if (objects.get(id)!.kind !== 'tree') continue;
    const { entries } = (await import('../../../src/snapshot/format.ts')).decodeTree(objects.get(id)!.bytes);
    for (const e of entries) {
      for (const ref of e.type === 'dir' ? [e.tree!] : (e.chunks ?? [])) {
        if (ref === cD || ref === tD) continue;
        assert.ok((pos.get(ref) ?? Infinity) < pos.get(id)!, `${names.get(id)} was sent before ${names.get(ref) ?? ref}: ${shown.join(' ')}`);
      }
    }
  }
});

test('bounded: past its queue bound objects are left to the negotiation, vouches are forgotten, and no tree ever goes before what it names', async () => {
  // A tree of 4 levels, 3 subdirectories and 4 files of 2 chunks each per directory, stored bottom up,
  // some of it at the destination already. Queue bound 24 and 40 vouches per generation: far less than
  // the 300-odd objects, so most are left and the vouched set turns over many times.
  const objects = new Map<ObjectId, { kind: 'chunk' | 'tree'; bytes: Buffer }>();
  const order: ObjectId[] = [];
  let n = 0;
  const chunk = (): ObjectId => {
    const bytes = Buffer.from(`chunk ${n++} `.repeat(50));
    const id = hashBytes(bytes);
    objects.set(id, { kind: 'chunk', bytes });
    order.push(id);
    return id;
  };
  const dir = (depth: number): ObjectId => {
    const entries: TreeEntry[] = [];
    if (depth > 0) for (let i = 0; i < 3; i++) entries.push({ ...base, name: Buffer.from(`d${i}`), type: 'dir', mode: 0o755, size: 0, tree: dir(depth - 1) });
    for (let i = 0; i < 4; i++) {
      const chunks = [chunk(), chunk()];
      entries.push({ ...base, name: Buffer.from(`f${i}`), type: 'file', size: chunks.reduce((s, c) => s + objects.get(c)!.bytes.length, 0), chunks });
    }
    const bytes = encodeTree({ entries });
    const id = hashBytes(bytes);
    objects.set(id, { kind: 'tree', bytes });
    order.push(id);
    return id;
  };
  dir(3);
  const have = new Set<ObjectId>(order.filter((_, i) => i % 7 === 3));
  const had = new Set(have);
  const sent: ObjectId[] = [];
  const receiver = memoryReceiver(have, sent);
  const store = { readStored: (id: ObjectId) => ({ codec: 0, rawLength: objects.get(id)!.bytes.length, stored: objects.get(id)!.bytes }), get: (id: ObjectId) => objects.get(id)!.bytes };
  const early = new EarlySender(store, { open: async () => receiver, volume: 'v', batchBytes: 3000, minBatchBytes: 1, holdBackBytes: 0, queueMax: 24, vouchedMax: 40 });
  // The stream gets a turn now and then: the queue fills, drains, and fills again as the "capture" goes on.
  for (const [k, id] of order.entries()) {
    early.added(id, objects.get(id)!.kind, objects.get(id)!.bytes.length);
    if (k % 40 === 39) await new Promise((r) => setTimeout(r, 3));
  }
  for (let i = 0; i < 40; i++) await new Promise((r) => setTimeout(r, 5));
  const stats = await early.finish();
  assert.equal(stats.error, undefined, JSON.stringify(stats));
  assert.ok(stats.objectsLeft > 0 && stats.objectsQueued + stats.objectsLeft === order.length, JSON.stringify(stats));
  assert.ok(sent.some((id) => objects.get(id)!.kind === 'tree'), 'some trees still went early');
  const pos = new Map<ObjectId, number>();
  sent.forEach((id, i) => pos.has(id) || pos.set(id, i));
  const { decodeTree } = await import('../../../src/snapshot/format.ts');
  for (const [i, id] of sent.entries()) {
    if (objects.get(id)!.kind !== 'tree') continue;
    for (const e of decodeTree(objects.get(id)!.bytes).entries) {
      for (const ref of e.type === 'dir' ? [e.tree!] : (e.chunks ?? [])) {
        assert.ok(had.has(ref) || (pos.get(ref) ?? Infinity) < i, `a tree went before ${ref.slice(0, 8)}, which it names`);
      }
    }
  }
});
