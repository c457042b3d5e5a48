// The receiver's verification workers: an object passes only when it decodes
// within its stated length to bytes that hash to its id; results come back
// per object, in order, for batches verified on worker threads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { constants as zc, zstdCompressSync, zstdDecompressSync } from 'node:zlib';
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

/** A zstd frame that decodes to 64 MiB of zeros, then fails its content checksum: 2 KB on the wire. */
function checksumBomb(dictionary?: Buffer): { frame: Buffer; rawLength: number } {
  const rawLength = 64 * 1024 * 1024 - 1;
  const frame = zstdCompressSync(Buffer.alloc(rawLength), { dictionary, params: { [zc.ZSTD_c_checksumFlag]: 1 } });
  frame[frame.length - 1] ^= 0xff;
  return { frame, rawLength };
}

test('frames that fail late hold no memory past their own decode: a batch of them cannot grow a worker by 64 MiB per 2 KB object', async () => {
  // Node's synchronous zlib and zstd keep a failed call's output buffer and decoder (sized to the
  // declared length) until the thread's event loop turns, and a worker verifies a whole batch in
  // one go: 24 such objects held 1.5 GiB at once (found by `npm run fuzz`, target delta: the
  // process grew past 6 GiB). One batch of objects, and one of deltas, on the pool's workers.
  const pool = new VerifyPool();
  let peak = 0;
  const watch = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 10);
  try {
    const bomb = checksumBomb();
    const dictionary = Buffer.from('old bytes '.repeat(1000));
    const delta = checksumBomb(dictionary);
    const id = hashBytes(Buffer.from('anything')) as ObjectId;
    await pool.verify([good(Buffer.from('warm up '.repeat(100)), true)]);
    const before = process.memoryUsage.rss();
    peak = before;
    const refused = await pool.verify(Array.from({ length: 24 }, () => ({ id, codec: CODEC_ZSTD, rawLength: bomb.rawLength, stored: bomb.frame })));
    refused.forEach((r) => assert.match(r!, /does not decompress/));
    const rebuilt = await pool.rebuild(Array.from({ length: 24 }, () => ({ id, rawLength: delta.rawLength, frame: delta.frame, dictionary })));
    rebuilt.forEach((r) => assert.equal(r.ok ? 'ok' : r.code, 'PROTOCOL'));
    const grown = (peak - before) / 2 ** 20;
    assert.ok(grown < 512, `the process grew by ${Math.round(grown)} MiB while 48 refused objects of 2 KB were checked`);
  } finally {
    clearInterval(watch);
    await pool.close();
  }
});
