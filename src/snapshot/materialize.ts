// Writing snapshot entries to a filesystem: file contents from verified
// chunks, metadata (mode, owner, mtime), symlinks, special files (FIFOs,
// devices, Unix sockets). Shared by
// restore (into an empty target) and apply (into a live replica, beside and
// renamed). Never follows a symlink: files are opened with O_NOFOLLOW and
// link metadata is set with the l* calls.
import {
  chmodSync, closeSync, copyFileSync, fchmodSync, ftruncateSync, lstatSync, fchownSync, futimesSync, lchownSync, lutimesSync, openSync, readSync, renameSync, rmSync, symlinkSync, utimesSync, chownSync, writeSync, constants,
} from 'node:fs';
import { spawnSync, type StdioOptions } from 'node:child_process';
import { createServer } from 'node:net';
import { FerryError, wrapIoError } from '../core/errors.ts';
import type { ObjectId } from '../core/ids.ts';
import type { ObjectReader } from '../store/types.ts';
import type { TreeEntry } from './model.ts';

/**
 * Seconds for fs.utimes from a nanosecond time, as a decimal string. Node
 * passes times as a double of seconds, which near today's dates resolves
 * about 240 ns; aiming at the middle of the microsecond makes the kernel
 * store exactly the microsecond that capture recorded (capture keeps mtimes
 * to the microsecond, floored: toMicros). A string, because Node takes a
 * negative number (a time before 1970) for 'now', but passes a numeric
 * string through as it is.
 */
export function timeArg(ns: bigint): string {
  const below = ((ns % 1000n) + 1000n) % 1000n;
  const mid = ns - below + 500n;
  const abs = mid < 0n ? -mid : mid;
  return `${mid < 0n ? '-' : ''}${abs / 1_000_000_000n}.${(abs % 1_000_000_000n).toString().padStart(9, '0')}`;
}

export interface MetaContext {
  canChown: boolean;
  onOwnerError?: (path: Buffer, err: unknown) => void;
}

export function defaultMetaContext(noOwner = false): MetaContext {
  return { canChown: !noOwner && process.getuid?.() === 0 };
}

/**
 * Holes: a block of this size, aligned to its offset in the file, that is
 * all zeros is not written into a new file, which leaves a hole there (like
 * `cp --sparse=auto` and `rsync -S`): the bytes read the same, and a sparse
 * file (a VM disk, a database, lastlog) does not come back fully allocated.
 * Node has no SEEK_HOLE, so capture reads holes as zeros; the format keeps
 * no holes for files, and none is needed.
 */
export const HOLE_BLOCK = 4096;
const ZEROS = Buffer.alloc(HOLE_BLOCK);

function zeroRange(b: Buffer, from: number, to: number): boolean {
  if (b[from] !== 0 || b[to - 1] !== 0) return false;
  return b.compare(ZEROS, 0, to - from, from, to) === 0;
}

/** Write data[from, to) at file offset `at`, all of it. */
export function writeAll(fd: number, data: Buffer, from: number, to: number, at: number): void {
  for (let off = from; off < to; ) off += writeSync(fd, data, off, to - off, at + off - from);
}

/** Write `data` at file offset `at` of a new file, leaving its all-zero HOLE_BLOCKs unwritten (holes); true when all were. */
export function writeSparse(fd: number, data: Buffer, at: number): boolean {
  let run = -1;
  let wrote = false;
  for (let i = 0; i < data.length; ) {
    const end = Math.min(data.length, i + HOLE_BLOCK - ((at + i) % HOLE_BLOCK));
    if (!zeroRange(data, i, end)) {
      if (run < 0) run = i;
    } else if (run >= 0) {
      writeAll(fd, data, run, i, at + run);
      wrote = true;
      run = -1;
    }
    i = end;
  }
  if (run >= 0) writeAll(fd, data, run, data.length, at + run);
  return !wrote && run < 0;
}

/**
 * Chunks known to be all zeros, with their length: a long run of zeros is cut
 * into many chunks of one id (FastCDC), which need not be read and
 * decompressed again. An id names its content, so this holds whatever store
 * it came from.
 */
const zeroChunks = new Map<ObjectId, number>();
const ZERO_CHUNKS_KEPT = 64;

/** Write chunk `id` at `at` of a new file (its zero blocks left as holes); returns its length. */
function writeChunkSparse(store: ObjectReader, fd: number, id: ObjectId, at: number): number {
  const known = zeroChunks.get(id);
  if (known !== undefined) return known;
  const data = store.get(id);
  if (writeSparse(fd, data, at) && data.length > 0 && zeroChunks.size < ZERO_CHUNKS_KEPT) zeroChunks.set(id, data.length);
  return data.length;
}

/** Write a file's content from its chunks into a new file at `p` (truncating; zeros left as holes), and set its metadata. */
export function writeFileEntry(store: ObjectReader, e: TreeEntry, p: Buffer, ctx: MetaContext): number {
  let fd: number;
  try {
    fd = openSync(p, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o600);
  } catch (err) {
    throw wrapIoError(err, `creating ${p}`, { writing: true });
  }
  try {
    let written = 0;
    for (const c of e.chunks ?? []) written += writeChunkSparse(store, fd, c, written);
    if (written !== e.size) throw new FerryError('OBJECT_CORRUPT', `file ${p} came to ${written} bytes but the snapshot says ${e.size}`);
    // zeros at the end were not written: the size makes them a hole
    ftruncateSync(fd, e.size);
    setOpenFileMeta(fd, p, e, ctx);
    return written;
  } catch (err) {
    throw wrapIoError(err, `writing ${p}`);
  } finally {
    closeSync(fd);
  }
}

export function setOpenFileMeta(fd: number, p: Buffer, e: TreeEntry, ctx: MetaContext): void {
  if (ctx.canChown) {
    try {
      fchownSync(fd, e.uid, e.gid);
    } catch (err) {
      ctx.onOwnerError?.(p, err);
    }
  }
  fchmodSync(fd, e.mode);
  const t = timeArg(e.mtimeNs);
  futimesSync(fd, t, t);
}

/** Files smaller than this are rewritten whole: a copy and a patch only pays on large ones. */
export const PATCH_MIN_BYTES = 4 * 1024 * 1024;

/** What a patch of a file holding entry `from` into entry `to` writes: each chunk of `to` at its offset, and the ranges it keeps. */
export interface PatchPlan {
  write: Array<{ id: ObjectId; at: number; len: number }>;
  keep: Array<[at: number, len: number]>;
  /** `to`'s chunks with their offsets, in order */
  chunks: Array<{ id: ObjectId; at: number; len: number }>;
}

/**
 * The plan to bring a file holding `from` to `to` by writing only the chunks of `to` that are not
 * `from`'s at the same offset; undefined when a patch does not pay (a small file, chunk lengths
 * unknown, or less than half of `to` kept).
 */
export function patchPlan(store: ObjectReader, from: TreeEntry, to: TreeEntry): PatchPlan | undefined {
  if (to.size < PATCH_MIN_BYTES || !from.chunks?.length || !to.chunks?.length) return undefined;
  const oldAt = new Map<number, string>();
  let at = 0;
  for (const c of from.chunks) {
    const len = store.info(c)?.rawLength;
    if (len === undefined) return undefined;
    oldAt.set(at, c);
    at += len;
  }
  const plan: PatchPlan = { write: [], keep: [], chunks: [] };
  at = 0;
  for (const c of to.chunks) {
    const len = store.info(c)?.rawLength;
    if (len === undefined) return undefined;
    plan.chunks.push({ id: c, at, len });
    if (oldAt.get(at) === c && at + len <= from.size) {
      const last = plan.keep[plan.keep.length - 1];
      if (last && last[0] + last[1] === at) last[1] += len;
      else plan.keep.push([at, len]);
    } else plan.write.push({ id: c, at, len });
    at += len;
  }
  const kept = plan.keep.reduce((n, [, len]) => n + len, 0);
  if (at !== to.size || kept < to.size / 2) return undefined;
  return plan;
}

/**
 * Write file entry `to` at `p` from a file at `basis` that holds entry `from`:
 * copy the basis (in the kernel: copy_file_range, or a reflink where the
 * filesystem has them), then write only the chunks that differ from the
 * basis's at the same offset, and cut to size. An in-place rewrite of a
 * region or an append to a large file so costs a copy plus what changed,
 * not a decompression of every chunk. A basis with holes (fewer blocks
 * allocated than its size needs, as `cp --sparse=auto` decides) is copied
 * here instead, range by range, leaving its zeros as holes: the kernel's
 * copy would allocate them. Returns the bytes written from the store, or
 * undefined (nothing done) when the basis is missing or too little of it
 * lines up; the caller then writes the file whole. The caller checks the
 * result (ferry's apply captures the replica afterwards).
 */
export function patchFileEntry(store: ObjectReader, basis: Buffer, from: TreeEntry, to: TreeEntry, p: Buffer, ctx: MetaContext): number | undefined {
  const plan = patchPlan(store, from, to);
  if (!plan) return undefined;
  const { write, keep } = plan;
  let sparse: boolean;
  try {
    // Only a regular file the size of `from` is a basis (copyFile would follow a symlink).
    const st = lstatSync(basis);
    if (!st.isFile() || st.size !== from.size) return undefined;
    sparse = st.blocks * 512 < st.size;
    if (!sparse) copyFileSync(basis, p, constants.COPYFILE_FICLONE);
  } catch {
    return undefined;
  }
  let fd: number;
  try {
    fd = openSync(p, constants.O_WRONLY | constants.O_NOFOLLOW | (sparse ? constants.O_CREAT | constants.O_TRUNC : 0), 0o600);
  } catch (err) {
    throw wrapIoError(err, `opening ${p}`, { writing: true });
  }
  try {
    if (sparse && !copyRangesSparse(basis, fd, keep)) return undefined;
    let written = 0;
    for (const w of write) {
      // into a fresh file, zeros stay holes; over a copy, every byte must be written
      if (sparse) written += writeChunkSparse(store, fd, w.id, w.at);
      else {
        const data = store.get(w.id);
        writeAll(fd, data, 0, data.length, w.at);
        written += data.length;
      }
    }
    ftruncateSync(fd, to.size);
    setOpenFileMeta(fd, p, to, ctx);
    return written;
  } catch (err) {
    throw wrapIoError(err, `writing ${p}`);
  } finally {
    closeSync(fd);
  }
}

/** Copy ranges of file `from` to the same offsets of the new file `fd`, zeros left as holes; false if `from` cannot be read. */
function copyRangesSparse(from: Buffer, fd: number, ranges: Array<[at: number, len: number]>): boolean {
  return withOpen(from, constants.O_RDONLY | constants.O_NOFOLLOW, (src) => {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (const [start, len] of ranges) {
      for (let done = 0; done < len; ) {
        const n = readSync(src, buf, 0, Math.min(buf.length, len - done), start + done);
        if (n <= 0) return false;
        writeSparse(fd, buf.subarray(0, n), start + done);
        done += n;
      }
    }
    return true;
  });
}

/** Set mode, owner and mtime of an existing path (lchown/lutimes for symlinks). */
export function setEntryMeta(p: Buffer, e: TreeEntry, ctx: MetaContext): void {
  const isLink = e.type === 'symlink';
  if (ctx.canChown) {
    try {
      if (isLink) lchownSync(p, e.uid, e.gid);
      else chownSync(p, e.uid, e.gid);
    } catch (err) {
      ctx.onOwnerError?.(p, err);
    }
  }
  const t = timeArg(e.mtimeNs);
  try {
    if (isLink) {
      lutimesSync(p, t, t);
      return;
    }
    chmodSync(p, e.mode);
    utimesSync(p, t, t);
  } catch (err) {
    throw wrapIoError(err, `setting the mode and mtime of ${p}`);
  }
}

export function createSymlinkEntry(e: TreeEntry, p: Buffer, ctx: MetaContext): void {
  try {
    symlinkSync(e.target!, p);
  } catch (err) {
    throw wrapIoError(err, `creating symlink ${p}`);
  }
  setEntryMeta(p, e, ctx);
}

export function deviceNumbers(rdev: number): { major: number; minor: number } {
  return { major: ((rdev >> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff), minor: (rdev & 0xff) | ((rdev >> 12) & ~0xff) };
}

let specialSeq = 0;

/** A temporary name in the directory of `p` (ASCII, short), and that directory. */
function besideTemp(p: Buffer): { dir: Buffer; name: string } {
  const slash = p.lastIndexOf(0x2f);
  return { dir: slash > 0 ? p.subarray(0, slash) : Buffer.from(slash === 0 ? '/' : '.'), name: `.ferry-special-${process.pid}-${specialSeq++}` };
}

/** `fn(fd)` with `path` open for the duration (flags: `constants.O_*`); false when it cannot be opened. */
function withOpen(path: Buffer, flags: number, fn: (fd: number) => boolean): boolean {
  let fd: number;
  try {
    fd = openSync(path, flags);
  } catch {
    return false;
  }
  try {
    return fn(fd);
  } finally {
    closeSync(fd);
  }
}

/** Rename `dir`/`name` to `p` (by bytes); on failure remove it. */
function moveIntoPlace(dir: Buffer, name: string, p: Buffer): boolean {
  const tmp = Buffer.concat([dir, Buffer.from(`/${name}`)]);
  try {
    renameSync(tmp, p);
    return true;
  } catch {
    rmSync(tmp, { force: true });
    return false;
  }
}

/**
 * Create a FIFO or device node at `p` with an external command (Node has no
 * mkfifo or mknod). Command arguments are strings, so a path that is not
 * valid UTF-8 cannot be passed as it is: the command then creates a temporary
 * name in the parent directory, reached through an inherited directory fd
 * (/dev/fd/3/...), and the entry is renamed into place by its bytes.
 */
function makeWithCommand(p: Buffer, run: (path: string, stdio: StdioOptions) => { status: number | null }): boolean {
  const asString = p.toString();
  if (Buffer.from(asString).equals(p)) return run(asString, 'ignore').status === 0;
  const { dir, name } = besideTemp(p);
  if (!withOpen(dir, constants.O_RDONLY | constants.O_DIRECTORY, (fd) => run(`/dev/fd/3/${name}`, ['ignore', 'ignore', 'ignore', fd]).status === 0)) return false;
  return moveIntoPlace(dir, name, p);
}

/**
 * A Unix socket at `p`. Node makes one only by binding a server to it: the
 * server binds a short temporary name in p's directory, reached through an
 * open descriptor of that directory (/proc/self/fd/N/name: p's bytes need not
 * be UTF-8, and a socket's path must fit in 108 bytes), the socket is renamed
 * into place by its bytes, and only then is the server closed (libuv unlinks
 * the name it bound, gone by then). Nothing listens on the socket: it is what
 * the process that owned it leaves behind when it dies, and what a power cut
 * leaves on disk. Binding is synchronous; a failure shows as a server that
 * is not listening (its error event comes later and is ignored).
 */
function makeSocket(p: Buffer): boolean {
  const { dir, name } = besideTemp(p);
  return withOpen(dir, constants.O_RDONLY | constants.O_DIRECTORY, (fd) => {
    const server = createServer();
    server.on('error', () => {});
    try {
      server.listen(`/proc/self/fd/${fd}/${name}`);
    } catch {
      return false;
    }
    if (!server.listening) return false;
    const moved = moveIntoPlace(dir, name, p);
    server.close();
    return moved;
  });
}

/**
 * FIFOs, device nodes (mkfifo/mknod: Node has neither) and Unix sockets,
 * with their metadata. Returns a warning when it could not.
 */
export function createSpecialEntry(e: TreeEntry, p: Buffer, ctx: MetaContext): string | undefined {
  const mode = (e.mode & 0o777).toString(8);
  if (e.type === 'socket') {
    if (!makeSocket(p)) return 'could not recreate the Unix socket (binding one there failed); skipped';
  } else if (e.type === 'fifo') {
    if (!makeWithCommand(p, (path, stdio) => spawnSync('mkfifo', ['-m', mode, path], { stdio }))) return 'could not recreate FIFO (mkfifo failed); skipped';
  } else {
    const { major, minor } = deviceNumbers(e.rdev ?? 0);
    const made = ctx.canChown && makeWithCommand(p, (path, stdio) => spawnSync('mknod', ['-m', mode, path, e.type === 'chardev' ? 'c' : 'b', String(major), String(minor)], { stdio }));
    if (!made) return `${e.type} ${major}:${minor} not recreated (needs root and mknod); skipped`;
  }
  setEntryMeta(p, e, ctx);
  return undefined;
}
