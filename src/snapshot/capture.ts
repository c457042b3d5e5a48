// Capture: turn a member (a directory tree or a block image) into stored
// objects and return its root id. Trees are walked depth-first in name
// order by one sequential walker (so hard-link choices and tree bytes are
// deterministic); file contents are chunked, hashed and compressed by the
// worker pool while the walker goes on, and each directory's tree object is
// written once all its children are known (a Merkle DAG, bottom-up).
// Extended attributes and ACLs are read beside, in batches (xattrs.ts).
// Capture never follows a symlink and never reads a socket, FIFO or device.
// It knows nothing of the catalog: the caller supplies the store, the pool
// and the stat cache.
import { lstatSync, readdirSync, readlinkSync, type BigIntStats } from 'node:fs';
import { FerryError, wrapIoError } from '../core/errors.ts';
import type { ObjectId } from '../core/ids.ts';
import type { ObjectKind, ObjectReader, PreparedObject } from '../store/types.ts';
import type { StreamOptions } from './chunk-pool.ts';
import type { DirtyDir } from './tree-watch.ts';
import { pageEntries, pageHasHardlinks, pageOf, putDir, putEditedDir, readDir, type Paging } from './dir-pages.ts';
import type { EntryType, Tree, TreeEntry, TreeIndex } from './model.ts';
import { NOT_A_FILE, encodeDirCache, type CachedFile } from './stat-cache.ts';
import { pathToText } from './path-text.ts';
import { XATTR_TOOLS_HINT, XattrReader, xattrToolsPresent, type Xattrs } from './xattrs.ts';
import { HeldEntries } from './held.ts';

export { addStats, emptyStats, streamInto, type CaptureJournal, type CaptureOptions, type CaptureStats, type CaptureStore, type CaptureWarning, type StatCacheIO } from './capture-types.ts';
import { emptyStats, entryTypeOf, indexJournal, statCacheKey, streamInto, type CaptureJournal, type JournalIndex, type CaptureOptions, type CaptureStats, type CaptureStore, type CaptureWarning } from './capture-types.ts';

// Filesystem timestamps come from a coarse clock (a few ms on Linux): a file
// changed again within the same tick keeps its mtime and ctime. Files whose
// ctime is this close to the capture are re-read next time (git's "racily
// clean" rule). 2 s covers filesystems that keep whole or even seconds (FAT,
// HFS+, ext3, some NFS servers). A ctime with a non-zero part below the
// millisecond comes from a filesystem that keeps nanoseconds, stamped from
// the kernel's clock tick (1-10 ms): for it 50 ms is margin enough. Without
// that, every file an apply wrote in its last 2 s was read again by the
// next writes check (the verification just after the apply sees them all
// within 2 s).
const RACY_NS = 2_000_000_000n;
const RACY_FINE_NS = 50_000_000n;

const SLASH = Buffer.from('/');
/** directory entries the walker handles between two turns of the event loop */
const YIELD_EVERY = 128;

/**
 * Snapshots keep mtimes to the microsecond: Node can set times only through
 * a double of seconds (about 240 ns resolution today), so a nanosecond
 * mtime could not be restored exactly, and a restored or replicated tree
 * would never capture to the same tree id as its source. Times before 1970
 * are negative and kept the same way (materialize.ts, timeArg).
 */
export function toMicros(ns: bigint): bigint {
  // floor, not truncation toward zero: a time before 1970 (negative) keeps the microsecond it is in
  const below = ((ns % 1000n) + 1000n) % 1000n;
  return ns - below;
}

const asBuffer = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

/** Whether `p` is gone (ENOENT or ENOTDIR); any other failure is left to the look that follows. */
function gone(p: Buffer): boolean {
  try {
    lstatSync(p);
    return false;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ENOTDIR';
  }
}

function joinBuf(a: Buffer, b: Buffer): Buffer {
  return a.length === 0 ? b : Buffer.concat([a, SLASH, b]);
}

interface DirResult {
  tree: Promise<ObjectId>;
}

type Slot = TreeEntry | null | Promise<TreeEntry | null>;

class TreeWalker {
  readonly stats = emptyStats();
  /** a journaled capture: what the parent capture counted that is gone (totals = parent's + stats - removed) */
  readonly removed = emptyStats();
  /** a file with several links was met */
  sawLinks = false;
  readonly #o: CaptureOptions;
  readonly #skip: Buffer | undefined;
  readonly #hardlinks = new Map<string, Buffer>();
  readonly #racyBefore: bigint;
  readonly #racyFineBefore: bigint;
  readonly #stream: StreamOptions;
  /** extended attributes and ACLs, read in batches (undefined: the tools are missing) */
  readonly #xattrs: XattrReader | undefined;
  #inFlight = 0;
  #waiters: Array<() => void> = [];
  #failure: unknown;
  #sinceYield = 0;
  /** what directories walked hold while their files are read (held.ts) */
  readonly #held: HeldEntries;

  constructor(o: CaptureOptions) {
    this.#o = o;
    this.#skip = o.skipAtRoot === undefined ? undefined : Buffer.from(o.skipAtRoot);
    this.#racyBefore = BigInt(o.startedAt) * 1_000_000n - RACY_NS;
    this.#racyFineBefore = BigInt(o.startedAt) * 1_000_000n - RACY_FINE_NS;
    this.#stream = streamInto(o.store, this.stats);
    this.#xattrs = xattrToolsPresent() ? new XattrReader() : undefined;
    this.#held = new HeldEntries(() => this.#xattrs?.flush(), o.maxHeld, o.onHeld);
  }

  warn(rel: Buffer, problem: CaptureWarning['problem'], message: string): void {
    this.#o.onWarning?.({ path: pathToText(rel) || '.', problem, message });
  }

  /**
   * Lets the event loop run: the pool dispatches queued files and takes the
   * workers' results only then. A walk through files the stat cache knows
   * never waits otherwise, and would keep the workers idle until it ends.
   */
  async #yield(): Promise<void> {
    this.#sinceYield = 0;
    await new Promise<void>((resolve) => setImmediate(resolve));
    await this.#xattrs?.drained();
  }

  async #acquire(): Promise<void> {
    if (this.#failure) throw this.#failure;
    this.#o.signal?.throwIfAborted();
    const max = this.#o.maxInFlight ?? 256;
    while (this.#inFlight >= max) await new Promise<void>((r) => this.#waiters.push(r));
    this.#inFlight++;
  }

  #release(): void {
    this.#inFlight--;
    this.#waiters.shift()?.();
  }

  #storePrepared(c: PreparedObject): void {
    if (this.#o.store.putPrepared(c, { trusted: true })) {
      this.stats.objectsAdded++;
      this.stats.bytesAdded += c.rawLength;
      this.stats.bytesStored += c.stored.byteLength;
    }
  }

  #putObject(kind: ObjectKind, raw: Buffer): ObjectId {
    const { id, added } = this.#o.store.put(kind, raw);
    if (added) {
      this.stats.objectsAdded++;
      this.stats.bytesAdded += raw.length;
      this.stats.bytesStored += raw.length; // approximate: metadata objects are small
    }
    return id;
  }

  async walk(abs: Buffer, rel: Buffer, dirStat?: BigIntStats): Promise<DirResult> {
    await this.#held.room();
    let names: Buffer[];
    try {
      names = readdirSync(abs, { encoding: 'buffer' });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (rel.length === 0) throw wrapIoError(err, `reading member directory ${abs.toString()}`);
      this.warn(rel, code === 'ENOENT' ? 'vanished' : 'unreadable', `cannot list directory: ${(err as Error).message}; recorded as empty`);
      names = [];
    }
    names.sort(Buffer.compare);
    this.stats.dirs++;
    const cached = this.#o.cache?.load(rel);
    const newCache: Array<[Buffer, CachedFile]> = [];
    const slots: Slot[] = [];
    const descend = (a: Buffer, r: Buffer, st: BigIntStats) => this.walk(a, r, st);
    for (const name of names) {
      if (rel.length === 0 && this.#skip?.equals(name)) continue;
      await this.#visit(abs, rel, name, cached, newCache, slots, descend);
    }
    void dirStat;
    return { tree: this.#finish(rel, slots, newCache) };
  }

  /**
   * Capture directory `rel` from the journal: `parent` is its tree in the capture the journal counts
   * from. Unnamed entries keep their record there (and their stat cache row), unread; named ones
   * are looked at again (#visit); when its list changed, the directory is read again and entries
   * gone from it are dropped. A directory with nothing named in or below it is that same tree.
   */
  async walkJournaled(abs: Buffer, rel: Buffer, parent: ObjectId, j: JournalIndex): Promise<DirResult> {
    const key = rel.toString('latin1');
    const d = j.dirs.get(key);
    if (!d && !j.below.has(key)) return { tree: Promise.resolve(parent) };
    if (d?.full) {
      // new to the watch (made or moved in): all of it is read, and the one it replaces goes
      this.#dropped(j.tree(parent), j);
      this.stats.dirs--; // the directory itself is still one
      return this.walk(abs, rel, undefined);
    }
    await this.#held.room();
    // A paged directory whose changed names are known: only the pages they fall in are read and made.
    const node = j.store && d?.names !== null ? readDir(j.store, parent) : undefined;
    if (node?.index) return this.#walkPaged(abs, rel, node.index, d, j);
    const old = node?.entries ?? j.tree(parent).entries;
    const byName = new Map<string, TreeEntry>();
    for (const e of old) byName.set(e.name.toString('latin1'), e);
    const every = d !== undefined && d.names === null;
    const named = new Set(d?.names ?? []);
    let names: Buffer[];
    if (d && (d.list || every)) {
      try {
        names = readdirSync(abs, { encoding: 'buffer' });
      } catch (err) {
        if (rel.length === 0) throw wrapIoError(err, `reading member directory ${abs.toString()}`);
        const code = (err as NodeJS.ErrnoException).code;
        this.warn(rel, code === 'ENOENT' ? 'vanished' : 'unreadable', `cannot list directory: ${(err as Error).message}; recorded as empty`);
        names = [];
      }
      if (rel.length === 0 && this.#skip) names = names.filter((n) => !n.equals(this.#skip!));
      names.sort(Buffer.compare);
      const here = new Set(names.map((n) => n.toString('latin1')));
      for (const e of old) if (!here.has(e.name.toString('latin1'))) this.#dropped(e, j);
    } else names = old.map((e) => e.name);
    this.stats.dirsJournaled++;
    const cached = this.#o.cache?.load(rel);
    const newCache: Array<[Buffer, CachedFile]> = [];
    const slots: Slot[] = [];
    // A subdirectory that was one before goes on from its old tree; a new one is walked whole.
    const descend = async (childAbs: Buffer, childRel: Buffer, st: BigIntStats): Promise<DirResult> => {
      const was = byName.get(childRel.subarray(childRel.lastIndexOf(0x2f) + 1).toString('latin1'));
      if (was?.type === 'dir') return this.walkJournaled(childAbs, childRel, was.tree!, j);
      return this.walk(childAbs, childRel, st);
    };
    for (const name of names) {
      const n = name.toString('latin1');
      const was = byName.get(n);
      // A subdirectory with something named in or below it is looked at again even when its own
      // name is not: a change inside it changes its mtime, which inotify reports to it, not to us.
      const childKey = key === '' ? n : `${key}/${n}`;
      const inside = was?.type === 'dir' && (j.dirs.has(childKey) || j.below.has(childKey));
      if (was && !every && !named.has(n) && !inside) {
        // unchanged since the parent capture: its record, and what the stat cache knew of it
        const hit = cached?.get(n);
        if (hit) newCache.push([name, hit]);
        if (was.type === 'hardlink') this.sawLinks = true; // links: the caller walks in full
        slots.push(was);
        continue;
      }
      // Looked at again: what it replaces no longer counts (a directory that stays one is gone on from).
      const seen = await this.#visit(abs, rel, name, cached, newCache, slots, descend);
      if (was && !(was.type === 'dir' && seen === 'dir')) this.#dropped(was, j);
    }
    return { tree: this.#finish(rel, slots, newCache) };
  }

  /**
   * walkJournaled for a paged directory (dir-pages.ts) with the names that changed in it known: the
   * pages they fall in are read, their named entries looked at again (a name gone from a directory
   * whose list changed is an entry deleted), and only those pages and the index are made again.
   */
  async #walkPaged(abs: Buffer, rel: Buffer, x: TreeIndex, d: DirtyDir | undefined, j: JournalIndex): Promise<DirResult> {
    const store = j.store!;
    const key = rel.toString('latin1');
    this.stats.dirsJournaled++;
    const named = new Set(d?.names ?? []);
    const touched = new Set([...named, ...(j.children.get(key) ?? [])]);
    if (rel.length === 0 && this.#skip) touched.delete(this.#skip.toString('latin1'));
    const byPage = new Map<number, Buffer[]>();
    for (const n of touched) {
      const name = Buffer.from(n, 'latin1');
      const i = pageOf(x, name);
      const names = byPage.get(i);
      if (names) names.push(name);
      else byPage.set(i, [name]);
    }
    // links in the pages not read count as met (the caller walks in full: see captureTree)
    if (x.pages.some((p, i) => !byPage.has(i) && pageHasHardlinks(store, p))) this.sawLinks = true;
    // The stat cache rows of the pages read (one row per page: statCacheKey), or of the whole directory.
    const io = this.#o.cache;
    const byKey = io?.loadKey ? io.loadKey.bind(io) : undefined;
    const cached = byKey ? new Map<string, CachedFile>() : io?.load(rel);
    if (byKey) for (const i of byPage.keys()) for (const [n, f] of byKey(statCacheKey(rel, x.pages[i].first)) ?? []) cached!.set(n, f);
    const newCache: Array<[Buffer, CachedFile]> = [];
    const edits = new Map<number, Slot[]>();
    for (const [i, names] of byPage) {
      const byName = new Map<string, TreeEntry>();
      for (const e of pageEntries(store, x.pages[i])) byName.set(e.name.toString('latin1'), e);
      const all = [...byName.values()].map((e) => e.name).filter((n) => !touched.has(n.toString('latin1')));
      for (const n of all) {
        const hit = cached?.get(n.toString('latin1'));
        if (hit) newCache.push([n, hit]);
      }
      const slots: Slot[] = [];
      const descend = async (childAbs: Buffer, childRel: Buffer, st: BigIntStats): Promise<DirResult> => {
        const was = byName.get(childRel.subarray(childRel.lastIndexOf(0x2f) + 1).toString('latin1'));
        return was?.type === 'dir' ? this.walkJournaled(childAbs, childRel, was.tree!, j) : this.walk(childAbs, childRel, st);
      };
      for (const name of [...all, ...names].sort(Buffer.compare)) {
        const n = name.toString('latin1');
        const was = byName.get(n);
        if (!touched.has(n)) {
          if (was!.type === 'hardlink') this.sawLinks = true;
          slots.push(was!);
          continue;
        }
        if (d?.list && named.has(n) && gone(joinBuf(abs, name))) {
          if (was) this.#dropped(was, j); // deleted (or moved away)
          continue;
        }
        const seen = await this.#visit(abs, rel, name, cached, newCache, slots, descend);
        if (was && !(was.type === 'dir' && seen === 'dir')) this.#dropped(was, j);
      }
      edits.set(i, slots);
    }
    const keys = [...edits.keys()];
    const tree = Promise.all(keys.map((i) => Promise.all(edits.get(i)!))).then((lists) => {
      const pages = new Map<number, TreeEntry[]>();
      keys.forEach((i, k) => pages.set(i, lists[k].filter((e): e is TreeEntry => e !== null)));
      let paging: Paging = null;
      const id = putEditedDir(store, (raw) => this.#putObject('tree', raw), x, pages, (p) => (paging = p));
      return this.#saved(rel, id, newCache, paging);
    });
    tree.catch(() => {});
    let entries = newCache.length;
    for (const slots of edits.values()) entries += slots.length;
    this.#held.hold(tree, entries);
    return { tree };
  }

  /** What an entry of the parent capture counted, now gone or replaced: subtracted from the totals. */
  #dropped(e: TreeEntry | Tree, j: JournalIndex): void {
    const stack: TreeEntry[] = 'entries' in e ? [...e.entries] : [e];
    while (stack.length > 0) {
      const x = stack.pop()!;
      switch (x.type) {
        case 'dir':
          this.removed.dirs++;
          stack.push(...j.tree(x.tree!).entries);
          break;
        case 'file':
          this.removed.files++;
          this.removed.bytes += x.size;
          break;
        case 'symlink':
          this.removed.symlinks++;
          break;
        case 'hardlink':
          this.removed.hardlinks++;
          break;
        default:
          this.removed.specials++;
      }
    }
  }

  /** The tree object of a directory once every slot is known, and its stat cache row. */
  #finish(rel: Buffer, slots: Slot[], newCache: Array<[Buffer, CachedFile]>): Promise<ObjectId> {
    const tree = Promise.all(slots).then((all) => {
      let paging: Paging = null;
      const id = putDir((raw) => this.#putObject('tree', raw), all.filter((e): e is TreeEntry => e !== null), (p) => (paging = p));
      return this.#saved(rel, id, newCache, paging);
    });
    tree.catch(() => {});
    this.#held.hold(tree, slots.length + newCache.length);
    return tree;
  }

  /**
   * A directory's tree is stored: its stat cache row goes with it, or for a paged directory a row per
   * page made now (the rows of pages that stand carry over from the parent capture's), and an empty
   * row under the directory's own key (a row from when it was one tree must not speak for it).
   */
  #saved(rel: Buffer, id: ObjectId, newCache: Array<[Buffer, CachedFile]>, paging: Paging): ObjectId {
    const cache = this.#o.cache;
    if (!cache) return id;
    newCache.sort((a, b) => Buffer.compare(a[0], b[0]));
    if (!paging) {
      cache.save(rel, encodeDirCache(newCache));
      return id;
    }
    cache.save(rel, encodeDirCache([]));
    let k = 0;
    paging.pages.forEach((p, i) => {
      while (k < newCache.length && Buffer.compare(newCache[k][0], p.first) < 0) k++;
      const start = k;
      while (k < newCache.length && Buffer.compare(newCache[k][0], p.last) <= 0) k++;
      if (paging.made.has(i)) cache.save(statCacheKey(rel, p.first), encodeDirCache(newCache.slice(start, k)));
    });
    return id;
  }

  /**
   * Look at entry `name` of directory `abs` (member path `rel`): lstat it, reuse or read what it
   * holds, and push its slot (nothing, for an entry skipped with a warning). `descend` captures a
   * subdirectory. Returns the type it found (undefined: skipped).
   */
  async #visit(abs: Buffer, rel: Buffer, name: Buffer, cached: Map<string, CachedFile> | undefined, newCache: Array<[Buffer, CachedFile]>, slots: Slot[], descend: (abs: Buffer, rel: Buffer, st: BigIntStats) => Promise<DirResult>): Promise<EntryType | undefined> {
    if (++this.#sinceYield >= YIELD_EVERY) await this.#yield();
    const childAbs = joinBuf(abs, name);
    const childRel = joinBuf(rel, name);
    let st: BigIntStats;
    try {
      st = lstatSync(childAbs, { bigint: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      this.warn(childRel, code === 'ENOENT' ? 'vanished' : 'unreadable', `cannot stat: ${(err as Error).message}; skipped`);
      return undefined;
    }
    const type = entryTypeOf(st);
    if (!type) {
      this.warn(childRel, 'skipped', 'unknown file type; skipped');
      return undefined;
    }
    const base = { name, mode: Number(st.mode & 0o7777n), uid: Number(st.uid), gid: Number(st.gid), mtimeNs: toMicros(st.mtimeNs), xattrs: [] as Array<[Buffer, Buffer]> };
    switch (type) {
      case 'dir': {
        const known = this.#o.reuse?.(childRel);
        if (known) {
          slots.push(this.#otherXattrs(childAbs, childRel, { ...base, type: 'dir', size: 0, tree: known }, st, cached, newCache));
          break;
        }
        const sub = await descend(childAbs, childRel, st);
        const entry = sub.tree.then((tree): TreeEntry => ({ ...base, type: 'dir', size: 0, tree }));
        entry.catch(() => {}); // the failure surfaces through the root; never unhandled
        slots.push(this.#otherXattrs(childAbs, childRel, entry, st, cached, newCache));
        break;
      }
      case 'symlink': {
        let target: Buffer;
        try {
          target = readlinkSync(childAbs, { encoding: 'buffer' });
        } catch (err) {
          this.warn(childRel, 'unreadable', `cannot read symlink: ${(err as Error).message}; skipped`);
          return undefined;
        }
        this.stats.symlinks++;
        slots.push(this.#otherXattrs(childAbs, childRel, { ...base, type: 'symlink', size: target.length, target }, st, cached, newCache));
        break;
      }
      case 'file': {
        if (st.nlink > 1n) {
          this.sawLinks = true;
          const key = `${st.dev}:${st.ino}`;
          const first = this.#hardlinks.get(key);
          if (first) {
            this.stats.hardlinks++;
            slots.push({ ...base, type: 'hardlink', size: 0, target: first });
            break;
          }
          this.#hardlinks.set(key, childRel);
        }
        this.stats.files++;
        this.stats.bytes += Number(st.size);
        const hit = cached?.get(name.toString('latin1'));
        if (hit && hit.size === Number(st.size) && hit.mtimeNs === st.mtimeNs && hit.ctimeNs === st.ctimeNs && hit.ino === st.ino) {
          this.stats.filesReused++;
          if (this.#settled(st.ctimeNs)) newCache.push([name, hit]);
          const entry: TreeEntry = { ...base, type: 'file', size: hit.size, chunks: hit.chunks };
          // a change of attributes changes the ctime: cached ones are current (unknown ones are read)
          // (Buffers may arrive as plain Uint8Arrays: the apply's records come from worker threads)
          slots.push(hit.xattrs ? { ...entry, xattrs: hit.xattrs.map(([k, v]) => [asBuffer(k), asBuffer(v)]) } : this.#withXattrs(childAbs, childRel, entry, hit));
          break;
        }
        await this.#acquire();
        // a file read again because it changed: its old chunks' boundaries spare the scan where its bytes still match
        const old = hit && hit.size !== NOT_A_FILE && hit.chunks.length >= 2 ? hit.chunks : undefined;
        const job = this.#readFile(childAbs, childRel, base, newCache, name, Number(st.size), old).finally(() => this.#release());
        job.catch((err) => (this.#failure ??= err));
        // the attributes are read beside the content; the job ends (and frees its slot) without waiting for them
        slots.push(this.#withXattrs(childAbs, childRel, job.then((r) => r?.entry ?? null), job.then((r) => r?.cached)));
        break;
      }
      default: {
        // Recorded exactly (type, mode, owner, device number, attributes) and never opened; restore and
        // apply make them again (materialize.ts): nothing is skipped, so this is no warning.
        this.stats.specials++;
        slots.push(this.#otherXattrs(childAbs, childRel, { ...base, type, size: 0, ...(type === 'chardev' || type === 'blockdev' ? { rdev: Number(st.rdev) } : {}) }, st, cached, newCache));
      }
    }
    return type;
  }

  /** Whether a file with this ctime can be trusted from the cache next time (RACY_NS). */
  #settled(ctimeNs: bigint): boolean {
    return ctimeNs < (ctimeNs % 1_000_000n !== 0n ? this.#racyFineBefore : this.#racyBefore);
  }

  /**
   * An entry with its extended attributes, read in the next batch (xattrs.ts). `cached`: the stat
   * cache's record of the file, which keeps them (left unknown when they could not be read).
   */
  #withXattrs(abs: Buffer, rel: Buffer, entry: TreeEntry | null | Promise<TreeEntry | null>, cached?: CachedFile | Promise<CachedFile | undefined>): TreeEntry | null | Promise<TreeEntry | null> {
    const reader = this.#xattrs;
    if (!reader) return entry;
    const read = reader.read(abs).then((r) => {
      if (r.error) this.warn(rel, 'unreadable', `extended attributes not read: ${r.error}`);
      return r.xattrs;
    });
    const out = Promise.all([entry, read, cached]).then(([e, x, c]) => {
      if (c) c.xattrs = x;
      return e && x?.length ? { ...e, xattrs: x } : e;
    });
    out.catch(() => {}); // surfaces through the directory's tree
    return out;
  }

  /**
   * An entry other than a regular file (at `rel`, lstat `st`), with its attributes: the
   * stat cache's when its inode and ctime are the ones recorded there (a change of attributes
   * changes the ctime), else read. So a capture of an unchanged tree reads none.
   */
  #otherXattrs(abs: Buffer, rel: Buffer, entry: TreeEntry | Promise<TreeEntry | null>, st: BigIntStats, cached: Map<string, CachedFile> | undefined, newCache: Array<[Buffer, CachedFile]>): TreeEntry | null | Promise<TreeEntry | null> {
    if (!this.#xattrs) return entry;
    const name = rel.subarray(rel.lastIndexOf(0x2f) + 1);
    const record: CachedFile = { size: NOT_A_FILE, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, ino: st.ino, chunks: [] };
    if (this.#settled(st.ctimeNs)) newCache.push([name, record]);
    const hit = cached?.get(name.toString('latin1'));
    if (!hit || hit.size !== NOT_A_FILE || hit.ino !== st.ino || hit.ctimeNs !== st.ctimeNs || !hit.xattrs) return this.#withXattrs(abs, rel, entry, record);
    const xattrs: Xattrs = hit.xattrs.map(([k, v]) => [asBuffer(k), asBuffer(v)]);
    record.xattrs = xattrs;
    const attach = (e: TreeEntry | null) => (e && xattrs.length ? { ...e, xattrs } : e);
    return entry instanceof Promise ? entry.then(attach) : attach(entry);
  }

  /** Start reading the attributes gathered so far (the walk calls this when it is done). */
  flushXattrs(): void {
    this.#xattrs?.flush();
  }

  async #readFile(abs: Buffer, rel: Buffer, base: Omit<TreeEntry, 'type' | 'size'>, newCache: Array<[Buffer, CachedFile]>, name: Buffer, size: number, old?: ObjectId[]): Promise<{ entry: TreeEntry; cached?: CachedFile } | null> {
    const r = await this.#o.pool.chunkFile(abs, size, old ? { ...this.#stream, old } : this.#stream);
    if (!r.ok) {
      this.stats.files--;
      const problem = r.code === 'ENOENT' ? 'vanished' : 'unreadable';
      this.warn(rel, problem, `cannot read file (${r.code}): ${r.message}; skipped`);
      return null;
    }
    this.stats.filesRead++;
    this.stats.bytesRead += r.stat.size;
    this.stats.bytesHinted += r.hintedBytes ?? 0;
    // a pool that collected the objects instead of streaming them (a wrapper that drops the options)
    for (const c of r.chunks) this.#storePrepared(c);
    const chunks = r.ids;
    if (r.changedDuringRead) {
      this.warn(rel, 'changed-during-read', 'file kept changing while being read; stored as last read (quiesce the application with a pre hook for a consistent copy)');
    }
    let cached: CachedFile | undefined;
    if (!r.changedDuringRead && this.#settled(r.stat.ctimeNs)) {
      cached = { size: r.stat.size, mtimeNs: r.stat.mtimeNs, ctimeNs: r.stat.ctimeNs, ino: r.stat.ino, chunks };
      newCache.push([name, cached]);
    }
    return { entry: { ...base, mtimeNs: toMicros(r.stat.mtimeNs), type: 'file', size: r.stat.size, chunks }, cached };
  }
}

/**
 * Capture a directory tree; returns the root tree id. With `o.journal`, only what the journal names
 * is looked at (walkJournaled), and `removed` says what the parent capture counted that is gone: the
 * member's totals are the parent's plus `stats` minus `removed` (for dirs, files, bytes, symlinks,
 * hardlinks, specials; the other counters are this capture's work). A journaled capture that meets
 * a file with several links is done again as a full walk (`journaled` is then false).
 */
export async function captureTree(root: string, o: CaptureOptions): Promise<{ root: ObjectId; stats: CaptureStats; removed?: CaptureStats; journaled?: boolean }> {
  const abs = Buffer.from(root);
  let st: BigIntStats;
  try {
    st = lstatSync(abs, { bigint: true });
  } catch (err) {
    throw wrapIoError(err, `member ${root}`);
  }
  if (!st.isDirectory()) throw new FerryError('MEMBER_INVALID', `member ${root} is no longer a directory (is it a symlink now?); fix the path or recreate the volume`);
  if (!xattrToolsPresent()) {
    o.onWarning?.({ path: '.', problem: 'xattrs-not-captured', message: `extended attributes and POSIX ACLs are not captured: getfattr is not installed here; ${XATTR_TOOLS_HINT}. Files with an ACL would be restored with their group bits as the ACL's mask` });
  }
  const walker = new TreeWalker(o);
  const walked = o.journal ? walker.walkJournaled(abs, Buffer.alloc(0), o.journal.parent, indexJournal(o.journal)) : walker.walk(abs, Buffer.alloc(0), st);
  let tree: Promise<ObjectId>;
  try {
    tree = (await walked).tree;
  } finally {
    walker.flushXattrs();
  }
  const id = await tree;
  if ((o.reuse || o.journal) && walker.sawLinks) {
    const full = await captureTree(root, { ...o, reuse: undefined, journal: undefined });
    return o.journal ? { ...full, journaled: false } : full;
  }
  return o.journal ? { root: id, stats: walker.stats, removed: walker.removed, journaled: true } : { root: id, stats: walker.stats };
}

export function putMeta(store: CaptureStore, kind: ObjectKind, raw: Buffer, stats: CaptureStats): ObjectId {
  const { id, added } = store.put(kind, raw);
  if (added) {
    stats.objectsAdded++;
    stats.bytesAdded += raw.length;
    stats.bytesStored += raw.length;
  }
  return id;
}
