// The catalog of a site: the SQLite handle, the clock, the site's id and name,
// transactions, and event recording. Every module of catalog/ takes one; it is
// all a layer below site/ (replication, transport) needs of the site's tables,
// beside a PackStore (which shares the handle for its own object index).
//
// Owns: opening and creating the database (schema.ts), `tx`, `event`. Must
// never: know paths other than the database's, the lock, or the store.
import { systemClock, type Clock } from '../core/clock.ts';
import type { Sqlite } from '../core/sqlite.ts';
import { insertEvent, type EventRecord } from './events.ts';
import { createDatabase, openDatabase } from './schema.ts';

export { CATALOG_FORMAT } from './schema.ts';

export class Catalog {
  /** For catalog/ modules and the store only: nothing else holds SQL (test/unit/layers-sql.test.ts). */
  readonly db: Sqlite;
  readonly clock: Clock;
  readonly siteId: string;
  readonly siteName: string;
  /** opened read-only: events are not recorded, and nothing may change */
  readonly readOnly: boolean;
  /** Called after each event is recorded (the daemon writes it to its log); none by default. */
  onEvent: ((at: number, e: EventRecord, id: number) => void) | undefined;

  private constructor(db: Sqlite, clock: Clock, readOnly: boolean) {
    this.db = db;
    this.clock = clock;
    this.readOnly = readOnly;
    const meta = (key: string) => db.get<{ value: string }>('SELECT value FROM meta WHERE key = ?', key)?.value ?? '';
    this.siteId = meta('site_id');
    this.siteName = meta('site_name');
  }

  /** Create the catalog of a new site at `path` (which must not exist). */
  static create(path: string, site: { id: string; name: string }, clock: Clock = systemClock): Catalog {
    return new Catalog(createDatabase(path, { ...site, createdAt: clock.now() }), clock, false);
  }

  /** Open an existing catalog, refusing one that is newer than this ferry or unreadable. */
  static open(path: string, options: { readOnly?: boolean; clock?: Clock } = {}): Catalog {
    const readOnly = options.readOnly ?? false;
    const db = openDatabase(path, { readOnly });
    try {
      return new Catalog(db, options.clock ?? systemClock, readOnly);
    } catch (err) {
      db.close();
      throw err;
    }
  }

  now(): number {
    return this.clock.now();
  }

  /** Run fn in one transaction (nested calls are savepoints of the caller's). */
  tx<T>(fn: () => T): T {
    return this.db.tx(fn);
  }

  get inTransaction(): boolean {
    return this.db.inTransaction;
  }

  /** Record an event (in the caller's transaction, if any); a catalog opened read-only records none. */
  event(e: EventRecord): void {
    if (this.readOnly) return;
    const at = this.clock.now();
    const id = insertEvent(this.db, at, e);
    this.onEvent?.(at, e, id);
  }

  close(): void {
    this.db.close();
  }
}
