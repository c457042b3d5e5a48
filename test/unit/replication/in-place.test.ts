// Patching a large file of a replica in place (src/replication/in-place.ts): only the chunks that
// differ are written, into the file's own inode, after its record is journaled; a file cut part way
// is told apart from one someone else wrote into, from the record and its bytes.
import { dirEntries } from '../../../src/snapshot/dir-pages.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv } from 'node:crypto';
import { closeSync, linkSync, mkdirSync, openSync, readFileSync, statSync, truncateSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { captureTree } from '../../../src/snapshot/capture.ts';
import { defaultMetaContext } from '../../../src/snapshot/materialize.ts';
import type { TreeEntry } from '../../../src/snapshot/model.ts';
import { isOwnWork, parseInPlaceRecord, patchInPlace, type InPlaceRecord } from '../../../src/replication/in-place.ts';
import type { Site } from '../../../src/site/site.ts';
import type { ChunkPool } from '../../../src/snapshot/chunk-pool.ts';
import { withLocalSite } from '../local-site.ts';

const MiB = 1024 * 1024;

/** `n` bytes that look random but are the same on every run (AES-CTR of zeros under a key from `seed`): chunk boundaries are then the same too. */
function bytes(n: number, seed: number): Buffer {
  const key = Buffer.alloc(16, seed);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(n));
}

/** The entry of file `name` in a capture of `dir`. */
async function entryOf(site: Site, pool: ChunkPool, dir: string, name = 'big'): Promise<TreeEntry> {
  const root = (await captureTree(dir, { store: site.store, pool, startedAt: Date.now() })).root;
  site.store.flush(); // the apply reads a store whose objects are durable (lengths known)
  return dirEntries(site.store, root).find((e) => e.name.toString() === name)!;
}

/** A 16 MiB file F at dir/big and its changed version T (captured, then F put back), with 256 KiB at 2 MiB rewritten and `tail` appended (or cut when negative). */
async function pair(site: Site, pool: ChunkPool, dir: string, tail: number) {
  mkdirSync(dir, { recursive: true });
  const p = join(dir, 'big');
  const old = bytes(16 * MiB, 1);
  writeFileSync(p, old);
  utimesSync(p, 1_700_000_000, 1_700_000_000);
  const from = await entryOf(site, pool, dir);
  const next = Buffer.from(old);
  bytes(MiB / 4, 2).copy(next, 2 * MiB);
  const want = tail >= 0 ? Buffer.concat([next, bytes(tail, 3)]) : next.subarray(0, next.length + tail);
  writeFileSync(p, want);
  utimesSync(p, 1_700_000_100, 1_700_000_100);
  const to = await entryOf(site, pool, dir);
  writeFileSync(p, old);
  utimesSync(p, 1_700_000_000, 1_700_000_000);
  return { p, old, want, from, to, pb: Buffer.from(p) };
}

for (const [what, tail] of [['the same size', 0], ['grown', 3 * MiB], ['cut short', -4 * MiB]] as const) {
  test(`a large file changed in one region and ${what} is patched in its own inode, journaled first`, async () => {
    await withLocalSite('inplace', async ({ dir, site, pool }) => {
      const { p, want, from, to, pb } = await pair(site, pool, join(dir, 'r'), tail);
      const ino = statSync(p).ino;
      const records: InPlaceRecord[] = [];
      const wrote = patchInPlace(site.store, pb, from, to, defaultMetaContext(), (r) => {
        // journaled before the first write: the file is still the old one
        assert.equal(statSync(p).size, from.size);
        records.push(r);
      });
      assert.ok(wrote !== undefined, 'patched in place');
      assert.ok(wrote <= to.size / 2, `only what changed was written (${wrote} of ${to.size} bytes)`);
      assert.ok(readFileSync(p).equals(want), 'the file is the new one');
      const st = statSync(p);
      assert.equal(st.ino, ino, 'the same inode');
      assert.equal(Math.floor(st.mtimeMs), 1_700_000_100_000);
      assert.equal(records.length, 1);
      const r = parseInPlaceRecord(JSON.stringify(records[0]))!;
      assert.ok(r, 'the record reads back');
      assert.ok(isOwnWork(pb, r), 'a finished patch is the apply\'s own work');
    });
  });
}

test('a patch cut part way is its own work; a write into a kept range, a torn range or a wrong size is not', async () => {
  await withLocalSite('inplace-cut', async ({ dir, site, pool }) => {
    for (const tail of [0, 3 * MiB, -4 * MiB]) {
      const { p, old, want, from, to, pb } = await pair(site, pool, join(dir, `t${tail}`), tail);
      let record: InPlaceRecord | undefined;
      assert.ok(patchInPlace(site.store, pb, from, to, defaultMetaContext(), (r) => (record = r)) !== undefined);
      const r = record!;
      const written = r.chunks.filter((c) => c[3] !== undefined);
      assert.ok(written.length >= 1, 'some ranges were written');
      // Untouched: cut before the first write (and, for a shorter file, before the cut).
      writeFileSync(p, old);
      assert.ok(isOwnWork(pb, r), `${tail}: not started`);
      // Part way: the first written range new, the rest old (a shorter file is cut first).
      const part = tail < 0 ? Buffer.from(old.subarray(0, to.size)) : Buffer.from(old);
      const [at, len] = written[0];
      want.copy(part, at, at, at + len);
      writeFileSync(p, part.subarray(0, Math.max(part.length, at + len)));
      assert.ok(isOwnWork(pb, r), `${tail}: part way`);
      // Someone wrote into a range the patch keeps.
      const kept = r.chunks.find((c) => c[3] === undefined)!;
      const theirs = Buffer.from(part);
      theirs[kept[0] + 10] ^= 0xff;
      writeFileSync(p, theirs);
      assert.equal(isOwnWork(pb, r), false, `${tail}: a write into a kept range`);
      // A range half written (a power loss mid-write): neither its old bytes nor its chunk.
      const torn = Buffer.from(part);
      want.copy(torn, written.at(-1)![0], written.at(-1)![0], written.at(-1)![0] + 100);
      if (written.length > 1 || torn.compare(part) !== 0) {
        writeFileSync(p, torn);
        if (!torn.equals(part)) assert.equal(isOwnWork(pb, r), false, `${tail}: a torn range`);
      }
      // A size no cut patch leaves.
      writeFileSync(p, want);
      truncateSync(p, Math.max(from.size, to.size) + 1);
      assert.equal(isOwnWork(pb, r), false, `${tail}: longer than both`);
      writeFileSync(p, want);
      assert.ok(isOwnWork(pb, r), `${tail}: done`);
    }
  });
});

test('a file with a second link, or changed since the writes check, is not patched in place', async () => {
  await withLocalSite('inplace-no', async ({ dir, site, pool }) => {
    const { p, old, from, to, pb } = await pair(site, pool, join(dir, 'r'), 0);
    const never = () => assert.fail('nothing is journaled for a file not patched in place');
    linkSync(p, join(dir, 'other-name'));
    assert.equal(patchInPlace(site.store, pb, from, to, defaultMetaContext(), never), undefined, 'a second link');
    assert.ok(readFileSync(join(dir, 'other-name')).equals(old), 'the other name still shows the old file');
    const { p: p2, pb: pb2, from: f2, to: t2 } = await pair(site, pool, join(dir, 's'), 0);
    const fd = openSync(p2, 'r+');
    writeSync(fd, Buffer.from('x'), 0, 1, 100);
    closeSync(fd);
    assert.equal(patchInPlace(site.store, pb2, f2, t2, defaultMetaContext(), never), undefined, 'written since the check (mtime moved)');
  });
});

test('a damaged record is no record: the file is not taken as the apply\'s work', () => {
  const id = 'a'.repeat(64);
  assert.ok(parseInPlaceRecord(JSON.stringify({ fromSize: 1, toSize: 2, chunks: [[0, 2, id, null]] })));
  for (const bad of ['', '{', 'null', '[]', JSON.stringify({ fromSize: -1, toSize: 2, chunks: [] }), JSON.stringify({ fromSize: 1, toSize: 2, chunks: [[0, 2, 'zz']] }),
    JSON.stringify({ fromSize: 1, toSize: 2, chunks: [[0, 2, id, 5]] }), JSON.stringify({ fromSize: 1, toSize: 2, chunks: [], tail: [[0, 1]] })]) {
    assert.equal(parseInPlaceRecord(bad), undefined, bad);
  }
  assert.equal(parseInPlaceRecord(undefined), undefined);
});
