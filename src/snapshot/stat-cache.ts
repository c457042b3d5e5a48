// The stat cache: for each directory of a member, what the last capture saw
// of each regular file (size, mtime, ctime, inode) and the chunks it stored.
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
}

const VERSION = 1;

export function encodeDirCache(entries: Array<[name: Buffer, file: CachedFile]>): Buffer {
  let len = 1 + 4;
  for (const [name, f] of entries) len += 2 + name.length + 8 * 4 + 4 + f.chunks.length * 32;
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
  }
  return b;
}

/** Decode a directory's cache. Keys are names as latin1 strings (a bijection with the bytes). */
export function decodeDirCache(b: Uint8Array): Map<string, CachedFile> {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const out = new Map<string, CachedFile>();
  const bad = () => new FerryError('CATALOG_CORRUPT', 'stat cache entry is damaged; it will be rebuilt by the next snapshot');
  if (buf.length < 5 || buf[0] !== VERSION) throw bad();
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
    out.set(name, { size, mtimeNs, ctimeNs, ino, chunks });
  }
  if (o !== buf.length) throw bad();
  return out;
}
