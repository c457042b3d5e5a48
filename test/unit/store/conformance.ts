// The object store conformance suite: what every backend of the
// ObjectReader/ObjectWriter contract must do. Run it from a backend's own
// test file: runObjectStoreConformance('pack store', () => harness).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { constants as zc, zstdCompressSync } from 'node:zlib';
import { isFerryError } from '../../../src/core/errors.ts';
import { hashBytes, type ObjectId } from '../../../src/core/ids.ts';
import { CODEC_NONE, CODEC_ZSTD, OBJECT_KINDS, type ObjectReader, type ObjectWriter } from '../../../src/store/types.ts';
import { compressibleBytes, pseudoRandomBytes } from './helpers.ts';

export type ConformanceStore = ObjectReader & ObjectWriter;

export interface ConformanceHarness {
  store: ConformanceStore;
  /** Close the current store (after a flush) and open a new one over the same storage. */
  reopen(): ConformanceStore;
  /** Damage the stored bytes of a flushed object; omit if the backend cannot. */
  corrupt?(id: ObjectId): void;
  dispose(): void;
}

function withHarness(makeStore: () => ConformanceHarness, fn: (h: ConformanceHarness) => void): () => void {
  return () => {
    const h = makeStore();
    try {
      fn(h);
    } finally {
      h.dispose();
    }
  };
}

const notFound = (err: unknown) => isFerryError(err, 'OBJECT_NOT_FOUND');
const corrupt = (err: unknown) => isFerryError(err, 'OBJECT_CORRUPT');

export function runObjectStoreConformance(name: string, makeStore: () => ConformanceHarness): void {
  describe(`object store conformance: ${name}`, () => {
    test(
      'put then get returns the same bytes; has and info agree',
      withHarness(makeStore, (h) => {
        const data = pseudoRandomBytes(5000, 'a');
        const { id, added } = h.store.put('chunk', data);
        assert.equal(added, true);
        assert.equal(id, hashBytes(data));
        assert.equal(h.store.has(id), true);
        assert.deepEqual(h.store.get(id), data);
        const info = h.store.info(id);
        assert.equal(info?.id, id);
        assert.equal(info?.kind, 'chunk');
        assert.equal(info?.rawLength, 5000);
      }),
    );

    test(
      'every kind, the empty object and a 1-byte object round-trip',
      withHarness(makeStore, (h) => {
        const ids: ObjectId[] = [];
        for (const kind of OBJECT_KINDS) {
          const data = Buffer.from(`a ${kind} object`);
          const { id } = h.store.put(kind, data);
          assert.equal(h.store.info(id)?.kind, kind);
          ids.push(id);
        }
        const empty = h.store.put('chunk', new Uint8Array(0));
        const one = h.store.put('chunk', Buffer.from([7]));
        h.store.flush();
        assert.equal(h.store.get(empty.id).length, 0);
        assert.deepEqual(h.store.get(one.id), Buffer.from([7]));
        OBJECT_KINDS.forEach((kind, i) => assert.deepEqual(h.store.get(ids[i]), Buffer.from(`a ${kind} object`)));
      }),
    );

    test(
      'a second put of the same bytes deduplicates, before and after flush',
      withHarness(makeStore, (h) => {
        const data = pseudoRandomBytes(3000, 'dup');
        const a = h.store.put('chunk', data);
        const b = h.store.put('chunk', Buffer.from(data));
        assert.equal(a.id, b.id);
        assert.equal(b.added, false);
        h.store.flush();
        assert.equal(h.store.put('chunk', data).added, false);
        assert.equal(h.store.putPrepared({ kind: 'chunk', id: a.id, rawLength: data.length, codec: CODEC_NONE, stored: data }), false);
      }),
    );

    test(
      'the caller may reuse its buffer right after put',
      withHarness(makeStore, (h) => {
        const buf = pseudoRandomBytes(4096, 'reuse');
        const copy = Buffer.from(buf);
        const { id } = h.store.put('chunk', buf);
        buf.fill(0);
        assert.deepEqual(h.store.get(id), copy);
        h.store.flush();
        assert.deepEqual(h.store.get(id), copy);
      }),
    );

    test(
      'unknown ids: has is false, info undefined, get throws OBJECT_NOT_FOUND',
      withHarness(makeStore, (h) => {
        const id = hashBytes(Buffer.from('never stored'));
        assert.equal(h.store.has(id), false);
        assert.equal(h.store.info(id), undefined);
        assert.throws(() => h.store.get(id), notFound);
      }),
    );

    test(
      'compressible and incompressible objects both round-trip',
      withHarness(makeStore, (h) => {
        const squeezable = compressibleBytes(200_000, 'z');
        const noise = pseudoRandomBytes(200_000, 'n');
        const a = h.store.put('tree', squeezable);
        const b = h.store.put('chunk', noise);
        assert.ok(h.store.info(a.id)!.storedLength < squeezable.length / 2, 'compressible object stored compressed');
        assert.equal(h.store.info(b.id)!.storedLength, noise.length);
        h.store.flush();
        assert.deepEqual(h.store.get(a.id), squeezable);
        assert.deepEqual(h.store.get(b.id), noise);
      }),
    );

    test(
      'flushed objects survive close and reopen; pending ones are visible before flush',
      withHarness(makeStore, (h) => {
        const datas = Array.from({ length: 20 }, (_, i) => pseudoRandomBytes(100 + i * 700, `re${i}`));
        const ids = datas.map((d) => h.store.put('chunk', d).id);
        for (const [i, id] of ids.entries()) {
          assert.equal(h.store.has(id), true);
          assert.deepEqual(h.store.get(id), datas[i]);
        }
        h.store.flush();
        const s = h.reopen();
        for (const [i, id] of ids.entries()) {
          assert.equal(s.has(id), true);
          assert.deepEqual(s.get(id), datas[i]);
        }
        assert.equal(s.put('chunk', datas[3]).added, false);
      }),
    );

    test(
      'putPrepared verifies by default: wrong hash, wrong length and a zstd bomb are refused and not stored',
      withHarness(makeStore, (h) => {
        const data = compressibleBytes(50_000, 'prep');
        const id = hashBytes(data);
        const z = zstdCompressSync(data, { params: { [zc.ZSTD_c_compressionLevel]: 3 } });
        assert.equal(h.store.putPrepared({ kind: 'chunk', id, rawLength: data.length, codec: CODEC_ZSTD, stored: z }), true);
        assert.deepEqual(h.store.get(id), data);

        const other = pseudoRandomBytes(1000, 'other');
        const lie = hashBytes(Buffer.from('something else'));
        assert.throws(() => h.store.putPrepared({ kind: 'chunk', id: lie, rawLength: other.length, codec: CODEC_NONE, stored: other }), corrupt);
        assert.equal(h.store.has(lie), false);

        // stated raw length smaller than what the bytes inflate to
        const big = compressibleBytes(1 << 20, 'bomb');
        const bigZ = zstdCompressSync(big);
        const bigId = hashBytes(big);
        assert.throws(() => h.store.putPrepared({ kind: 'chunk', id: bigId, rawLength: 1000, codec: CODEC_ZSTD, stored: bigZ }), corrupt);
        assert.equal(h.store.has(bigId), false);

        assert.throws(() => h.store.putPrepared({ kind: 'chunk', id: hashBytes(other), rawLength: other.length + 1, codec: CODEC_NONE, stored: other }), corrupt);
        h.store.flush();
        assert.deepEqual(h.store.get(id), data);
      }),
    );

    test(
      'putPrepared with trusted: true stores the producer\'s bytes as given',
      withHarness(makeStore, (h) => {
        const data = pseudoRandomBytes(2048, 'trusted');
        const id = hashBytes(data);
        assert.equal(h.store.putPrepared({ kind: 'image', id, rawLength: data.length, codec: CODEC_NONE, stored: data }, { trusted: true }), true);
        h.store.flush();
        assert.deepEqual(h.store.get(id), data);
        assert.equal(h.store.info(id)?.kind, 'image');
      }),
    );

    test(
      'a trusted object whose bytes do not match its id is caught on read',
      withHarness(makeStore, (h) => {
        const data = pseudoRandomBytes(2048, 'liar');
        const id = hashBytes(Buffer.from('not these bytes'));
        h.store.putPrepared({ kind: 'chunk', id, rawLength: data.length, codec: CODEC_NONE, stored: data }, { trusted: true });
        h.store.flush();
        assert.throws(() => h.store.get(id), corrupt);
      }),
    );

    test('damaged stored bytes are detected on read', () => {
      const h = makeStore();
      try {
        if (!h.corrupt) return;
        const keep = h.store.put('chunk', pseudoRandomBytes(3000, 'keep'));
        const data = pseudoRandomBytes(3000, 'victim');
        const { id } = h.store.put('chunk', data);
        h.store.flush();
        h.corrupt(id);
        assert.throws(() => h.store.get(id), corrupt);
        assert.deepEqual(h.store.get(keep.id), pseudoRandomBytes(3000, 'keep'));
      } finally {
        h.dispose();
      }
    });
  });
}
