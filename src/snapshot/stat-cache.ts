// The stat cache: for each directory of a member, what the last capture saw
// of each regular file (size, mtime, ctime, inode) and the chunks and
// extended attributes it stored, and of each other entry (NOT_A_FILE) its
// extended attributes.
// A file whose four values still match is not read again. This is site-local
// knowledge (inodes and ctimes mean nothing elsewhere), so it lives in the
// catalog beside the snapshot it describes, never inside tree objects: that
// keeps tree ids identical on every site that holds the same content.
import type { ObjectId } from '../core/ids.ts';
import { objectIdFromBytes, objectIdToBytes } from '../core/ids.ts';
import { FerryError } from '../core/errors.ts';

export interface CachedFile {
  size: number;
  mtimeNs: bigint;
  ctimeNs: bigint;
  ino: bigint;
  chunks: ObjectId[];
  /**
   * its extended attributes (a change of them changes the ctime, so they are as current as the
   * rest); undefined when not known (not read, or a row of version 1): the capture reads them
   */
  xattrs?: Array<[name: Uint8Array, value: Uint8Array]>;
}

/**
 * The size recorded for an entry that is not a regular file (a directory, symlink, FIFO...): its
 * record keeps only its attributes, trusted while its inode and ctime are the same. No file matches it.
 */
export const NOT_A_FILE = -1;

/** 2: each file's extended attributes follow its chunks. Rows of version 1 are read (attributes unknown). */
const VERSION = 2;
const UNKNOWN = 0xffffffff;

const asBuffer = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

export function encodeDirCache(entries: Array<[name: Buffer, file: CachedFile]>): Buffer {
  let len = 1 + 4;
  for (const [name, f] of entries) len += 2 + name.length + 8 * 4 + 4 + f.chunks.length * 32 + 4 + (f.xattrs ?? []).reduce((n, [k, v]) => n + 6 + k.length + v.length, 0);
  const b = Buffer.allocUnsafe(len);
  let o = 0;
  b[o++] = VERSION;
  b.writeUInt32LE(entries.length, o);
  o += 4;
  for (const [name, f] of entries) {
    b.writeUInt16LE(name.length, o);
    o += 2;
    o += name.copy(b, o);
    b.writeDoubleLE(f.size, o);
    b.writeBigInt64LE(f.mtimeNs, o + 8);
    b.writeBigInt64LE(f.ctimeNs, o + 16);
    b.writeBigUInt64LE(f.ino, o + 24);
    b.writeUInt32LE(f.chunks.length, o + 32);
    o += 36;
    for (const c of f.chunks) o += objectIdToBytes(c).copy(b, o);
    b.writeUInt32LE(f.xattrs ? f.xattrs.length : UNKNOWN, o);
    o += 4;
    for (const [k, v] of f.xattrs ?? []) {
      b.writeUInt16LE(k.length, o);
      o += 2 + asBuffer(k).copy(b, o + 2);
      b.writeUInt32LE(v.length, o);
      o += 4 + asBuffer(v).copy(b, o + 4);
    }
  }
  return b;
}

/** Decode a directory's cache. Keys are names as latin1 strings (a bijection with the bytes). */
export function decodeDirCache(b: Uint8Array): Map<string, CachedFile> {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const out = new Map<string, CachedFile>();
  const bad = () => new FerryError('CATALOG_CORRUPT', 'stat cache entry is damaged; it will be rebuilt by the next snapshot');
  const version = buf[0];
  if (buf.length < 5 || (version !== 1 && version !== VERSION)) throw bad();
  const n = buf.readUInt32LE(1);
  let o = 5;
  for (let i = 0; i < n; i++) {
    if (o + 2 > buf.length) throw bad();
    const nl = buf.readUInt16LE(o);
    o += 2;
    if (o + nl + 36 > buf.length) throw bad();
    const name = buf.toString('latin1', o, o + nl);
    o += nl;
    const size = buf.readDoubleLE(o);
    const mtimeNs = buf.readBigInt64LE(o + 8);
    const ctimeNs = buf.readBigInt64LE(o + 16);
    const ino = buf.readBigUInt64LE(o + 24);
    const nc = buf.readUInt32LE(o + 32);
    o += 36;
    if (o + nc * 32 > buf.length) throw bad();
    const chunks: ObjectId[] = new Array(nc);
    for (let j = 0; j < nc; j++, o += 32) chunks[j] = objectIdFromBytes(buf.subarray(o, o + 32));
    const f: CachedFile = { size, mtimeNs, ctimeNs, ino, chunks };
    if (version > 1) {
      if (o + 4 > buf.length) throw bad();
      const nx = buf.readUInt32LE(o);
      o += 4;
      if (nx !== UNKNOWN) {
        f.xattrs = [];
        for (let j = 0; j < nx; j++) {
          if (o + 2 > buf.length) throw bad();
          const kl = buf.readUInt16LE(o);
          if (o + 2 + kl + 4 > buf.length) throw bad();
          const k = Buffer.from(buf.subarray(o + 2, o + 2 + kl));
          o += 2 + kl;
          const vl = buf.readUInt32LE(o);
          if (o + 4 + vl > buf.length) throw bad();
          f.xattrs.push([k, Buffer.from(buf.subarray(o + 4, o + 4 + vl))]);
          o += 4 + vl;
        }
      }
    }
    out.set(name, f);
  }
  if (o !== buf.length) throw bad();
  return out;
}
