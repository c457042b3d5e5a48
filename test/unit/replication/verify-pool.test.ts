// The receiver's verification workers: an object passes only when it decodes
// within its stated length to bytes that hash to its id; results come back
// per object, in order, for batches verified on worker threads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { zstdCompressSync } from 'node:zlib';
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
