// The stat cache's tables (src/catalog/stat-cache.ts) on a real catalog: a carry moves entries without
// rewriting their data, only the newest snapshot's entries stay, and no blob outlives the last entry
// naming it (nor is one dropped while an entry still names it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Catalog } from '../../../src/catalog/catalog.ts';
import {
  carryMemberStatCache, carryStatCache, dropStatCacheOf, keepStatCacheOf, putStatCacheRows, renameStatCache, statCacheRowsFrom, statCacheFor, StatCacheWriter, overlayStatCache,
} from '../../../src/catalog/stat-cache.ts';
import { statCacheKey } from '../../../src/snapshot/capture-types.ts';
import { encodeDirCache, type CachedFile } from '../../../src/snapshot/stat-cache.ts';
import { Sqlite } from '../../../src/core/sqlite.ts';

function withCatalog(fn: (cat: Catalog, path: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-statcache-'));
  const path = join(dir, 'catalog.db');
  const cat = Catalog.create(path, { id: 'site-id', name: 'a' });
  try {
    fn(cat, path);
  } finally {
    cat.db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const dir = (s: string) => Buffer.from(s);
const data = (s: string) => Buffer.from(`data of ${s}`);
type Key = { snapshot: string; dir: string; blob: number };
const keys = (cat: Catalog): Key[] =>
  cat.db.all<{ snapshot: string; dir: Uint8Array; blob: number }>('SELECT snapshot, dir, blob FROM stat_cache_dirs ORDER BY snapshot, dir').map((r) => ({ snapshot: r.snapshot, dir: Buffer.from(r.dir).toString(), blob: r.blob }));
const blobs = (cat: Catalog): number[] => cat.db.all<{ id: number }>('SELECT id FROM stat_cache_data ORDER BY id').map((r) => r.id);
const read = (cat: Catalog, member: string, snapshot: string): Record<string, string> =>
  Object.fromEntries(statCacheRowsFrom(cat, 'v', member, snapshot, Buffer.alloc(0), 100).map((r) => [Buffer.from(r.dir).toString(), Buffer.from(r.data).toString()]));

test('a journaled carry moves the parent\'s entries to the new snapshot without writing their data again', () => {
  withCatalog((cat) => {
    putStatCacheRows(cat, 'v', 'S1', [['m', dir('a'), data('a1')], ['m', dir('b'), data('b1')], ['m', dir('c'), data('c1')]]);
    const before = keys(cat);
    // The next capture looked at `b` only; the others carry over.
    putStatCacheRows(cat, 'v', 'S2', [['m', dir('b'), data('b2')]]);
    carryMemberStatCache(cat, 'v', 'm', 'S1', 'S2');
    keepStatCacheOf(cat, 'v', 'S2');
    assert.deepEqual(read(cat, 'm', 'S2'), { a: 'data of a1', b: 'data of b2', c: 'data of c1' });
    assert.deepEqual(read(cat, 'm', 'S1'), {});
    const after = keys(cat);
    // `a` and `c` name the very blobs they named before: their data was not rewritten.
    for (const d of ['a', 'c']) assert.equal(after.find((k) => k.dir === d)!.blob, before.find((k) => k.dir === d)!.blob, d);
    // The parent's blob of `b` went with its entry; nothing else is left.
    assert.deepEqual(blobs(cat), after.map((k) => k.blob).sort((x, y) => x - y));
  });
});

test('a copy shares blobs while both snapshots\' entries exist, and the last entry takes its blob along', () => {
  withCatalog((cat) => {
    putStatCacheRows(cat, 'v', 'A', [['m', dir('a'), data('a')], ['n', dir('x'), data('x')]]);
    putStatCacheRows(cat, 'w', 'W', [['m', dir('a'), data('other volume')]]);
    carryStatCache(cat, 'v', 'A', 'B');
    assert.equal(blobs(cat).length, 3, 'a copy writes no data');
    assert.deepEqual(read(cat, 'n', 'B'), { x: 'data of x' });
    dropStatCacheOf(cat, 'v', 'A');
    assert.equal(blobs(cat).length, 3, 'B still names both of v\'s blobs');
    assert.deepEqual(read(cat, 'm', 'B'), { a: 'data of a' });
    // A rename onto a snapshot that has its own entry for a directory keeps that entry.
    putStatCacheRows(cat, 'v', 'C', [['m', dir('a'), data('a of C')]]);
    renameStatCache(cat, 'v', 'B', 'C');
    assert.deepEqual(read(cat, 'm', 'C'), { a: 'data of a of C' });
    assert.deepEqual(read(cat, 'n', 'C'), { x: 'data of x' });
    assert.deepEqual(keys(cat).filter((k) => k.snapshot === 'B'), []);
    dropStatCacheOf(cat, 'v');
    assert.deepEqual(keys(cat).map((k) => k.snapshot), ['W'], 'only the other volume is left');
    assert.equal(blobs(cat).length, 1);
  });
});

test('an entry written again for the same snapshot replaces its blob', () => {
  withCatalog((cat) => {
    putStatCacheRows(cat, 'v', 'S', [['m', dir('a'), data('first')]]);
    putStatCacheRows(cat, 'v', 'S', [['m', dir('a'), data('second')]]);
    assert.deepEqual(read(cat, 'm', 'S'), { a: 'data of second' });
    assert.equal(blobs(cat).length, 1);
  });
});

test('a lost pack drops the whole cache; a format 1 catalog\'s old rows go at open', () => {
  withCatalog((cat, path) => {
    putStatCacheRows(cat, 'v', 'S', [['m', dir('a'), data('a')]]);
    cat.db.run("INSERT INTO stat_cache (volume, member, snapshot, dir, data) VALUES ('v', 'm', 'OLD', x'61', x'00')");
    cat.db.close();
    // An older catalog: the trigger as format 1 made it.
    const raw = new Sqlite(path);
    raw.exec('DROP TRIGGER lost_pack_drops_stat_cache; CREATE TRIGGER lost_pack_drops_stat_cache AFTER INSERT ON lost_packs BEGIN DELETE FROM stat_cache; END;');
    raw.close();
    const again = Catalog.open(path);
    try {
      assert.equal(again.db.get<{ n: number }>('SELECT count(*) AS n FROM stat_cache')!.n, 0, 'format 1 rows dropped at open');
      assert.equal(keys(again).length, 1);
      const trigger = again.db.get<{ sql: string }>("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'lost_pack_drops_stat_cache'")!;
      assert.match(trigger.sql, /stat_cache_dirs/);
      again.db.exec('PRAGMA foreign_keys = OFF'); // no pack rows here: only the trigger is under test
      again.db.run("INSERT INTO lost_packs (pack, problem, at) VALUES (1, 'missing', 1)");
      assert.equal(keys(again).length, 0);
      assert.equal(blobs(again).length, 0);
    } finally {
      again.db.close();
    }
  });
});

test('a paged directory\'s rows (one per page) load together with its own, which wins; a page\'s row loads alone', () => {
  withCatalog((cat) => {
    const f = (n: number): CachedFile => ({ size: n, mtimeNs: BigInt(n), ctimeNs: BigInt(n), ino: BigInt(n), chunks: [] });
    const rows = (entries: Array<[string, number]>) => encodeDirCache(entries.map(([n, v]) => [Buffer.from(n), f(v)]));
    putStatCacheRows(cat, 'v', 'S1', [
      ['m', dir('d'), rows([['x', 9]])], // its own row (from when it was one tree): wins
      ['m', statCacheKey(dir('d'), dir('a')), rows([['a', 1], ['b', 2]])],
      ['m', statCacheKey(dir('d'), dir('m')), rows([['m', 3], ['x', 4]])],
      ['m', dir('d/sub'), rows([['s', 5]])], // a subdirectory's row is not the directory's
      ['m', dir('e'), rows([['e', 6]])],
    ]);
    const io = statCacheFor(cat, 'v', 'm', 'S1', new StatCacheWriter(cat, 'v', 'S2'));
    const d = io.load(dir('d'))!;
    assert.deepEqual([...d.keys()].sort(), ['a', 'b', 'm', 'x']);
    assert.equal(d.get('x')!.size, 9);
    assert.deepEqual([...io.loadKey!(statCacheKey(dir('d'), dir('m')))!.keys()], ['m', 'x']);
    assert.deepEqual([...io.load(dir('d/sub'))!.keys()], ['s']);
    assert.deepEqual([...io.load(dir('e'))!.keys()], ['e']);
    assert.equal(io.load(dir('nothing')), undefined);
  });
});

test('overlay: a capture\'s own rows replace the applied snapshot\'s for the same keys, the others stand unwritten, no blob is left unnamed', () => {
  withCatalog((cat) => {
    putStatCacheRows(cat, 'v', 'A', [['m', dir('a'), data('a1')], ['m', dir('b'), data('b1')], ['m', dir('c'), data('c1')]]);
    putStatCacheRows(cat, 'v', 'K', [['m', dir('b'), data('b2')]]);
    const before = keys(cat);
    overlayStatCache(cat, 'v', 'K', 'A');
    const after = keys(cat);
    assert.deepEqual(after.map((k) => `${k.snapshot}:${k.dir}`), ['A:a', 'A:b', 'A:c']);
    for (const d of ['a', 'c']) assert.equal(after.find((k) => k.dir === d)!.blob, before.find((k) => k.dir === d && k.snapshot === 'A')!.blob, d);
    assert.equal(after.find((k) => k.dir === 'b')!.blob, before.find((k) => k.dir === 'b' && k.snapshot === 'K')!.blob);
    assert.deepEqual(blobs(cat), after.map((k) => k.blob).sort((x, y) => x - y));
  });
});
