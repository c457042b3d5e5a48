// The stat cache: per volume and member, one row per directory (or page of a paged directory) with
// what a capture learned of its entries (size, mtime, ctime, inode, chunk ids: snapshot/stat-cache.ts
// encodes it), so the next capture reuses unchanged files unread.
//
// Rows are not keyed by snapshot. The committed rows of a volume describe one snapshot, its *owner*
// (`stat_cache_owner`): the newest capture that committed. A capture writes its rows as pending (under
// its own key) and, when it commits, they replace the committed rows of the same directories and
// pages (`commitStatCache`); the rows of directories it did not look at stand, since they describe
// the new snapshot as well as its parent (a journaled capture trusts them from the parent). A capture
// that never commits leaves pending rows that the next commit drops. So a capture costs the rows it
// looked at: before, rows were keyed by snapshot and every capture re-keyed all of them (16,000 rows at
// a million files in paged directories: 0.2-0.6 s of an update that changed nothing).
//
// Why the owner: a row names chunks, and a capture that trusts one puts those chunks in its snapshot
// unread. The rows are read only by a capture whose parent is the owner (the parent is held while it
// runs, so its chunks are in the store), and a commit whose parent is not the owner drops the committed
// rows before promoting its own. Deleting the owner snapshot drops the rows; a lost pack drops them all
// (schema.ts, lost_pack_drops_stat_cache). Rows keyed by snapshot (`stat_cache_dirs`, `stat_cache_data`)
// and format 1's `stat_cache` are older ferry's layouts, emptied at open (a cache: each file is read once).
import type { StatCacheIO } from '../snapshot/capture.ts';
import { decodeDirCache, type CachedFile } from '../snapshot/stat-cache.ts';
import type { Catalog } from './catalog.ts';

/** The key of committed rows (`stat_cache_rows.pending`); a capture's pending rows carry its own key. */
const COMMITTED = '';

/** Write a capture's pending rows (volume, key): member, directory key, encoded entries (one transaction). */
export function putStatCacheRows(cat: Catalog, volume: string, key: string, rows: Array<[member: string, dir: Buffer, data: Buffer]>): void {
  if (key === COMMITTED) throw new Error('a stat cache writer needs the key of its capture');
  cat.tx(() => {
    for (const [member, dir, data] of rows) cat.db.run('INSERT OR REPLACE INTO stat_cache_rows (volume, pending, member, dir, data) VALUES (?, ?, ?, ?, ?)', volume, key, member, dir, data);
  });
}

/** The snapshot the committed rows of the volume describe (none: there are none to trust). */
export function statCacheOwner(cat: Catalog, volume: string): string | undefined {
  return cat.db.get<{ snapshot: string }>('SELECT snapshot FROM stat_cache_owner WHERE volume = ?', volume)?.snapshot;
}

/**
 * Up to `limit` committed rows of (volume, member) from directory key `from` on, in key order (a walk
 * reads ahead), if they describe `snapshot`; none otherwise. One statement: a commit in between cannot
 * hand a capture rows of another snapshot.
 */
export function statCacheRowsFrom(cat: Catalog, volume: string, member: string, snapshot: string, from: Buffer, limit: number): Array<{ dir: Uint8Array; data: Uint8Array }> {
  return cat.db.all<{ dir: Uint8Array; data: Uint8Array }>(
    `SELECT dir, data FROM stat_cache_rows WHERE volume = ? AND pending = '' AND member = ? AND dir >= ?
       AND EXISTS (SELECT 1 FROM stat_cache_owner o WHERE o.volume = ? AND o.snapshot = ?) ORDER BY dir LIMIT ?`,
    volume, member, from, volume, snapshot, limit,
  );
}

/** Every committed row of one directory of (volume, member) if they describe `snapshot`: its own and its pages'. */
function statCacheRowsOfDir(cat: Catalog, volume: string, member: string, snapshot: string, dir: Buffer): Array<{ dir: Uint8Array; data: Uint8Array }> {
  return cat.db.all<{ dir: Uint8Array; data: Uint8Array }>(
    `SELECT dir, data FROM stat_cache_rows WHERE volume = ? AND pending = '' AND member = ? AND dir >= ? AND dir < ?
       AND EXISTS (SELECT 1 FROM stat_cache_owner o WHERE o.volume = ? AND o.snapshot = ?) ORDER BY dir`,
    volume, member, dir, Buffer.concat([dir, Buffer.from([1])]), volume, snapshot,
  );
}

/**
 * A capture's rows (`key`) become the committed ones, describing `owner` (the snapshot the capture
 * made, or the one it found the tree to be). `parent`: the snapshot whose rows the capture read; if the
 * committed rows describe another, they go first (nothing of theirs may be carried). `whole`: members
 * the capture walked in full, whose committed rows all go (rows of directories that are gone with
 * them); the others keep the rows of what the capture did not look at. Pending rows of other captures
 * (that never committed) go. Costs the rows written, plus the rows of members walked whole.
 */
export function commitStatCache(cat: Catalog, volume: string, key: string, o: { owner?: string; parent: string | undefined; whole: 'all' | Iterable<string> }): void {
  cat.tx(() => {
    const owner = statCacheOwner(cat, volume);
    if (owner === undefined || owner !== o.parent || o.whole === 'all') cat.db.run("DELETE FROM stat_cache_rows WHERE volume = ? AND pending = ''", volume);
    else for (const m of o.whole) cat.db.run("DELETE FROM stat_cache_rows WHERE volume = ? AND pending = '' AND member = ?", volume, m);
    // each promoted row replaces the committed row of its directory or page (OR REPLACE)
    cat.db.run("UPDATE OR REPLACE stat_cache_rows SET pending = '' WHERE volume = ? AND pending = ?", volume, key);
    dropPending(cat, volume);
    cat.db.run('INSERT OR REPLACE INTO stat_cache_owner (volume, snapshot) VALUES (?, ?)', volume, o.owner ?? key);
  });
}

/** A capture's pending rows go (it found the tree changed and its rows are of no further use). */
export function discardStatCache(cat: Catalog, volume: string, key: string): void {
  if (key === COMMITTED) return;
  cat.db.run('DELETE FROM stat_cache_rows WHERE volume = ? AND pending = ?', volume, key);
}

/** Pending rows of every capture of the volume go (captures that never committed). */
function dropPending(cat: Catalog, volume: string): void {
  cat.db.run("DELETE FROM stat_cache_rows WHERE volume = ? AND pending > ''", volume);
}

/** The committed rows stay only if they describe `snapshot` (the tree is that snapshot now); pending rows go. */
export function keepStatCacheOf(cat: Catalog, volume: string, snapshot: string): void {
  cat.tx(() => {
    if (statCacheOwner(cat, volume) !== snapshot) dropStatCacheOf(cat, volume);
    else dropPending(cat, volume);
  });
}

/**
 * Snapshot `snapshot` of the volume goes: the rows describing it go, and its capture's pending rows;
 * with no snapshot given, every row of the volume.
 */
export function dropStatCacheOf(cat: Catalog, volume: string, snapshot?: string): void {
  cat.tx(() => {
    if (snapshot === undefined || statCacheOwner(cat, volume) === snapshot) {
      cat.db.run('DELETE FROM stat_cache_rows WHERE volume = ?', volume);
      cat.db.run('DELETE FROM stat_cache_owner WHERE volume = ?', volume);
    } else discardStatCache(cat, volume, snapshot);
  });
}

/** A capture's stat cache rows, written as pending under its key in batches so memory stays flat. */
export class StatCacheWriter {
  #rows: Array<[string, Buffer, Buffer]> = [];
  readonly #cat: Catalog;
  readonly #volume: string;
  readonly key: string;
  constructor(cat: Catalog, volume: string, key: string) {
    if (key === COMMITTED) throw new Error('a stat cache writer needs the key of its capture');
    this.#cat = cat;
    this.#volume = volume;
    this.key = key;
  }
  add(member: string, dir: Buffer, data: Buffer): void {
    this.#rows.push([member, dir, data]);
    if (this.#rows.length >= 512) this.flush();
  }
  flush(): void {
    if (this.#rows.length === 0) return;
    const rows = this.#rows;
    this.#rows = [];
    putStatCacheRows(this.#cat, this.#volume, this.key, rows);
  }
}

/**
 * A capture's view of the cache: the committed rows, if they describe `parent` (none without one), to
 * read; `writer` (if any) to write the capture's own.
 */
export function statCacheFor(cat: Catalog, volume: string, member: string, parent: string | undefined, writer?: StatCacheWriter): StatCacheIO {
  // The walk asks for directories in nearly the rows' key order (depth
  // first, names sorted), so rows are read ahead in key-ordered runs: one
  // range query per run instead of a lookup per directory.
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
      const row = cat.db.get<{ data: Uint8Array }>(
        "SELECT data FROM stat_cache_rows WHERE volume = ? AND pending = '' AND member = ? AND dir = ? AND EXISTS (SELECT 1 FROM stat_cache_owner o WHERE o.volume = ? AND o.snapshot = ?)",
        volume, member, key, volume, parent,
      );
      return row ? decode(row.data) : undefined;
    },
    save(dir: Buffer, data: Buffer): void {
      writer?.add(member, dir, data);
    },
  };
}
