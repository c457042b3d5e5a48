// The plan of one mirror update: pure functions of the mirror's state and the
// catalog's rows (they read, never write). Before the peer is contacted:
// whether the mirror may update at all (checkUpdate), and which snapshot it
// sends: one named, one an earlier failed attempt took, or a new capture,
// sending early while it runs when there is no delta base (planTarget). After
// the destination's hello: the steps (planSteps), each a snapshot sent,
// committed and made the base on its own (step.ts): pending peer snapshots
// oldest first, the bases of sibling secondaries, then the target; and what
// the hello says of the base (a newer common one to adopt, or none left).
import { FerryError } from '../../core/errors.ts';
import type { ObjectId } from '../../core/ids.ts';
import type { Catalog } from '../../catalog/catalog.ts';
import { listMirrors, queuedSnapshot, type Mirror } from '../../catalog/mirrors.ts';
import { getPeer } from '../../catalog/peers.ts';
import { pendingPeerSnapshots, type PendingPeer } from '../../catalog/peer-snapshots.ts';
import { compareOnOneClock, compareSnapshots, findSnapshot, isKeptWrites, lineage, newestOf, recordedOrder, resolveSnapshot, snapshotById, type SnapshotRecord } from '../../catalog/snapshots.ts';
import type { Role, Volume } from '../../catalog/volumes.ts';
import { PROTOCOL_VERSION, type HelloRequest, type HelloResponse, type SiblingInfo } from '../types.ts';

/**
 * How many replication snapshots a secondary keeps unless its mirror says otherwise (docs/dr.md,
 * "Several secondaries"): 3 when the volume has other secondaries (candidates for a common base with
 * a sibling that takes over), 1 when it has none (nothing to share a base with).
 */
export const DEFAULT_KEEP_SNAPSHOTS = 3;

export function keepFor(m: Mirror, siblings: number): number {
  return m.keepSnapshots ?? (siblings > 0 ? DEFAULT_KEEP_SNAPSHOTS : 1);
}

/** How many warnings the capture of a snapshot reported (recorded with it). */
export function captureWarnings(s: { stats: Record<string, unknown> } | undefined): number {
  const n = s?.stats.warnings;
  return typeof n === 'number' && Number.isInteger(n) && n > 0 ? n : 0;
}

/** Whether mirror `m` may start an update (or its initialize) now; throws MIRROR_STATE saying what to do when not. */
export function checkUpdate(m: Mirror, o: { initialize?: boolean; force?: boolean; scheduled?: boolean }, now: number, role: Role): void {
  const volume = m.volume;
  // First, for both: with or without a base, neither an update nor an initialize of a broken-off
  // mirror runs (its destination refuses them), so neither may advise the other.
  if (m.state === 'broken-off') throw new FerryError('MIRROR_STATE', brokenOffAdvice(m));
  if (o.initialize) {
    if (m.state !== 'uninitialized' && m.state !== 'needs-full-sync' && !(m.state === 'disconnected' && !m.base) && m.state !== 'baselining') {
      throw new FerryError('MIRROR_STATE', `mirror ${m.id} is already initialized (${m.state}); update it with \`ferry mirror update ${volume} --to ${m.peer}\``);
    }
  } else {
    if (m.state === 'uninitialized' || (!m.base && m.state !== 'needs-full-sync')) throw new FerryError('MIRROR_STATE', `mirror ${m.id} has no baseline yet; run \`ferry mirror initialize ${volume} --to ${m.peer}\``);
    if (m.state === 'needs-full-sync') throw new FerryError('MIRROR_STATE', `mirror ${m.id} has no common base with ${m.peer} any more; run \`ferry mirror initialize ${volume} --to ${m.peer}\` for a full sync`);
    if (m.paused && !o.force) throw new FerryError('MIRROR_STATE', `mirror ${m.id} is paused: update it once with --force, or resume it with \`ferry mirror resume ${volume} --to ${m.peer}\` (then updates run again, on its schedule or asked)`);
    if (!o.force && !o.scheduled && m.lastSuccessAt !== null && now - m.lastSuccessAt < m.minDelayS * 1000) {
      throw new FerryError('MIRROR_STATE', `mirror ${m.id} was updated ${Math.round((now - m.lastSuccessAt) / 1000)} s ago, within its min delay of ${m.minDelayS} s; wait or use --force`);
    }
  }
  if (role === 'secondary') {
    throw new FerryError('MIRROR_STATE', `volume ${volume} is a secondary here (a failback or a migrate is making it one): mirror ${m.id} does not update from it`);
  }
}

/**
 * Why a broken-off mirror does not run, and the decision it leaves: its destination took the volume
 * over (failover), so one of the two sites yields. The command last named (what a hurried operator
 * runs) is the failback, in full when the mirror has no base to resync from; the other way, this
 * site staying primary, needs the destination's copy given up there first.
 */
export function brokenOffAdvice(m: Mirror): string {
  const v = m.volume;
  return (
    `mirror ${m.id} is broken off: ${m.peer} took ${m.remoteVolume} over (failover) and accepts no update or initialize from this site. ` +
    `Decide which site stays primary of ${v}. For this site to stay primary, ${m.peer} gives its copy up (there, after keeping what it needs: \`ferry volume remove ${m.remoteVolume} --force\`, then its files moved away: they stay where they were) and this site mirrors it anew (\`ferry mirror remove ${v} --to ${m.peer}\`, \`ferry mirror create ${v} --to ${m.peer}\`, \`ferry mirror initialize ${v} --to ${m.peer}\`). ` +
    `For this site to follow ${m.peer} (what was written here is kept in a snapshot first), run \`ferry failback ${v} --to ${m.peer}${m.base ? '' : ' --full'}\`${m.base ? '' : ' (in full: the mirror has no base to resync from)'}`
  );
}

/** The snapshot an update sends: one that exists (named, or queued by a failed attempt), or a new capture. */
export type TargetPlan =
  | { kind: 'named'; snapshot: SnapshotRecord }
  | { kind: 'queued'; snapshot: SnapshotRecord }
  /** `early`: no delta base (an initialize), so the chunks the capture stores go while it runs */
  | { kind: 'capture'; early: boolean };

/**
 * The target is chosen (or taken) before the peer is contacted: while the peer is unreachable,
 * scheduled attempts still take snapshots here; they queue, and the next update sends the newest.
 */
export function planTarget(cat: Catalog, m: Mirror, o: { snapshot?: string; scheduled?: boolean; initialize?: boolean; deltas?: boolean }, now: number): TargetPlan {
  if (o.snapshot) {
    const target = resolveSnapshot(cat, m.volume, o.snapshot);
    if (target.origin !== cat.siteId) {
      throw new FerryError('MIRROR_STATE', `snapshot ${target.name ?? target.id} was taken at another site (${target.origin}); a site sends only the snapshots it took: name one taken here, or leave --snapshot out to take a new one`);
    }
    return { kind: 'named', snapshot: target };
  }
  // A new snapshot, unless a scheduled retry finds the one an earlier failed attempt of this mirror
  // took (mirrors.queued) in this schedule period: taken here (a site sends only its own), after the
  // base by lineage and origin (never by comparing two sites' clocks), and young by this site's
  // clock. Retries after failures do not multiply snapshots; a snapshot another mirror of the
  // volume took is not this mirror's (each takes its own: siblings share bases by delivery).
  const baseSnap = m.base ? findSnapshot(cat, m.volume, m.base) : undefined;
  const queuedId = o.scheduled && m.failures > 0 && m.scheduleS ? queuedSnapshot(cat, m.id) : null;
  const queued = queuedId ? findSnapshot(cat, m.volume, queuedId) : undefined;
  if (queued && queued.origin === cat.siteId && queued.id !== m.base && !isKeptWrites(queued) && (!baseSnap || compareSnapshots(cat, queued, baseSnap) > 0) && now - queued.time < m.scheduleS! * 1000) {
    return { kind: 'queued', snapshot: queued };
  }
  // Without a delta base (an initialize, or deltas do not pay on this link: link-fit.ts), the chunks
  // the capture stores go while it runs; with one, changed chunks go as deltas against the base after it.
  return { kind: 'capture', early: Boolean(o.initialize || !m.base || o.deltas === false) };
}

/** A target older than the base by lineage and origin (after a failback or a migrate the base was taken at the other site) is refused. */
export function checkTarget(cat: Catalog, m: Mirror, target: SnapshotRecord): void {
  const baseSnap = m.base ? findSnapshot(cat, m.volume, m.base) : undefined;
  if (baseSnap && compareSnapshots(cat, target, baseSnap) < 0) {
    throw new FerryError('MIRROR_STATE', `snapshot ${target.name ?? target.id} is older than the mirror's base ${m.base}; choose a newer one`);
  }
}

/**
 * The other secondaries of this mirror's volume, told to each destination with every hello: a
 * secondary that later takes over (failover) re-points them to itself (src/dr/repoint.ts). One whose
 * mirror was broken off by its failover stays on the list: it is the site the others may follow.
 */
export function siblingsOf(cat: Catalog, m: Mirror): SiblingInfo[] {
  return listMirrors(cat, m.volume)
    .filter((x) => x.id !== m.id)
    .map((x) => ({ site: getPeer(cat, x.peer).id, volume: x.remoteVolume, scheduleS: x.scheduleS, minDelayS: x.minDelayS, maxDelayS: x.maxDelayS, bandwidth: x.bandwidth, keep: x.keepSnapshots }));
}

/** The hello this mirror says to its destination (asked again for each connection: siblings may change meanwhile). */
export function helloRequest(cat: Catalog, m: Mirror, vol: Volume): HelloRequest {
  const siblings = siblingsOf(cat, m);
  return { protocol: PROTOCOL_VERSION, sourceVolume: m.volume, volume: m.remoteVolume, members: vol.members.map((x) => ({ name: x.name, kind: x.kind })), keep: keepFor(m, siblings.length), siblings, to: m.peer };
}

/** One snapshot sent, committed, and made the base (step.ts). */
export interface Step {
  /**
   * a pending peer snapshot, a sibling secondary's base, a snapshot between the base and a target
   * taken after this site's clock was set back (lineage), or the update's target
   */
  kind: 'peer' | 'sibling' | 'lineage' | 'target';
  snapshot: { id: string; name: string | null; manifest: ObjectId };
  /** the target's common base, when the destination takes deltas: changed chunks may go as deltas against its chunks */
  deltaBase?: ObjectId;
  /**
   * when the snapshot's parent is neither at the destination nor delivered before it (deleted here
   * since it was taken): the newest snapshot of its lineage that is, which the destination's replay
   * check takes it to descend from (replication/receive/commit.ts)
   */
  ancestor?: string;
  /**
   * the newest snapshot this site took before this one (in the order it took them) that the
   * destination holds when it comes, where neither its parent nor `ancestor` is it: the destination's
   * replay check takes this one as newer, whatever the times say (this site's clock may have been set
   * back between, and no lineage it holds joins them)
   */
  after?: string;
}

export interface StepPlan {
  /** a snapshot newer than the base that the destination committed though its answer was lost: the base first becomes it */
  adopt?: SnapshotRecord;
  /** the destination no longer has the base, and nothing newer to adopt: the mirror needs a full sync (nothing is sent) */
  baseLost?: string;
  /** pending peer snapshots the destination already holds: present, nothing to send */
  found: PendingPeer[];
  /**
   * pending peer snapshots another site took (this one took the volume over since) that the
   * destination does not hold: a site sends only what it took, so they are not delivered here
   */
  undeliverable?: PendingPeer[];
  /** in order: peer snapshots oldest first, sibling bases oldest first, the target last */
  steps: Step[];
}

/** The steps of an update of `m` to `target`, given what the destination's hello shows. */
export function planSteps(cat: Catalog, m: Mirror, target: SnapshotRecord, hello: HelloResponse, o: { initialize?: boolean; deltas?: boolean }): StepPlan {
  const remoteIds = new Set(hello.snapshots.map((s) => s.id));
  // The base: the mirror's recorded base if the destination still has it (or a newer common one).
  let base = m.base;
  let adopt: SnapshotRecord | undefined;
  if (!o.initialize && base && !remoteIds.has(base)) {
    adopt = newerCommonBase(cat, m, hello.snapshots);
    if (!adopt) return { baseLost: base, found: [], steps: [] };
    base = adopt.id;
  }
  const steps: Step[] = [];
  const found: PendingPeer[] = [];
  let undeliverable: PendingPeer[] | undefined;
  // Peer snapshots first, oldest first, each committed on its own: they must exist there under the same id and name.
  for (const p of pendingPeerSnapshots(cat, m.id)) {
    // Both taken here: in the order this site took them (its clock may have been set back between;
    // the target then names the peer snapshot as its ancestor, which the receiver's replay check takes).
    if (p.id === target.id || recordedOrder(cat, p.id) > recordedOrder(cat, target.id)) continue;
    // Already there (its commit's answer was lost, or the destination had it before this mirror
    // existed): present. The base does not move back to it: a newer one committed there is adopted.
    if (remoteIds.has(p.id)) found.push(p);
    else if (p.origin !== cat.siteId) (undeliverable ??= []).push(p);
    else steps.push({ kind: 'peer', snapshot: { id: p.id, name: p.name, manifest: p.manifest } });
  }
  // Each peer snapshot delivered becomes the base (and what the replica shows).
  const baseAfterPeers = steps.at(-1)?.snapshot.id ?? base;
  // Siblings' bases next (several secondaries): each secondary also holds the snapshot its siblings
  // hold, so whichever takes over shares a base with the others (docs/dr.md, "Several secondaries").
  for (const b of siblingBasesToDeliver(cat, m, baseAfterPeers, target, hello)) steps.push({ kind: 'sibling', snapshot: { id: b.id, name: b.name, manifest: b.manifest as ObjectId } });
  // A target older by this site's clock than what it delivers before it (the clock was set back
  // since) is refused by the destination as a replay unless it descends from what the replica shows:
  // the snapshots between, which the destination lacks, go first, oldest first, so that each one's
  // parent is what the replica shows when it is committed.
  // A full sync has no base: the newest snapshot of the target's lineage the destination holds
  // stands for it (a failback --full to a site whose clock was set back since).
  const shownBefore = steps.at(-1)?.snapshot.id ?? (o.initialize ? lineage(cat, m.volume, target.id).find((id) => id !== target.id && remoteIds.has(id)) ?? null : base);
  for (const s of lineageToDeliver(cat, m, shownBefore, target, remoteIds)) steps.push({ kind: 'lineage', snapshot: { id: s.id, name: s.name, manifest: s.manifest as ObjectId } });
  // Changed chunks may go as deltas against the common base's (when the destination takes them and
  // they pay on this link: link-fit.ts).
  const deltaBase = hello.delta && o.deltas !== false && !o.initialize && base ? (snapshotById(cat, base)?.manifest as ObjectId | undefined) : undefined;
  steps.push({ kind: 'target', snapshot: { id: target.id, name: target.name, manifest: target.manifest as ObjectId }, ...(deltaBase ? { deltaBase } : {}) });
  nameAncestors(cat, m.volume, steps, remoteIds);
  return { ...(adopt ? { adopt } : {}), found, ...(undeliverable ? { undeliverable } : {}), steps };
}

/**
 * For each step whose parent the destination will not hold when it comes (a snapshot deleted here
 * since: the destination sees lineage only through what it holds), the newest snapshot of its lineage
 * (followed here through the places of deleted snapshots) that it will hold then; and for each of
 * this site's own, the newest of its own that the destination will hold and that it took before.
 */
function nameAncestors(cat: Catalog, volume: string, steps: Step[], remote: ReadonlySet<string>): void {
  const there = new Set(remote);
  // this site's own snapshots the destination holds, by the order this site took them
  const own = new Map<string, number>();
  for (const id of there) {
    const s = findSnapshot(cat, volume, id);
    if (s?.origin === cat.siteId) own.set(id, recordedOrder(cat, id));
  }
  for (const step of steps) {
    const s = findSnapshot(cat, volume, step.snapshot.id);
    const parent = s?.parent ?? null;
    if (parent !== null && !there.has(parent)) {
      const ancestor = lineage(cat, volume, step.snapshot.id).find((id) => id !== step.snapshot.id && there.has(id));
      if (ancestor) step.ancestor = ancestor;
    }
    if (s?.origin === cat.siteId) {
      const seq = recordedOrder(cat, s.id);
      let before: string | undefined;
      for (const [id, q] of own) if (q < seq && (before === undefined || q > own.get(before)!)) before = id;
      if (before !== undefined && before !== parent && before !== step.ancestor) step.after = before;
      own.set(s.id, seq);
    }
    there.add(step.snapshot.id);
  }
}

/**
 * The snapshots between `shown` (what the replica will show before the target) and the target, by
 * the target's lineage, when the destination holds a snapshot this site took that is newer than the
 * target by this site's clock (the clock was set back since it was taken). The destination refuses
 * a snapshot older on one clock than one it received from the same site unless it descends from what
 * its replica shows, and it sees lineage only through the snapshots it holds: delivered first, oldest
 * first, each one's parent is what the replica shows when it comes. None when the target's parent is
 * what the replica shows already, when no such newer snapshot is there, or when the lineage does not
 * reach `shown` here.
 */
function lineageToDeliver(cat: Catalog, m: Mirror, shown: string | null, target: SnapshotRecord, remote: ReadonlySet<string>): SnapshotRecord[] {
  if (!shown || target.parent === shown) return [];
  const newerThere = [...remote].some((id) => {
    const s = findSnapshot(cat, m.volume, id);
    return s !== undefined && s.origin === target.origin && compareOnOneClock(target, s) < 0;
  });
  if (!newerThere) return [];
  const chain = lineage(cat, m.volume, target.id);
  const at = chain.indexOf(shown);
  if (at <= 1) return [];
  return chain
    .slice(1, at)
    .reverse()
    .map((id) => findSnapshot(cat, m.volume, id))
    // only this site's own: a site sends only what it took (the destination refuses the others); the
    // commit names what the destination holds that the next one comes after
    .filter((s): s is SnapshotRecord => s !== undefined && s.origin === cat.siteId && !remote.has(s.id));
}

/**
 * The bases of this mirror's siblings that its destination lacks and that lie between what it shows
 * and the target, oldest first. Delivering them (each committed and applied on its own, like peer
 * snapshots) keeps one snapshot in common between any two secondaries: the one updated later holds
 * the other's base. Objects are sent once (content addressing), so this costs commits and applies,
 * little on the wire.
 */
function siblingBasesToDeliver(cat: Catalog, m: Mirror, base: string | null, target: SnapshotRecord, hello: { snapshots: Array<{ id: string; time: number }>; applied: string | null }): SnapshotRecord[] {
  const remote = new Set(hello.snapshots.map((x) => x.id));
  // The base as it stands once the peer snapshots before it are delivered (they move it, and the
  // replica with it). Both bounds are compared by lineage and origin: the snapshot the destination
  // shows may have been taken at another site (on another clock); one this site does not hold bounds nothing.
  const bounds = [base, hello.applied].map((id) => (id ? findSnapshot(cat, m.volume, id) : undefined)).filter((x): x is SnapshotRecord => x !== undefined);
  const out = new Map<string, SnapshotRecord>();
  for (const x of listMirrors(cat, m.volume)) {
    if (x.id === m.id || !x.base || x.state === 'broken-off' || remote.has(x.base) || out.has(x.base) || x.base === target.id) continue;
    const s = findSnapshot(cat, m.volume, x.base);
    // a base another site took (after a failback or a migrate) is not this site's to send
    if (!s || s.origin !== cat.siteId) continue;
    if (bounds.every((b) => compareSnapshots(cat, s, b) > 0) && compareSnapshots(cat, s, target) < 0) out.set(s.id, s);
  }
  const room = keepFor(m, 1) - 1; // the target takes one of the places the destination keeps
  return room <= 0 ? [] : [...out.values()].sort((a, b) => compareSnapshots(cat, a, b)).slice(-room);
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
function newerCommonBase(cat: Catalog, m: Mirror, remote: Array<{ id: string; time: number }>): SnapshotRecord | undefined {
  const base = m.base ? findSnapshot(cat, m.volume, m.base) : undefined;
  if (!base) return undefined;
  return newestOf(
    cat,
    remote
      .map((r) => findSnapshot(cat, m.volume, r.id))
      .filter((r): r is SnapshotRecord => r !== undefined && r.origin === cat.siteId && r.id !== base.id && compareSnapshots(cat, r, base) > 0),
  );
}
