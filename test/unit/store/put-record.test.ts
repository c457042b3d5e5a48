// The capture workers' fast path into the store: records framed elsewhere
// (pack.ts writeRecordHeader + finishRecord) appended as they are, the
// shared index that lets a producer skip objects already stored, and the
// commit epoch that lets the store skip its own lookup safely.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { zstdCompressSync } from 'node:zlib';
import { isFerryError } from '../../../src/core/errors.ts';
import { hashBytes, objectIdToBytes } from '../../../src/core/ids.ts';
import { IndexProbe } from '../../../src/store/index-probe.ts';
import { KIND_CODES, RECORD_HEADER_SIZE, RECORD_OVERHEAD, finishRecord, scanPack, writeRecordHeader } from '../../../src/store/pack.ts';
import { CODEC_NONE, CODEC_ZSTD, type Codec } from '../../../src/store/types.ts';
import { compressibleBytes, makeTestStore, noSyncIo, pseudoRandomBytes } from './helpers.ts';

/** a record as a worker frames it, inside a larger buffer (as in the ring) */
function frame(raw: Buffer, compress = false, pad = 7): { record: Buffer; id: string } {
  const id = hashBytes(raw);
  const stored = compress ? zstdCompressSync(raw) : raw;
  const codec: Codec = compress ? CODEC_ZSTD : CODEC_NONE;
  const outer = Buffer.alloc(pad + RECORD_OVERHEAD + stored.length + 5, 0xee);
  writeRecordHeader(outer, pad, KIND_CODES.chunk, codec, raw.length, stored.length, objectIdToBytes(id as never));
  outer.set(stored, pad + RECORD_HEADER_SIZE);
  const len = finishRecord(outer, pad, stored.length);
  assert.equal(len, RECORD_OVERHEAD + stored.length);
  return { record: outer.subarray(pad, pad + len), id };
}

test('putRecord appends framed records as they are: readable, verified, deduplicated, scannable', () => {
  const home = makeTestStore({ io: noSyncIo });
  try {
    const a = pseudoRandomBytes(3000, 'a');
    const b = compressibleBytes(200_000, 'b');
    const big = pseudoRandomBytes(3 << 20, 'big'); // larger than a quarter of the write buffer: written straight through
    const fa = frame(a);
    const fb = frame(b, true);
    const fbig = frame(big);
    const ra = home.store.putRecord(fa.record, { trusted: true });
    assert.deepEqual(ra, { id: fa.id, added: true });
    // the producer's buffer may be reused at once
    fa.record.fill(0);
    assert.equal(home.store.putRecord(fb.record, { trusted: true }).added, true);
    assert.equal(home.store.putRecord(fbig.record, { trusted: true }).added, true);
    assert.ok(home.store.get(fa.id as never).equals(a), 'pending object readable');
    assert.equal(home.store.putRecord(frame(a).record, { trusted: true }).added, false, 'pending duplicate');
    home.store.flush();
    assert.equal(home.store.putRecord(frame(b, true).record, { trusted: true }).added, false, 'indexed duplicate');
    assert.ok(home.store.get(fa.id as never).equals(a));
    assert.ok(home.store.get(fb.id as never).equals(b));
    assert.ok(home.store.get(fbig.id as never).equals(big));
    assert.equal(home.store.info(fb.id as never)?.codec, CODEC_ZSTD);
    assert.equal(home.store.verifyAll().bad.length, 0);
    const [pack] = home.store.listPacks();
    const scan = scanPack(home.store.packPath(pack.name));
    assert.equal(scan.records, 3);
    assert.equal(scan.goodEnd, scan.size);
  } finally {
    home.dispose();
  }
});

test('putRecord refuses untrusted callers and bad framing', () => {
  const home = makeTestStore({ io: noSyncIo });
  try {
    const { record } = frame(pseudoRandomBytes(100, 'x'));
    assert.throws(() => home.store.putRecord(record, { trusted: false } as never), (e) => isFerryError(e, 'INTERNAL'));
    const bad = Buffer.from(record);
    bad.writeUInt32LE(0, 0);
    assert.throws(() => home.store.putRecord(bad, { trusted: true }), (e) => isFerryError(e, 'INTERNAL') && /magic/.test(e.message));
    assert.throws(() => home.store.putRecord(record.subarray(0, record.length - 1), { trusted: true }), (e) => isFerryError(e, 'INTERNAL'));
    assert.equal(home.store.pendingCount, 0);
  } finally {
    home.dispose();
  }
});

test('absentAt: the index lookup is skipped only when no pack was indexed since (or the last one is known)', () => {
  const home = makeTestStore({ io: noSyncIo, packTargetSize: 1 }); // every object seals and indexes its pack
  try {
    const s = home.store;
    const e0 = s.commitEpoch;
    const x = frame(pseudoRandomBytes(500, 'x'));
    assert.equal(s.putRecord(x.record, { trusted: true, absentAt: e0 }).added, true);
    assert.equal(s.commitEpoch, e0 + 1);
    // a producer that looked before x was indexed: the store still finds x (in the last indexed pack)
    assert.equal(s.putRecord(x.record, { trusted: true, absentAt: e0 }).added, false);
    const y = frame(pseudoRandomBytes(500, 'y'));
    assert.equal(s.putRecord(y.record, { trusted: true }).added, true);
    // two packs indexed since e0: the store asks its index again
    assert.equal(s.putRecord(x.record, { trusted: true, absentAt: e0 }).added, false);
    assert.equal(s.putRecord(y.record, { trusted: true, absentAt: e0 }).added, false);
    assert.equal(s.stats().objects, 2);
  } finally {
    home.dispose();
  }
});

test('sharedIndex: another connection sees committed objects; none for an in-memory catalog', () => {
  const home = makeTestStore({ io: noSyncIo });
  const mem = makeTestStore({ io: noSyncIo, memoryDb: true });
  const probe = new IndexProbe();
  try {
    assert.equal(mem.store.sharedIndex(), undefined);
    const ref = home.store.sharedIndex();
    assert.ok(ref);
    const raw = pseudoRandomBytes(1000, 'shared');
    const idBytes = objectIdToBytes(hashBytes(raw));
    assert.equal(probe.known(ref, idBytes), false);
    home.store.put('chunk', raw);
    assert.equal(probe.known(ref, idBytes), false, 'pending objects are not in the index yet');
    home.store.flush();
    assert.equal(probe.known(ref, idBytes), true);
    // a ref naming another file never answers for it
    assert.equal(probe.known({ path: ref.path, file: '0:0' }, idBytes), undefined);
  } finally {
    probe.close();
    mem.dispose();
    home.dispose();
  }
});
