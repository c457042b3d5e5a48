// Failback: at the old primary, once the sites can talk again, yield to the
// site that took over and become its secondary, moving only differences.
// Plan, then execute; each step is idempotent so a cut or a crash is
// resumed by running failback again:
//   1. keep this site's writes: a named snapshot `failback-kept-<time>` of
//      the volume as it is (listed, restorable: nothing is lost silently);
//   2. one transaction: the volume becomes the secondary of the new
//      primary, its replica state recorded as that kept snapshot (so the
//      apply starts from it), the old mirror record goes, the base stays held;
//   3. ask the new primary to create the reverse mirror from the common base
//      and update it now (it takes a snapshot, sends what this site lacks:
//      content addressing makes that the difference since the base, and a
//      resumed transfer sends only what did not arrive) and apply it here.
// With no common base the plan says so (needs-full-sync) and only --full
// proceeds: the transfer then sends whatever this site lacks.
import { FerryError, isFerryError } from '../core/errors.ts';
import { checkpoint } from '../core/crash.ts';
import { primariesKnownHere } from './split-brain.ts';
import { finishWorkflow, noteWorkflowError, recordStep, startWorkflow, withWorkflowLock, workflowBusy, type Workflow } from './journal.ts';
import type { ObjectId } from '../core/ids.ts';
import { diffTrees, sameTreeContent } from '../snapshot/diff.ts';
import { readManifest } from '../snapshot/graph.ts';
import type { Engine } from '../site/engine.ts';

/** A DR call waits for a whole resync or switchover on the other side: silence on it is normal for a long time. */
export const DR_CALL_TIMEOUT_MS = 24 * 3600 * 1000;
import type { UpdateResult } from '../replication/driver/types.ts';
import type { DrPeer, RemoteState } from '../replication/dr-peer.ts';
import { createMirror, dropMirror, setMirrorState, type Mirror } from '../site/mirrors.ts';
import { type Peer } from '../site/peers.ts';
import { createSnapshot } from '../site/snapshots.ts';
import { captureTree } from '../snapshot/capture.ts';
import { OverlayStore } from './links.ts';
import { holdReplica } from '../catalog/holds.ts';
import { clearMirrorFailures, getMirror, hasMirror, listMirrors, setMirrorBase, setMirrorError } from '../catalog/mirrors.ts';
import { addSecondary, endSecondary, getSecondary } from '../catalog/secondaries.ts';
import { clearSplitBrain, listSplitBrains, recordSplitBrain } from '../catalog/split-brains.ts';
import { findPeerById, getPeer } from '../catalog/peers.ts';
import { compareSnapshots, findSnapshot, latestSnapshot, listSnapshots, resolveSnapshot, snapshotById } from '../catalog/snapshots.ts';
import { keepStatCacheOf, statCacheFor } from '../catalog/stat-cache.ts';
import { getVolume, setVolumeRole } from '../catalog/volumes.ts';
import { lastWorkflow, runningWorkflow } from '../catalog/workflows.ts';

export interface FailbackPlan {
  volume: string;
  newPrimary: string;
  remoteVolume: string;
  base: string | null;
  commonBase: boolean;
  full: boolean;
  /** snapshots taken here after the base: writes the new primary never saw */
  divergentSnapshots: string[];
  expectedBytes: number | null;
  alreadySecondary: boolean;
  steps: string[];
}

function drClient(engine: Engine, peer: Peer): DrPeer {
  // A resync can run long with no bytes on this request: no stall timeout here.
  return engine.drPeer(peer, { stallTimeoutMs: DR_CALL_TIMEOUT_MS });
}

/**
 * The mirror a failback yields through: the one to `to`, else the one its destination's failover
 * broke off, else the only one. Otherwise which site took the volume over is not in this catalog
 * (several broken off, or none: a notice that never arrived): the destinations of the mirrors (of
 * the broken-off ones, if several) are asked, and the refusal names the failback to each that holds
 * the volume as primary, else to each that could not be asked. A volume with no mirror here has no
 * site a failback could yield to: none is named.
 */
async function failbackMirror(engine: Engine, volume: string, role: string, to?: string): Promise<Mirror> {
  const mirrors = listMirrors(engine.site.catalog, volume);
  const broken = mirrors.filter((x) => x.state === 'broken-off');
  const m = to ? mirrors.find((x) => x.peer === to) : broken.length === 1 ? broken[0] : broken.length === 0 && mirrors.length === 1 ? mirrors[0] : undefined;
  if (m) return m;
  const peers = (ms: Mirror[]) => ms.map((x) => x.peer).join(', ');
  const why = to
    ? `volume ${volume} has no mirror to ${to} here`
    : broken.length > 1
      ? `volume ${volume} has ${broken.length} mirrors broken off by a failover (to ${peers(broken)})`
      : `no mirror of ${volume} here was broken off by a failover that this site was told of`;
  if (mirrors.length === 0) {
    // The site this one took the volume over from is the one that fails back (to this site), there.
    const sec = getSecondary(engine.site.catalog, volume);
    const from = sec?.state === 'broken-off' ? findPeerById(engine.site.catalog, sec.source_site)?.name : undefined;
    const there = from && sec ? `. This site took ${volume} over from ${from}: for ${from} to follow it, the failback runs there: \`ferry failback ${sec.source_volume}\` at ${from}` : '';
    throw new FerryError('MIRROR_STATE', `${why}: a failback makes this site the secondary of the site its mirror went to and that took the volume over, and ${volume} has no mirror here, so there is no such site; ${volume} stays ${role} here${there}`);
  }
  const asked = await Promise.all((broken.length > 1 ? broken : mirrors).map(async (x) => ({ peer: x.peer, ...(await tookOverThere(engine, x)) })));
  const primaries = asked.filter((x) => x.primary).map((x) => x.peer);
  const unreachable = asked.filter((x) => x.unreachable);
  const failback = (p: string) => `\`ferry failback ${volume} --to ${p}\``;
  const said = asked.filter((x) => !x.primary && !x.unreachable).map((x) => `${x.peer} ${x.answer}`);
  const others = said.map((x) => `; ${x}`).join('');
  if (primaries.length === 1) {
    throw new FerryError('MIRROR_STATE', `${why}; of the sites it is mirrored to, ${primaries[0]} holds it as primary: it took it over${others}. Fail back to it with ${failback(primaries[0])}`);
  }
  if (primaries.length > 1) {
    throw new FerryError('MIRROR_STATE', `${why}; ${primaries.join(' and ')} each hold it as primary (a split brain)${others}. Say which this site is to follow: ${primaries.map(failback).join(' or ')}`);
  }
  if (unreachable.length) {
    const u = unreachable.map((x) => `${x.peer} (${x.answer})`).join(', ');
    const answered = said.length ? `; none of the sites it is mirrored to that answered holds it as primary${others}` : '';
    throw new FerryError('MIRROR_STATE', `${why}${answered}; ${u} could not be asked. Once it answers, if it took ${volume} over, ${unreachable.map((x) => failback(x.peer)).join(' or ')}`);
  }
  throw new FerryError('MIRROR_STATE', `${why}; none of the sites it is mirrored to holds it as primary${others}. None took it over, so there is nothing to fail back from and ${volume} stays ${role} here`);
}

/** What the destination of mirror `m` says of the volume, asked by a failback that does not know which site took it over. */
async function tookOverThere(engine: Engine, m: Mirror): Promise<{ primary: boolean; unreachable: boolean; answer: string }> {
  let client: DrPeer | undefined;
  try {
    client = engine.drPeer(getPeer(engine.site.catalog, m.peer), { stallTimeoutMs: 15_000 });
    const remote = await client.state({ volume: m.remoteVolume, base: null });
    const follows = remote.follows ? ` following ${remote.follows === engine.site.id ? 'this site' : (findPeerById(engine.site.catalog, remote.follows)?.name ?? 'another site')}` : '';
    return { primary: remote.role === 'primary', unreachable: false, answer: `holds ${m.remoteVolume} as ${remote.role}${follows}` };
  } catch (err) {
    if (!isFerryError(err)) throw err;
    // One that relates to this site no more (re-pointed to the new primary, say) did not take it over from here.
    if (err.code === 'NOT_AUTHORIZED' || err.code === 'VOLUME_NOT_FOUND') return { primary: false, unreachable: false, answer: `relates to this site no more (${(err as Error).message})` };
    if (err.kind !== 'transient') return { primary: false, unreachable: false, answer: `cannot be asked (${(err as Error).message})` };
    return { primary: false, unreachable: true, answer: (err as Error).message };
  } finally {
    client?.close();
  }
}

export async function planFailback(engine: Engine, volume: string, opts: { full?: boolean; to?: string } = {}): Promise<FailbackPlan> {
  const site = engine.site;
  const vol = getVolume(site.catalog, volume);
  const sec = getSecondary(site.catalog, volume);
  if (vol.role === 'secondary' && sec && sec.state === 'active') {
    // A failback already passed step 2: carry on with step 3.
    const peer = findPeerById(site.catalog, sec.source_site);
    // its pairing removed (`ferry site remove`, to re-pair it): soak seed 8, step 809, a TypeError here
    if (!peer) throw new FerryError('PEER_NOT_FOUND', `${volume} is the secondary here of site ${sec.source_site}, which is not paired with this site (any more): pair it again with \`ferry site add NAME URL --id ${sec.source_site}\` (its name and URL), then rerun`);
    return { volume, newPrimary: peer.name, remoteVolume: sec.source_volume, base: null, commonBase: true, full: opts.full ?? false, divergentSnapshots: [], expectedBytes: null, alreadySecondary: true, steps: [`ask ${peer.name} to resync ${sec.source_volume} here (resuming)`] };
  }
  const m = await failbackMirror(engine, volume, vol.role, opts.to);
  const peer = getPeer(site.catalog, m.peer);
  const client = drClient(engine, peer);
  let remote: RemoteState;
  try {
    remote = await client.state({ volume: m.remoteVolume, base: m.base });
  } finally {
    client.close();
  }
  if (remote.role === 'secondary' && remote.follows === site.id) {
    // It follows this site: nothing to fail back from. The command named is the one that replicates
    // again in one step: an update from a base it still holds, else the full sync (an update would
    // only say to initialize).
    const resync = m.base !== null && m.state !== 'needs-full-sync' && remote.snapshots.includes(m.base)
      ? `\`ferry mirror update ${volume} --to ${peer.name} --wait\``
      : `\`ferry mirror initialize ${volume} --to ${peer.name} --wait\` (a full sync: ${m.base === null ? 'the mirror has no base' : `${peer.name} no longer holds its base`})`;
    const kept = 'writes made there meanwhile are kept in a replica-writes-* snapshot there before anything is overwritten, and need --force';
    if (m.state !== 'broken-off') {
      throw new FerryError('MIRROR_STATE', `${peer.name} holds ${m.remoteVolume} as this site's secondary: it did not take it over, so there is nothing to fail back from and ${volume} stays primary here; replicate to it with ${resync}`);
    }
    // Its catalog has no failover (its home restored from a backup taken before it, say): it follows this site again.
    throw new FerryError('MIRROR_STATE', `${peer.name} holds ${m.remoteVolume} as this site's secondary again: its catalog shows no failover (was its home restored from a backup taken before it?). There is nothing to fail back from and ${volume} stays primary here; resume replication with ${resync} (it rejoins the broken-off mirror; ${kept})`);
  }
  if (remote.role !== 'primary') {
    throw new FerryError('MIRROR_STATE', `${peer.name} holds ${m.remoteVolume} as ${remote.role}${remote.follows ? ` following another site` : ''}, not primary: there is nothing to fail back from (fail over there first)`);
  }
  const commonBase = m.base !== null && remote.snapshots.includes(m.base) && snapshotById(site.catalog, m.base) !== undefined;
  if (!commonBase && !opts.full) {
    // A broken-off mirror stays so: as needs-full-sync it would accept an initialize its destination
    // (primary now) refuses, and status would lose the split brain it shows (split-brain.ts).
    if (m.state !== 'broken-off') setMirrorState(site, m, 'needs-full-sync', 'no common base for failback');
    throw new FerryError('NEEDS_FULL_SYNC', `${volume} here and ${m.remoteVolume} at ${peer.name} share no base snapshot${m.base ? ` (${m.base} is gone from one side)` : ''}: a difference-based failback is impossible; copy what differs in full with \`ferry failback ${volume} --to ${peer.name} --full\` (your writes here are kept in a snapshot first)`);
  }
  // After the base by lineage and origin, not by time: the base may have been taken at another site.
  const baseSnap = m.base ? findSnapshot(site.catalog, volume, m.base) : undefined;
  const divergent = listSnapshots(site.catalog, volume).filter((s) => s.id !== m.base && (!baseSnap || compareSnapshots(site.catalog, s, baseSnap) > 0)).map((s) => s.name ?? s.id);
  return {
    volume,
    newPrimary: peer.name,
    remoteVolume: m.remoteVolume,
    base: m.base,
    commonBase,
    full: opts.full ?? false,
    divergentSnapshots: divergent,
    expectedBytes: remote.changedSinceBase?.bytes ?? null,
    alreadySecondary: false,
    steps: [
      `snapshot ${volume} as failback-kept-<time>: keeps every write made here${m.base ? ` after base ${m.base}` : ''}`,
      `make ${volume} the secondary of ${peer.name}:${m.remoteVolume}`,
      `${peer.name} takes a snapshot and sends ${commonBase ? 'the differences since the base' : 'everything this site lacks (full sync)'}; this site applies it, overwriting its writes (kept above)`,
    ],
  };
}

export interface FailbackResult {
  plan: FailbackPlan;
  kept: string | null;
  keptDiffers: boolean;
  /** paths the kept snapshot's capture skipped or could not read (its writes there are not kept): say so */
  warnings: Array<{ path: string; message: string }>;
  update: UpdateResult;
  /** a rerun found this failback already done: the result is the one recorded then */
  alreadyDone?: boolean;
}

/** Capture warnings of a kept snapshot recorded in the journal and the result, at most. */
const KEPT_WARNINGS = 100;

type MirrorSchedule = { scheduleS: number | null; minDelayS: number; maxDelayS: number; bandwidth: number | null };

/** What the journal keeps of a failback: the plan, the mirror it replaces, and what its steps learned. */
interface FailbackJournal {
  plan: FailbackPlan;
  mirror: string | null;
  schedule: MirrorSchedule | null;
  kept?: string;
  keptName?: string | null;
  keptDiffers?: boolean;
  /** what the capture of the kept snapshot skipped (at most KEPT_WARNINGS of them) */
  keptWarnings?: Array<{ path: string; message: string }>;
  update?: UpdateResult;
  /** undone by `failover --force` while the new primary was lost */
  abandoned?: string;
}

/**
 * `ferry failback`: plan and execute under the volume's workflow lock. A failback the journal shows
 * in progress is carried on from its last completed step (with the plan it started with: base,
 * schedule); one already done is not done twice.
 */
export async function runFailback(engine: Engine, volume: string, opts: { full?: boolean; to?: string; dryRun?: boolean } = {}): Promise<FailbackResult | { plan: FailbackPlan; resuming?: string }> {
  const site = engine.site;
  return withWorkflowLock(site, volume, async () => {
    const wf = runningWorkflow<FailbackJournal>(site.catalog, volume);
    if (wf && wf.kind !== 'failback') throw workflowBusy(wf, 'failback');
    if (wf) {
      if (opts.dryRun) return { plan: wf.plan.plan, resuming: wf.step };
      return executeFailback(engine, wf.plan.plan, {}, wf);
    }
    const plan = await planFailback(engine, volume, opts);
    if (opts.dryRun) return { plan };
    if (plan.alreadySecondary) {
      const last = lastWorkflow<FailbackJournal>(site.catalog, volume, 'failback');
      if (last?.state === 'done' && last.plan.update && last.plan.plan.newPrimary === plan.newPrimary) return { ...resultOf(last.plan), alreadyDone: true };
    }
    return executeFailback(engine, plan);
  });
}

function resultOf(j: FailbackJournal): FailbackResult {
  return { plan: j.plan, kept: j.keptName ?? null, keptDiffers: j.keptDiffers ?? false, warnings: j.keptWarnings ?? [], update: j.update! };
}

/**
 * Execute a failback plan, journaled: each step is recorded as it completes (in the transaction
 * that made its change), and `wf` (from the journal) resumes after its last completed step. Crash
 * points (FERRY_TEST_CRASH_AT, a test hook): failback:after-keep, failback:after-demote,
 * failback:after-resync here, failback:serve-after-reverse at the new primary.
 */
export async function executeFailback(engine: Engine, plan: FailbackPlan, opts: { wait?: boolean } = {}, wf?: Workflow<FailbackJournal>): Promise<FailbackResult> {
  const site = engine.site;
  void opts;
  let journal = wf;
  if (!journal) {
    // The reversed mirror runs on the schedule this one had (read now: step 2 removes the record).
    const m = plan.alreadySecondary ? undefined : getMirror(site.catalog, plan.volume, plan.newPrimary);
    const schedule = m ? { scheduleS: m.scheduleS, minDelayS: m.minDelayS, maxDelayS: m.maxDelayS, bandwidth: m.bandwidth } : null;
    journal = startWorkflow<FailbackJournal>(site, 'failback', plan.volume, { plan, mirror: m?.id ?? null, schedule }, plan.alreadySecondary ? 'demoted' : 'planned');
  }
  try {
    return await continueFailback(engine, journal);
  } catch (err) {
    // Before this site was demoted nothing needs finishing (a kept snapshot stays, listed); after, a rerun resumes.
    if (journal.step === 'planned' || journal.step === 'kept') finishWorkflow(site, journal, 'rolled-back');
    else noteWorkflowError(site, journal, err);
    throw err;
  }
}

async function continueFailback(engine: Engine, wf: Workflow<FailbackJournal>): Promise<FailbackResult> {
  const site = engine.site;
  const plan = wf.plan.plan;
  const peer = getPeer(site.catalog, plan.newPrimary);
  // 1. keep this site's writes
  if (wf.step === 'planned') {
    const name = `failback-kept-${new Date(site.clock.now()).toISOString().replace(/[:.]/g, '-')}`;
    const taken = await createSnapshot(site, plan.volume, { name, pool: engine.pool, keptWrites: true });
    const snap = taken.snapshot;
    // Writes the capture could not read are not kept: the result says so (exit status 8), and so does an event.
    const keptWarnings = taken.warnings.slice(0, KEPT_WARNINGS).map((w) => ({ path: w.path, message: w.message }));
    if (taken.warnings.length) site.event({ kind: 'failback', volume: plan.volume, outcome: 'warning', detail: { kept: snap.id, warnings: taken.warnings.length, warningPaths: keptWarnings.map((w) => w.path) } });
    let keptDiffers = true;
    if (plan.base) {
      const a = readManifest(site.store, resolveSnapshot(site.catalog, plan.volume, plan.base).manifest as ObjectId);
      const b = readManifest(site.store, snap.manifest as ObjectId);
      const y = (i: number) => b.members[i];
      keptDiffers = a.members.some((x, i) => x.root !== y(i)?.root && !(x.kind === 'tree' && y(i)?.kind === 'tree' && sameTreeContent(site.store, x.root, y(i).root)));
    }
    recordStep(site, wf, 'kept', { kept: snap.id, keptName: snap.name, keptDiffers, keptWarnings });
    await checkpoint('failback:after-keep');
  }
  // 2. become the secondary; the replica's state is the kept snapshot (writes made since, if any,
  // are caught by the receiver's writes check before the apply, and kept too)
  if (wf.step === 'kept') {
    const kept = wf.plan.kept!;
    const mirrorId = wf.plan.mirror!;
    site.catalog.tx(() => {
      // The other primaries this site knows of only through relations that end here (the site it took
      // the volume over from, secondaries that took it over from here): recorded as split brains, so
      // that step 3 hands them to the new primary, which is primary beside them once this site yields.
      keepPrimariesBeside(site, plan.volume, peer.id);
      setVolumeRole(site.catalog, plan.volume, 'secondary');
      endSecondary(site.catalog, plan.volume);
      addSecondary(site.catalog, plan.volume, peer.id, plan.remoteVolume, kept);
      if (plan.base) holdReplica(site.catalog, plan.volume, peer.id, plan.base);
      // The kept snapshot is what the replica shows until the resync: held like any applied one (the
      // resync's commit moves the relation's holds to what it applies).
      holdReplica(site.catalog, plan.volume, peer.id, kept);
      const old = listMirrors(site.catalog, plan.volume).find((x) => x.id === mirrorId);
      if (old) dropMirror(site, old, `${plan.volume} fails back: it is the secondary of ${peer.name} now`);
      // The stat cache rows describe the kept snapshot, which is what the replica holds now.
      keepStatCacheOf(site.catalog, plan.volume, kept);
      site.event({ kind: 'failback', volume: plan.volume, outcome: 'info', detail: { transition: 'primary => secondary', newPrimary: peer.name, base: plan.base, kept: wf.plan.keptName, keptDiffers: wf.plan.keptDiffers } });
      recordStep(site, wf, 'demoted');
    });
    await checkpoint('failback:after-demote');
  }
  // 3. the new primary resyncs the differences
  if (wf.step === 'demoted') {
    const client = drClient(engine, peer);
    // The split brains recorded here go to the new primary: this site yields, it stays primary beside them.
    const handed = listSplitBrains(site.catalog, plan.volume).filter((b) => b.site !== peer.id);
    let update: UpdateResult | undefined;
    let refused: FerryError | undefined;
    try {
      update = await client.failback({ volume: plan.remoteVolume, to: plan.volume, base: plan.base, full: plan.full, schedule: wf.plan.schedule, ...(handed.length ? { splitBrains: handed.map((b) => ({ site: b.site, volume: b.remoteVolume })) } : {}) });
    } catch (err) {
      if (!isFerryError(err)) throw err;
      if (err.kind !== 'transient') refused = err;
      else throw new FerryError(err.code, `${(err as Error).message}: ${plan.volume} is the secondary of ${peer.name} now and waits for its resync; rerun \`ferry failback ${plan.volume}\` once ${peer.name} is reachable (the daemon also retries); if ${peer.name} is lost, \`ferry failover ${plan.volume} --force\` here makes this site primary again`, { cause: err, details: err.details });
    } finally {
      client.close();
    }
    if (refused || !update) {
      // A new primary that answers but serves this failback no more (its mirror here removed, say,
      // after it had created it and this site's daemon died before recording the resync): a rerun
      // can never finish it. Say so, and how to abandon it.
      const serves = await newPrimaryServes(engine, plan);
      if ('gone' in serves) throw new FerryError('MIRROR_STATE', notServedMessage(engine, wf, serves.gone), { cause: refused });
      throw refused;
    }
    const done = update;
    site.catalog.tx(() => {
      for (const b of handed) clearSplitBrain(site.catalog, plan.volume, b.site, `handed over to ${peer.name}, the primary this site follows now`);
      site.event({ kind: 'failback', volume: plan.volume, outcome: 'ok', detail: { newPrimary: peer.name, snapshot: done.snapshot, bytes: done.transfer.bytes } });
      recordStep(site, wf, 'resynced', { update: done });
    });
    await checkpoint('failback:after-resync');
  }
  finishWorkflow(site, wf, 'done');
  return resultOf(wf.plan);
}

/**
 * At a primary about to yield to `newPrimary` (a failback's demotion): each other site it knows to
 * be primary beside it only by a relation the demotion ends or makes stale (split-brain.ts
 * primariesKnownHere) is recorded as a split brain here, with an event. In the caller's transaction.
 * Soak seed 5, step 189: a took v1 over from c, b took it over from a; a failing back to b would
 * have left b and c primary, neither knowing of the other.
 */
function keepPrimariesBeside(site: Engine['site'], volume: string, newPrimary: string): void {
  const recorded = new Set(listSplitBrains(site.catalog, volume).map((b) => b.site));
  for (const p of primariesKnownHere(site, volume, [newPrimary])) {
    if (recorded.has(p.site)) continue;
    recordSplitBrain(site.catalog, volume, { site: p.site, remoteVolume: p.volume, oldPrimary: null });
    const name = findPeerById(site.catalog, p.site)?.name ?? p.site;
    site.event({ kind: 'failover.split-brain', volume, outcome: 'info', detail: { sibling: name, siblingVolume: p.volume, message: `${name} is primary of ${volume} too: this site fails back, and hands that to the primary it yields to` } });
  }
}

/**
 * A mirror broken off by its destination's failover, whose destination follows this site again all
 * the same (its home restored from a backup taken before the failover: its catalog has no failover):
 * it answers `dr/state` as this site's active secondary. Then the mirror is in step again (idle from
 * its base, if the destination still holds it) and may update by differences; the destination's
 * writes check keeps what was written into its replica meanwhile. A destination that is primary, or
 * unreachable, leaves the mirror broken off. Returns whether it rejoined.
 */
export async function rejoinBrokenOff(engine: Engine, m: Mirror): Promise<boolean> {
  if (m.state !== 'broken-off') return false;
  const site = engine.site;
  const client = engine.drPeer(getPeer(site.catalog, m.peer), { stallTimeoutMs: 30_000 });
  let remote: RemoteState;
  try {
    remote = await client.state({ volume: m.remoteVolume, base: null });
  } catch {
    return false;
  } finally {
    client.close();
  }
  if (remote.role !== 'secondary' || remote.follows !== site.id) return false;
  const hasBase = m.base !== null && remote.snapshots.includes(m.base);
  site.catalog.tx(() => {
    clearMirrorFailures(site.catalog, m.id);
    setMirrorState(site, m, hasBase ? 'idle' : 'needs-full-sync', `${m.peer} follows this site again: its catalog shows no failover (its home restored from a backup taken before it?)`, { base: m.base });
  });
  return true;
}

/**
 * `ferry failover --force` at a site whose failback stopped after it became the new primary's
 * secondary (step `demoted`) and the new primary cannot be reached (it is lost): the demotion is
 * undone. This site is primary again and its mirror to the new primary is back as it was after that
 * site's failover, broken off from the same base (a failback rerun once it is back starts over from
 * there; should it come back primary and both wrote, both sites show split brain). The kept snapshot
 * stays listed; nothing here is overwritten. So is one that answers but serves the failback no more
 * (newPrimaryServes: it no longer relates to this site, or is not primary): no rerun could finish it.
 * A new primary that still serves it is not given up: rerunning the failback finishes it.
 */
export async function undoDemotedFailback(engine: Engine, wf: Workflow<FailbackJournal>): Promise<string> {
  const site = engine.site;
  const plan = wf.plan.plan;
  const peer = getPeer(site.catalog, plan.newPrimary);
  const serves = await newPrimaryServes(engine, plan);
  if ('serves' in serves) throw new FerryError('MIRROR_STATE', `a failback of ${plan.volume} from ${plan.newPrimary} is waiting for its resync and ${plan.newPrimary} answers: rerun \`ferry failback ${plan.volume}\` to finish it rather than failing over`);
  // Unreachable (lost), or it answers that it serves this failback no more: either way the rerun cannot finish it.
  const why = 'unreachable' in serves ? `${plan.newPrimary} cannot be reached (${serves.unreachable})` : `${plan.newPrimary} no longer serves the failback (${serves.gone})`;
  const s = wf.plan.schedule;
  site.catalog.tx(() => {
    setVolumeRole(site.catalog, plan.volume, 'primary');
    endSecondary(site.catalog, plan.volume);
    const m = listMirrors(site.catalog, plan.volume).find((x) => x.peer === peer.name) ?? createMirror(site, { volume: plan.volume, to: `${peer.name}:${plan.remoteVolume}`, scheduleS: s?.scheduleS ?? null, minDelayS: s?.minDelayS ?? 0, maxDelayS: s?.maxDelayS ?? 3600, bandwidth: s?.bandwidth ?? null, peerSnapshots: false });
    if (plan.base && snapshotById(site.catalog, plan.base)) setMirrorBase(site.catalog, m.id, plan.base);
    setMirrorError(site.catalog, m.id, { code: 'FAILED_OVER', message: `${peer.name} took ${plan.remoteVolume} over; the failback from it was interrupted and undone (${why})` });
    setMirrorState(site, m, 'broken-off', `the failback from ${peer.name} was undone: ${why}`);
    site.event({ kind: 'failback', volume: plan.volume, outcome: 'warning', detail: { transition: 'secondary => primary', undone: `failover --force: ${why}`, base: plan.base, kept: wf.plan.keptName } });
    finishWorkflow(site, wf, 'rolled-back', { abandoned: 'failover --force' });
  });
  return `${why}: the failback's demotion is undone; ${plan.volume} is primary here again with its writes (kept also in ${wf.plan.keptName}), its mirror to ${plan.newPrimary} broken off from base ${plan.base} as after ${plan.newPrimary}'s failover; rerun \`ferry failback ${plan.volume}\` once ${plan.newPrimary} is back`;
}

/**
 * Whether the new primary of a failback that this site left at step `demoted` can still serve it:
 * unreachable (a transient failure: perhaps lost), serving (it answers as primary of the volume,
 * related to this site: a broken-off secondary from it, or its reverse mirror here), or gone: it
 * answers that it does not relate to this site (its mirror here removed), or holds the volume in
 * another role (failed over, migrated or made standalone since). Then no rerun can finish it.
 */
async function newPrimaryServes(engine: Engine, plan: FailbackPlan): Promise<{ unreachable: string } | { serves: true } | { gone: string }> {
  const peer = getPeer(engine.site.catalog, plan.newPrimary);
  const client = engine.drPeer(peer, { stallTimeoutMs: 15_000 });
  try {
    const remote = await client.state({ volume: plan.remoteVolume, base: null });
    if (remote.role === 'primary') return { serves: true };
    return { gone: `it holds ${plan.remoteVolume} as ${remote.role}${remote.follows ? (remote.follows === engine.site.id ? ' following this site' : ' following another site') : ''}, not as primary` };
  } catch (err) {
    if (!isFerryError(err)) throw err;
    if (err.kind === 'transient') return { unreachable: (err as Error).message };
    if (err.code === 'NOT_AUTHORIZED' || err.code === 'VOLUME_NOT_FOUND') return { gone: (err as Error).message };
    throw err;
  } finally {
    client.close();
  }
}

/** What a rerun of a failback at step `demoted` says when the new primary serves it no more: the state here, and the way out. */
function notServedMessage(engine: Engine, wf: Workflow<FailbackJournal>, why: string): string {
  const site = engine.site;
  const plan = wf.plan.plan;
  const kept = wf.plan.keptName ?? wf.plan.kept;
  const sec = getSecondary(site.catalog, plan.volume);
  const replica = !sec || sec.applied === null || sec.applied === wf.plan.kept
    ? `nothing here was overwritten: ${plan.volume} still holds this site's own data (kept also in snapshot ${kept})`
    : `${plan.volume} here shows snapshot ${sec.applied} applied from ${plan.newPrimary} after the demotion; this site's writes before it are kept in snapshot ${kept}`;
  return `${plan.newPrimary} no longer serves the failback of ${plan.volume} that this site left at step demoted (${why}), so rerunning it cannot finish it; ${replica}. Abandon it with \`ferry failover ${plan.volume} --force\` here: ${plan.volume} becomes primary here again as it is now, its mirror to ${plan.newPrimary} broken off; then fail back again if ${plan.newPrimary} is primary of it, or remove that mirror`;
}

// ---------------------------------------------------------------- at the new primary

/** What the new primary tells an old primary planning a failback. */
export async function describeForPeer(engine: Engine, peerId: string, volume: string, base: string | null): Promise<RemoteState> {
  const site = engine.site;
  const vol = getVolume(site.catalog, volume);
  const sec = getSecondary(site.catalog, volume);
  const related = (sec && sec.source_site === peerId) || hasMirror(site.catalog, volume, findPeerById(site.catalog, peerId)?.name ?? '');
  if (!related) throw new FerryError('NOT_AUTHORIZED', `volume ${volume} at ${site.name} is not mirrored with the asking site`);
  const snaps = listSnapshots(site.catalog, volume);
  const newest = latestSnapshot(site.catalog, volume);
  let changed: RemoteState['changedSinceBase'] = null;
  if (base && snaps.some((s) => s.id === base)) {
    // The resync sends a snapshot taken when it starts: count the writes made here since the newest
    // snapshot too. The live tree members are captured into a throwaway overlay (nothing is stored;
    // files unchanged since the newest snapshot come from its stat cache, unread).
    const a = readManifest(site.store, resolveSnapshot(site.catalog, volume, base).manifest as ObjectId);
    const overlay = new OverlayStore(site.store);
    let bytes = 0;
    let paths = 0;
    for (const m of vol.members) {
      if (m.kind !== 'tree') continue;
      const cache = statCacheFor(site.catalog, volume, m.name, newest?.id);
      const live = await captureTree(m.path, { store: overlay, pool: engine.pool, cache: { load: cache.load, save: () => {} }, startedAt: site.clock.now() });
      const ma = a.members.find((x) => x.name === m.name);
      const sum = diffTrees(overlay, ma?.root ?? null, live.root, () => {});
      bytes += sum.bytesAdded + sum.bytesChanged;
      paths += sum.added + sum.modified + sum.removed;
    }
    changed = { bytes, paths };
  }
  return {
    volume,
    role: vol.role,
    failedOverFrom: sec && sec.state === 'broken-off' ? sec.source_site : null,
    follows: sec && sec.state === 'active' ? sec.source_site : null,
    snapshots: snaps.map((s) => s.id),
    newest: newest ? { id: newest.id, time: newest.time } : null,
    changedSinceBase: changed,
  };
}

/** The new primary's half of failback: reverse the mirror from the common base and resync now. */
export async function serveFailback(
  engine: Engine,
  peerId: string,
  req: { volume: string; to: string; base: string | null; full: boolean; schedule: { scheduleS: number | null; minDelayS: number; maxDelayS: number; bandwidth: number | null } | null; splitBrains?: Array<{ site: string; volume: string }> },
): Promise<UpdateResult> {
  const site = engine.site;
  const peer = findPeerById(site.catalog, peerId);
  if (!peer) throw new FerryError('NOT_AUTHORIZED', 'unpaired site');
  const vol = getVolume(site.catalog, req.volume);
  const sec = getSecondary(site.catalog, req.volume);
  let m = listMirrors(site.catalog, req.volume).find((x) => x.peer === peer.name);
  if (!m) {
    if (vol.role !== 'primary' || !sec || sec.source_site !== peerId || sec.state !== 'broken-off') {
      throw new FerryError('MIRROR_STATE', `${site.name} did not take ${req.volume} over from ${peer.name}: no failback to serve`);
    }
    const hasBase = req.base !== null && findSnapshot(site.catalog, req.volume, req.base) !== undefined;
    if (!hasBase && !req.full) throw new FerryError('NEEDS_FULL_SYNC', `${site.name} no longer holds base ${req.base}; fail back with --full`);
    const s = req.schedule;
    // One transaction: a crash leaves either no reverse mirror (the rerun creates it) or one with its base.
    site.catalog.tx(() => {
      const created = createMirror(site, { volume: req.volume, to: `${peer.name}:${req.to}`, scheduleS: s?.scheduleS ?? null, minDelayS: s?.minDelayS ?? 0, maxDelayS: s?.maxDelayS ?? 3600, bandwidth: s?.bandwidth ?? null, peerSnapshots: false });
      // The base held for failback becomes the reverse mirror's base (held by it before the relation's hold goes).
      if (hasBase) setMirrorBase(site.catalog, created.id, req.base!, { state: 'idle' });
      endSecondary(site.catalog, req.volume);
      site.event({ kind: 'failback.serve', volume: req.volume, outcome: 'info', detail: { mirror: created.id, base: hasBase ? req.base : null } });
    });
    m = getMirror(site.catalog, req.volume, peer.name);
    await checkpoint('failback:serve-after-reverse');
  } else if (vol.role === 'primary' && sec && sec.source_site === peerId && sec.state === 'broken-off') {
    // A mirror back made by hand before the failback serves as the reverse one; the relation it took
    // over goes all the same, or the old primary would show here as a primary beside this site.
    site.catalog.tx(() => {
      endSecondary(site.catalog, req.volume);
      site.event({ kind: 'failback.serve', volume: req.volume, outcome: 'info', detail: { mirror: m!.id, base: m!.base, existing: true } });
    });
  }
  // The old primary yields to this site beside other primaries it knew of: this site is primary beside them now.
  const handed = (req.splitBrains ?? []).filter((b) => b.site !== site.id && b.site !== peerId);
  if (handed.length) {
    site.catalog.tx(() => {
      for (const b of handed) {
        if (listSplitBrains(site.catalog, req.volume).some((x) => x.site === b.site)) continue;
        // one that follows this site already (an active mirror here to it) is no second primary
        const there = findPeerById(site.catalog, b.site);
        if (there && listMirrors(site.catalog, req.volume).some((x) => x.peer === there.name && x.state !== 'broken-off' && x.base !== null)) continue;
        recordSplitBrain(site.catalog, req.volume, { site: b.site, remoteVolume: b.volume, oldPrimary: null });
        const name = findPeerById(site.catalog, b.site)?.name ?? b.site;
        site.event({ kind: 'failover.split-brain', volume: req.volume, outcome: 'info', detail: { sibling: name, siblingVolume: b.volume, handedBy: peer.name, message: `${name} is primary of ${req.volume} too, as ${peer.name} recorded: it fails back here, so the split brain is this site's now` } });
      }
    });
  }
  return engine.update(req.volume, peer.name, { initialize: m.base === null, force: true });
}
