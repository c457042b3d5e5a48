// The site's settings (`meta`): the format version, the site's id and name
// (written once, at creation: schema.ts), and the settings a site file sets
// (config/schema.ts META_KEYS). Owns the key/value rows; what a key means is
// its reader's.
import type { Sqlite } from '../core/sqlite.ts';
import type { Catalog } from './catalog.ts';

export function readMeta(cat: Catalog, key: string): string | undefined {
  return cat.db.get<{ value: string }>('SELECT value FROM meta WHERE key = ?', key)?.value;
}

/** Set each key to its value, or clear it (null), in the caller's transaction if any. */
export function writeMeta(cat: Catalog, values: Record<string, string | null>): void {
  cat.tx(() => {
    for (const [key, value] of Object.entries(values)) setMetaRow(cat.db, key, value);
  });
}

/** One key, on the bare handle: for the catalog's own bookkeeping before a Catalog exists (counters.ts at open). */
export function setMetaRow(db: Sqlite, key: string, value: string | null): void {
  if (value === null) db.run('DELETE FROM meta WHERE key = ?', key);
  else db.run('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value', key, value);
}
