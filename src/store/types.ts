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
