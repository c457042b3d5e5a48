// The destination side of replication (`secondaries`): which site feeds a
// secondary volume here, what the replica shows (`applied`), the apply in
// progress (`applying`, journaled so that a crash is finished by the next
// apply), and what a failover, a re-point or a migrate changed. One row per
// secondary volume; the holds its source takes are holds.ts's (`replica`).
import { randomBytes } from 'node:crypto';
import type { Catalog } from './catalog.ts';
import { release, replicaHolder } from './holds.ts';
import { clearSplitBrain } from './split-brains.ts';

export type SecondaryState = 'active' | 'broken-off';

/** A row of `secondaries`. Columns added after format 1 (schema.ts ADDED_COLUMNS) read null when absent. */
export interface SecondaryRow {
  volume: string;
  source_site: string;
  source_volume: string;
  applied: string | null;
  applying: string | null;
  /** JSON: member -> root the replica had when the apply in `applying` started */
  applying_from: string | null;
  consistent: number;
  state: SecondaryState;
  /** JSON: member -> the image replica's stat after the last apply */
  image_stats: string;
  updated_at: number;
  keep_snapshots: number | null;
  /** JSON: the source's other secondaries of the volume, as it last said */
  siblings: string | null;
  /** JSON: why the apply in `applying` did not complete */
  apply_error: string | null;
  /** JSON: after a failover here, whether the old primary knows (dr/failover.ts FailoverNotice) */
  failover_notice: string | null;
  previous_source: string | null;
  previous_source_volume: string | null;
  /**
   * The relation with the source this secondary is in: a new id each time it starts following one
   * (newRelation). The snapshots its commits record carry it; null for a relation begun before it existed.
   */
  relation: string | null;
}

const ADDED = ['keep_snapshots', 'siblings', 'apply_error', 'failover_notice', 'previous_source', 'previous_source_volume', 'relation'] as const;

/**
 * A relation's id. What a source sent in an earlier relation with this site (before a failback, a
 * migrate, a re-point or a full sync: other histories, maybe on a clock set back since) is no
 * reference for a replay in the new one (replication/receive/commit.ts).
 */
function newRelationId(): string {
  return randomBytes(8).toString('hex');
}

function toRow(r: SecondaryRow): SecondaryRow {
  for (const k of ADDED) if (r[k] === undefined) (r as unknown as Record<string, null>)[k] = null;
  return r;
}

export function getSecondary(cat: Catalog, volume: string): SecondaryRow | undefined {
  const r = cat.db.get<SecondaryRow>('SELECT * FROM secondaries WHERE volume = ?', volume);
  return r ? toRow(r) : undefined;
}

export function listSecondaries(cat: Catalog): SecondaryRow[] {
  return cat.db.all<SecondaryRow>('SELECT * FROM secondaries ORDER BY volume').map(toRow);
}

/** Secondaries with an apply journaled (running, or cut by a crash), of one source when given. */
export function secondariesApplying(cat: Catalog, source?: string): SecondaryRow[] {
  const rows = source === undefined
    ? cat.db.all<SecondaryRow>('SELECT * FROM secondaries WHERE applying IS NOT NULL ORDER BY volume')
    : cat.db.all<SecondaryRow>('SELECT * FROM secondaries WHERE source_site = ? AND applying IS NOT NULL ORDER BY volume', source);
  return rows.map(toRow);
}

/** The snapshot the replica of `volume` shows (null: none yet, or not a secondary). */
export function appliedSnapshot(cat: Catalog, volume: string): string | null {
  return cat.db.get<{ applied: string | null }>('SELECT applied FROM secondaries WHERE volume = ?', volume)?.applied ?? null;
}

/**
 * `volume` becomes the active secondary of `source` (its `sourceVolume`), its replica showing
 * `applied` (null: nothing yet, a new secondary), in the caller's transaction if any.
 */
export function addSecondary(cat: Catalog, volume: string, source: string, sourceVolume: string, applied: string | null = null): void {
  clearSplitBrain(cat, volume, source, 'this site follows it now');
  cat.db.run("INSERT INTO secondaries (volume, source_site, source_volume, applied, consistent, state, updated_at, relation) VALUES (?, ?, ?, ?, 1, 'active', ?, ?)", volume, source, sourceVolume, applied, cat.now(), newRelationId());
}

/** The source starts the relation again with a full sync: a new relation id, returned (in the caller's transaction). */
export function newRelation(cat: Catalog, volume: string): string {
  const id = newRelationId();
  cat.db.run('UPDATE secondaries SET relation = ?, updated_at = ? WHERE volume = ?', id, cat.now(), volume);
  return id;
}

/**
 * This site stops being a secondary of `volume`: the row goes, and with it the holds its source took
 * on this volume's snapshots (never those of the same source for another volume). Returns the source
 * it had. In the caller's transaction, if any.
 */
export function endSecondary(cat: Catalog, volume: string): string | null {
  const row = getSecondary(cat, volume);
  if (!row) return null;
  cat.tx(() => {
    release(cat, replicaHolder(row.source_site), { volume });
    removeSecondaryRow(cat, volume);
  });
  return row.source_site;
}

/** The row alone (the volume goes with all its holds: volumes.ts forgetVolume). */
export function removeSecondaryRow(cat: Catalog, volume: string): void {
  cat.db.run('DELETE FROM secondaries WHERE volume = ?', volume);
  cat.db.run('DELETE FROM apply_in_place WHERE volume = ?', volume);
  dropAppliedFiles(cat, volume);
  dropStagedFiles(cat, volume);
}

/** What the source says with every hello: how many replication snapshots to keep here, and its other secondaries. */
export function noteSourceSettings(cat: Catalog, volume: string, source: string, keep: number | null, siblings: unknown[] | null): void {
  cat.db.run('UPDATE secondaries SET keep_snapshots = ?, siblings = ? WHERE volume = ? AND source_site = ?', keep, siblings ? JSON.stringify(siblings) : null, volume, source);
}

/** How many replication snapshots the source asked this secondary to keep (1 when it did not say). */
export function keepSnapshotsOf(cat: Catalog, volume: string): number {
  return cat.db.get<{ keep_snapshots: number | null }>('SELECT keep_snapshots FROM secondaries WHERE volume = ?', volume)?.keep_snapshots ?? 1;
}

/** An apply of `target` starts from `from` (member roots): journaled, the replica inconsistent until it ends. */
export function startApply(cat: Catalog, volume: string, target: string, from: Record<string, string | null>): void {
  // A cut apply's files patched in place were judged by the writes check that precedes this: they are now part of `from`.
  cat.db.run('DELETE FROM apply_in_place WHERE volume = ?', volume);
  dropAppliedFiles(cat, volume);
  cat.db.run('UPDATE secondaries SET applying = ?, applying_from = ?, consistent = 0, apply_error = NULL, updated_at = ? WHERE volume = ?', target, JSON.stringify(from), cat.now(), volume);
}

/** The apply of `target` completed and was verified: the replica shows it. */
export function finishApply(cat: Catalog, volume: string, target: string, imageStats: Record<string, unknown>): void {
  cat.db.run('DELETE FROM apply_in_place WHERE volume = ?', volume);
  dropAppliedFiles(cat, volume);
  cat.db.run('UPDATE secondaries SET applied = ?, applying = NULL, applying_from = NULL, consistent = 1, apply_error = NULL, image_stats = ?, updated_at = ? WHERE volume = ?', target, JSON.stringify(imageStats), cat.now(), volume);
}

/**
 * A file of member `member` the running apply is about to patch in place (replication/in-place.ts),
 * with its record (JSON, opaque here), durable before the file's first write. Kept until the apply
 * completes or the next one starts, so a cut apply's half-patched file is known as its own work.
 */
export function recordInPlace(cat: Catalog, volume: string, member: string, path: Buffer, record: string): void {
  cat.db.run('INSERT OR REPLACE INTO apply_in_place (volume, member, path, record) VALUES (?, ?, ?, ?)', volume, member, path, record);
}

/** The files of `member` a cut apply journaled for patching in place: member-relative path (latin1) -> record (JSON). */
export function inPlaceRecords(cat: Catalog, volume: string, member: string): Map<string, string> {
  const rows = cat.db.all<{ path: Uint8Array; record: string }>('SELECT path, record FROM apply_in_place WHERE volume = ? AND member = ?', volume, member);
  return new Map(rows.map((r) => [Buffer.from(r.path).toString('latin1'), r.record]));
}

/**
 * Files the running apply wrote into directory `dir` of `member`, as lstat saw each once in place,
 * encoded like a stat cache row (snapshot/stat-cache.ts): the verification after the apply trusts
 * them (replication/receive/written-files.ts). A directory may have several rows (one per batch put
 * out of memory). Only the running apply's: they go when an apply starts or finishes.
 */
export function putAppliedFiles(cat: Catalog, volume: string, rows: Array<[member: string, dir: Buffer, data: Buffer]>): void {
  cat.tx(() => {
    for (const [member, dir, data] of rows) cat.db.run('INSERT INTO apply_written (volume, member, dir, data) VALUES (?, ?, ?, ?)', volume, member, dir, data);
  });
}

/** The rows putAppliedFiles wrote for (volume, member, dir), in the order they were written. */
export function appliedFilesOf(cat: Catalog, volume: string, member: string, dir: Buffer): Uint8Array[] {
  return cat.db.all<{ data: Uint8Array }>('SELECT data FROM apply_written WHERE volume = ? AND member = ? AND dir = ? ORDER BY id', volume, member, dir).map((r) => r.data);
}

/** The volume's rows of applied files go (an apply starts or ends, or the replica goes). */
export function dropAppliedFiles(cat: Catalog, volume: string): void {
  cat.db.run('DELETE FROM apply_written WHERE volume = ?', volume);
}

/** The files the staging of `volume` wrote for staged trees, one encoded row per (tree, directory). */
export function putStagedFiles(cat: Catalog, volume: string, rows: Array<[tree: string, dir: Buffer, data: Buffer]>): void {
  cat.tx(() => {
    for (const [tree, dir, data] of rows) cat.db.run('INSERT INTO stage_written (volume, tree, dir, data) VALUES (?, ?, ?, ?)', volume, tree, dir, data);
  });
}

/** The rows putStagedFiles wrote for staged tree `tree`, in the order they were written. */
export function stagedFilesOf(cat: Catalog, volume: string, tree: string): Array<{ dir: Uint8Array; data: Uint8Array }> {
  return cat.db.all<{ dir: Uint8Array; data: Uint8Array }>('SELECT dir, data FROM stage_written WHERE volume = ? AND tree = ? ORDER BY id', volume, tree);
}

/** The staging's rows of `volume` go: of one tree (taken into place), or all (a staging starts or is cleared, the replica goes). */
export function dropStagedFiles(cat: Catalog, volume: string, tree?: string): void {
  if (tree === undefined) cat.db.run('DELETE FROM stage_written WHERE volume = ?', volume);
  else cat.db.run('DELETE FROM stage_written WHERE volume = ? AND tree = ?', volume, tree);
}

/** Why the apply of `target` did not complete (kept while it is still the one journaled). */
export function noteApplyError(cat: Catalog, volume: string, target: string, error: { code: string; message: string; at: number }): void {
  cat.db.run('UPDATE secondaries SET apply_error = ? WHERE volume = ? AND applying = ?', JSON.stringify(error), volume, target);
}

/** The secondary is broken off from its source (this site took the volume over); the notice, when given, is recorded with it. */
export function breakOffSecondary(cat: Catalog, volume: string, notice?: unknown): void {
  if (notice === undefined) cat.db.run("UPDATE secondaries SET state = 'broken-off', updated_at = ? WHERE volume = ?", cat.now(), volume);
  else cat.db.run("UPDATE secondaries SET state = 'broken-off', failover_notice = ?, updated_at = ? WHERE volume = ?", JSON.stringify(notice), cat.now(), volume);
}

/** Record what the old primary knows of this site's failover (only if nothing is recorded yet, with `ifUnset`). */
export function setFailoverNotice(cat: Catalog, volume: string, notice: unknown, o: { ifUnset?: boolean } = {}): void {
  if (o.ifUnset) cat.db.run('UPDATE secondaries SET failover_notice = ? WHERE volume = ? AND failover_notice IS NULL', JSON.stringify(notice), volume);
  else cat.db.run('UPDATE secondaries SET failover_notice = ? WHERE volume = ?', JSON.stringify(notice), volume);
}

/** Volumes taken over here whose old primary has not acknowledged the failover yet. */
export function pendingFailoverNotices(cat: Catalog): string[] {
  return cat.db.all<{ volume: string }>("SELECT volume FROM secondaries WHERE state = 'broken-off' AND (json_extract(failover_notice, '$.state') = 'pending' OR json_array_length(failover_notice, '$.besideUnasked') > 0) ORDER BY volume").map((r) => r.volume);
}

/** Whether any old primary has not acknowledged a failover yet (cheap: the daemon asks every tick). */
export function anyFailoverNoticePending(cat: Catalog): boolean {
  return cat.db.get("SELECT 1 FROM secondaries WHERE state = 'broken-off' AND (json_extract(failover_notice, '$.state') = 'pending' OR json_array_length(failover_notice, '$.besideUnasked') > 0) LIMIT 1") !== undefined;
}

/** The secondary follows a new source (a re-point after a sibling's failover): what the old one said goes. */
export function repointSecondary(cat: Catalog, volume: string, source: string, sourceVolume: string): void {
  clearSplitBrain(cat, volume, source, 'this site follows it now (re-pointed)');
  cat.db.run('UPDATE secondaries SET source_site = ?, source_volume = ?, siblings = NULL, previous_source = NULL, previous_source_volume = NULL, relation = ?, updated_at = ? WHERE volume = ?', source, sourceVolume, newRelationId(), cat.now(), volume);
}

/**
 * The secondary follows a new source (a migrate's), remembering the one that handed it over
 * (`previous`: it may ask for it back if the migrate is rolled back; null when it is given back).
 */
export function handOverSecondary(cat: Catalog, volume: string, source: string, sourceVolume: string, previous: { site: string; volume: string } | null): void {
  clearSplitBrain(cat, volume, source, 'this site follows it now (handed over by a migrate)');
  cat.db.run(
    'UPDATE secondaries SET source_site = ?, source_volume = ?, previous_source = ?, previous_source_volume = ?, relation = ?, updated_at = ? WHERE volume = ?',
    source, sourceVolume, previous?.site ?? null, previous?.volume ?? null, newRelationId(), cat.now(), volume,
  );
}
