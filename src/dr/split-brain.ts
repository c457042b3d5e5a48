// Split brain, as `ferry status` shows it. After a failover both sites may
// hold the primary role for a volume: the old primary's mirror is
// `broken-off` (it was told, or its next update was refused), and the new
// primary's secondary relation is `broken-off`. When, in addition, both
// sides wrote after the base, that is a split brain: ferry picks no winner
// (updates stay refused; failback at the site that should yield keeps its
// writes in a snapshot). Status then shows `split-brain` and what each side
// changed since the common base: a diff of each side's latest snapshot
// against the base (counts and bytes), this side's computed here, the
// peer's fetched over the DR route `changes`. The base is found by lineage,
// never by the sites' clocks: the newest snapshot both sides' lineages share
// (the snapshot the new primary took over at, normally), the recorded base
// when the two lineages meet nowhere that both sites still hold.
//
// Also which other sites a primary knows to be primary beside it (primariesKnownHere), which a
// failover notice's answer, a failback's demotion and a migrate's plan pass on or check.
//
// Only reads: nothing here changes a mirror, a role or a snapshot.
import { FerryError, isFerryError } from '../core/errors.ts';
import { isSnapshotId, type ObjectId } from '../core/ids.ts';
import { diffImages, diffTrees } from '../snapshot/diff.ts';
import { readManifest } from '../snapshot/graph.ts';
import type { RoleAnswer, SideChanges } from '../replication/dr-peer.ts';
import type { Engine } from '../site/engine.ts';
import { type Peer } from '../site/peers.ts';
import type { Site } from '../site/site.ts';
import { hasMirror, listMirrors } from '../catalog/mirrors.ts';
import { findPeer, findPeerById, getPeer } from '../catalog/peers.ts';
import { clearSplitBrain, listSplitBrains } from '../catalog/split-brains.ts';
import { getSecondary } from '../catalog/secondaries.ts';
import { findSnapshot, latestSnapshot, lineage } from '../catalog/snapshots.ts';
import { findVolume, getVolume } from '../catalog/volumes.ts';

export interface Divergence {
  base: string;
  /** both sides hold the primary role and both changed since the base */
  splitBrain: boolean;
  here: SideChanges;
  peer: SideChanges | null;
  /** why the peer's side is unknown (unreachable, refused) */
  peerError?: string;
}

export function changed(s: SideChanges): boolean {
  return s.added + s.modified + s.removed > 0;
}

/** This site's changes to `volume` since `base`. */
export function changesSinceBase(site: Site, volume: string, base: string): SideChanges {
  const vol = findVolume(site.catalog, volume);
  const newest = vol ? latestSnapshot(site.catalog, volume) : undefined;
  const out: SideChanges = { site: site.name, volume, role: vol?.role ?? 'none', newest: newest ? { id: newest.id, name: newest.name, time: newest.time } : null, base, hasBase: false, added: 0, modified: 0, removed: 0, bytesAdded: 0, bytesChanged: 0, bytesRemoved: 0 };
  const baseRow = findSnapshot(site.catalog, volume, base);
  if (!baseRow || !newest) return out;
  out.hasBase = true;
  if (newest.id === base) return out;
  const a = readManifest(site.store, baseRow.manifest as ObjectId);
  const b = readManifest(site.store, newest.manifest as ObjectId);
  for (const mb of b.members) {
    const ma = a.members.find((x) => x.name === mb.name);
    if (ma?.root === mb.root) continue;
    if (mb.kind === 'tree') {
      const d = diffTrees(site.store, ma?.root ?? null, mb.root, () => {});
      out.added += d.added;
      out.modified += d.modified;
      out.removed += d.removed;
      out.bytesAdded += d.bytesAdded;
      out.bytesChanged += d.bytesChanged;
      out.bytesRemoved += d.bytesRemoved;
    } else {
      const d = diffImages(site.store, ma?.root ?? null, mb.root);
      out.modified += 1;
      out.bytesChanged += d.changedBytes;
    }
  }
  return out;
}

/** This site's lineage of `volume` (its latest snapshot, then its parents as far as they are here), newest first. */
function lineageHere(site: Site, volume: string): string[] {
  const head = findVolume(site.catalog, volume) ? latestSnapshot(site.catalog, volume) : undefined;
  return head ? lineage(site.catalog, volume, head.id) : [];
}

/**
 * The base two sides diverged from, by lineage: the newest snapshot of this site's lineage that is
 * in the other side's too (given newest first, as far as the other site holds it). In a lineage
 * tree that is where the two branches part (the snapshot a new primary took over at), whatever
 * either site recorded as its base (a commit whose answer was lost, an apply refused) and whatever
 * their clocks say.
 */
function commonBase(site: Site, volume: string, theirs: string[]): string | undefined {
  const set = new Set(theirs);
  return lineageHere(site, volume).find((id) => set.has(id));
}

/**
 * The DR route `changes`: what this site changed since the base, for a peer the volume is mirrored
 * with. With the asking site's lineage, the base is the newest snapshot both lineages share (and the
 * answer says which); without one (an older ferry), or when they share none here, it is `base`.
 */
export function describeChanges(engine: Engine, peerId: string, volume: string, base: string, theirLineage?: string[]): SideChanges {
  const site = engine.site;
  const peer = findPeerById(site.catalog, peerId);
  const sec = getSecondary(site.catalog, volume);
  const related = (sec && sec.source_site === peerId) || (peer && hasMirror(site.catalog, volume, peer.name));
  if (!related) throw new FerryError('NOT_AUTHORIZED', `volume ${volume} at ${site.name} is not mirrored with the asking site`);
  return changesSinceBase(site, volume, (theirLineage && commonBase(site, volume, theirLineage)) ?? base);
}

async function askPeer(engine: Engine, peer: Peer, volume: string, base: string, lineageIds: string[]): Promise<SideChanges> {
  const client = engine.drPeer(peer, { stallTimeoutMs: 5_000 });
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      client.changes({ volume, base, lineage: lineageIds }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new FerryError('PEER_UNREACHABLE', `${peer.name} did not answer within 5 s`)), 5_000);
      }),
    ]);
  } finally {
    clearTimeout(timer);
    client.close();
  }
}

async function divergence(engine: Engine, peer: Peer | undefined, volume: string, remoteVolume: string, recorded: string): Promise<Divergence> {
  const site = engine.site;
  if (!peer) return { base: recorded, splitBrain: false, here: changesSinceBase(site, volume, recorded), peer: null, peerError: 'the site is not paired' };
  try {
    const there = await askPeer(engine, peer, remoteVolume, recorded, lineageHere(site, volume));
    // The peer chose the base from this site's lineage (an older ferry answers none: the recorded one).
    const base = typeof there.base === 'string' && isSnapshotId(there.base) ? there.base : recorded;
    const here = changesSinceBase(site, volume, base);
    const splitBrain = here.role === 'primary' && there.role === 'primary' && changed(here) && changed(there);
    return { base, splitBrain, here, peer: there };
  } catch (err) {
    return { base: recorded, splitBrain: false, here: changesSinceBase(site, volume, recorded), peer: null, peerError: (err as Error).message };
  }
}

interface ReportVolume {
  name: string;
  role: string;
  mirrors: Array<{ id: string; peer: string; remoteVolume: string; state: string; base: string | null; health: string; healthReasons: string[]; divergence?: Divergence }>;
  secondary?: { state?: string; sourceId?: string; sourceVolume: string; applied: string | null; divergence?: Divergence };
}

/**
 * Add to a status report, for each volume that both sites may hold as primary (a broken-off mirror
 * here, or a secondary relation broken off by this site's failover), what each side changed since
 * the base; say `split-brain` where both hold the primary role and both wrote.
 */
export async function addDivergence(engine: Engine, report: { volumes: ReportVolume[] }): Promise<void> {
  const site = engine.site;
  const work: Array<Promise<void>> = [];
  for (const v of report.volumes) {
    if (v.role !== 'primary') continue;
    for (const m of v.mirrors) {
      if (m.state !== 'broken-off' || !m.base) continue;
      const base = m.base;
      work.push(
        divergence(engine, tryPeer(site, m.peer), v.name, m.remoteVolume, base).then((d) => {
          m.divergence = d;
          if (d.splitBrain) {
            m.state = 'split-brain';
            m.health = 'warn';
            m.healthReasons.push(`split brain: both sites are primary and both wrote after base ${base}`);
          }
        }),
      );
    }
    const s = v.secondary;
    if (s && s.state === 'broken-off' && s.applied && s.sourceId) {
      const base = s.applied;
      work.push(
        divergence(engine, findPeerById(site.catalog, s.sourceId), v.name, s.sourceVolume, base).then((d) => {
          s.divergence = d;
          if (d.splitBrain) s.state = 'split-brain';
        }),
      );
    }
  }
  await Promise.all(work);
}

function tryPeer(site: Site, name: string): Peer | undefined {
  try {
    return getPeer(site.catalog, name);
  } catch {
    return undefined;
  }
}

/**
 * At a primary: the other sites it knows to be primary of `volume` beside itself, but `except`. The
 * site it took the volume over from (its secondary relation broken off by its failover: that site
 * has not failed back here), the split brains recorded here, and its secondaries that took the
 * volume over (a mirror broken off by their failover). A site that takes the volume over from this
 * one, or that this one yields to, is a primary beside each of them too (soak seed 5, step 189: c
 * primary, a took over from c, b then took over from a, and b and c knew nothing of each other).
 */
export function primariesKnownHere(site: Site, volume: string, except: Array<string | undefined>): Array<{ site: string; volume: string }> {
  if (getVolume(site.catalog, volume).role !== 'primary') return [];
  const out: Array<{ site: string; volume: string }> = [];
  const add = (id: string | undefined, remoteVolume: string) => {
    if (id && id !== site.id && !except.includes(id) && !out.some((x) => x.site === id)) out.push({ site: id, volume: remoteVolume });
  };
  const sec = getSecondary(site.catalog, volume);
  if (sec?.state === 'broken-off') add(sec.source_site, sec.source_volume);
  for (const b of listSplitBrains(site.catalog, volume)) add(b.site, b.remoteVolume);
  for (const x of listMirrors(site.catalog, volume)) {
    if (x.state === 'broken-off' && x.lastError?.code === 'FAILED_OVER') add(findPeer(site.catalog, x.peer)?.id, x.remoteVolume);
  }
  return out.slice(0, 64);
}

/**
 * What `peer` answers of `remoteVolume` (dr/role, 5 s): `primary`, `not-primary` (it follows a site
 * now, or holds it standalone), `gone` (no such volume there: removed), `unrelated` (it answers
 * nothing of that volume to this site: a ferry from before dr/role, asked by dr/state, which answers
 * only a site a mirror relates it to), or `unreachable` (down, cut, slow).
 */
export type PeerRole = 'primary' | 'not-primary' | 'gone' | 'unrelated' | 'unreachable';

export async function roleAt(engine: Engine, peer: Peer, remoteVolume: string): Promise<PeerRole> {
  const client = engine.drPeer(peer, { stallTimeoutMs: 5_000 });
  const signal = AbortSignal.timeout(5_000);
  const of = (role: string): PeerRole => (role === 'primary' ? 'primary' : 'not-primary');
  try {
    try {
      return of((await client.role({ volume: remoteVolume }, signal)).role);
    } catch (err) {
      // A ferry from before dr/role answers PROTOCOL ("no DR operation role"): dr/state, as then.
      if (!isFerryError(err, 'PROTOCOL')) throw err;
      return of((await client.state({ volume: remoteVolume, base: null }, signal)).role);
    }
  } catch (err) {
    if (isFerryError(err, 'VOLUME_NOT_FOUND')) return 'gone';
    if (isFerryError(err, 'NOT_AUTHORIZED')) return 'unrelated';
    return 'unreachable';
  } finally {
    client.close();
  }
}

/**
 * This site's answer to roleAt (`dr/role`): the role it holds `volume` in, and the site it follows
 * when an active secondary, to any paired site (a site this volume is not mirrored with included: a
 * sibling secondary that took the volume over asks the other, to learn whether a split brain it
 * recorded is over). Nothing of the volume's snapshots or data.
 */
export function describeRole(engine: Engine, peerId: string, volume: string): RoleAnswer {
  const cat = engine.site.catalog;
  if (!findPeerById(cat, peerId)) throw new FerryError('NOT_AUTHORIZED', 'unpaired site');
  const vol = getVolume(cat, volume);
  const sec = getSecondary(cat, volume);
  return { volume, role: vol.role, follows: vol.role === 'secondary' && sec?.state === 'active' ? sec.source_site : null };
}

/**
 * Before a migrate: each split brain recorded here is asked about (roleAt), and one whose other
 * site answers it has no such volume any more (it gave its copy up as docs/dr.md's way back has it)
 * or follows a site now is resolved, its record dropped with a `split-brain.resolved` event. Such a
 * record is stale: the other site yielded while this one could not hear of it (`mirror remove`
 * could not reach it, or it yielded later), and it refused every migrate until a new mirror to that
 * site applied an update. A site that answers nothing of the volume to this one (no mirror relates
 * them: siblings) or cannot be reached keeps its record. Only the records: the site this one took
 * the volume over from is resolved by its failback. Returns the names of the sites that could not
 * tell.
 */
export async function settleStaleSplitBrains(engine: Engine, volume: string): Promise<string[]> {
  const cat = engine.site.catalog;
  const untold: string[] = [];
  for (const b of listSplitBrains(cat, volume)) {
    const peer = findPeerById(cat, b.site);
    if (!peer) continue; // not paired here: nothing to ask it through; the record stays
    const role = await roleAt(engine, peer, b.remoteVolume);
    if (role === 'gone' || role === 'not-primary') {
      clearSplitBrain(cat, volume, b.site, `${peer.name} answered ${role === 'gone' ? `it holds no volume ${b.remoteVolume} any more` : `it is not primary of ${b.remoteVolume} any more`} (asked before a migrate)`);
    } else if (role !== 'primary') untold.push(peer.name);
  }
  return untold;
}
