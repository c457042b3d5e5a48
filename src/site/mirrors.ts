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
import { createSnapshot } from './snapshots.ts';
import { lockHeld } from './lock.ts';
import { MIRROR_RETRY, retryDelayMs, type Random } from '../core/backoff.ts';
import { checkCount, checkScheduleSettings, COUNT } from '../core/units.ts';
import { dropStalePeerClaims, finishPeerDelete, queuePeerSnapshotsFor } from './peer-snapshots.ts';
import { getPeer, type Peer } from '../catalog/peers.ts';
import { compareOnOneClock, compareSnapshots, findSnapshot, isKeptWrites, newestOf, resolveSnapshot, snapshotById, type SnapshotRecord } from '../catalog/snapshots.ts';
import { getVolume, setVolumeRole } from '../catalog/volumes.ts';
import { holdInFlight, releaseInFlight, releaseMirror, releaseOrphans } from '../catalog/holds.ts';
import {
  deleteMirrorRow, dropMirrorBase, getMirror, hasMirror, insertMirror, listMirrors, mirrorBase, mirrorState, queuedSnapshot, recordAttempt, recordFailure, recordSuccess,
  resetLastSuccess, setMirrorBase, setMirrorError, setMirrorPaused, setMirrorSettings as writeMirrorSettings, writeMirrorState, type LastTransfer, type Mirror, type MirrorState,
} from '../catalog/mirrors.ts';
import { countDeletionsOwed, countPendingPeerSnapshots, dropDeletionsOf, dropPeerRowsOfMirror, isPeerSnapshotFor, markPeer, pendingPeerSnapshots, resetTransferring } from '../catalog/peer-snapshots.ts';

export { MIRROR_STATES, type LastTransfer, type Mirror, type MirrorState } from '../catalog/mirrors.ts';

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

/**
 * How many replication snapshots a secondary keeps unless its mirror says otherwise (docs/dr.md,
 * "Several secondaries"): 3 when the volume has other secondaries (candidates for a common base with
 * a sibling that takes over), 1 when it has none (nothing to share a base with).
 */
export const DEFAULT_KEEP_SNAPSHOTS = 3;

export function keepFor(m: Mirror, siblings: number): number {
  return m.keepSnapshots ?? (siblings > 0 ? DEFAULT_KEEP_SNAPSHOTS : 1);
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
    insertMirror(site.catalog, { id, volume: o.volume, peer: peer.name, remoteVolume: remote, scheduleS: settings.scheduleS, minDelayS: settings.minDelayS, maxDelayS: settings.maxDelayS, bandwidth: settings.bandwidth ?? null, keepSnapshots: keep });
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
  site.catalog.tx(() => {
    // A new schedule counts from the last success, not from a run planned under the old one; a
    // retry waiting after failures keeps its wait, up to one new period.
    const rescheduled = cur.scheduleS !== s.scheduleS || cur.settingsProblems !== undefined;
    writeMirrorSettings(site.catalog, cur.id, { scheduleS: s.scheduleS, minDelayS: s.minDelayS, maxDelayS: s.maxDelayS, bandwidth: s.bandwidth ?? null, keepSnapshots: keep }, rescheduled);
    const changed = Object.fromEntries(Object.entries({ scheduleS: s.scheduleS, minDelayS: s.minDelayS, maxDelayS: s.maxDelayS, bandwidth: s.bandwidth, keepSnapshots: keep }).filter(([k, v]) => cur[k as keyof Mirror] !== v));
    site.event({ kind: 'mirror.settings', volume: cur.volume, outcome: 'ok', detail: { mirror: cur.id, ...changed, ...(cur.settingsProblems ? { repaired: cur.settingsProblems } : {}) } });
  });
  return getMirror(site.catalog, volume, cur.peer);
}

export function setMirrorState(site: Site, m: Mirror, to: MirrorState, reason: string, extra: Record<string, unknown> = {}): void {
  const from = mirrorState(site.catalog, m.id) ?? m.state;
  site.catalog.tx(() => {
    writeMirrorState(site.catalog, m.id, to);
    if (from !== to) site.event({ kind: 'mirror.state', volume: m.volume, outcome: 'info', detail: { mirror: m.id, transition: `${from} => ${to}`, reason, ...extra } });
  });
  m.state = to;
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
    if (!hasMirror(site.catalog, volume)) setVolumeRole(site.catalog, volume, 'standalone', 'primary');
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
  site.catalog.tx(() => {
    resetLastSuccess(site.catalog, m.id, now, next ?? now);
    site.event({ kind: 'mirror.clock', volume: m.volume, outcome: 'warning', detail: { mirror: m.id, lastSuccessAt: m.lastSuccessAt, now, reason: "the mirror's last success is later than this site's clock (the clock was set back): counted from now" } });
  });
  return { ...m, lastSuccessAt: now, nextRunAt: m.nextRunAt === null ? null : Math.min(m.nextRunAt, next ?? now) };
}

/** Plan and run one update (or the initial baseline) of a mirror. */
export async function runMirrorUpdate(deps: UpdateDeps, volume: string, peerName: string | undefined, o: UpdateOptions = {}): Promise<UpdateResult> {
  const { site } = deps;
  const now = site.clock.now();
  const m = settleFutureSuccess(site, getMirror(site.catalog, volume, peerName), now);
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
  if (getVolume(site.catalog, volume).role === 'secondary') {
    throw new FerryError('MIRROR_STATE', `volume ${volume} is a secondary here (a failback or a migrate is making it one): mirror ${m.id} does not update from it`);
  }
  // A failover notice that arrives while this job runs breaks the mirror off: the job's end keeps that.
  const settle = (to: MirrorState, reason: string) => {
    if (mirrorState(site.catalog, m.id) !== 'broken-off') setMirrorState(site, m, to, reason);
  };
  setMirrorState(site, m, o.initialize ? 'baselining' : 'updating', o.scheduled ? 'schedule' : 'requested');
  recordAttempt(site.catalog, m.id, now);
  const started = performance.now();
  const phases: Record<string, number> = {};
  let committed = false;
  // What the capture this job takes reports (none when it sends a snapshot taken earlier).
  const captured: UpdateWarning[] = [];
  // The snapshot this attempt took (or took up again): should the attempt fail, a retry sends it.
  let taken: string | undefined;
  try {
    const peer = getPeer(site.catalog, m.peer);
    const vol = getVolume(site.catalog, volume);
    const helloRequest = (): HelloRequest => {
      const siblings = siblingsOf(site, m);
      return { protocol: PROTOCOL_VERSION, sourceVolume: volume, volume: m.remoteVolume, members: vol.members.map((x) => ({ name: x.name, kind: x.kind })), keep: keepFor(m, siblings.length), siblings };
    };
    const limiter = m.bandwidth ? new TokenBucket(m.bandwidth) : undefined;
    // The target is chosen (or taken) before the peer is contacted: while the peer is unreachable,
    // scheduled attempts still take snapshots here; they queue, and the next update sends the newest.
    let target: SnapshotRecord;
    let early: EarlyStats | undefined;
    const baseSnap = m.base ? findSnapshot(site.catalog, volume, m.base) : undefined;
    if (o.snapshot) {
      target = resolveSnapshot(site.catalog, volume, o.snapshot);
      if (target.origin !== site.id) {
        throw new FerryError('MIRROR_STATE', `snapshot ${target.name ?? target.id} was taken at another site (${target.origin}); a site sends only the snapshots it took: name one taken here, or leave --snapshot out to take a new one`);
      }
    } else {
      // A new snapshot, unless a scheduled retry finds the one an earlier failed attempt of this mirror
      // took (mirrors.queued) in this schedule period: taken here (a site sends only its own), after the
      // base by lineage and origin (never by comparing two sites' clocks), and young by this site's
      // clock. Retries after failures do not multiply snapshots; a snapshot another mirror of the
      // volume took is not this mirror's (each takes its own: siblings share bases by delivery).
      const queuedId = o.scheduled && m.failures > 0 && m.scheduleS ? queuedSnapshot(site.catalog, m.id) : null;
      const queued = queuedId ? findSnapshot(site.catalog, volume, queuedId) : undefined;
      if (queued && queued.origin === site.id && queued.id !== m.base && !isKeptWrites(queued) && (!baseSnap || compareSnapshots(site.catalog, queued, baseSnap) > 0) && now - queued.time < m.scheduleS! * 1000) taken = (target = queued).id;
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
    if (baseSnap && compareSnapshots(site.catalog, target, baseSnap) < 0) {
      throw new FerryError('MIRROR_STATE', `snapshot ${target.name ?? target.id} is older than the mirror's base ${m.base}; choose a newer one`);
    }
    // Hold the target while it is in flight so retention cannot take it.
    holdInFlight(site.catalog, m.id, target.id);
    const rx = deps.connect(peer);
    const hello = await rx.hello(helloRequest(), o.signal);
    // The base: the mirror's recorded base if the destination still has it.
    const remoteIds = new Set(hello.snapshots.map((s) => s.id));
    // What this mirror claimed there and the destination no longer holds (its volume removed and made again) is not believed.
    dropStalePeerClaims(site, m, remoteIds);
    if (!o.initialize && m.base && !remoteIds.has(m.base)) adoptNewerCommonBase(site, m, hello.snapshots);
    if (!o.initialize && m.base && !remoteIds.has(m.base)) {
      site.catalog.tx(() => {
        setMirrorState(site, m, 'needs-full-sync', `the destination no longer has base ${m.base}`, { droppedBase: m.base });
        dropMirrorBase(site.catalog, m.id);
      });
      throw new FerryError('MIRROR_STATE', `${m.peer} no longer has the base snapshot ${m.base}: the mirror needs a full sync (\`ferry mirror initialize ${volume} --to ${m.peer}\`)`);
    }
    // Changed chunks may go as deltas against the common base's (when the destination takes them).
    const deltaBase = hello.delta && !o.initialize && m.base ? snapshotById(site.catalog, m.base)?.manifest : undefined;
    // Peer snapshots first, oldest first, each committed on its own: they must exist there under the same id and name.
    for (const p of pendingPeerSnapshots(site.catalog, m.id)) {
      // Both taken here: one clock (time, then id), the order the receiver's replay check uses.
      if (p.id === target.id || compareOnOneClock(p, target) > 0) continue;
      if (remoteIds.has(p.id)) {
        // Already there (its commit's answer was lost, or the destination had it before this mirror
        // existed): present. The base does not move back to it: a newer one committed there is adopted above.
        markPeer(site.catalog, p.id, m.id, 'present');
        site.event({ kind: 'snapshot.peer', volume, outcome: 'ok', detail: { snapshot: p.id, name: p.name, presentAt: m.peer, found: true } });
        continue;
      }
      markPeer(site.catalog, p.id, m.id, 'transferring');
      await sendSnapshot(site.store as never, rx, m.remoteVolume, p.manifest, { signal: o.signal, limiter, onProgress: o.onProgress });
      const c = await rx.commit(m.remoteVolume, { snapshot: p.id, manifest: p.manifest, force: o.force, peer: true }, o.signal);
      if (!c.applied) throw new FerryError('REPLICA_WRITTEN', `${m.peer}: ${c.refused}`, { details: { writesSnapshot: c.writesSnapshot, transferred: p.id } });
      site.catalog.tx(() => {
        setMirrorBase(site.catalog, m.id, p.id);
        markPeer(site.catalog, p.id, m.id, 'present');
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
      site.catalog.tx(() => {
        setMirrorBase(site.catalog, m.id, b.id);
        site.event({ kind: 'mirror.base', volume, outcome: 'info', detail: { mirror: m.id, from: m.base, to: b.id, reason: 'a sibling secondary holds it: a common base for a later failover', bytes: sent.bytesSent } });
      });
    }
    if (isPeerSnapshotFor(site.catalog, target.id, m.id)) markPeer(site.catalog, target.id, m.id, 'transferring');
    const sendStarted = performance.now();
    // What went early counts as sent: the progress goes on from there.
    const eo = early?.objectsSent ?? 0;
    const eb = early?.bytesSent ?? 0;
    const onProgress = o.onProgress && eo > 0 ? (p: TransferProgress) => o.onProgress!({ ...p, objectsTotal: p.objectsTotal + eo, bytesTotal: p.bytesTotal + eb, objectsSent: p.objectsSent + eo, bytesSent: p.bytesSent + eb }) : o.onProgress;
    const stats = await sendSnapshot(site.store as never, rx, m.remoteVolume, target.manifest as ObjectId, { signal: o.signal, limiter, onProgress, deltaBase, batchBytes: Number(process.env.FERRY_PUT_BATCH_BYTES) || undefined /* test hook: resume granularity */ });
    onProgress?.({ phase: 'committing', objectsTotal: stats.objectsSent, bytesTotal: stats.bytesSent, objectsSent: stats.objectsSent, bytesSent: stats.bytesSent });
    phases.send = secondsSince(sendStarted);
    const isPeer = isPeerSnapshotFor(site.catalog, target.id, m.id);
    const commitStarted = performance.now();
    const commit = await rx.commit(m.remoteVolume, { snapshot: target.id, manifest: target.manifest as ObjectId, force: o.force, peer: isPeer }, o.signal);
    phases.commit = secondsSince(commitStarted);
    for (const [k, v] of Object.entries(remotePhases(commit.phases))) phases[`destination.${k}`] = v;
    if (isPeer) markPeer(site.catalog, target.id, m.id, 'present');
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
    site.catalog.tx(() => {
      const error = commit.applied ? null : { code: 'REPLICA_WRITTEN', message: commit.refused ?? 'apply refused' };
      const at = site.clock.now();
      recordSuccess(site.catalog, m.id, { base: target.id, at, error, transfer, nextRunAt: m.scheduleS ? at + m.scheduleS * 1000 : null });
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
    resetTransferring(site.catalog, m.id);
    // Transferred and committed, its apply refused (writes in the replica): recorded above as a
    // transfer, the next run planned a period on.
    if (committed) throw fe;
    if (fe.code === 'FAILED_OVER') {
      // The destination took over: stop updating, keep the base for failback.
      site.catalog.tx(() => {
        setMirrorError(site.catalog, m.id, { code: fe.code, message: fe.message });
        releaseInFlight(site.catalog, m.id);
      });
      setMirrorState(site, m, 'broken-off', `${m.peer} failed over`);
      throw fe;
    }
    // Every failure is counted and waits before the next attempt (core/backoff.ts): a transient one
    // with backoff, any other at least until the next period, so a failing hook or a refusing peer
    // is not retried every tick (each retry a snapshot, the application quiesced each time).
    const cur = getMirror(site.catalog, volume, m.peer);
    const transient = fe.kind === 'transient';
    const failures = cur.failures + 1;
    const retryInMs = retryDelayMs({ failures, transient, periodMs: cur.scheduleS ? cur.scheduleS * 1000 : null }, MIRROR_RETRY, deps.random ?? Math.random);
    site.catalog.tx(() => {
      recordFailure(site.catalog, m.id, { failures, error: { code: fe.code, message: fe.message }, nextRunAt: site.clock.now() + retryInMs, queued: taken ?? null });
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
  return listMirrors(site.catalog, m.volume)
    .filter((x) => x.id !== m.id)
    .map((x) => ({ site: getPeer(site.catalog, x.peer).id, volume: x.remoteVolume, scheduleS: x.scheduleS, minDelayS: x.minDelayS, maxDelayS: x.maxDelayS, bandwidth: x.bandwidth, keep: x.keepSnapshots }));
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
  const base = mirrorBase(site.catalog, m.id);
  const bounds = [base, hello.applied].map((id) => (id ? findSnapshot(site.catalog, m.volume, id) : undefined)).filter((x): x is SnapshotRecord => x !== undefined);
  const out = new Map<string, SnapshotRecord>();
  for (const x of listMirrors(site.catalog, m.volume)) {
    if (x.id === m.id || !x.base || x.state === 'broken-off' || remote.has(x.base) || out.has(x.base) || x.base === target.id) continue;
    const s = findSnapshot(site.catalog, m.volume, x.base);
    if (!s) continue;
    if (bounds.every((b) => compareSnapshots(site.catalog, s, b) > 0) && compareSnapshots(site.catalog, s, target) < 0) out.set(s.id, s);
  }
  const room = keepFor(m, 1) - 1; // the target takes one of the places the destination keeps
  return room <= 0 ? [] : [...out.values()].sort((a, b) => compareSnapshots(site.catalog, a, b)).slice(-room);
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
  const base = m.base ? findSnapshot(site.catalog, m.volume, m.base) : undefined;
  if (!base) return;
  const common = newestOf(
    site.catalog,
    remote
      .map((r) => findSnapshot(site.catalog, m.volume, r.id))
      .filter((r): r is SnapshotRecord => r !== undefined && r.origin === site.id && r.id !== base.id && compareSnapshots(site.catalog, r, base) > 0),
  );
  if (!common) return;
  site.catalog.tx(() => {
    setMirrorBase(site.catalog, m.id, common.id);
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

