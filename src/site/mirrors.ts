// Mirrors at the source: their records, their settings and state, their
// removal, and their status. Every state change is one transaction and one
// event, logged as `from => to` with the reason. The update job itself (plan,
// step, run: take or pick a snapshot, send what the destination lacks, commit
// it there, and only then move the base hold here) is the replication driver's
// (replication/driver/); this module hands it the site (updateSource).
import { FerryError } from '../core/errors.ts';
import { parseName } from '../core/ids.ts';
import type { ChunkPool } from '../snapshot/chunk-pool.ts';
import type { TransferProgress } from '../replication/sender.ts';
import { captureWarnings } from '../replication/driver/plan.ts';
import { setMirrorState as setMirrorStateIn } from '../replication/driver/run.ts';
import type { UpdateSource } from '../replication/driver/types.ts';
import type { Site } from './site.ts';
import { createSnapshot } from './snapshots.ts';
import { lockHeld } from './lock.ts';
import { checkCount, checkScheduleSettings, COUNT } from '../core/units.ts';
import { finishPeerDelete, queuePeerSnapshotsFor } from './peer-snapshots.ts';
import { getPeer } from '../catalog/peers.ts';
import { getSecondary } from '../catalog/secondaries.ts';
import { snapshotById } from '../catalog/snapshots.ts';
import { getVolume, setVolumeRole } from '../catalog/volumes.ts';
import { releaseMirror, releaseOrphans } from '../catalog/holds.ts';
import { deleteMirrorRow, getMirror, hasMirror, insertMirror, setMirrorPaused, setMirrorSettings as writeMirrorSettings, DELTA_MODES, type DeltaMode, type Mirror, type MirrorState } from '../catalog/mirrors.ts';
import { countDeletionsOwed, countPendingPeerSnapshots, dropDeletionsOf, dropPeerRowsOfMirror } from '../catalog/peer-snapshots.ts';

export { MIRROR_STATES, type LastTransfer, type Mirror, type MirrorState } from '../catalog/mirrors.ts';

export interface CreateMirrorOptions {
  volume: string;
  to: string; // SITE or SITE:VOL
  scheduleS?: number | null;
  minDelayS?: number;
  maxDelayS?: number;
  bandwidth?: number | null;
  /** replication snapshots the destination keeps (default 3) */
  keepSnapshots?: number | null;
  /** how changed chunks go (default auto: by the measured link) */
  deltas?: DeltaMode;
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
  const vol = getVolume(site.catalog, o.volume);
  if (vol.role === 'secondary') throw new FerryError('MIRROR_STATE', `volume ${o.volume} is a secondary here; mirror it from its primary site`);
  const [peerName, remote] = o.to.includes(':') ? [o.to.slice(0, o.to.indexOf(':')), o.to.slice(o.to.indexOf(':') + 1)] : [o.to, o.volume];
  const peer = getPeer(site.catalog, peerName);
  parseName(remote, 'volume');
  if (hasMirror(site.catalog, o.volume, peer.name)) {
    throw new FerryError('MIRROR_EXISTS', `volume ${o.volume} already has a mirror to ${peer.name}`);
  }
  const id = `${o.volume}@${peer.name}`;
  site.catalog.tx(() => {
    // A mirror to the same site again gets the same id: nothing of an earlier one (rows an older ferry
    // left behind when it removed it) may carry over, or a peer snapshot would show `present` at a
    // secondary that never received it.
    releaseMirrorRows(site, id);
    insertMirror(site.catalog, { id, volume: o.volume, peer: peer.name, remoteVolume: remote, scheduleS: settings.scheduleS, minDelayS: settings.minDelayS, maxDelayS: settings.maxDelayS, bandwidth: settings.bandwidth ?? null, keepSnapshots: keep, deltas: checkDeltaMode(o.deltas) });
    if (vol.role === 'standalone') setVolumeRole(site.catalog, o.volume, 'primary');
    const pending = o.peerSnapshots === false ? [] : queuePeerSnapshotsFor(site, o.volume, id);
    site.event({ kind: 'mirror.create', volume: o.volume, outcome: 'ok', detail: { mirror: id, to: `${peer.name}:${remote}`, state: '=> uninitialized', ...(pending.length ? { peerSnapshotsPending: pending } : {}) } });
  });
  return getMirror(site.catalog, o.volume, peer.name);
}

/** A mirror's settings; each one given is changed (null clears schedule, bandwidth and keep), the others stay. */
export interface MirrorSettingsChange {
  scheduleS?: number | null;
  minDelayS?: number;
  maxDelayS?: number;
  bandwidth?: number | null;
  keepSnapshots?: number | null;
  deltas?: DeltaMode;
}

/** A deltas setting given by an operator or a peer, checked. */
function checkDeltaMode(d: string | undefined): DeltaMode | undefined {
  if (d === undefined) return undefined;
  if (!(DELTA_MODES as readonly string[]).includes(d)) throw new FerryError('USAGE', `deltas ${JSON.stringify(d)}: choose one of ${DELTA_MODES.join(', ')} (auto: by the link's measured rate)`);
  return d as DeltaMode;
}

/**
 * Change a mirror's settings (`ferry mirror set`, a site file): checked like createMirror's, written
 * in one transaction with one event. Every setting is written, so one stored out of bounds by an
 * older ferry is repaired by any change (the others keep the values in force).
 */
export function setMirrorSettings(site: Site, volume: string, peer: string | undefined, change: MirrorSettingsChange): Mirror {
  const cur = getMirror(site.catalog, volume, peer);
  const pick = <K extends keyof MirrorSettingsChange>(k: K, was: Mirror[K]) => (change[k] === undefined ? was : change[k]) as NonNullable<Mirror[K]> | null;
  const s = checkScheduleSettings({ scheduleS: pick('scheduleS', cur.scheduleS), minDelayS: pick('minDelayS', cur.minDelayS)!, maxDelayS: pick('maxDelayS', cur.maxDelayS)!, bandwidth: pick('bandwidth', cur.bandwidth) }, 'mirror');
  const keep = pick('keepSnapshots', cur.keepSnapshots);
  if (keep !== null) checkCount(keep, COUNT.keep, 'mirror keep');
  const deltas = checkDeltaMode(change.deltas) ?? cur.deltas;
  site.catalog.tx(() => {
    // A new schedule counts from the last success, not from a run planned under the old one; a
    // retry waiting after failures keeps its wait, up to one new period.
    const rescheduled = cur.scheduleS !== s.scheduleS || cur.settingsProblems !== undefined;
    writeMirrorSettings(site.catalog, cur.id, { scheduleS: s.scheduleS, minDelayS: s.minDelayS, maxDelayS: s.maxDelayS, bandwidth: s.bandwidth ?? null, keepSnapshots: keep, deltas }, rescheduled);
    const changed = Object.fromEntries(Object.entries({ scheduleS: s.scheduleS, minDelayS: s.minDelayS, maxDelayS: s.maxDelayS, bandwidth: s.bandwidth, keepSnapshots: keep, deltas }).filter(([k, v]) => cur[k as keyof Mirror] !== v));
    site.event({ kind: 'mirror.settings', volume: cur.volume, outcome: 'ok', detail: { mirror: cur.id, ...changed, ...(cur.settingsProblems ? { repaired: cur.settingsProblems } : {}) } });
  });
  return getMirror(site.catalog, volume, cur.peer);
}

/** Move a mirror to state `to` with its event (replication/driver/run.ts setMirrorState). */
export function setMirrorState(site: Site, m: Mirror, to: MirrorState, reason: string, extra: Record<string, unknown> = {}): void {
  setMirrorStateIn(site.catalog, m, to, reason, extra);
}

export function pauseMirror(site: Site, volume: string, peer?: string, paused = true): Mirror {
  const m = getMirror(site.catalog, volume, peer);
  site.catalog.tx(() => {
    setMirrorPaused(site.catalog, m.id, paused);
    site.event({ kind: paused ? 'mirror.pause' : 'mirror.resume', volume, outcome: 'ok', detail: { mirror: m.id } });
  });
  return getMirror(site.catalog, volume, m.peer);
}

/**
 * `ferry mirror remove`: the mirror and everything it holds go (dropMirror); a primary left without
 * mirrors is standalone again. The caller stops the mirror's running update first (Engine.stopJob):
 * a job that ends after the removal would take holds for a mirror that no longer exists.
 */
export function removeMirror(site: Site, volume: string, peer?: string): Mirror {
  const m = getMirror(site.catalog, volume, peer);
  site.catalog.tx(() => {
    dropMirror(site, m, 'removed');
    // A volume this site took over (its relation to the old primary broken off) stays primary without
    // mirrors: the old primary fails back to it, and a failback asks for a primary.
    if (!hasMirror(site.catalog, volume) && getSecondary(site.catalog, volume)?.state !== 'broken-off') setVolumeRole(site.catalog, volume, 'standalone', 'primary');
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
  site.catalog.tx(() => {
    const released = releaseMirrorRows(site, m.id);
    deleteMirrorRow(site.catalog, m.id);
    site.event({ kind: 'mirror.remove', volume: m.volume, outcome: 'ok', detail: { mirror: m.id, peer: m.peer, reason, released, ...detail } });
  });
}

/** The holds and peer-snapshot rows of a mirror id; returns the holds released. */
function releaseMirrorRows(site: Site, id: string): Array<{ holder: string; snapshot: string }> {
  const released = releaseMirror(site.catalog, id);
  dropPeerRowsOfMirror(site.catalog, id);
  // Peer-snapshot deletions its secondary still owed: that site is no longer this mirror's to ask.
  for (const snapshot of dropDeletionsOf(site.catalog, id)) finishPeerDelete(site, snapshot, { gc: false });
  return released;
}

/**
 * Holds whose holder no longer exists (catalog/holds.ts releaseOrphans): released when a site is
 * opened for work (the engine starts), while nothing else runs, and named in one event.
 */
export function releaseOrphanHolds(site: Site): Array<{ snapshot: string; holder: string }> {
  if (site.readOnly) return [];
  return site.catalog.tx(() => {
    const released = releaseOrphans(site.catalog);
    if (released.length > 0) site.event({ kind: 'hold.release', outcome: 'warning', detail: { reason: 'their holder (a mirror, a link, a replication source) no longer exists', holds: released } });
    return released;
  });
}

// ---------------------------------------------------------------- the update job

/**
 * What the replication driver (replication/driver/) sees of this site: its catalog and store, how
 * many writers store objects now, and the capture of a new snapshot (hooks, retention) with `pool`.
 * The engine runs the driver's runMirrorUpdate with it.
 */
export function updateSource(site: Site, pool: ChunkPool): UpdateSource {
  return {
    catalog: site.catalog,
    store: site.store,
    get writers() {
      return site.writers;
    },
    capture: (volume, o) => createSnapshot(site, volume, { pool, signal: o.signal, onWarning: o.onWarning }),
  };
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
  const base = m.base ? snapshotById(site.catalog, m.base) : undefined;
  const baseTime = base?.time ?? null;
  const lag = baseTime === null ? null : Math.max(0, (now - baseTime) / 1000);
  // The replica shows the base: what its capture skipped, the replica lacks, until a clean one replicates.
  const baseWarnings = captureWarnings(base);
  const reasons: string[] = [];
  if (lag === null) reasons.push('no replicated snapshot yet');
  else if (lag > m.maxDelayS) reasons.push(`lag ${Math.round(lag)} s exceeds max delay ${m.maxDelayS} s`);
  if (baseWarnings) reasons.push(`the replicated snapshot ${m.base} was captured with ${baseWarnings} warning(s) (paths skipped or changed while read, or a failed post hook: \`ferry events --kind snapshot.create\`); the replica may lack those paths until a clean snapshot replicates`);
  if (m.lastError) reasons.push(`last error: ${m.lastError.code}`);
  for (const p of m.settingsProblems ?? []) reasons.push(`${p}; fix it with \`ferry mirror set ${m.volume} --to ${m.peer}\` (or a site file)`);
  if (m.state === 'disconnected' || m.state === 'needs-full-sync' || m.state === 'broken-off') reasons.push(`state ${m.state}`);
  const pendingPeers = countPendingPeerSnapshots(site.catalog, m.id);
  if (pendingPeers > 0) reasons.push(`${pendingPeers} peer snapshot(s) pending`);
  const deleting = countDeletionsOwed(site.catalog, m.id);
  if (deleting > 0) reasons.push(`${deleting} peer snapshot deletion(s) pending`);
  // A paused mirror at rest shows `paused` as its state (DESIGN.md section 6); one moving (a forced update) shows what it does.
  const state: MirrorState = m.paused && m.state === 'idle' ? 'paused' : m.state;
  return { ...m, state, health: reasons.length ? 'warn' : 'up', healthReasons: reasons, lagSeconds: lag, baseTime, baseWarnings, ...(progress ? { progress } : {}) };
}

