// Holds (`holds`): a snapshot with a hold is never deleted by retention or
// `snapshot delete`, and GC keeps its data (docs/design.md, promise 3). This
// module is the only writer of the table. Holders are typed (Holder); the text
// stored, shown by `snapshot list` and sent to peers is encodeHolder's, read
// back by parseHolder, and spelled nowhere else.
//
//   base         mirror:<id>           the mirror's base at the source (moved after each commit)
//   in-flight    mirror:<id>:inflight  the snapshot a running update of the mirror is sending
//   replica      mirror-from:<site>    at a secondary, the snapshot the replica's source last committed
//                                      (per volume: the same site may feed several volumes)
//   peer         peer                  a peer snapshot (held on every site until deleted with --peer)
//   peer-delete  peer-delete           a peer snapshot being deleted, until every secondary confirmed
//   link         link:<path>           the snapshot a link's copy shows
import type { Catalog } from './catalog.ts';

export type Holder =
  | { kind: 'base'; mirror: string }
  | { kind: 'in-flight'; mirror: string }
  | { kind: 'replica'; source: string }
  | { kind: 'peer' }
  | { kind: 'peer-delete' }
  | { kind: 'link'; path: string }
  /** a holder this version does not know (written by a newer one): kept, never released as an orphan */
  | { kind: 'other'; text: string };

export const baseHolder = (mirror: string): Holder => ({ kind: 'base', mirror });
export const inFlightHolder = (mirror: string): Holder => ({ kind: 'in-flight', mirror });
export const replicaHolder = (source: string): Holder => ({ kind: 'replica', source });
export const linkHolder = (path: string): Holder => ({ kind: 'link', path });
export const PEER_HOLDER: Holder = { kind: 'peer' };
export const PEER_DELETE_HOLDER: Holder = { kind: 'peer-delete' };

export function encodeHolder(h: Holder): string {
  switch (h.kind) {
    case 'base':
      return `mirror:${h.mirror}`;
    case 'in-flight':
      return `mirror:${h.mirror}:inflight`;
    case 'replica':
      return `mirror-from:${h.source}`;
    case 'peer':
      return 'peer';
    case 'peer-delete':
      return 'peer-delete';
    case 'link':
      return `link:${h.path}`;
    case 'other':
      return h.text;
  }
}

export function parseHolder(text: string): Holder {
  if (text === 'peer') return PEER_HOLDER;
  if (text === 'peer-delete') return PEER_DELETE_HOLDER;
  if (text.startsWith('mirror-from:')) return replicaHolder(text.slice('mirror-from:'.length));
  if (text.startsWith('mirror:')) {
    const rest = text.slice('mirror:'.length);
    return rest.endsWith(':inflight') ? inFlightHolder(rest.slice(0, -':inflight'.length)) : baseHolder(rest);
  }
  if (text.startsWith('link:')) return linkHolder(text.slice('link:'.length));
  return { kind: 'other', text };
}

/** A hold that was released: the snapshot, and its holder as stored. */
export interface ReleasedHold {
  snapshot: string;
  holder: string;
}

// ---------------------------------------------------------------- the verbs (each in the caller's transaction, if any)

/** `holder` holds `snapshot` (again: holding twice is one hold). */
export function hold(cat: Catalog, holder: Holder, snapshot: string): void {
  cat.db.run('INSERT OR IGNORE INTO holds (snapshot, holder, created_at) VALUES (?, ?, ?)', snapshot, encodeHolder(holder), cat.now());
}

/**
 * `holder` lets go of what it holds: every snapshot, or only `snapshot`, or only the snapshots of
 * `volume` (a replica's source holds per volume). Returns what was released.
 */
export function release(cat: Catalog, holder: Holder, where: { snapshot?: string; volume?: string } = {}): ReleasedHold[] {
  const h = encodeHolder(holder);
  const released: ReleasedHold[] = [];
  cat.tx(() => {
    const rows =
      where.snapshot !== undefined
        ? cat.db.all<{ snapshot: string }>('SELECT snapshot FROM holds WHERE holder = ? AND snapshot = ?', h, where.snapshot)
        : where.volume !== undefined
          ? cat.db.all<{ snapshot: string }>('SELECT snapshot FROM holds WHERE holder = ? AND snapshot IN (SELECT id FROM snapshots WHERE volume = ?)', h, where.volume)
          : cat.db.all<{ snapshot: string }>('SELECT snapshot FROM holds WHERE holder = ?', h);
    for (const r of rows) {
      cat.db.run('DELETE FROM holds WHERE snapshot = ? AND holder = ?', r.snapshot, h);
      released.push({ snapshot: r.snapshot, holder: h });
    }
  });
  return released;
}

/** `holder` holds `snapshot` instead of what it held (of `volume`, when given), in one transaction. */
export function moveHold(cat: Catalog, holder: Holder, snapshot: string, volume?: string): void {
  cat.tx(() => {
    release(cat, holder, volume === undefined ? {} : { volume });
    hold(cat, holder, snapshot);
  });
}

/** A mirror's update holds the snapshot it sends until it ends (retention must not take it meanwhile). */
export function holdInFlight(cat: Catalog, mirror: string, snapshot: string): void {
  hold(cat, inFlightHolder(mirror), snapshot);
}

/** A mirror's update ended: what it held while sending is released (its base moved, or it failed). */
export function releaseInFlight(cat: Catalog, mirror: string): void {
  release(cat, inFlightHolder(mirror));
}

/** The mirror's base is now `snapshot`: held by it, and the base it had released (its row: mirrors.ts). */
export function moveBase(cat: Catalog, mirror: string, snapshot: string): void {
  moveHold(cat, baseHolder(mirror), snapshot);
}

/** The mirror has no base any more (the destination no longer holds it): its base hold goes. */
export function releaseBase(cat: Catalog, mirror: string): ReleasedHold[] {
  return release(cat, baseHolder(mirror));
}

/** Everything a mirror holds (its base, a snapshot in flight): the mirror is removed. */
export function releaseMirror(cat: Catalog, mirror: string): ReleasedHold[] {
  return cat.tx(() => [...release(cat, baseHolder(mirror)), ...release(cat, inFlightHolder(mirror))]);
}

/**
 * At a secondary, `source` holds `snapshot` of `volume`: instead of what it held of that volume when
 * `only` (a completed apply moves it to what the replica shows), beside what it holds otherwise (a
 * failover or failback adds the base it keeps for later), or beside only the snapshots in `keep` (a
 * commit: what the replica shows and an apply left unfinished stay held until an apply completes).
 */
export function holdReplica(cat: Catalog, volume: string, source: string, snapshot: string, o: { only?: boolean; keep?: Array<string | null> } = {}): void {
  const holder = replicaHolder(source);
  if (o.only) return moveHold(cat, holder, snapshot, volume);
  cat.tx(() => {
    if (o.keep) {
      const keep = new Set([snapshot, ...o.keep]);
      for (const id of heldBy(cat, holder, volume)) if (!keep.has(id)) release(cat, holder, { snapshot: id });
    }
    hold(cat, holder, snapshot);
  });
}

/** The holds `from` has on the snapshots of `volume` become `to`'s (a migrate hands the secondary to a new source). */
export function handOverReplica(cat: Catalog, volume: string, from: string, to: string): void {
  cat.db.run('UPDATE OR REPLACE holds SET holder = ? WHERE holder = ? AND snapshot IN (SELECT id FROM snapshots WHERE volume = ?)', encodeHolder(replicaHolder(to)), encodeHolder(replicaHolder(from)), volume);
}

/** Every hold on the volume's snapshots goes (the volume is removed: catalog/volumes.ts forgetVolume). */
export function releaseVolumeHolds(cat: Catalog, volume: string): void {
  cat.db.run('DELETE FROM holds WHERE snapshot IN (SELECT id FROM snapshots WHERE volume = ?)', volume);
}

/** A peer snapshot: held as one (here and at every secondary it reaches). */
export function holdPeer(cat: Catalog, snapshot: string): void {
  hold(cat, PEER_HOLDER, snapshot);
}

/** A peer snapshot is being deleted: its peer hold becomes `peer-delete` until every secondary confirmed. */
export function startPeerDelete(cat: Catalog, snapshot: string): void {
  cat.tx(() => {
    release(cat, PEER_HOLDER, { snapshot });
    hold(cat, PEER_DELETE_HOLDER, snapshot);
  });
}

/**
 * Holds whose holder no longer exists: a mirror (its base or a snapshot in flight), a link, or a
 * replication source the volume no longer follows. Older versions left such holds behind (a mirror
 * removed during an update), and nothing could ever release them: the snapshot could not be
 * deleted, GC kept its data, and `volume remove` asked to remove mirrors that did not exist.
 * Released here, in one transaction; returns them. Peer holds have no holder to check and stay.
 */
export function releaseOrphans(cat: Catalog): ReleasedHold[] {
  const rows = cat.db.all<{ snapshot: string; holder: string; volume: string }>('SELECT h.snapshot, h.holder, s.volume FROM holds h JOIN snapshots s ON s.id = h.snapshot');
  const orphans = rows.filter((r) => holderGone(cat, parseHolder(r.holder), r.volume)).map((r) => ({ snapshot: r.snapshot, holder: r.holder }));
  if (orphans.length > 0) {
    cat.tx(() => {
      for (const r of orphans) cat.db.run('DELETE FROM holds WHERE snapshot = ? AND holder = ?', r.snapshot, r.holder);
    });
  }
  return orphans;
}

/**
 * Whether the holder of a hold on a snapshot of `volume` no longer exists: a mirror removed, a link
 * removed, a source the volume no longer follows. Peer holds and unknown holders always exist.
 */
export function holderGone(cat: Catalog, h: Holder, volume: string): boolean {
  switch (h.kind) {
    case 'base':
    case 'in-flight':
      return !cat.db.get('SELECT 1 FROM mirrors WHERE id = ?', h.mirror);
    case 'replica':
      return !cat.db.get('SELECT 1 FROM secondaries WHERE volume = ? AND source_site = ?', volume, h.source);
    case 'link':
      return !cat.db.get('SELECT 1 FROM links WHERE path = ?', h.path);
    default:
      return false;
  }
}

// ---------------------------------------------------------------- reading

/** Whether anything holds the snapshot. */
export function isHeld(cat: Catalog, snapshot: string): boolean {
  return cat.db.get('SELECT 1 FROM holds WHERE snapshot = ?', snapshot) !== undefined;
}

/** The holders of a snapshot, as stored, in name order. */
export function holdersOf(cat: Catalog, snapshot: string): string[] {
  return cat.db.all<{ holder: string }>('SELECT holder FROM holds WHERE snapshot = ? ORDER BY holder', snapshot).map((r) => r.holder);
}

/** Every holder of any snapshot of the volume, as stored, in name order. */
export function volumeHolders(cat: Catalog, volume: string): string[] {
  return cat.db.all<{ holder: string }>('SELECT DISTINCT h.holder FROM holds h JOIN snapshots s ON s.id = h.snapshot WHERE s.volume = ? ORDER BY h.holder', volume).map((r) => r.holder);
}

/** The snapshots `holder` holds (of `volume`, when given), oldest first by their site's clock (time, then id). */
export function heldBy(cat: Catalog, holder: Holder, volume?: string): string[] {
  const h = encodeHolder(holder);
  const rows = volume === undefined
    ? cat.db.all<{ id: string }>('SELECT s.id FROM snapshots s JOIN holds h ON h.snapshot = s.id AND h.holder = ? ORDER BY s.time, s.id', h)
    : cat.db.all<{ id: string }>('SELECT s.id FROM snapshots s JOIN holds h ON h.snapshot = s.id AND h.holder = ? WHERE s.volume = ? ORDER BY s.time, s.id', h, volume);
  return rows.map((r) => r.id);
}
