// The object store's contract, as the layers above use it. Objects are
// immutable byte strings named by the BLAKE3-256 of their uncompressed bytes.
// The store verifies on every read; writers may hand over bytes they
// already compressed (worker threads do that) so the hot path is not
// single-threaded.
import type { ObjectId } from '../core/ids.ts';

export const OBJECT_KINDS = ['chunk', 'tree', 'image', 'blocklist', 'snapshot'] as const;
export type ObjectKind = (typeof OBJECT_KINDS)[number];

/** How an object's bytes are stored in a pack. */
export const CODEC_NONE = 0;
export const CODEC_ZSTD = 1;
export type Codec = typeof CODEC_NONE | typeof CODEC_ZSTD;

/** An object ready to store: already hashed (and maybe compressed) by the producer. */
export interface PreparedObject {
  kind: ObjectKind;
  id: ObjectId;
  rawLength: number;
  codec: Codec;
  /** bytes as they go into the pack: `raw` when codec is CODEC_NONE */
  stored: Uint8Array;
}

export interface ObjectInfo {
  id: ObjectId;
  kind: ObjectKind;
  rawLength: number;
  storedLength: number;
  codec: Codec;
  pack: number;
}

export interface ObjectReader {
  has(id: ObjectId): boolean;
  /** The object's uncompressed bytes, verified against its id. Throws OBJECT_NOT_FOUND / OBJECT_CORRUPT. */
  get(id: ObjectId): Buffer;
  info(id: ObjectId): ObjectInfo | undefined;
}

export interface ObjectWriter {
  has(id: ObjectId): boolean;
  /** Store raw bytes (hashing and compressing here). Returns false when the object was already present. */
  put(kind: ObjectKind, raw: Uint8Array): { id: ObjectId; added: boolean };
  /** Store an object prepared elsewhere. The store trusts the producer's hash only if `trusted`; otherwise it verifies. */
  putPrepared(obj: PreparedObject, options?: { trusted?: boolean }): boolean;
  /** Seal the open pack and make everything written so far durable and indexed. */
  flush(): void;
}

// ---- what the store reports (PackStore: listings, stats, verify, recovery) ----

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
