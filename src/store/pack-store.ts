// The content-addressed object store: objects appended to pack files under
// <dir>/packs/<xx>/<name>.pack and indexed in the site catalog (schema.ts).
//
// Owns: the pack files, the `packs` and `objects` tables, the durability
// order between them, verification on read, and startup recovery. GC policy
// lives in gc.ts and drives the relocation primitives below.
//
// Must never: index bytes that are not durable (a pack is fsynced, and its
// directory, before its rows are inserted, all in one transaction); hand out
// bytes that were not checked against their id; read a whole pack to get one
// object; count an object of a lost pack (lost_packs: its file missing or
// damaged) as present, which would let new snapshots deduplicate against
// bytes that are gone. Single writer: the caller holds the site lock (one
// PackStore per store directory per process).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { constants as zc, zstdCompressSync } from 'node:zlib';
import { zstdDecodeSync } from './codec.ts';
import { systemClock, systemRandom, type Clock, type RandomSource } from '../core/clock.ts';
import { FerryError, wrapIoError } from '../core/errors.ts';
import { hashBytes, objectIdFromBytes, objectIdToBytes, parseObjectId, type ObjectId } from '../core/ids.ts';
import type { Sqlite, SqlValue } from '../core/sqlite.ts';
import { sharedIndexRef, type SharedIndexRef } from './index-probe.ts';
import { LOST_PACKS_SQL } from './schema.ts';
import {
  KIND_CODES,
  MAX_OBJECT_LENGTH,
  PackWriter,
  RECORD_OVERHEAD,
  parseRecordHeader,
  isCodec,
  kindFromCode,
  nodePackFileIo,
  parseRecordBuffer,
  readRecordAt,
  recordLength,
  type PackFileIo,
  type ParsedRecord,
} from './pack.ts';
import {
  CODEC_NONE,
  CODEC_ZSTD,
  OBJECT_KINDS,
  type Codec,
  type ObjectInfo,
  type ObjectKind,
  type ObjectReader,
  type ObjectWriter,
  type PreparedObject,
} from './types.ts';

export const DEFAULT_PACK_TARGET_SIZE = 64 << 20;
export const DEFAULT_ZSTD_LEVEL = 3;
/** Objects smaller than this are stored as they are: compression would barely pay. */
export const MIN_COMPRESS_LENGTH = 512;
/** Compressed bytes are kept only when they save at least this fraction. */
export const MIN_COMPRESS_SAVING = 0.1;
/** Objects at least this large are compressed only if a sample of them compresses. */
const COMPRESS_SAMPLE_MIN = 256 << 10;
const COMPRESS_SAMPLE_LENGTH = 32 << 10;
/** the sample must shrink to this fraction (looser than MIN_COMPRESS_SAVING: the whole may do better) */
const COMPRESS_SAMPLE_KEEP = 0.97;
const MAX_OPEN_PACK_FDS = 64;
const SQLITE_FULL = 13;

export interface PackStoreOptions {
  db: Sqlite;
  /** <home>/store */
  dir: string;
  /** a pack is sealed once it reaches this many bytes; default 64 MiB */
  packTargetSize?: number;
  /** zstd level for `put`; 0 stores every object uncompressed; default 3 */
  zstdLevel?: number;
  /** bytes a pack writer buffers per write(2); default 4 MiB */
  writeBufferSize?: number;
  clock?: Clock;
  random?: RandomSource;
  /** file writes and fsyncs of pack writers; tests inject failures here */
  io?: PackFileIo;
}

export interface PackRecord {
  id: number;
  name: string;
  size: number;
  objectCount: number;
  state: 'live' | 'obsolete';
  created: number;
}

/** One object row of the index, with where it lives. */
export interface IndexedObject extends ObjectInfo {
  offset: number;
  packName: string;
}

/** An index row as gc.ts reads it. */
export interface PackObjectRow {
  id: ObjectId;
  kindCode: number;
  offset: number;
  storedLength: number;
  rawLength: number;
  codec: Codec;
}

export interface StoreStats {
  /** live packs */
  packs: number;
  /** indexed objects */
  objects: number;
  /** bytes of live pack files on disk (headers and dead objects included) */
  storedBytes: number;
  /** sum of the indexed objects' uncompressed lengths */
  rawBytes: number;
  /** objects written since the last flush (not yet indexed) */
  pendingObjects: number;
  /** packs marked lost (file missing or damaged); their objects count as absent */
  lostPacks: number;
  /** indexed objects still in lost packs (not stored again since) */
  lostObjects: number;
}

/** Why a pack is lost: recover() found its file missing or of the wrong size, or a read found a record damaged. */
export type LostProblem = 'missing' | 'truncated' | 'oversized' | 'damaged';

export interface LostPack {
  pack: string;
  id: number;
  problem: LostProblem;
  detail: string;
  /** when it was found (ms) */
  at: number;
  /** objects whose row still points into it: neither stored again nor collected */
  objects: number;
}

export interface BadObject {
  id: ObjectId;
  /** pack name ('' while pending) */
  pack: string;
  offset: number;
  reason: string;
}

export interface VerifyReport {
  checked: number;
  rawBytes: number;
  bad: BadObject[];
}

export interface DamagedPack {
  pack: string;
  id: number;
  problem: 'missing' | 'truncated' | 'oversized';
  expectedSize: number;
  /** -1 when missing */
  actualSize: number;
  /** indexed objects whose record lies (partly) beyond the end of the file */
  objectsAffected: number;
}

export interface RecoveryReport {
  /** pack files that had no `packs` row (a writer died before its index commit): deleted */
  orphanPacksDeleted: string[];
  /** packs GC had marked obsolete but not yet removed: files unlinked, rows deleted */
  obsoletePacksRemoved: string[];
  /** live packs whose file is missing or of the wrong size: reported, never dropped */
  damagedPacks: DamagedPack[];
  /** files under packs/ that are not named like packs: left alone */
  strayFiles: string[];
  /**
   * packs marked lost earlier (missing, or of the wrong size) whose file is
   * back at its recorded size (restored from a backup): their objects count
   * as present again
   */
  packsFound: string[];
}

/** A pack sealed by a relocation (GC copy) but not yet indexed. */
export interface SealedPack {
  name: string;
  size: number;
  created: number;
  entries: SinkEntry[];
}

interface SinkEntry {
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

interface PendingEntry extends SinkEntry {
  writer: PackWriter;
}

interface ObjectRow {
  kind: number;
  pack: number;
  offset: number;
  stored_length: number;
  raw_length: number;
  codec: number;
}

/**
 * Whether the catalog has the lost_packs table, creating it when it can (a
 * catalog made before the table existed, opened for writing). A read-only
 * catalog without it has nothing marked lost.
 */
function ensureLostTable(db: Sqlite): boolean {
  const has = () => db.get("SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = 'lost_packs'") !== undefined;
  if (has()) return true;
  try {
    db.exec(LOST_PACKS_SQL);
  } catch {
    // read-only
  }
  return has();
}

/** Where an object's record is: in an indexed pack (`lost`: one marked lost), or in the open writer. */
type Location =
  | { pending: false; id: ObjectId; kindCode: number; pack: number; offset: number; storedLength: number; rawLength: number; codec: number; lost?: boolean }
  | ({ pending: true } & PendingEntry);

const EMPTY = Buffer.alloc(0);

type CheckResult = { ok: true; raw: Buffer; record: ParsedRecord } | { ok: false; reason: string; problem: 'missing' | 'damaged' };

const INSERT_ROWS = 64;
const INSERT_ONE_SQL = 'INSERT INTO objects (id, kind, pack, offset, stored_length, raw_length, codec) VALUES (?, ?, ?, ?, ?, ?, ?)';
const INSERT_MANY_SQL = INSERT_ONE_SQL + ', (?, ?, ?, ?, ?, ?, ?)'.repeat(INSERT_ROWS - 1);
// An object stored again after its pack was lost takes over the old row. Only a row in a lost pack
// is ever replaced: `has` said the object was absent, and a row in a sound pack never is.
const TAKE_OVER_LOST =
  ' ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, pack = excluded.pack, offset = excluded.offset, stored_length = excluded.stored_length,' +
  ' raw_length = excluded.raw_length, codec = excluded.codec WHERE objects.pack IN (SELECT pack FROM lost_packs)';
/** Present: a row, in a pack that is not lost. */
const HAS_SQL = 'SELECT 1 AS x FROM objects o WHERE o.id = ? AND NOT EXISTS (SELECT 1 FROM lost_packs l WHERE l.pack = o.pack)';
const LOCATE_SQL =
  'SELECT o.kind AS kind, o.pack AS pack, o.offset AS offset, o.stored_length AS stored_length, o.raw_length AS raw_length, o.codec AS codec,' +
  ' EXISTS (SELECT 1 FROM lost_packs l WHERE l.pack = o.pack) AS lost FROM objects o WHERE o.id = ?';
/** The pack of an object that is present (see durable). */
const DURABLE_SQL = 'SELECT o.pack FROM objects o WHERE o.id = ? AND NOT EXISTS (SELECT 1 FROM lost_packs l WHERE l.pack = o.pack)';
// The same without lost_packs: a catalog opened read-only before that table existed (nothing in it is marked lost).
const HAS_SQL_NO_LOST = 'SELECT 1 AS x FROM objects WHERE id = ?';
const DURABLE_SQL_NO_LOST = 'SELECT pack FROM objects WHERE id = ?';
const LOCATE_SQL_NO_LOST = 'SELECT kind, pack, offset, stored_length, raw_length, codec, 0 AS lost FROM objects WHERE id = ?';

const PACK_NAME_RE = /^[0-9a-f]{16}$/;
const PACK_FILE_RE = /^([0-9a-f]{16})\.pack$/;
const SUBDIR_RE = /^[0-9a-f]{2}$/;

function isSqliteFull(err: unknown): boolean {
  // The catalog's wrapper (core/sqlite.ts) reports SQLITE_FULL as NO_SPACE, the SQLite error its cause.
  const e = err instanceof FerryError && err.code === 'NO_SPACE' ? err.cause : err;
  return (e as { errcode?: number })?.errcode === SQLITE_FULL;
}

/** Maps a failure while writing to the error the caller sees, after the open pack was abandoned. */
function writeFailure(err: unknown, what: string, discarded: number): FerryError {
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
class PackFiles {
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
class PackSink {
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

/**
 * GC's copy path: live objects are appended to new packs with no dedup (their
 * rows already exist); the new packs are sealed but indexed only by
 * PackStore.commitRelocation, in the transaction that retires the old packs.
 */
export class Relocation {
  #store: PackStore;
  #sink: PackSink;
  #clock: Clock;
  #sealed: SealedPack[] = [];
  #finished = false;

  constructor(store: PackStore, sink: PackSink, clock: Clock) {
    this.#store = store;
    this.#sink = sink;
    this.#clock = clock;
  }

  /** Appends a verified object's stored bytes, to be moved from `fromPack`. */
  copy(obj: { id: ObjectId; kindCode: number; codec: Codec; rawLength: number; stored: Uint8Array; fromPack: number }): void {
    if (this.#finished) throw new FerryError('INTERNAL', 'relocation already finished');
    this.#sink.append(
      { id: obj.id, idBytes: objectIdToBytes(obj.id), kindCode: obj.kindCode, codec: obj.codec, rawLength: obj.rawLength, storedLength: obj.stored.length, fromPack: obj.fromPack },
      obj.stored,
    );
    if (this.#sink.full) this.#seal();
  }

  #seal(): void {
    const s = this.#sink.seal(this.#clock.now());
    if (s) this.#sealed.push(s);
  }

  get copied(): number {
    return this.#sealed.reduce((n, s) => n + s.entries.length, 0) + this.#sink.count;
  }

  /** Seals the last pack: every copy is now durable (not yet indexed). */
  finish(): SealedPack[] {
    if (!this.#finished) {
      this.#seal();
      this.#finished = true;
    }
    return this.#sealed;
  }

  /** Removes every pack this relocation wrote; for failures before the commit. */
  abandon(): void {
    this.#sink.abandon(this.#sealed);
    this.#sealed = [];
    this.#finished = true;
    this.#store.forgetRelocation(this.#sink);
  }

  /** Forgets the packs without removing them (a simulated crash); recover() deletes them. */
  drop(): void {
    this.#sink.drop();
    this.#finished = true;
    this.#store.forgetRelocation(this.#sink);
  }

  /** @internal */
  get sink(): PackSink {
    return this.#sink;
  }
}

/**
 * One writer's run over the store (a capture, one request of an incoming
 * transfer): the store's writes, refused once a failed write has discarded
 * the objects pending in the open pack (PackStore.discardEpoch), whoever
 * made it. A writer relies on what it stored, and on what it found pending
 * and skipped, being kept: what it writes next may stand above those objects
 * (a tree above its chunks), so after a discard nothing more of its run may
 * be stored. `check()` after the run's flush says whether anything it relied
 * on was discarded after its last write.
 */
export class WriteSession {
  readonly #store: PackStore;
  readonly #epoch: number;

  constructor(store: PackStore) {
    this.#store = store;
    this.#epoch = store.discardEpoch;
  }

  has(id: ObjectId): boolean {
    return this.#store.has(id);
  }

  put(kind: ObjectKind, raw: Uint8Array): { id: ObjectId; added: boolean } {
    this.check();
    return this.#store.put(kind, raw);
  }

  putPrepared(obj: PreparedObject, options?: { trusted?: boolean }): boolean {
    this.check();
    return this.#store.putPrepared(obj, options);
  }

  putRecord(record: Uint8Array, options: { trusted: true; absentAt?: number }): { id: ObjectId; added: boolean } {
    this.check();
    return this.#store.putRecord(record, options);
  }

  sharedIndex(): SharedIndexRef | undefined {
    return this.#store.sharedIndex();
  }

  get commitEpoch(): number {
    return this.#store.commitEpoch;
  }

  /** Throws (the failure's code: NO_SPACE, IO) when pending objects were discarded since this session began. */
  check(): void {
    if (this.#store.discardEpoch === this.#epoch) return;
    const cause = this.#store.lastDiscard;
    throw new FerryError(
      cause?.code ?? 'IO',
      `objects written since this began were discarded when a write to the store failed (${cause?.message ?? 'a write failed'}); nothing more of it was stored`,
      { cause, details: { discarded: true } },
    );
  }
}

export class PackStore implements ObjectReader, ObjectWriter {
  readonly dir: string;
  readonly db: Sqlite;
  /** random per instance: with writeEpoch, lets gc.ts notice writes between its plan and execute */
  readonly instanceToken: string;
  #files: PackFiles;
  #target: number;
  #zstdLevel: number;
  #clock: Clock;
  #sink: PackSink;
  #relocations = new Set<PackSink>();
  #pending = new Map<ObjectId, PendingEntry>();
  /** the pending map of the last indexed pack (see putRecord's absentAt) */
  #lastIndexed = new Map<ObjectId, PendingEntry>();
  /** counts index commits of this instance (packs indexed, GC commits) */
  #commitEpoch = 0;
  #removalEpoch = 0;
  /** see discardEpoch */
  #discardEpoch = 0;
  #lastDiscard: FerryError | undefined;
  #sharedIndex: SharedIndexRef | null | undefined;
  #packNames = new Map<number, string>();
  #fds = new Map<number, number>();
  #epoch = 0;
  #closed = false;
  /** the catalog has lost_packs (see ensureLostTable) */
  #lostTable: boolean;
  /** packs this instance knows are marked lost (so a read of each marks it once) */
  #lostKnown = new Set<number>();
  /** see onAdded */
  #addedObservers = new Set<(id: ObjectId, kind: ObjectKind, storedLength: number) => void>();

  constructor(options: PackStoreOptions) {
    this.db = options.db;
    this.dir = options.dir;
    this.#target = options.packTargetSize ?? DEFAULT_PACK_TARGET_SIZE;
    if (!Number.isSafeInteger(this.#target) || this.#target < 1) throw new FerryError('CONFIG_INVALID', `packTargetSize must be a positive integer, got ${options.packTargetSize}`);
    this.#zstdLevel = options.zstdLevel ?? DEFAULT_ZSTD_LEVEL;
    this.#clock = options.clock ?? systemClock;
    const random = options.random ?? systemRandom;
    this.instanceToken = Buffer.from(random(8)).toString('hex');
    this.#files = new PackFiles(options.dir, random, options.io ?? nodePackFileIo, options.writeBufferSize);
    this.#sink = new PackSink(this.#files, this.#target);
    this.#lostTable = ensureLostTable(this.db);
  }

  /** Opens the store and runs startup recovery (call while holding the site lock). */
  static open(options: PackStoreOptions): { store: PackStore; recovery: RecoveryReport } {
    const store = new PackStore(options);
    return { store, recovery: store.recover() };
  }

  get packsDir(): string {
    return this.#files.packsDir;
  }

  packPath(name: string): string {
    if (!PACK_NAME_RE.test(name)) throw new FerryError('INTERNAL', `not a pack name: ${JSON.stringify(name)}`);
    return this.#files.packPath(name);
  }

  /** Objects written since the last flush. */
  get pendingCount(): number {
    return this.#pending.size;
  }

  /**
   * Counts the times objects left this store's index or became unreadable
   * (a GC relocation retired packs, a pack was found lost): a reader that
   * remembers "everything below X is here" forgets it when this changes.
   */
  get removalEpoch(): number {
    return this.#removalEpoch;
  }

  /**
   * Counts the times a failed write (or fsync, or index commit) abandoned the
   * open pack and discarded every pending object in it, whoever wrote them. A
   * writer that relies on objects it saw pending (stored by it or by another
   * writer since the last flush: `has` says yes) being kept, as a receiver
   * storing trees above chunks does, must stop when this changes.
   */
  get discardEpoch(): number {
    return this.#discardEpoch;
  }

  /** A writer's run that stops at the first discard of pending objects (see WriteSession). */
  session(): WriteSession {
    return new WriteSession(this);
  }

  /** The error of the last failure that discarded pending objects (see discardEpoch). */
  get lastDiscard(): FerryError | undefined {
    return this.#lastDiscard;
  }

  /** Counts this instance's index commits; see `putRecord`'s absentAt. */
  get commitEpoch(): number {
    return this.#commitEpoch;
  }

  /**
   * Where other threads may look objects up (read-only) while this store
   * writes: producers use it to skip work on objects already stored. Undefined
   * for a catalog that is not a plain file.
   */
  sharedIndex(): SharedIndexRef | undefined {
    if (this.#sharedIndex === undefined) this.#sharedIndex = sharedIndexRef(this.db.path) ?? null;
    return this.#sharedIndex ?? undefined;
  }

  /** Counts put/putPrepared calls (added or deduplicated) in this instance. */
  get writeEpoch(): number {
    return this.#epoch;
  }

  // ---- reading ----

  /**
   * Whether the store holds the object. An object whose pack is lost does
   * not count: storing it again (a new snapshot reads it from the source, a
   * replication receiver asks for it) is how a store heals.
   */
  has(id: ObjectId): boolean {
    if (this.#pending.has(id)) return true;
    return this.#indexed(id);
  }

  /**
   * Which of `ids` are here durably, for a peer asking which objects this
   * site lacks (a sender skips everything below an object said to be here):
   * an index row in a pack that is not marked lost and whose file is there at
   * its recorded size. Each pack is checked once per call; one whose file is
   * missing or of another size is marked lost here (as recover() would at the
   * next open), so its objects are asked for again. Objects pending in the
   * open pack do not count: a failed write may still discard them.
   */
  durable(ids: ObjectId[]): boolean[] {
    const packs = ids.map((id) => this.db.get<{ pack: number }>(this.#lostTable ? DURABLE_SQL : DURABLE_SQL_NO_LOST, objectIdToBytes(id))?.pack);
    const sound = new Map<number, boolean>();
    for (const pack of packs) if (pack !== undefined && !sound.has(pack)) sound.set(pack, this.#packFileSound(pack));
    return packs.map((pack) => pack !== undefined && sound.get(pack) === true);
  }

  /** The pack's file is there at its recorded size; if not, the pack is marked lost. */
  #packFileSound(packId: number): boolean {
    const row = this.db.get<{ name: string; size: number }>("SELECT name, size FROM packs WHERE id = ? AND state = 'live'", packId);
    if (!row) return false;
    let actual = -1;
    try {
      actual = fs.statSync(this.#files.packPath(row.name)).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw wrapIoError(err, `inspecting pack ${row.name}`);
    }
    if (actual === row.size) return true;
    const problem = actual < 0 ? 'missing' : actual < row.size ? 'truncated' : 'oversized';
    this.#markLost(packId, problem, actual < 0 ? 'the pack file is missing' : `the pack file is ${actual} bytes, the index recorded ${row.size}`);
    return false;
  }

  /** Like `has`: undefined for an object of a lost pack (`get` still tries to read it, to salvage what it can). */
  info(id: ObjectId): ObjectInfo | undefined {
    const loc = this.#locate(id);
    if (!loc || (!loc.pending && loc.lost)) return undefined;
    return {
      id,
      kind: kindFromCode(loc.kindCode) ?? 'chunk',
      rawLength: loc.rawLength,
      storedLength: loc.storedLength,
      codec: loc.codec as Codec,
      // 0 while the object is pending in the open pack
      pack: loc.pending ? 0 : loc.pack,
    };
  }

  get(id: ObjectId): Buffer {
    return this.#read(id, false, 'full').r.raw;
  }

  /**
   * The object's bytes checked by its record's CRC and header, decompressed
   * with a bound, but not hashed again: for readers whose result is verified
   * anyway (the replica apply, whose result is captured and compared with the
   * snapshot). Throws like `get`.
   */
  getUnhashed(id: ObjectId): Buffer {
    return this.#read(id, true, 'decode').r.raw;
  }

  /**
   * The verified stored form of an object (for GC copies: the bytes move
   * without recompression). Throws like `get`. `crcOnly`: check the record's
   * CRC and header, not the content's hash (for a sender: its receiver
   * hashes every object).
   */
  readStored(id: ObjectId, opts: { crcOnly?: boolean } = {}): { kindCode: number; codec: Codec; rawLength: number; stored: Buffer; pack: number } {
    const { loc, r } = this.#read(id, true, opts.crcOnly ? 'crc' : 'full');
    return { kindCode: loc.kindCode, codec: loc.codec as Codec, rawLength: loc.rawLength, stored: r.record.stored, pack: loc.pending ? 0 : loc.pack };
  }

  /** One object's record, checked to `depth` (see #check); throws OBJECT_NOT_FOUND, or OBJECT_CORRUPT (marking its pack lost). */
  #read(id: ObjectId, checkCrc: boolean, depth: 'full' | 'decode' | 'crc'): { loc: Location; r: Extract<CheckResult, { ok: true }> } {
    const loc = this.#locate(id);
    if (!loc) throw new FerryError('OBJECT_NOT_FOUND', `object ${id} is not in the store; run \`ferry verify\` to find which snapshots need it`, { details: { id } });
    const r = this.#check(loc, checkCrc, depth);
    if (!r.ok) throw this.#failedRead(loc, r);
    return { loc, r };
  }

  #locate(id: ObjectId): Location | undefined {
    const p = this.#pending.get(id);
    if (p) return { pending: true, ...p };
    const row = this.db.get<ObjectRow & { lost: number }>(this.#lostTable ? LOCATE_SQL : LOCATE_SQL_NO_LOST, objectIdToBytes(id));
    if (!row) return undefined;
    return { pending: false, id, kindCode: row.kind, pack: row.pack, offset: row.offset, storedLength: row.stored_length, rawLength: row.raw_length, codec: row.codec, lost: row.lost === 1 };
  }

  /** The error for a record that failed its checks; an indexed one's pack is marked lost first. */
  #failedRead(loc: Location, r: { reason: string; problem: 'missing' | 'damaged' }): FerryError {
    if (!loc.pending) this.#markLost(loc.pack, r.problem, `object ${loc.id} at offset ${loc.offset}: ${r.reason}`);
    return this.#corrupt(loc, r.reason);
  }

  /**
   * Records that a pack is lost, once: from then on its objects count as
   * absent. Returns whether this call marked it. A read-only catalog cannot
   * take the mark: the next open for writing (recover) or read finds it again.
   */
  #markLost(packId: number, problem: LostProblem, detail: string): boolean {
    if (!this.#lostTable || this.#lostKnown.has(packId)) return false;
    this.#removalEpoch++;
    try {
      const r = this.db.run('INSERT OR IGNORE INTO lost_packs (pack, problem, detail, at) VALUES (?, ?, ?, ?)', packId, problem, detail.slice(0, 1000), this.#clock.now());
      this.#lostKnown.add(packId);
      return Number(r.changes) === 1;
    } catch {
      return false;
    }
  }

  #corrupt(loc: Location, reason: string): FerryError {
    const pack = loc.pending ? `${loc.writer.name} (open)` : this.#packName(loc.pack);
    return new FerryError('OBJECT_CORRUPT', `object ${loc.id} in pack ${pack} at offset ${loc.offset} is damaged: ${reason}; run \`ferry verify\` to find what it affects`, {
      details: { id: loc.id, pack, offset: loc.offset, reason },
    });
  }

  /**
   * Reads one record and checks it against the index and the id. Never throws for damage.
   * `depth`: 'full' decodes and hashes the content; 'decode' decodes without hashing; 'crc'
   * stops after the record's CRC and header (the stored bytes are returned, `raw` is empty):
   * for a sender, whose receiver verifies every object by its hash anyway.
   */
  #check(loc: Location, checkCrc: boolean, depth: 'full' | 'decode' | 'crc' = 'full'): CheckResult {
    let rec: ParsedRecord | string;
    if (loc.pending) {
      let bytes: Buffer;
      try {
        bytes = loc.writer.read(loc.offset, recordLength(loc.storedLength));
      } catch (err) {
        // reading back a pending object drains the write buffer: a failed write tears the open pack
        this.#failWrite(err, `writing the open pack to read object ${loc.id}`);
      }
      rec = parseRecordBuffer(bytes, loc.storedLength, checkCrc);
    } else {
      const fd = this.#packFd(loc.pack);
      if (typeof fd === 'string') return { ok: false, reason: fd, problem: 'missing' };
      try {
        rec = readRecordAt(fd, loc.offset, loc.storedLength, { checkCrc });
      } catch (err) {
        throw wrapIoError(err, `reading pack ${this.#packName(loc.pack)}`);
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

  #packName(packId: number): string {
    let name = this.#packNames.get(packId);
    if (name === undefined) {
      const row = this.db.get<{ name: string }>('SELECT name FROM packs WHERE id = ?', packId);
      name = row?.name ?? `#${packId}`;
      if (row) this.#packNames.set(packId, name);
    }
    return name;
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
    const name = this.#packName(packId);
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

  #closeFd(packId: number): void {
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

  // ---- writing ----

  put(kind: ObjectKind, raw: Uint8Array): { id: ObjectId; added: boolean } {
    this.#checkWritable();
    const kindCode = kindCodeOf(kind);
    if (raw.length > MAX_OBJECT_LENGTH) throw new FerryError('INTERNAL', `object of ${raw.length} bytes is larger than a pack record can hold`);
    const id = hashBytes(raw);
    this.#epoch++;
    if (this.has(id)) return { id, added: false };
    let codec: Codec = CODEC_NONE;
    let stored: Uint8Array = raw;
    if (this.#zstdLevel !== 0 && raw.length >= MIN_COMPRESS_LENGTH && this.#worthCompressing(raw)) {
      // the size lets zstd size its tables to the object (trees are a few KiB): without it every call sets up megabytes
      const c = zstdCompressSync(raw, { pledgedSrcSize: raw.length, params: { [zc.ZSTD_c_compressionLevel]: this.#zstdLevel } });
      if (c.length <= raw.length * (1 - MIN_COMPRESS_SAVING)) {
        codec = CODEC_ZSTD;
        stored = c;
      }
    }
    this.#append(id, kindCode, codec, raw.length, stored);
    return { id, added: true };
  }

  /**
   * For large objects, a quick trial on a sample: media, archives and
   * encrypted data do not compress, and zstd on them costs as much as the
   * hash. Fast level, so the trial is cheap; a miss only costs ratio.
   */
  #worthCompressing(raw: Uint8Array): boolean {
    if (raw.length < COMPRESS_SAMPLE_MIN) return true;
    const sample = raw.subarray(0, COMPRESS_SAMPLE_LENGTH);
    const c = zstdCompressSync(sample, { pledgedSrcSize: sample.length, params: { [zc.ZSTD_c_compressionLevel]: 1 } });
    return c.length <= sample.length * COMPRESS_SAMPLE_KEEP;
  }

  putPrepared(obj: PreparedObject, options: { trusted?: boolean } = {}): boolean {
    this.#checkWritable();
    const kindCode = kindCodeOf(obj.kind);
    const id = parseObjectId(obj.id);
    if (!isCodec(obj.codec)) throw new FerryError('OBJECT_CORRUPT', `object ${id}: unknown codec ${obj.codec}`);
    if (!Number.isSafeInteger(obj.rawLength) || obj.rawLength < 0 || obj.rawLength > MAX_OBJECT_LENGTH || obj.stored.length > MAX_OBJECT_LENGTH) {
      throw new FerryError('OBJECT_CORRUPT', `object ${id}: length out of range (raw ${obj.rawLength}, stored ${obj.stored.length})`);
    }
    if (obj.codec === CODEC_NONE && obj.stored.length !== obj.rawLength) {
      throw new FerryError('OBJECT_CORRUPT', `object ${id}: uncompressed but stored length ${obj.stored.length} differs from raw length ${obj.rawLength}`);
    }
    this.#epoch++;
    if (this.has(id)) return false;
    if (!options.trusted) {
      let raw: Uint8Array = obj.stored;
      if (obj.codec === CODEC_ZSTD) {
        try {
          raw = zstdDecodeSync(obj.stored, obj.rawLength);
        } catch (err) {
          throw new FerryError('OBJECT_CORRUPT', `refused object ${id}: it does not decompress within its stated length ${obj.rawLength}`, { cause: err });
        }
      }
      if (raw.length !== obj.rawLength) throw new FerryError('OBJECT_CORRUPT', `refused object ${id}: ${raw.length} bytes, stated ${obj.rawLength}`);
      if (hashBytes(raw) !== id) throw new FerryError('OBJECT_CORRUPT', `refused object ${id}: its bytes do not match its id`);
    }
    this.#append(id, kindCode, obj.codec, obj.rawLength, obj.stored);
    return true;
  }

  /**
   * Stores a whole pack record framed by a trusted producer (the capture
   * workers: header, stored bytes and CRC trailer, see pack.ts
   * finishRecord): the bytes are appended as they are, after a check of the
   * header, with no hashing, compression or CRC here. The object's id is the
   * one in the header. Returns false (and writes nothing) when the store
   * already holds the object.
   *
   * `absentAt`: the producer found no row for the id in the index
   * (`sharedIndex`) when this store's commitEpoch had that value. Objects
   * indexed since are the ones this instance committed, and the last pack's
   * are remembered, so the usual index lookup is skipped when the epoch is
   * current or one behind.
   */
  putRecord(record: Uint8Array, options: { trusted: true; absentAt?: number }): { id: ObjectId; added: boolean } {
    this.#checkWritable();
    if (options?.trusted !== true) throw new FerryError('INTERNAL', 'putRecord takes records from trusted producers only; use putPrepared');
    const rec = Buffer.isBuffer(record) ? record : Buffer.from(record.buffer, record.byteOffset, record.byteLength);
    const h = parseRecordHeader(rec);
    if (typeof h === 'string') throw new FerryError('INTERNAL', `producer framed a bad record: ${h}`);
    if (rec.length !== h.storedLength + RECORD_OVERHEAD) throw new FerryError('INTERNAL', `producer framed a record of ${rec.length} bytes for ${h.storedLength} stored bytes`);
    const id = objectIdFromBytes(h.id);
    this.#epoch++;
    if (this.#pending.has(id)) return { id, added: false };
    const at = options.absentAt;
    const surelyAbsent = at !== undefined && (at === this.#commitEpoch || (at === this.#commitEpoch - 1 && !this.#lastIndexed.has(id)));
    if (!surelyAbsent && this.#indexed(id)) return { id, added: false };
    try {
      // the id must outlive the producer's buffer: copy it
      const entry = this.#sink.appendRecord({ id, idBytes: Buffer.from(h.id), kindCode: h.kindCode, codec: h.codec as Codec, rawLength: h.rawLength, storedLength: h.storedLength }, rec);
      this.#pending.set(id, entry);
      if (this.#sink.full) this.#sealAndIndex();
    } catch (err) {
      this.#failWrite(err, `writing object ${id}`);
    }
    this.#notifyAdded(id, h.kindCode, h.storedLength);
    return { id, added: true };
  }

  /**
   * Calls `fn` for every object this store newly appends (put, putPrepared,
   * putRecord; not GC copies), once it is appended: pending in the open pack,
   * `readStored` reads it back. For the early stream of a replication
   * (replication/early-send.ts). `fn` runs inside the write: it must be quick
   * and must not write to the store; what it throws is ignored. Returns the
   * function that removes it.
   */
  onAdded(fn: (id: ObjectId, kind: ObjectKind, storedLength: number) => void): () => void {
    this.#addedObservers.add(fn);
    return () => void this.#addedObservers.delete(fn);
  }

  #notifyAdded(id: ObjectId, kindCode: number, storedLength: number): void {
    if (this.#addedObservers.size === 0) return;
    const kind = kindFromCode(kindCode) ?? 'chunk';
    for (const fn of this.#addedObservers) {
      try {
        fn(id, kind, storedLength);
      } catch {
        // an observer's failure is its own: the object is stored
      }
    }
  }

  /** A committed row in a pack that is not lost. */
  #indexed(id: ObjectId): boolean {
    return this.db.get(this.#lostTable ? HAS_SQL : HAS_SQL_NO_LOST, objectIdToBytes(id)) !== undefined;
  }

  #append(id: ObjectId, kindCode: number, codec: Codec, rawLength: number, stored: Uint8Array): void {
    try {
      const entry = this.#sink.append({ id, idBytes: objectIdToBytes(id), kindCode, codec, rawLength, storedLength: stored.length }, stored);
      this.#pending.set(id, entry);
      if (this.#sink.full) this.#sealAndIndex();
    } catch (err) {
      this.#failWrite(err, `writing object ${id}`);
    }
    this.#notifyAdded(id, kindCode, stored.length);
  }

  flush(): void {
    this.#checkWritable();
    try {
      this.#sealAndIndex();
    } catch (err) {
      this.#failWrite(err, 'flushing the object store');
    }
  }

  /** fsync the open pack, then index it in one transaction. Throws raw errors; callers map them. */
  #sealAndIndex(): void {
    const sealed = this.#sink.seal(this.#clock.now());
    if (!sealed) return;
    let packId: number;
    try {
      packId = this.db.tx(() => this.#insertPack(sealed));
    } catch (err) {
      this.#sink.abandon([sealed]);
      throw err;
    }
    this.#sink.indexed(sealed.name);
    this.#packNames.set(packId, sealed.name);
    this.#commitEpoch++;
    this.#lastIndexed = this.#pending;
    this.#pending = new Map();
  }

  #insertPack(s: SealedPack): number {
    const r = this.db.run("INSERT INTO packs (name, size, object_count, state, created) VALUES (?, ?, ?, 'live', ?)", s.name, s.size, s.entries.length, s.created);
    const packId = Number(r.lastInsertRowid);
    // many rows per statement: a pack of small files has tens of thousands of objects
    const entries = s.entries;
    let i = 0;
    const params: SqlValue[] = [];
    for (; i + INSERT_ROWS <= entries.length; i += INSERT_ROWS) {
      params.length = 0;
      for (let j = i; j < i + INSERT_ROWS; j++) {
        const e = entries[j];
        params.push(e.idBytes, e.kindCode, packId, e.offset, e.storedLength, e.rawLength, e.codec);
      }
      this.db.run(this.#lostTable ? INSERT_MANY_SQL + TAKE_OVER_LOST : INSERT_MANY_SQL, ...params);
    }
    for (; i < entries.length; i++) {
      const e = entries[i];
      this.db.run(this.#lostTable ? INSERT_ONE_SQL + TAKE_OVER_LOST : INSERT_ONE_SQL, e.idBytes, e.kindCode, packId, e.offset, e.storedLength, e.rawLength, e.codec);
    }
    return packId;
  }

  #failWrite(err: unknown, what: string): never {
    const discarded = this.#pending.size;
    this.#sink.abandon();
    this.#pending.clear();
    const failure = writeFailure(err, what, discarded);
    this.#discardEpoch++;
    this.#lastDiscard = failure;
    throw failure;
  }

  #checkWritable(): void {
    if (this.#closed) throw new FerryError('INTERNAL', 'the object store is closed');
  }

  /**
   * Flushes (unless `flush: false`) and closes files. With `flush: false` the
   * open pack is left on disk unindexed, exactly as a crash would leave it;
   * the next recover() deletes it.
   */
  close(options: { flush?: boolean } = {}): void {
    if (this.#closed) return;
    try {
      if (options.flush ?? true) this.flush();
    } finally {
      this.#sink.drop();
      this.#pending.clear();
      this.#lastIndexed.clear();
      for (const id of [...this.#fds.keys()]) this.#closeFd(id);
      this.#closed = true;
    }
  }

  // ---- inspection and verification ----

  stats(): StoreStats {
    const p = this.db.get<{ n: number; bytes: number }>("SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes FROM packs WHERE state = 'live'")!;
    const o = this.db.get<{ n: number; raw: number }>('SELECT COUNT(*) AS n, COALESCE(SUM(raw_length), 0) AS raw FROM objects')!;
    const lost = this.#lostTable ? this.db.get<{ n: number }>('SELECT COUNT(*) AS n FROM lost_packs')!.n : 0;
    return { packs: p.n, objects: o.n, storedBytes: p.bytes, rawBytes: o.raw, pendingObjects: this.#pending.size, lostPacks: lost, lostObjects: lost > 0 ? this.lostObjectCount() : 0 };
  }

  /** Indexed objects still in lost packs: what a snapshot or a transfer would have to store again. Cheap when none is lost. */
  lostObjectCount(): number {
    if (!this.#lostTable) return 0;
    return this.db.get<{ n: number }>('SELECT COUNT(*) AS n FROM lost_packs l JOIN objects o ON o.pack = l.pack')!.n;
  }

  /** The packs marked lost, with how many of their objects are still indexed there. */
  listLostPacks(): LostPack[] {
    if (!this.#lostTable) return [];
    return this.db
      .all<{ id: number; name: string; problem: LostProblem; detail: string; at: number; n: number }>(
        'SELECT p.id AS id, p.name AS name, l.problem AS problem, l.detail AS detail, l.at AS at, (SELECT COUNT(*) FROM objects o WHERE o.pack = p.id) AS n FROM lost_packs l JOIN packs p ON p.id = l.pack ORDER BY p.id',
      )
      .map((r) => ({ pack: r.name, id: r.id, problem: r.problem, detail: r.detail, at: r.at, objects: r.n }));
  }

  listPacks(): PackRecord[] {
    return this.db
      .all<{ id: number; name: string; size: number; object_count: number; state: 'live' | 'obsolete'; created: number }>('SELECT id, name, size, object_count, state, created FROM packs ORDER BY id')
      .map((r) => ({ id: r.id, name: r.name, size: r.size, objectCount: r.object_count, state: r.state, created: r.created }));
  }

  /** The index rows of one pack, in file order. */
  packObjects(packId: number): PackObjectRow[] {
    return this.db
      .all<{ id: Uint8Array; kind: number; offset: number; stored_length: number; raw_length: number; codec: number }>(
        'SELECT id, kind, offset, stored_length, raw_length, codec FROM objects WHERE pack = ? ORDER BY offset',
        packId,
      )
      .map((r) => ({ id: objectIdFromBytes(r.id), kindCode: r.kind, offset: r.offset, storedLength: r.stored_length, rawLength: r.raw_length, codec: r.codec as Codec }));
  }

  /** Every indexed object, in pack and offset order (sequential reads for verify). */
  *iterateObjects(): Generator<IndexedObject> {
    for (const r of this.#iterateRows()) {
      yield {
        id: objectIdFromBytes(r.id),
        kind: kindFromCode(r.kind) ?? 'chunk',
        rawLength: r.raw_length,
        storedLength: r.stored_length,
        codec: r.codec as Codec,
        pack: r.pack,
        offset: r.offset,
        packName: r.name,
      };
    }
  }

  #iterateRows(): Iterable<ObjectRow & { id: Uint8Array; name: string }> {
    // a statement of its own: the cached ones may be used while this iterator is open
    const stmt = this.db.db.prepare(
      'SELECT o.id AS id, o.kind AS kind, o.pack AS pack, o.offset AS offset, o.stored_length AS stored_length, o.raw_length AS raw_length, o.codec AS codec, p.name AS name FROM objects o JOIN packs p ON p.id = o.pack ORDER BY o.pack, o.offset',
    );
    return stmt.iterate() as Iterable<ObjectRow & { id: Uint8Array; name: string }>;
  }

  /** Reads and checks one object (CRC, header, decompression, hash); undefined when sound. */
  verifyObject(id: ObjectId): BadObject | undefined {
    const loc = this.#locate(id);
    if (!loc) return { id, pack: '', offset: -1, reason: 'not in the store' };
    return this.#verifyLoc(loc);
  }

  #verifyLoc(loc: Location): BadObject | undefined {
    const r = this.#check(loc, true);
    if (r.ok) return undefined;
    if (!loc.pending) this.#markLost(loc.pack, r.problem, `object ${loc.id} at offset ${loc.offset}: ${r.reason}`);
    return { id: loc.id, pack: loc.pending ? '' : this.#packName(loc.pack), offset: loc.offset, reason: r.reason };
  }

  /** Checks every indexed object; reports each damaged one to `onBad` and in the result, never stopping at the first. */
  verifyAll(onBad?: (bad: BadObject) => void): VerifyReport {
    const report: VerifyReport = { checked: 0, rawBytes: 0, bad: [] };
    for (const r of this.#iterateRows()) {
      const id = objectIdFromBytes(r.id);
      const bad = this.#verifyLoc({ pending: false, id, kindCode: r.kind, pack: r.pack, offset: r.offset, storedLength: r.stored_length, rawLength: r.raw_length, codec: r.codec });
      report.checked++;
      report.rawBytes += r.raw_length;
      if (bad) {
        report.bad.push(bad);
        onBad?.(bad);
      }
    }
    return report;
  }

  // ---- recovery and GC primitives ----

  /**
   * Startup recovery; call while holding the site lock, before writing.
   * Finishes an interrupted GC (obsolete packs), deletes pack files that were
   * never indexed, and reports live packs whose file is missing or has the
   * wrong size. Those are marked lost (their objects count as absent, so they
   * are stored again), never dropped: their rows stay, so `ferry verify`
   * still names what they broke. A lost pack whose file is back at its size
   * counts again.
   */
  recover(): RecoveryReport {
    this.#checkWritable();
    if (this.#pending.size > 0) throw new FerryError('INTERNAL', 'recover() must run before any object is written');
    const report: RecoveryReport = { orphanPacksDeleted: [], obsoletePacksRemoved: [], damagedPacks: [], strayFiles: [], packsFound: [] };
    try {
      report.obsoletePacksRemoved = this.removeObsoletePacks();
      const known = new Set(this.db.all<{ name: string }>('SELECT name FROM packs').map((r) => r.name));
      const ours = new Set<string>(this.#sink.unindexed);
      for (const s of this.#relocations) for (const n of s.unindexed) ours.add(n);
      const onDisk = this.#files.list();
      report.strayFiles = onDisk.stray;
      report.orphanPacksDeleted = onDisk.packs.filter((n) => !known.has(n) && !ours.has(n)).sort();
      this.#files.unlink(report.orphanPacksDeleted);
      const lostBefore = new Set(this.listLostPacks().map((l) => l.id));
      for (const id of lostBefore) this.#lostKnown.add(id);
      for (const p of this.listPacks()) {
        if (p.state !== 'live') continue;
        let actual = -1;
        try {
          actual = fs.statSync(this.#files.packPath(p.name)).size;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
        if (actual === p.size) {
          if (lostBefore.has(p.id) && this.#foundAgain(p.id)) report.packsFound.push(p.name);
          continue;
        }
        const problem = actual < 0 ? 'missing' : actual < p.size ? 'truncated' : 'oversized';
        const affected =
          problem === 'oversized'
            ? 0
            : this.db.get<{ n: number }>('SELECT COUNT(*) AS n FROM objects WHERE pack = ? AND offset + stored_length + ? > ?', p.id, recordLength(0), Math.max(actual, 0))!.n;
        report.damagedPacks.push({ pack: p.name, id: p.id, problem, expectedSize: p.size, actualSize: actual, objectsAffected: affected });
        this.#markLost(p.id, problem, actual < 0 ? 'the pack file is missing' : `the pack file is ${actual} bytes, the index recorded ${p.size}`);
      }
    } catch (err) {
      throw wrapIoError(err, 'recovering the object store');
    }
    return report;
  }

  /**
   * A pack lost because its file was missing or of the wrong size, whose file
   * is now back at its recorded size, is sound again (a record found damaged
   * stays lost: only verify could clear that, and it does not).
   */
  #foundAgain(packId: number): boolean {
    if (!this.#lostTable) return false;
    const r = this.db.run("DELETE FROM lost_packs WHERE pack = ? AND problem IN ('missing', 'truncated', 'oversized')", packId);
    if (Number(r.changes) === 0) return false;
    this.#lostKnown.delete(packId);
    return true;
  }

  /** A writer for GC's copies; see Relocation. */
  openRelocation(): Relocation {
    this.#checkWritable();
    const sink = new PackSink(this.#files, this.#target);
    this.#relocations.add(sink);
    return new Relocation(this, sink, this.#clock);
  }

  /** @internal Relocation calls this when it is done with its sink. */
  forgetRelocation(sink: PackSink): void {
    this.#relocations.delete(sink);
  }

  /**
   * GC's one transaction: index the relocation's sealed packs, point each
   * moved object's row at its new copy, delete the remaining (dead) rows of
   * the retired packs and mark those packs obsolete. Before this commits the
   * old rows point at the old packs; after, at the new ones: every row points
   * at a durable pack either way.
   */
  commitRelocation(relocation: Relocation, retire: number[]): { packsWritten: string[]; moved: number; dropped: number } {
    const sealed = relocation.finish();
    let moved = 0;
    let dropped = 0;
    this.db.tx(() => {
      for (const s of sealed) {
        const r = this.db.run("INSERT INTO packs (name, size, object_count, state, created) VALUES (?, ?, ?, 'live', ?)", s.name, s.size, s.entries.length, s.created);
        const packId = Number(r.lastInsertRowid);
        for (const e of s.entries) {
          const u = this.db.run('UPDATE objects SET pack = ?, offset = ? WHERE id = ? AND pack = ?', packId, e.offset, e.idBytes, e.fromPack ?? -1);
          if (Number(u.changes) !== 1) throw new FerryError('INTERNAL', `GC copy of object ${e.id} no longer matches the index; the plan is stale`);
          moved++;
        }
      }
      for (const packId of retire) {
        dropped += Number(this.db.run('DELETE FROM objects WHERE pack = ?', packId).changes);
        const u = this.db.run("UPDATE packs SET state = 'obsolete' WHERE id = ? AND state = 'live'", packId);
        if (Number(u.changes) !== 1) throw new FerryError('INTERNAL', `pack #${packId} is not live; the GC plan is stale`);
      }
    });
    this.#commitEpoch++;
    this.#removalEpoch++;
    for (const s of sealed) relocation.sink.indexed(s.name);
    this.forgetRelocation(relocation.sink);
    return { packsWritten: sealed.map((s) => s.name), moved, dropped };
  }

  /** Unlinks the files of obsolete packs and fsyncs their directories; returns their names. */
  unlinkObsoletePacks(): string[] {
    const rows = this.db.all<{ id: number; name: string }>("SELECT id, name FROM packs WHERE state = 'obsolete' ORDER BY id");
    for (const r of rows) this.#closeFd(r.id);
    this.#files.unlink(rows.map((r) => r.name));
    return rows.map((r) => r.name);
  }

  /** Deletes the rows of obsolete packs (after their files are gone). */
  forgetObsoletePacks(): number {
    const ids = this.db.all<{ id: number }>("SELECT id FROM packs WHERE state = 'obsolete'").map((r) => r.id);
    this.db.tx(() => {
      for (const id of ids) {
        // an obsolete pack never has object rows; refuse to orphan any
        const n = this.db.get<{ n: number }>('SELECT COUNT(*) AS n FROM objects WHERE pack = ?', id)!.n;
        if (n > 0) throw new FerryError('INTERNAL', `obsolete pack #${id} still has ${n} object rows`);
        if (this.#lostTable) this.db.run('DELETE FROM lost_packs WHERE pack = ?', id);
        this.db.run('DELETE FROM packs WHERE id = ?', id);
      }
    });
    for (const id of ids) {
      this.#packNames.delete(id);
      this.#lostKnown.delete(id);
    }
    return ids.length;
  }

  /** Steps 2 and 3 of GC, also run by recover(). */
  removeObsoletePacks(): string[] {
    const names = this.unlinkObsoletePacks();
    this.forgetObsoletePacks();
    return names;
  }
}

function kindCodeOf(kind: ObjectKind): number {
  const code = (KIND_CODES as Record<string, number>)[kind];
  if (code === undefined || !(OBJECT_KINDS as readonly string[]).includes(kind)) throw new FerryError('INTERNAL', `unknown object kind ${JSON.stringify(kind)}`);
  return code;
}
