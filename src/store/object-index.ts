// The object store's own index in the site catalog: the `packs`, `objects` and
// `lost_packs` tables (schema.ts), and every statement on them.
//
// Owns: inserting a sealed pack's rows (many per statement), looking objects up,
// the lost marks, the listings that stats, verify and GC read, and GC's one
// transaction. Caches: pack names by id, and which packs this instance knows are
// marked lost. Must never: count an object of a lost pack as present (HAS_SQL,
// DURABLE_BATCH_SQL), or replace a row that is not in a lost pack (TAKE_OVER_LOST).
import { FerryError } from '../core/errors.ts';
import { objectIdFromBytes, objectIdToBytes, type ObjectId } from '../core/ids.ts';
import type { Sqlite, SqlValue } from '../core/sqlite.ts';
import type { SealedPack } from './pack-files.ts';
import { LOST_PACKS_SQL } from './schema.ts';
import { kindFromCode } from './pack.ts';
import type { Codec, IndexedObject, LostPack, LostProblem, PackObjectRow, PackRecord } from './types.ts';

/** An `objects` row as stored. */
export interface ObjectRow {
  kind: number;
  pack: number;
  offset: number;
  stored_length: number;
  raw_length: number;
  codec: number;
}

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
/** The packs of objects that are present (see PackStore.durable), this many ids per statement. */
const PRESENT_BATCH = 256;
const IN_LIST = `(${new Array(PRESENT_BATCH).fill('?').join(',')})`;
const DURABLE_BATCH_SQL = `SELECT o.id AS id, o.pack AS pack FROM objects o WHERE o.id IN ${IN_LIST} AND NOT EXISTS (SELECT 1 FROM lost_packs l WHERE l.pack = o.pack)`;
const DURABLE_BATCH_SQL_NO_LOST = `SELECT id, pack FROM objects WHERE id IN ${IN_LIST}`;
// The same without lost_packs: a catalog opened read-only before that table existed (nothing in it is marked lost).
const HAS_SQL_NO_LOST = 'SELECT 1 AS x FROM objects WHERE id = ?';
const LOCATE_SQL_NO_LOST = 'SELECT kind, pack, offset, stored_length, raw_length, codec, 0 AS lost FROM objects WHERE id = ?';
const INSERT_PACK_SQL = "INSERT INTO packs (name, size, object_count, state, created) VALUES (?, ?, ?, 'live', ?)";

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

export class ObjectIndex {
  readonly db: Sqlite;
  /** the catalog has lost_packs (see ensureLostTable) */
  readonly lostTable: boolean;
  /** packs this instance knows are marked lost (so a read of each marks it once) */
  #lostKnown = new Set<number>();
  #packNames = new Map<number, string>();

  constructor(db: Sqlite) {
    this.db = db;
    this.lostTable = ensureLostTable(db);
  }

  // ---- objects ----

  /** A committed row in a pack that is not lost. */
  has(id: ObjectId): boolean {
    return this.db.get(this.lostTable ? HAS_SQL : HAS_SQL_NO_LOST, objectIdToBytes(id)) !== undefined;
  }

  /**
   * The pack of each object's row when that pack is not marked lost, PRESENT_BATCH ids per statement (a sender's `missing` question
   * asks up to thousands; one statement per id cost the destination 0.5 s of its main thread in
   * the benchmark's loopback update at scale 1). A short last batch is padded with its first id.
   */
  presentPacks(ids: ObjectId[]): Array<number | undefined> {
    const out: Array<number | undefined> = new Array(ids.length);
    const sql = this.lostTable ? DURABLE_BATCH_SQL : DURABLE_BATCH_SQL_NO_LOST;
    for (let i = 0; i < ids.length; i += PRESENT_BATCH) {
      const batch = ids.slice(i, i + PRESENT_BATCH);
      const params = batch.map((id) => objectIdToBytes(id));
      while (params.length < PRESENT_BATCH) params.push(params[0]);
      const found = new Map<string, number>();
      for (const r of this.db.all<{ id: Uint8Array; pack: number }>(sql, ...params)) found.set(Buffer.from(r.id.buffer, r.id.byteOffset, r.id.byteLength).toString('hex'), r.pack);
      for (let k = 0; k < batch.length; k++) out[i + k] = found.get(batch[k]);
    }
    return out;
  }

  /** The object's row, and whether its pack is marked lost. */
  locate(id: ObjectId): (ObjectRow & { lost: number }) | undefined {
    return this.db.get<ObjectRow & { lost: number }>(this.lostTable ? LOCATE_SQL : LOCATE_SQL_NO_LOST, objectIdToBytes(id));
  }

  /** Indexes a sealed pack and its objects (call inside a transaction; then rememberPackName); returns the pack's id. */
  insertPack(s: SealedPack): number {
    const r = this.db.run(INSERT_PACK_SQL, s.name, s.size, s.entries.length, s.created);
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
      this.db.run(this.lostTable ? INSERT_MANY_SQL + TAKE_OVER_LOST : INSERT_MANY_SQL, ...params);
    }
    for (; i < entries.length; i++) {
      const e = entries[i];
      this.db.run(this.lostTable ? INSERT_ONE_SQL + TAKE_OVER_LOST : INSERT_ONE_SQL, e.idBytes, e.kindCode, packId, e.offset, e.storedLength, e.rawLength, e.codec);
    }
    return packId;
  }

  /** Indexed objects whose record reaches beyond `end` bytes of their pack's file. */
  objectsBeyond(packId: number, end: number, overhead: number): number {
    return this.db.get<{ n: number }>('SELECT COUNT(*) AS n FROM objects WHERE pack = ? AND offset + stored_length + ? > ?', packId, overhead, end)!.n;
  }

  // ---- packs ----

  /** Caches a pack's name once the transaction that indexed it has committed. */
  rememberPackName(packId: number, name: string): void {
    this.#packNames.set(packId, name);
  }

  packName(packId: number): string {
    let name = this.#packNames.get(packId);
    if (name === undefined) {
      const row = this.db.get<{ name: string }>('SELECT name FROM packs WHERE id = ?', packId);
      name = row?.name ?? `#${packId}`;
      if (row) this.#packNames.set(packId, name);
    }
    return name;
  }

  /** A live pack's name and recorded size. */
  livePack(packId: number): { name: string; size: number } | undefined {
    return this.db.get<{ name: string; size: number }>("SELECT name, size FROM packs WHERE id = ? AND state = 'live'", packId);
  }

  /** The names of every pack with a row, whatever its state. */
  packNames(): Set<string> {
    return new Set(this.db.all<{ name: string }>('SELECT name FROM packs').map((r) => r.name));
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

  /** Every indexed object with its pack's name, in pack and offset order. */
  iterateRows(): Iterable<ObjectRow & { id: Uint8Array; name: string }> {
    // a statement of its own: the cached ones may be used while this iterator is open
    const stmt = this.db.db.prepare(
      'SELECT o.id AS id, o.kind AS kind, o.pack AS pack, o.offset AS offset, o.stored_length AS stored_length, o.raw_length AS raw_length, o.codec AS codec, p.name AS name FROM objects o JOIN packs p ON p.id = o.pack ORDER BY o.pack, o.offset',
    );
    return stmt.iterate() as Iterable<ObjectRow & { id: Uint8Array; name: string }>;
  }

  /** Every indexed object, in pack and offset order (sequential reads for verify). */
  *iterateObjects(): Generator<IndexedObject> {
    for (const r of this.iterateRows()) {
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

  /** Bytes of the live packs (the packs table alone: cheap whatever the number of objects). */
  packBytes(): number {
    return this.db.get<{ bytes: number }>("SELECT COALESCE(SUM(size), 0) AS bytes FROM packs WHERE state = 'live'")!.bytes;
  }

  /** Live packs (count, bytes) and indexed objects (count, raw bytes). */
  totals(): { packs: number; storedBytes: number; objects: number; rawBytes: number } {
    const p = this.db.get<{ n: number; bytes: number }>("SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes FROM packs WHERE state = 'live'")!;
    const o = this.db.get<{ n: number; raw: number }>('SELECT COUNT(*) AS n, COALESCE(SUM(raw_length), 0) AS raw FROM objects')!;
    return { packs: p.n, storedBytes: p.bytes, objects: o.n, rawBytes: o.raw };
  }

  // ---- lost packs ----

  lostPackCount(): number {
    return this.lostTable ? this.db.get<{ n: number }>('SELECT COUNT(*) AS n FROM lost_packs')!.n : 0;
  }

  /** Indexed objects still in lost packs. */
  lostObjectCount(): number {
    if (!this.lostTable) return 0;
    // CROSS JOIN keeps lost_packs outside (usually empty): SQLite chose to scan every object instead,
    // 14-33 ms at 200,000 objects, asked several times per update
    return this.db.get<{ n: number }>('SELECT COUNT(*) AS n FROM lost_packs l CROSS JOIN objects o ON o.pack = l.pack')!.n;
  }

  /** The packs marked lost, with how many of their objects are still indexed there. */
  listLostPacks(): LostPack[] {
    if (!this.lostTable) return [];
    return this.db
      .all<{ id: number; name: string; problem: LostProblem; detail: string; at: number; n: number }>(
        'SELECT p.id AS id, p.name AS name, l.problem AS problem, l.detail AS detail, l.at AS at, (SELECT COUNT(*) FROM objects o WHERE o.pack = p.id) AS n FROM lost_packs l JOIN packs p ON p.id = l.pack ORDER BY p.id',
      )
      .map((r) => ({ pack: r.name, id: r.id, problem: r.problem, detail: r.detail, at: r.at, objects: r.n }));
  }

  /** Whether a lost mark for the pack can still be taken (the table is there and the pack is not known lost). */
  canMarkLost(packId: number): boolean {
    return this.lostTable && !this.#lostKnown.has(packId);
  }

  /** Remembers that the pack is marked lost (found so in the catalog). */
  knowLost(packId: number): void {
    this.#lostKnown.add(packId);
  }

  /**
   * Records that a pack is lost; returns whether this call marked it. A read-only
   * catalog cannot take the mark: the next open for writing (recover) or read finds it again.
   */
  markLost(packId: number, problem: LostProblem, detail: string, at: number): boolean {
    try {
      const r = this.db.run('INSERT OR IGNORE INTO lost_packs (pack, problem, detail, at) VALUES (?, ?, ?, ?)', packId, problem, detail.slice(0, 1000), at);
      this.#lostKnown.add(packId);
      return Number(r.changes) === 1;
    } catch {
      return false;
    }
  }

  /**
   * Clears the lost mark of a pack lost because its file was missing or of the
   * wrong size (a record found damaged stays lost: only verify could clear that,
   * and it does not). Returns whether there was such a mark.
   */
  clearLostFileMark(packId: number): boolean {
    if (!this.lostTable) return false;
    const r = this.db.run("DELETE FROM lost_packs WHERE pack = ? AND problem IN ('missing', 'truncated', 'oversized')", packId);
    if (Number(r.changes) === 0) return false;
    this.#lostKnown.delete(packId);
    return true;
  }

  // ---- GC ----

  /**
   * GC's one transaction: index the sealed copies, point each moved object's row
   * at its new copy, delete the remaining (dead) rows of the retired packs and
   * mark those packs obsolete.
   */
  relocate(sealed: SealedPack[], retire: number[]): { moved: number; dropped: number } {
    let moved = 0;
    let dropped = 0;
    this.db.tx(() => {
      for (const s of sealed) {
        const r = this.db.run(INSERT_PACK_SQL, s.name, s.size, s.entries.length, s.created);
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
    return { moved, dropped };
  }

  obsoletePacks(): { id: number; name: string }[] {
    return this.db.all<{ id: number; name: string }>("SELECT id, name FROM packs WHERE state = 'obsolete' ORDER BY id");
  }

  /** Deletes the rows of obsolete packs (after their files are gone); returns their ids. */
  forgetObsoletePacks(): number[] {
    const ids = this.db.all<{ id: number }>("SELECT id FROM packs WHERE state = 'obsolete'").map((r) => r.id);
    this.db.tx(() => {
      for (const id of ids) {
        // an obsolete pack never has object rows; refuse to orphan any
        const n = this.db.get<{ n: number }>('SELECT COUNT(*) AS n FROM objects WHERE pack = ?', id)!.n;
        if (n > 0) throw new FerryError('INTERNAL', `obsolete pack #${id} still has ${n} object rows`);
        if (this.lostTable) this.db.run('DELETE FROM lost_packs WHERE pack = ?', id);
        this.db.run('DELETE FROM packs WHERE id = ?', id);
      }
    });
    for (const id of ids) {
      this.#packNames.delete(id);
      this.#lostKnown.delete(id);
    }
    return ids;
  }
}
