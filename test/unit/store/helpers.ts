// Shared setup for the store tests: temporary homes, catalogs with the store
// schema, deterministic bytes, and fsync-free I/O for tests that do not test
// durability (fsync costs ~5 ms here).
import { mkdtempSync, rmSync, openSync, readSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { Sqlite } from '../../../src/core/sqlite.ts';
import type { ObjectId } from '../../../src/core/ids.ts';
import { STORE_SCHEMA_SQL } from '../../../src/store/schema.ts';
import { nodePackFileIo, type PackFileIo } from '../../../src/store/pack.ts';
import { PackStore, type PackStoreOptions } from '../../../src/store/pack-store.ts';

export function makeTempDir(prefix = 'ferry-store-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** A catalog with the store tables; ':memory:' for tests that need no file. */
export function openTestDb(path: string): Sqlite {
  const db = new Sqlite(path);
  if (path !== ':memory:') {
    db.exec('PRAGMA journal_mode = WAL');
    db.exec('PRAGMA synchronous = FULL');
  }
  db.exec(STORE_SCHEMA_SQL);
  return db;
}

/** Skips fsync: for tests where durability across power loss is not under test. */
export const noSyncIo: PackFileIo = {
  write: nodePackFileIo.write,
  fsync: () => {},
  fsyncDir: () => {},
};

/** Deterministic pseudo-random (incompressible) bytes. */
export function pseudoRandomBytes(n: number, seed: number | string): Buffer {
  const out = Buffer.allocUnsafe(n);
  let block = createHash('sha256').update(`seed:${seed}`).digest();
  for (let at = 0; at < n; at += 32) {
    block.copy(out, at, 0, Math.min(32, n - at));
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

/** Bytes that zstd shrinks a lot. */
export function compressibleBytes(n: number, seed: number | string): Buffer {
  const word = Buffer.from(`ferry-${seed}-`);
  const out = Buffer.allocUnsafe(n);
  for (let at = 0; at < n; at += word.length) word.copy(out, at, 0, Math.min(word.length, n - at));
  return out;
}

/** XOR one byte of a file in place. */
export function flipByte(file: string, offset: number): void {
  const fd = openSync(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, offset);
    b[0] ^= 0xff;
    writeSync(fd, b, 0, 1, offset);
  } finally {
    closeSync(fd);
  }
}

export interface TestStoreHome {
  dir: string;
  db: Sqlite;
  store: PackStore;
  /** close the store (flushing) and open a new one on the same db and dir */
  reopen(options?: Partial<PackStoreOptions>): PackStore;
  /** close without flushing (as a crash would), open a new one and recover */
  crashAndReopen(options?: Partial<PackStoreOptions>): PackStore;
  dispose(): void;
}

/** A store in a fresh temporary directory with a file catalog (or ':memory:'). */
export function makeTestStore(options: Partial<PackStoreOptions> & { memoryDb?: boolean } = {}): TestStoreHome {
  const dir = makeTempDir();
  const db = openTestDb(options.memoryDb ? ':memory:' : join(dir, 'catalog.db'));
  const base: Partial<PackStoreOptions> = { ...options };
  delete (base as { memoryDb?: boolean }).memoryDb;
  const open = (o: Partial<PackStoreOptions> = {}) => new PackStore({ ...base, ...o, db, dir: join(dir, 'store') });
  const home: TestStoreHome = {
    dir,
    db,
    store: open(),
    reopen(o) {
      home.store.close();
      home.store = open(o);
      return home.store;
    },
    crashAndReopen(o) {
      home.store.close({ flush: false });
      home.store = open(o);
      home.store.recover();
      return home.store;
    },
    dispose() {
      try {
        home.store.close({ flush: false });
      } finally {
        db.close();
        removeDir(dir);
      }
    },
  };
  return home;
}

export function asId(s: string): ObjectId {
  return s as ObjectId;
}
