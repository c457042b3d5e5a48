// The store's tables inside the site catalog. The catalog module runs this in
// its migration; it is idempotent (IF NOT EXISTS) so tests and tools may run
// it on a fresh database too. The pack store owns these tables: nothing else
// writes them.
//
// packs:   one row per pack file the index may point into. A row is inserted
//          only after its file is fsynced (see docs/store.md, durability
//          order). 'obsolete' means GC has moved or dropped every object in
//          it and the file is about to be unlinked; no object row points at
//          an obsolete pack.
// objects: one row per stored object, keyed by the 32 raw bytes of its
//          BLAKE3-256 (not hex: half the key size, and the primary key is the
//          whole table since it is WITHOUT ROWID). `offset` is the offset of
//          the object's record (its record magic) in the pack file; `kind` is
//          the pack format's kind code (pack.ts KIND_CODES).
// lost_packs: live packs found missing or damaged (by recovery, by a read, or
//          by verify). Their object rows stay (old snapshots still name what
//          they lost), but the store counts those objects as absent: `has`
//          says no, so the next snapshot or transfer stores them again, and
//          that new copy takes over the row. Added after format 1 shipped:
//          IF NOT EXISTS, created when a catalog is opened for writing.

const TABLES_SQL = `
CREATE TABLE IF NOT EXISTS packs (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  size INTEGER NOT NULL,
  object_count INTEGER NOT NULL,
  state TEXT NOT NULL DEFAULT 'live' CHECK (state IN ('live', 'obsolete')),
  created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS objects (
  id BLOB PRIMARY KEY CHECK (length(id) = 32),
  kind INTEGER NOT NULL,
  pack INTEGER NOT NULL REFERENCES packs(id),
  offset INTEGER NOT NULL,
  stored_length INTEGER NOT NULL,
  raw_length INTEGER NOT NULL,
  codec INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS objects_by_pack ON objects(pack, offset);
`;

export const LOST_PACKS_SQL = `
CREATE TABLE IF NOT EXISTS lost_packs (
  pack    INTEGER PRIMARY KEY REFERENCES packs(id) ON DELETE CASCADE,
  problem TEXT NOT NULL CHECK (problem IN ('missing', 'truncated', 'oversized', 'damaged')),
  detail  TEXT NOT NULL DEFAULT '',
  at      INTEGER NOT NULL
);
`;

export const STORE_SCHEMA_SQL = TABLES_SQL + LOST_PACKS_SQL;
