// A thin wrapper over node:sqlite that gives nested transactions (savepoints)
// and cached prepared statements. Every state change in ferry is one
// transaction through `tx`. A change the disk has no room for (SQLITE_FULL) fails with NO_SPACE,
// rolled back, like every other write ferry makes on a full disk.
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { FerryError } from './errors.ts';
import { catalogCacheBytes, memory } from './memory.ts';

export type SqlValue = null | number | bigint | string | Uint8Array;

/**
 * A column as a SELECT list item, clamped to JavaScript's safe integers: node:sqlite refuses to read
 * a larger integer (the whole query fails), so a value written out of range by an older version can
 * otherwise make a table unreadable. Readers check the clamped value as they check any setting.
 */
export function safeIntColumn(column: string): string {
  return `min(max(${column}, ${-Number.MAX_SAFE_INTEGER}), ${Number.MAX_SAFE_INTEGER}) AS ${column}`;
}

const SQLITE_FULL = 13;

/** SQLite's "database or disk is full" as NO_SPACE (its statement or transaction was rolled back); anything else as it is. */
function noSpace(err: unknown, path: string): unknown {
  if ((err as { errcode?: number })?.errcode !== SQLITE_FULL) return err;
  return new FerryError('NO_SPACE', `the catalog ${path}: the disk is full (the change was rolled back: nothing of it was written); free space and run the command again`, { cause: err });
}

export class Sqlite {
  readonly db: DatabaseSync;
  readonly path: string;
  #stmts = new Map<string, StatementSync>();
  #depth = 0;
  /**
   * Told each statement run through run/get/all and how many rows it returned: for tests that
   * count what an operation reads (a metrics scrape must not read more as the site ages).
   */
  trace: ((sql: string, rows: number) => void) | undefined;

  constructor(path: string, options: { readOnly?: boolean } = {}) {
    this.path = path;
    this.db = new DatabaseSync(path, { readOnly: options.readOnly ?? false, timeout: 10_000 } as ConstructorParameters<typeof DatabaseSync>[1]);
    // Its page cache: its part of the memory budget's catalog share (core/memory.ts), counted while open.
    this.#cacheBytes = catalogCacheBytes();
    this.db.exec(`PRAGMA cache_size = -${Math.max(64, this.#cacheBytes >> 10)}`);
    memory.share('catalog').hold(this.#cacheBytes);
  }

  #cacheBytes: number;

  /** A cached prepared statement for `sql`. */
  stmt(sql: string): StatementSync {
    let s = this.#stmts.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.#stmts.set(sql, s);
    }
    return s;
  }

  run(sql: string, ...params: SqlValue[]): { changes: number | bigint; lastInsertRowid: number | bigint } {
    try {
      const r = this.stmt(sql).run(...params);
      this.trace?.(sql, 0);
      return r;
    } catch (err) {
      throw noSpace(err, this.path);
    }
  }

  get<T = Record<string, SqlValue>>(sql: string, ...params: SqlValue[]): T | undefined {
    const row = this.stmt(sql).get(...params) as T | undefined;
    this.trace?.(sql, row === undefined ? 0 : 1);
    return row;
  }

  all<T = Record<string, SqlValue>>(sql: string, ...params: SqlValue[]): T[] {
    const rows = this.stmt(sql).all(...params) as T[];
    this.trace?.(sql, rows.length);
    return rows;
  }

  exec(sql: string): void {
    try {
      this.db.exec(sql);
    } catch (err) {
      throw noSpace(err, this.path);
    }
  }

  get inTransaction(): boolean {
    return this.#depth > 0;
  }

  /** Run fn in a transaction; nested calls become savepoints. Rolls back on throw. */
  tx<T>(fn: () => T): T {
    const depth = this.#depth;
    const sp = `sp${depth}`;
    this.exec(depth === 0 ? 'BEGIN IMMEDIATE' : `SAVEPOINT ${sp}`);
    this.#depth++;
    try {
      const out = fn();
      if (out instanceof Promise) throw new Error('Sqlite.tx callback must be synchronous');
      this.exec(depth === 0 ? 'COMMIT' : `RELEASE ${sp}`);
      return out;
    } catch (err) {
      try {
        this.db.exec(depth === 0 ? 'ROLLBACK' : `ROLLBACK TO ${sp}; RELEASE ${sp}`);
      } catch {
        // the original error matters more than a failed rollback
      }
      throw noSpace(err, this.path);
    } finally {
      this.#depth--;
    }
  }

  close(): void {
    this.#stmts.clear();
    if (this.db.isOpen) {
      this.db.close();
      memory.share('catalog').release(this.#cacheBytes);
    }
  }
}
