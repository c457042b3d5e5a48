import { hashBytes } from '../../../src/core/ids.ts';
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { zstdDecompressSync } from 'node:zlib';
import { ChunkPool, type FileChunkResult, type FileErrorResult, type StreamedObject } from '../../../src/snapshot/chunk-pool.ts';
import { ZstdEncoder } from '../../../src/snapshot/chunk-worker.ts';
import { objectIdFromBytes } from '../../../src/core/ids.ts';
import { RECORD_HEADER_SIZE, RECORD_TRAILER_SIZE, parseRecordBuffer } from '../../../src/store/pack.ts';
import { makeTestStore, noSyncIo } from '../store/helpers.ts';
import { cutPoints } from '../../../src/snapshot/fastcdc.ts';
import { CODEC_NONE, CODEC_ZSTD, type PreparedObject } from '../../../src/store/types.ts';
import { isFerryError } from '../../../src/core/errors.ts';

const SMALL = { min: 2048, avg: 8192, max: 32768 };
const dir = mkdtempSync(join(tmpdir(), 'ferry-pool-'));
const pool = new ChunkPool({ workers: 2, chunker: SMALL });
after(async () => {
  await pool.close();
  rmSync(dir, { recursive: true, force: true });
});

const p = (name: string) => Buffer.from(join(dir, name));
const sha = (b: Uint8Array) => hashBytes(b);
const raw = (o: PreparedObject) => (o.codec === CODEC_ZSTD ? zstdDecompressSync(o.stored) : Buffer.from(o.stored));

function text(n: number, seed = 1): Buffer {
  const words = ['alpha', 'beta', 'gamma', 'delta', 'ferry', 'snapshot', 'chunk', '\n', '{"k": 1}', 'zeta'];
  const parts: string[] = [];
  let x = seed;
  let len = 0;
  while (len < n) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const w = words[(x >>> 8) % words.length] + ' ';
    parts.push(w);
    len += w.length;
  }
  return Buffer.from(parts.join('').slice(0, n));
}

function ok(r: FileChunkResult | FileErrorResult): FileChunkResult {
  if (!r.ok) assert.fail(`${r.code}: ${r.message}`);
  return r;
}

/** the file's content, boundaries and ids, checked against the one-shot chunker */
function checkFile(r: FileChunkResult, content: Buffer): void {
  const parts = r.chunks.map(raw);
  assert.ok(Buffer.concat(parts).equals(content), 'chunks concatenate to the file');
  let at = 0;
  assert.deepEqual(
    parts.map((b) => (at += b.length)),
    cutPoints(content, SMALL),
  );
  r.chunks.forEach((c, i) => {
    assert.equal(c.kind, 'chunk');
    assert.equal(c.id, sha(parts[i]));
    assert.equal(c.rawLength, parts[i].length);
    if (c.codec === CODEC_NONE) assert.equal(c.stored.byteLength, c.rawLength);
    else assert.ok(c.stored.byteLength <= c.rawLength * 0.9);
  });
  assert.equal(r.stat.size, content.length);
  assert.equal(r.changedDuringRead, false);
}

test('a file larger than the read window: content, boundaries, ids, codecs', async () => {
  // 8 MiB random, 2 MiB text, 9 MiB random: crosses the 8 MiB window twice
  const content = Buffer.concat([randomBytes(8 << 20), text(2 << 20), randomBytes(9 << 20)]);
  writeFileSync(p('big'), content);
  const r = ok(await pool.chunkFile(p('big')));
  checkFile(r, content);
  const codecs = new Set(r.chunks.map((c) => c.codec));
  assert.ok(codecs.has(CODEC_NONE) && codecs.has(CODEC_ZSTD));
  assert.deepEqual(r.ids, r.chunks.map((c) => c.id));
});

test('default chunker parameters: 4 MiB chunks carried across 8 MiB windows', async () => {
  const big = new ChunkPool({ workers: 1 });
  try {
    // random (about 1 MiB chunks), then zeros (cut at the 4 MiB max), then random
    const content = Buffer.concat([randomBytes(7 << 20), Buffer.alloc(9 << 20), randomBytes(3 << 20)]);
    writeFileSync(p('default'), content);
    const r = ok(await big.chunkFile(p('default'), content.length));
    const parts = r.chunks.map(raw);
    assert.ok(Buffer.concat(parts).equals(content));
    let at = 0;
    assert.deepEqual(
      parts.map((b) => (at += b.length)),
      cutPoints(content),
    );
    assert.ok(r.chunks.some((c) => c.rawLength === 4 << 20 && c.codec === CODEC_ZSTD && c.stored.byteLength < 1024));
    r.chunks.forEach((c, i) => assert.equal(c.id, sha(parts[i])));
  } finally {
    await big.close();
  }
});

test('compressible data is zstd, random data is stored as is', async () => {
  const t = text(200_000);
  const rnd = randomBytes(200_000);
  writeFileSync(p('text'), t);
  writeFileSync(p('random'), rnd);
  const [a, b] = await Promise.all([pool.chunkFile(p('text')), pool.chunkFile(p('random'))]);
  checkFile(ok(a), t);
  checkFile(ok(b), rnd);
  assert.ok(ok(a).chunks.every((c) => c.codec === CODEC_ZSTD));
  assert.ok(ok(b).chunks.every((c) => c.codec === CODEC_NONE));
});

test('empty file has no chunks; a file under min is one chunk', async () => {
  writeFileSync(p('empty'), '');
  writeFileSync(p('tiny'), 'hello, ferry');
  const e = ok(await pool.chunkFile(p('empty')));
  assert.deepEqual(e.chunks, []);
  assert.equal(e.stat.size, 0);
  const t = ok(await pool.chunkFile(p('tiny')));
  assert.equal(t.chunks.length, 1);
  assert.equal(t.chunks[0].id, sha(Buffer.from('hello, ferry')));
  assert.equal(t.chunks[0].codec, CODEC_NONE);
  assert.equal(typeof t.stat.mtimeNs, 'bigint');
  assert.equal(typeof t.stat.ino, 'bigint');
});

test('many small files in parallel all come back right', async () => {
  mkdirSync(join(dir, 'many'));
  const files: Array<[Buffer, Buffer]> = [];
  for (let i = 0; i < 400; i++) {
    const n = 1024 + ((i * 7919) % (64 * 1024));
    const content = i % 2 ? randomBytes(n) : text(n, i);
    const path = p(`many/f${i}`);
    writeFileSync(path, content);
    files.push([path, content]);
  }
  const results = await Promise.all(files.map(([path]) => pool.chunkFile(path)));
  results.forEach((r, i) => checkFile(ok(r), files[i][1]));
});

test('a tight in-flight bound still completes everything', async () => {
  const tight = new ChunkPool({ workers: 2, chunker: SMALL, maxInFlightBytes: 1 });
  try {
    const contents = [text(50_000, 3), randomBytes(70_000), text(10, 4)];
    contents.forEach((c, i) => writeFileSync(p(`tight${i}`), c));
    const rs = await Promise.all(contents.map((_, i) => tight.chunkFile(p(`tight${i}`), contents[i].length)));
    rs.forEach((r, i) => checkFile(ok(r), contents[i]));
    assert.equal(tight.pending, 0);
  } finally {
    await tight.close();
  }
});

test('file errors are results: missing, directory, symlink', async () => {
  const missing = await pool.chunkFile(p('no-such-file'));
  assert.equal(missing.ok, false);
  assert.equal((missing as FileErrorResult).code, 'ENOENT');

  const isDir = await pool.chunkFile(Buffer.from(dir));
  assert.deepEqual([isDir.ok, (isDir as FileErrorResult).code], [false, 'EISDIR']);

  writeFileSync(p('target'), 'x');
  symlinkSync(join(dir, 'target'), join(dir, 'link'));
  const link = await pool.chunkFile(p('link'));
  assert.deepEqual([link.ok, (link as FileErrorResult).code], [false, 'ELOOP']);

  // the pool keeps working after errors
  checkFile(ok(await pool.chunkFile(p('target'))), Buffer.from('x'));
});

test('an unreadable file is EACCES', async (t) => {
  if (process.getuid?.() === 0) {
    t.skip('running as root: chmod 000 does not stop reads');
    return;
  }
  writeFileSync(p('secret'), 'x');
  chmodSync(p('secret'), 0);
  const denied = await pool.chunkFile(p('secret'));
  assert.deepEqual([denied.ok, (denied as FileErrorResult).code], [false, 'EACCES']);
});

test('non-UTF-8 names are read', async () => {
  const name = Buffer.concat([Buffer.from(dir + '/'), Buffer.from([0x66, 0xff, 0xfe, 0x80])]);
  writeFileSync(name, 'latin-1 name');
  checkFile(ok(await pool.chunkFile(name)), Buffer.from('latin-1 name'));
});

test('hashBlocks: zero blocks are null, others hashed; short last block; range past the end', async () => {
  const B = 4096;
  const blocks = [randomBytes(B), Buffer.alloc(B), text(B, 9), Buffer.alloc(B), randomBytes(1000)];
  const image = Buffer.concat(blocks);
  writeFileSync(p('image'), image);
  const r = await pool.hashBlocks(p('image'), 0, image.length, B);
  assert.ok(r.ok);
  assert.equal(r.blocks.length, 5);
  r.blocks.forEach((b, i) => {
    if (i === 1 || i === 3) return assert.equal(b, null);
    assert.ok(b);
    assert.equal(b.kind, 'chunk');
    assert.equal(b.id, sha(blocks[i]));
    assert.ok(raw(b).equals(blocks[i]));
  });
  assert.equal(r.blocks[2]!.codec, CODEC_ZSTD);
  assert.equal(r.blocks[0]!.codec, CODEC_NONE);

  // an inner range
  const mid = await pool.hashBlocks(p('image'), B, 2 * B, B);
  assert.ok(mid.ok);
  assert.deepEqual(
    mid.blocks.map((b) => b?.id ?? null),
    [null, sha(blocks[2])],
  );

  const past = await pool.hashBlocks(p('image'), 0, image.length + 1, B);
  assert.deepEqual([past.ok, (past as FileErrorResult).code], [false, 'ETRUNCATED']);
  const gone = await pool.hashBlocks(p('no-image'), 0, B, B);
  assert.deepEqual([gone.ok, (gone as FileErrorResult).code], [false, 'ENOENT']);
});

test('a file that changes while read is read again', async () => {
  // the test hook appends 1000 bytes after the first read of the first attempt
  const hooked = new ChunkPool({ workers: 1, chunker: SMALL, _test: { appendAttempts: 1, appendBytes: 1000 } });
  try {
    writeFileSync(p('growing'), text(100_000, 5));
    const r = ok(await hooked.chunkFile(p('growing')));
    const final = readFileSync(p('growing'));
    assert.equal(final.length, 101_000);
    checkFile(r, final); // includes changedDuringRead === false: the second read was clean
  } finally {
    await hooked.close();
  }
});

test('a file that keeps changing is reported as changed, content as last read', async () => {
  const hooked = new ChunkPool({ workers: 1, chunker: SMALL, retries: 2, _test: { appendAttempts: 100, appendBytes: 10 } });
  try {
    writeFileSync(p('churning'), randomBytes(50_000));
    const r = ok(await hooked.chunkFile(p('churning')));
    assert.equal(r.changedDuringRead, true);
    const final = readFileSync(p('churning'));
    assert.equal(final.length, 50_030); // three reads, each appended to once
    // the last read saw the file before its own append: everything up to that point
    const got = Buffer.concat(r.chunks.map(raw));
    assert.ok(got.length >= 50_020 && final.subarray(0, got.length).equals(got), `read ${got.length} bytes`);
    assert.equal(r.stat.size, 50_030);
  } finally {
    await hooked.close();
  }
});

test('a worker that dies fails its jobs and is replaced', async () => {
  const crashy = new ChunkPool({ workers: 1, chunker: SMALL, _test: { crashOnSuffix: 'CRASH' } });
  try {
    writeFileSync(p('before-CRASH'), 'boom');
    writeFileSync(p('fine'), 'fine');
    await assert.rejects(crashy.chunkFile(p('before-CRASH')), (e) => isFerryError(e, 'INTERNAL') && /died/.test(e.message) && /before-CRASH/.test(e.message));
    checkFile(ok(await crashy.chunkFile(p('fine'))), Buffer.from('fine'));
  } finally {
    await crashy.close();
  }
  await assert.rejects(crashy.chunkFile(p('fine')), (e) => isFerryError(e, 'INTERNAL'));
});

test('an idle pool does not keep the process alive', () => {
  // a child that uses a pool and never closes it must still exit by itself
  const script = `
    import { ChunkPool } from ${JSON.stringify(new URL('../../../src/snapshot/chunk-pool.ts', import.meta.url).href)};
    const pool = new ChunkPool({ workers: 2 });
    const r = await pool.chunkFile(Buffer.from(${JSON.stringify(join(dir, 'tiny'))}));
    console.log(r.ok ? 'chunked' : r.code);
  `;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(child.signal, null, 'the child hung');
  assert.equal(child.stderr, '');
  assert.equal(child.stdout.trim(), 'chunked');
  assert.equal(child.status, 0);
});

/** what onChunk saw, checked as a pack record and copied out (the record's memory is reused) */
function collect(into: Array<{ id: string; raw: Buffer; codec: number; ring: ArrayBufferLike }>) {
  return (o: StreamedObject) => {
    const rec = parseRecordBuffer(Buffer.from(o.record), o.record.length - RECORD_HEADER_SIZE - RECORD_TRAILER_SIZE, true);
    assert.ok(typeof rec !== 'string', `a well-formed record: ${rec}`);
    assert.equal(objectIdFromBytes(rec.id), o.id);
    assert.equal(rec.kind, 'chunk');
    assert.equal(rec.rawLength, o.rawLength);
    assert.equal(rec.codec, o.codec);
    const raw = o.codec === CODEC_ZSTD ? zstdDecompressSync(rec.stored) : Buffer.from(rec.stored);
    into.push({ id: o.id, raw, codec: o.codec, ring: o.record.buffer });
  };
}

test('streaming: onChunk gets the same chunks as a collected result, as well-formed pack records', async () => {
  const content = Buffer.concat([randomBytes(3 << 20), text(1 << 20, 11), randomBytes(2 << 20)]);
  writeFileSync(p('stream'), content);
  const collected = ok(await pool.chunkFile(p('stream')));
  const seen: Array<{ id: string; raw: Buffer; codec: number; ring: ArrayBufferLike }> = [];
  const streamed = ok(await pool.chunkFile(p('stream'), content.length, { onChunk: collect(seen) }));
  assert.deepEqual(streamed.chunks, [], 'nothing collected');
  assert.deepEqual(streamed.ids, collected.ids);
  assert.deepEqual(seen.map((c) => c.id), collected.ids);
  assert.deepEqual(seen.map((c) => c.codec), collected.chunks.map((c) => c.codec));
  assert.ok(Buffer.concat(seen.map((c) => c.raw)).equals(content));
  assert.deepEqual(streamed.stat, collected.stat);
});

test('streaming a file many times the ring: every record passes through the bounded ring, before the file is done', async () => {
  const ringBytes = 256 * 1024;
  const small = new ChunkPool({ workers: 1, chunker: SMALL, ringBytes });
  try {
    const content = Buffer.concat([randomBytes(6 << 20), text(2 << 20, 12)]);
    writeFileSync(p('ringed'), content);
    const seen: Array<{ id: string; raw: Buffer; codec: number; ring: ArrayBufferLike }> = [];
    let settled = false;
    let seenBeforeDone = 0;
    const job = small.chunkFile(p('ringed'), content.length, {
      onChunk: (o) => {
        collect(seen)(o);
        if (!settled) seenBeforeDone++;
      },
    });
    const r = ok(await job.finally(() => (settled = true)));
    assert.ok(Buffer.concat(seen.map((c) => c.raw)).equals(content));
    assert.deepEqual(seen.map((c) => c.id), r.ids);
    // 8 MiB went through one shared buffer of 256 KiB: memory does not grow with the file
    const rings = new Set(seen.map((c) => c.ring));
    assert.equal(rings.size, 1);
    const [ring] = rings;
    assert.ok(ring instanceof SharedArrayBuffer && ring.byteLength === ringBytes, `ring of ${ring.byteLength} bytes`);
    assert.equal(seenBeforeDone, seen.length);
  } finally {
    await small.close();
  }
});

test('streaming with the store index: chunks the store holds are skipped by the worker, their ids still come back', async () => {
  const home = makeTestStore({ io: noSyncIo });
  try {
    const store = home.store;
    const content = Buffer.concat([randomBytes(1 << 20), text(300_000, 13)]);
    writeFileSync(p('indexed'), content);
    const index = { ref: store.sharedIndex()!, epoch: () => store.commitEpoch };
    assert.ok(index.ref);
    const first: StreamedObject[] = [];
    const onChunk = (o: StreamedObject) => {
      first.push({ ...o, record: Buffer.from(o.record) });
      store.putRecord(o.record, { trusted: true, absentAt: o.absentAt });
    };
    const r1 = ok(await pool.chunkFile(p('indexed'), content.length, { onChunk, index }));
    assert.equal(first.length, r1.ids.length);
    assert.ok(first.every((o) => o.absentAt === 0), 'the worker found none of them in the (empty) index');
    store.flush();
    // change the tail only: the chunks before it are in the index now
    const changed = Buffer.concat([content.subarray(0, content.length - 1000), randomBytes(1000)]);
    writeFileSync(p('indexed'), changed);
    const second: string[] = [];
    const r2 = ok(await pool.chunkFile(p('indexed'), changed.length, { onChunk: (o) => second.push(o.id), index }));
    assert.ok(second.length >= 1 && second.length < r2.ids.length, `${second.length} of ${r2.ids.length} chunks shipped`);
    assert.ok(second.every((id) => !store.has(id as never)));
    assert.deepEqual(r2.ids.slice(0, r1.ids.length - 2), r1.ids.slice(0, r1.ids.length - 2));
  } finally {
    home.dispose();
  }
});

test('an onChunk that throws fails its job only; the pool goes on', async () => {
  writeFileSync(p('throws'), randomBytes(100_000));
  await assert.rejects(
    pool.chunkFile(p('throws'), 100_000, {
      onChunk: () => {
        throw new Error('disk full, say');
      },
    }),
    /disk full, say/,
  );
  checkFile(ok(await pool.chunkFile(p('tiny'))), Buffer.from('hello, ferry'));
});

test('the reused zstd encoder: frame after frame, each decodes on its own', () => {
  const e = ZstdEncoder.create(2);
  assert.ok(e, 'this Node exposes what the encoder needs');
  const inputs = [text(100_000, 1), Buffer.alloc(3 << 20, 9), text(10, 2), randomBytes(70_000), text(5 << 20, 3)];
  for (const input of inputs) {
    const z = e.compress(input);
    assert.ok(z);
    assert.ok(zstdDecompressSync(z).equals(input));
  }
});

// A changed file read with its old chunks (StreamOptions.old): where a chunk starts at an old
// boundary and the old chunk's bytes follow unchanged, it is taken without the scan. The chunks must
// be exactly those of the one-shot chunker on the new content, whatever the edit.
test('a changed file read with its old chunks: the same chunks as a full scan, whatever the edit, and the unchanged ones not scanned', async () => {
  const home = makeTestStore({ io: noSyncIo });
  try {
    const store = home.store;
    const index = { ref: store.sharedIndex()!, epoch: () => store.commitEpoch };
    const onChunk = (o: StreamedObject) => store.putRecord(o.record, { trusted: true, absentAt: o.absentAt });
    let seed = 7;
    const rand = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    const base = Buffer.concat([text(200_000, 21), randomBytes(150_000), text(100_000, 22)]);
    const edits: Array<[string, (b: Buffer) => Buffer]> = [
      ['unchanged (a touch)', (b) => b],
      ['a byte changed in the middle', (b) => Buffer.concat([b.subarray(0, 220_000), Buffer.from([b[220_000] ^ 1]), b.subarray(220_001)])],
      ['bytes inserted', (b) => Buffer.concat([b.subarray(0, 123_456), randomBytes(777), b.subarray(123_456)])],
      ['bytes deleted', (b) => Buffer.concat([b.subarray(0, 300_000), b.subarray(305_000)])],
      ['appended', (b) => Buffer.concat([b, text(50_000, 23)])],
      ['truncated', (b) => b.subarray(0, 333_333)],
      ['prepended', (b) => Buffer.concat([randomBytes(100), b])],
      ['the first chunk rewritten', (b) => Buffer.concat([randomBytes(5000), b.subarray(5000)])],
      ['shorter than one chunk', (b) => b.subarray(0, 1000)],
      ['emptied', () => Buffer.alloc(0)],
    ];
    for (let i = 0; i < 12; i++) {
      const at = rand(base.length);
      edits.push([`random edit ${i} at ${at}`, (b) => Buffer.concat([b.subarray(0, Math.min(at, b.length)), randomBytes(rand(3) * rand(40_000)), b.subarray(Math.min(b.length, at + rand(3) * rand(40_000)))])]);
    }
    let hintedSomewhere = 0;
    for (const [what, edit] of edits) {
      writeFileSync(p('hinted'), base);
      const before = ok(await pool.chunkFile(p('hinted'), base.length, { onChunk, index }));
      store.flush();
      const content = edit(base);
      writeFileSync(p('hinted'), content);
      const r = ok(await pool.chunkFile(p('hinted'), content.length, { onChunk, index, old: before.ids }));
      store.flush();
      let at = 0;
      const cuts = cutPoints(content, SMALL);
      assert.deepEqual(r.ids, cuts.map((c) => { const id = sha(content.subarray(at, c)); at = c; return id; }), `${what}: the chunks of a full scan`);
      assert.ok(r.hintedBytes !== undefined && r.hintedBytes <= content.length, `${what}: hinted ${r.hintedBytes}`);
      if (what === 'unchanged (a touch)') assert.equal(r.hintedBytes, content.length, 'an unchanged file: every chunk at its old boundary');
      if (what === 'a byte changed in the middle' || what === 'appended') assert.ok(r.hintedBytes! >= 150_000, `${what}: most chunks not scanned (${r.hintedBytes})`);
      hintedSomewhere += r.hintedBytes!;
    }
    assert.ok(hintedSomewhere > 0);
    // Without the index (lengths unknown), the old chunks are not used: a full scan.
    writeFileSync(p('hinted'), base);
    const plain = ok(await pool.chunkFile(p('hinted'), base.length, { old: [] }));
    assert.equal(plain.hintedBytes, undefined);
  } finally {
    home.dispose();
  }
});
