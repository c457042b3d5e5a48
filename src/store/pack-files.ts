// The pack directory tree and the writers that fill it: where a pack file lives
// (<dir>/packs/<xx>/<name>.pack), creating one under a fresh random name, the
// directory fsyncs that make a sealed pack's entry durable, and PackSink, which
// appends records into a sequence of packs and seals each at its target size,
// and what a failed pack write means to the caller (packWriteFailure).
//
// Owns: file names, creation, sealing and unlinking of pack files. Must never:
// index anything (the owner of a sink indexes a sealed pack, now or in GC's
// transaction), or leave a pack it sealed without its directory entry fsynced.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { RandomSource } from '../core/clock.ts';
import { FerryError, wrapIoError } from '../core/errors.ts';
import type { ObjectId } from '../core/ids.ts';
import { PackWriter, type PackFileIo } from './pack.ts';
import type { Codec } from './types.ts';

export const PACK_NAME_RE = /^[0-9a-f]{16}$/;
const PACK_FILE_RE = /^([0-9a-f]{16})\.pack$/;
const SUBDIR_RE = /^[0-9a-f]{2}$/;
const SQLITE_FULL = 13;

/** A pack sealed by a relocation (GC copy) but not yet indexed. */
export interface SealedPack {
  name: string;
  size: number;
  created: number;
  entries: SinkEntry[];
}

export interface SinkEntry {
  id: ObjectId;
  idBytes: Buffer;
  kindCode: number;
  codec: Codec;
  rawLength: number;
  storedLength: number;
  offset: number;
  /** relocations: the pack the object is moved from */
  fromPack?: number;
}

export interface PendingEntry extends SinkEntry {
  writer: PackWriter;
}

function isSqliteFull(err: unknown): boolean {
  // The catalog's wrapper (core/sqlite.ts) reports SQLITE_FULL as NO_SPACE, the SQLite error its cause.
  const e = err instanceof FerryError && err.code === 'NO_SPACE' ? err.cause : err;
  return (e as { errcode?: number })?.errcode === SQLITE_FULL;
}

/** Maps a failure while writing to the error the caller sees, after the open pack was abandoned. */
export function packWriteFailure(err: unknown, what: string, discarded: number): FerryError {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT' || isSqliteFull(err)) {
    return new FerryError(
      'NO_SPACE',
      `${what}: the disk is full. Nothing was half-written: the open pack was removed and the ${discarded} object(s) written to it since the last flush were discarded; free space and run the command again`,
      { cause: err, details: { discarded } },
    );
  }
  if (err instanceof FerryError) return err;
  return wrapIoError(err, `${what} (the open pack was removed; the ${discarded} object(s) written to it since the last flush were discarded)`);
}

/** The pack directory tree: names, paths, creation and directory fsyncs. */
export class PackFiles {
  readonly packsDir: string;
  #random: RandomSource;
  #io: PackFileIo;
  #bufferSize: number | undefined;
  /** subdirectories this process created whose parent entry is not yet fsynced */
  #newSubdirs = new Set<string>();

  constructor(dir: string, random: RandomSource, io: PackFileIo, bufferSize: number | undefined) {
    this.packsDir = path.join(dir, 'packs');
    this.#random = random;
    this.#io = io;
    this.#bufferSize = bufferSize;
    try {
      const created = fs.mkdirSync(this.packsDir, { recursive: true });
      if (created !== undefined) {
        // make the new directories themselves durable: sync each new one's parent
        let p = this.packsDir;
        while (p.length >= created.length) {
          io.fsyncDir(path.dirname(p));
          p = path.dirname(p);
        }
      }
    } catch (err) {
      throw wrapIoError(err, `creating the pack directory ${this.packsDir}`);
    }
  }

  subdir(name: string): string {
    return path.join(this.packsDir, name.slice(0, 2));
  }

  packPath(name: string): string {
    return path.join(this.subdir(name), `${name}.pack`);
  }

  /** A new pack file with a fresh random name. */
  create(): PackWriter {
    for (let attempt = 0; ; attempt++) {
      const name = Buffer.from(this.#random(8)).toString('hex');
      const sub = this.subdir(name);
      if (fs.mkdirSync(sub, { recursive: true }) !== undefined) this.#newSubdirs.add(sub);
      try {
        return new PackWriter(this.packPath(name), name, { io: this.#io, bufferSize: this.#bufferSize });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 5) throw err;
      }
    }
  }

  /** After a seal: make the file's directory entry durable. */
  syncDirsOf(name: string): void {
    const sub = this.subdir(name);
    this.#io.fsyncDir(sub);
    if (this.#newSubdirs.has(sub)) {
      this.#io.fsyncDir(this.packsDir);
      this.#newSubdirs.delete(sub);
    }
  }

  /** Unlinks packs (missing is fine) and fsyncs the directories touched. */
  unlink(names: string[]): void {
    const dirs = new Set<string>();
    for (const name of names) {
      try {
        fs.unlinkSync(this.packPath(name));
        dirs.add(this.subdir(name));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw wrapIoError(err, `removing pack ${name}`);
      }
    }
    for (const d of dirs) this.#io.fsyncDir(d);
  }

  /** Every file under packs/: pack names, and the paths of anything else. */
  list(): { packs: string[]; stray: string[] } {
    const packs: string[] = [];
    const stray: string[] = [];
    for (const sub of fs.readdirSync(this.packsDir, { withFileTypes: true })) {
      const subPath = path.join(this.packsDir, sub.name);
      if (!sub.isDirectory() || !SUBDIR_RE.test(sub.name)) {
        stray.push(subPath);
        continue;
      }
      for (const f of fs.readdirSync(subPath)) {
        const m = PACK_FILE_RE.exec(f);
        if (m && m[1].startsWith(sub.name)) packs.push(m[1]);
        else stray.push(path.join(subPath, f));
      }
    }
    return { packs, stray };
  }
}

/**
 * Writes records into a sequence of packs, sealing each (file and directory
 * fsynced) once it reaches the target size. What happens to a sealed pack
 * (index it now, or later in GC's transaction) is the owner's business.
 */
export class PackSink {
  #files: PackFiles;
  #target: number;
  #writer: PackWriter | null = null;
  #entries: SinkEntry[] = [];
  /** names of packs this sink created that are not yet indexed or removed */
  readonly unindexed = new Set<string>();

  constructor(files: PackFiles, target: number) {
    this.#files = files;
    this.#target = target;
  }

  get writer(): PackWriter | null {
    return this.#writer;
  }

  get count(): number {
    return this.#entries.length;
  }

  append(e: Omit<SinkEntry, 'offset'>, stored: Uint8Array): PendingEntry {
    if (!this.#writer) {
      this.#writer = this.#files.create();
      this.unindexed.add(this.#writer.name);
    }
    const offset = this.#writer.append(e.kindCode, e.codec, e.rawLength, e.idBytes, stored);
    const entry: PendingEntry = { ...e, offset, writer: this.#writer };
    this.#entries.push(entry);
    return entry;
  }

  /** Appends a record framed by the producer (see PackWriter.appendRecord). */
  appendRecord(e: Omit<SinkEntry, 'offset'>, record: Uint8Array): PendingEntry {
    if (!this.#writer) {
      this.#writer = this.#files.create();
      this.unindexed.add(this.#writer.name);
    }
    const offset = this.#writer.appendRecord(record);
    const entry: PendingEntry = { ...e, offset, writer: this.#writer };
    this.#entries.push(entry);
    return entry;
  }

  get full(): boolean {
    return this.#writer !== null && this.#writer.size >= this.#target;
  }

  /** Seals the open pack (file fsync, then directory fsync); null when none is open. */
  seal(created: number): SealedPack | null {
    const w = this.#writer;
    if (!w) return null;
    w.seal();
    this.#files.syncDirsOf(w.name);
    const sealed: SealedPack = { name: w.name, size: w.size, created, entries: this.#entries };
    this.#writer = null;
    this.#entries = [];
    return sealed;
  }

  /** Closes and unlinks the open pack and the given sealed-but-unindexed ones. */
  abandon(sealed: SealedPack[] = []): void {
    if (this.#writer) {
      this.#writer.abandon();
      this.unindexed.delete(this.#writer.name);
    }
    this.#writer = null;
    this.#entries = [];
    for (const s of sealed) {
      try {
        fs.unlinkSync(this.#files.packPath(s.name));
      } catch {
        // recover() removes orphans
      }
      this.unindexed.delete(s.name);
    }
  }

  /** Closes the open pack's file and leaves it on disk, as a crash would. */
  drop(): void {
    this.#writer?.close();
    this.#writer = null;
    this.#entries = [];
  }

  indexed(name: string): void {
    this.unindexed.delete(name);
  }
}
