// A catalog that cannot grow (the disk is full: SQLite's SQLITE_FULL, made here with max_page_count)
// fails a change with NO_SPACE, rolled back, not with an internal error (the soak found `ferry
// failback` on a full disk ending in INTERNAL: "database or disk is full").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Sqlite } from '../../../src/core/sqlite.ts';
import { isFerryError } from '../../../src/core/errors.ts';
import { tempDir } from '../../helpers.ts';

function fullCatalog(dir: string): Sqlite {
  const db = new Sqlite(join(dir, 'catalog.db'));
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB NOT NULL)');
  db.run('INSERT INTO t (data) VALUES (?)', Buffer.alloc(100));
  const pages = (db.get<{ n: number }>('PRAGMA page_count') as { n?: number; page_count?: number }).page_count!;
  db.exec(`PRAGMA max_page_count = ${pages + 2}`);
  return db;
}

test('a transaction that fills the disk fails with NO_SPACE and leaves nothing of itself', () => {
  const tmp = tempDir('ferry-sqlite-full-');
  const db = fullCatalog(tmp.path);
  try {
    assert.throws(
      () => db.tx(() => {
        db.run('INSERT INTO t (data) VALUES (?)', Buffer.alloc(10));
        db.run('INSERT INTO t (data) VALUES (?)', Buffer.alloc(64 * 1024));
      }),
      (err) => isFerryError(err, 'NO_SPACE') && /disk is full/.test(err.message) && /free space/.test(err.message),
    );
    assert.equal(db.get<{ n: number }>('SELECT count(*) AS n FROM t')!.n, 1, 'the failed transaction is rolled back');
    assert.equal(db.inTransaction, false);
    // A statement on its own, outside a transaction, the same.
    assert.throws(() => db.run('INSERT INTO t (data) VALUES (?)', Buffer.alloc(64 * 1024)), (err) => isFerryError(err, 'NO_SPACE'));
    // Once there is room again the catalog works.
    db.exec('PRAGMA max_page_count = 1000000');
    db.tx(() => db.run('INSERT INTO t (data) VALUES (?)', Buffer.alloc(64 * 1024)));
    assert.equal(db.get<{ n: number }>('SELECT count(*) AS n FROM t')!.n, 2);
  } finally {
    db.close();
    tmp.cleanup();
  }
});
