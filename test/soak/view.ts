// What each site's catalog says, read beside its daemon in one read-only pass: the generator picks
// actions that fit it, and the checker tests it against what must hold.
import type { SoakSite, World } from './world.ts';

export interface VolumeRow {
  name: string;
  role: 'primary' | 'secondary' | 'standalone';
}
export interface MirrorRow {
  id: string;
  volume: string;
  peer: string;
  remote_volume: string;
  state: string;
  paused: number;
  base: string | null;
}
export interface SecondaryRow {
  volume: string;
  source_site: string;
  source_volume: string;
  applied: string | null;
  applying: string | null;
  consistent: number;
  state: 'active' | 'broken-off';
  apply_error: string | null;
}
/** Another site primary of the volume beside this one, as this site learned (catalog/split-brains.ts). */
export interface SplitBrainRow {
  volume: string;
  site: string;
}
export interface SnapshotRow {
  id: string;
  volume: string;
  name: string | null;
  time: number;
  origin: string;
  created_at: number;
}
export interface HoldRow {
  snapshot: string;
  holder: string;
  volume: string;
}
export interface PeerSnapshotRow {
  snapshot: string;
  mirror: string;
  state: string;
}
export interface PeerDeletionRow {
  snapshot: string;
  mirror: string;
  volume: string;
}
export interface WorkflowRow {
  id: string;
  kind: string;
  volume: string;
  step: string;
  state: string;
}

export interface SiteView {
  name: string;
  id: string;
  up: boolean;
  peers: Array<{ name: string; id: string }>;
  volumes: VolumeRow[];
  mirrors: MirrorRow[];
  secondaries: SecondaryRow[];
  splitBrains: SplitBrainRow[];
  snapshots: SnapshotRow[];
  holds: HoldRow[];
  peerSnapshots: PeerSnapshotRow[];
  peerDeletions: PeerDeletionRow[];
  links: Array<{ path: string; volume: string; snapshot: string }>;
  workflows: WorkflowRow[];
}

export type View = Map<string, SiteView>;

function readSite(world: World, s: SoakSite): SiteView {
  return world.catalog(s, (db) => {
    db.exec('BEGIN'); // one consistent read of every table
    try {
      const all = <T>(sql: string) => db.prepare(sql).all() as unknown as T[];
      const has = (t: string) => db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(t) !== undefined;
      return {
        name: s.name,
        id: s.id,
        up: s.proc !== undefined,
        peers: all('SELECT name, id FROM peers ORDER BY name'),
        volumes: all('SELECT name, role FROM volumes ORDER BY name'),
        mirrors: all('SELECT id, volume, peer, remote_volume, state, paused, base FROM mirrors ORDER BY id'),
        secondaries: all('SELECT volume, source_site, source_volume, applied, applying, consistent, state, apply_error FROM secondaries ORDER BY volume'),
        splitBrains: has('split_brains') ? all('SELECT volume, site FROM split_brains ORDER BY volume, site') : [],
        snapshots: all('SELECT id, volume, name, time, origin, created_at FROM snapshots ORDER BY rowid'),
        holds: all('SELECT h.snapshot, h.holder, s.volume FROM holds h LEFT JOIN snapshots s ON s.id = h.snapshot ORDER BY h.snapshot, h.holder'),
        peerSnapshots: all('SELECT snapshot, mirror, state FROM peer_snapshots ORDER BY snapshot, mirror'),
        peerDeletions: has('peer_deletions') ? all('SELECT snapshot, mirror, volume FROM peer_deletions ORDER BY snapshot, mirror') : [],
        links: all('SELECT path, volume, snapshot FROM links ORDER BY path'),
        workflows: has('workflows') ? all("SELECT id, kind, volume, step, state FROM workflows WHERE state = 'running' ORDER BY id") : [],
      };
    } finally {
      db.exec('COMMIT');
    }
  });
}

export function readView(world: World): View {
  const v: View = new Map();
  for (const s of world.sites) v.set(s.name, readSite(world, s));
  return v;
}

/** The site a site's peer entry of this name stands for (by pinned id), if it is one of the soak's. */
export function siteOfPeer(view: View, from: SiteView, peerName: string): SiteView | undefined {
  const id = from.peers.find((p) => p.name === peerName)?.id;
  return id ? [...view.values()].find((s) => s.id === id) : undefined;
}

export function siteById(view: View, id: string): SiteView | undefined {
  return [...view.values()].find((s) => s.id === id);
}

/** The sites where `volume` is primary. */
export function primariesOf(view: View, volume: string): SiteView[] {
  return [...view.values()].filter((s) => s.volumes.some((v) => v.name === volume && v.role === 'primary'));
}

/** Mirror states of a transfer under way. */
export const TRANSFERRING = ['updating', 'baselining', 'resyncing'];

/** Transfers or applies in progress anywhere (catalog states), for waiting until things settle. */
export function busy(view: View): string[] {
  const out: string[] = [];
  for (const s of view.values()) {
    if (!s.up) continue;
    for (const m of s.mirrors) if (TRANSFERRING.includes(m.state)) out.push(`${s.name}: mirror ${m.id} ${m.state}`);
    // An apply runs while its source still sends (its mirror here is updating); one cut by a kill or
    // a lost link stays `applying` until the next update finishes it, and is not waited for.
    for (const r of s.secondaries) {
      if (!r.applying || r.apply_error) continue;
      const src = siteById(view, r.source_site);
      if (!src) out.push(`${s.name}: applying ${r.applying} to ${r.volume} (from a site outside the soak)`);
      else if (src.up && src.mirrors.some((m) => m.remote_volume === r.volume && siteOfPeer(view, src, m.peer) === s && TRANSFERRING.includes(m.state))) out.push(`${s.name}: applying ${r.applying} to ${r.volume}`);
    }
    for (const p of s.peerSnapshots) if (p.state === 'transferring') out.push(`${s.name}: peer snapshot ${p.snapshot} transferring to ${p.mirror}`);
  }
  return out;
}
