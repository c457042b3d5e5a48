// Peer snapshots at the primary (`peer_snapshots`): per mirror, where each
// stands (pending, transferring, present); and their deletions not yet
// confirmed by a secondary (`peer_deletions`). Neither table has a foreign key
// to mirrors: the rows of a mirror go with it (site/mirrors.ts dropMirror). The
// holds peer snapshots carry are holds.ts's (`peer`, `peer-delete`); what the
// states mean is site/peer-snapshots.ts's.
import type { ObjectId } from '../core/ids.ts';
import type { Catalog } from './catalog.ts';
import { encodeHolder, PEER_DELETE_HOLDER, PEER_HOLDER } from './holds.ts';

export type PeerState = 'pending' | 'transferring' | 'present' | 'deleting';

/** A row of `peer_snapshots`. */
export interface PeerSnapshotRow {
  snapshot: string;
  mirror: string;
  state: Exclude<PeerState, 'deleting'>;
  updated_at: number;
}

/** A row of `peer_deletions`. */
export interface PeerDeletionRow {
  snapshot: string;
  mirror: string;
  volume: string;
  failures: number;
  next_at: number;
  last_error: string | null;
  created_at: number;
}

export interface PendingPeer {
  id: string;
  manifest: ObjectId;
  time: number;
  name: string | null;
  /** the site that took it */
  origin: string;
}

/**
 * The peer snapshots a mirror has still to deliver, oldest first: in the order this site took them
 * (all are its own, recorded as taken), not by its clock, which may have been set back between.
 */
export function pendingPeerSnapshots(cat: Catalog, mirror: string): PendingPeer[] {
  return cat.db.all<PendingPeer>(
    "SELECT s.id, s.manifest, s.time, s.name, s.origin FROM peer_snapshots p JOIN snapshots s ON s.id = p.snapshot WHERE p.mirror = ? AND p.state <> 'present' ORDER BY s.rowid",
    mirror,
  );
}

/** How many peer snapshots a mirror has still to deliver (its health and metrics show them). */
export function countPendingPeerSnapshots(cat: Catalog, mirror: string): number {
  return cat.db.get<{ n: number }>("SELECT count(*) AS n FROM peer_snapshots WHERE mirror = ? AND state <> 'present'", mirror)?.n ?? 0;
}

/** The mirrors still delivering a peer snapshot. */
export function mirrorsDelivering(cat: Catalog, snapshot: string): string[] {
  return cat.db.all<{ mirror: string }>("SELECT mirror FROM peer_snapshots WHERE snapshot = ? AND state <> 'present'", snapshot).map((r) => r.mirror);
}

export function peerRowsOf(cat: Catalog, snapshot: string): PeerSnapshotRow[] {
  return cat.db.all<PeerSnapshotRow>('SELECT * FROM peer_snapshots WHERE snapshot = ? ORDER BY mirror', snapshot);
}

export function markPeer(cat: Catalog, snapshot: string, mirror: string, state: PeerSnapshotRow['state']): void {
  cat.db.run('UPDATE peer_snapshots SET state = ?, updated_at = ? WHERE snapshot = ? AND mirror = ?', state, cat.now(), snapshot, mirror);
}

/**
 * The peer snapshots this mirror shows present that its destination does not hold (`held`: the
 * snapshots it lists; its volume was removed and made again): pending again, to be delivered again.
 * Returns their ids.
 */
export function unmarkMissing(cat: Catalog, mirror: string, held: ReadonlySet<string>): string[] {
  return cat.tx(() => {
    const gone = cat.db.all<{ snapshot: string }>("SELECT snapshot FROM peer_snapshots WHERE mirror = ? AND state = 'present' ORDER BY snapshot", mirror).map((r) => r.snapshot).filter((id) => !held.has(id));
    for (const id of gone) cat.db.run("UPDATE peer_snapshots SET state = 'pending', updated_at = ? WHERE snapshot = ? AND mirror = ?", cat.now(), id, mirror);
    return gone;
  });
}

/** A peer snapshot cut in flight to this mirror is pending again. */
export function resetTransferring(cat: Catalog, mirror: string): void {
  cat.db.run("UPDATE peer_snapshots SET state = 'pending' WHERE mirror = ? AND state = 'transferring'", mirror);
}

export function isPeerSnapshotFor(cat: Catalog, snapshot: string, mirror: string): boolean {
  return cat.db.get('SELECT 1 FROM peer_snapshots WHERE snapshot = ? AND mirror = ?', snapshot, mirror) !== undefined;
}

/** The snapshot becomes pending for these mirrors (`replace`: also where a row exists: a new mirror of that id). */
export function addPeerRows(cat: Catalog, snapshot: string, mirrors: string[], o: { replace?: boolean } = {}): void {
  const sql = o.replace
    ? "INSERT OR REPLACE INTO peer_snapshots (snapshot, mirror, state, updated_at) VALUES (?, ?, 'pending', ?)"
    : "INSERT OR IGNORE INTO peer_snapshots (snapshot, mirror, state, updated_at) VALUES (?, ?, 'pending', ?)";
  cat.tx(() => {
    for (const m of mirrors) cat.db.run(sql, snapshot, m, cat.now());
  });
}

/** One snapshot's row for one mirror goes (it cannot be delivered there). */
export function dropPeerRow(cat: Catalog, snapshot: string, mirror: string): void {
  cat.db.run('DELETE FROM peer_snapshots WHERE snapshot = ? AND mirror = ?', snapshot, mirror);
}

/** A mirror's rows go (it is removed, or a new one of the same id must inherit nothing). */
export function dropPeerRowsOfMirror(cat: Catalog, mirror: string): void {
  cat.db.run('DELETE FROM peer_snapshots WHERE mirror = ?', mirror);
}

/** A peer snapshot's rows go (it is being deleted: peer_deletions take over). */
export function dropPeerRowsOfSnapshot(cat: Catalog, snapshot: string): void {
  cat.db.run('DELETE FROM peer_snapshots WHERE snapshot = ?', snapshot);
}

/** Every row of the volume's snapshots, in both tables (the volume is removed). */
export function dropPeerRowsOfVolume(cat: Catalog, volume: string): void {
  cat.tx(() => {
    cat.db.run('DELETE FROM peer_snapshots WHERE snapshot IN (SELECT id FROM snapshots WHERE volume = ?)', volume);
    cat.db.run('DELETE FROM peer_deletions WHERE volume = ?', volume);
  });
}

/**
 * The peer snapshots of a volume (held `peer`, or `peer-delete` while being deleted), oldest first,
 * with whether each is being deleted.
 */
export function peerSnapshotsOf(cat: Catalog, volume: string): Array<{ id: string; name: string | null; time: number; deleting: boolean }> {
  return cat.db
    .all<{ id: string; name: string | null; time: number; deleting: number }>(
      `SELECT s.id, s.name, s.time, EXISTS (SELECT 1 FROM holds d WHERE d.snapshot = s.id AND d.holder = ?) AS deleting FROM snapshots s
         WHERE s.volume = ? AND EXISTS (SELECT 1 FROM holds h WHERE h.snapshot = s.id AND h.holder IN (?, ?)) ORDER BY s.time, s.id`,
      encodeHolder(PEER_DELETE_HOLDER), volume, encodeHolder(PEER_HOLDER), encodeHolder(PEER_DELETE_HOLDER),
    )
    .map((r) => ({ ...r, deleting: r.deleting === 1 }));
}

// ---------------------------------------------------------------- peer_deletions

/** Rows of the peer_deletions table; none in a catalog opened read-only from before it existed. */
function deletions<T>(fn: () => T[]): T[] {
  try {
    return fn();
  } catch (err) {
    if (/no such table: peer_deletions/.test((err as Error).message)) return [];
    throw err;
  }
}

export function deletionsOf(cat: Catalog, snapshot: string): PeerDeletionRow[] {
  return deletions(() => cat.db.all<PeerDeletionRow>('SELECT * FROM peer_deletions WHERE snapshot = ? ORDER BY mirror', snapshot));
}

/** The snapshots whose deletion a mirror's secondary still owes. */
export function deletionsOwedBy(cat: Catalog, mirror: string): string[] {
  return deletions(() => cat.db.all<{ snapshot: string }>('SELECT snapshot FROM peer_deletions WHERE mirror = ?', mirror)).map((r) => r.snapshot);
}

/** How many deletions a mirror's secondary still owes (its health shows them). */
export function countDeletionsOwed(cat: Catalog, mirror: string): number {
  return deletions(() => cat.db.all<{ n: number }>('SELECT count(*) AS n FROM peer_deletions WHERE mirror = ?', mirror))[0]?.n ?? 0;
}

/** Mirrors with a deletion whose retry is due at `now`. */
export function mirrorsWithDueDeletions(cat: Catalog, now: number): string[] {
  return deletions(() => cat.db.all<{ mirror: string }>('SELECT DISTINCT mirror FROM peer_deletions WHERE next_at <= ?', now)).map((r) => r.mirror);
}

/**
 * Recorded deletions with their mirror's peer, remote volume and state, by snapshot then peer: of one
 * snapshot, of one mirror, and only those whose retry is due at `now`, as asked.
 */
export function deletionsToDeliver(cat: Catalog, f: { snapshot?: string; mirror?: string; dueAt?: number }): Array<PeerDeletionRow & { peer: string; remote_volume: string; state: string }> {
  return deletions(() =>
    cat.db.all<PeerDeletionRow & { peer: string; remote_volume: string; state: string }>(
      `SELECT d.*, m.peer, m.remote_volume, m.state FROM peer_deletions d JOIN mirrors m ON m.id = d.mirror
         WHERE (? IS NULL OR d.snapshot = ?) AND (? IS NULL OR d.mirror = ?) AND (? = 0 OR d.next_at <= ?) ORDER BY d.snapshot, m.peer`,
      f.snapshot ?? null, f.snapshot ?? null, f.mirror ?? null, f.mirror ?? null, f.dueAt === undefined ? 0 : 1, f.dueAt ?? 0,
    ),
  );
}

/** A deletion for each of these mirrors' secondaries (in the caller's transaction, if any). */
export function addDeletions(cat: Catalog, snapshot: string, volume: string, mirrors: string[]): void {
  cat.tx(() => {
    for (const m of mirrors) cat.db.run('INSERT OR IGNORE INTO peer_deletions (snapshot, mirror, volume, created_at) VALUES (?, ?, ?, ?)', snapshot, m, volume, cat.now());
  });
}

/** The secondary of `mirror` confirmed (or need not be asked any more). */
export function dropDeletion(cat: Catalog, snapshot: string, mirror: string): void {
  cat.db.run('DELETE FROM peer_deletions WHERE snapshot = ? AND mirror = ?', snapshot, mirror);
}

/** A removed mirror's deletions go with it; returns their snapshots. */
export function dropDeletionsOf(cat: Catalog, mirror: string): string[] {
  const ids = deletionsOwedBy(cat, mirror);
  if (ids.length > 0) cat.db.run('DELETE FROM peer_deletions WHERE mirror = ?', mirror);
  return ids;
}

/** The secondary could not confirm: counted, retried at `nextAt`. */
export function noteDeletionFailure(cat: Catalog, snapshot: string, mirror: string, failures: number, nextAt: number, error: { code: string; message: string }): void {
  cat.db.run('UPDATE peer_deletions SET failures = ?, next_at = ?, last_error = ? WHERE snapshot = ? AND mirror = ?', failures, nextAt, JSON.stringify(error), snapshot, mirror);
}

/**
 * Peer snapshots a mirror showed `present` at its destination that the destination's hello no longer
 * lists (its volume was removed and made again) are pending again, delivered anew; an event says so.
 */
export function dropStalePeerClaims(cat: Catalog, m: { id: string; volume: string; peer: string }, held: ReadonlySet<string>): string[] {
  return cat.tx(() => {
    const gone = unmarkMissing(cat, m.id, held);
    if (gone.length) cat.event({ kind: 'snapshot.peer', volume: m.volume, outcome: 'warning', detail: { mirror: m.id, pendingAgain: gone, reason: `${m.peer} no longer holds them (its volume was removed and made again?): they are delivered again` } });
    return gone;
  });
}
