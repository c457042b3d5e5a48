// Staging: writing a baseline's new subtrees while the transfer still runs,
// so that the apply after the commit moves them into place instead of
// writing every file then. Trees arrive bottom up, each after everything
// below it (DESIGN.md section 5). As each request of a baseline's stream is
// stored, each of its trees is written, on the apply workers, into
// `<member>/.ferry-stage/<tree id>.part` (renamed to `<tree id>` when whole),
// by the same applier the apply uses; a subdirectory already staged is
// renamed into it rather than written again. The apply, meeting a new
// directory whose tree is staged, renames it into place (apply.ts,
// ApplyOptions.staged) and sets its metadata; the member root exists
// already, so the entries of its staged tree are renamed into it one by one
// (ApplyOptions.stagedEntry): a baseline never holds two copies of a file.
// Whatever is left in the staging area afterwards is removed before the
// replica is verified.
//
// Only what is certain to be right is staged: a tree holding a hard link is
// not (its target is member-relative: the member's applier makes links), nor
// anything above it. A tree that occurs twice is staged once: the first
// place takes it, the others are written as before. Staged directories are
// named by tree id, so a transfer cut and resumed, or a daemon restarted,
// finds and uses what was staged (without the record of what was written:
// the verification then reads those files). Nothing here is trusted beyond
// that: the replica is captured and compared with the snapshot after the
// apply, as always.
//
// What each staged tree's walk wrote (what lstat saw of each file) is what
// lets the verification after the apply take those files unread. At a
// million files that record was the largest thing the destination held
// (about 500 bytes a file, for the whole transfer), so it goes out of
// memory: into a StageRecord (the catalog's stage_written, host.ts), a row
// per tree and directory, read back a tree at a time when the apply takes it.
//
// Owns: the staging area inside one member, and the record of what is
// staged there. Must never: write outside the member's staging area (names
// are tree ids; the area is a real directory, never a symlink followed), or
// stage for a replica that has been applied (its directories exist; the
// patch path applies updates).
import { mkdirSync, readdirSync, renameSync } from 'node:fs';
import { wrapIoError } from '../core/errors.ts';
import { isObjectId, type ObjectId } from '../core/ids.ts';
import type { ObjectReader } from '../store/types.ts';
import { decodeDirCache, encodeDirCache, type CachedFile } from '../snapshot/stat-cache.ts';
import type { TreeEntry } from '../snapshot/model.ts';
import { dirEntries } from '../snapshot/dir-pages.ts';
import { applySubtree, lstatOrNull, removePath, type ApplyStats, type StagedTree } from './apply.ts';

/** The staging area's name, directly inside a member's replica root. */
export const STAGE_DIR = '.ferry-stage';

const ZERO: ApplyStats = { created: 0, updated: 0, removed: 0, metadata: 0, bytesWritten: 0 };
const SLASH = Buffer.from('/');
/** `b`: raw bytes, or a path in the applier's latin1 form (one char per byte; tree ids are plain hex) */
const join = (a: Buffer, b: Buffer | string) => Buffer.concat([a, SLASH, typeof b === 'string' ? Buffer.from(b, 'latin1') : b]);

export function stageArea(root: Buffer): Buffer {
  return join(root, STAGE_DIR);
}

/** What staging one tree did (a worker's answer: stageTree). */
export interface StageResult {
  /** the tree is now staged whole under its id */
  staged: boolean;
  /** already staged (by an earlier attempt): nothing is known of what it holds */
  existed?: boolean;
  /** staged subdirectories moved into it: [path relative to the tree, their tree id] */
  claimed: Array<[rel: string, tree: ObjectId]>;
  stats: ApplyStats;
  written: Array<[dir: string, name: string, file: CachedFile]>;
  warnings: Array<[path: string, message: string]>;
}

/** The staging area, made a real directory if it is not one (a symlink or file in the way is removed, never followed). */
function ensureArea(root: Buffer): Buffer {
  const area = stageArea(root);
  const st = lstatOrNull(area);
  if (st?.isDirectory()) return area;
  if (st) removePath(area);
  try {
    mkdirSync(area, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw wrapIoError(err, `creating ${area}`);
  }
  return area;
}

/**
 * Write tree `tree` (every object below it is stored) into the staging area
 * of the member at `root`: the work an apply worker does for a Stager. A
 * staged subdirectory is moved in instead of being written again. A tree
 * that turns out to hold a hard link is not staged (what it took in is lost
 * with it, and is written by the apply instead).
 */
export function stageTree(root: Buffer, tree: ObjectId, o: { store: ObjectReader; noOwner?: boolean }): StageResult {
  const out: StageResult = { staged: false, claimed: [], stats: { ...ZERO }, written: [], warnings: [] };
  if (!isObjectId(tree)) return out;
  const area = ensureArea(root);
  const done = join(area, tree);
  if (lstatOrNull(done)?.isDirectory()) return { ...out, staged: true, existed: true };
  const part = join(area, `${tree}.part`);
  removePath(part);
  mkdirSync(part, { mode: 0o700 });
  try {
    const r = applySubtree(root, part, '', tree, undefined, {
      store: o.store,
      noOwner: o.noOwner,
      // a tree holding a hard link is not staged (below): nothing here is relinked
      relinks: false,
      onFileWritten: (dir, name, f) => out.written.push([dir, name, f]),
      onWarning: (p, msg) => out.warnings.push([p, msg]),
      staged: (child, p, rel) => {
        if (!isObjectId(child)) return undefined;
        try {
          renameSync(join(area, child), p);
        } catch {
          return undefined; // not staged (or taken): written here
        }
        out.claimed.push([rel, child]);
        return { stats: { ...ZERO }, written: [], warnings: [] };
      },
    });
    if (r.links.length > 0) {
      removePath(part);
      return { ...out, claimed: [], written: [], warnings: [] };
    }
    out.stats = r.stats;
    renameSync(part, done);
    out.staged = true;
    return out;
  } catch (err) {
    removePath(part);
    throw err;
  }
}

/**
 * Where a Stager keeps what its staging wrote, out of memory: rows of encoded files (the stat
 * cache's encoding), per staged tree and directory (relative to the tree, latin1 bytes).
 */
export interface StageRecord {
  put(rows: Array<[tree: ObjectId, dir: Buffer, data: Buffer]>): void;
  /** the rows put for `tree`, in the order they were put */
  of(tree: ObjectId): Array<{ dir: Uint8Array; data: Uint8Array }>;
  /** the rows of `tree` go; of every tree when none is named */
  drop(tree?: ObjectId): void;
}

/** A StageRecord in memory (a Stager given none: tests, tools). */
export function memoryStageRecord(): StageRecord {
  const rows = new Map<ObjectId, Array<{ dir: Uint8Array; data: Uint8Array }>>();
  return {
    put: (add) => {
      for (const [tree, dir, data] of add) {
        let r = rows.get(tree);
        if (!r) rows.set(tree, (r = []));
        r.push({ dir, data });
      }
    },
    of: (tree) => rows.get(tree) ?? [],
    drop: (tree) => {
      if (tree === undefined) rows.clear();
      else rows.delete(tree);
    },
  };
}

/** Files of staged trees held before they go to the StageRecord in one batch. */
const RECORD_BATCH_FILES = 8192;

/** One staged tree as the Stager knows it: where it is, whether its own walk's files are recorded, and what it took in. */
interface Staged {
  tree: ObjectId;
  /** the staged tree it was moved into, and its path there; none: at the top of the staging area */
  parent?: Staged;
  rel?: string;
  stats: ApplyStats;
  /** the files its own walk wrote are in the record (StageRecord) */
  recorded?: boolean;
  warnings: StageResult['warnings'];
  children: Staged[];
  /** moved into the replica */
  taken?: boolean;
  /** a subtree was taken out of it: it is no longer whole */
  broken?: boolean;
  /** its directory's name at the top of the area, when not its tree id (`<id>.broken`: see take) */
  dirName?: string;
}

export type StageRunner = (job: { root: Buffer; tree: ObjectId; noOwner?: boolean }) => Promise<StageResult>;

/**
 * The staging of one member while its baseline arrives: trees are handed in
 * (`add`) in the order they were stored, each staged after the subtrees it
 * holds; the apply first waits for what is under way (`drain`), then takes
 * staged subtrees into place (`take`).
 */
export class Stager {
  readonly #root: Buffer;
  readonly #run: StageRunner;
  /** per tree: its staging, under way or done (resolves whether it is staged) */
  readonly #jobs = new Map<ObjectId, Promise<boolean>>();
  readonly #staged = new Map<ObjectId, Staged>();
  /** trees that hold a hard link, at any depth */
  readonly #unstageable = new Set<ObjectId>();
  #closed = false;
  /** trees staged, and trees taken into place */
  readonly counts = { staged: 0, taken: 0, failed: 0 };

  readonly #store: ObjectReader;
  /** trees already staged at the top of the area when this stager began (another process staged them) */
  #adopted = false;
  readonly #rows: StageRecord;
  /** rows not yet put in the record, and how many files they hold */
  #pending: Array<[tree: ObjectId, dir: Buffer, data: Buffer]> = [];
  #pendingFiles = 0;

  /** `record`: where what the staging wrote is kept (its rows from before are dropped: a new staging knows nothing of them). */
  constructor(root: string, run: StageRunner, store: ObjectReader, record: StageRecord = memoryStageRecord()) {
    this.#root = Buffer.from(root);
    this.#run = run;
    this.#store = store;
    this.#rows = record;
    record.drop();
  }

  /** Stage tree `tree` (stored, with everything below it), whose entries are `entries`, once its subdirectories' staging is done. */
  add(tree: ObjectId, entries: TreeEntry[]): void {
    if (this.#closed || this.#jobs.has(tree)) return;
    const subdirs = entries.filter((e) => e.type === 'dir').map((e) => e.tree!);
    if (entries.some((e) => e.type === 'hardlink')) {
      this.#unstageable.add(tree);
      return;
    }
    const below = subdirs.map((c) => this.#jobs.get(c)).filter((j) => j !== undefined);
    const job = Promise.all(below).then(async () => {
      if (subdirs.some((c) => this.#unstageable.has(c))) {
        this.#unstageable.add(tree);
        return false;
      }
      const r = await this.#run({ root: this.#root, tree });
      if (!r.staged) {
        this.#unstageable.add(tree);
        return false;
      }
      this.#record(tree, r);
      return true;
    }).catch(() => {
      this.counts.failed++;
      return false;
    });
    this.#jobs.set(tree, job);
  }

  #record(tree: ObjectId, r: StageResult): void {
    const s: Staged = { tree, stats: r.existed ? { ...ZERO } : r.stats, recorded: r.written.length > 0, warnings: r.warnings, children: [] };
    if (s.recorded) this.#keep(tree, r.written);
    this.#staged.set(tree, s);
    this.counts.staged++;
    for (const [rel, child] of r.claimed) {
      const known = this.#staged.get(child);
      const c = known ?? { tree: child, stats: { ...ZERO }, warnings: [], children: [] };
      c.parent = s;
      c.rel = rel;
      s.children.push(c);
      // staged before a restart: nothing known of its files, its subtrees are found from the trees
      if (!known) this.#indexBelow(c);
    }
    if (r.existed) this.#indexBelow(s);
  }

  /** What tree `tree`'s own walk wrote, into the record (a row per directory; batched). */
  #keep(tree: ObjectId, written: StageResult['written']): void {
    const byDir = new Map<string, Array<[Buffer, CachedFile]>>();
    for (const [dir, name, f] of written) {
      let d = byDir.get(dir);
      if (!d) byDir.set(dir, (d = []));
      d.push([Buffer.from(name, 'latin1'), f]);
    }
    for (const [dir, files] of byDir) this.#pending.push([tree, Buffer.from(dir, 'latin1'), encodeDirCache(files)]);
    this.#pendingFiles += written.length;
    if (this.#pendingFiles >= RECORD_BATCH_FILES) this.#flush();
  }

  #flush(): void {
    if (this.#pending.length === 0) return;
    const rows = this.#pending;
    this.#pending = [];
    this.#pendingFiles = 0;
    this.#rows.put(rows);
  }

  /**
   * Record `s` and, below it, each subdirectory not recorded yet: every subdirectory of a whole
   * staged tree is a whole rendering of its own tree. A tree the store cannot read ends the walk
   * there (what is below is written by the apply instead).
   */
  #indexBelow(s: Staged): void {
    this.#staged.set(s.tree, s);
    let entries: TreeEntry[];
    try {
      entries = dirEntries(this.#store, s.tree);
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.type !== 'dir' || this.#staged.has(e.tree!)) continue;
      const c: Staged = { tree: e.tree!, parent: s, rel: e.name.toString('latin1'), stats: { ...ZERO }, warnings: [], children: [] };
      s.children.push(c);
      this.#indexBelow(c);
    }
  }

  /** No more staging: wait for what is under way, and find what an earlier process staged. */
  async drain(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#jobs.values());
    this.#flush();
    this.#adopt();
  }

  /**
   * Trees staged whole by an earlier process (a daemon restarted between the
   * transfer and the apply) have no record here: each subdirectory of a whole
   * staged tree is a whole rendering of its own tree, so their places are
   * found from the trees themselves. Nothing is known of their files (the
   * verification reads them). A tree something was taken out of is named
   * `<id>.broken` (take) and is not adopted: what is left in it is written
   * again by the apply.
   */
  #adopt(): void {
    if (this.#adopted) return;
    this.#adopted = true;
    let names: string[];
    try {
      names = readdirSync(stageArea(this.#root), { encoding: 'latin1' });
    } catch {
      return; // no staging area
    }
    for (const name of names) {
      if (isObjectId(name) && !this.#staged.has(name)) this.#indexBelow({ tree: name, stats: { ...ZERO }, warnings: [], children: [] });
    }
  }

  /** The staged directory's path inside the staging area. */
  #path(s: Staged): Buffer {
    return s.parent ? join(this.#path(s.parent), s.rel!) : join(stageArea(this.#root), s.dirName ?? s.tree);
  }

  /**
   * Move the staged directory of `tree` to `p` (ApplyOptions.staged). A
   * subtree taken out of a staged tree leaves that tree (and those above it)
   * broken: it is no longer taken whole. A staged directory left by an
   * earlier attempt (not recorded here) is taken when it sits at the top of
   * the staging area, with nothing known of its files.
   */
  take = (tree: ObjectId, p: Buffer): StagedTree | undefined => {
    if (!isObjectId(tree)) return undefined;
    const s = this.#staged.get(tree);
    if (s && (s.taken || s.broken)) return undefined;
    try {
      renameSync(s ? this.#path(s) : join(stageArea(this.#root), tree), p);
    } catch {
      return undefined; // not there, or p is in the way: written as before
    }
    this.counts.taken++;
    if (!s) return { stats: { ...ZERO }, written: [], warnings: [] };
    s.taken = true;
    if (s.parent) this.#break(s.parent);
    const parts: Array<[Staged, string]> = [];
    const stats = { ...ZERO };
    const warnings: StagedTree['warnings'] = [];
    const gather = (x: Staged, prefix: string) => {
      x.taken = true;
      for (const k of Object.keys(stats) as Array<keyof ApplyStats>) stats[k] += x.stats[k];
      if (x.recorded) parts.push([x, prefix]);
      warnings.push(...x.warnings);
      for (const c of x.children) gather(c, prefix ? `${prefix}/${c.rel}` : c.rel!);
    };
    gather(s, '');
    this.#flush();
    return { stats, warnings, written: this.#filesOf(parts) };
  };

  /** The files the staged trees `parts` wrote, relative to the tree taken (each tree's rows read when it comes, then dropped). */
  *#filesOf(parts: Array<[Staged, string]>): Generator<[dir: string, name: string, file: CachedFile]> {
    for (const [x, prefix] of parts) {
      for (const row of this.#rows.of(x.tree)) {
        const dir = Buffer.from(row.dir.buffer, row.dir.byteOffset, row.dir.byteLength).toString('latin1');
        const at = prefix && dir ? `${prefix}/${dir}` : prefix || dir;
        for (const [name, f] of decodeDirCache(row.data)) yield [at, name, f];
      }
      this.#rows.drop(x.tree);
      x.recorded = false;
    }
  }

  /**
   * Move the staged entry `name` (not a directory: those are taken whole) of
   * staged tree `tree` to `p` (ApplyOptions.stagedEntry): for a directory that
   * exists already and so is not taken whole, the member root of a baseline,
   * whose files would otherwise be written a second time beside their staged
   * copies (twice the space). A staged tree something was moved out of is
   * broken, like one a subtree was taken out of; what is left in it is still
   * right, so its other entries are moved too.
   */
  takeEntry = (tree: ObjectId, name: Buffer, p: Buffer): boolean => {
    const s = this.#staged.get(tree);
    if (!s || s.taken) return false;
    // none there, or a directory (a whole subtree: that is for take)
    const st = lstatOrNull(join(this.#path(s), name));
    if (!st || st.isDirectory()) return false;
    this.#break(s);
    try {
      renameSync(join(this.#path(s), name), p);
    } catch {
      return false; // in the way (a directory at p): written as before
    }
    return true;
  };

  /**
   * `s` is no longer whole (something was moved out of it): it and every staged tree above it are
   * broken, never taken whole again; on disk too, the one at the top of the area is renamed
   * `<id>.broken`, so that a later process (after a crash mid-apply) does not find it under its id
   * and take it as whole (see #adopt).
   */
  #break(s: Staged): void {
    let top = s;
    for (let up: Staged | undefined = s; up; up = up.parent) {
      up.broken = true;
      top = up;
    }
    if (top.dirName !== undefined) return;
    const broken = `${top.tree}.broken`;
    try {
      renameSync(join(stageArea(this.#root), top.tree), join(stageArea(this.#root), broken));
      top.dirName = broken;
    } catch {
      // not there: nothing to mislead anyone
    }
  }

  /** Remove the staging area and whatever is left in it. */
  clear(): void {
    this.#closed = true;
    removePath(stageArea(this.#root));
    this.#staged.clear();
    this.#pending = [];
    this.#pendingFiles = 0;
    this.#rows.drop();
  }
}
