// The pack file format, and the only code that reads or writes its bytes.
//
// A pack is an append-only file of object records behind a 16-byte header.
// Every record carries its own header (kind, codec, lengths, id) and a CRC32,
// so a pack can be scanned and its index rebuilt without the catalog, and a
// torn tail is told apart from good data. Layout (all integers little-endian):
//
//   header   0  8  magic "FERRYPK\0"
//            8  4  u32 format version (1)
//           12  4  reserved, zero
//   record  +0  4  u32 record magic 0x43455246 ("FREC" on disk)
//           +4  1  u8 kind code (KIND_CODES)
//           +5  1  u8 codec (0 none, 1 zstd)
//           +6  4  u32 raw (uncompressed) length
//          +10  4  u32 stored length n
//          +14 32  object id (BLAKE3-256 of the raw bytes)
//          +46  n  stored bytes
//        +46+n  4  u32 CRC32 of bytes +0 .. +46+n
//
// This module never reads a whole pack to get one object: reads are preads of
// one record. It knows nothing of the index; pack-store.ts does.
import * as fs from 'node:fs';
import { crc32 } from 'node:zlib';
import { FerryError } from '../core/errors.ts';
import { HASH_BYTES } from '../core/ids.ts';
import { CODEC_NONE, CODEC_ZSTD, type Codec, type ObjectKind } from './types.ts';

export const PACK_MAGIC = Buffer.from('FERRYPK\0', 'latin1');
export const PACK_VERSION = 1;
export const PACK_HEADER_SIZE = 16;
export const RECORD_MAGIC = 0x43455246; // "FREC" little-endian
export const RECORD_HEADER_SIZE = 46;
export const RECORD_TRAILER_SIZE = 4;
export const RECORD_OVERHEAD = RECORD_HEADER_SIZE + RECORD_TRAILER_SIZE;
/** Largest raw or stored length a record can hold (u32). */
export const MAX_OBJECT_LENGTH = 0xffff_ffff;

/** Kind codes on disk and in the index. Fixed by the format: never renumber. */
export const KIND_CODES = {
  chunk: 1,
  tree: 2,
  image: 3,
  blocklist: 4,
  snapshot: 5,
} as const satisfies Record<ObjectKind, number>;

const KIND_BY_CODE = new Map<number, ObjectKind>(
  (Object.entries(KIND_CODES) as Array<[ObjectKind, number]>).map(([k, c]) => [c, k]),
);

export function kindFromCode(code: number): ObjectKind | undefined {
  return KIND_BY_CODE.get(code);
}

export function isCodec(c: number): c is Codec {
  return c === CODEC_NONE || c === CODEC_ZSTD;
}

/** Bytes a record of `storedLength` stored bytes takes in a pack. */
export function recordLength(storedLength: number): number {
  return RECORD_OVERHEAD + storedLength;
}

export function encodePackHeader(): Buffer {
  const b = Buffer.alloc(PACK_HEADER_SIZE);
  PACK_MAGIC.copy(b, 0);
  b.writeUInt32LE(PACK_VERSION, 8);
  return b;
}

/** Checks a pack header; throws PACK_CORRUPT or FORMAT_VERSION. */
export function checkPackHeader(b: Uint8Array, where: string): void {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  if (buf.length < PACK_HEADER_SIZE || !buf.subarray(0, 8).equals(PACK_MAGIC)) {
    throw new FerryError('PACK_CORRUPT', `${where} is not a ferry pack (bad magic)`);
  }
  const v = buf.readUInt32LE(8);
  if (v !== PACK_VERSION) {
    throw new FerryError('FORMAT_VERSION', `${where} has pack format version ${v}; this ferry reads version ${PACK_VERSION}: upgrade ferry`);
  }
}

export interface RecordHeader {
  kindCode: number;
  codec: number;
  rawLength: number;
  storedLength: number;
  /** the 32 id bytes (a view into the buffer read) */
  id: Buffer;
}

/** Fills the first RECORD_HEADER_SIZE bytes of `out` at `at`. */
export function writeRecordHeader(out: Buffer, at: number, kindCode: number, codec: Codec, rawLength: number, storedLength: number, id: Uint8Array): void {
  out.writeUInt32LE(RECORD_MAGIC, at);
  out.writeUInt8(kindCode, at + 4);
  out.writeUInt8(codec, at + 5);
  out.writeUInt32LE(rawLength, at + 6);
  out.writeUInt32LE(storedLength, at + 10);
  out.set(id, at + 14);
}

/** Parses a record header; returns a reason string instead when it is not one. */
export function parseRecordHeader(b: Buffer, at = 0): RecordHeader | string {
  if (b.length - at < RECORD_HEADER_SIZE) return 'short record header';
  if (b.readUInt32LE(at) !== RECORD_MAGIC) return 'bad record magic';
  const kindCode = b.readUInt8(at + 4);
  const codec = b.readUInt8(at + 5);
  if (!KIND_BY_CODE.has(kindCode)) return `unknown kind code ${kindCode}`;
  if (!isCodec(codec)) return `unknown codec ${codec}`;
  const rawLength = b.readUInt32LE(at + 6);
  const storedLength = b.readUInt32LE(at + 10);
  if (codec === CODEC_NONE && rawLength !== storedLength) return 'stored length differs from raw length for an uncompressed record';
  return { kindCode, codec, rawLength, storedLength, id: b.subarray(at + 14, at + 14 + HASH_BYTES) };
}

/**
 * Completes a record framed in place: `out[at, at + RECORD_HEADER_SIZE)` holds
 * its header and the stored bytes follow; writes the CRC trailer and returns
 * the record's length. Producers that frame records themselves (the capture
 * workers) use this, so the writer only has to copy them.
 */
export function finishRecord(out: Buffer, at: number, storedLength: number): number {
  const body = RECORD_HEADER_SIZE + storedLength;
  out.writeUInt32LE(crc32(out.subarray(at, at + body)), at + body);
  return body + RECORD_TRAILER_SIZE;
}

/** CRC check of a whole record held in `rec` (header, stored bytes, trailer). */
export function recordCrcOk(rec: Buffer): boolean {
  const body = rec.length - RECORD_TRAILER_SIZE;
  return body >= RECORD_HEADER_SIZE && crc32(rec.subarray(0, body)) === rec.readUInt32LE(body);
}

/** fsync a directory, so a file created or removed in it is durable. */
export function fsyncDir(path: string): void {
  const fd = fs.openSync(path, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The write-side file operations of the store. Tests substitute failing ones
 * (ENOSPC at byte N) or, where durability is not what is under test, ones
 * that skip fsync for speed.
 */
export interface PackFileIo {
  write(fd: number, buf: Uint8Array, offset: number, length: number, position: number): number;
  fsync(fd: number): void;
  fsyncDir(path: string): void;
}

export const nodePackFileIo: PackFileIo = {
  write: (fd, buf, offset, length, position) => fs.writeSync(fd, buf, offset, length, position),
  fsync: (fd) => fs.fsyncSync(fd),
  fsyncDir,
};

/** Reads exactly `length` bytes at `position` unless the file ends first; returns how many were read. */
export function preadFully(fd: number, buf: Buffer, length: number, position: number): number {
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, buf, done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

export interface PackWriterOptions {
  /** bytes buffered before a write(2); default 4 MiB */
  bufferSize?: number;
  io?: PackFileIo;
}

/**
 * Appends records to one new pack file. Records are buffered and written in
 * large writes; `seal` writes the rest and fsyncs the file (the caller fsyncs
 * the directory). After any failure the caller must `abandon` the writer:
 * its file may hold a torn record.
 */
export class PackWriter {
  readonly name: string;
  readonly path: string;
  #fd: number;
  #io: PackFileIo;
  #buf: Buffer;
  #bufLen = 0;
  /** bytes already handed to write(2) */
  #written = 0;
  #records = 0;
  #sealed = false;
  #closed = false;

  /** Creates the file (failing if it exists) and buffers the pack header. */
  constructor(path: string, name: string, options: PackWriterOptions = {}) {
    this.name = name;
    this.path = path;
    this.#io = options.io ?? nodePackFileIo;
    this.#buf = Buffer.allocUnsafe(Math.max(options.bufferSize ?? 4 << 20, 64 << 10));
    this.#fd = fs.openSync(path, 'wx+', 0o644);
    encodePackHeader().copy(this.#buf, 0);
    this.#bufLen = PACK_HEADER_SIZE;
  }

  /** Current length of the pack, buffered bytes included. */
  get size(): number {
    return this.#written + this.#bufLen;
  }

  get records(): number {
    return this.#records;
  }

  get sealed(): boolean {
    return this.#sealed;
  }

  /**
   * Appends one record; returns its offset. The stored bytes are copied (or
   * written) before this returns, so the caller may reuse its buffer.
   */
  append(kindCode: number, codec: Codec, rawLength: number, id: Uint8Array, stored: Uint8Array): number {
    if (this.#sealed || this.#closed) throw new FerryError('INTERNAL', `pack ${this.name} is sealed; cannot append`);
    if (id.length !== HASH_BYTES) throw new FerryError('INTERNAL', `object id must be ${HASH_BYTES} bytes`);
    const offset = this.size;
    const len = recordLength(stored.length);
    if (this.#bufLen + len > this.#buf.length) this.drain();
    if (len <= this.#buf.length) {
      const at = this.#bufLen;
      writeRecordHeader(this.#buf, at, kindCode, codec, rawLength, stored.length, id);
      this.#buf.set(stored, at + RECORD_HEADER_SIZE);
      const crc = crc32(this.#buf.subarray(at, at + RECORD_HEADER_SIZE + stored.length));
      this.#buf.writeUInt32LE(crc, at + RECORD_HEADER_SIZE + stored.length);
      this.#bufLen += len;
    } else {
      // Larger than the buffer: write it straight through, without a copy.
      const head = Buffer.allocUnsafe(RECORD_HEADER_SIZE);
      writeRecordHeader(head, 0, kindCode, codec, rawLength, stored.length, id);
      const tail = Buffer.allocUnsafe(RECORD_TRAILER_SIZE);
      tail.writeUInt32LE(crc32(stored, crc32(head)), 0);
      this.#writeOut(head, head.length);
      this.#writeOut(stored, stored.length);
      this.#writeOut(tail, tail.length);
    }
    this.#records++;
    return offset;
  }

  /**
   * Appends a record framed elsewhere (header, stored bytes and CRC trailer:
   * see finishRecord); returns its offset. The caller vouches for the framing
   * (the store parses the header first). Large records are written straight
   * from the caller's memory; either way the bytes are consumed before this
   * returns.
   */
  appendRecord(record: Uint8Array): number {
    if (this.#sealed || this.#closed) throw new FerryError('INTERNAL', `pack ${this.name} is sealed; cannot append`);
    const offset = this.size;
    const len = record.length;
    if (this.#bufLen + len > this.#buf.length) this.drain();
    if (len * 4 <= this.#buf.length) {
      this.#buf.set(record, this.#bufLen);
      this.#bufLen += len;
    } else {
      this.drain();
      this.#writeOut(record, len);
    }
    this.#records++;
    return offset;
  }

  /** Writes buffered bytes to the file (no fsync), e.g. before reading them back. */
  drain(): void {
    if (this.#bufLen === 0) return;
    this.#writeOut(this.#buf, this.#bufLen);
    this.#bufLen = 0;
  }

  #writeOut(b: Uint8Array, length: number): void {
    let done = 0;
    while (done < length) {
      done += this.#io.write(this.#fd, b, done, length - done, this.#written + done);
    }
    this.#written += length;
  }

  /** Reads `length` bytes at `offset` (draining the buffer first if they are still in it). */
  read(offset: number, length: number): Buffer {
    if (this.#closed) throw new FerryError('INTERNAL', `pack ${this.name} writer is closed`);
    if (offset + length > this.#written) this.drain();
    const out = Buffer.allocUnsafe(length);
    const n = preadFully(this.#fd, out, length, offset);
    return n === length ? out : out.subarray(0, n);
  }

  /** Writes the rest, fsyncs and closes the file. The caller fsyncs the directory. */
  seal(): void {
    if (this.#sealed) return;
    this.drain();
    this.#io.fsync(this.#fd);
    this.#sealed = true;
    this.#close();
  }

  /** Closes and unlinks the file; never throws. For any failure before the index commit. */
  abandon(): void {
    this.#close();
    try {
      fs.unlinkSync(this.path);
    } catch {
      // already gone, or the disk is in trouble: recover() removes orphans
    }
  }

  /** Closes the file without removing it (as a crash would leave it). */
  close(): void {
    this.#close();
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#buf = Buffer.alloc(0);
    try {
      fs.closeSync(this.#fd);
    } catch {
      // nothing useful to do: the fd is gone either way
    }
  }
}

export interface ParsedRecord extends RecordHeader {
  kind: ObjectKind;
  /** the stored bytes (a view into the record buffer) */
  stored: Buffer;
  crcOk: boolean;
}

/**
 * Reads the record at `offset` whose stored length is `storedLength`, with one
 * pread. Returns a reason string when the bytes are not a well-formed record
 * of that length (short read, bad magic, length mismatch, bad CRC).
 */
export function readRecordAt(fd: number, offset: number, storedLength: number, options: { checkCrc?: boolean } = {}): ParsedRecord | string {
  const len = recordLength(storedLength);
  const rec = Buffer.allocUnsafe(len);
  const n = preadFully(fd, rec, len, offset);
  if (n < len) return `pack ends ${len - n} bytes short of the record (truncated)`;
  return parseRecordBuffer(rec, storedLength, options.checkCrc ?? true);
}

export function parseRecordBuffer(rec: Buffer, storedLength: number, checkCrc: boolean): ParsedRecord | string {
  const h = parseRecordHeader(rec);
  if (typeof h === 'string') return h;
  if (h.storedLength !== storedLength) return `record stored length ${h.storedLength} differs from the index (${storedLength})`;
  if (rec.length !== recordLength(storedLength)) return 'record length mismatch';
  const crcOk = checkCrc ? recordCrcOk(rec) : true;
  if (!crcOk) return 'record CRC mismatch';
  return {
    ...h,
    kind: kindFromCode(h.kindCode) as ObjectKind,
    stored: rec.subarray(RECORD_HEADER_SIZE, RECORD_HEADER_SIZE + storedLength),
    crcOk,
  };
}

export interface ScannedRecord {
  offset: number;
  kind: ObjectKind;
  codec: Codec;
  rawLength: number;
  storedLength: number;
  id: Buffer;
}

export interface ScanResult {
  /** records that parsed and passed their CRC, in file order */
  records: number;
  /** file length */
  size: number;
  /** offset just past the last good record: the pack's intact prefix */
  goodEnd: number;
  /** offset of the first bad or torn record, when there is one */
  badOffset?: number;
  reason?: string;
}

/**
 * Scans every record of the pack at `path`, calling `onRecord` for each good
 * one, and stops at the first bad one (torn tail, damaged header, CRC
 * mismatch). Reads sequentially with one read per record; memory is bounded
 * by the largest record.
 */
export function scanPack(path: string, onRecord?: (r: ScannedRecord) => void): ScanResult {
  const fd = fs.openSync(path, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const head = Buffer.allocUnsafe(PACK_HEADER_SIZE);
    if (preadFully(fd, head, PACK_HEADER_SIZE, 0) < PACK_HEADER_SIZE) {
      return { records: 0, size, goodEnd: 0, badOffset: 0, reason: 'file shorter than the pack header' };
    }
    checkPackHeader(head, `pack ${path}`);
    let offset = PACK_HEADER_SIZE;
    let records = 0;
    const rh = Buffer.allocUnsafe(RECORD_HEADER_SIZE);
    while (offset < size) {
      const bad = (reason: string): ScanResult => ({ records, size, goodEnd: offset, badOffset: offset, reason });
      if (preadFully(fd, rh, RECORD_HEADER_SIZE, offset) < RECORD_HEADER_SIZE) return bad('torn record header at end of file');
      const h = parseRecordHeader(rh);
      if (typeof h === 'string') return bad(h);
      const len = recordLength(h.storedLength);
      if (offset + len > size) return bad('torn record at end of file');
      const r = readRecordAt(fd, offset, h.storedLength);
      if (typeof r === 'string') return bad(r);
      onRecord?.({ offset, kind: r.kind, codec: r.codec as Codec, rawLength: r.rawLength, storedLength: r.storedLength, id: Buffer.from(r.id) });
      records++;
      offset += len;
    }
    return { records, size, goodEnd: offset };
  } finally {
    fs.closeSync(fd);
  }
}
