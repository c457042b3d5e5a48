// Mirrors at the source: their records, their state machine, and the update
// job that takes (or picks) a snapshot, sends what the destination lacks,
// commits it there, and only then moves the base hold here. Every state
// change is one transaction and one event, logged as `from => to` with the
// reason. Every failure is counted and waits before the next scheduled attempt
// (backoff with jitter; an error that is not transient waits at least for the
// next period); after repeated transient failures the mirror shows
// `disconnected` while snapshots keep being taken, one per period.
import { ERRORS, FerryError, isFerryError, type ErrorCode } from '../core/errors.ts';
import { parseName, type ObjectId } from '../core/ids.ts';
import type { ChunkPool } from '../snapshot/chunk-pool.ts';
import { sendSnapshot, type TransferProgress } from '../replication/sender.ts';
import { EarlySender, type EarlySendOptions, type EarlyStats } from '../replication/early-send.ts';
import { TokenBucket } from '../replication/token-bucket.ts';
import type { HelloRequest, Receiver, SiblingInfo } from '../replication/types.ts';
import { PROTOCOL_VERSION } from '../replication/types.ts';
import type { Site } from './site.ts';
import { getPeer, type Peer } from './peers.ts';
import { compareOnOneClock, compareSnapshots, createSnapshot, findSnapshot, isKeptWrites, latestSnapshot, newestOf, resolveSnapshot, type SnapshotRecord } from './snapshots.ts';
import { getVolume } from './volumes.ts';
import { lockHeld } from './lock.ts';
import { longestRetryMs, MIRROR_RETRY, retryDelayMs, type Random } from '../core/backoff.ts';
import { safeIntColumn } from '../core/sqlite.ts';
import { checkCount, checkScheduleSettings, clampStored, COUNT, storedScheduleSettings } from '../core/units.ts';
import { dropPeerDeletions, finishPeerDelete, isPeerSnapshotFor, markPeer, pendingPeerDeletions, pendingPeerSnapshots, queuePeerSnapshotsFor } from './peer-snapshots.ts';

export const MIRROR_STATES = ['uninitialized', 'baselining', 'idle', 'updating', 'paused', 'disconnected', 'needs-full-sync', 'broken-off', 'resyncing'] as const;
export type MirrorState = (typeof MIRROR_STATES)[number];

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
   * What went while the capture ran (docs/replication.md, "Overlap of capture and transfer"): chunks
   * and trees, and their stored bytes, already counted in `objects` and `bytes`; the seconds it had requests in
   * flight (inside the snapshot step); why it stopped early, if it did (the update went on).
   */
  early?: { objects: number; bytes: number; seconds: number; error?: { code: string; message: string } };
}

const PHASE_KEYS = ['check', 'stageWait', 'writesCheck', 'apply', 'verify'];

/** The destination's step timings, as far as they are sane numbers (they come from the network). */
function remotePhases(p: unknown): Record<string, number> {
  const out: Record<string, number> = {};
  if (!p || typeof p !== 'object') return out;
  for (const k of PHASE_KEYS) {
    const v = (p as Record<string, unknown>)[k];
    if (typeof v === 'number' && Number.isFinite(v) && v >= 0 && v < 1e7) out[k] = v;
  }
  return out;
}

const secondsSince = (t: number) => Math.round(performance.now() - t) / 1000;

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
  /**
   * Settings stored out of bounds (a catalog written before they were checked): what was wrong
   * with each; the values above are the ones in force, within bounds. Absent when all are sound.
   */
  settingsProblems?: string[];
}

/**
 * How many replication snapshots a secondary keeps unless its mirror says otherwise (docs/dr.md,
 * "Several secondaries"): 3 when the volume has other secondaries (candidates for a common base with
 * a sibling that takes over), 1 when it has none (nothing to share a base with).
 */
export const DEFAULT_KEEP_SNAPSHOTS = 3;

export function keepFor(m: Mirror, siblings: number): number {
  return m.keepSnapshots ?? (siblings > 0 ? DEFAULT_KEEP_SNAPSHOTS : 1);
}

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
  // A next run further away than anything sets one (the schedule, or the longest backoff) is not
  // believed: written from an out-of-bounds schedule, or before the clock was set back. It runs now.
  const longest = longestRetryMs(settings.scheduleS === null ? null : settings.scheduleS * 1000, MIRROR_RETRY) + 60_000;
  const nextRunAt = r.next_run_at !== null && r.next_run_at - now > longest ? now : r.next_run_at;
  return {
    id: r.id, volume: r.volume, peer: r.peer, remoteVolume: r.remote_volume, scheduleS: settings.scheduleS, minDelayS: settings.minDelayS, maxDelayS: settings.maxDelayS,
    bandwidth: settings.bandwidth ?? null, state: r.state, paused: r.paused === 1, base: r.base, lastSuccessAt: r.last_success_at, lastAttemptAt: r.last_attempt_at,
    nextRunAt, failures: r.failures, lastError: r.last_error ? JSON.parse(r.last_error) : null,
    lastTransfer: r.last_transfer ? JSON.parse(r.last_transfer) : null, createdAt: r.created_at, keepSnapshots: keep,
    ...(problems.length ? { settingsProblems: problems } : {}),
  };
}

// Every number is read within JavaScript's safe integers (safeIntColumn): one stored larger would
// make every command that lists mirrors fail, the daemon's scheduler with them.
const MIRROR_COLUMNS = [
  'id', 'volume', 'peer', 'remote_volume', 'state', 'base', 'last_error', 'last_transfer',
  ...['schedule_s', 'min_delay_s', 'max_delay_s', 'bandwidth', 'paused', 'last_success_at', 'last_attempt_at', 'next_run_at', 'failures', 'created_at', 'keep_snapshots'].map(safeIntColumn),
].join(', ');

export function holdFor(m: { id: string }): string {
  return `mirror:${m.id}`;
}

export function listMirrors(site: Site, volume?: string): Mirror[] {
  const rows = volume ? site.db.all<MirrorRow>(`SELECT ${MIRROR_COLUMNS} FROM mirrors WHERE volume = ? ORDER BY volume, peer`, volume) : site.db.all<MirrorRow>(`SELECT ${MIRROR_COLUMNS} FROM mirrors ORDER BY volume, peer`);
  const now = site.clock.now();
  return rows.map((r) => toMirror(r, now));
}

export function getMirror(site: Site, volume: string, peer?: string): Mirror {
  const all = listMirrors(site, volume);
  const m = peer ? all.find((x) => x.peer === peer) : all.length === 1 ? all[0] : undefined;
  if (!m) {
    if (!peer && all.length > 1) throw new FerryError('USAGE', `volume ${volume} has ${all.length} mirrors (to ${all.map((x) => x.peer).join(', ')}); say which with --to SITE`);
    throw new FerryError('MIRROR_NOT_FOUND', `no mirror of ${volume}${peer ? ` to ${peer}` : ''}; create one with \`ferry mirror create ${volume} --to SITE\``);
  }
  return m;
}

export interface CreateMirrorOptions {
  volume: string;
  to: string; // SITE or SITE:VOL
  scheduleS?: number | null;
  minDelayS?: number;
  maxDelayS?: number;
  bandwidth?: number | null;
  /** replication snapshots the destination keeps (default 3) */
  keepSnapshots?: number | null;
  /**
   * The volume's peer snapshots become pending for the new mirror (delivered with its baseline,
   * oldest first: a peer snapshot must exist on every secondary). A mirror a DR workflow creates to
   * a site that already holds the volume's history passes false: what that site has is unknown here.
   */
  peerSnapshots?: boolean;
}

export function createMirror(site: Site, o: CreateMirrorOptions): Mirror {
  const settings = checkScheduleSettings({ scheduleS: o.scheduleS ?? null, minDelayS: o.minDelayS ?? 0, maxDelayS: o.maxDelayS ?? 3600, bandwidth: o.bandwidth ?? null }, 'mirror');
  const keep = o.keepSnapshots == null ? null : checkCount(o.keepSnapshots, COUNT.keep, 'mirror keep');
  const vol = getVolume(site, o.volume);
  if (vol.role === 'secondary') throw new FerryError('MIRROR_STATE', `volume ${o.volume} is a secondary here; mirror it from its primary site`);
  const [peerName, remote] = o.to.includes(':') ? [o.to.slice(0, o.to.indexOf(':')), o.to.slice(o.to.indexOf(':') + 1)] : [o.to, o.volume];
  const peer = getPeer(site, peerName);
  parseName(remote, 'volume');
  if (site.db.get('SELECT 1 FROM mirrors WHERE volume = ? AND peer = ?', o.volume, peer.name)) {
    throw new FerryError('MIRROR_EXISTS', `volume ${o.volume} already has a mirror to ${peer.name}`);
  }
  const id = `${o.volume}@${peer.name}`;
  const now = site.clock.now();
  site.db.tx(() => {
    // A mirror to the same site again gets the same id: nothing of an earlier one (rows an older ferry
    // left behind when it removed it) may carry over, or a peer snapshot would show `present` at a
    // secondary that never received it.
    releaseMirrorRows(site, id);
    site.db.run(
      'INSERT INTO mirrors (id, volume, peer, remote_volume, schedule_s, min_delay_s, max_delay_s, bandwidth, state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      id, o.volume, peer.name, remote, settings.scheduleS, settings.minDelayS, settings.maxDelayS, settings.bandwidth, 'uninitialized', now,
    );
    if (keep !== null) site.db.run('UPDATE mirrors SET keep_snapshots = ? WHERE id = ?', keep, id);
    if (vol.role === 'standalone') site.db.run("UPDATE volumes SET role = 'primary' WHERE name = ?", o.volume);
    const pending = o.peerSnapshots === false ? [] : queuePeerSnapshotsFor(site, o.volume, id);
    site.event({ kind: 'mirror.create', volume: o.volume, outcome: 'ok', detail: { mirror: id, to: `${peer.name}:${remote}`, state: '=> uninitialized', ...(pending.length ? { peerSnapshotsPending: pending } : {}) } });
  });
  return getMirror(site, o.volume, peer.name);
}

/** A mirror's settings; each one given is changed (null clears schedule, bandwidth and keep), the others stay. */
export interface MirrorSettingsChange {
  scheduleS?: number | null;
  minDelayS?: number;
  maxDelayS?: number;
  bandwidth?: number | null;
  keepSnapshots?: number | null;
}

/**
 * Change a mirror's settings (`ferry mirror set`, a site file): checked like createMirror's, written
 * in one transaction with one event. Every setting is written, so one stored out of bounds by an
 * older ferry is repaired by any change (the others keep the values in force).
 */
export function setMirrorSettings(site: Site, volume: string, peer: string | undefined, change: MirrorSettingsChange): Mirror {
  const cur = getMirror(site, volume, peer);
  const pick = <K extends keyof MirrorSettingsChange>(k: K, was: Mirror[K]) => (change[k] === undefined ? was : change[k]) as NonNullable<Mirror[K]> | null;
  const s = checkScheduleSettings({ scheduleS: pick('scheduleS', cur.scheduleS), minDelayS: pick('minDelayS', cur.minDelayS)!, maxDelayS: pick('maxDelayS', cur.maxDelayS)!, bandwidth: pick('bandwidth', cur.bandwidth) }, 'mirror');
  const keep = pick('keepSnapshots', cur.keepSnapshots);
  if (keep !== null) checkCount(keep, COUNT.keep, 'mirror keep');
  site.db.tx(() => {
    site.db.run('UPDATE mirrors SET schedule_s = ?, min_delay_s = ?, max_delay_s = ?, bandwidth = ?, keep_snapshots = ? WHERE id = ?', s.scheduleS, s.minDelayS, s.maxDelayS, s.bandwidth, keep, cur.id);
    // A new schedule counts from the last success, not from a run planned under the old one; a
    // retry waiting after failures keeps its wait, up to one new period.
    if (cur.scheduleS !== s.scheduleS || cur.settingsProblems) {
      site.db.run('UPDATE mirrors SET next_run_at = CASE WHEN failures = 0 OR ? IS NULL THEN NULL ELSE min(next_run_at, ?) END WHERE id = ?', s.scheduleS, site.clock.now() + (s.scheduleS ?? 0) * 1000, cur.id);
    }
    const changed = Object.fromEntries(Object.entries({ scheduleS: s.scheduleS, minDelayS: s.minDelayS, maxDelayS: s.maxDelayS, bandwidth: s.bandwidth, keepSnapshots: keep }).filter(([k, v]) => cur[k as keyof Mirror] !== v));
    site.event({ kind: 'mirror.settings', volume: cur.volume, outcome: 'ok', detail: { mirror: cur.id, ...changed, ...(cur.settingsProblems ? { repaired: cur.settingsProblems } : {}) } });
  });
  return getMirror(site, volume, cur.peer);
}

export function setMirrorState(site: Site, m: Mirror, to: MirrorState, reason: string, extra: Record<string, unknown> = {}): void {
  const from = site.db.get<{ state: MirrorState }>('SELECT state FROM mirrors WHERE id = ?', m.id)?.state ?? m.state;
  site.db.tx(() => {
    site.db.run('UPDATE mirrors SET state = ? WHERE id = ?', to, m.id);
    if (from !== to) site.event({ kind: 'mirror.state', volume: m.volume, outcome: 'info', detail: { mirror: m.id, transition: `${from} => ${to}`, reason, ...extra } });
  });
  m.state = to;
}

export function pauseMirror(site: Site, volume: string, peer?: string, paused = true): Mirror {
  const m = getMirror(site, volume, peer);
  site.db.tx(() => {
    site.db.run('UPDATE mirrors SET paused = ? WHERE id = ?', paused ? 1 : 0, m.id);
    site.event({ kind: paused ? 'mirror.pause' : 'mirror.resume', volume, outcome: 'ok', detail: { mirror: m.id } });
  });
  return getMirror(site, volume, m.peer);
}

/**
 * `ferry mirror remove`: the mirror and everything it holds go (dropMirror); a primary left without
 * mirrors is standalone again. The caller stops the mirror's running update first (Engine.stopJob):
 * a job that ends after the removal would take holds for a mirror that no longer exists.
 */
export function removeMirror(site: Site, volume: string, peer?: string): Mirror {
  const m = getMirror(site, volume, peer);
  site.db.tx(() => {
    dropMirror(site, m, 'removed');
    if (!site.db.get('SELECT 1 FROM mirrors WHERE volume = ?', volume)) site.db.run("UPDATE volumes SET role = 'standalone' WHERE name = ? AND role = 'primary'", volume);
  });
  return m;
}

/**
 * Remove a mirror record and everything that belongs to it, in one transaction (the caller's, if
 * any): the holds it took (its base, the snapshot of an update in flight) and its peer-snapshot rows
 * (which no foreign key ties to it). Every path that removes a mirror uses this one: `mirror remove`,
 * a migrate, a failback, a takeover. A running update of the mirror must have ended first.
 */
export function dropMirror(site: Site, m: { id: string; volume: string; peer: string }, reason: string, detail: Record<string, unknown> = {}): void {
  site.db.tx(() => {
    const released = releaseMirrorRows(site, m.id);
    site.db.run('DELETE FROM mirrors WHERE id = ?', m.id);
    site.event({ kind: 'mirror.remove', volume: m.volume, outcome: 'ok', detail: { mirror: m.id, peer: m.peer, reason, released, ...detail } });
  });
}

/** The holds and peer-snapshot rows of a mirror id; returns the holds released. */
function releaseMirrorRows(site: Site, id: string): Array<{ holder: string; snapshot: string }> {
  const holders = [holdFor({ id }), inflightHold({ id })];
  const released = site.db.all<{ holder: string; snapshot: string }>('SELECT holder, snapshot FROM holds WHERE holder IN (?, ?)', ...holders);
  site.db.run('DELETE FROM holds WHERE holder IN (?, ?)', ...holders);
  site.db.run('DELETE FROM peer_snapshots WHERE mirror = ?', id);
  // Peer-snapshot deletions its secondary still owed: that site is no longer this mirror's to ask.
  for (const snapshot of dropPeerDeletions(site, id)) finishPeerDelete(site, snapshot, { gc: false });
  return released;
}

/**
 * This site stops being a secondary of `volume` (a promotion by migrate, a failback served, a rollback,
 * a new source): the relation's row goes, and with it the holds its source took on this volume's
 * snapshots (`mirror-from:<source>`; never those of the same source for another volume). Returns the
 * source it had. In the caller's transaction, if any.
 */
export function endSecondaryRelation(site: Site, volume: string): string | null {
  const row = site.db.get<{ source_site: string }>('SELECT source_site FROM secondaries WHERE volume = ?', volume);
  if (!row) return null;
  site.db.tx(() => {
    site.db.run('DELETE FROM holds WHERE holder = ? AND snapshot IN (SELECT id FROM snapshots WHERE volume = ?)', `mirror-from:${row.source_site}`, volume);
    site.db.run('DELETE FROM secondaries WHERE volume = ?', volume);
  });
  return row.source_site;
}

export function inflightHold(m: { id: string }): string {
  return `${holdFor(m)}:inflight`;
}

/**
 * Holds whose holder no longer exists: a mirror (its base or a snapshot in flight), a link, or a
 * replication source this volume no longer follows. Older versions left such holds behind (a mirror
 * removed during an update), and nothing could ever release them: the snapshot could not be
 * deleted, GC kept its data, and `volume remove` asked to remove mirrors that did not exist. Run
 * when a site is opened for work (the engine starts), while nothing else runs; each release is
 * named in one event. Peer-snapshot holds have no holder to check and stay.
 */
export function releaseOrphanHolds(site: Site): Array<{ snapshot: string; holder: string }> {
  if (site.readOnly) return [];
  const rows = site.db.all<{ snapshot: string; holder: string; volume: string }>('SELECT h.snapshot, h.holder, s.volume FROM holds h JOIN snapshots s ON s.id = h.snapshot');
  const orphan = rows.filter((r) => {
    if (r.holder.startsWith('mirror-from:')) return !site.db.get('SELECT 1 FROM secondaries WHERE volume = ? AND source_site = ?', r.volume, r.holder.slice('mirror-from:'.length));
    if (r.holder.startsWith('mirror:')) return !site.db.get('SELECT 1 FROM mirrors WHERE id = ?', r.holder.slice('mirror:'.length).replace(/:inflight$/, ''));
    if (r.holder.startsWith('link:')) return !site.db.get('SELECT 1 FROM links WHERE path = ?', r.holder.slice('link:'.length));
    return false;
  });
  if (orphan.length === 0) return [];
  const released = orphan.map((r) => ({ snapshot: r.snapshot, holder: r.holder }));
  site.db.tx(() => {
    for (const r of released) site.db.run('DELETE FROM holds WHERE snapshot = ? AND holder = ?', r.snapshot, r.holder);
    site.event({ kind: 'hold.release', outcome: 'warning', detail: { reason: 'their holder (a mirror, a link, a replication source) no longer exists', holds: released } });
  });
  return released;
}

// ---------------------------------------------------------------- the update job

export interface UpdateOptions {
  initialize?: boolean;
  snapshot?: string;
  force?: boolean;
  scheduled?: boolean;
  signal?: AbortSignal;
  onProgress?: (p: TransferProgress) => void;
}

export interface UpdateResult {
  mirror: string;
  snapshot: string;
  base: string | null;
  transfer: LastTransfer;
  applied: boolean;
  writesSnapshot?: string;
  /**
   * What the capture of the snapshot sent reported (paths skipped, unreadable, changed while read; a
   * post hook that failed): the replica may lack those paths. The first MAX_WARNINGS_LISTED, or for a
   * snapshot taken earlier (named, queued) one line with its count. The CLI exits 8 when any.
   */
  warnings: UpdateWarning[];
}

export interface UpdateWarning {
  path: string;
  message: string;
  problem?: string;
}

/** Warnings listed in an update's result; its event lists this many paths at most. */
const MAX_WARNINGS_LISTED = 100;
const MAX_WARNING_PATHS = 20;

/** How many warnings the capture of a snapshot reported (recorded with it). */
export function captureWarnings(s: { stats: Record<string, unknown> } | undefined): number {
  const n = s?.stats.warnings;
  return typeof n === 'number' && Number.isInteger(n) && n > 0 ? n : 0;
}

export interface UpdateDeps {
  site: Site;
  pool: ChunkPool;
  connect: (peer: Peer) => Receiver;
  /** randomness for the retry jitter (Math.random by default; tests fix it) */
  random?: Random;
}

/** Consecutive transient failures after which a mirror shows `disconnected`. */
const DISCONNECTED_AFTER = 3;

/**
 * A site whose clock was set back finds its mirrors' last success in the future: min delay and the
 * schedule would then hold every update until the clock passes that time again (an hour for a clock
 * that was an hour ahead). Such a time is not believed: it becomes now (the min delay then counts
 * from now, once), and the change is an event. Returns the mirror as it now stands.
 */
export function settleFutureSuccess(site: Site, m: Mirror, now = site.clock.now()): Mirror {
  if (m.lastSuccessAt === null || m.lastSuccessAt <= now + 1000) return m;
  const next = m.scheduleS ? now + m.scheduleS * 1000 : null;
  site.db.tx(() => {
    site.db.run('UPDATE mirrors SET last_success_at = ?, next_run_at = CASE WHEN next_run_at IS NULL THEN NULL ELSE min(next_run_at, ?) END WHERE id = ?', now, next ?? now, m.id);
    site.event({ kind: 'mirror.clock', volume: m.volume, outcome: 'warning', detail: { mirror: m.id, lastSuccessAt: m.lastSuccessAt, now, reason: "the mirror's last success is later than this site's clock (the clock was set back): counted from now" } });
  });
  return { ...m, lastSuccessAt: now, nextRunAt: m.nextRunAt === null ? null : Math.min(m.nextRunAt, next ?? now) };
}

/** Plan and run one update (or the initial baseline) of a mirror. */
export async function runMirrorUpdate(deps: UpdateDeps, volume: string, peerName: string | undefined, o: UpdateOptions = {}): Promise<UpdateResult> {
  const { site } = deps;
  const now = site.clock.now();
  const m = settleFutureSuccess(site, getMirror(site, volume, peerName), now);
  if (o.initialize) {
    if (m.state !== 'uninitialized' && m.state !== 'needs-full-sync' && !(m.state === 'disconnected' && !m.base) && m.state !== 'baselining') {
      throw new FerryError('MIRROR_STATE', `mirror ${m.id} is already initialized (${m.state}); use \`ferry mirror update\``);
    }
  } else {
    if (m.state === 'uninitialized' || (!m.base && m.state !== 'needs-full-sync')) throw new FerryError('MIRROR_STATE', `mirror ${m.id} has no baseline yet; run \`ferry mirror initialize ${volume} --to ${m.peer}\``);
    if (m.state === 'needs-full-sync') throw new FerryError('MIRROR_STATE', `mirror ${m.id} has no common base with ${m.peer} any more; run \`ferry mirror initialize ${volume} --to ${m.peer}\` for a full sync`);
    if (m.state === 'broken-off') throw new FerryError('MIRROR_STATE', `mirror ${m.id} is broken off (failover); it does not update`);
    if (m.paused && !o.force) throw new FerryError('MIRROR_STATE', `mirror ${m.id} is paused; \`ferry mirror resume\` it, or update with --force`);
    if (!o.force && !o.scheduled && m.lastSuccessAt !== null && now - m.lastSuccessAt < m.minDelayS * 1000) {
      throw new FerryError('MIRROR_STATE', `mirror ${m.id} was updated ${Math.round((now - m.lastSuccessAt) / 1000)} s ago, within its min delay of ${m.minDelayS} s; wait or use --force`);
    }
  }
  const stable: MirrorState = m.base ? 'idle' : m.state === 'needs-full-sync' ? 'needs-full-sync' : 'uninitialized';
  if (getVolume(site, volume).role === 'secondary') {
    throw new FerryError('MIRROR_STATE', `volume ${volume} is a secondary here (a failback or a migrate is making it one): mirror ${m.id} does not update from it`);
  }
  // A failover notice that arrives while this job runs breaks the mirror off: the job's end keeps that.
  const settle = (to: MirrorState, reason: string) => {
    if (site.db.get<{ state: string }>('SELECT state FROM mirrors WHERE id = ?', m.id)?.state !== 'broken-off') setMirrorState(site, m, to, reason);
  };
  setMirrorState(site, m, o.initialize ? 'baselining' : 'updating', o.scheduled ? 'schedule' : 'requested');
  site.db.run('UPDATE mirrors SET last_attempt_at = ? WHERE id = ?', now, m.id);
  const started = performance.now();
  const phases: Record<string, number> = {};
  let committed = false;
  // What the capture this job takes reports (none when it sends a snapshot taken earlier).
  const captured: UpdateWarning[] = [];
  // The snapshot this attempt took (or took up again): should the attempt fail, a retry sends it.
  let taken: string | undefined;
  try {
    const peer = getPeer(site, m.peer);
    const vol = getVolume(site, volume);
    const helloRequest = (): HelloRequest => {
      const siblings = siblingsOf(site, m);
      return { protocol: PROTOCOL_VERSION, sourceVolume: volume, volume: m.remoteVolume, members: vol.members.map((x) => ({ name: x.name, kind: x.kind })), keep: keepFor(m, siblings.length), siblings };
    };
    const limiter = m.bandwidth ? new TokenBucket(m.bandwidth) : undefined;
    // The target is chosen (or taken) before the peer is contacted: while the peer is unreachable,
    // scheduled attempts still take snapshots here; they queue, and the next update sends the newest.
    let target: SnapshotRecord;
    let early: EarlyStats | undefined;
    const baseSnap = m.base ? findSnapshot(site, volume, m.base) : undefined;
    if (o.snapshot) {
      target = resolveSnapshot(site, volume, o.snapshot);
      if (target.origin !== site.id) {
        throw new FerryError('MIRROR_STATE', `snapshot ${target.name ?? target.id} was taken at another site (${target.origin}); a site sends only the snapshots it took: name one taken here, or leave --snapshot out to take a new one`);
      }
    } else {
      // A new snapshot, unless a scheduled retry finds the one an earlier failed attempt of this mirror
      // took (mirrors.queued) in this schedule period: taken here (a site sends only its own), after the
      // base by lineage and origin (never by comparing two sites' clocks), and young by this site's
      // clock. Retries after failures do not multiply snapshots; a snapshot another mirror of the
      // volume took is not this mirror's (each takes its own: siblings share bases by delivery).
      const queuedId = o.scheduled && m.failures > 0 && m.scheduleS ? site.db.get<{ queued: string | null }>('SELECT queued FROM mirrors WHERE id = ?', m.id)?.queued : null;
      const queued = queuedId ? findSnapshot(site, volume, queuedId) : undefined;
      if (queued && queued.origin === site.id && queued.id !== m.base && !isKeptWrites(queued) && (!baseSnap || compareSnapshots(site, queued, baseSnap) > 0) && now - queued.time < m.scheduleS! * 1000) taken = (target = queued).id;
      else {
        const capture = () => createSnapshot(site, volume, { pool: deps.pool, signal: o.signal, onWarning: (w) => captured.push(w) });
        // Without a delta base (an initialize), the chunks the capture stores go while it runs; with
        // one, changed chunks go as deltas against the base after it, as below.
        if (o.initialize || !m.base) {
          const open = async (signal: AbortSignal) => {
            const rx = deps.connect(peer);
            await rx.hello(helloRequest(), signal);
            return rx;
          };
          const r = await captureSendingEarly(site, capture, { open, volume: m.remoteVolume, signal: o.signal, limiter, onProgress: o.onProgress });
          target = r.result.snapshot;
          taken = target.id;
          early = r.early;
        } else taken = (target = (await capture()).snapshot).id;
        phases.snapshot = secondsSince(started);
        if (early && early.objectsSent > 0) phases['snapshot.early'] = Math.round(early.seconds * 1000) / 1000;
      }
    }
    // Older than the base by lineage and origin (after a failback or a migrate the base was taken at the other site).
    if (baseSnap && compareSnapshots(site, target, baseSnap) < 0) {
      throw new FerryError('MIRROR_STATE', `snapshot ${target.name ?? target.id} is older than the mirror's base ${m.base}; choose a newer one`);
    }
    // Hold the target while it is in flight so retention cannot take it.
    site.db.run('INSERT OR IGNORE INTO holds (snapshot, holder, created_at) VALUES (?, ?, ?)', target.id, `${holdFor(m)}:inflight`, site.clock.now());
    const rx = deps.connect(peer);
    const hello = await rx.hello(helloRequest(), o.signal);
    // The base: the mirror's recorded base if the destination still has it.
    const remoteIds = new Set(hello.snapshots.map((s) => s.id));
    if (!o.initialize && m.base && !remoteIds.has(m.base)) adoptNewerCommonBase(site, m, hello.snapshots);
    if (!o.initialize && m.base && !remoteIds.has(m.base)) {
      setMirrorState(site, m, 'needs-full-sync', `the destination no longer has base ${m.base}`);
      throw new FerryError('MIRROR_STATE', `${m.peer} no longer has the base snapshot ${m.base}: the mirror needs a full sync (\`ferry mirror initialize ${volume} --to ${m.peer}\`)`);
    }
    // Changed chunks may go as deltas against the common base's (when the destination takes them).
    const deltaBase = hello.delta && !o.initialize && m.base ? (site.db.get<{ manifest: string }>('SELECT manifest FROM snapshots WHERE id = ?', m.base)?.manifest as ObjectId | undefined) : undefined;
    // Peer snapshots first, oldest first, each committed on its own: they must exist there under the same id and name.
    for (const p of pendingPeerSnapshots(site, m.id)) {
      // Both taken here: one clock (time, then id), the order the receiver's replay check uses.
      if (p.id === target.id || compareOnOneClock(p, target) > 0) continue;
      if (remoteIds.has(p.id)) {
        // Already there (its commit's answer was lost, or the destination had it before this mirror
        // existed): present. The base does not move back to it: a newer one committed there is adopted above.
        markPeer(site, p.id, m.id, 'present');
        site.event({ kind: 'snapshot.peer', volume, outcome: 'ok', detail: { snapshot: p.id, name: p.name, presentAt: m.peer, found: true } });
        continue;
      }
      markPeer(site, p.id, m.id, 'transferring');
      await sendSnapshot(site.store as never, rx, m.remoteVolume, p.manifest, { signal: o.signal, limiter, onProgress: o.onProgress });
      const c = await rx.commit(m.remoteVolume, { snapshot: p.id, manifest: p.manifest, force: o.force, peer: true }, o.signal);
      if (!c.applied) throw new FerryError('REPLICA_WRITTEN', `${m.peer}: ${c.refused}`, { details: { writesSnapshot: c.writesSnapshot, transferred: p.id } });
      site.db.tx(() => {
        site.db.run('DELETE FROM holds WHERE holder = ?', holdFor(m));
        site.db.run('INSERT OR IGNORE INTO holds (snapshot, holder, created_at) VALUES (?, ?, ?)', p.id, holdFor(m), site.clock.now());
        site.db.run('UPDATE mirrors SET base = ? WHERE id = ?', p.id, m.id);
        markPeer(site, p.id, m.id, 'present');
        site.event({ kind: 'snapshot.peer', volume, outcome: 'ok', detail: { snapshot: p.id, name: p.name, presentAt: m.peer } });
      });
    }
    // Siblings' bases next (several secondaries): each secondary also holds the snapshot its siblings
    // hold, so whichever takes over shares a base with the others (docs/dr.md, "Several secondaries").
    let siblingBytes = 0;
    for (const b of siblingBasesToDeliver(site, m, target, hello)) {
      const sent = await sendSnapshot(site.store as never, rx, m.remoteVolume, b.manifest as ObjectId, { signal: o.signal, limiter, onProgress: o.onProgress });
      siblingBytes += sent.bytesSent;
      const c = await rx.commit(m.remoteVolume, { snapshot: b.id, manifest: b.manifest as ObjectId, force: o.force }, o.signal);
      if (!c.applied) throw new FerryError('REPLICA_WRITTEN', `${m.peer}: ${c.refused}`, { details: { writesSnapshot: c.writesSnapshot, transferred: b.id } });
      site.db.tx(() => {
        site.db.run('DELETE FROM holds WHERE holder = ?', holdFor(m));
        site.db.run('INSERT OR IGNORE INTO holds (snapshot, holder, created_at) VALUES (?, ?, ?)', b.id, holdFor(m), site.clock.now());
        site.db.run('UPDATE mirrors SET base = ? WHERE id = ?', b.id, m.id);
        site.event({ kind: 'mirror.base', volume, outcome: 'info', detail: { mirror: m.id, from: m.base, to: b.id, reason: 'a sibling secondary holds it: a common base for a later failover', bytes: sent.bytesSent } });
      });
    }
    if (isPeerSnapshotFor(site, target.id, m.id)) markPeer(site, target.id, m.id, 'transferring');
    const sendStarted = performance.now();
    // What went early counts as sent: the progress goes on from there.
    const eo = early?.objectsSent ?? 0;
    const eb = early?.bytesSent ?? 0;
    const onProgress = o.onProgress && eo > 0 ? (p: TransferProgress) => o.onProgress!({ ...p, objectsTotal: p.objectsTotal + eo, bytesTotal: p.bytesTotal + eb, objectsSent: p.objectsSent + eo, bytesSent: p.bytesSent + eb }) : o.onProgress;
    const stats = await sendSnapshot(site.store as never, rx, m.remoteVolume, target.manifest as ObjectId, { signal: o.signal, limiter, onProgress, deltaBase, batchBytes: Number(process.env.FERRY_PUT_BATCH_BYTES) || undefined /* test hook: resume granularity */ });
    onProgress?.({ phase: 'committing', objectsTotal: stats.objectsSent, bytesTotal: stats.bytesSent, objectsSent: stats.objectsSent, bytesSent: stats.bytesSent });
    phases.send = secondsSince(sendStarted);
    const isPeer = isPeerSnapshotFor(site, target.id, m.id);
    const commitStarted = performance.now();
    const commit = await rx.commit(m.remoteVolume, { snapshot: target.id, manifest: target.manifest as ObjectId, force: o.force, peer: isPeer }, o.signal);
    phases.commit = secondsSince(commitStarted);
    for (const [k, v] of Object.entries(remotePhases(commit.phases))) phases[`destination.${k}`] = v;
    if (isPeer) markPeer(site, target.id, m.id, 'present');
    const seconds = (performance.now() - started) / 1000;
    // The capture's warnings: paths the replica may lack. Recorded with the transfer and its event;
    // status keeps the mirror in warn while the base has any (mirrorStatus).
    const warned = Math.max(captured.length, captureWarnings(target));
    const warnings: UpdateWarning[] = captured.length
      ? captured.slice(0, MAX_WARNINGS_LISTED)
      : warned ? [{ path: '', message: `snapshot ${target.name ?? target.id} was captured with ${warned} warning(s) (\`ferry events --kind snapshot.create\` names them): the replica may lack those paths` }] : [];
    const transfer: LastTransfer = {
      snapshot: target.id, bytes: stats.bytesSent + eb + siblingBytes, rawBytes: stats.rawBytesSent + (early?.rawBytesSent ?? 0), objects: stats.objectsSent + eo, seconds,
      throughput: seconds > 0 ? (stats.bytesSent + eb) / seconds : 0, at: site.clock.now(), phases,
      ...(early ? { early: { objects: eo, bytes: eb, seconds: Math.round(early.seconds * 1000) / 1000, ...(early.error ? { error: early.error } : {}) } } : {}),
      ...(warned ? { warnings: warned } : {}),
    };
    // Committed at the destination: only now does the base move here.
    site.db.tx(() => {
      site.db.run('DELETE FROM holds WHERE holder = ?', holdFor(m));
      site.db.run('DELETE FROM holds WHERE holder = ?', `${holdFor(m)}:inflight`);
      site.db.run('INSERT INTO holds (snapshot, holder, created_at) VALUES (?, ?, ?)', target.id, holdFor(m), site.clock.now());
      const err = commit.applied ? null : JSON.stringify({ code: 'REPLICA_WRITTEN', message: commit.refused ?? 'apply refused' });
      const at = site.clock.now();
      const next = m.scheduleS ? at + m.scheduleS * 1000 : null;
      site.db.run(
        'UPDATE mirrors SET base = ?, last_success_at = ?, failures = 0, last_error = ?, last_transfer = ?, next_run_at = ?, queued = NULL WHERE id = ?',
        target.id, at, err, JSON.stringify(transfer), next, m.id,
      );
      const paths = captured.length ? { warningPaths: captured.slice(0, MAX_WARNING_PATHS).map((w) => w.path) } : {};
      site.event({ kind: 'replication.update', volume, outcome: commit.applied && !warned ? 'ok' : 'warning', detail: { mirror: m.id, base: m.base, ...transfer, ...paths, applied: commit.applied, writesSnapshot: commit.writesSnapshot } });
    });
    settle('idle', commit.applied ? `updated to ${target.id}` : `transferred ${target.id}; apply refused at ${m.peer}`);
    committed = true;
    if (!commit.applied) {
      throw new FerryError('REPLICA_WRITTEN', `${m.peer}: ${commit.refused}`, { details: { writesSnapshot: commit.writesSnapshot, transferred: target.id } });
    }
    return { mirror: m.id, snapshot: target.id, base: m.base, transfer, applied: commit.applied, ...(commit.writesSnapshot ? { writesSnapshot: commit.writesSnapshot } : {}), warnings };
  } catch (err) {
    const fe = isFerryError(err) ? err : new FerryError('INTERNAL', String((err as Error)?.stack ?? err), { cause: err });
    // A peer snapshot cut in flight is pending again.
    site.db.run("UPDATE peer_snapshots SET state = 'pending' WHERE mirror = ? AND state = 'transferring'", m.id);
    // Transferred and committed, its apply refused (writes in the replica): recorded above as a
    // transfer, the next run planned a period on.
    if (committed) throw fe;
    if (fe.code === 'FAILED_OVER') {
      // The destination took over: stop updating, keep the base for failback.
      site.db.run('UPDATE mirrors SET last_error = ? WHERE id = ?', JSON.stringify({ code: fe.code, message: fe.message }), m.id);
      site.db.run('DELETE FROM holds WHERE holder = ?', `${holdFor(m)}:inflight`);
      setMirrorState(site, m, 'broken-off', `${m.peer} failed over`);
      throw fe;
    }
    // Every failure is counted and waits before the next attempt (core/backoff.ts): a transient one
    // with backoff, any other at least until the next period, so a failing hook or a refusing peer
    // is not retried every tick (each retry a snapshot, the application quiesced each time).
    const cur = getMirror(site, volume, m.peer);
    const transient = fe.kind === 'transient';
    const failures = cur.failures + 1;
    const retryInMs = retryDelayMs({ failures, transient, periodMs: cur.scheduleS ? cur.scheduleS * 1000 : null }, MIRROR_RETRY, deps.random ?? Math.random);
    site.db.tx(() => {
      site.db.run('DELETE FROM holds WHERE holder = ?', `${holdFor(m)}:inflight`);
      site.db.run('UPDATE mirrors SET failures = ?, last_error = ?, next_run_at = ?, queued = coalesce(?, queued) WHERE id = ?', failures, JSON.stringify({ code: fe.code, message: fe.message }), site.clock.now() + retryInMs, taken ?? null, m.id);
      site.event({ kind: 'replication.update', volume, outcome: 'failed', detail: { mirror: m.id, error: fe.toJSON(), failures, retryInMs } });
    });
    let to: MirrorState = cur.state === 'needs-full-sync' ? 'needs-full-sync' : stable;
    // Disconnected: transient failures in a row (a refusal before them does not count towards it).
    const lastWasTransient = cur.lastError !== null && cur.lastError.code in ERRORS && ERRORS[cur.lastError.code as ErrorCode].kind === 'transient';
    if (transient && (cur.state === 'disconnected' || (failures >= DISCONNECTED_AFTER && lastWasTransient))) to = 'disconnected';
    settle(to, `${fe.code}: ${fe.message}`);
    throw fe;
  }
}

/**
 * Run `capture` while an early stream (replication/early-send.ts) sends the chunks it stores. The
 * stream is an optimisation: whatever becomes of it, the capture's outcome is the result, and the
 * stream has stopped (its puts in flight ended) before this returns or throws.
 */
async function captureSendingEarly<T>(site: Site, capture: () => Promise<T>, o: EarlySendOptions): Promise<{ result: T; early: EarlyStats }> {
  const sender = new EarlySender(site.store, o);
  // Only while this capture is the site's only writer: another capture, or a transfer coming in,
  // stores chunks that are not this snapshot's (the negotiation would never have sent them).
  const off = site.store.onAdded((id, kind, storedLength) => {
    if (site.writers <= 1) sender.added(id, kind, storedLength);
  });
  let result: T;
  try {
    result = await capture();
  } catch (err) {
    off();
    await sender.stop();
    throw err;
  }
  off();
  return { result, early: await sender.finish() };
}

/**
 * The other secondaries of this mirror's volume, told to each destination with every hello: a
 * secondary that later takes over (failover) re-points them to itself (src/dr/repoint.ts). One whose
 * mirror was broken off by its failover stays on the list: it is the site the others may follow.
 */
function siblingsOf(site: Site, m: Mirror): SiblingInfo[] {
  return listMirrors(site, m.volume)
    .filter((x) => x.id !== m.id)
    .map((x) => ({ site: getPeer(site, x.peer).id, volume: x.remoteVolume, scheduleS: x.scheduleS, minDelayS: x.minDelayS, maxDelayS: x.maxDelayS, bandwidth: x.bandwidth, keep: x.keepSnapshots }));
}

/**
 * The bases of this mirror's siblings that its destination lacks and that lie between what it shows
 * and the target, oldest first. Delivering them (each committed and applied on its own, like peer
 * snapshots) keeps one snapshot in common between any two secondaries: the one updated later holds
 * the other's base. Objects are sent once (content addressing), so this costs commits and applies,
 * little on the wire.
 */
function siblingBasesToDeliver(site: Site, m: Mirror, target: SnapshotRecord, hello: { snapshots: Array<{ id: string; time: number }>; applied: string | null }): SnapshotRecord[] {
  const remote = new Set(hello.snapshots.map((x) => x.id));
  // The base as recorded now: peer snapshots delivered just before moved it (and the replica with it).
  // Both bounds are compared by lineage and origin: the snapshot the destination shows may have
  // been taken at another site (on another clock); one this site does not hold bounds nothing.
  const base = site.db.get<{ base: string | null }>('SELECT base FROM mirrors WHERE id = ?', m.id)?.base ?? null;
  const bounds = [base, hello.applied].map((id) => (id ? findSnapshot(site, m.volume, id) : undefined)).filter((x): x is SnapshotRecord => x !== undefined);
  const out = new Map<string, SnapshotRecord>();
  for (const x of listMirrors(site, m.volume)) {
    if (x.id === m.id || !x.base || x.state === 'broken-off' || remote.has(x.base) || out.has(x.base) || x.base === target.id) continue;
    const s = findSnapshot(site, m.volume, x.base);
    if (!s) continue;
    if (bounds.every((b) => compareSnapshots(site, s, b) > 0) && compareSnapshots(site, s, target) < 0) out.set(s.id, s);
  }
  const room = keepFor(m, 1) - 1; // the target takes one of the places the destination keeps
  return room <= 0 ? [] : [...out.values()].sort((a, b) => compareSnapshots(site, a, b)).slice(-room);
}

/**
 * A commit can complete at the destination while its answer is lost (a cut link, the source's
 * daemon stopped at that instant): the destination then holds the newer snapshot and has released
 * the old base, and the source never moved its base. The base is the newest snapshot held complete
 * on both sides: when the destination holds a snapshot this site took (only those are ever sent
 * from here) that is newer than the recorded base (by lineage and origin, never by two sites'
 * clocks), the newest of them becomes the base here too. Nothing older is ever adopted: a base lost
 * otherwise still means a full sync.
 */
function adoptNewerCommonBase(site: Site, m: Mirror, remote: Array<{ id: string; time: number }>): void {
  const base = m.base ? findSnapshot(site, m.volume, m.base) : undefined;
  if (!base) return;
  const common = newestOf(
    site,
    remote
      .map((r) => findSnapshot(site, m.volume, r.id))
      .filter((r): r is SnapshotRecord => r !== undefined && r.origin === site.id && r.id !== base.id && compareSnapshots(site, r, base) > 0),
  );
  if (!common) return;
  site.db.tx(() => {
    site.db.run('DELETE FROM holds WHERE holder = ?', holdFor(m));
    site.db.run('INSERT OR IGNORE INTO holds (snapshot, holder, created_at) VALUES (?, ?, ?)', common.id, holdFor(m), site.clock.now());
    site.db.run('UPDATE mirrors SET base = ? WHERE id = ?', common.id, m.id);
    site.event({ kind: 'mirror.base', volume: m.volume, outcome: 'info', detail: { mirror: m.id, from: m.base, to: common.id, reason: `${m.peer} committed ${common.id} but its answer was lost` } });
  });
  m.base = common.id;
}

// ---------------------------------------------------------------- status

export type Health = 'up' | 'warn';

export interface MirrorStatus extends Mirror {
  health: Health;
  healthReasons: string[];
  lagSeconds: number | null;
  baseTime: number | null;
  /** warnings the capture of the base (what the replica shows) reported; 0 for a clean one */
  baseWarnings: number;
  progress?: TransferProgress & { etaSeconds: number | null; rate: number };
}

export function mirrorStatus(site: Site, m: Mirror, progress?: MirrorStatus['progress']): MirrorStatus {
  const now = site.clock.now();
  if ((m.state === 'updating' || m.state === 'baselining' || m.state === 'resyncing') && !progress && site.readOnly && !lockHeld(site.paths.lock)) {
    // Nobody holds the site: the process that ran this transfer is gone. Show what the next open will record.
    m = { ...m, state: m.base ? 'idle' : 'uninitialized', lastError: m.lastError ?? { code: 'TRANSFER_INTERRUPTED', message: 'the previous transfer was interrupted (its process stopped); the next update resumes it' } };
  }
  const base = m.base ? site.db.get<{ time: number; stats: string }>('SELECT time, stats FROM snapshots WHERE id = ?', m.base) : undefined;
  const baseTime = base?.time ?? null;
  const lag = baseTime === null ? null : Math.max(0, (now - baseTime) / 1000);
  // The replica shows the base: what its capture skipped, the replica lacks, until a clean one replicates.
  const baseWarnings = base ? captureWarnings({ stats: JSON.parse(base.stats) as Record<string, unknown> }) : 0;
  const reasons: string[] = [];
  if (lag === null) reasons.push('no replicated snapshot yet');
  else if (lag > m.maxDelayS) reasons.push(`lag ${Math.round(lag)} s exceeds max delay ${m.maxDelayS} s`);
  if (baseWarnings) reasons.push(`the replicated snapshot ${m.base} was captured with ${baseWarnings} warning(s) (paths skipped or changed while read, or a failed post hook: \`ferry events --kind snapshot.create\`); the replica may lack those paths until a clean snapshot replicates`);
  if (m.lastError) reasons.push(`last error: ${m.lastError.code}`);
  for (const p of m.settingsProblems ?? []) reasons.push(`${p}; fix it with \`ferry mirror set ${m.volume} --to ${m.peer}\` (or a site file)`);
  if (m.state === 'disconnected' || m.state === 'needs-full-sync' || m.state === 'broken-off') reasons.push(`state ${m.state}`);
  const pendingPeers = site.db.get<{ n: number }>("SELECT count(*) AS n FROM peer_snapshots WHERE mirror = ? AND state <> 'present'", m.id)?.n ?? 0;
  if (pendingPeers > 0) reasons.push(`${pendingPeers} peer snapshot(s) pending`);
  const deleting = pendingPeerDeletions(site, m.id);
  if (deleting > 0) reasons.push(`${deleting} peer snapshot deletion(s) pending`);
  // A paused mirror at rest shows `paused` as its state (DESIGN.md section 6); one moving (a forced update) shows what it does.
  const state: MirrorState = m.paused && m.state === 'idle' ? 'paused' : m.state;
  return { ...m, state, health: reasons.length ? 'warn' : 'up', healthReasons: reasons, lagSeconds: lag, baseTime, baseWarnings, ...(progress ? { progress } : {}) };
}

