// Deltas against objects the receiver holds: a changed chunk goes as a zstd
// frame against its old self and comes back bit for bit; a hostile or broken
// delta is refused with nothing stored.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { hashBytes, type ObjectId } from '../../../src/core/ids.ts';
import { cachedRefs, makeDelta, resolveDelta } from '../../../src/replication/delta.ts';
import { decodeObjectStream, encodeObjectHeader, wirePayload, WIRE_DELTA, type DeltaObject, type WireObject } from '../../../src/replication/protocol.ts';
import { CODEC_NONE } from '../../../src/store/types.ts';
import { isFerryError } from '../../../src/core/errors.ts';

class MapStore {
  m = new Map<ObjectId, Buffer>();
  add(b: Buffer): ObjectId {
    const id = hashBytes(b);
    this.m.set(id, b);
    return id;
  }
  has(id: ObjectId) {
    return this.m.has(id);
  }
  get(id: ObjectId) {
    const b = this.m.get(id);
    if (!b) throw new Error(`no ${id}`);
    return b;
  }
}

const KiB = 1024;

test('a chunk with a 4 KiB region rewritten goes as a few KiB and rebuilds exactly', async () => {
  const store = new MapStore();
  const old = randomBytes(512 * KiB);
  const ref = store.add(old);
  const changed = Buffer.from(old);
  randomBytes(4 * KiB).copy(changed, 100 * KiB);
  const id = hashBytes(changed);
  const d = await makeDelta(store, { kind: 'chunk', id, raw: changed, storedLength: changed.length }, { refs: [ref], offset: 0, length: old.length });
  assert.ok(d, 'a delta should pay here');
  assert.equal(d.codec, WIRE_DELTA);
  assert.ok(d.stored.length < 6 * KiB, `delta of ${d.stored.length} bytes for a 4 KiB change`);
  const back = await resolveDelta(store, d);
  assert.equal(back.id, id);
  const raw = back.codec === CODEC_NONE ? back.stored : undefined;
  if (raw) assert.ok(Buffer.from(raw).equals(changed));
  assert.equal(back.rawLength, changed.length);
});

test('no delta when it does not pay (new random data)', async () => {
  const store = new MapStore();
  const ref = store.add(randomBytes(256 * KiB));
  const fresh = randomBytes(256 * KiB);
  assert.equal(await makeDelta(store, { kind: 'chunk', id: hashBytes(fresh), raw: fresh, storedLength: fresh.length }, { refs: [ref], offset: 0, length: 256 * KiB }), undefined);
});

test('deltas cross the object stream encoding intact', async () => {
  const store = new MapStore();
  const old = randomBytes(128 * KiB);
  // Two references; the dictionary is a window across both (an insertion shifted the data).
  const before = randomBytes(1000);
  const refs = [store.add(before), store.add(old)];
  const changed = Buffer.concat([before.subarray(500), old.subarray(0, 60 * KiB), Buffer.from('x'), old.subarray(60 * KiB)]);
  const d = (await makeDelta(store, { kind: 'chunk', id: hashBytes(changed), raw: changed, storedLength: changed.length }, { refs, offset: 400, length: 600 + old.length }))!;
  assert.ok(d && d.stored.length < 2 * KiB, 'a one-byte insertion costs a few bytes');
  const plain: WireObject = { kind: 'tree', id: hashBytes(Buffer.from('t')), rawLength: 1, codec: CODEC_NONE, stored: Buffer.from('t') };
  async function* bytes() {
    for (const o of [d, plain]) {
      const all = Buffer.concat([encodeObjectHeader(o), ...wirePayload(o)]);
      for (let i = 0; i < all.length; i += 7) yield all.subarray(i, i + 7); // awkward piece sizes
    }
  }
  const got: WireObject[] = [];
  for await (const o of decodeObjectStream(bytes())) got.push(o);
  assert.equal(got.length, 2);
  const gd = got[0] as DeltaObject;
  assert.equal(gd.codec, WIRE_DELTA);
  assert.deepEqual(gd.refs, d.refs);
  assert.ok(gd.stored.equals(d.stored));
  assert.equal((await resolveDelta(store, gd)).id, d.id);
  assert.equal(got[1].kind, 'tree');
});

test('refused: a reference this side lacks, a frame that lies about its length or content, a bad ref count', async () => {
  const store = new MapStore();
  const old = randomBytes(64 * KiB);
  const ref = store.add(old);
  const changed = Buffer.from(old);
  changed[5] ^= 0xff;
  const d = (await makeDelta(store, { kind: 'chunk', id: hashBytes(changed), raw: changed, storedLength: changed.length }, { refs: [ref], offset: 0, length: old.length }))!;
  const code = async (o: DeltaObject, s: MapStore = store) => {
    try {
      await resolveDelta(s, o);
      return 'accepted';
    } catch (err) {
      assert.ok(isFerryError(err), String(err));
      return err.code;
    }
  };
  assert.equal(await code(d, new MapStore()), 'PROTOCOL'); // reference not here
  assert.equal(await code({ ...d, rawLength: d.rawLength - 1 }), 'PROTOCOL'); // output beyond its stated length
  assert.equal(await code({ ...d, rawLength: d.rawLength + 1 }), 'PROTOCOL'); // shorter than stated
  assert.equal(await code({ ...d, id: hashBytes(Buffer.from('other')) }), 'OBJECT_CORRUPT'); // not what its id says
  assert.equal(await code({ ...d, stored: randomBytes(100) }), 'PROTOCOL'); // not a zstd frame
  assert.equal(await code({ ...d, dictOffset: 1, dictLength: old.length }), 'PROTOCOL'); // dictionary beyond the references
  assert.notEqual(await code({ ...d, dictOffset: 10, dictLength: old.length - 10 }), 'accepted'); // another dictionary: not the object
  // On the wire: a delta naming 0 or 9 references, or not a chunk, is refused while decoding.
  for (const [n, kind] of [[0, 0], [9, 0], [1, 1]] as const) {
    const h = encodeObjectHeader({ ...d, refs: [] });
    h[0] = kind;
    const payload = Buffer.concat([Buffer.from([n]), Buffer.alloc(32 * 9 + 8), d.stored]);
    h.writeUInt32LE(payload.length, 6);
    async function* one() {
      yield Buffer.concat([h, payload]);
    }
    await assert.rejects(async () => {
      for await (const _ of decodeObjectStream(one())) void _;
    }, /delta/);
  }
});

test('cachedRefs: a reference read again while recent is not read from the store again; the cache stays within its bytes', () => {
  const reads: string[] = [];
  const blob = (id: string) => Buffer.alloc(id === 'big' ? 300 : 100, id);
  const get = cachedRefs((id) => {
    reads.push(id);
    return blob(id);
  }, 250);
  assert.equal(get('a' as ObjectId).length, 100);
  get('b' as ObjectId);
  get('a' as ObjectId); // recent: no read; now most recent
  assert.deepEqual(reads, ['a', 'b']);
  get('c' as ObjectId); // 300 bytes > 250: the least recent (b) goes
  get('a' as ObjectId);
  assert.deepEqual(reads, ['a', 'b', 'c']);
  get('b' as ObjectId); // was dropped: read again
  assert.deepEqual(reads, ['a', 'b', 'c', 'b']);
  // one object larger than the whole cache is still returned, and kept alone
  assert.equal(get('big' as ObjectId).length, 300);
  get('big' as ObjectId);
  assert.deepEqual(reads, ['a', 'b', 'c', 'b', 'big']);
  get('a' as ObjectId);
  assert.deepEqual(reads, ['a', 'b', 'c', 'b', 'big', 'a']);
});
