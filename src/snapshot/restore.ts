// Restore: materialize a snapshot's member (or a path inside it) at a
// target, exactly: contents, modes, ownership (when permitted), mtimes,
// symlinks (created, never followed), hard links, empty files, FIFOs,
// devices (as root) and Unix sockets, holes (in files and images), and
// extended attributes with POSIX ACLs. Every object is verified against its
// hash as it is read.
// Restore writes only below the target: entry names are validated by the
// decoder (no '/', no '..'), and the target itself is created fresh or must
// be empty unless the caller forces it.
import {
  closeSync, existsSync, fsyncSync, ftruncateSync, linkSync, lstatSync, mkdirSync, openSync, readdirSync, rmSync, symlinkSync, unlinkSync, utimesSync, writeSync, constants,
} from 'node:fs';
import { dirname } from 'node:path';
import { FerryError, wrapIoError } from '../core/errors.ts';
import type { ObjectId } from '../core/ids.ts';
import type { ObjectReader } from '../store/types.ts';
import { decodeBlockList, decodeImage } from './format.ts';
import { dirEntries } from './dir-pages.ts';
import type { TreeEntry } from './model.ts';
import { pathToText, textToPath } from './path-text.ts';
import { XATTR_TOOLS_HINT, XattrWriter, hasDefaultAcl, modeWithoutAcl, readXattrsSync, xattrToolsPresent } from './xattrs.ts';
import { createSpecialEntry, setEntryMeta, timeArg, writeFileEntry, writeSparse, type MetaContext } from './materialize.ts';

export interface RestoreWarning {
  path: string;
  message: string;
}

export interface RestoreStats {
  dirs: number;
  files: number;
  symlinks: number;
  hardlinks: number;
  specials: number;
  bytes: number;
}

export interface RestoreOptions {
  store: ObjectReader;
  /** restore into a non-empty target, replacing entries of the same name */
  force?: boolean;
  onWarning?: (w: RestoreWarning) => void;
  /** skip chown even as root */
  noOwner?: boolean;
}

const SLASH = Buffer.from('/');
const joinBuf = (a: Buffer, b: Buffer) => Buffer.concat([a, SLASH, b]);

const nsToSeconds = timeArg;

/** Where a path leads below a root tree: the entry (or the root itself), and its member-relative path in bytes. */
export interface FoundPath {
  entry: TreeEntry | { type: 'root'; tree: ObjectId };
  rel: Buffer;
}

function walkPath(store: ObjectReader, root: ObjectId, parts: Buffer[]): FoundPath['entry'] {
  let tree = root;
  let entry: TreeEntry | undefined;
  const shown = (n: number) => parts.slice(0, n).map(pathToText).join('/');
  for (let i = 0; i < parts.length; i++) {
    entry = dirEntries(store, tree).find((e) => e.name.equals(parts[i]));
    if (!entry) throw new FerryError('PATH_NOT_IN_SNAPSHOT', `${shown(i + 1)} is not in the snapshot (names that are not UTF-8 are written as \\xHH, as \`ferry snapshot diff\` shows them)`);
    if (i < parts.length - 1) {
      if (entry.type !== 'dir' || !entry.tree) throw new FerryError('PATH_NOT_IN_SNAPSHOT', `${shown(i + 1)} is not a directory in the snapshot`);
      tree = entry.tree;
    }
  }
  return entry ?? { type: 'root', tree: root };
}

/**
 * Find the entry at `subpath` (slash-separated, member-relative) below a root
 * tree. Bytes are taken as they are; text is read as path-text.ts spells
 * paths (`\xHH` for a byte that is not UTF-8, `\\` for a backslash), and,
 * when that names nothing and the text has a backslash, as it is.
 */
export function findPath(store: ObjectReader, root: ObjectId, subpath: string | Buffer): FoundPath {
  const tries = typeof subpath !== 'string' ? [subpath] : subpath.includes('\\') ? [textToPath(subpath), Buffer.from(subpath)] : [Buffer.from(subpath)];
  let notFound: unknown;
  for (const bytes of tries) {
    const parts: Buffer[] = [];
    for (let start = 0; start <= bytes.length; ) {
      let end = bytes.indexOf(0x2f, start);
      if (end < 0) end = bytes.length;
      const part = bytes.subarray(start, end);
      if (part.length > 0 && !(part.length === 1 && part[0] === 0x2e)) parts.push(part);
      start = end + 1;
    }
    if (parts.some((p) => p.length === 2 && p[0] === 0x2e && p[1] === 0x2e)) throw new FerryError('USAGE', `--path must not contain '..': ${pathToText(bytes)}`);
    try {
      return { entry: walkPath(store, root, parts), rel: Buffer.concat(parts.flatMap((p, i) => (i ? [SLASH, p] : [p]))) };
    } catch (err) {
      if (!(err instanceof FerryError && err.code === 'PATH_NOT_IN_SNAPSHOT')) throw err;
      notFound ??= err;
    }
  }
  throw notFound;
}

/**
 * Refuse a target that is in the way: for a directory, anything but an empty
 * directory (unless force); for a file or image, anything that exists (unless
 * force; a block device is written in place). Callers restoring several
 * members check every target before writing any.
 */
export function prepareTarget(target: string, force: boolean, isDir: boolean): void {
  if (!existsSync(target)) return;
  const st = lstatSync(target);
  if (isDir) {
    if (!st.isDirectory()) throw new FerryError('TARGET_NOT_EMPTY', `restore target ${target} exists and is not a directory; choose another target`);
    if (readdirSync(target).length > 0 && !force) throw new FerryError('TARGET_NOT_EMPTY', `restore target ${target} is not empty; choose an empty or new directory, or pass --force to restore over it`);
  } else if (!force && !st.isBlockDevice()) {
    throw new FerryError('TARGET_NOT_EMPTY', `restore target ${target} exists; choose a new path, or pass --force to overwrite it`);
  }
}

export class TreeRestorer {
  readonly stats: RestoreStats = { dirs: 0, files: 0, symlinks: 0, hardlinks: 0, specials: 0, bytes: 0 };
  readonly #o: RestoreOptions;
  readonly #canChown: boolean;
  readonly #ctx: MetaContext;
  readonly #deferredLinks: Array<{ path: Buffer; target: Buffer; entry: TreeEntry }> = [];
  /** member-relative path -> restored path, for hard links */
  readonly #restored = new Map<string, Buffer>();
  readonly #rootRel: string;
  readonly #memberRoot: ObjectId;
  /** metadata of restored directories, to re-apply mtimes after hard links are made in them */
  readonly #dirMeta = new Map<string, TreeEntry>();
  /** extended attributes and ACLs, set in batches (undefined: the tools are missing) */
  readonly #xattrs: XattrWriter | undefined;
  /** entries whose attributes could not be restored for want of the tools */
  #xattrsLeftOut = 0;
  #ownerWarned = false;

  constructor(o: RestoreOptions, memberRoot: ObjectId, rootRel: string) {
    this.#o = o;
    this.#canChown = !o.noOwner && process.getuid?.() === 0;
    this.#ctx = {
      canChown: this.#canChown,
      onOwnerError: (p, err) => {
        if (this.#ownerWarned) return;
        this.#ownerWarned = true;
        this.warn(p, `ownership not restored: ${(err as Error).message}`);
      },
    };
    this.#memberRoot = memberRoot;
    this.#rootRel = rootRel;
    this.#xattrs = xattrToolsPresent() ? new XattrWriter((p, message) => this.warn(p, message)) : undefined;
  }

  /**
   * The entry to write at `p`, its attributes queued (set once its batch is: until then it has only
   * its owner's rights). `inherits`: p's directory may have a default ACL, which p inherits; ACLs
   * the entry lacks are then removed. Without the tools, the attributes are left out (counted) and
   * the group bits of a file with an ACL narrowed to the owning group's own rights.
   */
  #withXattrs(e: TreeEntry, p: Buffer, inherits: boolean): TreeEntry {
    const made = this.#narrowed(e, inherits);
    this.#queueXattrs(e, p, inherits);
    return made;
  }

  /** The entry as it is made: with its owner's rights only while its attributes wait (see #withXattrs). */
  #narrowed(e: TreeEntry, inherits: boolean): TreeEntry {
    if (e.type === 'symlink') return e;
    if (!this.#xattrs) {
      if (e.xattrs.length === 0) return e;
      this.#xattrsLeftOut++;
      return { ...e, mode: modeWithoutAcl(e.mode, e.xattrs) };
    }
    return e.xattrs.length > 0 || inherits ? { ...e, mode: e.mode & 0o700 } : e;
  }

  /** Queue the attributes of `e`, made at `p`. */
  #queueXattrs(e: TreeEntry, p: Buffer, inherits: boolean): void {
    const isLink = e.type === 'symlink';
    this.#xattrs?.set(p, e.xattrs, { clearAcls: inherits && !isLink, isDir: e.type === 'dir', mode: isLink ? undefined : e.mode });
  }

  /** Whether entries made in directory `dir` (which exists) inherit a default ACL. */
  inheritsIn(dir: Buffer): boolean {
    return this.#xattrs !== undefined && hasDefaultAcl(readXattrsSync([dir])[0].xattrs);
  }

  warn(path: Buffer | string, message: string): void {
    this.#o.onWarning?.({ path: typeof path === 'string' ? path : pathToText(path), message });
  }

  /**
   * Restore the tree `id` into directory `dir` (created if missing). `inherits`: dir's parent may have
   * a default ACL (a directory made in it takes it as its own); 'ask': find out from dir itself.
   */
  restoreDir(id: ObjectId, dir: Buffer, rel: string, meta: TreeEntry | undefined, inherits: boolean | 'ask'): void {
    let existed = false;
    try {
      // Private until its metadata is set last; the top directory (no recorded metadata) gets the umask's default.
      mkdirSync(dir, meta ? { mode: 0o700 } : {});
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw wrapIoError(err, `creating ${dir}`);
      existed = lstatSync(dir).isDirectory();
      if (!existed) {
        rmSync(dir, { force: true });
        mkdirSync(dir, { mode: 0o700 });
      }
    }
    // what entries made in dir inherit: its own default ACL (one found here may be anything: assume one)
    const inside = inherits === 'ask' ? this.inheritsIn(dir) : inherits || (existed && this.#xattrs !== undefined);
    this.stats.dirs++;
    for (const e of dirEntries(this.#o.store, id)) {
      const p = joinBuf(dir, e.name);
      const r = rel ? `${rel}/${e.name.toString('latin1')}` : e.name.toString('latin1');
      this.restoreEntry(e, p, r, inside);
    }
    if (meta) {
      this.#setMeta(dir, this.#withXattrs(meta, dir, inherits === true));
      this.#dirMeta.set(dir.toString('latin1'), meta);
      this.#xattrs?.flushIfFull();
    }
  }

  /** Restore entry `e` at `p`; `inherits`: p's directory may have a default ACL. */
  restoreEntry(e: TreeEntry, p: Buffer, rel: string, inherits: boolean): void {
    if (this.#o.force) this.#clearForReplace(p, e.type === 'dir');
    switch (e.type) {
      case 'dir':
        this.restoreDir(e.tree!, p, rel, e, inherits);
        return;
      case 'file':
        this.#restoreFile(e, p, inherits);
        this.#restored.set(rel, p);
        break;
      case 'symlink':
        try {
          symlinkSync(e.target!, p);
        } catch (err) {
          throw wrapIoError(err, `creating symlink ${p}`);
        }
        this.stats.symlinks++;
        this.#setMeta(p, this.#withXattrs(e, p, inherits));
        break;
      case 'hardlink':
        this.#deferredLinks.push({ path: p, target: e.target!, entry: e });
        return;
      case 'fifo':
      case 'chardev':
      case 'blockdev':
      case 'socket': {
        const warning = createSpecialEntry(this.#narrowed(e, inherits), p, this.#ctx);
        if (warning) this.warn(p, warning);
        else {
          this.stats.specials++;
          this.#queueXattrs(e, p, inherits);
        }
        break;
      }
    }
    this.#xattrs?.flushIfFull();
  }

  #clearForReplace(p: Buffer, wantDir: boolean): void {
    let st;
    try {
      st = lstatSync(p);
    } catch {
      return;
    }
    if (wantDir && st.isDirectory()) return;
    rmSync(p, { recursive: true, force: true });
  }

  #restoreFile(e: TreeEntry, p: Buffer, inherits: boolean): void {
    const written = writeFileEntry(this.#o.store, this.#withXattrs(e, p, inherits), p, this.#ctx);
    this.stats.files++;
    this.stats.bytes += written;
  }

  #setMeta(p: Buffer, e: TreeEntry): void {
    setEntryMeta(p, e, this.#ctx);
  }

  /** Hard links last: their first link must exist. A link to a file outside the restored subtree becomes a copy. */
  finish(): void {
    for (const l of this.#deferredLinks) {
      const targetRel = l.target.toString('latin1');
      const existing = this.#restored.get(this.#relativeToRestore(targetRel));
      if (existing) {
        try {
          linkSync(existing, l.path);
          this.stats.hardlinks++;
          continue;
        } catch (err) {
          throw wrapIoError(err, `linking ${l.path} to ${existing}`);
        }
      }
      // The first link lies outside what is being restored: restore its content as a file.
      let first: FoundPath['entry'];
      try {
        first = findPath(this.#o.store, this.#memberRoot, l.target).entry;
      } catch {
        this.warn(l.path, `hard link target ${pathToText(l.target)} is missing from the snapshot; skipped`);
        continue;
      }
      if (first.type !== 'file') {
        this.warn(l.path, `hard link target ${pathToText(l.target)} is not a file in the snapshot; skipped`);
        continue;
      }
      // (its directory's default ACL, if any, is not known here: assume one)
      this.#restoreFile({ ...first, name: l.entry.name }, l.path, true);
    }
    // Making links changed their directories' mtimes: put them back.
    const parents = new Set(this.#deferredLinks.map((l) => l.path.subarray(0, l.path.lastIndexOf(0x2f)).toString('latin1')));
    for (const p of parents) {
      const meta = this.#dirMeta.get(p);
      if (meta) {
        const t = nsToSeconds(meta.mtimeNs);
        utimesSync(Buffer.from(p, 'latin1'), t, t);
      }
    }
    // attributes last (they change no mtime), then each entry's final mode
    this.#xattrs?.flush();
    if (this.#xattrsLeftOut > 0) {
      this.warn('.', `extended attributes and ACLs of ${this.#xattrsLeftOut} entr${this.#xattrsLeftOut === 1 ? 'y were' : 'ies were'} not restored: setfattr is not installed here; ${XATTR_TOOLS_HINT}. Files with an ACL got their owning group's own rights as group bits (never the ACL's mask)`);
    }
  }

  #relativeToRestore(memberRel: string): string {
    if (!this.#rootRel) return memberRel;
    const prefix = this.#rootRel + '/';
    return memberRel.startsWith(prefix) ? memberRel.slice(prefix.length) : `\0outside\0${memberRel}`;
  }
}

/** Restore a tree member (or `subpath` inside it) to `target`. */
export function restoreTree(root: ObjectId, subpath: string | Buffer, target: string, o: RestoreOptions): RestoreStats {
  const { entry: found, rel } = findPath(o.store, root, subpath);
  const rootRel = rel.toString('latin1');
  const restorer = new TreeRestorer(o, root, rootRel);
  const t = Buffer.from(target);
  if (found.type === 'root' || found.type === 'dir') {
    prepareTarget(target, o.force ?? false, true);
    mkdirSync(dirname(target), { recursive: true });
    const tree = found.type === 'root' ? found.tree : found.tree!;
    if (found.type === 'dir') restorer.restoreDir(tree, t, '', found, restorer.inheritsIn(Buffer.from(dirname(target))));
    else restorer.restoreDir(tree, t, '', undefined, 'ask');
  } else {
    prepareTarget(target, o.force ?? false, false);
    mkdirSync(dirname(target), { recursive: true });
    if (o.force && existsSync(target)) unlinkSync(target);
    restorer.restoreEntry(found, t, rootRel.split('/').pop() ?? '', restorer.inheritsIn(Buffer.from(dirname(target))));
  }
  restorer.finish();
  return restorer.stats;
}

/** Restore an image member to a file (created sparse) or an existing block device (holes written as zeros). */
export function restoreImage(root: ObjectId, target: string, o: RestoreOptions): RestoreStats {
  prepareTarget(target, o.force ?? false, false);
  const img = decodeImage(o.store.get(root));
  const isDevice = existsSync(target) && lstatSync(target).isBlockDevice();
  if (!isDevice) mkdirSync(dirname(target), { recursive: true });
  let fd: number;
  try {
    fd = openSync(target, isDevice ? constants.O_WRONLY : constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o600);
  } catch (err) {
    throw wrapIoError(err, `opening restore target ${target}`, { writing: true });
  }
  let bytes = 0;
  try {
    if (!isDevice) ftruncateSync(fd, img.size);
    const zero = isDevice ? Buffer.alloc(img.blockSize) : undefined;
    let block = 0;
    for (const lid of img.lists) {
      const list = decodeBlockList(o.store.get(lid));
      for (const b of list.blocks) {
        const offset = block * img.blockSize;
        const len = Math.min(img.blockSize, img.size - offset);
        const data = b ? o.store.get(b) : zero?.subarray(0, len);
        if (data) {
          if (data.length !== len) throw new FerryError('OBJECT_CORRUPT', `image block ${block} is ${data.length} bytes, expected ${len}`);
          if (isDevice) for (let off = 0; off < len; ) off += writeSync(fd, data, off, len - off, offset + off);
          else writeSparse(fd, data, offset); // a new file: zeros inside a block stay holes too
          bytes += len;
        }
        block++;
      }
    }
    fsyncSync(fd);
  } catch (err) {
    throw wrapIoError(err, `writing image to ${target}`);
  } finally {
    closeSync(fd);
  }
  return { dirs: 0, files: 1, symlinks: 0, hardlinks: 0, specials: 0, bytes };
}
