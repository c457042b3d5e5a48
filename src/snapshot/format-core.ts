// The object formats' shared parts: version, limits, magic numbers, entry
// names, varints and the bounds-checked reader (format.ts, format-tree.ts).
import { FerryError } from '../core/errors.ts';
import { HASH_BYTES, type ObjectId } from '../core/ids.ts';
import { type EntryType, type MemberKind } from './model.ts';

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
export const MAX_SNAPSHOT_STRING = 128;

/**
 * 'tree' is a directory whose entries are all in it; a large directory is a 'treeindex' naming its
 * 'treepage's (runs of its sorted entries: format-index.ts). All three are stored as kind 'tree'.
 */
export type FormatKind = 'tree' | 'treepage' | 'treeindex' | 'image' | 'blocklist' | 'snapshot';

export const MAGIC: Record<FormatKind, string> = { tree: 'FTRE', treepage: 'FTRP', treeindex: 'FTRI', image: 'FIMG', blocklist: 'FBLK', snapshot: 'FSNP' };
export const KIND_BY_MAGIC = new Map<string, FormatKind>(Object.entries(MAGIC).map(([k, m]) => [m, k as FormatKind]));
export const HEADER_BYTES = 5;

export const TYPE_CODE: Record<EntryType, number> = {
  file: 1,
  dir: 2,
  symlink: 3,
  hardlink: 4,
  chardev: 5,
  blockdev: 6,
  fifo: 7,
  socket: 8,
};
export const TYPE_BY_CODE: Array<EntryType | undefined> = [];
for (const [t, c] of Object.entries(TYPE_CODE)) TYPE_BY_CODE[c] = t as EntryType;

export const MEMBER_KIND_CODE: Record<MemberKind, number> = { tree: 1, image: 2 };
export const MEMBER_KIND_BY_CODE: Array<MemberKind | undefined> = [undefined, 'tree', 'image'];

export const INT64_MIN = -(2n ** 63n);
export const INT64_MAX = 2n ** 63n - 1n;
export const HEX64 = /^[0-9a-f]{64}$/;
export const PRINTABLE = /^[\x21-\x7e]+$/;
export const SLASH = 0x2f;
export const NUL = 0x00;
export const DOT = 0x2e;

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

export function entryNameProblem(name: Uint8Array): string | null {
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

export function showBytes(b: unknown): string {
  if (!(b instanceof Uint8Array)) return String(b);
  const part = b.subarray(0, 64);
  let s = '';
  for (const c of part) s += c >= 0x20 && c < 0x7f && c !== 0x22 && c !== 0x5c ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, '0')}`;
  return `"${s}"${b.length > 64 ? `... (${b.length} bytes)` : ''}`;
}

export function fail(ctx: string, msg: string): never {
  throw new FerryError('OBJECT_CORRUPT', `${ctx}: ${msg}`);
}

export function varintSize(n: number): number {
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

export function writeVarint(buf: Buffer, p: number, n: number): number {
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

export function writeHeader(buf: Buffer, kind: FormatKind): number {
  buf.write(MAGIC[kind], 0, 'latin1');
  buf[4] = FORMAT_VERSION;
  return HEADER_BYTES;
}

export function writeBytes(buf: Buffer, p: number, b: Uint8Array): number {
  p = writeVarint(buf, p, b.length);
  buf.set(b, p);
  return p + b.length;
}

export function writeId(buf: Buffer, p: number, id: ObjectId): number {
  buf.write(id, p, HASH_BYTES, 'hex');
  return p + HASH_BYTES;
}

export function isObjectId(id: unknown): id is ObjectId {
  return typeof id === 'string' && HEX64.test(id);
}

export function isNonNegInt(n: unknown, max = Number.MAX_SAFE_INTEGER): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= max;
}

/** Cursor over bytes being decoded; every read is bounds-checked. */
export class Reader {
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
