// Tree objects: encoding and the checked decoder (format.ts re-exports them).
import { FerryError } from '../core/errors.ts';
import { HASH_BYTES, type ObjectId } from '../core/ids.ts';
import { type Tree, type TreeEntry } from './model.ts';
import { MAX_TREE_ENTRIES, MAX_FILE_CHUNKS, MAX_NAME_BYTES, MAX_TARGET_BYTES, MAX_XATTRS, MAX_XATTR_NAME_BYTES, MAX_XATTR_VALUE_BYTES, MAX_UID, HEADER_BYTES, TYPE_CODE, TYPE_BY_CODE, INT64_MIN, INT64_MAX, SLASH, NUL, entryNameProblem, showBytes, fail, varintSize, writeVarint, writeHeader, writeBytes, writeId, isObjectId, isNonNegInt, Reader } from './format-core.ts';

// ------------------------------------------------------------------ trees

export function entryFail(ctx: string, i: number, e: TreeEntry, msg: string): never {
  const name = e && typeof e === 'object' ? showBytes(e.name) : '?';
  fail(ctx, `entry ${i} (${name}): ${msg}`);
}

export function checkTarget(ctx: string, i: number, e: TreeEntry): Buffer {
  const t = e.target;
  if (!(t instanceof Uint8Array)) entryFail(ctx, i, e, `a ${e.type} needs a target`);
  if (t.length === 0) entryFail(ctx, i, e, `${e.type} target is empty`);
  if (t.length > MAX_TARGET_BYTES) entryFail(ctx, i, e, `${e.type} target is ${t.length} bytes, more than ${MAX_TARGET_BYTES}`);
  if (t.indexOf(NUL) !== -1) entryFail(ctx, i, e, `${e.type} target contains a NUL byte`);
  return t as Buffer;
}

/**
 * Check one entry's invariants (shared by encoder and decoder) and return
 * the number of bytes its encoding takes.
 */
export function checkEntry(ctx: string, i: number, e: TreeEntry, checkIds: boolean): number {
  if (e === null || typeof e !== 'object') fail(ctx, `entry ${i} is not an object`);
  const nameWhy = entryNameProblem(e.name);
  if (nameWhy !== null) entryFail(ctx, i, e, `invalid name: ${nameWhy}`);
  const type = e.type;
  if (typeof type !== 'string' || !Object.hasOwn(TYPE_CODE, type)) entryFail(ctx, i, e, `unknown type ${JSON.stringify(type)}`);
  if (!isNonNegInt(e.mode, 0o7777)) entryFail(ctx, i, e, `mode ${e.mode} is not an integer in 0..0o7777`);
  if (!isNonNegInt(e.uid, MAX_UID)) entryFail(ctx, i, e, `uid ${e.uid} is not an integer in 0..${MAX_UID}`);
  if (!isNonNegInt(e.gid, MAX_UID)) entryFail(ctx, i, e, `gid ${e.gid} is not an integer in 0..${MAX_UID}`);
  const mt = e.mtimeNs;
  if (typeof mt !== 'bigint' || mt < INT64_MIN || mt > INT64_MAX) entryFail(ctx, i, e, `mtimeNs ${String(mt)} is not a signed 64-bit bigint`);
  const size = e.size;
  if (!isNonNegInt(size)) entryFail(ctx, i, e, `size ${size} is not a non-negative safe integer`);

  let n = varintSize(e.name.length) + e.name.length + 1 + varintSize(e.mode) + varintSize(e.uid) + varintSize(e.gid) + 8 + varintSize(size);

  const xattrs = e.xattrs;
  if (!Array.isArray(xattrs)) entryFail(ctx, i, e, 'xattrs is not an array');
  if (xattrs.length > MAX_XATTRS) entryFail(ctx, i, e, `${xattrs.length} xattrs, more than ${MAX_XATTRS}`);
  n += varintSize(xattrs.length);
  let prevX: Uint8Array | null = null;
  for (let x = 0; x < xattrs.length; x++) {
    const pair = xattrs[x];
    if (!Array.isArray(pair) || pair.length !== 2) entryFail(ctx, i, e, `xattr ${x} is not a [name, value] pair`);
    const [xn, xv] = pair;
    if (!(xn instanceof Uint8Array) || !(xv instanceof Uint8Array)) entryFail(ctx, i, e, `xattr ${x} name and value must be byte buffers`);
    if (xn.length === 0 || xn.length > MAX_XATTR_NAME_BYTES) entryFail(ctx, i, e, `xattr ${x} name is ${xn.length} bytes, not 1..${MAX_XATTR_NAME_BYTES}`);
    if (xn.indexOf(NUL) !== -1) entryFail(ctx, i, e, `xattr name ${showBytes(xn)} contains a NUL byte`);
    if (xv.length > MAX_XATTR_VALUE_BYTES) entryFail(ctx, i, e, `xattr ${showBytes(xn)} value is ${xv.length} bytes, more than ${MAX_XATTR_VALUE_BYTES}`);
    if (prevX !== null && Buffer.compare(prevX, xn) >= 0) entryFail(ctx, i, e, `xattr names not strictly sorted at ${showBytes(xn)}`);
    prevX = xn;
    n += varintSize(xn.length) + xn.length + varintSize(xv.length) + xv.length;
  }

  const isDev = type === 'chardev' || type === 'blockdev';
  const isLink = type === 'symlink' || type === 'hardlink';
  if (
    (e.chunks !== undefined && type !== 'file') ||
    (e.tree !== undefined && type !== 'dir') ||
    (e.target !== undefined && !isLink) ||
    (e.rdev !== undefined && !isDev)
  ) {
    const extra = (['chunks', 'tree', 'target', 'rdev'] as const).filter((f) => e[f] !== undefined).join(', ');
    entryFail(ctx, i, e, `a ${type} has only its own fields, but has ${extra}`);
  }
  // only files and symlinks have a size
  if (size !== 0 && type !== 'file' && type !== 'symlink') entryFail(ctx, i, e, `a ${type} must have size 0, not ${size}`);

  switch (type) {
    case 'file': {
      const chunks = e.chunks;
      if (!Array.isArray(chunks)) entryFail(ctx, i, e, 'a file needs a chunks array');
      const c = chunks.length;
      if (c > MAX_FILE_CHUNKS) entryFail(ctx, i, e, `${c} chunks, more than ${MAX_FILE_CHUNKS}`);
      if ((size === 0) !== (c === 0)) entryFail(ctx, i, e, `size ${size} with ${c} chunks: only an empty file has no chunks`);
      if (c > size) entryFail(ctx, i, e, `${c} chunks for ${size} bytes`);
      if (checkIds) for (let k = 0; k < c; k++) if (!isObjectId(chunks[k])) entryFail(ctx, i, e, `chunk ${k} is not an object id`);
      n += varintSize(c) + c * HASH_BYTES;
      break;
    }
    case 'dir':
      if (checkIds ? !isObjectId(e.tree) : e.tree === undefined) entryFail(ctx, i, e, 'a dir needs a tree object id');
      n += HASH_BYTES;
      break;
    case 'symlink': {
      const t = checkTarget(ctx, i, e);
      if (size !== t.length) entryFail(ctx, i, e, `symlink size ${size} differs from its target length ${t.length}`);
      n += varintSize(t.length) + t.length;
      break;
    }
    case 'hardlink': {
      const t = checkTarget(ctx, i, e);
      // member-relative path: valid entry names joined by single '/'
      let start = 0;
      for (;;) {
        const slash = t.indexOf(SLASH, start);
        const comp = t.subarray(start, slash === -1 ? t.length : slash);
        const why = entryNameProblem(comp);
        if (why !== null) entryFail(ctx, i, e, `hardlink target ${showBytes(t)} is not a relative path of valid names (component ${why})`);
        if (slash === -1) break;
        start = slash + 1;
      }
      n += varintSize(t.length) + t.length;
      break;
    }
    case 'chardev':
    case 'blockdev':
      if (!isNonNegInt(e.rdev)) entryFail(ctx, i, e, `a ${type} needs rdev, a non-negative safe integer`);
      n += varintSize(e.rdev);
      break;
    case 'fifo':
    case 'socket':
      break;
  }
  return n;
}

export function writeEntry(buf: Buffer, dv: DataView, p: number, e: TreeEntry): number {
  p = writeBytes(buf, p, e.name);
  buf[p++] = TYPE_CODE[e.type];
  p = writeVarint(buf, p, e.mode);
  p = writeVarint(buf, p, e.uid);
  p = writeVarint(buf, p, e.gid);
  dv.setBigInt64(p, e.mtimeNs, true);
  p += 8;
  p = writeVarint(buf, p, e.size);
  p = writeVarint(buf, p, e.xattrs.length);
  for (const [xn, xv] of e.xattrs) {
    p = writeBytes(buf, p, xn);
    p = writeBytes(buf, p, xv);
  }
  switch (e.type) {
    case 'file': {
      const chunks = e.chunks!;
      p = writeVarint(buf, p, chunks.length);
      for (const c of chunks) p = writeId(buf, p, c);
      break;
    }
    case 'dir':
      p = writeId(buf, p, e.tree!);
      break;
    case 'symlink':
    case 'hardlink':
      p = writeBytes(buf, p, e.target!);
      break;
    case 'chardev':
    case 'blockdev':
      p = writeVarint(buf, p, e.rdev!);
      break;
    default:
      break;
  }
  return p;
}

/** Smallest possible encoded entry: 1-byte name and every field at its minimum. */
export const MIN_ENTRY_BYTES = 1 + 1 + 1 + 1 + 1 + 1 + 8 + 1 + 1;
/** Smallest possible encoded xattr: 1-byte name, empty value. */
export const MIN_XATTR_BYTES = 3;

export function encodeTree(tree: Tree, kind: 'tree' | 'treepage' = 'tree'): Buffer {
  const ctx = `cannot encode ${kind}`;
  const entries = tree?.entries;
  if (!Array.isArray(entries)) fail(ctx, 'entries is not an array');
  if (entries.length > MAX_TREE_ENTRIES) fail(ctx, `${entries.length} entries, more than ${MAX_TREE_ENTRIES}`);
  let size = HEADER_BYTES + varintSize(entries.length);
  for (let i = 0; i < entries.length; i++) {
    size += checkEntry(ctx, i, entries[i], true);
    if (i > 0 && Buffer.compare(entries[i - 1].name, entries[i].name) >= 0) {
      entryFail(ctx, i, entries[i], 'names are not strictly sorted (Buffer.compare) and unique');
    }
  }
  const buf = Buffer.allocUnsafe(size);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (kind === 'treepage' && entries.length === 0) fail(ctx, 'a page holds at least one entry');
  let p = writeHeader(buf, kind);
  p = writeVarint(buf, p, entries.length);
  for (const e of entries) p = writeEntry(buf, dv, p, e);
  if (p !== size) throw new FerryError('INTERNAL', `tree encoding size mismatch: computed ${size}, wrote ${p}`);
  return buf;
}

/** One entry's fields as the reader finds them (checked by the caller). */
function readEntry(r: Reader): TreeEntry {
  const name = r.lenBytes(MAX_NAME_BYTES, 'name');
  const code = r.u8('type');
  const type = TYPE_BY_CODE[code];
  if (type === undefined) r.fail(`unknown type code ${code}`);
  const mode = r.varint('mode');
  const uid = r.varint('uid');
  const gid = r.varint('gid');
  const mtimeNs = r.i64('mtime');
  const size = r.varint('size');
  const xcount = r.varint('xattr count');
  if (xcount > MAX_XATTRS) r.fail(`${xcount} xattrs, more than ${MAX_XATTRS}`);
  if (xcount * MIN_XATTR_BYTES > r.left) r.fail(`truncated: ${xcount} xattrs cannot fit in ${r.left} bytes`);
  const xattrs: Array<[Buffer, Buffer]> = [];
  for (let x = 0; x < xcount; x++) {
    const xn = r.lenBytes(MAX_XATTR_NAME_BYTES, 'xattr name');
    const xv = r.lenBytes(MAX_XATTR_VALUE_BYTES, 'xattr value');
    xattrs.push([xn, xv]);
  }
  const e: TreeEntry = { name, type, mode, uid, gid, mtimeNs, size, xattrs };
  switch (type) {
    case 'file': {
      const c = r.varint('chunk count');
      if (c > MAX_FILE_CHUNKS) r.fail(`${c} chunks, more than ${MAX_FILE_CHUNKS}`);
      r.need(c * HASH_BYTES, 'chunk ids');
      const chunks = new Array<ObjectId>(c);
      for (let k = 0; k < c; k++) chunks[k] = r.id('chunk id');
      e.chunks = chunks;
      break;
    }
    case 'dir':
      e.tree = r.id('tree id');
      break;
    case 'symlink':
    case 'hardlink':
      e.target = r.lenBytes(MAX_TARGET_BYTES, 'target');
      break;
    case 'chardev':
    case 'blockdev':
      e.rdev = r.varint('rdev');
      break;
    default:
      break;
  }
  return e;
}

/**
 * Decode a tree object. The entries' name, target and xattr buffers are views
 * into one private copy of `bytes` (never into `bytes` itself), so they stay
 * valid whatever the caller does with its input.
 */
export function decodeTree(bytes: Uint8Array, kind: 'tree' | 'treepage' = 'tree'): Tree {
  const r: Reader = new Reader(bytes, kind, true);
  r.header(kind);
  const count = r.varint('entry count');
  if (kind === 'treepage' && count === 0) r.fail('a page holds at least one entry');
  if (count > MAX_TREE_ENTRIES) r.fail(`${count} entries, more than ${MAX_TREE_ENTRIES}`);
  if (count * MIN_ENTRY_BYTES > r.left) r.fail(`truncated: ${count} entries cannot fit in ${r.left} bytes`);
  const entries: TreeEntry[] = [];
  for (let i = 0; i < count; i++) {
    const at = r.pos;
    let e: TreeEntry;
    try {
      e = readEntry(r);
    } catch (err) {
      // the labels are constant (a label naming the entry would be a new string per field per entry): the entry is named here
      if (err instanceof FerryError) throw new FerryError(err.code, `${err.message}, in entry ${i} (at byte ${at})`);
      throw err;
    }
    try {
      checkEntry(r.ctx, i, e, false); // ids read from raw bytes are valid by construction
      if (i > 0 && Buffer.compare(entries[i - 1].name, e.name) >= 0) entryFail(r.ctx, i, e, 'names are not strictly sorted and unique');
    } catch (err) {
      throw new FerryError('OBJECT_CORRUPT', `${(err as Error).message} (entry at byte ${at})`);
    }
    entries.push(e);
  }
  r.done();
  return { entries };
}
