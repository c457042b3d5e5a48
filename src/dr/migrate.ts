// Migrate: a planned switchover with no data loss (VVR migrate, 3PAR
// reverse). At the primary, to one of its secondaries. Plan, then execute:
//   1. refuse unless every secondary is reachable and current (idle, no
//      error, not paused);
//   2. the volume's pre hook (stop the application);
//   3. a final snapshot, sent to every secondary and applied there: the
//      final state is on every site before any role changes;
//   4. other secondaries are re-pointed to the new primary (they accept
//      updates only from it from now on);
//   5. this site demotes itself: secondary of the new primary, its replica
//      state the final snapshot (there is never a moment with two primaries);
//   6. the new primary accepts: primary, with mirrors back to this site and
//      to the re-pointed secondaries, all from the final snapshot as base;
//      it runs its own post hook (start the application there).
// A failure at any step before 6 completes rolls back: secondaries are
// pointed back, this site is primary again, and its post hook restarts the
// application here. `ferry migrate` at the new primary returns the roles.
// What the other sites do when asked (steps 4 and 6) is migrate-accept.ts's.
import { humanBytes as formatBytes } from '../core/units.ts';
import { changesSinceBase, primariesKnownHere, settleStaleSplitBrains } from './split-brain.ts';
import { FerryError, isFerryError } from '../core/errors.ts';
import { checkpoint } from '../core/crash.ts';
import { amendWorkflow, finishWorkflow, noteWorkflowError, recordStep, startWorkflow, withWorkflowLock, workflowBusy, type Workflow } from './journal.ts';
import type { FailoverPlan, FailoverResult } from './failover.ts';
import type { DrPeer, HookResult, RemoteState } from '../replication/dr-peer.ts';
import type { Engine } from '../site/engine.ts';
import { DR_CALL_TIMEOUT_MS } from './failback.ts';
import { runHook, hookSucceeded, hookError } from '../site/hooks.ts';
import { createMirror, dropMirror, mirrorStatus } from '../site/mirrors.ts';
import { createSnapshot } from '../site/snapshots.ts';
import { holdReplica } from '../catalog/holds.ts';
import { getMirror, listMirrors, setMirrorBase, type Mirror } from '../catalog/mirrors.ts';
import { countDeletionsOwed } from '../catalog/peer-snapshots.ts';
import { addSecondary, breakOffSecondary, endSecondary, getSecondary } from '../catalog/secondaries.ts';
import { snapshotById } from '../catalog/snapshots.ts';
import { findPeer, findPeerById, getPeer } from '../catalog/peers.ts';
import { getVolume, setVolumeRole } from '../catalog/volumes.ts';
import { lastWorkflow, runningWorkflow } from '../catalog/workflows.ts';

export interface MigratePlan {
  volume: string;
  to: string;
  remoteVolume: string;
  others: Array<{ peer: string; remoteVolume: string }>;
  /**
   * Per secondary: its base (kept: every snapshot stays; the bases move to the final snapshot) and
   * what the final update is expected to move at least: the volume's newest snapshot against that
   * base (writes after the newest snapshot come on top, and are known once the final one is taken).
   */
  secondaries: Array<{ peer: string; base: string; newest: string | null; expectedBytes: number; files: number }>;
  steps: string[];
}

/** One DR call to `peerName` (a migrate's calls may be silent for long: no stall timeout to speak of). */
async function call<T>(engine: Engine, peerName: string, fn: (p: DrPeer) => Promise<T>): Promise<T> {
  const c = engine.drPeer(getPeer(engine.site.catalog, peerName), { stallTimeoutMs: DR_CALL_TIMEOUT_MS });
  try {
    return await fn(c);
  } finally {
    c.close();
  }
}

/**
 * What brings secondary `m` up to date, in the order to run it, as its state accepts it: a mirror
 * without a base is initialized; a paused one resumed first (a migrate wants it running, and an
 * update without --force is refused while paused); writes found in its replica (the last update
 * refused with REPLICA_WRITTEN) are overwritten only by a forced update, after they are kept there.
 */
function catchUp(volume: string, m: Mirror): string {
  if (!m.base || m.state === 'needs-full-sync') return `baseline it with \`ferry mirror initialize ${volume} --to ${m.peer} --wait\``;
  const resume = m.paused ? `resume it with \`ferry mirror resume ${volume} --to ${m.peer}\`, then ` : '';
  if (m.lastError?.code === 'REPLICA_WRITTEN') {
    return `${resume}its last update found writes in its replica (kept there in a replica-writes-* snapshot): once they are dealt with, overwrite them with \`ferry mirror update ${volume} --to ${m.peer} --force --wait\``;
  }
  return `${resume}bring it up to date with \`ferry mirror update ${volume} --to ${m.peer} --wait\``;
}

export async function planMigrate(engine: Engine, volume: string, to: string): Promise<MigratePlan> {
  const site = engine.site;
  const vol = getVolume(site.catalog, volume);
  if (vol.role !== 'primary') throw new FerryError('MIRROR_STATE', `volume ${volume} is ${vol.role} here; migrate runs at the primary`);
  const target = getMirror(site.catalog, volume, to);
  // Another primary this site knows of (a split brain recorded here, or the site it took the volume
  // over from, which never failed back) is this site's to resolve: handed to the target by a
  // switchover, nobody would know of the other primary (catalog/split-brains.ts).
  // A recorded one whose other site answers it is not primary any more is stale: it goes first.
  const unasked = await settleStaleSplitBrains(engine, volume);
  const split = primariesKnownHere(site, volume, [findPeer(site.catalog, target.peer)?.id]);
  if (split.length) {
    const names = split.map((b) => findPeerById(site.catalog, b.site)?.name ?? b.site);
    const sec = getSecondary(site.catalog, volume);
    const source = sec?.state === 'broken-off' && split.some((b) => b.site === sec.source_site) ? `; ${findPeerById(site.catalog, sec.source_site)?.name ?? sec.source_site} is the site this one took ${volume} over from, and it has not failed back here (\`ferry failback ${sec.source_volume}\` there ends that)` : '';
    const asked = unasked.length ? `; asked now, ${unasked.join(', ')} could not tell whether ${unasked.length > 1 ? 'they are' : 'it is'} still primary (unreachable, or a ferry from before dr/role, which answers only the sites a mirror relates it to): a record goes at a migrate once its site answers it holds no such volume or is not primary of it` : '';
    throw new FerryError('MIRROR_STATE', `${names.join(', ')} ${split.length > 1 ? 'are' : 'is'} primary of ${volume} too (split brain, known here: \`ferry status\`${source}${asked}): a migrate would hand the role to ${target.peer} with no site knowing of ${names.join(', ')}; end the split brain first (docs/dr.md, "Several secondaries"); to hand the role over all the same, run \`ferry failover ${target.remoteVolume}\` at ${target.peer}, then \`ferry failback ${volume} --to ${target.peer}\` here: a failback hands the record over to the site it yields to`);
  }
  const mirrors = listMirrors(site.catalog, volume);
  for (const m of mirrors) {
    const st = mirrorStatus(site, m);
    if (m.state !== 'idle' || m.paused || m.lastError || !m.base) {
      throw new FerryError('MIRROR_STATE', `secondary ${m.peer} is not current (state ${m.state}${m.paused ? ', paused' : ''}${m.lastError ? `, last error ${m.lastError.code}` : ''}); ${catchUp(volume, m)} first`);
    }
    void st;
    if (countDeletionsOwed(site.catalog, m.id) > 0) {
      throw new FerryError('MIRROR_STATE', `a peer snapshot's deletion is still pending at ${m.peer} (\`ferry snapshot peers ${volume}\`); deliver it first with \`ferry mirror update ${volume} --to ${m.peer} --wait\``);
    }
    // Reachable? A cheap state call proves the link and the pairing.
    await call(engine, m.peer, (p) => p.state({ volume: m.remoteVolume, base: m.base }));
  }
  const others = mirrors.filter((m) => m.id !== target.id).map((m) => ({ peer: m.peer, remoteVolume: m.remoteVolume }));
  const secondaries = mirrors.map((m) => {
    const c = changesSinceBase(site, volume, m.base!);
    return { peer: m.peer, base: m.base!, newest: c.newest?.id ?? null, expectedBytes: c.bytesAdded + c.bytesChanged, files: c.added + c.modified + c.removed };
  });
  return {
    volume,
    to: target.peer,
    remoteVolume: target.remoteVolume,
    others,
    secondaries,
    steps: [
      `run the pre hook of ${volume} here (stop the application)`,
      `take a final snapshot and update ${secondaries.map((x) => `${x.peer} (from base ${x.base}: at least ${formatBytes(x.expectedBytes)} in ${x.files} changed entries, plus writes since the newest snapshot)`).join(', ')} with it; every snapshot is kept, each secondary's replica is overwritten to the final snapshot (writes made in a replica are kept in a replica-writes-* snapshot first)`,
      ...others.map((o) => `re-point ${o.peer} to follow ${target.peer}`),
      `make ${volume} here the secondary of ${target.peer}:${target.remoteVolume}`,
      `make ${target.peer}:${target.remoteVolume} primary, mirroring back here${others.length ? ` and to ${others.map((o) => o.peer).join(', ')}` : ''}; run its post hook (start the application there)`,
    ],
  };
}

export interface MigrateResult {
  plan: MigratePlan;
  final: string;
  hooks: HookResult[];
  remotePost: HookResult | null;
  /** a rerun found this migrate already done: the result is the one recorded then */
  alreadyDone?: boolean;
}

/** What the journal keeps of a migrate: the plan, and what its steps learned. */
interface MigrateJournal {
  plan: MigratePlan;
  final?: string;
  /** the step a rollback started from */
  rollbackFrom?: string;
  /**
   * `failover --force` made this site primary again while the target could not say whether it took
   * over (the migrate closes as rolled back); until the target answers (`unresolved`), the daemon asks
   * it: still this site's secondary, its mirror is restored; primary, both are (split brain).
   */
  forced?: ForcedPromotion;
  /** after a rollback: secondaries that could not be asked back (they follow the target still) */
  notReturned?: Array<{ peer: string; error: string; run: string }>;
  /** peers of the other secondaries re-pointed to the new primary */
  repointed?: string[];
  remotePost?: HookResult | null;
  hooks?: HookResult[];
}

/**
 * `ferry migrate`: plan and execute under the volume's workflow lock. A migrate the journal shows in
 * progress is first settled (resumeMigrate: finished if the new primary accepted, rolled back if
 * not); then, unless that finished this very migrate, a new one runs.
 */
export async function runMigrate(engine: Engine, volume: string, to: string, opts: { dryRun?: boolean } = {}): Promise<MigrateResult | { plan: MigratePlan; resuming?: string }> {
  const site = engine.site;
  return withWorkflowLock(site, volume, async () => {
    const wf = runningWorkflow<MigrateJournal>(site.catalog, volume);
    if (wf && wf.kind !== 'migrate') throw workflowBusy(wf, 'migrate');
    if (wf) {
      if (opts.dryRun) return { plan: wf.plan.plan, resuming: wf.step };
      const settled = await resumeMigrate(engine, wf);
      if (settled === 'done' && wf.plan.plan.to === to) return resultOf(wf.plan);
    }
    const vol = getVolume(site.catalog, volume);
    if (vol.role === 'secondary' && !opts.dryRun) {
      const last = lastWorkflow<MigrateJournal>(site.catalog, volume, 'migrate');
      if (last?.state === 'done' && last.plan.plan.to === to && last.plan.final) return { ...resultOf(last.plan), alreadyDone: true };
    }
    const plan = await planMigrate(engine, volume, to);
    if (opts.dryRun) return { plan };
    return executeMigrate(engine, plan);
  });
}

function resultOf(j: MigrateJournal): MigrateResult {
  return { plan: j.plan, final: j.final ?? '', hooks: j.hooks ?? [], remotePost: j.remotePost ?? null };
}

const env = (site: { name: string }, plan: MigratePlan) => ({ FERRY_SITE: site.name, FERRY_VOLUME: plan.volume, FERRY_REASON: 'migrate', FERRY_MIGRATE_TO: plan.to });

/**
 * Execute a migrate plan, journaled (steps planned, stopped, final, repointed, demoted, accepted).
 * Crash points (FERRY_TEST_CRASH_AT, a test hook): migrate:after-pre-hook, migrate:after-final,
 * migrate:after-repoint, migrate:after-demote, migrate:after-accept here, and
 * migrate:accept-after-promote at the new primary.
 */
export async function executeMigrate(engine: Engine, plan: MigratePlan): Promise<MigrateResult> {
  const site = engine.site;
  const vol = getVolume(site.catalog, plan.volume);
  const hooks: HookResult[] = [];
  const target = getMirror(site.catalog, plan.volume, plan.to);
  const others = listMirrors(site.catalog, plan.volume).filter((m) => m.id !== target.id);
  const wf = startWorkflow<MigrateJournal>(site, 'migrate', plan.volume, { plan, hooks });
  // 2. stop the application
  if (vol.hooks.pre) {
    const r = await runHook('pre', vol.hooks.pre, env(site, plan));
    hooks.push(r);
    if (!hookSucceeded(r)) {
      await rollbackMigrate(engine, wf, hooks);
      throw hookError(r);
    }
  }
  recordStep(site, wf, 'stopped', { hooks });
  await checkpoint('migrate:after-pre-hook');
  const newPrimary = getPeer(site.catalog, target.peer);
  try {
    // 3. the final state on every site
    const snap = await createSnapshot(site, plan.volume, { name: `migrate-${new Date(site.clock.now()).toISOString().replace(/[:.]/g, '-')}`, pool: engine.pool, skipHooks: true });
    const final = snap.snapshot.id;
    for (const m of [target, ...others]) await engine.update(plan.volume, m.peer, { snapshot: final, force: true });
    site.event({ kind: 'migrate', volume: plan.volume, outcome: 'info', detail: { step: 'final snapshot on every site', final } });
    recordStep(site, wf, 'final', { final });
    await checkpoint('migrate:after-final');
    // 4. re-point the other secondaries
    const repointed: string[] = [];
    for (const m of others) {
      await call(engine, m.peer, (p) => p.repoint({ volume: m.remoteVolume, newSource: newPrimary.id, newSourceVolume: target.remoteVolume }));
      repointed.push(m.peer);
      recordStep(site, wf, 'final', { repointed });
    }
    recordStep(site, wf, 'repointed', { repointed });
    await checkpoint('migrate:after-repoint');
    // 5. demote here
    site.catalog.tx(() => {
      setVolumeRole(site.catalog, plan.volume, 'secondary');
      endSecondary(site.catalog, plan.volume);
      addSecondary(site.catalog, plan.volume, newPrimary.id, target.remoteVolume, final);
      holdReplica(site.catalog, plan.volume, newPrimary.id, final);
      site.event({ kind: 'migrate', volume: plan.volume, outcome: 'info', detail: { transition: 'primary => secondary', newPrimary: newPrimary.name } });
      recordStep(site, wf, 'demoted');
    });
    await checkpoint('migrate:after-demote');
  } catch (err) {
    // Before the demotion nothing is lost by going back: this site stays primary.
    if (wf.step !== 'demoted') {
      await rollbackMigrate(engine, wf, hooks, err);
      throw err;
    }
    noteWorkflowError(site, wf, err);
    throw err;
  }
  // 6. the new primary takes over
  try {
    const accepted = await call(engine, target.peer, (p) => p.migrateAccept({
      volume: target.remoteVolume,
      final: wf.plan.final!, // taken at step 3, before this one
      backTo: plan.volume,
      schedule: { scheduleS: target.scheduleS, minDelayS: target.minDelayS, maxDelayS: target.maxDelayS, bandwidth: target.bandwidth },
      others: others.map((m) => ({ id: getPeer(site.catalog, m.peer).id, volume: m.remoteVolume, scheduleS: m.scheduleS, minDelayS: m.minDelayS, maxDelayS: m.maxDelayS, bandwidth: m.bandwidth })),
    }));
    recordStep(site, wf, 'accepted', { remotePost: accepted.post });
    await checkpoint('migrate:after-accept');
  } catch (err) {
    // This site is demoted: whether to finish or to go back depends on the new primary, so ask it.
    // Unreachable, nothing is decided (both sites secondary, no writes anywhere) until a rerun or the
    // daemon's next try finds out.
    const settled = await settleDemoted(engine, wf).catch((e: FerryError) => {
      noteWorkflowError(site, wf, err);
      throw new FerryError(e.code, `migrate of ${plan.volume} to ${plan.to} was interrupted after this site became its secondary (${(err as Error).message}); ${e.message}`, { cause: err });
    });
    if (settled === 'rolled-back') throw err;
    return resultOf(wf.plan);
  }
  finishMigrate(engine, wf);
  return resultOf(wf.plan);
}

/** The new primary took over: the old mirror records here go (the secondary's hold replaced their base holds). */
function finishMigrate(engine: Engine, wf: Workflow<MigrateJournal>): void {
  const site = engine.site;
  const plan = wf.plan.plan;
  site.catalog.tx(() => {
    for (const m of listMirrors(site.catalog, plan.volume)) dropMirror(site, m, `${plan.volume} migrated to ${plan.to}: ${plan.to} runs the mirrors now`);
    site.event({ kind: 'migrate', volume: plan.volume, outcome: 'ok', detail: { to: plan.to, final: wf.plan.final } });
    finishWorkflow(site, wf, 'done');
  });
}

/**
 * Back to the roles the migrate started from: this site primary again (if it was demoted), the
 * re-pointed secondaries asked back (best effort), and the application restarted here (post hook).
 */
async function rollbackMigrate(engine: Engine, wf: Workflow<MigrateJournal>, hooks: HookResult[] = wf.plan.hooks ?? [], cause?: unknown): Promise<void> {
  const site = engine.site;
  const plan = wf.plan.plan;
  if (wf.step !== 'rolling-back') {
    site.catalog.tx(() => {
      if (getVolume(site.catalog, plan.volume).role === 'secondary') {
        setVolumeRole(site.catalog, plan.volume, 'primary');
        endSecondary(site.catalog, plan.volume);
        site.event({ kind: 'migrate', volume: plan.volume, outcome: 'failed', detail: { rollback: 'secondary => primary' } });
      }
      recordStep(site, wf, 'rolling-back', { rollbackFrom: wf.step });
    });
  }
  // From the final snapshot on, other secondaries may have been handed to the target. Every one is
  // asked back, not only those the journal names: a crash between a re-point and its record leaves one
  // unrecorded. One still following here changes nothing.
  const handedOver = !['planned', 'stopped'].includes(wf.plan.rollbackFrom ?? 'final');
  const notReturned = handedOver ? await askSecondariesBack(engine, plan.volume, plan.to) : [];
  const vol = getVolume(site.catalog, plan.volume);
  if (vol.hooks.post) hooks.push(await runHook('post', vol.hooks.post, env(site, plan)));
  site.event({ kind: 'migrate', volume: plan.volume, outcome: 'failed', detail: { error: cause ? (cause as Error).message : 'interrupted', rolledBack: true, ...(notReturned.length ? { notReturned } : {}) } });
  finishWorkflow(site, wf, 'rolled-back', { hooks, notReturned });
}

/**
 * The other secondaries (all but `except`, the migrate's target) follow this site again: each is
 * asked (acceptRepoint). One that cannot be asked now keeps following the new primary it was handed
 * to; returned with what to run (`ferry mirror repoint`, which asks again).
 */
async function askSecondariesBack(engine: Engine, volume: string, except: string): Promise<Array<{ peer: string; error: string; run: string }>> {
  const site = engine.site;
  const out: Array<{ peer: string; error: string; run: string }> = [];
  for (const m of listMirrors(site.catalog, volume).filter((x) => x.peer !== except)) {
    try {
      await call(engine, m.peer, (p) => p.repoint({ volume: m.remoteVolume, newSource: site.id, newSourceVolume: volume }));
    } catch (err) {
      out.push({ peer: m.peer, error: (err as Error).message, run: `ferry mirror repoint ${volume} --to ${m.peer}` });
    }
  }
  return out;
}

/**
 * This site was demoted and the new primary's answer is unknown: ask it. Primary there (it accepted):
 * finish. Still this site's secondary: go back. Unreachable: throws, and the journal stays.
 */
async function settleDemoted(engine: Engine, wf: Workflow<MigrateJournal>): Promise<'done' | 'rolled-back'> {
  const plan = wf.plan.plan;
  let remote: RemoteState;
  try {
    remote = await call(engine, plan.to, (p) => p.state({ volume: plan.remoteVolume, base: null }));
  } catch (err) {
    throw new FerryError(
      isFerryError(err) ? err.code : 'PEER_UNREACHABLE',
      `${plan.to} cannot say whether it took ${plan.remoteVolume} over (${(err as Error).message}): both sites are secondary, nothing is lost. Rerun \`ferry migrate ${plan.volume} --to ${plan.to}\` once ${plan.to} is reachable (the daemon also retries); if ${plan.to} is lost, \`ferry failover ${plan.volume} --force\` here makes this site primary again (should ${plan.to} come back primary, both sites show split brain)`,
      { cause: err },
    );
  }
  if (remote.role === 'primary') {
    finishMigrate(engine, wf);
    return 'done';
  }
  await rollbackMigrate(engine, wf, undefined, new Error(`${plan.to} did not take over`));
  return 'rolled-back';
}

/**
 * Settle a migrate the journal shows in progress (a rerun, or the daemon at start): before this site
 * was demoted, go back (the application restarts here); after, ask the new primary (settleDemoted);
 * once it accepted, finish.
 */
export async function resumeMigrate(engine: Engine, wf: Workflow<MigrateJournal>): Promise<'done' | 'rolled-back'> {
  try {
    switch (wf.step) {
      case 'accepted':
        finishMigrate(engine, wf);
        return 'done';
      case 'demoted':
        return await settleDemoted(engine, wf);
      case 'forced':
        // `failover --force` promoted this site and was interrupted: finish it.
        await completeForcedPromotion(engine, wf);
        return 'rolled-back';
      default:
        await rollbackMigrate(engine, wf);
        return 'rolled-back';
    }
  } catch (err) {
    noteWorkflowError(engine.site, wf, err);
    throw isFerryError(err) ? err : new FerryError('PEER_UNREACHABLE', `migrate of ${wf.volume} to ${wf.plan.plan.to}: ${(err as Error).message}`, { cause: err });
  }
}

// ---------------------------------------------------------------- a lost target

interface ForcedPromotion {
  at: number;
  /** the target's mirror as it was (restored with it if the target turns out not to have taken over) */
  schedule: { scheduleS: number | null; minDelayS: number; maxDelayS: number; bandwidth: number | null; keep: number | null } | null;
  snapshot?: string;
  unresolved: boolean;
  /** once the target answered: it was still this site's secondary (`rejoined`), or primary too (`both-primary`) */
  outcome?: 'rejoined' | 'both-primary' | 'follows-another';
}

export type FailoverOutOfMigrate = FailoverResult & { migrate: { id: string; outcome: 'rolled-back' | 'forced'; notReturned?: Array<{ peer: string; error: string; run: string }> } };

/**
 * `ferry failover` at a site whose migrate stopped after it demoted itself: both sites are secondary
 * and only the target knows whether it took over. Asked first: if it answers, the migrate settles as
 * ever (it took over: undefined is returned and the failover proceeds from it like any failover; it
 * did not: rolled back, this site is primary again). If it cannot answer (it is lost), only with
 * --force: this site is made primary again without its answer (completeForcedPromotion).
 */
export async function failoverOutOfMigrate(engine: Engine, wf: Workflow<MigrateJournal>, opts: { force?: boolean; dryRun?: boolean }): Promise<FailoverOutOfMigrate | { plan: FailoverPlan; resuming?: string } | undefined> {
  const plan = wf.plan.plan;
  if (wf.step !== 'demoted' && wf.step !== 'forced') throw workflowBusy(wf, 'failover');
  const final = wf.plan.final ?? null;
  const foPlan = (steps: string[]): FailoverPlan => ({ volume: plan.volume, oldPrimary: plan.to, sourceVolume: plan.remoteVolume, snapshot: final, consistent: true, rollback: false, alreadyPrimary: false, force: opts.force ?? false, steps });
  const forcedSteps = [
    `ask ${plan.to} whether it took ${plan.remoteVolume} over (the migrate of ${plan.volume} stopped after this site became its secondary); if it answers, settle the migrate`,
    `if it cannot answer (--force): make ${plan.volume} primary here again, its relation to ${plan.to} broken off (base ${final} kept) and no mirror pushing to ${plan.to} until it answers`,
    'ask the other secondaries back, run the post hook here (start the application), take snapshot failover-<time>',
  ];
  if (opts.dryRun) return { plan: foPlan(forcedSteps), resuming: wf.step };
  if (wf.step === 'demoted') {
    let settled: 'done' | 'rolled-back';
    try {
      settled = await settleDemoted(engine, wf);
    } catch (err) {
      noteWorkflowError(engine.site, wf, err);
      if (!opts.force) throw err;
      return completeForcedPromotion(engine, wf);
    }
    if (settled === 'done') return undefined;
    const instead = `${plan.to} answered that it did not take over: the migrate was rolled back, ${plan.volume} is primary here again`;
    return { plan: foPlan([instead]), notified: true, snapshot: '', instead, migrate: { id: wf.id, outcome: 'rolled-back', ...(wf.plan.notReturned?.length ? { notReturned: wf.plan.notReturned } : {}) } };
  }
  return completeForcedPromotion(engine, wf);
}

/**
 * Make this site primary again without the target's answer, journaled: one transaction (step
 * `forced`): primary, the relation to the target kept but broken off (as after any failover: its
 * base stays held, and should the target come back primary both sites show split brain), the mirror
 * to the target removed (its role is unknown: nothing is pushed to it). Then, carried on after a
 * crash: the other secondaries asked back, the post hook here, a failover-<time> snapshot; the
 * migrate closes as rolled back, its target's answer still owed (settleForcedMigrate).
 */
async function completeForcedPromotion(engine: Engine, wf: Workflow<MigrateJournal>): Promise<FailoverOutOfMigrate> {
  const site = engine.site;
  const plan = wf.plan.plan;
  if (wf.step === 'demoted') {
    const target = listMirrors(site.catalog, plan.volume).find((m) => m.peer === plan.to);
    const schedule = target ? { scheduleS: target.scheduleS, minDelayS: target.minDelayS, maxDelayS: target.maxDelayS, bandwidth: target.bandwidth, keep: target.keepSnapshots } : null;
    site.catalog.tx(() => {
      setVolumeRole(site.catalog, plan.volume, 'primary');
      breakOffSecondary(site.catalog, plan.volume);
      if (target) dropMirror(site, target, `${plan.to} may have taken ${plan.remoteVolume} over (its answer to the migrate is unknown): nothing is pushed to it until it answers`);
      site.event({ kind: 'migrate', volume: plan.volume, outcome: 'warning', detail: { transition: 'secondary => primary', forced: 'failover --force', target: plan.to, base: wf.plan.final } });
      recordStep(site, wf, 'forced', { forced: { at: site.clock.now(), schedule, unresolved: true } });
    });
    await checkpoint('migrate:after-force');
  }
  const notReturned = await askSecondariesBack(engine, plan.volume, plan.to);
  const vol = getVolume(site.catalog, plan.volume);
  const hooks = wf.plan.hooks ?? [];
  if (vol.hooks.post) hooks.push(await runHook('post', vol.hooks.post, env(site, plan)));
  const snap = (await createSnapshot(site, plan.volume, { name: `failover-${new Date(site.clock.now()).toISOString().replace(/[:.]/g, '-')}`, pool: engine.pool })).snapshot;
  site.event({ kind: 'migrate', volume: plan.volume, outcome: 'warning', detail: { rolledBack: true, forced: true, snapshot: snap.id, ...(notReturned.length ? { notReturned } : {}) } });
  finishWorkflow(site, wf, 'rolled-back', { hooks, notReturned, forced: { ...wf.plan.forced!, snapshot: snap.id } });
  return {
    plan: { volume: plan.volume, oldPrimary: plan.to, sourceVolume: plan.remoteVolume, snapshot: wf.plan.final ?? null, consistent: true, rollback: false, alreadyPrimary: false, force: true, steps: [] },
    notified: false,
    notifyError: `${plan.to} could not say whether it took over: if it comes back primary, both sites show split brain`,
    snapshot: snap.id,
    base: wf.plan.final ?? '',
    migrate: { id: wf.id, outcome: 'forced', ...(notReturned.length ? { notReturned } : {}) },
  };
}

/**
 * A migrate closed by `failover --force` whose target had not answered: ask it now (the daemon, at
 * start and every 30 s while one is left). Still this site's secondary (it never took over): the
 * broken-off relation goes and its mirror is restored from the final snapshot, so updates resume by
 * differences. Primary: both sites are; split brain shows at both once both wrote, and a failback at
 * the site that should yield ends it. Unreachable: asked again later.
 */
export async function settleForcedMigrate(engine: Engine, wf: Workflow<MigrateJournal>): Promise<void> {
  const site = engine.site;
  const plan = wf.plan.plan;
  const forced = wf.plan.forced!;
  let remote: RemoteState;
  try {
    remote = await call(engine, plan.to, (p) => p.state({ volume: plan.remoteVolume, base: null }));
  } catch (err) {
    if (isFerryError(err) && err.kind === 'transient') return;
    throw err;
  }
  const peer = getPeer(site.catalog, plan.to);
  let outcome: NonNullable<ForcedPromotion['outcome']>;
  if (remote.role === 'primary') {
    outcome = 'both-primary';
    site.event({ kind: 'migrate', volume: plan.volume, outcome: 'warning', detail: { target: plan.to, answer: `${plan.to} took ${plan.remoteVolume} over before it was lost: both sites are primary (\`ferry status\` says split-brain once both wrote); \`ferry failback ${plan.volume}\` at the site that should yield` } });
  } else if (remote.role === 'secondary' && remote.follows === site.id) {
    outcome = 'rejoined';
    const final = wf.plan.final;
    site.catalog.tx(() => {
      const sec = getSecondary(site.catalog, plan.volume);
      if (getVolume(site.catalog, plan.volume).role !== 'primary' || !sec || sec.source_site !== peer.id || sec.state !== 'broken-off') return;
      if (!listMirrors(site.catalog, plan.volume).some((m) => m.peer === peer.name)) {
        const s = forced.schedule;
        const m = createMirror(site, { volume: plan.volume, to: `${peer.name}:${plan.remoteVolume}`, scheduleS: s?.scheduleS ?? null, minDelayS: s?.minDelayS ?? 0, maxDelayS: s?.maxDelayS ?? 3600, bandwidth: s?.bandwidth ?? null, keepSnapshots: s?.keep ?? null, peerSnapshots: false });
        if (final && remote.snapshots.includes(final) && snapshotById(site.catalog, final)) setMirrorBase(site.catalog, m.id, final, { state: 'idle' });
      }
      endSecondary(site.catalog, plan.volume);
      site.event({ kind: 'migrate', volume: plan.volume, outcome: 'ok', detail: { target: plan.to, answer: `${plan.to} never took over: it follows this site again; its mirror is restored from ${final}` } });
    });
  } else {
    outcome = 'follows-another';
    site.event({ kind: 'migrate', volume: plan.volume, outcome: 'warning', detail: { target: plan.to, answer: `${plan.to} holds ${plan.remoteVolume} as ${remote.role}${remote.follows ? ` following ${findPeerById(site.catalog, remote.follows)?.name ?? remote.follows}` : ''}` } });
  }
  amendWorkflow(site, wf, { forced: { ...forced, unresolved: false, outcome } });
}
