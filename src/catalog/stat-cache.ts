// The stat cache: per volume, member and snapshot, one entry per directory
// with what a capture learned of its entries (size, mtime, ctime, inode,
// chunk ids: snapshot/stat-cache.ts encodes it), so the next capture reuses
// unchanged files unread. Only the newest snapshot's entries are kept;
// entries of a capture that never committed are dropped with the next one's.
// A lost pack drops the whole cache (schema.ts, lost_pack_drops_stat_cache).
//
// Two tables: `stat_cache_dirs` (volume, member, snapshot, dir) names the
// entry of a directory for a snapshot and points at its encoded data in
// `stat_cache_data` (one row per blob). A journaled capture writes only the
// directories it looked at and carries the parent's other entries forward;
// with the data beside the key (format 1's `stat_cache`, now unused) carrying
// a row rewrote its blob (a million files in 1,000 directories: ~60 MB per
// snapshot, 0.6-1 s). Now a carry rewrites the small key rows only; a blob
// may be named by several snapshots' rows while they coexist, and goes with
// the last row naming it.
import type { StatCacheIO } from '../snapshot/capture.ts';
import { decodeDirCache, type CachedFile } from '../snapshot/stat-cache.ts';
import type { Catalog } from './catalog.ts';

/** Write rows of the cache of (volume, snapshot): member, directory key, encoded entries (one transaction). */
export function putStatCacheRows(cat: Catalog, volume: string, snapshot: string, rows: Array<[member: string, dir: Buffer, data: Buffer]>): void {
  cat.tx(() => {
    for (const [member, dir, data] of rows) {
      const replaced = cat.db.all<{ blob: number }>('DELETE FROM stat_cache_dirs WHERE volume = ? AND member = ? AND snapshot = ? AND dir = ? RETURNING blob', volume, member, snapshot, dir);
      const blob = cat.db.get<{ id: number }>('INSERT INTO stat_cache_data (data) VALUES (?) RETURNING id', data)!.id;
      cat.db.run('INSERT INTO stat_cache_dirs (volume, member, snapshot, dir, blob) VALUES (?, ?, ?, ?, ?)', volume, member, snapshot, dir, blob);
      dropUnnamedBlobs(cat, replaced);
    }
  });
}

/**
 * Blobs that no entry names any more go (an entry replaced or deleted named them). In one statement:
 * a snapshot's rows are one per directory or page (16,000 at a million files in 1,000 directories),
 * and a statement per blob cost a third of a second there.
 */
function dropUnnamedBlobs(cat: Catalog, gone: Array<{ blob: number }>): void {
  if (gone.length === 0) return;
  const ids = JSON.stringify([...new Set(gone.map((g) => g.blob))]);
  cat.db.run('DELETE FROM stat_cache_data WHERE id IN (SELECT value FROM json_each(?)) AND NOT EXISTS (SELECT 1 FROM stat_cache_dirs WHERE blob = stat_cache_data.id)', ids);
}

/** Up to `limit` rows of (volume, member, snapshot) from directory key `from` on, in key order (a walk reads ahead). */
export function statCacheRowsFrom(cat: Catalog, volume: string, member: string, snapshot: string, from: Buffer, limit: number): Array<{ dir: Uint8Array; data: Uint8Array }> {
  return cat.db.all<{ dir: Uint8Array; data: Uint8Array }>(
    'SELECT k.dir AS dir, d.data AS data FROM stat_cache_dirs k JOIN stat_cache_data d ON d.id = k.blob WHERE k.volume = ? AND k.member = ? AND k.snapshot = ? AND k.dir >= ? ORDER BY k.dir LIMIT ?',
    volume, member, snapshot, from, limit,
  );
}

/** Only the rows of `snapshot` are kept for the volume (the newest capture's). */
export function keepStatCacheOf(cat: Catalog, volume: string, snapshot: string): void {
  cat.tx(() => dropUnnamedBlobs(cat, cat.db.all<{ blob: number }>('DELETE FROM stat_cache_dirs WHERE volume = ? AND snapshot <> ? RETURNING blob', volume, snapshot)));
}

/** The rows of one snapshot of the volume go, or all of the volume's when no snapshot is given. */
export function dropStatCacheOf(cat: Catalog, volume: string, snapshot?: string): void {
  cat.tx(() => {
    const gone = snapshot === undefined
      ? cat.db.all<{ blob: number }>('DELETE FROM stat_cache_dirs WHERE volume = ? RETURNING blob', volume)
      : cat.db.all<{ blob: number }>('DELETE FROM stat_cache_dirs WHERE volume = ? AND snapshot = ? RETURNING blob', volume, snapshot);
    dropUnnamedBlobs(cat, gone);
  });
}

/** Rows of `from` that `to` lacks are copied to it (the subtrees a capture did not walk carry over). */
export function carryStatCache(cat: Catalog, volume: string, from: string, to: string): void {
  cat.db.run('INSERT OR IGNORE INTO stat_cache_dirs (volume, member, snapshot, dir, blob) SELECT volume, member, ?, dir, blob FROM stat_cache_dirs WHERE volume = ? AND snapshot = ?', to, volume, from);
}

/**
 * The rows of `from` replace `to`'s for the same directories (and pages), and `from`'s go: a
 * journaled capture of a replica that found it unchanged wrote rows only for what it looked at, and
 * those are newer than the applied snapshot's; the rest of `to`'s stand, untouched (a carry and a
 * rename would rewrite every row: 16,000 at a million files in paged directories).
 */
export function overlayStatCache(cat: Catalog, volume: string, from: string, to: string): void {
  cat.tx(() => {
    const replaced = cat.db.all<{ blob: number }>(
      'DELETE FROM stat_cache_dirs AS t WHERE t.volume = ? AND t.snapshot = ? AND EXISTS (SELECT 1 FROM stat_cache_dirs f WHERE f.volume = t.volume AND f.member = t.member AND f.snapshot = ? AND f.dir = t.dir) RETURNING blob',
      volume, to, from,
    );
    cat.db.run('UPDATE stat_cache_dirs SET snapshot = ? WHERE volume = ? AND snapshot = ?', to, volume, from);
    dropUnnamedBlobs(cat, replaced);
  });
}

/** The rows of `from` become `to`'s (a capture of a replica that found it unchanged describes the applied snapshot). */
export function renameStatCache(cat: Catalog, volume: string, from: string, to: string): void {
  cat.tx(() => {
    // An entry `to` already has for a directory wins over `from`'s (which then goes, with its blob).
    cat.db.run('UPDATE OR IGNORE stat_cache_dirs SET snapshot = ? WHERE volume = ? AND snapshot = ?', to, volume, from);
    dropStatCacheOf(cat, volume, from);
  });
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
  //
  // A paged directory has a row per page (snapshot/capture-types.ts, statCacheKey: the directory, a
  // NUL, the page's first name), which sort right after the directory's own key: a directory's rows
  // are read together, the pages' first and its own last (a row written since it was one tree wins).
  const ahead = new Map<string, Uint8Array[]>();
  const AHEAD = 256;
  const decode = (data: Uint8Array): Map<string, CachedFile> | undefined => {
    try {
      return decodeDirCache(data);
    } catch {
      return undefined; // a damaged cache only costs a re-read
    }
  };
  const dirOf = (key: Uint8Array): string => {
    const k = Buffer.from(key.buffer, key.byteOffset, key.byteLength);
    const nul = k.indexOf(0);
    return (nul < 0 ? k : k.subarray(0, nul)).toString('latin1');
  };
  return {
    load(dir: Buffer): Map<string, CachedFile> | undefined {
      if (!parent) return undefined;
      const key = dir.toString('latin1');
      let rows = ahead.get(key);
      if (rows === undefined) {
        if (ahead.size > 16 * AHEAD) ahead.clear(); // rows of directories that are gone
        const got = statCacheRowsFrom(cat, volume, member, parent, dir, AHEAD);
        const byDir = new Map<string, Array<{ dir: Uint8Array; data: Uint8Array }>>();
        for (const r of got) {
          const d = dirOf(r.dir);
          const list = byDir.get(d);
          if (list) list.push(r);
          else byDir.set(d, [r]);
        }
        // a full read may have cut the last directory's rows short: it is read again when asked for
        if (got.length === AHEAD) byDir.delete(dirOf(got[got.length - 1].dir));
        if (!byDir.has(key)) byDir.set(key, statCacheRowsOfDir(cat, volume, member, parent, dir));
        for (const [d, list] of byDir) {
          // the directory's own row (the shortest key) goes last
          list.sort((x, y) => y.dir.byteLength - x.dir.byteLength);
          ahead.set(d, list.map((r) => r.data));
        }
        rows = ahead.get(key)!;
      }
      ahead.delete(key);
      if (rows.length === 0) return undefined;
      if (rows.length === 1) return decode(rows[0]);
      const out = new Map<string, CachedFile>();
      for (const data of rows) for (const [n, f] of decode(data) ?? []) out.set(n, f);
      return out;
    },
    loadKey(key: Buffer): Map<string, CachedFile> | undefined {
      if (!parent) return undefined;
      const row = cat.db.get<{ data: Uint8Array }>('SELECT d.data AS data FROM stat_cache_dirs k JOIN stat_cache_data d ON d.id = k.blob WHERE k.volume = ? AND k.member = ? AND k.snapshot = ? AND k.dir = ?', volume, member, parent, key);
      return row ? decode(row.data) : undefined;
    },
    save(dir: Buffer, data: Buffer): void {
      writer.add(member, dir, data);
    },
  };
}

/** Every row of one directory of (volume, member, snapshot): its own and its pages'. */
function statCacheRowsOfDir(cat: Catalog, volume: string, member: string, snapshot: string, dir: Buffer): Array<{ dir: Uint8Array; data: Uint8Array }> {
  return cat.db.all<{ dir: Uint8Array; data: Uint8Array }>(
    'SELECT k.dir AS dir, d.data AS data FROM stat_cache_dirs k JOIN stat_cache_data d ON d.id = k.blob WHERE k.volume = ? AND k.member = ? AND k.snapshot = ? AND k.dir >= ? AND k.dir < ? ORDER BY k.dir',
    volume, member, snapshot, dir, Buffer.concat([dir, Buffer.from([1])]),
  );
}

/**
 * The rows of `from` for one member become `to`'s where `to` has none of its own: a journaled capture
 * wrote rows only for the directories it looked at, and the parent's rows of the others carry over.
 */
export function carryMemberStatCache(cat: Catalog, volume: string, member: string, from: string, to: string): void {
  cat.db.run('UPDATE OR IGNORE stat_cache_dirs SET snapshot = ? WHERE volume = ? AND member = ? AND snapshot = ?', to, volume, member, from);
}
