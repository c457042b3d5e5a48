// Re-pointing the other secondaries after a failover (VVR takeover, its
// Example 4). Three sites take part:
//   B  the secondary that took over (now primary): asks each sibling to follow it;
//   C  a sibling secondary: checks the request, follows B, answers the common base;
//   S  their old primary: if reachable, must agree (it was told of B's failover, or
//      is no longer primary); an unreachable S cannot object.
// The trust model (docs/dr.md, "Several secondaries"): C follows B only if
//   - B is a paired site (the daemon authenticated it),
//   - C's current primary S itself named B, with every hello, as a secondary of the
//     very volume C mirrors (C's recorded sibling list): no other paired peer can
//     claim C's volume,
//   - S is unreachable, or S agrees (its mirror to B is broken off by B's failover, or
//     S is not primary any more): a live primary that never heard of a failover keeps
//     its secondaries.
// The first update B -> C starts from the common base: the newest snapshot both hold
// (snapshot ids are global ULIDs and tree ids are portable, so the same id is the same
// data on every site). Secondaries keep a few replication snapshots, and each one also
// receives its siblings' bases (src/replication/driver/plan.ts), so one exists in the usual case.
// Without one the mirror shows `needs-full-sync` and only --full copies.
// Each step is idempotent: running the re-point again resumes where it stopped.
import { FerryError, isFerryError } from '../core/errors.ts';
import type { SiblingInfo } from '../replication/types.ts';
import type { Engine } from '../site/engine.ts';
import type { DrPeer, TakeoverAnswer } from '../replication/dr-peer.ts';
import type { UpdateResult } from '../replication/driver/types.ts';
import { createMirror, dropMirror, setMirrorState } from '../site/mirrors.ts';
import { type Peer } from '../site/peers.ts';
import { holdReplica, release, replicaHolder } from '../catalog/holds.ts';
import { listMirrors, setMirrorBase } from '../catalog/mirrors.ts';
import { getSecondary, repointSecondary } from '../catalog/secondaries.ts';
import { findPeerById, getPeer } from '../catalog/peers.ts';
import { listSnapshots, newestOf } from '../catalog/snapshots.ts';
import { getVolume } from '../catalog/volumes.ts';

/** A sibling to re-point: this site's peer (when paired) and its volume name. */
export interface RepointTarget {
  /** the paired site's name here, or null when this site is not paired with it */
  peer: string | null;
  site: string;
  volume: string;
  info: SiblingInfo | null;
}

export interface RepointResult {
  peer: string;
  volume: string;
  outcome: 'repointed' | 'needs-full-sync' | 'failed';
  /** it followed another site and came back (a migrate from here that was rolled back while it could not be asked) */
  returned?: boolean;
  /** the common base the first update started from (null: none) */
  base: string | null;
  /** what the old primary said: it agreed, or could not be reached */
  oldPrimary?: 'agreed' | 'unreachable' | 'already';
  update?: UpdateResult;
  error?: { code: string; message: string };
}

/** Most snapshot ids a re-point request carries (newest first): the common base is among recent ones. */
const MAX_OFFERED = 4096;

function parseSiblings(raw: string | null | undefined): SiblingInfo[] {
  if (!raw) return [];
  try {
    const v = JSON.parse(raw) as SiblingInfo[];
    return Array.isArray(v) ? v : [];
  } catch {
    return [];
  }
}

/**
 * At B, before or after its failover: the other secondaries its old primary named in its last hello.
 * Empty when B never learned any (an older primary, or a primary with one secondary).
 */
export function siblingsToRepoint(engine: Engine, volume: string): RepointTarget[] {
  const site = engine.site;
  const row = getSecondary(site.catalog, volume);
  if (!row) return [];
  return parseSiblings(row.siblings)
    .filter((s) => s.site !== site.id)
    .map((s) => ({ peer: findPeerById(site.catalog, s.site)?.name ?? null, site: s.site, volume: s.volume, info: s }));
}

function client(engine: Engine, peer: Peer, stallTimeoutMs = 60_000): DrPeer {
  return engine.drPeer(peer, { stallTimeoutMs });
}

/** At B: re-point every sibling; one that fails is reported and left for `ferry mirror repoint`. */
export async function repointSiblings(engine: Engine, volume: string, targets: RepointTarget[], opts: { full?: boolean } = {}): Promise<RepointResult[]> {
  const out: RepointResult[] = [];
  for (const t of targets) {
    if (!t.peer) {
      out.push({ peer: t.site, volume: t.volume, outcome: 'failed', base: null, error: { code: 'PEER_NOT_FOUND', message: `site ${t.site} (a secondary of the old primary) is not paired here: pair it with \`ferry site add\`, then run \`ferry mirror repoint ${volume} --to NAME:${t.volume}\`` } });
      continue;
    }
    try {
      out.push(await repointSibling(engine, volume, t.peer, t.volume, { full: opts.full, info: t.info }));
    } catch (err) {
      const e = isFerryError(err) ? err : new FerryError('INTERNAL', String(err), { cause: err });
      engine.site.event({ kind: 'repoint', volume, outcome: 'failed', detail: { peer: t.peer, error: e.toJSON() } });
      out.push({ peer: t.peer, volume: t.volume, outcome: e.code === 'NEEDS_FULL_SYNC' ? 'needs-full-sync' : 'failed', base: null, error: { code: e.code, message: e.message } });
    }
  }
  return out;
}

/**
 * At B (primary of `volume`): make `peerName`'s `remoteVolume` follow this site, and run the first
 * update from the common base. Throws NEEDS_FULL_SYNC when there is none and `full` is not set (the
 * mirror then shows needs-full-sync).
 */
export async function repointSibling(engine: Engine, volume: string, peerName: string, remoteVolume: string, opts: { full?: boolean; info?: SiblingInfo | null } = {}): Promise<RepointResult> {
  const site = engine.site;
  const vol = getVolume(site.catalog, volume);
  if (vol.role !== 'primary') throw new FerryError('MIRROR_STATE', `volume ${volume} is ${vol.role} here: only the site that took it over (failover) re-points the other secondaries`);
  const peer = getPeer(site.catalog, peerName);
  let m = listMirrors(site.catalog, volume).find((x) => x.peer === peer.name);
  let base: string | null = m?.base ?? null;
  let oldPrimary: RepointResult['oldPrimary'] = 'already';
  let returned = false;
  if (!m || (m.state === 'needs-full-sync' && !m.base)) {
    // Ask the sibling to follow this site; it answers the newest snapshot both hold.
    const ours = listSnapshots(site.catalog, volume);
    const offered = ours.slice(-MAX_OFFERED).map((s) => s.id);
    const sec = getSecondary(site.catalog, volume);
    const c = client(engine, peer);
    let answer: TakeoverAnswer;
    try {
      answer = await c.takeover({ volume: remoteVolume, newSourceVolume: volume, snapshots: offered, oldSource: sec?.source_site ?? null, oldSourceVolume: sec?.source_volume ?? null });
    } finally {
      c.close();
    }
    oldPrimary = answer.oldPrimary;
    base = answer.common && ours.some((s) => s.id === answer.common) ? answer.common : null;
    const info = opts.info;
    if (!m) {
      m = createMirror(site, { volume, to: `${peer.name}:${remoteVolume}`, scheduleS: info?.scheduleS ?? null, minDelayS: info?.minDelayS ?? 0, maxDelayS: info?.maxDelayS ?? 3600, bandwidth: info?.bandwidth ?? null, keepSnapshots: info?.keep ?? null, peerSnapshots: false });
    }
    const mirror = m;
    site.catalog.tx(() => {
      if (base) setMirrorBase(site.catalog, mirror.id, base);
      site.event({ kind: 'repoint', volume, outcome: 'info', detail: { mirror: mirror.id, peer: peer.name, base, oldPrimary } });
    });
    m.base = base;
    setMirrorState(site, m, base ? 'idle' : 'needs-full-sync', base ? `${peer.name} follows this site; common base ${base}` : `${peer.name} follows this site but shares no snapshot with it`);
  } else {
    // It may follow another site: a migrate from here handed it over and was rolled back while it could
    // not be asked back. Ask now (it changes nothing when it follows this site already).
    const c = client(engine, peer);
    try {
      const r = await c.repoint({ volume: m.remoteVolume, newSource: site.id, newSourceVolume: volume });
      returned = r.returned === true;
    } finally {
      c.close();
    }
  }
  if (!m.base && !opts.full) {
    throw new FerryError('NEEDS_FULL_SYNC', `${peer.name} now follows this site for ${volume}, but the two share no snapshot: a difference-based sync is impossible; run \`ferry mirror repoint ${volume} --to ${peer.name} --full\` (or \`ferry mirror initialize ${volume} --to ${peer.name}\`) to copy what it lacks`);
  }
  // The first update: incremental from the common base (or, told to, a full sync). Writes made into
  // the sibling's replica are kept there in a snapshot before they are overwritten (--force).
  const update = await engine.update(volume, peer.name, m.base ? { force: true } : { initialize: true });
  site.event({ kind: 'repoint', volume, outcome: 'ok', detail: { peer: peer.name, base: m.base, snapshot: update.snapshot, bytes: update.transfer.bytes } });
  return { peer: peer.name, volume: m.remoteVolume, outcome: 'repointed', base: m.base, oldPrimary, ...(returned ? { returned } : {}), update };
}

// ---------------------------------------------------------------- at the sibling (C)

/** At C: `peerId` (B) says it took over the volume C mirrors; follow it if the checks pass. */
export async function acceptTakeover(
  engine: Engine,
  peerId: string,
  req: { volume: string; newSourceVolume: string; snapshots: string[]; oldSource: string | null; oldSourceVolume: string | null },
): Promise<{ volume: string; common: string | null; applied: string | null; oldPrimary: 'agreed' | 'unreachable' | 'already' }> {
  const site = engine.site;
  const asking = findPeerById(site.catalog, peerId);
  if (!asking) throw new FerryError('NOT_AUTHORIZED', 'unpaired site');
  const vol = getVolume(site.catalog, req.volume);
  const row = getSecondary(site.catalog, req.volume);
  if (!row || vol.role !== 'secondary') throw new FerryError('NOT_AUTHORIZED', `volume ${req.volume} at ${site.name} is ${vol.role}, not a secondary: it follows nobody`);
  const commonBase = (): string | null => {
    const offered = new Set(req.snapshots);
    // The newest by lineage, then by one site's clock, never by two sites' clocks (docs/dr.md, "Snapshot order").
    return newestOf(site.catalog, listSnapshots(site.catalog, req.volume).filter((s) => offered.has(s.id)))?.id ?? null;
  };
  if (row.source_site === peerId && row.source_volume === req.newSourceVolume) {
    return { volume: req.volume, common: commonBase(), applied: row.applied, oldPrimary: 'already' }; // a re-point run again
  }
  if (row.state !== 'active') throw new FerryError('MIRROR_STATE', `volume ${req.volume} at ${site.name} was taken over here (failover): it follows nobody`);
  if (req.oldSource !== null && (req.oldSource !== row.source_site || req.oldSourceVolume !== row.source_volume)) {
    throw new FerryError('NOT_AUTHORIZED', `${asking.name} took over ${req.oldSourceVolume} from site ${req.oldSource}, but ${req.volume} at ${site.name} follows ${findPeerById(site.catalog, row.source_site)?.name ?? row.source_site}:${row.source_volume}`);
  }
  // Only a site our own primary named as a secondary of this volume may take its place.
  const named = parseSiblings(row.siblings).some((s) => s.site === peerId && s.volume === req.newSourceVolume);
  const oldPeer = findPeerById(site.catalog, row.source_site);
  const oldName = oldPeer?.name ?? row.source_site;
  if (!named) {
    throw new FerryError('NOT_AUTHORIZED', `${asking.name} is not a secondary of ${oldName}:${row.source_volume} as far as ${site.name} knows (its primary never named it): ${req.volume} keeps following ${oldName}`);
  }
  // The old primary, if it answers, must agree.
  let oldPrimary: 'agreed' | 'unreachable' = 'unreachable';
  if (oldPeer) {
    const c = client(engine, oldPeer, 15_000);
    try {
      await c.takeoverNotice({ volume: row.source_volume, by: peerId });
      oldPrimary = 'agreed';
    } catch (err) {
      if (!isFerryError(err) || err.kind !== 'transient') {
        throw new FerryError('MIRROR_STATE', `${oldName}, the primary of ${req.volume} here, answers and refuses ${asking.name}'s takeover: ${(err as Error).message}`, { cause: err });
      }
    } finally {
      c.close();
    }
  }
  const common = commonBase();
  site.catalog.tx(() => {
    repointSecondary(site.catalog, req.volume, peerId, req.newSourceVolume);
    // The replica's snapshot and the common base stay held for the new source's first update.
    release(site.catalog, replicaHolder(row.source_site), { volume: req.volume });
    for (const id of new Set([row.applied, common])) {
      if (id) holdReplica(site.catalog, req.volume, peerId, id);
    }
    site.event({ kind: 'secondary.repoint', volume: req.volume, outcome: 'ok', detail: { from: oldName, to: asking.name, reason: `${asking.name} took over (failover)`, oldPrimary, common } });
  });
  return { volume: req.volume, common, applied: row.applied, oldPrimary };
}

// ---------------------------------------------------------------- at the old primary (S)

/**
 * At S: a secondary (`peerId`, C) asks whether `by` (B) took `volume` over. Agree when S's mirror to B
 * was broken off by B's failover, or when S is no longer primary; S's mirror to C then goes (C follows
 * B). Refuse when S is still the primary B replicated from and was never told of a failover.
 */
export async function acceptTakeoverNotice(engine: Engine, peerId: string, req: { volume: string; by: string }): Promise<{ agreed: true; role: string }> {
  const site = engine.site;
  const follower = findPeerById(site.catalog, peerId);
  if (!follower) throw new FerryError('NOT_AUTHORIZED', 'unpaired site');
  const vol = getVolume(site.catalog, req.volume);
  const mirrors = listMirrors(site.catalog, req.volume);
  const toFollower = mirrors.find((x) => x.peer === follower.name);
  if (vol.role === 'primary') {
    if (!toFollower) throw new FerryError('NOT_AUTHORIZED', `${site.name} does not mirror ${req.volume} to ${follower.name}`);
    const by = findPeerById(site.catalog, req.by);
    const toNew = by ? mirrors.find((x) => x.peer === by.name) : undefined;
    if (!toNew || toNew.state !== 'broken-off') {
      throw new FerryError('MIRROR_STATE', `${site.name} is the primary of ${req.volume} and ${by?.name ?? req.by} did not take it over from here (no failover was announced): ${follower.name} stays its secondary`);
    }
  }
  if (toFollower) {
    await engine.stopJob(toFollower.id, `${follower.name} follows another site now`);
    dropMirror(site, toFollower, `${follower.name} follows ${findPeerById(site.catalog, req.by)?.name ?? req.by}, which took ${req.volume} over`);
  }
  return { agreed: true, role: vol.role };
}

/**
 * At S after its failback (S is a secondary now): its mirrors to the other secondaries are stale
 * (they follow, or will be re-pointed to, the new primary). Remove them and release their holds.
 */
export function dropSupersededMirrors(engine: Engine, volume: string): string[] {
  const site = engine.site;
  const vol = getVolume(site.catalog, volume);
  if (vol.role !== 'secondary') return [];
  const sec = getSecondary(site.catalog, volume);
  const newPrimary = sec ? findPeerById(site.catalog, sec.source_site)?.name ?? sec.source_site : 'the new primary';
  const dropped: string[] = [];
  for (const m of listMirrors(site.catalog, volume)) {
    dropMirror(site, m, `${volume} is a secondary of ${newPrimary} now: ${m.peer} is re-pointed there (\`ferry mirror repoint ${volume} --to ${m.peer}\` at ${newPrimary})`);
    dropped.push(m.peer);
  }
  return dropped;
}
