// Mirrors at the source (`mirrors`): one row per mirror of a volume to a
// paired site, read as a Mirror (settings within bounds), and the changes an
// update, a DR workflow or an operator makes to it. The state machine and its
// events are the replication driver's (replication/driver/run.ts), the update
// job too, the records' lifecycle the site's (site/mirrors.ts); the holds a
// mirror takes are holds.ts's (`base`, `in-flight`), moved here with the row.
import { FerryError } from '../core/errors.ts';
import { longestRetryMs, MIRROR_RETRY } from '../core/backoff.ts';
import { safeIntColumn } from '../core/sqlite.ts';
import { clampStored, COUNT, DELTA_MODES, storedScheduleSettings, type DeltaMode } from '../core/units.ts';
import type { Catalog } from './catalog.ts';
import { moveBase, releaseBase, releaseInFlight } from './holds.ts';
import { clearSplitBrain } from './split-brains.ts';

export const MIRROR_STATES = ['uninitialized', 'baselining', 'idle', 'updating', 'paused', 'disconnected', 'needs-full-sync', 'broken-off', 'resyncing'] as const;
export type MirrorState = (typeof MIRROR_STATES)[number];

export { DELTA_MODES, type DeltaMode };

/** A rate one way of sending reached, and when (this site's clock). */
export interface SendRate {
  /** stored bytes (what the objects would cost whole) per second of put requests in flight */
  bytesPerSecond: number;
  at: number;
}

/** What a mirror knows of its link, measured by its transfers (replication/link-fit.ts). */
export interface LinkEstimate {
  /** sends of whole objects (an initialize, the early stream, an update without deltas) */
  whole?: SendRate;
  /** sends with deltas (the encoders, the link and the destination's rebuild together) */
  delta?: SendRate;
  /** the quickest question's round trip, in milliseconds */
  rttMs?: number;
}

export interface LastTransfer {
  snapshot: string;
  bytes: number;
  rawBytes: number;
  objects: number;
  seconds: number;
  throughput: number;
  at: number;
  /**
   * Seconds per step: snapshot (the capture, when this update took one), send (negotiation and
   * streaming), commit (the destination's commit and apply, waited for), and the destination's own
   * steps as it reported them (check, stageWait: a baseline waiting for what it staged, writesCheck,
   * apply, verify).
   */
  phases?: Record<string, number>;
  /** warnings the capture of the snapshot sent reported (paths skipped or changed while read; a failed post hook) */
  warnings?: number;
  /**
   * Requests to the destination this update made: the hello, the negotiation's questions, the puts and
   * the commit of each step, and the early stream's (a count that should not grow with the number of
   * changed files, only with their bytes: a question carries up to 65,536 ids, a put 16 MiB).
   */
  roundTrips?: number;
  /** objects sent as deltas against the base */
  deltas?: number;
  /** CPU seconds of the source's process while the update ran (user + system, all its threads; other work of the daemon meanwhile included) */
  cpuSeconds?: number;
  /**
   * What went while the capture ran (docs/replication.md, "Overlap of capture and transfer"): chunks
   * and trees, and their stored bytes, already counted in `objects` and `bytes`; the seconds it had requests in
   * flight (inside the snapshot step); why it stopped early, if it did (the update went on).
   */
  early?: { objects: number; bytes: number; seconds: number; left?: number; error?: { code: string; message: string } };
  /** the link as this transfer (or an earlier one, when this one was too small to tell) measured it */
  link?: LinkEstimate;
  /** whether changed chunks went as deltas, and why (the mirror's `deltas` setting and the link) */
  fit?: { deltas: boolean; reason: string };
}

export interface Mirror {
  id: string;
  volume: string;
  peer: string;
  remoteVolume: string;
  scheduleS: number | null;
  minDelayS: number;
  maxDelayS: number;
  bandwidth: number | null;
  state: MirrorState;
  paused: boolean;
  base: string | null;
  lastSuccessAt: number | null;
  lastAttemptAt: number | null;
  nextRunAt: number | null;
  failures: number;
  lastError: { code: string; message: string } | null;
  lastTransfer: LastTransfer | null;
  createdAt: number;
  /** replication snapshots the destination keeps (a common base with a sibling after a failover); null: automatic (keepFor) */
  keepSnapshots: number | null;
  /** how changed chunks go: as deltas by the measured link (auto), always, or never */
  deltas: DeltaMode;
  /**
   * Settings stored out of bounds (a catalog written before they were checked): what was wrong
   * with each; the values above are the ones in force, within bounds. Absent when all are sound.
   */
  settingsProblems?: string[];
}

/** A row of `mirrors`. Columns added after format 1 (schema.ts ADDED_COLUMNS) read null or undefined when absent. */
interface MirrorRow {
  id: string;
  volume: string;
  peer: string;
  remote_volume: string;
  schedule_s: number | null;
  min_delay_s: number;
  max_delay_s: number;
  bandwidth: number | null;
  state: MirrorState;
  paused: number;
  base: string | null;
  last_success_at: number | null;
  last_attempt_at: number | null;
  next_run_at: number | null;
  failures: number;
  last_error: string | null;
  last_transfer: string | null;
  created_at: number;
  keep_snapshots?: number | null;
  /** NULL: auto */
  deltas?: string | null;
  /** the snapshot a failed attempt took and did not deliver: a scheduled retry within the period sends it */
  queued?: string | null;
}

function toMirror(r: MirrorRow, now: number): Mirror {
  // Settings are checked when written; one stored out of bounds (an older catalog) is read as the
  // nearest value within them, so that neither the scheduler nor a sibling's hello ever sees it.
  const { settings, problems } = storedScheduleSettings({ scheduleS: r.schedule_s, minDelayS: r.min_delay_s, maxDelayS: r.max_delay_s, bandwidth: r.bandwidth });
  let keep = r.keep_snapshots ?? null;
  if (keep !== null) {
    const c = clampStored(keep, COUNT.keep);
    if (c.problem) problems.push(`stored keep ${keep} ${c.problem} (${COUNT.keep.min} to ${COUNT.keep.max}): ${c.value} in force`);
    keep = c.value;
  }
  const deltas = r.deltas == null ? 'auto' : (DELTA_MODES as readonly string[]).includes(r.deltas) ? (r.deltas as DeltaMode) : 'auto';
  if (r.deltas != null && deltas !== r.deltas) problems.push(`stored deltas ${JSON.stringify(r.deltas)} is not one of ${DELTA_MODES.join(', ')}: auto in force`);
  // A next run further away than anything sets one (the schedule, or the longest backoff) is not
  // believed: written from an out-of-bounds schedule, or before the clock was set back. It runs now.
  const longest = longestRetryMs(settings.scheduleS === null ? null : settings.scheduleS * 1000, MIRROR_RETRY) + 60_000;
  const nextRunAt = r.next_run_at !== null && r.next_run_at - now > longest ? now : r.next_run_at;
  return {
    id: r.id, volume: r.volume, peer: r.peer, remoteVolume: r.remote_volume, scheduleS: settings.scheduleS, minDelayS: settings.minDelayS, maxDelayS: settings.maxDelayS,
    bandwidth: settings.bandwidth ?? null, state: r.state, paused: r.paused === 1, base: r.base, lastSuccessAt: r.last_success_at, lastAttemptAt: r.last_attempt_at,
    nextRunAt, failures: r.failures, lastError: r.last_error ? JSON.parse(r.last_error) : null,
    lastTransfer: r.last_transfer ? JSON.parse(r.last_transfer) : null, createdAt: r.created_at, keepSnapshots: keep, deltas,
    ...(problems.length ? { settingsProblems: problems } : {}),
  };
}

// Every number is read within JavaScript's safe integers (safeIntColumn): one stored larger would
// make every command that lists mirrors fail, the daemon's scheduler with them.
const MIRROR_COLUMNS = [
  'id', 'volume', 'peer', 'remote_volume', 'state', 'base', 'last_error', 'last_transfer', 'deltas',
  ...['schedule_s', 'min_delay_s', 'max_delay_s', 'bandwidth', 'paused', 'last_success_at', 'last_attempt_at', 'next_run_at', 'failures', 'created_at', 'keep_snapshots'].map(safeIntColumn),
].join(', ');

/** The mirrors (of one volume, when given), by volume and peer. */
export function listMirrors(cat: Catalog, volume?: string): Mirror[] {
  const rows = volume ? cat.db.all<MirrorRow>(`SELECT ${MIRROR_COLUMNS} FROM mirrors WHERE volume = ? ORDER BY volume, peer`, volume) : cat.db.all<MirrorRow>(`SELECT ${MIRROR_COLUMNS} FROM mirrors ORDER BY volume, peer`);
  const now = cat.now();
  return rows.map((r) => toMirror(r, now));
}

/** The mirror of `volume` to `peer` (or its only mirror); refused with what to do when there is none, or several. */
export function getMirror(cat: Catalog, volume: string, peer?: string): Mirror {
  const all = listMirrors(cat, volume);
  const m = peer ? all.find((x) => x.peer === peer) : all.length === 1 ? all[0] : undefined;
  if (!m) {
    if (!peer && all.length > 1) throw new FerryError('USAGE', `volume ${volume} has ${all.length} mirrors (to ${all.map((x) => x.peer).join(', ')}); say which with --to SITE`);
    throw new FerryError('MIRROR_NOT_FOUND', `no mirror of ${volume}${peer ? ` to ${peer}` : ''}; create one with \`ferry mirror create ${volume} --to ${peer ?? 'SITE'}\``);
  }
  return m;
}

/** The mirror with this id, if there is one. */
export function findMirrorById(cat: Catalog, id: string): Mirror | undefined {
  const r = cat.db.get<MirrorRow>(`SELECT ${MIRROR_COLUMNS} FROM mirrors WHERE id = ?`, id);
  return r ? toMirror(r, cat.now()) : undefined;
}

/** Whether `volume` has a mirror (to `peer`, when given). */
export function hasMirror(cat: Catalog, volume: string, peer?: string): boolean {
  return (peer === undefined ? cat.db.get('SELECT 1 FROM mirrors WHERE volume = ?', volume) : cat.db.get('SELECT 1 FROM mirrors WHERE volume = ? AND peer = ?', volume, peer)) !== undefined;
}

/** How many mirrors go to the paired site `peer`. */
export function countMirrorsTo(cat: Catalog, peer: string): number {
  return cat.db.get<{ n: number }>('SELECT count(*) AS n FROM mirrors WHERE peer = ?', peer)!.n;
}

/** The mirror's state as stored now (a job's copy may be older: a failover notice breaks it off meanwhile). */
export function mirrorState(cat: Catalog, id: string): MirrorState | undefined {
  return cat.db.get<{ state: MirrorState }>('SELECT state FROM mirrors WHERE id = ?', id)?.state;
}

/** The mirror's base as stored now (peer snapshots and siblings' bases delivered since a job began moved it). */
export function mirrorBase(cat: Catalog, id: string): string | null {
  return cat.db.get<{ base: string | null }>('SELECT base FROM mirrors WHERE id = ?', id)?.base ?? null;
}

/** The snapshot a failed attempt of the mirror took and did not deliver (mirrors.queued). */
export function queuedSnapshot(cat: Catalog, id: string): string | null {
  return cat.db.get<{ queued: string | null }>('SELECT queued FROM mirrors WHERE id = ?', id)?.queued ?? null;
}

export interface MirrorSettings {
  scheduleS: number | null;
  minDelayS: number;
  maxDelayS: number;
  bandwidth: number | null;
  keepSnapshots: number | null;
  /** absent: auto */
  deltas?: DeltaMode;
}

const deltasColumn = (d: DeltaMode | undefined) => (d === undefined || d === 'auto' ? null : d);

/** The row of a new mirror (checked by the caller), uninitialized. */
export function insertMirror(cat: Catalog, m: { id: string; volume: string; peer: string; remoteVolume: string } & MirrorSettings): void {
  cat.tx(() => {
    cat.db.run(
      'INSERT INTO mirrors (id, volume, peer, remote_volume, schedule_s, min_delay_s, max_delay_s, bandwidth, state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      m.id, m.volume, m.peer, m.remoteVolume, m.scheduleS, m.minDelayS, m.maxDelayS, m.bandwidth, 'uninitialized', cat.now(),
    );
    if (m.keepSnapshots !== null) cat.db.run('UPDATE mirrors SET keep_snapshots = ? WHERE id = ?', m.keepSnapshots, m.id);
    if (deltasColumn(m.deltas) !== null) cat.db.run('UPDATE mirrors SET deltas = ? WHERE id = ?', deltasColumn(m.deltas), m.id);
  });
}

/**
 * New settings (checked by the caller). `rescheduled`: the schedule changed, so the next run counts
 * from the last success, not from a run planned under the old one; a retry waiting after failures
 * keeps its wait, up to one new period.
 */
export function setMirrorSettings(cat: Catalog, id: string, s: MirrorSettings, rescheduled: boolean): void {
  cat.tx(() => {
    cat.db.run('UPDATE mirrors SET schedule_s = ?, min_delay_s = ?, max_delay_s = ?, bandwidth = ?, keep_snapshots = ? WHERE id = ?', s.scheduleS, s.minDelayS, s.maxDelayS, s.bandwidth, s.keepSnapshots, id);
    if (s.deltas !== undefined) cat.db.run('UPDATE mirrors SET deltas = ? WHERE id = ?', deltasColumn(s.deltas), id);
    if (rescheduled) {
      cat.db.run('UPDATE mirrors SET next_run_at = CASE WHEN failures = 0 OR ? IS NULL THEN NULL ELSE min(next_run_at, ?) END WHERE id = ?', s.scheduleS, cat.now() + (s.scheduleS ?? 0) * 1000, id);
    }
  });
}

/** The state column alone (replication/driver/run.ts setMirrorState records the transition's event with it). */
export function writeMirrorState(cat: Catalog, id: string, state: MirrorState): void {
  cat.db.run('UPDATE mirrors SET state = ? WHERE id = ?', state, id);
}

export function setMirrorPaused(cat: Catalog, id: string, paused: boolean): void {
  cat.db.run('UPDATE mirrors SET paused = ? WHERE id = ?', paused ? 1 : 0, id);
}

/** The row alone (site/mirrors.ts dropMirror releases what the mirror held in the same transaction). */
export function deleteMirrorRow(cat: Catalog, id: string): void {
  cat.db.run('DELETE FROM mirrors WHERE id = ?', id);
}

/** An update of the mirror begins. */
export function recordAttempt(cat: Catalog, id: string, at: number): void {
  cat.db.run('UPDATE mirrors SET last_attempt_at = ? WHERE id = ?', at, id);
}

/** A last success later than this site's clock (the clock was set back) becomes `now`; a next run planned past `next` comes to it. */
export function resetLastSuccess(cat: Catalog, id: string, now: number, next: number): void {
  cat.db.run('UPDATE mirrors SET last_success_at = ?, next_run_at = CASE WHEN next_run_at IS NULL THEN NULL ELSE min(next_run_at, ?) END WHERE id = ?', now, next, id);
}

/**
 * The destination committed `base`: the mirror's base moves to it (and its hold with it), the hold of
 * the update in flight goes, and the transfer is recorded; failures are forgotten.
 */
export function recordSuccess(cat: Catalog, id: string, o: { base: string; at: number; error: { code: string; message: string } | null; transfer: LastTransfer; nextRunAt: number | null }): void {
  cat.tx(() => {
    moveBase(cat, id, o.base);
    releaseInFlight(cat, id);
    cat.db.run(
      'UPDATE mirrors SET base = ?, last_success_at = ?, failures = 0, last_error = ?, last_transfer = ?, next_run_at = ?, queued = NULL WHERE id = ?',
      o.base, o.at, o.error ? JSON.stringify(o.error) : null, JSON.stringify(o.transfer), o.nextRunAt, id,
    );
    // The destination applied what this site sent: it follows this site, so a split brain with it is over.
    const to = cat.db.get<{ volume: string; site: string }>('SELECT m.volume AS volume, p.id AS site FROM mirrors m JOIN peers p ON p.name = m.peer WHERE m.id = ?', id);
    if (to) clearSplitBrain(cat, to.volume, to.site, 'it applied an update from this site: it follows this site now');
  });
}

/**
 * An update failed: the hold of the update in flight goes, the failure is counted, the next attempt
 * waits until `nextRunAt`; `queued`, the snapshot it took, is what a scheduled retry sends.
 */
export function recordFailure(cat: Catalog, id: string, o: { failures: number; error: { code: string; message: string }; nextRunAt: number; queued: string | null }): void {
  cat.tx(() => {
    releaseInFlight(cat, id);
    cat.db.run('UPDATE mirrors SET failures = ?, last_error = ?, next_run_at = ?, queued = coalesce(?, queued) WHERE id = ?', o.failures, JSON.stringify(o.error), o.nextRunAt, o.queued, id);
  });
}

/** The mirror's last error (null: none), its failures unchanged. */
export function setMirrorError(cat: Catalog, id: string, error: { code: string; message: string } | null): void {
  cat.db.run('UPDATE mirrors SET last_error = ? WHERE id = ?', error ? JSON.stringify(error) : null, id);
}

/** The mirror's last error and its failures are forgotten (its destination follows this site again). */
export function clearMirrorFailures(cat: Catalog, id: string): void {
  cat.db.run('UPDATE mirrors SET last_error = NULL, failures = 0 WHERE id = ?', id);
}

/**
 * The mirror's base becomes `base` (held by it, the one it had released) outside an update: a common
 * base adopted, a DR workflow's mirror taking the snapshot both sides hold. Optionally the state and
 * the last success with it, as one change.
 */
export function setMirrorBase(cat: Catalog, id: string, base: string, o: { state?: MirrorState; lastSuccessAt?: number; nextRunAt?: number | null } = {}): void {
  cat.tx(() => {
    moveBase(cat, id, base);
    cat.db.run('UPDATE mirrors SET base = ? WHERE id = ?', base, id);
    if (o.state !== undefined) cat.db.run('UPDATE mirrors SET state = ? WHERE id = ?', o.state, id);
    if (o.lastSuccessAt !== undefined) cat.db.run('UPDATE mirrors SET last_success_at = ?, next_run_at = ? WHERE id = ?', o.lastSuccessAt, o.nextRunAt ?? null, id);
  });
}

/**
 * The destination no longer holds the mirror's base (its volume was removed and made again, its home
 * restored from an old backup): the base goes, with its hold (nothing there to send deltas against
 * or to keep it for), and the mirror needs a full sync.
 */
export function dropMirrorBase(cat: Catalog, id: string): void {
  cat.tx(() => {
    releaseBase(cat, id);
    cat.db.run("UPDATE mirrors SET base = NULL, state = 'needs-full-sync' WHERE id = ?", id);
  });
}

/** The destination took the volume over: the mirror is broken off, with why (no event: the caller records one). */
export function breakOffMirror(cat: Catalog, id: string, error: { code: string; message: string }): void {
  cat.db.run("UPDATE mirrors SET state = 'broken-off', last_error = ? WHERE id = ?", JSON.stringify(error), id);
}
