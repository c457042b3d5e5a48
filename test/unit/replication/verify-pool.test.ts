// The receiver's verification workers: an object passes only when it decodes
// within its stated length to bytes that hash to its id; results come back
// per object, in order, for batches verified on worker threads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import { hashBytes, type ObjectId } from '../../../src/core/ids.ts';
import { CODEC_NONE, CODEC_ZSTD } from '../../../src/store/types.ts';
import { VerifyPool, verifyObject, type ToVerify } from '../../../src/replication/verify-pool.ts';

function good(raw: Buffer, compress: boolean): ToVerify {
  const id = hashBytes(raw) as ObjectId;
  return compress ? { id, codec: CODEC_ZSTD, rawLength: raw.length, stored: zstdCompressSync(raw) } : { id, codec: CODEC_NONE, rawLength: raw.length, stored: raw };
}

test('verifyObject: good objects pass; a wrong hash, a wrong length, a bomb and an unknown codec are refused', () => {
  const text = Buffer.from('ferry '.repeat(10_000));
  assert.equal(verifyObject(good(text, true)), null);
  assert.equal(verifyObject(good(randomBytes(1000), false)), null);
  const wrongHash = { ...good(text, true), id: hashBytes(Buffer.from('other')) as ObjectId };
  assert.match(verifyObject(wrongHash)!, /do not match its id/);
  const shortClaim = { ...good(text, true), rawLength: 100 };
  assert.match(verifyObject(shortClaim)!, /does not decompress within its stated length/);
  const bomb = zstdCompressSync(Buffer.alloc(64 * 1024 * 1024));
  assert.match(verifyObject({ id: hashBytes(Buffer.alloc(10)) as ObjectId, codec: CODEC_ZSTD, rawLength: 10, stored: bomb })!, /stated length/);
  assert.match(verifyObject({ ...good(text, false), codec: 7 })!, /unknown codec/);
});

test('VerifyPool: batches verified on workers, results per object in order; the pool lets the process exit when idle', async () => {
  const pool = new VerifyPool();
  try {
    const items = Array.from({ length: 40 }, (_, i) => good(i % 3 === 0 ? randomBytes(5000) : Buffer.from(`object ${i} `.repeat(500)), i % 2 === 0));
    items[17] = { ...items[17], id: hashBytes(Buffer.from('not it')) as ObjectId };
    const [a, b] = await Promise.all([pool.verify(items.slice(0, 20)), pool.verify(items.slice(20))]);
    const all = [...a, ...b];
    assert.equal(all.length, 40);
    all.forEach((r, i) => (i === 17 ? assert.match(r!, /do not match/) : assert.equal(r, null, `object ${i}: ${r}`)));
  } finally {
    await pool.close();
  }
});

test('VerifyPool.rebuild: deltas rebuilt on workers against their dictionaries, each checked by its id; refusals say why, in order', async () => {
  const pool = new VerifyPool();
  try {
    const jobs = Array.from({ length: 12 }, (_, i) => {
      const old = i % 2 ? randomBytes(64 * 1024) : Buffer.from(`block ${i} `.repeat(7000));
      const changed = Buffer.from(old);
      randomBytes(4096).copy(changed, 1000 + i * 100);
      const frame = zstdCompressSync(changed, { dictionary: old });
      return { id: hashBytes(changed) as ObjectId, rawLength: changed.length, frame, dictionary: old, changed };
    });
    jobs[4] = { ...jobs[4], id: hashBytes(Buffer.from('something else')) as ObjectId }; // rebuilds to other bytes
    jobs[7] = { ...jobs[7], rawLength: 100 }; // lies about its length
    jobs[9] = { ...jobs[9], dictionary: randomBytes(64 * 1024) }; // the wrong dictionary
    const got = await pool.rebuild(jobs);
    assert.equal(got.length, 12);
    got.forEach((r, i) => {
      if (i === 4) return assert.deepEqual(r.ok ? 'ok' : [r.code, /do not match its id/.test(r.message)], ['OBJECT_CORRUPT', true]);
      if (i === 7) return assert.deepEqual(r.ok ? 'ok' : [r.code, /stated 100 bytes/.test(r.message)], ['PROTOCOL', true]);
      if (i === 9) return assert.equal(r.ok, false, 'a frame against the wrong dictionary must not pass');
      assert.ok(r.ok, `delta ${i}: ${r.ok ? '' : r.message}`);
      const raw = r.codec === CODEC_ZSTD ? zstdDecompressSync(r.stored) : Buffer.from(r.stored);
      assert.ok(raw.equals(jobs[i].changed), `delta ${i} rebuilt to other bytes`);
    });
  } finally {
    await pool.close();
  }
});
