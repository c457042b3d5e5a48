// Reading an object's record back and checking it against the index and its id:
// from an indexed pack through a small cache of open file descriptors, or from
// the open pack writer for an object still pending; and verify, which checks
// every indexed object that way.
//
// Owns: the descriptor cache (at most MAX_OPEN_PACK_FDS, least recently used
// closed first) and the checks on a record (CRC, header against the index,
// bounded decompression, hash). Must never hand out bytes that failed a check:
// a damaged record is OBJECT_CORRUPT, and its pack is marked lost.
import * as fs from 'node:fs';
import { FerryError, wrapIoError } from '../core/errors.ts';
import { hashBytes, objectIdFromBytes, objectIdToBytes, type ObjectId } from '../core/ids.ts';
import { zstdDecodeSync } from './codec.ts';
import type { ObjectIndex } from './object-index.ts';
import { PACK_NAME_RE, type PackFiles, type PendingEntry } from './pack-files.ts';
import { parseRecordBuffer, readRecordAt, recordLength, type ParsedRecord } from './pack.ts';
import { CODEC_ZSTD, type BadObject, type LostProblem, type VerifyReport } from './types.ts';

const MAX_OPEN_PACK_FDS = 64;
const EMPTY = Buffer.alloc(0);

/** Where an object's record is: in an indexed pack (`lost`: one marked lost), or in the open writer. */
export type Location =
  | { pending: false; id: ObjectId; kindCode: number; pack: number; offset: number; storedLength: number; rawLength: number; codec: number; lost?: boolean }
  | ({ pending: true } & PendingEntry);

export type CheckResult = { ok: true; raw: Buffer; record: ParsedRecord } | { ok: false; reason: string; problem: 'missing' | 'damaged' };

/** 'full' decodes and hashes the content; 'decode' decodes without hashing; 'crc' stops after the record's CRC and header. */
export type CheckDepth = 'full' | 'decode' | 'crc';

/** What the reader needs from the store that owns it. */
export interface ReaderParts {
  /** an object written since the last flush, in the open pack */
  pending: (id: ObjectId) => PendingEntry | undefined;
  /** reading back a pending object failed: the store abandons the open pack and throws */
  failWrite: (err: unknown, what: string) => never;
  /** marks a pack lost once (the store counts it as a removal) */
  markLost: (packId: number, problem: LostProblem, detail: string) => boolean;
}

export class PackReader {
  #files: PackFiles;
  #index: ObjectIndex;
  #parts: ReaderParts;
  #fds = new Map<number, number>();
  #closed = false;

  constructor(files: PackFiles, index: ObjectIndex, parts: ReaderParts) {
    this.#files = files;
    this.#index = index;
    this.#parts = parts;
  }

  locate(id: ObjectId): Location | undefined {
    const p = this.#parts.pending(id);
    if (p) return { pending: true, ...p };
    const row = this.#index.locate(id);
    if (!row) return undefined;
    return { pending: false, id, kindCode: row.kind, pack: row.pack, offset: row.offset, storedLength: row.stored_length, rawLength: row.raw_length, codec: row.codec, lost: row.lost === 1 };
  }

  /** One object's record, checked to `depth` (see check); throws OBJECT_NOT_FOUND, or OBJECT_CORRUPT (marking its pack lost). */
  read(id: ObjectId, checkCrc: boolean, depth: CheckDepth): { loc: Location; r: Extract<CheckResult, { ok: true }> } {
    const loc = this.locate(id);
    if (!loc) throw new FerryError('OBJECT_NOT_FOUND', `object ${id} is not in the store; run \`ferry verify\` to find which snapshots need it`, { details: { id } });
    const r = this.check(loc, checkCrc, depth);
    if (!r.ok) throw this.#failedRead(loc, r);
    return { loc, r };
  }

  /** The error for a record that failed its checks; an indexed one's pack is marked lost first. */
  #failedRead(loc: Location, r: { reason: string; problem: 'missing' | 'damaged' }): FerryError {
    if (!loc.pending) this.#parts.markLost(loc.pack, r.problem, `object ${loc.id} at offset ${loc.offset}: ${r.reason}`);
    const pack = loc.pending ? `${loc.writer.name} (open)` : this.#index.packName(loc.pack);
    return new FerryError('OBJECT_CORRUPT', `object ${loc.id} in pack ${pack} at offset ${loc.offset} is damaged: ${r.reason}; run \`ferry verify\` to find what it affects`, {
      details: { id: loc.id, pack, offset: loc.offset, reason: r.reason },
    });
  }

  /** Checks one record fully; undefined when sound, else what is wrong (an indexed one's pack is marked lost). */
  verify(loc: Location): BadObject | undefined {
    const r = this.check(loc, true);
    if (r.ok) return undefined;
    if (!loc.pending) this.#parts.markLost(loc.pack, r.problem, `object ${loc.id} at offset ${loc.offset}: ${r.reason}`);
    return { id: loc.id, pack: loc.pending ? '' : this.#index.packName(loc.pack), offset: loc.offset, reason: r.reason };
  }

  /** Checks every indexed object, in pack and offset order; reports each damaged one to `onBad` and in the result. */
  verifyAll(onBad?: (bad: BadObject) => void): VerifyReport {
    const report: VerifyReport = { checked: 0, rawBytes: 0, bad: [] };
    for (const r of this.#index.iterateRows()) {
      const id = objectIdFromBytes(r.id);
      const bad = this.verify({ pending: false, id, kindCode: r.kind, pack: r.pack, offset: r.offset, storedLength: r.stored_length, rawLength: r.raw_length, codec: r.codec });
      report.checked++;
      report.rawBytes += r.raw_length;
      if (bad) {
        report.bad.push(bad);
        onBad?.(bad);
      }
    }
    return report;
  }

  /**
   * Reads one record and checks it against the index and the id. Never throws for damage.
   * `depth` 'crc' returns the stored bytes with an empty `raw`: for a sender, whose receiver
   * verifies every object by its hash anyway.
   */
  check(loc: Location, checkCrc: boolean, depth: CheckDepth = 'full'): CheckResult {
    let rec: ParsedRecord | string;
    if (loc.pending) {
      let bytes: Buffer;
      try {
        bytes = loc.writer.read(loc.offset, recordLength(loc.storedLength));
      } catch (err) {
        // reading back a pending object drains the write buffer: a failed write tears the open pack
        this.#parts.failWrite(err, `writing the open pack to read object ${loc.id}`);
      }
      rec = parseRecordBuffer(bytes, loc.storedLength, checkCrc);
    } else {
      const fd = this.#packFd(loc.pack);
      if (typeof fd === 'string') return { ok: false, reason: fd, problem: 'missing' };
      try {
        rec = readRecordAt(fd, loc.offset, loc.storedLength, { checkCrc });
      } catch (err) {
        throw wrapIoError(err, `reading pack ${this.#index.packName(loc.pack)}`);
      }
    }
    if (typeof rec === 'string') return { ok: false, reason: rec, problem: 'damaged' };
    if (!rec.id.equals(objectIdToBytes(loc.id))) return { ok: false, reason: `the record holds object ${objectIdFromBytes(rec.id)}`, problem: 'damaged' };
    if (rec.kindCode !== loc.kindCode || rec.codec !== loc.codec || rec.rawLength !== loc.rawLength) return { ok: false, reason: 'record header differs from the index', problem: 'damaged' };
    if (depth === 'crc') return { ok: true, raw: EMPTY, record: rec };
    let raw: Buffer;
    if (rec.codec === CODEC_ZSTD) {
      try {
        // the limit keeps a forged length or a zstd bomb from ballooning memory
        raw = zstdDecodeSync(rec.stored, rec.rawLength);
      } catch (err) {
        return { ok: false, reason: `zstd: ${(err as Error).message}`, problem: 'damaged' };
      }
    } else {
      raw = rec.stored;
    }
    if (raw.length !== rec.rawLength) return { ok: false, reason: `decoded ${raw.length} bytes, expected ${rec.rawLength}`, problem: 'damaged' };
    if (depth === 'full' && hashBytes(raw) !== loc.id) return { ok: false, reason: 'content does not match its hash', problem: 'damaged' };
    return { ok: true, raw, record: rec };
  }

  /** An open fd for an indexed pack, or the reason there is none. */
  #packFd(packId: number): number | string {
    if (this.#closed) throw new FerryError('INTERNAL', 'the object store is closed');
    const cached = this.#fds.get(packId);
    if (cached !== undefined) {
      this.#fds.delete(packId);
      this.#fds.set(packId, cached); // LRU: most recent last
      return cached;
    }
    const name = this.#index.packName(packId);
    if (!PACK_NAME_RE.test(name)) return `pack ${name} has no packs row`;
    let fd: number;
    try {
      fd = fs.openSync(this.#files.packPath(name), 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return `pack file ${this.#files.packPath(name)} is missing`;
      throw wrapIoError(err, `opening pack ${name}`, { writing: false });
    }
    if (this.#fds.size >= MAX_OPEN_PACK_FDS) {
      const [oldId, oldFd] = this.#fds.entries().next().value as [number, number];
      this.#fds.delete(oldId);
      fs.closeSync(oldFd);
    }
    this.#fds.set(packId, fd);
    return fd;
  }

  /** Closes the pack's cached fd, if any (before its file is unlinked). */
  closeFd(packId: number): void {
    const fd = this.#fds.get(packId);
    if (fd !== undefined) {
      this.#fds.delete(packId);
      try {
        fs.closeSync(fd);
      } catch {
        // already closed
      }
    }
  }

  /** Closes every cached fd; reads of indexed packs fail from now on. */
  close(): void {
    for (const id of [...this.#fds.keys()]) this.closeFd(id);
    this.#closed = true;
  }
}
