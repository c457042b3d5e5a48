// Split brains this site knows of (`split_brains`): another site is primary of the same volume
// beside this one, and this site learned it (a forced failover whose old primary answered that a
// sibling had taken the volume over first, or told so late; any failover whose old primary named
// the primaries it knew beside itself: the site it had taken the volume over from, its own split
// brains; a failback that handed its records here, or a demotion by failback that keeps what it
// knew through the relations it ends; at an old primary, a failover notice from a secondary it
// mirrors to no more, and the removal of a mirror broken off by its destination's failover: both
// in dr/failover.ts). One row per (volume, other site).
//
// The record is the volume's, not the relation's it was found through: a failback, a migrate, a
// mirror remove or a re-point that ends that relation leaves it. It goes only when the split is
// resolved between the two sites: this site follows the other (it becomes its secondary: failback,
// re-point, migrate, a new mirror from it), the other follows this site (an update of this site's
// mirror to it succeeds), or the volume is removed here (volumes.ts forgetVolume).
import type { Catalog } from './catalog.ts';

export interface SplitBrain {
  volume: string;
  /** the other primary's site id, and its volume there */
  site: string;
  remoteVolume: string;
  /** the site both took the volume over from (its name here, or id), when known */
  oldPrimary: string | null;
  /** when this site learned it (its clock) */
  foundAt: number;
}

interface Row {
  volume: string;
  site: string;
  remote_volume: string;
  old_primary: string | null;
  found_at: number;
}

const toSplitBrain = (r: Row): SplitBrain => ({ volume: r.volume, site: r.site, remoteVolume: r.remote_volume, oldPrimary: r.old_primary, foundAt: r.found_at });

/** Record (or keep: the first record stays) that `site` is primary of `volume` beside this site. In the caller's transaction, if any. */
export function recordSplitBrain(cat: Catalog, volume: string, o: { site: string; remoteVolume: string; oldPrimary: string | null }): void {
  cat.db.run('INSERT OR IGNORE INTO split_brains (volume, site, remote_volume, old_primary, found_at) VALUES (?, ?, ?, ?, ?)', volume, o.site, o.remoteVolume, o.oldPrimary, cat.now());
}

/** The split brains recorded here, of one volume when given. */
export function listSplitBrains(cat: Catalog, volume?: string): SplitBrain[] {
  // a read-only catalog an older ferry wrote may not have the table yet: nothing recorded
  if (cat.readOnly && !cat.db.get("SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = 'split_brains'")) return [];
  const rows = volume === undefined
    ? cat.db.all<Row>('SELECT * FROM split_brains ORDER BY volume, site')
    : cat.db.all<Row>('SELECT * FROM split_brains WHERE volume = ? ORDER BY site', volume);
  return rows.map(toSplitBrain);
}

/**
 * The split brain of `volume` with `site` is resolved (one of the two follows the other now), or,
 * without `site`, every one of the volume (it is removed here): the records go, each with a
 * `split-brain.resolved` event saying why. Returns the records that went. In the caller's
 * transaction, if any.
 */
export function clearSplitBrain(cat: Catalog, volume: string, site: string | undefined, reason: string): SplitBrain[] {
  const gone = listSplitBrains(cat, volume).filter((s) => site === undefined || s.site === site);
  if (!gone.length) return gone; // no write unless there is something to clear
  cat.tx(() => {
    if (site === undefined) cat.db.run('DELETE FROM split_brains WHERE volume = ?', volume);
    else cat.db.run('DELETE FROM split_brains WHERE volume = ? AND site = ?', volume, site);
    for (const g of gone) cat.event({ kind: 'split-brain.resolved', volume, outcome: 'info', detail: { site: g.site, remoteVolume: g.remoteVolume, reason } });
  });
  return gone;
}
