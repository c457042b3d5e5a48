// Peer snapshots (AFM mmpsnap): a snapshot taken at the primary that must come
// to exist, under the same id and name, on every secondary of the volume.
// Each (snapshot, mirror) pair is pending until the destination has committed
// it; the mirror's update job delivers pending ones first, oldest first, with
// the replication stream. They are held on both sides until `snapshot delete
// --peer` removes them everywhere.
//
// Deleting one must complete whatever happens meanwhile, without costing a
// mirror its base. The deletion goes to every mirror's secondary (a pending
// one may hold it: its delivery's answer may have been lost), and each that
// cannot confirm it now (unreachable, or it is its base there) keeps a row in
// `peer_deletions`, retried by the daemon and after each update of that
// mirror. Until the last row goes the snapshot stays here, held `peer-delete`:
// it may be the only snapshot the primary and that secondary share, and the
// next update starts from it. A secondary lets the site it follows delete its
// peer snapshots, whichever site took them (after a migrate, a failover and
// failback, the current primary of the lineage).
import { FerryError, isFerryError } from '../core/errors.ts';
import type { PeerDeleteAnswer } from '../replication/dr-peer.ts';
import type { Site } from './site.ts';
import { collectGarbageSoon, executeDeleteSnapshots, planDeleteSnapshots } from './snapshots.ts';
import { heldBy, holdersOf, holdPeer, parseHolder, PEER_DELETE_HOLDER, PEER_HOLDER, release, startPeerDelete } from '../catalog/holds.ts';
import { listMirrors } from '../catalog/mirrors.ts';
import { findPeerById } from '../catalog/peers.ts';
import {
  addDeletions, addPeerRows, deletionsOf, deletionsToDeliver, dropDeletion, dropPeerRowsOfSnapshot, noteDeletionFailure, peerRowsOf, peerSnapshotsOf, unmarkMissing, type PeerState,
} from '../catalog/peer-snapshots.ts';
import { getSecondary } from '../catalog/secondaries.ts';
import { findSnapshot, resolveSnapshot, snapshotById } from '../catalog/snapshots.ts';

export type { PeerState } from '../catalog/peer-snapshots.ts';

/** Make an existing snapshot a peer snapshot: held here, pending for every mirror of its volume. */
export function registerPeerSnapshot(site: Site, volume: string, snapshot: string): string[] {
  const mirrors = listMirrors(site.catalog, volume).map((m) => m.id);
  site.catalog.tx(() => {
    holdPeer(site.catalog, snapshot);
    addPeerRows(site.catalog, snapshot, mirrors);
    site.event({ kind: 'snapshot.peer', volume, outcome: 'info', detail: { snapshot, pendingAt: mirrors } });
  });
  return mirrors;
}

/** A new mirror of the volume: every peer snapshot held here becomes pending for it (in the caller's transaction). */
export function queuePeerSnapshotsFor(site: Site, volume: string, mirror: string): string[] {
  const ids = heldBy(site.catalog, PEER_HOLDER, volume);
  for (const id of ids) addPeerRows(site.catalog, id, [mirror], { replace: true });
  return ids;
}


export interface PeerSnapshotStatus {
  id: string;
  name: string | null;
  time: number;
  /** deleted with --peer; it stays here until every secondary confirmed (state `deleting`) */
  deleting: boolean;
  secondaries: Array<{ mirror: string; state: PeerState; updatedAt: number; lastError?: { code: string; message: string } | null }>;
}

export function peerSnapshotStatus(site: Site, volume: string): PeerSnapshotStatus[] {
  return peerSnapshotsOf(site.catalog, volume).map((x) => {
    const rows = peerRowsOf(site.catalog, x.id);
    const dels = deletionsOf(site.catalog, x.id);
    return {
      id: x.id,
      name: x.name,
      time: x.time,
      deleting: x.deleting,
      secondaries: [
        ...rows.map((r) => ({ mirror: r.mirror, state: r.state, updatedAt: r.updated_at })),
        ...dels.map((d) => ({ mirror: d.mirror, state: 'deleting' as const, updatedAt: d.created_at, lastError: d.last_error ? (JSON.parse(d.last_error) as { code: string; message: string }) : null })),
      ],
    };
  });
}

export interface PeerDeleteTarget {
  mirror: string;
  peerName: string;
  remoteVolume: string;
}


export type PeerDeleteCall = (t: PeerDeleteTarget, snapshot: string) => Promise<PeerDeleteAnswer>;

export interface PeerDeleteOutcome {
  snapshot: string;
  /** secondaries that deleted it (or confirmed they never had it) */
  removedAt: string[];
  /** secondaries that could not confirm yet: the deletion is retried there, and the snapshot stays here until then */
  pendingAt: Array<{ peer: string; error: { code: string; message: string } }>;
  /** secondaries that follow another site now (a failover): theirs to delete */
  skipped: Array<{ peer: string; reason: string }>;
  /** gone here too (every secondary confirmed) */
  deletedHere: boolean;
  /** held here by a mirror's base since: it stays as a plain snapshot */
  keptAsBase?: boolean;
}

/**
 * `snapshot delete VOL S --peer` at the primary, the part that needs no network: check, then record
 * a deletion for every mirror (in one transaction, the peer hold becomes `peer-delete`). The caller
 * delivers them (deliverPeerDeletions). Run again on a snapshot being deleted, it records nothing:
 * the caller delivers what is left.
 */
export function requestPeerDelete(site: Site, volume: string, ref: string, opts: { dryRun?: boolean } = {}): { snapshot: string; targets: PeerDeleteTarget[]; again: boolean } {
  const snap = resolveSnapshot(site.catalog, volume, ref);
  const label = snap.name ?? snap.id;
  const kinds = snap.holds.map((h) => parseHolder(h).kind);
  const again = kinds.includes('peer-delete');
  if (!kinds.includes('peer') && !again) throw new FerryError('USAGE', `snapshot ${label} is not a peer snapshot; delete it with \`ferry snapshot delete\``);
  const sec = getSecondary(site.catalog, volume);
  if (sec && sec.state !== 'broken-off') {
    // Deleting it here alone would leave the primary believing it is present here.
    const from = findPeerById(site.catalog, sec.source_site)?.name ?? sec.source_site;
    throw new FerryError('MIRROR_STATE', `${volume} is a secondary here: peer snapshot ${label} belongs to its primary ${from}; delete it there with \`ferry snapshot delete ${sec.source_volume} ${label} --peer\``);
  }
  const targets = listMirrors(site.catalog, volume)
    .filter((m) => m.state !== 'broken-off')
    .map((m) => ({ mirror: m.id, peerName: m.peer, remoteVolume: m.remoteVolume }));
  if (again) {
    const left = new Set(deletionsOf(site.catalog, snap.id).map((r) => r.mirror));
    return { snapshot: snap.id, targets: targets.filter((t) => left.has(t.mirror)), again };
  }
  const others = snap.holds.filter((h) => parseHolder(h).kind !== 'peer');
  if (others.length > 0) {
    // A mirror's base (or a snapshot in flight, or a link's) cannot go: refuse before removing it anywhere,
    // rather than leave it behind on every side as a plain snapshot nothing would ever delete.
    const inflight = others.some((h) => parseHolder(h).kind === 'in-flight');
    // Each mirror whose base it is, by name: `mirror update VOL` alone is refused when the volume has several.
    const mirrors = listMirrors(site.catalog, volume);
    const updates = others.flatMap((h) => {
      const holder = parseHolder(h);
      const m = holder.kind === 'base' ? mirrors.find((x) => x.id === holder.mirror) : undefined;
      return m ? [`\`ferry mirror update ${volume} --to ${m.peer}\``] : [];
    });
    const why = inflight ? 'an update is sending it: wait for it to end' : updates.length ? `a mirror's base until the next update moves it: run ${updates.join(', ')} first` : 'release those holds first';
    throw new FerryError('SNAPSHOT_HELD', `peer snapshot ${label} is held by ${others.join(', ')} (${why}), then delete it with --peer`);
  }
  // A secondary whose row is not `present` may hold it all the same (a commit whose answer was lost): every mirror is asked.
  if (opts.dryRun) return { snapshot: snap.id, targets, again };
  site.catalog.tx(() => {
    dropPeerRowsOfSnapshot(site.catalog, snap.id);
    startPeerDelete(site.catalog, snap.id);
    addDeletions(site.catalog, snap.id, volume, targets.map((t) => t.mirror));
    site.event({ kind: 'snapshot.peer-delete', volume, outcome: 'info', detail: { snapshot: snap.id, name: snap.name, at: targets.map((t) => t.peerName) } });
  });
  // No mirror to tell (none, or only broken-off ones): nothing to confirm, so it goes now, not once
  // the daemon's queue of deliveries reaches it (a held snapshot with nothing pending meanwhile).
  if (targets.length === 0) finishPeerDelete(site, snap.id);
  return { snapshot: snap.id, targets, again };
}

const RETRY_BASE_MS = 5_000;
const RETRY_MAX_MS = 5 * 60_000;

/**
 * Deliver recorded peer deletions: each is asked of its secondary; confirmed (deleted, or not there),
 * its row goes; not yet (unreachable, held there as its base), it is retried with backoff (and after
 * the mirror's next update); a secondary that follows another site now (it took over) is skipped.
 * A snapshot whose last row went is deleted here. `due`: only rows whose retry is due.
 */
export async function deliverPeerDeletions(site: Site, call: PeerDeleteCall, filter: { snapshot?: string; mirror?: string; due?: boolean } = {}): Promise<PeerDeleteOutcome[]> {
  const now = site.clock.now();
  const rows = deletionsToDeliver(site.catalog, { snapshot: filter.snapshot, mirror: filter.mirror, dueAt: filter.due ? now : undefined });
  const out = new Map<string, PeerDeleteOutcome>();
  const outcome = (id: string) => {
    let o = out.get(id);
    if (!o) out.set(id, (o = { snapshot: id, removedAt: [], pendingAt: [], skipped: [], deletedHere: false }));
    return o;
  };
  for (const r of rows) {
    const o = outcome(r.snapshot);
    const done = (detail: Record<string, unknown>) =>
      site.catalog.tx(() => {
        dropDeletion(site.catalog, r.snapshot, r.mirror);
        site.event({ kind: 'snapshot.peer-delete', volume: r.volume, outcome: 'ok', detail: { snapshot: r.snapshot, peer: r.peer, ...detail } });
      });
    if (r.state === 'broken-off') {
      o.skipped.push({ peer: r.peer, reason: `${r.peer} took the volume over: its copy is its own to delete` });
      done({ skipped: 'took over' });
      continue;
    }
    let error: { code: string; message: string };
    try {
      const a = await call({ mirror: r.mirror, peerName: r.peer, remoteVolume: r.remote_volume }, r.snapshot);
      if (a.deleted || a.absent) {
        o.removedAt.push(r.peer);
        done({ removedAt: r.peer, absent: a.absent === true });
        continue;
      }
      error = { code: 'SNAPSHOT_HELD', message: `held at ${r.peer} by ${(a.heldBy ?? []).join(', ') || 'something'} (its base, until the next update of the mirror moves it: \`ferry mirror update ${r.volume} --to ${r.peer}\`)` };
    } catch (err) {
      const fe = isFerryError(err) ? err : new FerryError('INTERNAL', String((err as Error)?.message ?? err));
      if (fe.code === 'NOT_AUTHORIZED' || fe.code === 'FAILED_OVER') {
        o.skipped.push({ peer: r.peer, reason: fe.message });
        done({ skipped: fe.message });
        continue;
      }
      error = { code: fe.code, message: fe.message };
    }
    o.pendingAt.push({ peer: r.peer, error });
    const failures = r.failures + 1;
    noteDeletionFailure(site.catalog, r.snapshot, r.mirror, failures, now + Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** (failures - 1)), error);
  }
  for (const id of filter.snapshot ? [filter.snapshot] : out.keys()) {
    const o = outcome(id);
    Object.assign(o, finishPeerDelete(site, id));
  }
  return [...out.values()];
}

/**
 * A peer snapshot being deleted whose every secondary has confirmed (no row left): deleted here (its
 * data collected unless `gc` is false: inside a caller's transaction). Held meanwhile by a mirror's
 * base, it stays as a plain snapshot. Rows of a mirror that was removed went with it.
 */
export function finishPeerDelete(site: Site, snapshot: string, opts: { gc?: boolean | 'auto' } = {}): { deletedHere: boolean; keptAsBase?: boolean } {
  const s = snapshotById(site.catalog, snapshot);
  if (!s || !s.holds.some((h) => parseHolder(h).kind === 'peer-delete')) return { deletedHere: !s };
  if (deletionsOf(site.catalog, snapshot).length > 0) return { deletedHere: false };
  release(site.catalog, PEER_DELETE_HOLDER, { snapshot });
  // A hold may have appeared since the request (an update took it as its base): then it stays as a plain snapshot.
  const plan = planDeleteSnapshots(site, s.volume, [snapshot]);
  const keptAsBase = plan.refused.length > 0;
  // Every secondary confirmed: ferry's own release, collected when due (auto-collect.ts).
  if (!keptAsBase) executeDeleteSnapshots(site, plan, { gc: opts.gc ?? 'auto' });
  site.event({ kind: 'snapshot.peer-delete', volume: s.volume, outcome: 'ok', detail: { snapshot, deletedHere: !keptAsBase, keptAsBase } });
  return { deletedHere: !keptAsBase, ...(keptAsBase ? { keptAsBase } : {}) };
}

/** Peer snapshots being deleted whose rows are all gone (their mirrors were removed): finish them. */
export function finishOrphanPeerDeletes(site: Site, opts: { gc?: boolean | 'auto' } = {}): string[] {
  if (site.readOnly) return [];
  const ids = heldBy(site.catalog, PEER_DELETE_HOLDER);
  return ids.filter((id) => finishPeerDelete(site, id, opts).deletedHere);
}

/**
 * At a secondary: the site it follows deletes one of its peer snapshots here. Only the current source
 * may (after a migrate or a failover and failback, the primary of the lineage, whichever site took
 * the snapshot). Answers deleted, absent, or still held here (by the replica's base: the next update
 * moves it, and the primary asks again); busy while an apply runs (it may be this very snapshot's).
 */
export function acceptPeerDelete(site: Site, sourceSite: string, volume: string, snapshot: string, busy: boolean): PeerDeleteAnswer {
  const sec = getSecondary(site.catalog, volume);
  if (!sec || sec.source_site !== sourceSite) throw new FerryError('NOT_AUTHORIZED', `volume ${volume} here is not the asking site's secondary`);
  if (sec.state === 'broken-off') throw new FerryError('FAILED_OVER', `${site.name} took over volume ${volume} (failover): its peer snapshots are its own to delete now`);
  if (busy) throw new FerryError('PEER_BUSY', `an update of ${volume} is being applied at ${site.name}; the deletion is retried`);
  const snap = findSnapshot(site.catalog, volume, snapshot);
  if (!snap) return { deleted: false, absent: true };
  const others = holdersOf(site.catalog, snapshot).filter((h) => parseHolder(h).kind !== 'peer');
  // The replica's base stays a peer snapshot until the base moves: released now, it would stay behind as a plain one.
  if (others.length > 0) return { deleted: false, heldBy: others };
  // The primary's release, not this site's operator's: counted, and collected when due (auto-collect.ts).
  const r = site.catalog.tx(() => {
    release(site.catalog, PEER_HOLDER, { snapshot });
    return executeDeleteSnapshots(site, planDeleteSnapshots(site, volume, [snapshot]), { gc: false });
  });
  if (r.verdict?.collect) collectGarbageSoon(site, r.verdict.detail);
  return { deleted: true };
}
