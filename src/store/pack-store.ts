// The content-addressed object store: objects appended to pack files under
// <dir>/packs/<xx>/<name>.pack and indexed in the site catalog (schema.ts).
//
// Owns: the pack files, the `packs` and `objects` tables, the durability
// order between them, verification on read, and startup recovery (through
// the parts named below). GC policy lives in gc.ts and drives the relocation
// primitives below.
//
// Must never: index bytes that are not durable (a pack is fsynced, and its
// directory, before its rows are inserted, all in one transaction); hand out
// bytes that were not checked against their id; read a whole pack to get one
// object; count an object of a lost pack (lost_packs: its file missing or
// damaged) as present, which would let new snapshots deduplicate against
// bytes that are gone. Single writer: the caller holds the site lock (one
// PackStore per store directory per process).
//
// The parts, one concern each: pack-files.ts (names, creation, sealing),
// object-index.ts (every statement on the index tables), pack-reader.ts
// (reading back, checks, verify), recovery.ts (the pack files against the
// index), relocation.ts (GC's copies), write-session.ts; this facade holds the
// write path and the epochs that readers and GC watch.
import { systemClock, systemRandom, type Clock, type RandomSource } from '../core/clock.ts';
import { FerryError } from '../core/errors.ts';
import { hashBytes, objectIdFromBytes, objectIdToBytes, parseObjectId, type ObjectId } from '../core/ids.ts';
import type { Sqlite } from '../core/sqlite.ts';
import { compressForStore, zstdDecodeSync } from './codec.ts';
import { sharedIndexRef, type SharedIndexRef } from './index-probe.ts';
import { ObjectIndex } from './object-index.ts';
import { PACK_NAME_RE, PackFiles, PackSink, packWriteFailure, type PendingEntry } from './pack-files.ts';
import { PackReader } from './pack-reader.ts';
import { KIND_CODES, MAX_OBJECT_LENGTH, RECORD_OVERHEAD, isCodec, kindFromCode, nodePackFileIo, parseRecordHeader, type PackFileIo } from './pack.ts';
import { packFileSound, recoverPacks } from './recovery.ts';
import { Relocation } from './relocation.ts';
import { WriteSession } from './write-session.ts';
import {
  CODEC_NONE,
  CODEC_ZSTD,
  OBJECT_KINDS,
  type BadObject,
  type Codec,
  type IndexedObject,
  type LostPack,
  type LostProblem,
  type ObjectInfo,
  type ObjectKind,
  type ObjectReader,
  type ObjectWriter,
  type PackObjectRow,
  type PackRecord,
  type PreparedObject,
  type RecoveryReport,
  type StoreStats,
  type VerifyReport,
} from './types.ts';

// The names other modules import from here.
export { MIN_COMPRESS_LENGTH, MIN_COMPRESS_SAVING } from './codec.ts';
export type { SealedPack } from './pack-files.ts';
export { Relocation } from './relocation.ts';
export { WriteSession } from './write-session.ts';
export type { BadObject, DamagedPack, IndexedObject, LostPack, LostProblem, PackObjectRow, PackRecord, RecoveryReport, StoreStats, VerifyReport } from './types.ts';

export const DEFAULT_PACK_TARGET_SIZE = 64 << 20;
export const DEFAULT_ZSTD_LEVEL = 3;

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

export class PackStore implements ObjectReader, ObjectWriter {
  readonly dir: string;
  readonly db: Sqlite;
  /** random per instance: with writeEpoch, lets gc.ts notice writes between its plan and execute */
  readonly instanceToken: string;
  #files: PackFiles;
  #index: ObjectIndex;
  #reader: PackReader;
  readonly #lostMarker = (packId: number, problem: LostProblem, detail: string): boolean => this.#markLost(packId, problem, detail);
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
  /** Told when a write failed for lack of space (the site collects at its next idle point: site/auto-collect.ts). */
  onNoSpace: ((failure: FerryError) => void) | undefined;
  #lastDiscard: FerryError | undefined;
  #sharedIndex: SharedIndexRef | null | undefined;
  #epoch = 0;
  #closed = false;
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
    this.#index = new ObjectIndex(this.db);
    this.#reader = new PackReader(this.#files, this.#index, {
      pending: (id) => this.#pending.get(id),
      failWrite: (err, what) => this.#failWrite(err, what),
      markLost: this.#lostMarker,
    });
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
    const packs = this.#index.presentPacks(ids);
    const sound = new Map<number, boolean>();
    for (const pack of packs) if (pack !== undefined && !sound.has(pack)) sound.set(pack, packFileSound(this.#index, this.#files, pack, this.#lostMarker));
    return packs.map((pack) => pack !== undefined && sound.get(pack) === true);
  }

  /** Like `has`: undefined for an object of a lost pack (`get` still tries to read it, to salvage what it can). */
  info(id: ObjectId): ObjectInfo | undefined {
    const loc = this.#reader.locate(id);
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
    return this.#reader.read(id, false, 'full').r.raw;
  }

  /**
   * The object's bytes checked by its record's CRC and header, decompressed
   * with a bound, but not hashed again: for readers whose result is verified
   * anyway (the replica apply, whose result is captured and compared with the
   * snapshot). Throws like `get`.
   */
  getUnhashed(id: ObjectId): Buffer {
    return this.#reader.read(id, true, 'decode').r.raw;
  }

  /**
   * The verified stored form of an object (for GC copies: the bytes move
   * without recompression). Throws like `get`. `crcOnly`: check the record's
   * CRC and header, not the content's hash (for a sender: its receiver
   * hashes every object).
   */
  readStored(id: ObjectId, opts: { crcOnly?: boolean } = {}): { kindCode: number; codec: Codec; rawLength: number; stored: Buffer; pack: number } {
    const { loc, r } = this.#reader.read(id, true, opts.crcOnly ? 'crc' : 'full');
    return { kindCode: loc.kindCode, codec: loc.codec as Codec, rawLength: loc.rawLength, stored: r.record.stored, pack: loc.pending ? 0 : loc.pack };
  }

  /**
   * Records that a pack is lost, once: from then on its objects count as
   * absent. Returns whether this call marked it. A read-only catalog cannot
   * take the mark: the next open for writing (recover) or read finds it again.
   */
  #markLost(packId: number, problem: LostProblem, detail: string): boolean {
    if (!this.#index.canMarkLost(packId)) return false;
    this.#removalEpoch++;
    return this.#index.markLost(packId, problem, detail, this.#clock.now());
  }

  // ---- writing ----

  put(kind: ObjectKind, raw: Uint8Array): { id: ObjectId; added: boolean } {
    this.#checkWritable();
    const kindCode = kindCodeOf(kind);
    if (raw.length > MAX_OBJECT_LENGTH) throw new FerryError('INTERNAL', `object of ${raw.length} bytes is larger than a pack record can hold`);
    const id = hashBytes(raw);
    this.#epoch++;
    if (this.has(id)) return { id, added: false };
    const c = compressForStore(raw, this.#zstdLevel);
    this.#append(id, kindCode, c ? CODEC_ZSTD : CODEC_NONE, raw.length, c ?? raw);
    return { id, added: true };
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
    return this.#index.has(id);
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
      packId = this.db.tx(() => this.#index.insertPack(sealed));
    } catch (err) {
      this.#sink.abandon([sealed]);
      throw err;
    }
    this.#sink.indexed(sealed.name);
    this.#index.rememberPackName(packId, sealed.name);
    this.#commitEpoch++;
    this.#lastIndexed = this.#pending;
    this.#pending = new Map();
  }

  #failWrite(err: unknown, what: string): never {
    const discarded = this.#pending.size;
    this.#sink.abandon();
    this.#pending.clear();
    const failure = packWriteFailure(err, what, discarded);
    this.#discardEpoch++;
    this.#lastDiscard = failure;
    if (failure.code === 'NO_SPACE') {
      try {
        this.onNoSpace?.(failure);
      } catch {
        // the listener's trouble is not the writer's: the writer gets its NO_SPACE
      }
    }
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
      this.#reader.close();
      this.#closed = true;
    }
  }

  // ---- inspection and verification ----

  /** Bytes of the live pack files (what stats() says as storedBytes, without counting the objects). */
  storedBytes(): number {
    return this.#index.packBytes();
  }

  stats(): StoreStats {
    const t = this.#index.totals();
    const lost = this.#index.lostPackCount();
    return { packs: t.packs, objects: t.objects, storedBytes: t.storedBytes, rawBytes: t.rawBytes, pendingObjects: this.#pending.size, lostPacks: lost, lostObjects: lost > 0 ? this.lostObjectCount() : 0 };
  }

  /** Indexed objects still in lost packs: what a snapshot or a transfer would have to store again. Cheap when none is lost. */
  lostObjectCount(): number {
    return this.#index.lostObjectCount();
  }

  /** The packs marked lost, with how many of their objects are still indexed there. */
  listLostPacks(): LostPack[] {
    return this.#index.listLostPacks();
  }

  listPacks(): PackRecord[] {
    return this.#index.listPacks();
  }

  /** The index rows of one pack, in file order. */
  packObjects(packId: number): PackObjectRow[] {
    return this.#index.packObjects(packId);
  }

  /** Every indexed object, in pack and offset order (sequential reads for verify). */
  iterateObjects(): Generator<IndexedObject> {
    return this.#index.iterateObjects();
  }

  /** Reads and checks one object (CRC, header, decompression, hash); undefined when sound. */
  verifyObject(id: ObjectId): BadObject | undefined {
    const loc = this.#reader.locate(id);
    if (!loc) return { id, pack: '', offset: -1, reason: 'not in the store' };
    return this.#reader.verify(loc);
  }

  /** Checks every indexed object; reports each damaged one to `onBad` and in the result, never stopping at the first. */
  verifyAll(onBad?: (bad: BadObject) => void): VerifyReport {
    return this.#reader.verifyAll(onBad);
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
    const unindexed = new Set<string>(this.#sink.unindexed);
    for (const s of this.#relocations) for (const n of s.unindexed) unindexed.add(n);
    return recoverPacks({
      index: this.#index,
      files: this.#files,
      unindexed,
      removeObsoletePacks: () => this.removeObsoletePacks(),
      markLost: this.#lostMarker,
    });
  }

  /** A writer for GC's copies; see Relocation. */
  openRelocation(): Relocation {
    this.#checkWritable();
    const sink = new PackSink(this.#files, this.#target);
    this.#relocations.add(sink);
    return new Relocation(sink, this.#clock, (s) => this.forgetRelocation(s));
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
    const { moved, dropped } = this.#index.relocate(sealed, retire);
    this.#commitEpoch++;
    this.#removalEpoch++;
    for (const s of sealed) relocation.sink.indexed(s.name);
    this.forgetRelocation(relocation.sink);
    return { packsWritten: sealed.map((s) => s.name), moved, dropped };
  }

  /** Unlinks the files of obsolete packs and fsyncs their directories; returns their names. */
  unlinkObsoletePacks(): string[] {
    const rows = this.#index.obsoletePacks();
    for (const r of rows) this.#reader.closeFd(r.id);
    this.#files.unlink(rows.map((r) => r.name));
    return rows.map((r) => r.name);
  }

  /** Deletes the rows of obsolete packs (after their files are gone). */
  forgetObsoletePacks(): number {
    return this.#index.forgetObsoletePacks().length;
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