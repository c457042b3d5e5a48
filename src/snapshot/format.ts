// Byte encodings of ferry's structured objects: tree, image, blocklist and
// snapshot. This is the only module that knows them; docs/formats.md
// describes them byte by byte.
//
// Objects are content-addressed, so every encoding is canonical: a value has
// exactly one encoding, encoders refuse values that break an invariant, and
// decoders refuse any byte string that is not the encoding of a valid value
// (non-minimal varints, stray bits, unsorted names, trailing bytes...). For
// every accepted `b`, encode(decode(b)) equals `b`.
//
// Decoders treat their input as hostile (it may come from a peer): every
// count and length is checked against the bytes left before anything is
// allocated, and every failure is a FerryError('OBJECT_CORRUPT') naming the
// object kind, the field and the byte offset. Encoders report invalid values
// with the same code ("cannot encode ...").
import { FerryError } from '../core/errors.ts';
import { HASH_BYTES, parseName, parseSnapshotId, type ObjectId, type SnapshotId } from '../core/ids.ts';
import {
  BLOCKS_PER_LIST,
  type BlockList,
  type EntryType,
  type ImageManifest,
  type MemberKind,
  type SnapshotManifest,
  type SnapshotMember,
  type Tree,
  type TreeEntry,
} from './model.ts';

/** Version byte written after the magic of every object this module encodes. */
export const FORMAT_VERSION = 1;

// ---- limits (part of format v1: decoders refuse anything beyond them) ----
export const MAX_TREE_ENTRIES = 4_000_000;
export const MAX_FILE_CHUNKS = 16_777_216;
export const MAX_NAME_BYTES = 4096;
export const MAX_TARGET_BYTES = 65_536;
export const MAX_XATTRS = 65_536;
export const MAX_XATTR_NAME_BYTES = 255;
export const MAX_XATTR_VALUE_BYTES = 1024 * 1024;
export const MAX_UID = 0xffff_ffff;
export const MIN_IMAGE_BLOCK_SIZE = 4096;
export const MAX_IMAGE_BLOCK_SIZE = 16 * 1024 * 1024;
export const MAX_SNAPSHOT_MEMBERS = 4096;
export const MAX_ORIGIN_LENGTH = 128;
/** Longest string field of a snapshot manifest (names are at most 128, ids 26). */
const MAX_SNAPSHOT_STRING = 128;

export type FormatKind = 'tree' | 'image' | 'blocklist' | 'snapshot';

const MAGIC: Record<FormatKind, string> = { tree: 'FTRE', image: 'FIMG', blocklist: 'FBLK', snapshot: 'FSNP' };
const KIND_BY_MAGIC = new Map<string, FormatKind>(Object.entries(MAGIC).map(([k, m]) => [m, k as FormatKind]));
const HEADER_BYTES = 5;

const TYPE_CODE: Record<EntryType, number> = {
  file: 1,
  dir: 2,
  symlink: 3,
  hardlink: 4,
  chardev: 5,
  blockdev: 6,
  fifo: 7,
  socket: 8,
};
const TYPE_BY_CODE: Array<EntryType | undefined> = [];
for (const [t, c] of Object.entries(TYPE_CODE)) TYPE_BY_CODE[c] = t as EntryType;

const MEMBER_KIND_CODE: Record<MemberKind, number> = { tree: 1, image: 2 };
const MEMBER_KIND_BY_CODE: Array<MemberKind | undefined> = [undefined, 'tree', 'image'];

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const HEX64 = /^[0-9a-f]{64}$/;
const PRINTABLE = /^[\x21-\x7e]+$/;
const SLASH = 0x2f;
const NUL = 0x00;
const DOT = 0x2e;

// ---------------------------------------------------------------- helpers

/** Order of tree entries (and of xattr names): plain byte order. */
export function compareNames(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}

/** Throws OBJECT_CORRUPT unless `name` is a valid directory entry name. */
export function validateEntryName(name: Uint8Array): void {
  const why = entryNameProblem(name);
  if (why !== null) throw new FerryError('OBJECT_CORRUPT', `invalid entry name ${showBytes(name)}: ${why}`);
}

function entryNameProblem(name: Uint8Array): string | null {
  if (!(name instanceof Uint8Array)) return 'not a byte buffer';
  const n = name.length;
  if (n === 0) return 'empty';
  if (n > MAX_NAME_BYTES) return `longer than ${MAX_NAME_BYTES} bytes (${n})`;
  if (name.indexOf(SLASH) !== -1) return "contains '/'";
  if (name.indexOf(NUL) !== -1) return 'contains a NUL byte';
  if (name[0] === DOT && (n === 1 || (n === 2 && name[1] === DOT))) return "is '.' or '..'";
  return null;
}

/** Which object kind the bytes claim to be (by magic), or null. Does not validate anything else. */
export function sniffObjectKind(bytes: Uint8Array): FormatKind | null {
  if (bytes.length < 4) return null;
  return KIND_BY_MAGIC.get(Buffer.from(bytes.buffer, bytes.byteOffset, 4).toString('latin1')) ?? null;
}

function showBytes(b: unknown): string {
  if (!(b instanceof Uint8Array)) return String(b);
  const part = b.subarray(0, 64);
  let s = '';
  for (const c of part) s += c >= 0x20 && c < 0x7f && c !== 0x22 && c !== 0x5c ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, '0')}`;
  return `"${s}"${b.length > 64 ? `... (${b.length} bytes)` : ''}`;
}

function fail(ctx: string, msg: string): never {
  throw new FerryError('OBJECT_CORRUPT', `${ctx}: ${msg}`);
}

function varintSize(n: number): number {
  if (n < 0x80) return 1;
  if (n < 0x4000) return 2;
  if (n < 0x20_0000) return 3;
  if (n < 0x1000_0000) return 4;
  let s = 4;
  n = Math.floor(n / 0x1000_0000);
  while (n > 0) {
    s++;
    n = Math.floor(n / 128);
  }
  return s;
}

function writeVarint(buf: Buffer, p: number, n: number): number {
  while (n > 0x7fff_ffff) {
    buf[p++] = (n % 128) | 0x80;
    n = Math.floor(n / 128);
  }
  while (n > 0x7f) {
    buf[p++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  buf[p++] = n;
  return p;
}

function writeHeader(buf: Buffer, kind: FormatKind): number {
  buf.write(MAGIC[kind], 0, 'latin1');
  buf[4] = FORMAT_VERSION;
  return HEADER_BYTES;
}

function writeBytes(buf: Buffer, p: number, b: Uint8Array): number {
  p = writeVarint(buf, p, b.length);
  buf.set(b, p);
  return p + b.length;
}

function writeId(buf: Buffer, p: number, id: ObjectId): number {
  buf.write(id, p, HASH_BYTES, 'hex');
  return p + HASH_BYTES;
}

function isObjectId(id: unknown): id is ObjectId {
  return typeof id === 'string' && HEX64.test(id);
}

function isNonNegInt(n: unknown, max = Number.MAX_SAFE_INTEGER): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= max;
}

/** Cursor over bytes being decoded; every read is bounds-checked. */
class Reader {
  readonly buf: Buffer;
  readonly dv: DataView;
  readonly end: number;
  /** whether `buf` is this reader's own copy, so bytes() can hand out views */
  readonly owned: boolean;
  readonly ctx: string;
  pos = 0;

  /**
   * With `copy`, the reader works on its own copy of the input, and the
   * buffers bytes() returns are views into that copy (one allocation for a
   * whole tree instead of one per name); without, bytes() copies.
   */
  constructor(bytes: Uint8Array, kind: FormatKind, copy = false) {
    if (!(bytes instanceof Uint8Array)) throw new FerryError('OBJECT_CORRUPT', `corrupt ${kind} object: not a byte buffer`);
    this.buf = copy ? Buffer.from(bytes) : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.owned = copy;
    this.dv = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
    this.end = bytes.byteLength;
    this.ctx = `corrupt ${kind} object`;
  }

  fail(msg: string): never {
    throw new FerryError('OBJECT_CORRUPT', `${this.ctx}: ${msg} (at byte ${this.pos} of ${this.end})`);
  }

  get left(): number {
    return this.end - this.pos;
  }

  need(n: number, what: string): void {
    if (n > this.end - this.pos) this.fail(`truncated: ${what} needs ${n} bytes, only ${this.end - this.pos} left`);
  }

  u8(what: string): number {
    if (this.pos >= this.end) this.fail(`truncated: ${what} missing`);
    return this.buf[this.pos++];
  }

  /** Unsigned LEB128, minimal, at most 2^53-1. */
  varint(what: string): number {
    const buf = this.buf;
    let p = this.pos;
    if (p < this.end && buf[p] < 0x80) {
      this.pos = p + 1;
      return buf[p];
    }
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 8; i++, p++) {
      if (p >= this.end) this.fail(`truncated: ${what} (varint) runs past the end`);
      const b = buf[p];
      result += (b & 0x7f) * mul;
      if (b < 0x80) {
        if (b === 0) this.fail(`${what}: varint is not minimally encoded`);
        if (result > Number.MAX_SAFE_INTEGER) this.fail(`${what}: varint exceeds 2^53-1`);
        this.pos = p + 1;
        return result;
      }
      mul *= 128;
    }
    this.fail(`${what}: varint longer than 8 bytes`);
  }

  /** The next n bytes, never aliasing the caller's input. */
  bytes(n: number, what: string): Buffer {
    this.need(n, what);
    const view = this.buf.subarray(this.pos, this.pos + n);
    const out = this.owned ? view : Buffer.from(view);
    this.pos += n;
    return out;
  }

  /** Varint length (at most max) then that many bytes. */
  lenBytes(max: number, what: string): Buffer {
    const n = this.varint(`${what} length`);
    if (n > max) this.fail(`${what} is ${n} bytes, more than the limit of ${max}`);
    return this.bytes(n, what);
  }

  id(what: string): ObjectId {
    this.need(HASH_BYTES, what);
    const s = this.buf.toString('hex', this.pos, this.pos + HASH_BYTES) as ObjectId;
    this.pos += HASH_BYTES;
    return s;
  }

  i64(what: string): bigint {
    this.need(8, what);
    const v = this.dv.getBigInt64(this.pos, true);
    this.pos += 8;
    return v;
  }

  /** ASCII string of at most max bytes (content validated by the caller). */
  ascii(max: number, what: string): string {
    const n = this.varint(`${what} length`);
    if (n > max) this.fail(`${what} is ${n} bytes, more than the limit of ${max}`);
    this.need(n, what);
    const s = this.buf.toString('latin1', this.pos, this.pos + n);
    this.pos += n;
    return s;
  }

  header(kind: FormatKind): void {
    if (this.end < HEADER_BYTES) this.fail(`truncated: ${this.end} bytes is shorter than the ${HEADER_BYTES}-byte header`);
    const magic = this.buf.toString('latin1', 0, 4);
    const found = KIND_BY_MAGIC.get(magic);
    if (found !== kind) {
      this.fail(found ? `expected a ${kind} object (magic ${MAGIC[kind]}), found a ${found} object` : `bad magic ${showBytes(this.buf.subarray(0, 4))}, expected ${MAGIC[kind]}`);
    }
    const v = this.buf[4];
    if (v > FORMAT_VERSION) {
      throw new FerryError(
        'FORMAT_VERSION',
        `${kind} object has format version ${v}, but this ferry reads up to version ${FORMAT_VERSION}: upgrade ferry to read it`,
        { details: { kind, version: v, supported: FORMAT_VERSION } },
      );
    }
    if (v !== FORMAT_VERSION) this.fail(`invalid format version ${v}`);
    this.pos = HEADER_BYTES;
  }

  done(): void {
    if (this.pos !== this.end) this.fail(`${this.end - this.pos} trailing bytes after the end of the object`);
  }
}

// ------------------------------------------------------------------ trees

function entryFail(ctx: string, i: number, e: TreeEntry, msg: string): never {
  const name = e && typeof e === 'object' ? showBytes(e.name) : '?';
  fail(ctx, `entry ${i} (${name}): ${msg}`);
}

function checkTarget(ctx: string, i: number, e: TreeEntry): Buffer {
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
function checkEntry(ctx: string, i: number, e: TreeEntry, checkIds: boolean): number {
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

function writeEntry(buf: Buffer, dv: DataView, p: number, e: TreeEntry): number {
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
const MIN_ENTRY_BYTES = 1 + 1 + 1 + 1 + 1 + 1 + 8 + 1 + 1;
/** Smallest possible encoded xattr: 1-byte name, empty value. */
const MIN_XATTR_BYTES = 3;

export function encodeTree(tree: Tree): Buffer {
  const ctx = 'cannot encode tree';
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
  let p = writeHeader(buf, 'tree');
  p = writeVarint(buf, p, entries.length);
  for (const e of entries) p = writeEntry(buf, dv, p, e);
  if (p !== size) throw new FerryError('INTERNAL', `tree encoding size mismatch: computed ${size}, wrote ${p}`);
  return buf;
}

/**
 * Decode a tree object. The entries' name, target and xattr buffers are views
 * into one private copy of `bytes` (never into `bytes` itself), so they stay
 * valid whatever the caller does with its input.
 */
export function decodeTree(bytes: Uint8Array): Tree {
  const r: Reader = new Reader(bytes, 'tree', true);
  r.header('tree');
  const count = r.varint('entry count');
  if (count > MAX_TREE_ENTRIES) r.fail(`${count} entries, more than ${MAX_TREE_ENTRIES}`);
  if (count * MIN_ENTRY_BYTES > r.left) r.fail(`truncated: ${count} entries cannot fit in ${r.left} bytes`);
  const entries: TreeEntry[] = [];
  for (let i = 0; i < count; i++) {
    const at = r.pos;
    const name = r.lenBytes(MAX_NAME_BYTES, `entry ${i} name`);
    const code = r.u8(`entry ${i} type`);
    const type = TYPE_BY_CODE[code];
    if (type === undefined) r.fail(`entry ${i}: unknown type code ${code}`);
    const mode = r.varint(`entry ${i} mode`);
    const uid = r.varint(`entry ${i} uid`);
    const gid = r.varint(`entry ${i} gid`);
    const mtimeNs = r.i64(`entry ${i} mtime`);
    const size = r.varint(`entry ${i} size`);
    const xcount = r.varint(`entry ${i} xattr count`);
    if (xcount > MAX_XATTRS) r.fail(`entry ${i}: ${xcount} xattrs, more than ${MAX_XATTRS}`);
    if (xcount * MIN_XATTR_BYTES > r.left) r.fail(`truncated: entry ${i}: ${xcount} xattrs cannot fit in ${r.left} bytes`);
    const xattrs: Array<[Buffer, Buffer]> = [];
    for (let x = 0; x < xcount; x++) {
      const xn = r.lenBytes(MAX_XATTR_NAME_BYTES, `entry ${i} xattr ${x} name`);
      const xv = r.lenBytes(MAX_XATTR_VALUE_BYTES, `entry ${i} xattr ${x} value`);
      xattrs.push([xn, xv]);
    }
    const e: TreeEntry = { name, type, mode, uid, gid, mtimeNs, size, xattrs };
    switch (type) {
      case 'file': {
        const c = r.varint(`entry ${i} chunk count`);
        if (c > MAX_FILE_CHUNKS) r.fail(`entry ${i}: ${c} chunks, more than ${MAX_FILE_CHUNKS}`);
        r.need(c * HASH_BYTES, `entry ${i}: ${c} chunk ids`);
        const chunks = new Array<ObjectId>(c);
        for (let k = 0; k < c; k++) chunks[k] = r.id(`entry ${i} chunk ${k}`);
        e.chunks = chunks;
        break;
      }
      case 'dir':
        e.tree = r.id(`entry ${i} tree id`);
        break;
      case 'symlink':
      case 'hardlink':
        e.target = r.lenBytes(MAX_TARGET_BYTES, `entry ${i} target`);
        break;
      case 'chardev':
      case 'blockdev':
        e.rdev = r.varint(`entry ${i} rdev`);
        break;
      default:
        break;
    }
    try {
      checkEntry(r.ctx, i, e, false); // ids read from raw bytes are valid by construction
      if (i > 0 && Buffer.compare(entries[i - 1].name, name) >= 0) entryFail(r.ctx, i, e, 'names are not strictly sorted and unique');
    } catch (err) {
      throw new FerryError('OBJECT_CORRUPT', `${(err as Error).message} (entry at byte ${at})`);
    }
    entries.push(e);
  }
  r.done();
  return { entries };
}

// ----------------------------------------------------------------- images

/** Number of blocklists an image of `size` bytes in `blockSize` blocks has. */
export function blockListCount(size: number, blockSize: number): number {
  return Math.ceil(Math.ceil(size / blockSize) / BLOCKS_PER_LIST);
}

function checkImage(ctx: string, m: ImageManifest): void {
  if (m === null || typeof m !== 'object') fail(ctx, 'not an object');
  if (!isNonNegInt(m.size)) fail(ctx, `size ${m.size} is not a non-negative safe integer`);
  const bs = m.blockSize;
  if (!isNonNegInt(bs, MAX_IMAGE_BLOCK_SIZE) || bs < MIN_IMAGE_BLOCK_SIZE || (bs & (bs - 1)) !== 0) {
    fail(ctx, `block size ${bs} is not a power of two between ${MIN_IMAGE_BLOCK_SIZE} and ${MAX_IMAGE_BLOCK_SIZE}`);
  }
  if (!Array.isArray(m.lists)) fail(ctx, 'lists is not an array');
  const want = blockListCount(m.size, bs);
  if (m.lists.length !== want) fail(ctx, `${m.lists.length} blocklists, but size ${m.size} in ${bs}-byte blocks needs ${want}`);
  for (let i = 0; i < m.lists.length; i++) if (!isObjectId(m.lists[i])) fail(ctx, `blocklist ${i} is not an object id`);
}

export function encodeImage(m: ImageManifest): Buffer {
  checkImage('cannot encode image', m);
  const n = m.lists.length;
  const buf = Buffer.allocUnsafe(HEADER_BYTES + varintSize(m.size) + varintSize(m.blockSize) + varintSize(n) + n * HASH_BYTES);
  let p = writeHeader(buf, 'image');
  p = writeVarint(buf, p, m.size);
  p = writeVarint(buf, p, m.blockSize);
  p = writeVarint(buf, p, n);
  for (const id of m.lists) p = writeId(buf, p, id);
  return buf;
}

export function decodeImage(bytes: Uint8Array): ImageManifest {
  const r: Reader = new Reader(bytes, 'image');
  r.header('image');
  const size = r.varint('size');
  const blockSize = r.varint('block size');
  const n = r.varint('blocklist count');
  r.need(n * HASH_BYTES, `${n} blocklist ids`);
  const lists = new Array<ObjectId>(n);
  for (let i = 0; i < n; i++) lists[i] = r.id(`blocklist ${i}`);
  r.done();
  const m: ImageManifest = { size, blockSize, lists };
  checkImage(r.ctx, m);
  return m;
}

// ------------------------------------------------------------- blocklists

function checkBlockList(ctx: string, l: BlockList): number {
  if (l === null || typeof l !== 'object' || !Array.isArray(l.blocks)) fail(ctx, 'blocks is not an array');
  const n = l.blocks.length;
  if (n === 0 || n > BLOCKS_PER_LIST) fail(ctx, `${n} blocks, not 1..${BLOCKS_PER_LIST}`);
  let present = 0;
  for (let i = 0; i < n; i++) {
    const b = l.blocks[i];
    if (b === null) continue;
    if (!isObjectId(b)) fail(ctx, `block ${i} is neither null nor an object id`);
    present++;
  }
  return present;
}

export function encodeBlockList(l: BlockList): Buffer {
  const present = checkBlockList('cannot encode blocklist', l);
  const n = l.blocks.length;
  const mapBytes = (n + 7) >>> 3;
  const buf = Buffer.allocUnsafe(HEADER_BYTES + varintSize(n) + mapBytes + present * HASH_BYTES);
  let p = writeHeader(buf, 'blocklist');
  p = writeVarint(buf, p, n);
  const mapAt = p;
  buf.fill(0, mapAt, mapAt + mapBytes);
  p += mapBytes;
  for (let i = 0; i < n; i++) {
    const b = l.blocks[i];
    if (b === null) continue;
    buf[mapAt + (i >>> 3)] |= 1 << (i & 7);
    p = writeId(buf, p, b);
  }
  return buf;
}

export function decodeBlockList(bytes: Uint8Array): BlockList {
  const r: Reader = new Reader(bytes, 'blocklist');
  r.header('blocklist');
  const n = r.varint('block count');
  if (n === 0 || n > BLOCKS_PER_LIST) r.fail(`${n} blocks, not 1..${BLOCKS_PER_LIST}`);
  const mapBytes = (n + 7) >>> 3;
  r.need(mapBytes, 'presence bitmap');
  const mapAt = r.pos;
  const buf = r.buf;
  let present = 0;
  for (let k = 0; k < mapBytes; k++) {
    let v = buf[mapAt + k];
    while (v !== 0) {
      v &= v - 1;
      present++;
    }
  }
  if ((n & 7) !== 0 && buf[mapAt + mapBytes - 1] >>> (n & 7) !== 0) r.fail('presence bitmap has bits set past the last block');
  r.pos += mapBytes;
  r.need(present * HASH_BYTES, `ids of the ${present} blocks present`);
  const blocks = new Array<ObjectId | null>(n);
  for (let i = 0; i < n; i++) blocks[i] = buf[mapAt + (i >>> 3)] & (1 << (i & 7)) ? r.id(`block ${i}`) : null;
  r.done();
  return { blocks };
}

// -------------------------------------------------------------- snapshots

function checkSnapshotId(ctx: string, s: unknown, what: string): void {
  if (typeof s !== 'string') fail(ctx, `${what} is not a string`);
  let canonical: string;
  try {
    canonical = parseSnapshotId(s);
  } catch {
    fail(ctx, `${what} ${JSON.stringify(s.slice(0, 80))} is not a snapshot id (26-character ULID)`);
  }
  if (canonical !== s) fail(ctx, `${what} ${JSON.stringify(s)} is not in canonical (upper case) form`);
}

function checkName(ctx: string, s: unknown, what: string): void {
  if (typeof s !== 'string') fail(ctx, `${what} name is not a string`);
  try {
    parseName(s, what);
  } catch (err) {
    fail(ctx, err instanceof Error ? err.message : String(err));
  }
}

function checkSnapshot(ctx: string, s: SnapshotManifest): void {
  if (s === null || typeof s !== 'object') fail(ctx, 'not an object');
  checkSnapshotId(ctx, s.id, 'id');
  checkName(ctx, s.volume, 'volume');
  if (s.name !== null) checkName(ctx, s.name, 'snapshot');
  if (!isNonNegInt(s.time)) fail(ctx, `time ${s.time} is not a non-negative safe integer`);
  if (typeof s.origin !== 'string' || s.origin.length > MAX_ORIGIN_LENGTH || !PRINTABLE.test(s.origin)) {
    fail(ctx, `origin ${JSON.stringify(s.origin)} is not 1..${MAX_ORIGIN_LENGTH} printable ASCII characters`);
  }
  if (s.parent !== null) {
    checkSnapshotId(ctx, s.parent, 'parent');
    if (s.parent === s.id) fail(ctx, 'a snapshot cannot be its own parent');
  }
  const members = s.members;
  if (!Array.isArray(members)) fail(ctx, 'members is not an array');
  if (members.length === 0 || members.length > MAX_SNAPSHOT_MEMBERS) fail(ctx, `${members.length} members, not 1..${MAX_SNAPSHOT_MEMBERS}`);
  const seen = new Set<string>();
  for (let i = 0; i < members.length; i++) {
    const m = members[i];
    if (m === null || typeof m !== 'object') fail(ctx, `member ${i} is not an object`);
    checkName(ctx, m.name, 'member');
    if (seen.has(m.name)) fail(ctx, `member name ${JSON.stringify(m.name)} appears twice`);
    seen.add(m.name);
    if (typeof m.kind !== 'string' || !Object.hasOwn(MEMBER_KIND_CODE, m.kind)) fail(ctx, `member ${JSON.stringify(m.name)} has unknown kind ${JSON.stringify(m.kind)}`);
    if (!isObjectId(m.root)) fail(ctx, `member ${JSON.stringify(m.name)} root is not an object id`);
  }
}

export function encodeSnapshot(s: SnapshotManifest): Buffer {
  checkSnapshot('cannot encode snapshot', s);
  // every string is ASCII (checked above), so its length is its byte length
  const str = (v: string): number => varintSize(v.length) + v.length;
  let size = HEADER_BYTES + str(s.id) + str(s.volume) + 1 + (s.name === null ? 0 : str(s.name));
  size += varintSize(s.time) + str(s.origin) + 1 + (s.parent === null ? 0 : str(s.parent)) + varintSize(s.members.length);
  for (const m of s.members) size += str(m.name) + 1 + HASH_BYTES;
  const buf = Buffer.allocUnsafe(size);
  const writeStr = (p: number, v: string): number => {
    p = writeVarint(buf, p, v.length);
    return p + buf.write(v, p, 'latin1');
  };
  let p = writeHeader(buf, 'snapshot');
  p = writeStr(p, s.id);
  p = writeStr(p, s.volume);
  buf[p++] = s.name === null ? 0 : 1;
  if (s.name !== null) p = writeStr(p, s.name);
  p = writeVarint(buf, p, s.time);
  p = writeStr(p, s.origin);
  buf[p++] = s.parent === null ? 0 : 1;
  if (s.parent !== null) p = writeStr(p, s.parent);
  p = writeVarint(buf, p, s.members.length);
  for (const m of s.members) {
    p = writeStr(p, m.name);
    buf[p++] = MEMBER_KIND_CODE[m.kind];
    p = writeId(buf, p, m.root);
  }
  if (p !== size) throw new FerryError('INTERNAL', `snapshot encoding size mismatch: computed ${size}, wrote ${p}`);
  return buf;
}

export function decodeSnapshot(bytes: Uint8Array): SnapshotManifest {
  const r: Reader = new Reader(bytes, 'snapshot');
  r.header('snapshot');
  const flag = (what: string): boolean => {
    const f = r.u8(what);
    if (f > 1) r.fail(`${what} flag is ${f}, not 0 or 1`);
    return f === 1;
  };
  const id = r.ascii(MAX_SNAPSHOT_STRING, 'id') as SnapshotId;
  const volume = r.ascii(MAX_SNAPSHOT_STRING, 'volume');
  const name = flag('name present') ? r.ascii(MAX_SNAPSHOT_STRING, 'name') : null;
  const time = r.varint('time');
  const origin = r.ascii(MAX_ORIGIN_LENGTH, 'origin');
  const parent = flag('parent present') ? (r.ascii(MAX_SNAPSHOT_STRING, 'parent') as SnapshotId) : null;
  const count = r.varint('member count');
  if (count === 0 || count > MAX_SNAPSHOT_MEMBERS) r.fail(`${count} members, not 1..${MAX_SNAPSHOT_MEMBERS}`);
  // smallest member: 1-byte length, 1-byte name, kind, root id
  if (count * (3 + HASH_BYTES) > r.left) r.fail(`truncated: ${count} members cannot fit in ${r.left} bytes`);
  const members: SnapshotMember[] = [];
  for (let i = 0; i < count; i++) {
    const mname = r.ascii(MAX_SNAPSHOT_STRING, `member ${i} name`);
    const code = r.u8(`member ${i} kind`);
    const kind = MEMBER_KIND_BY_CODE[code];
    if (kind === undefined) r.fail(`member ${i}: unknown kind code ${code}`);
    const root = r.id(`member ${i} root`);
    members.push({ name: mname, kind, root });
  }
  r.done();
  const s: SnapshotManifest = { id, volume, name, time, origin, parent, members };
  checkSnapshot(r.ctx, s);
  return s;
}
