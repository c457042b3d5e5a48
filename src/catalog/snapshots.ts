// Snapshots at a site (`snapshots`): the rows that name complete snapshots,
// read as SnapshotRecords with their holders, and the order of a volume's
// snapshots (docs/dr.md, "Snapshot order"), which rests on their lineage and
// on the order this site recorded them. Taking, deleting and retention are the
// site's (site/snapshots.ts); a row is inserted only after its objects are
// durable (docs/design.md, promise 1).
import { FerryError } from '../core/errors.ts';
import { isSnapshotId, type ObjectId, type SnapshotId } from '../core/ids.ts';
import type { Catalog } from './catalog.ts';
import { readMeta, writeMeta } from './meta.ts';
import { appliedSnapshot } from './secondaries.ts';
import { dropStatCacheOf } from './stat-cache.ts';
import { getVolume, volumeRole } from './volumes.ts';

export interface SnapshotRecord {
  id: SnapshotId;
  volume: string;
  name: string | null;
  time: number;
  origin: string;
  parent: SnapshotId | null;
  manifest: ObjectId;
  stats: Record<string, unknown>;
  /** its holders, as stored (holds.ts encodeHolder) */
  holds: string[];
}

/** A row of `snapshots`, with its holders (one per line) as SELECT_SNAPSHOTS reads it. */
interface SnapshotRow {
  id: string;
  volume: string;
  name: string | null;
  time: number;
  origin: string;
  parent: string | null;
  manifest: string;
  stats: string;
  created_at: number;
  holds: string | null;
}

const SELECT_SNAPSHOTS = `SELECT s.*, (SELECT group_concat(holder, char(10)) FROM holds h WHERE h.snapshot = s.id) AS holds FROM snapshots s`;

function toRecord(r: SnapshotRow): SnapshotRecord {
  return {
    id: r.id as SnapshotId,
    volume: r.volume,
    name: r.name,
    time: r.time,
    origin: r.origin,
    parent: r.parent as SnapshotId | null,
    manifest: r.manifest as ObjectId,
    stats: JSON.parse(r.stats) as Record<string, unknown>,
    holds: r.holds ? r.holds.split('\n') : [],
  };
}

/** The volume's snapshots, oldest first by time (refused for a volume that does not exist). */
export function listSnapshots(cat: Catalog, volume: string): SnapshotRecord[] {
  getVolume(cat, volume);
  return cat.db.all<SnapshotRow>(`${SELECT_SNAPSHOTS} WHERE s.volume = ? ORDER BY s.time, s.id`, volume).map(toRecord);
}

/** A snapshot of the volume by exact id, if this site holds it. */
export function findSnapshot(cat: Catalog, volume: string, id: string): SnapshotRecord | undefined {
  const r = cat.db.get<SnapshotRow>(`${SELECT_SNAPSHOTS} WHERE s.volume = ? AND s.id = ?`, volume, id);
  return r ? toRecord(r) : undefined;
}

/** A snapshot by exact id, of whatever volume, if this site holds it. */
export function snapshotById(cat: Catalog, id: string): SnapshotRecord | undefined {
  const r = cat.db.get<SnapshotRow>(`${SELECT_SNAPSHOTS} WHERE s.id = ?`, id);
  return r ? toRecord(r) : undefined;
}

/** Whether the volume has a snapshot of that name. */
export function hasSnapshotNamed(cat: Catalog, volume: string, name: string): boolean {
  return cat.db.get('SELECT 1 FROM snapshots WHERE volume = ? AND name = ?', volume, name) !== undefined;
}

export function countSnapshots(cat: Catalog, volume: string): number {
  return cat.db.get<{ n: number }>('SELECT count(*) AS n FROM snapshots WHERE volume = ?', volume)!.n;
}

/** The manifest of every snapshot at the site (GC marks from them all). */
export function allManifests(cat: Catalog): ObjectId[] {
  return cat.db.all<{ manifest: string }>('SELECT manifest FROM snapshots').map((r) => r.manifest as ObjectId);
}

/** Per volume: how many snapshots, and their logical bytes (the captures' own count). */
export function snapshotTotals(cat: Catalog): Array<{ volume: string; n: number; bytes: number | null; last: number }> {
  return cat.db.all<{ volume: string; n: number; bytes: number | null; last: number }>("SELECT volume, count(*) AS n, sum(json_extract(stats, '$.bytes')) AS bytes, max(time) AS last FROM snapshots GROUP BY volume");
}

/** Logical bytes of every snapshot at the site. */
export function logicalBytes(cat: Catalog): number {
  return cat.db.get<{ b: number | null }>("SELECT sum(json_extract(stats, '$.bytes')) AS b FROM snapshots")!.b ?? 0;
}

/**
 * The row that names a complete snapshot (callers run it inside their transaction); `relation`: at
 * a secondary, the relation whose commit records it (secondaries.relation).
 */
export function insertSnapshotRow(
  cat: Catalog,
  r: { id: string; volume: string; name: string | null; time: number; origin: string; parent: string | null; manifest: string; stats: Record<string, unknown>; relation?: string | null; originSeq?: number },
): void {
  // The order this site records its snapshots in (recordedOrder), never reused: a row deleted last
  // would otherwise give its rowid to the next, and a sequence a secondary was told (originSeq) or a
  // place in the lineage (snapshot_gone) would then name two snapshots.
  const seq = Math.max(Number(readMeta(cat, SEQ_KEY) ?? 0) || 0, cat.db.get<{ m: number | null }>('SELECT max(rowid) AS m FROM snapshots')!.m ?? 0) + 1;
  cat.db.run(
    'INSERT INTO snapshots (rowid, id, volume, name, time, origin, parent, manifest, stats, created_at, relation, origin_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
    seq, r.id, r.volume, r.name, r.time, r.origin, r.parent, r.manifest, JSON.stringify(r.stats), cat.now(), r.relation ?? null, r.originSeq ?? null,
  );
  writeMeta(cat, { [SEQ_KEY]: String(seq) });
  cat.db.run('DELETE FROM snapshot_gone WHERE id = ?', r.id);
}

/** meta: the last recorded order given to a snapshot row (its rowid) */
const SEQ_KEY = 'snapshot_seq';

/** A snapshot's row goes, with its stat cache rows (the caller checked that nothing holds it). */
export function deleteSnapshotRow(cat: Catalog, volume: string, id: string): void {
  cat.tx(() => {
    const row = cat.db.get<{ parent: string | null }>('SELECT parent FROM snapshots WHERE id = ?', id);
    dropStatCacheOf(cat, volume, id);
    cat.db.run('DELETE FROM snapshots WHERE id = ?', id);
    if (row) keepPlaceInLineage(cat, volume, id, row.parent);
  });
}

/**
 * A snapshot no longer held here keeps its place in the lineage (docs/dr.md, "Snapshot order"):
 * the snapshots that name it as their parent still descend, through it, from what it descends from.
 * Without it a deleted snapshot cut the lineage, and a site whose clock was set back could not order
 * what it took after the step after what it took before (soak seed 1380349686). The row points to
 * the nearest ancestor held here (or, where none is, the parent as recorded): rows chain only below
 * the oldest snapshot held, and a row goes an hour after no snapshot names it (a capture that read
 * its parent before the delete records it after), so they stay about as few as the snapshots here.
 */
function keepPlaceInLineage(cat: Catalog, volume: string, id: string, parent: string | null): void {
  const nearest = parent === null || isHeld(cat, parent) ? parent : (cat.db.get<{ parent: string | null }>('SELECT parent FROM snapshot_gone WHERE id = ?', parent)?.parent ?? parent);
  const now = cat.now();
  cat.db.run('INSERT OR REPLACE INTO snapshot_gone (id, volume, parent, gone_at) VALUES (?, ?, ?, ?)', id, volume, nearest, now);
  // Places that pointed to it now point to its nearest held ancestor; with none held, they keep pointing to it.
  if (nearest !== null && isHeld(cat, nearest)) cat.db.run('UPDATE snapshot_gone SET parent = ? WHERE parent = ?', nearest, id);
  cat.db.run('DELETE FROM snapshot_gone WHERE volume = ? AND gone_at < ? AND NOT EXISTS (SELECT 1 FROM snapshots s WHERE s.parent = snapshot_gone.id)', volume, now - 3600_000);
}

const isHeld = (cat: Catalog, id: string) => cat.db.get('SELECT 1 AS x FROM snapshots WHERE id = ?', id) !== undefined;

/**
 * At a secondary: the snapshot `parent` (never received here) descends from `ancestor` (held here),
 * as the source said with the snapshot it sent (replication/receive/commit.ts). Nothing is recorded
 * when `parent` is held or its place is known already.
 */
export function recordLineageLink(cat: Catalog, volume: string, parent: string, ancestor: string): void {
  if (parent === ancestor || isHeld(cat, parent) || !isHeld(cat, ancestor)) return;
  cat.db.run('INSERT OR IGNORE INTO snapshot_gone (id, volume, parent, gone_at) VALUES (?, ?, ?, ?)', parent, volume, ancestor, cat.now());
}

/** Every snapshot row of the volume, and its whole stat cache (the volume is removed: volumes.ts forgetVolume). */
export function deleteSnapshotRowsOf(cat: Catalog, volume: string): void {
  cat.tx(() => {
    dropStatCacheOf(cat, volume);
    cat.db.run('DELETE FROM snapshots WHERE volume = ?', volume);
    cat.db.run('DELETE FROM snapshot_gone WHERE volume = ?', volume);
  });
}

// The snapshots `origin` took that a secondary received in one relation with it (`relation`, its
// secondaries.relation; null: a relation begun before relations were recorded, every one counts).
const IN_RELATION = 'volume = ? AND origin = ? AND id <> ? AND (? IS NULL OR relation = ?)';

/**
 * The snapshot of the volume that `origin` took, other than `except`, received in `relation`, that
 * `origin` took last by its own order (origin_seq: what it said with each commit); none when none
 * received came with it (sent by an older site).
 */
export function lastTakenFrom(cat: Catalog, volume: string, origin: string, except: string, relation: string | null): { id: string; time: number; seq: number } | undefined {
  return cat.db.get<{ id: string; time: number; seq: number }>(`SELECT id, time, origin_seq AS seq FROM snapshots WHERE ${IN_RELATION} AND origin_seq IS NOT NULL ORDER BY origin_seq DESC LIMIT 1`, volume, origin, except, relation, relation);
}

/** The order its origin took a snapshot received here in (origin_seq), if it said. */
export function originSeq(cat: Catalog, id: string): number | undefined {
  return cat.db.get<{ seq: number | null }>('SELECT origin_seq AS seq FROM snapshots WHERE id = ?', id)?.seq ?? undefined;
}

/** The newest snapshot of the volume that `origin` took, other than `except`, received in `relation`, on that site's clock (time, then id). */
export function newestFrom(cat: Catalog, volume: string, origin: string, except: string, relation: string | null): { id: string; time: number } | undefined {
  return cat.db.get<{ id: string; time: number }>(`SELECT id, time FROM snapshots WHERE ${IN_RELATION} ORDER BY time DESC, id DESC LIMIT 1`, volume, origin, except, relation, relation);
}

/** The snapshot of the volume that `origin` took which this site recorded last, other than `except`, received in `relation` (whatever its time). */
export function lastRecordedFrom(cat: Catalog, volume: string, origin: string, except: string, relation: string | null): { id: string; time: number } | undefined {
  return cat.db.get<{ id: string; time: number }>(`SELECT id, time FROM snapshots WHERE ${IN_RELATION} ORDER BY rowid DESC LIMIT 1`, volume, origin, except, relation, relation);
}

/** The newest replica-writes-* snapshot of the volume this site took (writes it kept in its replica). */
export function newestReplicaWrites(cat: Catalog, volume: string, origin: string): { name: string; manifest: ObjectId } | undefined {
  return cat.db.get<{ name: string; manifest: ObjectId }>("SELECT name, manifest FROM snapshots WHERE volume = ? AND origin = ? AND name LIKE 'replica-writes-%' ORDER BY time DESC, id DESC LIMIT 1", volume, origin);
}

/**
 * At a secondary, the replication snapshots recorded before `target` (unnamed, taken elsewhere than
 * `here`), newest first by the order this site recorded them, with whether anything holds each.
 */
export function replicationSnapshotsBefore(cat: Catalog, volume: string, target: string, here: string): Array<{ id: string; held: boolean }> {
  return cat.db
    .all<{ id: string; held: number }>(
      'SELECT id, EXISTS (SELECT 1 FROM holds h WHERE h.snapshot = s.id) AS held FROM snapshots s WHERE volume = ? AND name IS NULL AND origin <> ? AND id <> ? AND rowid < (SELECT rowid FROM snapshots WHERE id = ?) ORDER BY rowid DESC',
      volume, here, target, target,
    )
    .map((r) => ({ id: r.id, held: r.held !== 0 }));
}

// ---------------------------------------------------------------- order (docs/dr.md, "Snapshot order")
//
// Two sites' clocks need not agree, so a snapshot's time is compared only with the times of
// snapshots the same site took. Across sites the order comes from lineage (each snapshot names its
// parent: the snapshot the volume's data was at, at the site that took it) and from the order in
// which this site recorded its snapshots (taken here, or received): the data of a volume at one site
// goes through its snapshots one after the other, whatever the clocks say.

/**
 * Snapshots that keep writes something overwrote: `replica-writes-*` (writes into a replica, kept
 * before an apply) and `failback-kept-*` (an old primary's writes, kept before a failback). They
 * are never `latest`, nor a parent; they are restored by name.
 */
export const KEPT_WRITES_PREFIXES = ['replica-writes-', 'failback-kept-'] as const;
const NOT_KEPT_SQL = `NOT (s.name IS NOT NULL AND (${KEPT_WRITES_PREFIXES.map((p) => `s.name GLOB '${p}*'`).join(' OR ')}))`;

export function isKeptWrites(s: { name: string | null }): boolean {
  return s.name !== null && KEPT_WRITES_PREFIXES.some((p) => s.name!.startsWith(p));
}

/** Order on one site's clock: time, then id (ids one site makes increase: core/ids.ts). Only for snapshots of one origin. */
export function compareOnOneClock(a: { id: string; time: number }, b: { id: string; time: number }): number {
  return a.time - b.time || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/** How far parents are followed (a chain longer than this, or a loop a peer made, is cut here). */
const LINEAGE_DEPTH = 65_536;

/**
 * Whether `ancestor` is in the lineage of `id`: reached by following parents through the snapshots
 * this site holds and the places of those it no longer holds (snapshot_gone).
 */
export function descendsFrom(cat: Catalog, id: string, ancestor: string): boolean {
  if (id === ancestor) return false;
  return cat.db.get(
    `WITH RECURSIVE up(id, depth) AS (
       SELECT parent, 1 FROM snapshots WHERE id = ? AND parent IS NOT NULL
       UNION ALL
       SELECT s.parent, up.depth + 1 FROM snapshots s JOIN up ON s.id = up.id WHERE s.parent IS NOT NULL AND up.depth < ?
       UNION ALL
       SELECT g.parent, up.depth + 1 FROM snapshot_gone g JOIN up ON g.id = up.id WHERE g.parent IS NOT NULL AND up.depth < ?
     ) SELECT 1 FROM up WHERE id = ? LIMIT 1`,
    id, LINEAGE_DEPTH, LINEAGE_DEPTH, ancestor,
  ) !== undefined;
}

/**
 * The lineage of a snapshot as far as this site holds it: the snapshot, its parent, the parent's
 * parent, ... newest first, the snapshots held here only (at most `limit`), followed through the
 * places of those it no longer holds (snapshot_gone).
 */
export function lineage(cat: Catalog, volume: string, id: string, limit = 1024): string[] {
  return cat.db.all<{ id: string }>(
    `WITH RECURSIVE up(id, parent, held, depth) AS (
       SELECT id, parent, 1, 0 FROM snapshots WHERE id = ? AND volume = ?
       UNION ALL
       SELECT s.id, s.parent, 1, up.depth + 1 FROM up JOIN snapshots s ON s.id = up.parent WHERE s.volume = ? AND up.depth + 1 < ?
       UNION ALL
       SELECT g.id, g.parent, 0, up.depth + 1 FROM up JOIN snapshot_gone g ON g.id = up.parent WHERE g.volume = ? AND up.depth + 1 < ?
     ) SELECT id FROM up WHERE held = 1 ORDER BY depth`,
    id, volume, volume, 2 * limit, volume, 2 * limit,
  ).map((r) => r.id).slice(0, limit);
}

/**
 * The manifest of the volume's snapshot recorded here just after `id` (else just before it): the
 * one a release of `id` is compared with to estimate what it frees (site/auto-collect.ts).
 */
export function recordedNeighbour(cat: Catalog, volume: string, id: string): ObjectId | null {
  const seq = recordedOrder(cat, id);
  const after = cat.db.get<{ manifest: string }>('SELECT manifest FROM snapshots WHERE volume = ? AND rowid > ? ORDER BY rowid LIMIT 1', volume, seq);
  const near = after ?? cat.db.get<{ manifest: string }>('SELECT manifest FROM snapshots WHERE volume = ? AND rowid < ? ORDER BY rowid DESC LIMIT 1', volume, seq);
  return (near?.manifest as ObjectId | undefined) ?? null;
}

/** The order in which this site recorded its snapshots (taken here or received), whatever their times. */
export function recordedOrder(cat: Catalog, id: string): number {
  return cat.db.get<{ seq: number }>('SELECT rowid AS seq FROM snapshots WHERE id = ?', id)?.seq ?? 0;
}

/**
 * The order of two snapshots of one volume at this site (negative: `a` is older), never by
 * comparing two sites' clocks: by lineage where this site sees it (one descends from the other);
 * otherwise, taken by another site, by that site's clock (time, then id); otherwise (taken here,
 * or by two sites) by the order in which this site recorded them, which for its own is the order it
 * took them. Lineage and this site's record come first so that a site whose clock was set back (a
 * skew corrected) still orders what it took since after what it took before.
 */
export function compareSnapshots(cat: Catalog, a: { id: string; time: number; origin: string }, b: { id: string; time: number; origin: string }): number {
  if (a.id === b.id) return 0;
  if (descendsFrom(cat, a.id, b.id)) return 1;
  if (descendsFrom(cat, b.id, a.id)) return -1;
  // This site's own, in the order it took them (it never receives its own: a site sends only what it
  // took); another site's, by that site's clock (they may have come in another order).
  if (a.origin === b.origin && a.origin !== cat.siteId) return compareOnOneClock(a, b);
  return recordedOrder(cat, a.id) - recordedOrder(cat, b.id);
}

/** The newest of some snapshots of one volume here, by compareSnapshots. */
export function newestOf<T extends { id: string; time: number; origin: string }>(cat: Catalog, snaps: T[]): T | undefined {
  return snaps.reduce<T | undefined>((best, s) => (best === undefined || compareSnapshots(cat, s, best) > 0 ? s : best), undefined);
}

/**
 * The volume's latest snapshot at this site: the one its data is at (what `latest` names, and the
 * parent of the next snapshot taken here).
 * - At a secondary: the snapshot the replica shows (applied and verified), what a failover would
 *   promote; none while nothing is applied yet, or while a failback still shows the writes it kept.
 * - At a primary or standalone volume: its newest own snapshot (the last it took), or, if this
 *   site took over (a failover or a migrate) since it took that one, the snapshot it took over at.
 * Kept writes (`replica-writes-*`, `failback-kept-*`) are never the latest.
 */
export function latestSnapshot(cat: Catalog, volume: string): SnapshotRecord | undefined {
  const role = volumeRole(cat, volume);
  if (!role) return undefined;
  const applied = appliedSnapshot(cat, volume);
  const shown = applied ? findSnapshot(cat, volume, applied) : undefined;
  if (role === 'secondary') return shown && !isKeptWrites(shown) ? shown : undefined;
  // Its own newest as this site recorded them (not by time: its clock may have been set back since).
  const own = cat.db.get<SnapshotRow>(`${SELECT_SNAPSHOTS} WHERE s.volume = ? AND s.origin = ? AND ${NOT_KEPT_SQL} ORDER BY s.rowid DESC LIMIT 1`, volume, cat.siteId);
  // What this site took over at: the replica it promoted (a failover keeps the relation, broken
  // off), or else the last snapshot it received (a migrate's final snapshot, the last one applied).
  const takenOver = shown
    ? shown
    : (() => {
        const r = cat.db.get<SnapshotRow>(`${SELECT_SNAPSHOTS} WHERE s.volume = ? AND s.origin <> ? AND ${NOT_KEPT_SQL} ORDER BY s.rowid DESC LIMIT 1`, volume, cat.siteId);
        return r ? toRecord(r) : undefined;
      })();
  const candidates = [own ? toRecord(own) : undefined, takenOver && !isKeptWrites(takenOver) ? takenOver : undefined].filter((x): x is SnapshotRecord => x !== undefined);
  return newestOf(cat, candidates);
}

/** Find a snapshot by id (or unique id prefix of 6+ chars), by name, or 'latest' (see latestSnapshot). */
export function resolveSnapshot(cat: Catalog, volume: string, ref: string): SnapshotRecord {
  const vol = getVolume(cat, volume);
  let r: SnapshotRow | undefined;
  if (ref === 'latest') {
    const n = latestSnapshot(cat, volume);
    if (n) return n;
    if (vol.role === 'secondary') {
      const applied = appliedSnapshot(cat, volume);
      const why = applied === null ? 'nothing is applied to its replica yet (initialize the mirror at its primary)' : `its replica still shows the writes a failback kept (${applied}) until the new primary's data is applied`;
      throw new FerryError('SNAPSHOT_NOT_FOUND', `volume ${volume} is a secondary here and has no latest snapshot: ${why}; name a snapshot instead (\`ferry snapshot list ${volume}\`)`);
    }
  } else {
    r = cat.db.get<SnapshotRow>(`${SELECT_SNAPSHOTS} WHERE s.volume = ? AND s.name = ?`, volume, ref);
    if (!r && isSnapshotId(ref)) r = cat.db.get<SnapshotRow>(`${SELECT_SNAPSHOTS} WHERE s.volume = ? AND s.id = ?`, volume, ref.toUpperCase());
    if (!r && /^[0-9A-Za-z]{6,25}$/.test(ref)) {
      const rows = cat.db.all<SnapshotRow>(`${SELECT_SNAPSHOTS} WHERE s.volume = ? AND s.id LIKE ?`, volume, ref.toUpperCase() + '%');
      if (rows.length > 1) throw new FerryError('USAGE', `snapshot prefix ${ref} matches ${rows.length} snapshots; give more characters`);
      r = rows[0];
    }
    if (r) return toRecord(r);
  }
  throw new FerryError('SNAPSHOT_NOT_FOUND', `volume ${volume} has no snapshot ${JSON.stringify(ref)}; \`ferry snapshot list ${volume}\` shows them`);
}
