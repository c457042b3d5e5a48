// What a capture takes and gives: the store it writes into, the stat cache it
// reads and writes, its options, warnings and statistics, and the change
// journal's view of a member (capture.ts, capture-image.ts).
import type { ObjectId } from '../core/ids.ts';
import type { SharedIndexRef } from '../store/index-probe.ts';
import { RECORD_HEADER_SIZE, RECORD_OVERHEAD, RECORD_TRAILER_SIZE } from '../store/pack.ts';
import type { ObjectKind, ObjectReader, PreparedObject } from '../store/types.ts';
import type { ChunkPool, StreamOptions, StreamedObject } from './chunk-pool.ts';
import type { CachedFile } from './stat-cache.ts';
import type { DirtyDir } from './tree-watch.ts';
import type { EntryType, Tree } from './model.ts';
import type { StatsBase } from 'node:fs';

export interface CaptureStore {
  has(id: ObjectId): boolean;
  put(kind: ObjectKind, raw: Uint8Array): { id: ObjectId; added: boolean };
  putPrepared(obj: PreparedObject, options?: { trusted?: boolean }): boolean;
  /** PackStore's fast path: records framed by the workers, appended as they are */
  putRecord?(record: Uint8Array, options: { trusted: true; absentAt?: number }): { id: ObjectId; added: boolean };
  /** PackStore: an index the workers may read, to skip chunks already stored */
  sharedIndex?(): SharedIndexRef | undefined;
  readonly commitEpoch?: number;
}

/**
 * How capture hands the pool's streamed objects to the store: each record
 * is stored as it arrives (so a large file never sits in memory), and the
 * workers consult the store's index to skip chunks it already holds.
 */
export function streamInto(store: CaptureStore, stats: CaptureStats): StreamOptions {
  const count = (added: boolean, obj: StreamedObject) => {
    if (!added) return;
    stats.objectsAdded++;
    stats.bytesAdded += obj.rawLength;
    stats.bytesStored += obj.record.length - RECORD_OVERHEAD;
  };
  const onChunk = store.putRecord
    ? (obj: StreamedObject) => count(store.putRecord!(obj.record, { trusted: true, absentAt: obj.absentAt }).added, obj)
    : (obj: StreamedObject) => {
        const stored = obj.record.subarray(RECORD_HEADER_SIZE, obj.record.length - RECORD_TRAILER_SIZE);
        count(store.putPrepared({ kind: 'chunk', id: obj.id, rawLength: obj.rawLength, codec: obj.codec, stored }, { trusted: true }), obj);
      };
  const ref = store.sharedIndex?.();
  return { onChunk, ...(ref && store.commitEpoch !== undefined ? { index: { ref, epoch: () => store.commitEpoch! } } : {}) };
}

export interface StatCacheIO {
  /** what the parent capture saw in this directory (member-relative path, '' for the root) */
  load(dir: Buffer): Map<string, CachedFile> | undefined;
  /**
   * what this capture saw; called once per directory, or for a paged directory once per page it
   * made, under the page's key (statCacheKey)
   */
  save(dir: Buffer, data: Buffer): void;
  /** the rows saved under one key exactly (a page's: statCacheKey); without it a capture loads the directory's */
  loadKey?(key: Buffer): Map<string, CachedFile> | undefined;
}

/**
 * The stat cache key of one page of a paged directory: the directory, a NUL, the page's first name
 * (NUL is in no path, so the key sorts right after the directory's own and before its subdirectories').
 */
export function statCacheKey(dir: Buffer, first: Buffer): Buffer {
  return Buffer.concat([dir, NUL_BYTE, first]);
}

const NUL_BYTE = Buffer.from([0]);

export interface CaptureWarning {
  path: string;
  problem: 'unreadable' | 'vanished' | 'changed-during-read' | 'special-file' | 'skipped' | 'xattrs-not-captured';
  message: string;
}

export interface CaptureStats {
  dirs: number;
  files: number;
  symlinks: number;
  hardlinks: number;
  specials: number;
  /** logical bytes of all regular files (or the image size) */
  bytes: number;
  filesRead: number;
  bytesRead: number;
  filesReused: number;
  objectsAdded: number;
  /** uncompressed bytes of objects added to the store */
  bytesAdded: number;
  /** bytes those objects take in the store */
  bytesStored: number;
  /** a journaled capture: directories looked at again because the journal named something in them */
  dirsJournaled: number;
  /** of bytesRead, bytes of changed files chunked at their old chunks' boundaries, without the scan (chunk-worker.ts) */
  bytesHinted: number;
}

export function emptyStats(): CaptureStats {
  return { dirs: 0, files: 0, symlinks: 0, hardlinks: 0, specials: 0, bytes: 0, filesRead: 0, bytesRead: 0, filesReused: 0, objectsAdded: 0, bytesAdded: 0, bytesStored: 0, dirsJournaled: 0, bytesHinted: 0 };
}

export function addStats(into: CaptureStats, s: CaptureStats): void {
  for (const k of Object.keys(into) as Array<keyof CaptureStats>) into[k] += s[k];
}

export interface CaptureOptions {
  store: CaptureStore;
  pool: ChunkPool;
  cache?: StatCacheIO;
  onWarning?: (w: CaptureWarning) => void;
  /** capture start (ms): files touched shortly before it (RACY_NS) are not trusted from the cache next time */
  startedAt: number;
  /** most file jobs in flight before the walker waits */
  maxInFlight?: number;
  /** most entries held by walked directories waiting on their files before the walker waits (held.ts; default HELD_MAX) */
  maxHeld?: number;
  /** told the entries held each time a walked directory starts to wait on its files (tests) */
  onHeld?: (entries: number) => void;
  /**
   * A subdirectory's tree id known without walking it (member-relative path):
   * the replica's verification after an apply, for subtrees the apply left
   * alone and its writes check had just captured. If the walk meets a file
   * with several links, it is run again without this (a skipped subtree may
   * hold the first name of a hard link).
   */
  reuse?: (rel: Buffer) => ObjectId | undefined;
  /** a name directly in the member root that is not part of it (a replica's staging area: replication/stage.ts) */
  skipAtRoot?: string;
  signal?: AbortSignal;
  /**
   * Capture from the change journal (journal.ts) instead of walking everything: what changed
   * since the tree `parent` was captured. Directories the journal does not name, with nothing named
   * below them, are taken from `parent` unread; in a named directory only the named entries are
   * looked at again, and its list is read again only when it changed. Files met with several links
   * make the capture a full walk (a write through another name is reported elsewhere, or nowhere).
   */
  journal?: CaptureJournal;
}

/** What a journaled capture starts from (CaptureOptions.journal). */
export interface CaptureJournal {
  /** the member's root tree in the capture the journal counts from */
  parent: ObjectId;
  /** what changed since (tree-watch.ts's DirtySet.dirs) */
  dirs: DirtyDir[];
  /** a tree object of the parent capture, decoded (from the store) */
  tree(id: ObjectId): Tree;
  /** the store the parent capture is in: a paged directory is then read and written page by page (dir-pages.ts) */
  store?: Pick<ObjectReader, 'get'>;
}

/** The journal's dirty set, indexed: each dirty directory, and every directory with one below it. */
export interface JournalIndex {
  dirs: Map<string, DirtyDir>;
  below: Set<string>;
  /** each directory's entries that are dirty directories or have one below them */
  children: Map<string, Set<string>>;
  tree(id: ObjectId): Tree;
  store?: Pick<ObjectReader, 'get'>;
}

export function indexJournal(j: CaptureJournal): JournalIndex {
  const dirs = new Map<string, DirtyDir>();
  const below = new Set<string>();
  const children = new Map<string, Set<string>>();
  for (const d of j.dirs) {
    dirs.set(d.dir, d);
    for (let p = d.dir; p !== ''; ) {
      const i = p.lastIndexOf('/');
      const up = i < 0 ? '' : p.slice(0, i);
      let c = children.get(up);
      if (!c) children.set(up, (c = new Set()));
      c.add(p.slice(i + 1));
      p = up;
      if (below.has(p)) break;
      below.add(p);
    }
  }
  return { dirs, below, children, tree: (id) => j.tree(id), store: j.store };
}

/** The entry type of what lstat found (undefined: a type snapshots do not know). */
export function entryTypeOf(st: StatsBase<unknown>): EntryType | undefined {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  if (st.isCharacterDevice()) return 'chardev';
  if (st.isBlockDevice()) return 'blockdev';
  return undefined;
}
