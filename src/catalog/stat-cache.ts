// The stat cache (`stat_cache`): per volume, member and snapshot, one row per
// directory with what a capture learned of its entries (size, mtime, ctime,
// inode, chunk ids: snapshot/stat-cache.ts encodes it), so the next capture
// reuses unchanged files unread. Only the newest snapshot's rows are kept;
// rows of a capture that never committed are dropped with the next one's.
// A lost pack drops the whole cache (schema.ts, lost_pack_drops_stat_cache).
import type { StatCacheIO } from '../snapshot/capture.ts';
import { decodeDirCache, type CachedFile } from '../snapshot/stat-cache.ts';
import type { Catalog } from './catalog.ts';

/** Write rows of the cache of (volume, snapshot): member, directory key, encoded entries (one transaction). */
export function putStatCacheRows(cat: Catalog, volume: string, snapshot: string, rows: Array<[member: string, dir: Buffer, data: Buffer]>): void {
  cat.tx(() => {
    for (const [member, dir, data] of rows) {
      cat.db.run('INSERT OR REPLACE INTO stat_cache (volume, member, snapshot, dir, data) VALUES (?, ?, ?, ?, ?)', volume, member, snapshot, dir, data);
    }
  });
}

/** Up to `limit` rows of (volume, member, snapshot) from directory key `from` on, in key order (a walk reads ahead). */
export function statCacheRowsFrom(cat: Catalog, volume: string, member: string, snapshot: string, from: Buffer, limit: number): Array<{ dir: Uint8Array; data: Uint8Array }> {
  return cat.db.all<{ dir: Uint8Array; data: Uint8Array }>(
    'SELECT dir, data FROM stat_cache WHERE volume = ? AND member = ? AND snapshot = ? AND dir >= ? ORDER BY dir LIMIT ?',
    volume, member, snapshot, from, limit,
  );
}

/** Only the rows of `snapshot` are kept for the volume (the newest capture's). */
export function keepStatCacheOf(cat: Catalog, volume: string, snapshot: string): void {
  cat.db.run('DELETE FROM stat_cache WHERE volume = ? AND snapshot <> ?', volume, snapshot);
}

/** The rows of one snapshot of the volume go, or all of the volume's when no snapshot is given. */
export function dropStatCacheOf(cat: Catalog, volume: string, snapshot?: string): void {
  if (snapshot === undefined) cat.db.run('DELETE FROM stat_cache WHERE volume = ?', volume);
  else cat.db.run('DELETE FROM stat_cache WHERE volume = ? AND snapshot = ?', volume, snapshot);
}

/** Rows of `from` that `to` lacks are copied to it (the subtrees a capture did not walk carry over). */
export function carryStatCache(cat: Catalog, volume: string, from: string, to: string): void {
  cat.db.run('INSERT OR IGNORE INTO stat_cache (volume, member, snapshot, dir, data) SELECT volume, member, ?, dir, data FROM stat_cache WHERE volume = ? AND snapshot = ?', to, volume, from);
}

/** The rows of `from` become `to`'s (a capture of a replica that found it unchanged describes the applied snapshot). */
export function renameStatCache(cat: Catalog, volume: string, from: string, to: string): void {
  cat.db.run('UPDATE stat_cache SET snapshot = ? WHERE volume = ? AND snapshot = ?', to, volume, from);
}

/** Stat cache rows of a new snapshot, written in batches so memory stays flat. */
export class StatCacheWriter {
  #rows: Array<[string, Buffer, Buffer]> = [];
  readonly #cat: Catalog;
  readonly #volume: string;
  readonly #snapshot: string;
  constructor(cat: Catalog, volume: string, snapshot: string) {
    this.#cat = cat;
    this.#volume = volume;
    this.#snapshot = snapshot;
  }
  add(member: string, dir: Buffer, data: Buffer): void {
    this.#rows.push([member, dir, data]);
    if (this.#rows.length >= 512) this.flush();
  }
  flush(): void {
    if (this.#rows.length === 0) return;
    const rows = this.#rows;
    this.#rows = [];
    putStatCacheRows(this.#cat, this.#volume, this.#snapshot, rows);
  }
}

/** A capture's view of the cache: the rows of `parent` (none without one) to read, `writer` to write the new snapshot's. */
export function statCacheFor(cat: Catalog, volume: string, member: string, parent: string | undefined, writer: StatCacheWriter): StatCacheIO {
  // The walk asks for directories in nearly the rows' key order (depth
  // first, names sorted), so rows are read ahead in key-ordered runs: one
  // range query per run instead of a lookup per directory (the data blobs
  // overflow their pages, and single lookups cost ~100 us each).
  const ahead = new Map<string, Uint8Array>();
  const AHEAD = 256;
  return {
    load(dir: Buffer): Map<string, CachedFile> | undefined {
      if (!parent) return undefined;
      const key = dir.toString('latin1');
      let data = ahead.get(key);
      if (data === undefined) {
        if (ahead.size > 16 * AHEAD) ahead.clear(); // rows of directories that are gone
        for (const r of statCacheRowsFrom(cat, volume, member, parent, dir, AHEAD)) ahead.set(Buffer.from(r.dir).toString('latin1'), r.data);
        data = ahead.get(key);
        if (data === undefined) return undefined;
      }
      ahead.delete(key);
      try {
        return decodeDirCache(data);
      } catch {
        return undefined; // a damaged cache only costs a re-read
      }
    },
    save(dir: Buffer, data: Buffer): void {
      writer.add(member, dir, data);
    },
  };
}

/**
 * The rows of `from` for one member become `to`'s where `to` has none of its own: a journaled capture
 * wrote rows only for the directories it looked at, and the parent's rows of the others carry over.
 */
export function carryMemberStatCache(cat: Catalog, volume: string, member: string, from: string, to: string): void {
  cat.db.run('UPDATE OR IGNORE stat_cache SET snapshot = ? WHERE volume = ? AND member = ? AND snapshot = ?', to, volume, member, from);
}
