// Peer snapshots (AFM mmpsnap): a snapshot taken at the primary that must come
// to exist, under the same id and name, on every secondary of the volume.
// Each (snapshot, mirror) pair is pending until the destination has committed
// it; the mirror's update job delivers pending ones first, oldest first, with
// the replication stream. They are held on both sides until `snapshot delete
// --peer` removes them everywhere.
import { FerryError } from '../core/errors.ts';
import type { ObjectId } from '../core/ids.ts';
import { ROUTES } from './http.ts';
import { PEER_HOLD } from './receiver.ts';
import type { Site } from './site.ts';
import { executeDeleteSnapshots, planDeleteSnapshots, resolveSnapshot } from './snapshots.ts';

export type PeerState = 'pending' | 'transferring' | 'present';

export interface PendingPeer {
  id: string;
  manifest: ObjectId;
  time: number;
  name: string | null;
}

export function pendingPeerSnapshots(site: Site, mirror: string): PendingPeer[] {
  return site.db.all<PendingPeer>(
    "SELECT s.id, s.manifest, s.time, s.name FROM peer_snapshots p JOIN snapshots s ON s.id = p.snapshot WHERE p.mirror = ? AND p.state <> 'present' ORDER BY s.time, s.id",
    mirror,
  );
}

export function markPeer(site: Site, snapshot: string, mirror: string, state: PeerState): void {
  site.db.run('UPDATE peer_snapshots SET state = ?, updated_at = ? WHERE snapshot = ? AND mirror = ?', state, site.clock.now(), snapshot, mirror);
}

export function isPeerSnapshotFor(site: Site, snapshot: string, mirror: string): boolean {
  return site.db.get('SELECT 1 FROM peer_snapshots WHERE snapshot = ? AND mirror = ?', snapshot, mirror) !== undefined;
}

/** Make an existing snapshot a peer snapshot: held here, pending for every mirror of its volume. */
export function registerPeerSnapshot(site: Site, volume: string, snapshot: string): string[] {
  const mirrors = site.db.all<{ id: string }>('SELECT id FROM mirrors WHERE volume = ?', volume).map((r) => r.id);
  site.db.tx(() => {
    site.db.run('INSERT OR IGNORE INTO holds (snapshot, holder, created_at) VALUES (?, ?, ?)', snapshot, PEER_HOLD, site.clock.now());
    for (const m of mirrors) site.db.run("INSERT OR IGNORE INTO peer_snapshots (snapshot, mirror, state, updated_at) VALUES (?, ?, 'pending', ?)", snapshot, m, site.clock.now());
    site.event({ kind: 'snapshot.peer', volume, outcome: 'info', detail: { snapshot, pendingAt: mirrors } });
  });
  return mirrors;
}

/** A new mirror of the volume: every peer snapshot held here becomes pending for it (in the caller's transaction). */
export function queuePeerSnapshotsFor(site: Site, volume: string, mirror: string): string[] {
  const ids = site.db.all<{ id: string }>('SELECT s.id FROM snapshots s JOIN holds h ON h.snapshot = s.id AND h.holder = ? WHERE s.volume = ? ORDER BY s.time, s.id', PEER_HOLD, volume).map((r) => r.id);
  for (const id of ids) site.db.run("INSERT OR REPLACE INTO peer_snapshots (snapshot, mirror, state, updated_at) VALUES (?, ?, 'pending', ?)", id, mirror, site.clock.now());
  return ids;
}

export interface PeerSnapshotStatus {
  id: string;
  name: string | null;
  time: number;
  secondaries: Array<{ mirror: string; state: PeerState; updatedAt: number }>;
}

export function peerSnapshotStatus(site: Site, volume: string): PeerSnapshotStatus[] {
  const rows = site.db.all<{ id: string; name: string | null; time: number; mirror: string | null; state: PeerState | null; updated_at: number | null }>(
    `SELECT s.id, s.name, s.time, p.mirror, p.state, p.updated_at FROM snapshots s JOIN holds h ON h.snapshot = s.id AND h.holder = ?
       LEFT JOIN peer_snapshots p ON p.snapshot = s.id WHERE s.volume = ? ORDER BY s.time, s.id, p.mirror`,
    PEER_HOLD, volume,
  );
  const out = new Map<string, PeerSnapshotStatus>();
  for (const r of rows) {
    let e = out.get(r.id);
    if (!e) out.set(r.id, (e = { id: r.id, name: r.name, time: r.time, secondaries: [] }));
    if (r.mirror) e.secondaries.push({ mirror: r.mirror, state: r.state!, updatedAt: r.updated_at! });
  }
  return [...out.values()];
}

export interface PeerDeleteTarget {
  mirror: string;
  peerName: string;
  remoteVolume: string;
}

/** Delete a peer snapshot everywhere: each secondary first (via `remove`), then here. */
export async function deletePeerSnapshot(
  site: Site,
  volume: string,
  ref: string,
  remove: (t: PeerDeleteTarget, snapshot: string) => Promise<void>,
  opts: { dryRun?: boolean } = {},
): Promise<{ snapshot: string; removedAt: string[]; dryRun?: true; wouldRemoveAt?: string[] }> {
  const snap = resolveSnapshot(site, volume, ref);
  if (!snap.holds.includes(PEER_HOLD)) throw new FerryError('USAGE', `snapshot ${snap.name ?? snap.id} is not a peer snapshot; delete it with \`ferry snapshot delete\``);
  const sec = site.db.get<{ source_site: string; state: string }>("SELECT source_site, state FROM secondaries WHERE volume = ? AND state <> 'broken-off'", volume);
  if (sec) {
    // Deleting it here alone would leave the primary believing it is present here.
    const from = site.db.get<{ name: string }>('SELECT name FROM peers WHERE id = ?', sec.source_site)?.name ?? sec.source_site;
    throw new FerryError('MIRROR_STATE', `${volume} is a secondary here: peer snapshot ${snap.name ?? snap.id} belongs to its primary ${from}; delete it there with \`ferry snapshot delete ${volume} ${snap.name ?? snap.id} --peer\``);
  }
  const others = snap.holds.filter((h) => h !== PEER_HOLD);
  if (others.length > 0) {
    // A mirror's base (or a snapshot in flight, or a link's) cannot go: refuse before removing it anywhere,
    // rather than leave it behind on every side as a plain snapshot nothing would ever delete.
    throw new FerryError('SNAPSHOT_HELD', `peer snapshot ${snap.name ?? snap.id} is held by ${others.join(', ')} (a mirror's base until the next update moves it); run \`ferry mirror update ${volume}\` first, then delete it with --peer`);
  }
  const targets = site.db.all<{ mirror: string; peer: string; remote_volume: string; state: PeerState }>(
    'SELECT p.mirror, m.peer, m.remote_volume, p.state FROM peer_snapshots p JOIN mirrors m ON m.id = p.mirror WHERE p.snapshot = ?',
    snap.id,
  );
  // Plan only: the same checks, and where it would go; nothing removed anywhere.
  if (opts.dryRun) return { snapshot: snap.id, removedAt: [], dryRun: true, wouldRemoveAt: targets.filter((t) => t.state === 'present').map((t) => t.peer) };
  const removedAt: string[] = [];
  for (const t of targets) {
    if (t.state !== 'present') continue; // never arrived: nothing to remove there
    await remove({ mirror: t.mirror, peerName: t.peer, remoteVolume: t.remote_volume }, snap.id);
    removedAt.push(t.peer);
  }
  site.db.tx(() => {
    site.db.run('DELETE FROM peer_snapshots WHERE snapshot = ?', snap.id);
    site.db.run('DELETE FROM holds WHERE snapshot = ? AND holder = ?', snap.id, PEER_HOLD);
  });
  // A hold may have appeared since the check (an update in flight took it as its target): then it stays as a plain snapshot.
  const plan = planDeleteSnapshots(site, volume, [snap.id]);
  if (plan.refused.length === 0) executeDeleteSnapshots(site, plan);
  site.event({ kind: 'snapshot.peer-delete', volume, outcome: 'ok', detail: { snapshot: snap.id, removedAt, keptAsBase: plan.refused.length > 0 } });
  return { snapshot: snap.id, removedAt };
}

/** At a secondary: the primary deletes one of its peer snapshots here. */
export function acceptPeerDelete(site: Site, sourceSite: string, volume: string, snapshot: string): { deleted: boolean } {
  const sec = site.db.get<{ source_site: string }>('SELECT source_site FROM secondaries WHERE volume = ?', volume);
  if (!sec || sec.source_site !== sourceSite) throw new FerryError('NOT_AUTHORIZED', `volume ${volume} here is not the asking site's secondary`);
  const snap = site.db.get<{ id: string }>('SELECT id FROM snapshots WHERE id = ? AND volume = ?', snapshot, volume);
  if (!snap) return { deleted: false };
  site.db.run('DELETE FROM holds WHERE snapshot = ? AND holder = ?', snapshot, PEER_HOLD);
  const plan = planDeleteSnapshots(site, volume, [snapshot]);
  if (plan.refused.length > 0) return { deleted: false }; // it is the base here: it goes when the base moves
  executeDeleteSnapshots(site, plan);
  return { deleted: true };
}

export const PEER_DELETE_ROUTE = ROUTES.dr('peer-delete');
