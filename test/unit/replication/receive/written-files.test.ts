// What an apply wrote (src/replication/receive/written-files.ts) on a real catalog: past its bound the
// record goes to the catalog, and the verification still gets every file the apply wrote, later
// writes over earlier ones; another apply's rows are never handed out, and none stay behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Catalog } from '../../../../src/catalog/catalog.ts';
import { WrittenFiles } from '../../../../src/replication/receive/written-files.ts';
import type { CachedFile } from '../../../../src/snapshot/stat-cache.ts';
import type { ObjectId } from '../../../../src/core/ids.ts';

function withCatalog(fn: (cat: Catalog) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-written-'));
  const cat = Catalog.create(join(dir, 'catalog.db'), { id: 'site-id', name: 'b' });
  try {
    fn(cat);
  } finally {
    cat.db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const chunk = (n: number) => n.toString(16).padStart(64, '0') as ObjectId;
const file = (n: number, size = n): CachedFile => ({ size, mtimeNs: 1_700_000_000_000_000_000n + BigInt(n), ctimeNs: 1_700_000_000_000_000_001n + BigInt(n), ino: BigInt(1000 + n), chunks: [chunk(n)] });
const rowCount = (cat: Catalog, volume = 'v') => cat.db.get<{ n: number }>('SELECT COUNT(*) AS n FROM apply_written WHERE volume = ?', volume)!.n;
const names = (m: Map<string, CachedFile> | undefined) => [...(m ?? new Map()).keys()].sort();

test('past its bound the record goes to the catalog in batches, and every written file is found with what lstat saw', () => {
  withCatalog((cat) => {
    const w = new WrittenFiles(cat, 'v', 3);
    w.add('m', 'd', 'a', file(1));
    w.add('m', 'd', 'b', file(2));
    assert.equal(rowCount(cat), 0, 'under the bound nothing is written');
    w.add('m', '', 'top', file(3));
    assert.equal(rowCount(cat), 2, 'at the bound the held files go, a row per directory');
    w.add('m', 'd', 'c', file(4));
    w.add('other', 'd', 'a', file(5));
    w.add('m', 'd', 'a', file(6, 600)); // written again later in the same apply: the later one counts
    assert.equal(rowCount(cat), 4, 'the second batch: a row for m/d, one for other/d');
    assert.deepEqual(names(w.dir('m', 'd')), ['a', 'b', 'c']);
    assert.deepEqual(w.dir('m', 'd')!.get('a'), file(6, 600));
    assert.deepEqual(w.dir('m', 'd')!.get('b'), file(2));
    assert.deepEqual(names(w.dir('m', '')), ['top']);
    assert.deepEqual(names(w.dir('other', 'd')), ['a'], 'members do not mix');
    assert.equal(w.dir('m', 'elsewhere'), undefined);
    assert.equal(w.count('m'), 5);
    assert.equal(w.count('other'), 1);
    assert.equal(w.count('none'), 0);
    w.add('m', 'e', 'held', file(7));
    assert.deepEqual(names(w.dir('m', 'e')), ['held'], 'what is still held is found too');
    w.drop();
    assert.equal(rowCount(cat), 0, 'nothing stays behind once the verification is done');
  });
});

test("a cut apply's rows are never handed to the next apply's verification", () => {
  withCatalog((cat) => {
    const cut = new WrittenFiles(cat, 'v', 1);
    cut.add('m', 'd', 'old', file(1));
    cut.add('m', 'd', 'gone', file(2));
    const other = new WrittenFiles(cat, 'w', 1);
    other.add('m', 'd', 'x', file(3));
    assert.equal(rowCount(cat), 2);
    // the daemon died here; the next apply of the volume starts
    const next = new WrittenFiles(cat, 'v', 1);
    assert.equal(rowCount(cat), 0, 'rows of the cut apply went');
    assert.equal(next.dir('m', 'd'), undefined);
    next.add('m', 'd', 'new', file(4));
    assert.deepEqual(names(next.dir('m', 'd')), ['new']);
    assert.equal(rowCount(cat, 'w'), 1, "another volume's rows stay");
  });
});
