// The stat cache's tables (src/catalog/stat-cache.ts) on a real catalog: a capture's rows are pending
// until it commits, a commit replaces only the rows the capture wrote (the others stand, unwritten),
// the committed rows are read only by a capture whose parent they describe, and rows of captures that
// never committed, of a deleted snapshot, or of an older layout go.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Catalog } from '../../../src/catalog/catalog.ts';
import {
  commitStatCache, discardStatCache, dropStatCacheOf, keepStatCacheOf, putStatCacheRows, statCacheOwner, statCacheRowsFrom, statCacheFor, StatCacheWriter,
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
type Row = { pending: string; member: string; dir: string; id: number };
const rows = (cat: Catalog, volume = 'v'): Row[] =>
  cat.db.all<{ pending: string; member: string; dir: Uint8Array; id: number }>('SELECT id, pending, member, dir FROM stat_cache_rows WHERE volume = ? ORDER BY pending, member, dir', volume)
    .map((r) => ({ pending: r.pending, member: r.member, dir: Buffer.from(r.dir).toString(), id: r.id }));
/** What a capture whose parent is `snapshot` reads of member `m`. */
const read = (cat: Catalog, m: string, snapshot: string, volume = 'v'): Record<string, string> =>
  Object.fromEntries(statCacheRowsFrom(cat, volume, m, snapshot, Buffer.alloc(0), 100).map((r) => [Buffer.from(r.dir).toString(), Buffer.from(r.data).toString()]));

test('a journaled commit replaces the rows the capture wrote; the others stand, unwritten, and now describe the new snapshot', () => {
  withCatalog((cat) => {
    putStatCacheRows(cat, 'v', 'S1', [['m', dir('a'), data('a1')], ['m', dir('b'), data('b1')], ['m', dir('c'), data('c1')], ['n', dir('x'), data('x1')]]);
    assert.deepEqual(read(cat, 'm', 'S1'), {}, 'pending rows are read by nobody');
    commitStatCache(cat, 'v', 'S1', { parent: undefined, whole: 'all' });
    assert.equal(statCacheOwner(cat, 'v'), 'S1');
    assert.deepEqual(read(cat, 'm', 'S1'), { a: 'data of a1', b: 'data of b1', c: 'data of c1' });
    const before = rows(cat);
    // The next capture looked at `b` only (a journaled capture of both members).
    putStatCacheRows(cat, 'v', 'S2', [['m', dir('b'), data('b2')]]);
    assert.deepEqual(read(cat, 'm', 'S1'), { a: 'data of a1', b: 'data of b1', c: 'data of c1' }, 'uncommitted: the committed rows are as they were');
    commitStatCache(cat, 'v', 'S2', { parent: 'S1', whole: [] });
    assert.equal(statCacheOwner(cat, 'v'), 'S2');
    assert.deepEqual(read(cat, 'm', 'S2'), { a: 'data of a1', b: 'data of b2', c: 'data of c1' });
    assert.deepEqual(read(cat, 'n', 'S2'), { x: 'data of x1' });
    assert.deepEqual(read(cat, 'm', 'S1'), {}, 'the rows describe S2 now, not S1');
    const after = rows(cat);
    // `a`, `c` and `x` are the very rows they were: a commit touches only what the capture wrote.
    for (const d of ['a', 'c', 'x']) assert.equal(after.find((r) => r.dir === d)!.id, before.find((r) => r.dir === d)!.id, d);
    assert.equal(after.length, 4, 'b1 was replaced, not kept beside b2');
    assert.ok(after.every((r) => r.pending === ''));
  });
});

test('a member walked whole replaces all its rows (directories gone go with them); the other members\' rows stand', () => {
  withCatalog((cat) => {
    putStatCacheRows(cat, 'v', 'S1', [['m', dir('a'), data('a1')], ['m', dir('gone'), data('g1')], ['n', dir('x'), data('x1')]]);
    commitStatCache(cat, 'v', 'S1', { parent: undefined, whole: 'all' });
    putStatCacheRows(cat, 'v', 'S2', [['m', dir('a'), data('a2')]]);
    commitStatCache(cat, 'v', 'S2', { parent: 'S1', whole: ['m'] });
    assert.deepEqual(read(cat, 'm', 'S2'), { a: 'data of a2' });
    assert.deepEqual(read(cat, 'n', 'S2'), { x: 'data of x1' });
  });
});

test('a commit whose parent the rows do not describe drops them first: nothing of another snapshot is carried', () => {
  withCatalog((cat) => {
    putStatCacheRows(cat, 'v', 'S1', [['m', dir('a'), data('a1')], ['m', dir('b'), data('b1')]]);
    commitStatCache(cat, 'v', 'S1', { parent: undefined, whole: 'all' });
    // A capture from another parent (the rows describe S1): only its own rows stand after.
    putStatCacheRows(cat, 'v', 'S3', [['m', dir('b'), data('b3')]]);
    commitStatCache(cat, 'v', 'S3', { parent: 'S0', whole: [] });
    assert.deepEqual(read(cat, 'm', 'S3'), { b: 'data of b3' });
    // And a capture with no parent keeps none either.
    putStatCacheRows(cat, 'v', 'S4', [['m', dir('c'), data('c4')]]);
    commitStatCache(cat, 'v', 'S4', { parent: undefined, whole: [] });
    assert.deepEqual(read(cat, 'm', 'S4'), { c: 'data of c4' });
  });
});

test('rows of a capture that never committed go with the next commit, or when discarded; a commit can name another owner', () => {
  withCatalog((cat) => {
    putStatCacheRows(cat, 'v', 'A', [['m', dir('a'), data('a')]]);
    commitStatCache(cat, 'v', 'A', { parent: undefined, whole: 'all' });
    putStatCacheRows(cat, 'v', 'CUT', [['m', dir('a'), data('cut')], ['m', dir('z'), data('cut')]]);
    putStatCacheRows(cat, 'v', 'K', [['m', dir('a'), data('k')]]);
    discardStatCache(cat, 'v', 'K');
    assert.deepEqual(rows(cat).map((r) => `${r.pending}:${r.dir}`), [':a', 'CUT:a', 'CUT:z']);
    // A writes check that found the replica unchanged: its rows describe the applied snapshot A.
    putStatCacheRows(cat, 'v', 'W', [['m', dir('b'), data('w')]]);
    commitStatCache(cat, 'v', 'W', { owner: 'A', parent: 'A', whole: [] });
    assert.equal(statCacheOwner(cat, 'v'), 'A');
    assert.deepEqual(read(cat, 'm', 'A'), { a: 'data of a', b: 'data of w' });
    assert.deepEqual(rows(cat).map((r) => `${r.pending}:${r.dir}`), [':a', ':b'], 'the cut capture\'s rows went');
  });
});

test('deleting the snapshot the rows describe drops them; deleting another drops only its pending rows; volumes are apart', () => {
  withCatalog((cat) => {
    putStatCacheRows(cat, 'v', 'A', [['m', dir('a'), data('a')]]);
    commitStatCache(cat, 'v', 'A', { parent: undefined, whole: 'all' });
    putStatCacheRows(cat, 'w', 'W', [['m', dir('a'), data('other volume')]]);
    commitStatCache(cat, 'w', 'W', { parent: undefined, whole: 'all' });
    putStatCacheRows(cat, 'v', 'B', [['m', dir('b'), data('b')]]);
    dropStatCacheOf(cat, 'v', 'B');
    assert.deepEqual(rows(cat).map((r) => `${r.pending}:${r.dir}`), [':a']);
    dropStatCacheOf(cat, 'v', 'OTHER');
    assert.deepEqual(read(cat, 'm', 'A'), { a: 'data of a' });
    // The tree is another snapshot now (a failback's kept one): the rows of A go.
    keepStatCacheOf(cat, 'v', 'A');
    assert.deepEqual(read(cat, 'm', 'A'), { a: 'data of a' });
    keepStatCacheOf(cat, 'v', 'KEPT');
    assert.deepEqual(rows(cat), []);
    assert.equal(statCacheOwner(cat, 'v'), undefined);
    putStatCacheRows(cat, 'v', 'C', [['m', dir('c'), data('c')]]);
    commitStatCache(cat, 'v', 'C', { parent: undefined, whole: 'all' });
    dropStatCacheOf(cat, 'v', 'C');
    assert.deepEqual(rows(cat), []);
    assert.deepEqual(read(cat, 'm', 'W', 'w'), { a: 'data of other volume' }, 'the other volume is untouched');
    dropStatCacheOf(cat, 'w');
    assert.deepEqual(rows(cat, 'w'), []);
  });
});

test('a capture reading ahead gets nothing once another commit changed what the rows describe', () => {
  withCatalog((cat) => {
    putStatCacheRows(cat, 'v', 'P', [['m', dir('a'), encodeDirCache([[dir('f'), { size: 1, mtimeNs: 1n, ctimeNs: 1n, ino: 1n, chunks: [] }]])], ['m', dir('b'), encodeDirCache([])]]);
    commitStatCache(cat, 'v', 'P', { parent: undefined, whole: 'all' });
    const io = statCacheFor(cat, 'v', 'm', 'P', new StatCacheWriter(cat, 'v', 'X'));
    putStatCacheRows(cat, 'v', 'Y', [['m', dir('c'), encodeDirCache([])]]);
    commitStatCache(cat, 'v', 'Y', { parent: 'P', whole: [] });
    assert.equal(io.load(dir('a')), undefined, 'the rows describe Y now: a capture from P must not trust them');
    assert.equal(io.loadKey!(dir('b')), undefined);
    assert.throws(() => new StatCacheWriter(cat, 'v', ''), /key/);
  });
});

test('a lost pack drops the whole cache; older layouts\' rows go at open', () => {
  withCatalog((cat, path) => {
    putStatCacheRows(cat, 'v', 'S', [['m', dir('a'), data('a')]]);
    commitStatCache(cat, 'v', 'S', { parent: undefined, whole: 'all' });
    cat.db.run("INSERT INTO stat_cache (volume, member, snapshot, dir, data) VALUES ('v', 'm', 'OLD', x'61', x'00')");
    cat.db.run("INSERT INTO stat_cache_data (id, data) VALUES (7, x'00')");
    cat.db.run("INSERT INTO stat_cache_dirs (volume, member, snapshot, dir, blob) VALUES ('v', 'm', 'OLD', x'61', 7)");
    cat.db.close();
    // An older catalog: the trigger as the layout keyed by snapshot made it.
    const raw = new Sqlite(path);
    raw.exec('DROP TRIGGER lost_pack_drops_stat_cache; CREATE TRIGGER lost_pack_drops_stat_cache AFTER INSERT ON lost_packs BEGIN DELETE FROM stat_cache; DELETE FROM stat_cache_dirs; DELETE FROM stat_cache_data; END;');
    raw.close();
    const again = Catalog.open(path);
    try {
      for (const t of ['stat_cache', 'stat_cache_dirs', 'stat_cache_data']) assert.equal(again.db.get<{ n: number }>(`SELECT count(*) AS n FROM ${t}`)!.n, 0, `${t} emptied at open`);
      assert.equal(rows(again).length, 1);
      const trigger = again.db.get<{ sql: string }>("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'lost_pack_drops_stat_cache'")!;
      // it still names the older tables: an older ferry keeps it, and it empties the new ones too
      assert.match(trigger.sql, /stat_cache_dirs.*stat_cache_rows.*stat_cache_owner/s);
      again.db.exec('PRAGMA foreign_keys = OFF'); // no pack rows here: only the trigger is under test
      again.db.run("INSERT INTO lost_packs (pack, problem, at) VALUES (1, 'missing', 1)");
      assert.equal(rows(again).length, 0);
      assert.equal(statCacheOwner(again, 'v'), undefined);
    } finally {
      again.db.close();
    }
  });
});

test('a paged directory\'s rows (one per page) load together with its own, which wins; a page\'s row loads alone', () => {
  withCatalog((cat) => {
    const f = (n: number): CachedFile => ({ size: n, mtimeNs: BigInt(n), ctimeNs: BigInt(n), ino: BigInt(n), chunks: [] });
    const enc = (entries: Array<[string, number]>) => encodeDirCache(entries.map(([n, v]) => [Buffer.from(n), f(v)]));
    putStatCacheRows(cat, 'v', 'S1', [
      ['m', dir('d'), enc([['x', 9]])], // its own row (from when it was one tree): wins
      ['m', statCacheKey(dir('d'), dir('a')), enc([['a', 1], ['b', 2]])],
      ['m', statCacheKey(dir('d'), dir('m')), enc([['m', 3], ['x', 4]])],
      ['m', dir('d/sub'), enc([['s', 5]])], // a subdirectory's row is not the directory's
      ['m', dir('e'), enc([['e', 6]])],
    ]);
    commitStatCache(cat, 'v', 'S1', { parent: undefined, whole: 'all' });
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
