// Apply: bring a replica from the state it is in (A: a tree captured from
// the replica itself, or the snapshot last applied) to snapshot T, changing
// only what differs. Files are written beside their target under a
// deterministic temporary name and renamed into place, so a reader never
// sees a half-written file and a crash mid-apply is repaired by running the
// same apply again: every step is idempotent (create overwrites, remove
// ignores what is gone, a wrong type is replaced).
// Apply writes only below the replica root. Names come from decoded trees
// (validated: no '/', no NUL, not '.' or '..'); an existing path that is not
// what the walk expects (a symlink for a directory) is removed, not followed.
import { existsSync, fsyncSync, ftruncateSync, lstatSync, linkSync, mkdirSync, openSync, closeSync, renameSync, rmSync, writeSync, constants, unlinkSync, fstatSync } from 'node:fs';
import { FerryError, wrapIoError } from '../core/errors.ts';
import { hashBytes, type ObjectId } from '../core/ids.ts';
import type { ObjectReader } from '../store/types.ts';
import { decodeBlockList, decodeImage } from '../snapshot/format.ts';
import { dirDiffEntries, dirEntries } from '../snapshot/dir-pages.ts';
import { BLOCKS_PER_LIST, type TreeEntry } from '../snapshot/model.ts';
import { treeHasHardlinks } from '../snapshot/graph.ts';
import { createSpecialEntry, createSymlinkEntry, defaultMetaContext, patchFileEntry, setEntryMeta, writeFileEntry, writeSparse, type MetaContext } from '../snapshot/materialize.ts';
import type { CachedFile } from '../snapshot/stat-cache.ts';
import { pathToText } from '../snapshot/path-text.ts';
import { entryTypeOf } from '../snapshot/capture-types.ts';
import { patchInPlace, type InPlaceRecord } from './in-place.ts';
import { join, linkTargetProblem, lstatOrNull, removePath, tmpName } from './apply-fs.ts';

export { isApplyTemporary, lstatOrNull, removePath } from './apply-fs.ts';
import { XATTR_TOOLS_HINT, XattrWriter, hasDefaultAcl, readXattrsSync, xattrToolsPresent, type Xattrs } from '../snapshot/xattrs.ts';

export interface ApplyStats {
  created: number;
  updated: number;
  removed: number;
  metadata: number;
  bytesWritten: number;
}

export interface ApplyOptions {
  store: ObjectReader;
  onWarning?: (path: string, message: string) => void;
  noOwner?: boolean;
  signal?: AbortSignal;
  /**
   * Called for each regular file the apply wrote, with what lstat saw once it
   * was in place (dir and name as member-relative latin1 strings, '' for the
   * root): the replica's verification capture takes these instead of reading
   * the files again (receive/replica-capture.ts).
   */
  onFileWritten?: (dir: string, name: string, file: CachedFile) => void;
  /**
   * applySubtree: whether the directory it is given took a default ACL from its parent (entries made
   * in it inherit one). Unset: as the member root does (staging makes its directories there).
   */
  inheritsDefaultAcl?: boolean;
  /**
   * Whether the member's tree being applied holds hard links, so that files replaced are noted and
   * links to them remade (TreeApplier.finish). applyTree finds it out; applySubtree is told (unset:
   * noted, the safe side).
   */
  relinks?: boolean;
  /** Called for each directory whose subtree the apply left as it was (member-relative, latin1), with its tree id. */
  onDirUnchanged?: (rel: string, tree: ObjectId) => void;
  /**
   * Applies a new subtree elsewhere (another thread: apply-pool.ts): a directory
   * the replica does not have yet is handed over whole, and the rest of the
   * walk goes on meanwhile. A new directory within SPLIT_DEPTH levels of the
   * member root that has subdirectories is walked here instead, and its
   * subdirectories are handed over.
   */
  subtrees?: SubtreeRunner;
  /**
   * New subtrees written while the transfer ran (stage.ts): moves the staged
   * directory of `tree` to `p` (which does not exist, or is an empty
   * directory) and returns what it holds, or undefined when none is staged.
   * `rel` is p's member-relative path.
   */
  staged?: (tree: ObjectId, p: Buffer, rel: string) => StagedTree | undefined;
  /**
   * The entries of a directory that exists already (the member root of a
   * baseline) whose tree is staged whole: moves the staged entry `name` of
   * tree `tree` (a file, symlink or special file, with its metadata) to `p`
   * and returns true, or false when none is staged there (it is written
   * instead). So the root's files are moved into place like staged
   * subtrees, never written a second time beside their staged copy.
   */
  stagedEntry?: (tree: ObjectId, name: Buffer, p: Buffer) => boolean;
  /**
   * Patch large files changed in a few places in place (in-place.ts), journaling each first: called
   * with the file's member-relative path (latin1) and its record, which it must make durable before
   * it returns. Unset: such files are copied and patched beside, then renamed into place.
   */
  inPlace?: (rel: string, record: InPlaceRecord) => void;
}

/** What a staged subtree holds, for the applier that moves it into place. */
export interface StagedTree {
  stats: ApplyStats;
  /** files written, with what lstat saw of each, relative to the subtree's root ('' for its own files); read once */
  written: Iterable<[dir: string, name: string, file: CachedFile]>;
  warnings: Array<[path: string, message: string]>;
}

/** What applying one new subtree elsewhere brought back, for the applier that handed it over. */
export interface SubtreeResult {
  stats: ApplyStats;
  replaced: string[];
  links: PendingLink[];
  written: Array<[dir: string, name: string, file: CachedFile]>;
  warnings: Array<[path: string, message: string]>;
}

export type SubtreeRunner = (job: { root: Buffer; dir: Buffer; rel: string; tree: ObjectId; meta: TreeEntry; noOwner?: boolean; inheritsDefaultAcl?: boolean; relinks?: boolean }) => Promise<SubtreeResult>;

export interface PendingLink {
  path: Buffer;
  rel: string;
  e: TreeEntry;
  parent: Buffer;
  parentMeta?: TreeEntry;
}

/** New directories less than this many levels below the member root are split into their subdirectories (#splitHere). */
const SPLIT_DEPTH = 2;

function sameMeta(a: TreeEntry, b: TreeEntry): boolean {
  return a.mode === b.mode && a.uid === b.uid && a.gid === b.gid && a.mtimeNs === b.mtimeNs && sameXattrs(a.xattrs, b.xattrs);
}

function sameXattrs(a: Xattrs, b: Xattrs): boolean {
  return a.length === b.length && a.every(([n, v], i) => n.equals(b[i][0]) && v.equals(b[i][1]));
}

/**
 * Whether entries made in member root `root` inherit a default ACL (the root's metadata is no
 * snapshot's). Read again (getfattr: a fork of a large daemon costs 50-130 ms) only when the root's
 * inode or change time moved; subtree threads not told ask again after ROOT_ACL_FOR.
 */
const rootAcls = new Map<string, { inherits: boolean; at: number; ino: bigint; ctimeNs: bigint }>();
const ROOT_ACL_FOR = 30_000;

function rootInherits(root: Buffer, fresh: boolean): boolean {
  if (!xattrToolsPresent()) return false;
  const key = root.toString('latin1');
  const known = rootAcls.get(key);
  if (!fresh && known && Date.now() - known.at < ROOT_ACL_FOR) return known.inherits;
  const st = lstatSync(root, { bigint: true, throwIfNoEntry: false });
  if (known && st && st.ino === known.ino && st.ctimeNs === known.ctimeNs) {
    known.at = Date.now();
    return known.inherits;
  }
  const inherits = hasDefaultAcl(readXattrsSync([root])[0].xattrs);
  rootAcls.set(key, { inherits, at: Date.now(), ino: st?.ino ?? -1n, ctimeNs: st?.ctimeNs ?? -1n });
  return inherits;
}

/**
 * A directory being applied, for the attributes of what is made in it: `inside`, entries made in it
 * inherit a default ACL (its own, as it is while its entries are written: its recorded attributes
 * are set after them); `had`, its attributes now (undefined: just made); `clear`, it was just made
 * in a directory with a default ACL (its inherited ACLs go unless recorded).
 */
interface DirAcls {
  inside: boolean;
  had?: Xattrs;
  clear: boolean;
}

function sameContent(a: TreeEntry, b: TreeEntry): boolean {
  if (a.type !== b.type) return false;
  switch (a.type) {
    case 'file':
      return a.size === b.size && (a.chunks ?? []).length === (b.chunks ?? []).length && (a.chunks ?? []).every((c, i) => c === b.chunks![i]);
    case 'symlink':
    case 'hardlink':
      return a.target!.equals(b.target!);
    case 'chardev':
    case 'blockdev':
      return a.rdev === b.rdev;
    default:
      return true;
  }
}

/** Is what lstat found of the type entry `e` describes? (A hard link entry never is: it names its first path.) */
function sameType(st: ReturnType<typeof lstatOrNull>, e: TreeEntry): boolean {
  return st !== null && entryTypeOf(st) === e.type;
}

class TreeApplier {
  readonly stats: ApplyStats = { created: 0, updated: 0, removed: 0, metadata: 0, bytesWritten: 0 };
  readonly #o: ApplyOptions;
  readonly #ctx: MetaContext;
  readonly #root: Buffer;
  /**
   * member-relative paths (latin1) whose inode was replaced: hard links to them must be remade.
   * Noted only when the tree applied holds hard links (ApplyOptions.relinks): a baseline of a
   * million files would otherwise hold a million paths here, for nothing.
   */
  readonly #replaced = new Set<string>();
  readonly #relinks: boolean;
  readonly #links: PendingLink[] = [];
  /** new subtrees applied elsewhere (ApplyOptions.subtrees) */
  readonly #handedOver: Array<Promise<SubtreeResult>> = [];
  /** extended attributes and ACLs, set in batches (undefined: the tools are missing) */
  readonly #xattrs: XattrWriter | undefined;
  /** files written whose attributes wait in the writer: told to onFileWritten once those are set */
  readonly #waiting = new Map<string, { p: Buffer; rel: string; e: TreeEntry }>();
  /** whether entries made in the member root inherit a default ACL (staged subtrees were made there) */
  readonly #rootInside: () => boolean;
  #ownerWarned = false;

  constructor(root: Buffer, o: ApplyOptions, rootInside: () => boolean) {
    this.#root = root;
    this.#o = o;
    this.#relinks = o.relinks ?? true;
    this.#rootInside = rootInside;
    this.#ctx = {
      ...defaultMetaContext(o.noOwner),
      onOwnerError: (p, err) => {
        if (!this.#ownerWarned) o.onWarning?.(pathToText(p), `ownership not set: ${(err as Error).message}`);
        this.#ownerWarned = true;
      },
    };
    this.#xattrs = xattrToolsPresent()
      ? new XattrWriter(
          (p, message) => o.onWarning?.(pathToText(p), message),
          (paths) => {
            for (const p of paths) {
              const w = this.#waiting.get(p.toString('latin1'));
              if (!w) continue;
              this.#waiting.delete(p.toString('latin1'));
              this.#written(w.p, w.rel, w.e);
            }
          },
        )
      : undefined;
  }

  /**
   * The entry to make at `p` (its mode narrowed to its owner's rights while its attributes wait in
   * the writer; see xattrs.ts), with its attributes queued unless `later` (queue them with
   * #queueXattrs once the entry exists). `had`: p's attributes now (an entry kept); `clear`: p is
   * made in a directory with a default ACL. Without the tools, attributes to set or remove refuse
   * the apply: the replica could not be what the snapshot is.
   */
  #withXattrs(e: TreeEntry, p: Buffer, o: { had?: Xattrs; clear: boolean; later?: boolean }): TreeEntry {
    const isLink = e.type === 'symlink';
    if (!this.#xattrs) {
      if (e.xattrs.length === 0 && !o.had?.length) return e;
      throw new FerryError('TOOL_MISSING', `${pathToText(p)} has extended attributes or ACLs in the snapshot (or had them), but setfattr is not installed at this site; ${XATTR_TOOLS_HINT}, then update again`);
    }
    const needed = e.xattrs.length > 0 || (o.clear && !isLink) || (o.had ?? []).some(([n]) => !e.xattrs.some(([m]) => m.equals(n)));
    if (!needed) return e;
    if (!o.later) this.#queueXattrs(e, p, o);
    return isLink ? e : { ...e, mode: e.mode & 0o700 };
  }

  #queueXattrs(e: TreeEntry, p: Buffer, o: { had?: Xattrs; clear: boolean }): void {
    const isLink = e.type === 'symlink';
    this.#xattrs?.set(p, e.xattrs, { had: o.had, clearAcls: o.clear && !isLink, isDir: e.type === 'dir', mode: isLink ? undefined : e.mode });
  }

  /** Set the attributes queued so far (and tell onFileWritten of the files that waited for them). */
  flushXattrs(): void {
    this.#xattrs?.flush();
  }

  /** Make `p` a real directory (a symlink or file in the way is removed, never followed); false when it had to be created. */
  #ensureDir(p: Buffer): boolean {
    const st = lstatOrNull(p);
    if (st?.isDirectory()) return true;
    if (st) removePath(p);
    try {
      mkdirSync(p, { mode: 0o700 });
    } catch (err) {
      throw wrapIoError(err, `creating ${p}`);
    }
    return false;
  }

  /** Apply the change from tree a to tree b in directory `dir` (which exists and is a real directory). */
  dir(dir: Buffer, rel: string, a: ObjectId | null, b: ObjectId, meta: TreeEntry | undefined, acls: DirAcls): void {
    this.#o.signal?.throwIfAborted();
    const [ea, eb] = a === b /* else only the pages that differ (dir-pages.ts) */ ? [dirEntries(this.#o.store, b), dirEntries(this.#o.store, b)] : dirDiffEntries(this.#o.store, a, b);
    let i = 0;
    let j = 0;
    while (i < ea.length || j < eb.length) {
      const cmp = i >= ea.length ? 1 : j >= eb.length ? -1 : Buffer.compare(ea[i].name, eb[j].name);
      if (cmp < 0) {
        const x = ea[i++];
        removePath(join(dir, x.name));
        this.stats.removed++;
        continue;
      }
      const y = eb[j++];
      const x = cmp === 0 ? ea[i++] : undefined;
      if (x && y.type !== 'dir' /* most entries of a changed directory are not: no paths made */ && sameContent(x, y) && (y.type === 'hardlink' || sameMeta(x, y))) continue;
      const p = join(dir, y.name);
      const r = rel ? `${rel}/${y.name.toString('latin1')}` : y.name.toString('latin1');
      this.#entry(dir, p, r, x, y, meta, acls.inside, b);
      this.#xattrs?.flushIfFull();
    }
    if (meta) setEntryMeta(dir, this.#withXattrs(meta, dir, { had: acls.had, clear: acls.clear }), this.#ctx);
  }

  /**
   * Bring entry `x` at `p` (undefined: none) to `y`. `inside`: entries made in `parent` inherit a
   * default ACL. `parentTree`: the tree of `parent` (its staged copy's entries may be moved in:
   * ApplyOptions.stagedEntry).
   */
  #entry(parent: Buffer, p: Buffer, rel: string, x: TreeEntry | undefined, y: TreeEntry, parentMeta: TreeEntry | undefined, inside: boolean, parentTree: ObjectId): void {
    // a directory made here takes the parent's default ACL as its own
    const made: DirAcls = { inside, clear: inside };
    if (y.type === 'dir') {
      if (x?.type === 'dir' && x.tree === y.tree) {
        if (!sameMeta(x, y)) {
          // Not a directory any more (swapped for a symlink since `from` was taken): its content is gone, redo it whole.
          if (!this.#ensureDir(p)) return this.dir(p, rel, null, y.tree!, y, made);
          setEntryMeta(p, this.#withXattrs(y, p, { had: x.xattrs, clear: false }), this.#ctx);
          this.stats.metadata++;
        }
        this.#o.onDirUnchanged?.(rel, y.tree!);
        return;
      }
      const fresh = x?.type !== 'dir';
      if (fresh) {
        if (x) removePath(p);
        this.stats.created++;
        const took = this.#o.staged?.(y.tree!, p, rel);
        if (took) return this.#took(p, rel, y, took);
      }
      const existed = this.#ensureDir(p);
      if (fresh && this.#o.subtrees && !this.#splitHere(rel, y.tree!)) {
        const job = this.#o.subtrees({ root: this.#root, dir: p, rel, tree: y.tree!, meta: y, noOwner: this.#o.noOwner, inheritsDefaultAcl: inside, relinks: this.#relinks });
        job.catch(() => {}); // awaited in collect()
        this.#handedOver.push(job);
        return;
      }
      const kept = x?.type === 'dir' && existed;
      this.dir(p, rel, kept ? x.tree! : null, y.tree!, y, kept ? { inside: hasDefaultAcl(x.xattrs), had: x.xattrs, clear: false } : made);
      return;
    }
    if (x && sameContent(x, y)) {
      // chmod/chown/utimes follow symlinks: set metadata only on what is really there, else rewrite the entry.
      if (sameType(lstatOrNull(p), y)) {
        setEntryMeta(p, this.#withXattrs(y, p, { had: x.xattrs, clear: false }), this.#ctx);
        this.stats.metadata++;
        return;
      }
    }
    if (x) this.stats.updated++;
    else this.stats.created++;
    if (y.type === 'hardlink') {
      this.#links.push({ path: p, rel, e: y, parent, parentMeta });
      return;
    }
    if (!x && this.#o.stagedEntry?.(parentTree, y.name, p)) {
      // staged with its metadata while the transfer ran: moved, not written again
      if (y.type === 'file') {
        this.stats.bytesWritten += y.size;
        this.#noteReplaced(rel);
        this.#written(p, rel, y);
      }
      return;
    }
    if (y.type === 'file' && x?.type === 'file' && this.#o.inPlace && this.#patchedInPlace(p, rel, x, y)) return;
    const tmp = join(parent, tmpName(y.name));
    removePath(tmp);
    // A new inode: it has only what it inherits from the directory. Its attributes are queued for p
    // and set once it is in place (the writer's next batch), with its final mode.
    const acls = { clear: inside, later: true };
    const e = this.#withXattrs(y, p, acls);
    if (y.type === 'file') {
      // A large file changed in place or appended to: copy the old one and write only what changed.
      const patched = x?.type === 'file' ? patchFileEntry(this.#o.store, p, x, e, tmp, this.#ctx) : undefined;
      this.stats.bytesWritten += patched ?? writeFileEntry(this.#o.store, e, tmp, this.#ctx);
    } else if (y.type === 'symlink') {
      createSymlinkEntry(e, tmp, this.#ctx);
    } else {
      const warning = createSpecialEntry(e, tmp, this.#ctx);
      // Skipped, it would fail the verification after the apply on every attempt: say why now.
      if (warning) throw new FerryError('IO', `cannot make ${pathToText(p)} in the replica: ${warning.replace(/; skipped$/, '')}; a replica without it can never match the snapshot`);
    }
    // rename(2) replaces a file or symlink atomically; a directory in the way must go first.
    if (lstatOrNull(p)?.isDirectory()) removePath(p);
    try {
      renameSync(tmp, p);
    } catch (err) {
      throw wrapIoError(err, `renaming into place ${p}`);
    }
    const waits = e !== y || (y.type === 'symlink' && y.xattrs.length > 0);
    if (waits) this.#queueXattrs(y, p, acls);
    if (y.type === 'file') {
      this.#noteReplaced(rel);
      if (waits) this.#waiting.set(p.toString('latin1'), { p, rel, e: y });
      else this.#written(p, rel, y);
    }
  }

  /**
   * A large file changed in a few places, patched in its own inode (in-place.ts): only the chunks
   * that differ are written, journaled first. False when it is not one to patch so (written whole).
   */
  #patchedInPlace(p: Buffer, rel: string, x: TreeEntry, y: TreeEntry): boolean {
    const acls = { had: x.xattrs, clear: false };
    const e = this.#withXattrs(y, p, { ...acls, later: true });
    const patched = patchInPlace(this.#o.store, p, x, e, this.#ctx, (r) => this.#o.inPlace!(rel, r));
    if (patched === undefined) return false;
    this.stats.bytesWritten += patched;
    this.#noteReplaced(rel);
    if (e !== y) {
      this.#queueXattrs(y, p, acls);
      this.#waiting.set(p.toString('latin1'), { p, rel, e: y });
    } else this.#written(p, rel, y);
    return true;
  }

  /** A staged subtree was moved to `p`: give it its metadata and take in what it holds. */
  #took(p: Buffer, rel: string, e: TreeEntry, s: StagedTree): void {
    // it was made in the staging area, inside the member root: it has what the root's default ACL gave
    setEntryMeta(p, this.#withXattrs(e, p, { clear: this.#rootInside() }), this.#ctx);
    for (const k of Object.keys(this.stats) as Array<keyof ApplyStats>) this.stats[k] += s.stats[k];
    for (const [dir, name, f] of s.written) {
      const d = dir ? `${rel}/${dir}` : rel;
      this.#noteReplaced(`${d}/${name}`);
      this.#o.onFileWritten?.(d, name, f);
    }
    for (const [path, msg] of s.warnings) this.#o.onWarning?.(path, msg);
  }

  /**
   * Whether a new directory is walked here, its subdirectories each handed
   * over in turn, rather than handed over whole: when it sits within
   * SPLIT_DEPTH levels of the member root and has subdirectories. One large
   * directory near the root (a home, a project) would otherwise keep one
   * worker busy long after the other ran out of work.
   */
  #splitHere(rel: string, tree: ObjectId): boolean {
    let depth = 1;
    for (let i = rel.indexOf('/'); i >= 0; i = rel.indexOf('/', i + 1)) depth++;
    if (depth >= SPLIT_DEPTH) return false;
    return dirEntries(this.#o.store, tree).some((e) => e.type === 'dir');
  }

  #noteReplaced(rel: string): void {
    if (this.#relinks) this.#replaced.add(rel);
  }

  /** Tell onFileWritten what lstat sees of a file just put in place. */
  #written(p: Buffer, rel: string, e: TreeEntry): void {
    // Its attributes are left unknown (the verification reads them): an ACL a directory's default
    // gave it, which nobody here knew of, must show.
    if (!this.#o.onFileWritten) return;
    const st = lstatSync(p, { bigint: true });
    const slash = rel.lastIndexOf('/');
    this.#o.onFileWritten(slash < 0 ? '' : rel.slice(0, slash), slash < 0 ? rel : rel.slice(slash + 1), { size: Number(st.size), mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, ino: st.ino, chunks: e.chunks ?? [] });
  }

  /** Wait for the subtrees handed over and take in what they did (their hard links are made in finish). */
  async collect(): Promise<void> {
    const results = await Promise.allSettled(this.#handedOver.splice(0));
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    for (const r of results as Array<PromiseFulfilledResult<SubtreeResult>>) {
      const x = r.value;
      for (const k of Object.keys(this.stats) as Array<keyof ApplyStats>) this.stats[k] += x.stats[k];
      for (const rel of x.replaced) this.#noteReplaced(rel);
      this.#links.push(...x.links);
      for (const [dir, name, f] of x.written) this.#o.onFileWritten?.(dir, name, f);
      for (const [path, msg] of x.warnings) this.#o.onWarning?.(path, msg);
    }
  }

  /** What this applier did, for the one that handed it a subtree (SubtreeResult). */
  result(): Omit<SubtreeResult, 'written' | 'warnings'> {
    return { stats: this.stats, replaced: [...this.#replaced], links: this.#links };
  }

  /** Hard links last, once their targets exist; and links whose target file was replaced are remade. */
  finish(bRoot: ObjectId): void {
    if (this.#replaced.size > 0) this.#collectStaleLinks(bRoot);
    const touched = new Map<string, { parent: Buffer; meta?: TreeEntry }>();
    for (const l of this.#links) {
      const target = join(this.#root, l.e.target!);
      // link(2) follows symlinks in the target's directories: a target reached through a symlink
      // (`s -> /etc`, target `s/passwd`) would link a file from outside the replica into it.
      const why = linkTargetProblem(this.#root, l.e.target!);
      if (why) {
        this.#o.onWarning?.(pathToText(l.path), `hard link to ${pathToText(l.e.target!)} not made: ${why}`);
        continue;
      }
      const tmp = join(l.parent, tmpName(l.e.name));
      removePath(tmp);
      try {
        linkSync(target, tmp);
        if (lstatOrNull(l.path)?.isDirectory()) removePath(l.path);
        renameSync(tmp, l.path);
      } catch (err) {
        this.#o.onWarning?.(pathToText(l.path), `hard link to ${pathToText(l.e.target!)} not made: ${(err as Error).message}`);
        continue;
      }
      touched.set(l.parent.toString('latin1'), { parent: l.parent, meta: l.parentMeta });
    }
    // Linking changed those directories' mtimes.
    for (const t of touched.values()) if (t.meta) setEntryMeta(t.parent, t.meta, this.#ctx);
  }

  #collectStaleLinks(bRoot: ObjectId): void {
    const queued = new Set(this.#links.map((l) => l.rel));
    // only subtrees that hold a link are read (treeHasHardlinks remembers: an update reads what is new)
    const walk = (tree: ObjectId, dir: Buffer, rel: string, meta?: TreeEntry): void => {
      if (!treeHasHardlinks(this.#o.store, tree)) return;
      for (const e of dirEntries(this.#o.store, tree)) {
        const r = rel ? `${rel}/${e.name.toString('latin1')}` : e.name.toString('latin1');
        if (e.type === 'dir') walk(e.tree!, join(dir, e.name), r, e);
        else if (e.type === 'hardlink' && this.#replaced.has(e.target!.toString('latin1')) && !queued.has(r)) this.#links.push({ path: join(dir, e.name), rel: r, e, parent: dir, parentMeta: meta });
      }
    };
    walk(bRoot, this.#root, '');
  }
}

/** Bring the tree replica at `root` from tree `from` (null: empty) to tree `to`. */
export async function applyTree(root: string, from: ObjectId | null, to: ObjectId, o: ApplyOptions): Promise<ApplyStats> {
  const r = Buffer.from(root);
  const st = lstatOrNull(r);
  if (st && !st.isDirectory()) throw new FerryError('MEMBER_INVALID', `replica ${root} is not a directory (a symlink or file is in the way); move it away`);
  if (!st) mkdirSync(r, { recursive: true });
  const inside = rootInherits(r, true);
  // (remembered per tree: what finish reads again, an update's new trees only)
  const applier = new TreeApplier(r, { ...o, relinks: o.relinks ?? treeHasHardlinks(o.store, to) }, () => inside);
  try {
    applier.dir(r, '', from, to, undefined, { inside, clear: false });
    applier.flushXattrs();
  } catch (err) {
    // never leave a subtree being written behind a failed walk
    await applier.collect().catch(() => {});
    throw err;
  }
  await applier.collect();
  applier.finish(to);
  return applier.stats;
}

/**
 * Apply new subtree `tree` at `dir` (just created, empty) below member root `root`: the work an
 * apply-pool worker does for ApplyOptions.subtrees. Hard links are not made here but returned, for
 * the member's applier to make once every subtree is in place.
 */
export function applySubtree(root: Buffer, dir: Buffer, rel: string, tree: ObjectId, meta: TreeEntry | undefined, o: ApplyOptions): Omit<SubtreeResult, 'written' | 'warnings'> {
  // `dir` was just made in a directory whose default ACL it took; staging makes it inside the root
  const rootInside = () => rootInherits(root, false);
  const inside = o.inheritsDefaultAcl ?? rootInside();
  const applier = new TreeApplier(root, o, rootInside);
  applier.dir(dir, rel, null, tree, meta, { inside, clear: inside });
  applier.flushXattrs();
  return applier.result();
}
