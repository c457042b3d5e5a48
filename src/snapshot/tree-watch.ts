// Watching directory trees for changes (the change journal's eyes): one
// inotify watch per directory through fs.watch, and what changed since the
// last look, kept as a set of dirty directories, each with the names that
// changed in it. It knows files and nothing else: the site decides when to
// look (journal.ts) and capture decides what a dirty set means.
//
// What inotify tells, and what it does not (docs/design.md, "The change
// journal"):
// - an entry created, deleted or moved in a watched directory: that
//   directory's list changed ('rename'); a file's content or metadata
//   changed: its name in its directory ('change');
// - a write through a hard link is reported only in the directory of the
//   name it was opened by: capture re-reads directories that hold files with
//   several links every time;
// - a queue overflow is not reported at all by libuv (the overflow event has
//   no watch, and libuv drops events without one): the watches run on their
//   own event loop (a worker thread, journal.ts) so the kernel's queue is
//   drained as fast as events come, and the audit walk catches what is lost;
// - writes through mmap and changes made by another host on a network
//   filesystem are not seen: the audit walk catches them.
//
// A directory moved inside the tree keeps its inode and its watch, whose
// path is then stale: when its old parent reports the name gone, the watches
// at the old path are closed, and when the new parent reports the new name,
// the directory is watched again at its new path and marked new in full
// (capture reads it as a new subtree). A new directory is watched before it
// is listed, so nothing created in it between the two is missed.
import { lstatSync, readdirSync, watch, type FSWatcher } from 'node:fs';

/** Names remembered per dirty directory; beyond this the whole directory is re-read. */
export const MAX_NAMES_PER_DIR = 4096;

/** What changed in one directory since the last look. */
export interface DirtyDir {
  /** member-relative path, latin1 ('' is the root) */
  dir: string;
  /** entries were added, removed or renamed: list the directory again */
  list: boolean;
  /** names (latin1) whose entry changed; null: every entry (too many, or unknown) */
  names: string[] | null;
  /** a directory new to the watch (created or moved in): capture it in full, with everything below */
  full: boolean;
}

export interface DirtySet {
  dirs: DirtyDir[];
  /**
   * Why this set cannot be trusted (a watch could not be added, the root went away, an error
   * on a watch): the caller must walk the whole tree. null: the set is complete.
   */
  lost: string | null;
  /** lost for lack of watches (inotify's ENOSPC, or more directories than allowed): the watches were released */
  exhausted?: boolean;
}

interface Dirty {
  list: boolean;
  names: Set<string> | null;
  full: boolean;
}

interface Watched {
  w: FSWatcher;
  ino: bigint;
}

const SLASH = '/';

function join(rel: string, name: string): string {
  return rel === '' ? name : rel + SLASH + name;
}

/**
 * The watches over one directory tree and what changed in it. `take()` hands over what changed
 * since the previous take (or since the watches were established) and starts a new set.
 */
export class TreeWatch {
  readonly root: string;
  readonly #skipAtRoot: string | undefined;
  readonly #maxWatches: number;
  readonly #watched = new Map<string, Watched>();
  #dirty = new Map<string, Dirty>();
  #lost: string | null = null;
  #exhausted = false;
  #closed = false;
  /** events seen in all (for tests and status) */
  events = 0;

  /**
   * @param root absolute path of the tree
   * @param o.skipAtRoot a name directly in the root that is not part of the tree (a replica's staging area)
   * @param o.maxWatches more directories than this: give up (lost), the tree is audited by walks
   */
  constructor(root: string, o: { skipAtRoot?: string; maxWatches?: number } = {}) {
    this.root = root;
    this.#skipAtRoot = o.skipAtRoot;
    this.#maxWatches = o.maxWatches ?? 1_000_000;
  }

  /** Watch every directory of the tree. Changes made while this runs are caught (watch, then list). */
  start(): void {
    this.#watchTree('', false);
    // A root that is not there (yet) is not watched: nothing it will hold would be seen.
    if (!this.#watched.has('')) this.#lose(`the tree root ${this.root} could not be watched (missing, or not a directory)`);
  }

  get watches(): number {
    return this.#watched.size;
  }

  /**
   * The tree needs more watches than it may have (fs.inotify.max_user_watches, or `maxWatches`):
   * its watches are released at once (a tree that cannot be watched whole must not hold the watches
   * every other tree of the user needs) and nothing more is tried; `lost` says where it ran out.
   */
  get exhausted(): boolean {
    return this.#exhausted;
  }

  /** Why the watches no longer see everything (null: they do). */
  get lost(): string | null {
    return this.#closed ? (this.#lost ?? 'closed') : this.#lost;
  }

  /**
   * What changed since the last take; starts a new set. Once anything was lost, every take says
   * so: the owner walks the tree and starts a new watch.
   */
  take(): DirtySet {
    const dirs: DirtyDir[] = [];
    for (const [dir, d] of this.#dirty) dirs.push({ dir, list: d.list, names: d.names ? [...d.names] : null, full: d.full });
    dirs.sort((a, b) => (a.dir < b.dir ? -1 : a.dir > b.dir ? 1 : 0));
    this.#dirty = new Map();
    return { dirs, lost: this.#lost, ...(this.#exhausted ? { exhausted: true } : {}) };
  }

  /** Put a taken set back (a capture that failed): its changes are still to be captured. */
  putBack(set: DirtySet): void {
    if (set.lost !== null && this.#lost === null) this.#lost = set.lost;
    for (const d of set.dirs) {
      const cur = this.#mark(d.dir);
      if (d.list) cur.list = true;
      if (d.full) cur.full = true;
      if (d.names === null) cur.names = null;
      else for (const n of d.names) this.#addName(cur, n);
    }
  }

  close(): void {
    this.#closed = true;
    for (const x of this.#watched.values()) x.w.close();
    this.#watched.clear();
  }

  #lose(reason: string): void {
    if (this.#lost === null) this.#lost = reason;
  }

  /** Out of watches: lost, and every watch released. */
  #exhaust(reason: string): void {
    this.#lose(reason);
    this.#exhausted = true;
    for (const x of this.#watched.values()) x.w.close();
    this.#watched.clear();
    this.#dirty.clear();
  }

  #mark(dir: string): Dirty {
    let d = this.#dirty.get(dir);
    if (!d) {
      d = { list: false, names: new Set(), full: false };
      this.#dirty.set(dir, d);
    }
    return d;
  }

  #addName(d: Dirty, name: string): void {
    if (d.names === null) return;
    d.names.add(name);
    if (d.names.size > MAX_NAMES_PER_DIR) d.names = null;
  }

  /** Watch `rel` and every directory below it; with `fresh`, mark them all new (captured in full). */
  #watchTree(rel: string, fresh: boolean): void {
    const stack = [rel];
    while (stack.length > 0) {
      const dir = stack.pop()!;
      if (this.#closed || this.#exhausted) return;
      if (!this.#watchDir(dir)) continue;
      if (fresh) this.#mark(dir).full = true;
      let names: Buffer[];
      try {
        names = readdirSync(this.#abs(dir), { encoding: 'buffer', withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => Buffer.from(e.name));
      } catch (err) {
        // Gone or unreadable: its parent reports it, or the walk does.
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOENT' && code !== 'ENOTDIR') this.#lose(`cannot list ${this.#abs(dir)}: ${code}`);
        continue;
      }
      for (const n of names) {
        const name = n.toString('latin1');
        if (dir === '' && name === this.#skipAtRoot) continue;
        stack.push(join(dir, name));
      }
    }
  }

  #baseName(rel: string): Buffer {
    const i = rel.lastIndexOf(SLASH);
    return rel === '' ? Buffer.from(this.root.slice(this.root.lastIndexOf(SLASH) + 1)) : Buffer.from(rel.slice(i + 1), 'latin1');
  }

  #same(rel: string, ino: bigint): boolean {
    try {
      return lstatSync(this.#abs(rel), { bigint: true }).ino === ino;
    } catch {
      return false;
    }
  }

  #abs(rel: string): Buffer {
    return rel === '' ? Buffer.from(this.root) : Buffer.concat([Buffer.from(this.root), Buffer.from(SLASH + rel, 'latin1')]);
  }

  /** Add a watch on one directory; false when it is not (or no longer) a directory. */
  #watchDir(rel: string): boolean {
    if (this.#watched.has(rel) || this.#exhausted) return false;
    if (this.#watched.size >= this.#maxWatches) {
      this.#exhaust(`more than ${this.#maxWatches} directories to watch`);
      return false;
    }
    const abs = this.#abs(rel);
    let ino: bigint;
    let w: FSWatcher;
    try {
      w = watch(abs, { persistent: false, encoding: 'buffer' }, (type, name) => this.#event(rel, type, name as Buffer | null));
      ino = lstatSync(abs, { bigint: true }).ino;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return false;
      // ENOSPC: the user's inotify watches are used up (fs.inotify.max_user_watches).
      if (code === 'ENOSPC') this.#exhaust(`inotify watches exhausted at ${abs} after ${this.#watched.size} directories (raise fs.inotify.max_user_watches)`);
      else this.#lose(`cannot watch ${abs}: ${code ?? (err as Error).message}`);
      return false;
    }
    w.on('error', (err) => {
      this.#lose(`watch on ${abs} failed: ${(err as NodeJS.ErrnoException).code ?? err.message}`);
      this.#unwatch(rel);
    });
    this.#watched.set(rel, { w, ino });
    return true;
  }

  /**
   * Close the watches at `rel` and below (a directory removed or moved away), and forget what
   * they recorded there: that path is gone (its parent's list changed), and a directory moved
   * elsewhere is captured anew at its new path.
   */
  #unwatch(rel: string): void {
    const under = (p: string) => rel === '' || p === rel || p.startsWith(rel + SLASH);
    for (const [p, x] of this.#watched) {
      if (!under(p)) continue;
      x.w.close();
      this.#watched.delete(p);
    }
    for (const p of this.#dirty.keys()) if (under(p)) this.#dirty.delete(p);
  }

  #event(dir: string, type: string, name: Buffer | null): void {
    if (this.#closed) return;
    this.events++;
    const watched = this.#watched.get(dir);
    if (!watched) return; // closed meanwhile
    // A watch reports its own directory moved or deleted under the directory's own name: is the
    // watched directory still there, the same one? (An entry may also bear its directory's name.)
    if (type === 'rename' && name !== null && name.equals(this.#baseName(dir)) && !this.#same(dir, watched.ino)) {
      this.#unwatch(dir);
      if (dir === '') this.#lose('the tree root was removed or replaced');
      // its parent reports the name gone or moved
      return;
    }
    const d = this.#mark(dir);
    if (name === null || name.length === 0) {
      d.list = true;
      d.names = null;
      return;
    }
    const n = name.toString('latin1');
    if (dir === '' && n === this.#skipAtRoot) return;
    this.#addName(d, n);
    if (type !== 'rename') return;
    d.list = true;
    // An entry appeared, went or moved: a directory that appeared is watched (with all below it,
    // marked new); watches left at a name that went are closed.
    const rel = join(dir, n);
    let isDir = false;
    let ino: bigint | undefined;
    try {
      const st = lstatSync(this.#abs(rel), { bigint: true });
      isDir = st.isDirectory();
      ino = st.ino;
    } catch {
      isDir = false;
    }
    const had = this.#watched.get(rel);
    if (had && (!isDir || had.ino !== ino)) this.#unwatch(rel);
    if (isDir && !this.#watched.has(rel)) this.#watchTree(rel, true);
  }
}
