// Failover: at a secondary, promote the replica to primary. Plan, then
// execute. The order is chosen so that a crash at any step is finished by
// running failover again:
//   1. tell the old primary (if reachable) so it stops updating: idempotent;
//      without --force an unreachable old primary refuses the failover, since
//      a primary that keeps running and writing is a split brain in the making;
//   2. if an apply did not complete (the replica is inconsistent), roll the
//      replica back to the newest complete snapshot (only with --force),
//      keeping what it holds besides that apply's work in a snapshot first;
//   3. one transaction: the volume becomes primary, the secondary relation
//      becomes `broken-off` (the base stays held: failback starts from it);
//   4. the new primary snapshots itself, so failback has a known start.
import { FerryError, isFerryError } from '../core/errors.ts';
import { checkpoint } from '../core/crash.ts';
import type { Engine } from '../site/engine.ts';
import { createSnapshot } from '../site/snapshots.ts';
import { applyInFlight, cancelApply, withReplicaLock } from '../site/receiver.ts';
import { finishWorkflow, noteWorkflowError, recordStep, startWorkflow, withWorkflowLock, workflowBusy, type Workflow } from './journal.ts';
import { failoverOutOfMigrate } from './migrate.ts';
import { undoDemotedFailback, type FailbackPlan } from './failback.ts';
import { holdReplica } from '../catalog/holds.ts';
import { breakOffMirror, listMirrors, type Mirror } from '../catalog/mirrors.ts';
import { findPeer, findPeerById } from '../catalog/peers.ts';
import type { Peer } from '../site/peers.ts';
import { listSplitBrains, recordSplitBrain } from '../catalog/split-brains.ts';
import { primariesKnownHere, roleAt } from './split-brain.ts';
import { askBeside, refuseIfSiblingTookOver } from './beside.ts';
import { breakOffSecondary, getSecondary, pendingFailoverNotices, setFailoverNotice, type SecondaryRow } from '../catalog/secondaries.ts';
import type { FailoverNoticeAnswer } from '../replication/dr-peer.ts';
import { findVolume, getVolume, setVolumeRole } from '../catalog/volumes.ts';
import { lastWorkflow, runningWorkflow } from '../catalog/workflows.ts';

export interface FailoverPlan {
  volume: string;
  /** the old primary (a paired site name, or its id if unpaired) */
  oldPrimary: string;
  sourceVolume: string;
  /** the newest complete snapshot: what the replica shows (or is rolled back to) */
  snapshot: string | null;
  consistent: boolean;
  rollback: boolean;
  alreadyPrimary: boolean;
  force: boolean;
  /** an apply was running when planned: failover waits for it (with --force: cancels it and rolls back) */
  applyInFlight?: boolean;
  steps: string[];
}

/** What became of the apply a replica is left inconsistent by: it failed (and why), or it was cut. */
function unfinishedApply(row: SecondaryRow, volume: string): string {
  const err = row.apply_error ? (JSON.parse(row.apply_error) as { code: string; message: string }) : null;
  if (err) return `the apply of ${row.applying} into the replica of ${volume} failed (${err.code}: ${err.message})`;
  return `the apply of ${row.applying} into the replica of ${volume} was interrupted (the process applying it stopped) and not finished since`;
}

export function planFailover(engine: Engine, volume: string, opts: { force?: boolean } = {}): FailoverPlan {
  const site = engine.site;
  const vol = getVolume(site.catalog, volume);
  const row = getSecondary(site.catalog, volume);
  if (!row) throw new FerryError('MIRROR_STATE', `volume ${volume} is not a secondary here (role ${vol.role}); failover runs at a secondary`);
  const alreadyPrimary = vol.role === 'primary' && row.state === 'broken-off';
  const consistent = row.consistent === 1 && row.applying === null;
  if (!row.applied) throw new FerryError('MIRROR_STATE', `the replica of ${volume} was never completely applied: there is nothing consistent to promote`);
  // An apply running now (not cut) is waited for, or with --force cancelled and rolled back.
  const inFlight = !alreadyPrimary && applyInFlight(site, volume);
  if (!consistent && !opts.force && !inFlight) {
    const source = findPeerById(site.catalog, row.source_site)?.name ?? row.source_site;
    throw new FerryError('MIRROR_STATE', `the replica of ${volume} is inconsistent: ${unfinishedApply(row, volume)}. If ${source} is up, its next \`ferry mirror update\` there finishes the apply (what the replica holds besides it is kept in a snapshot first), and a plain failover works then; to promote it now, run \`ferry failover ${volume} --force\`: it rolls the replica back to ${row.applied} (what the replica holds besides that apply's own work is kept in a snapshot first) and promotes it`);
  }
  const peer = findPeerById(site.catalog, row.source_site);
  const steps = [
    `tell ${peer?.name ?? row.source_site} to stop updating ${row.source_volume}${opts.force ? ' (if reachable)' : ''}`,
    ...(inFlight ? [opts.force ? `cancel the apply in flight and roll the replica back to ${row.applied}` : `wait for the apply in flight to finish`] : consistent ? [] : [`roll the replica back to ${row.applied}`]),
    inFlight && !opts.force
      ? `make ${volume} primary here; keep as base for failback the snapshot the replica then shows (${row.applying ?? 'the one being applied'} once that apply completes; ${row.applied} now)`
      : `make ${volume} primary here; keep base ${row.applied} for failback`,
    `take snapshot failover-<time> of ${volume}`,
  ];
  return { volume, oldPrimary: peer?.name ?? row.source_site, sourceVolume: row.source_volume, snapshot: row.applied, consistent, rollback: !consistent, alreadyPrimary, force: opts.force ?? false, applyInFlight: inFlight, steps };
}

/** A replica rolled back by a forced failover: the snapshot it went back to, and where what it held was kept. */
export interface FailoverRollback {
  to: string;
  /** the replica-writes-* snapshot that keeps what the replica held besides the unfinished apply's work */
  kept?: string;
}

export interface FailoverResult {
  plan: FailoverPlan;
  notified: boolean;
  notifyError?: string;
  snapshot: string;
  /** the base kept for failback (the plan's `snapshot` is what the replica showed when planned) */
  base: string;
  rollback?: FailoverRollback;
  /** no failover was needed after all (a stranded migrate or failback was settled or undone): what happened instead */
  instead?: string;
  /** a rerun found this failover already done: the result is the one recorded then */
  alreadyDone?: boolean;
  /** paths the capture of the failover-* snapshot skipped or could not read */
  warnings?: Array<{ path: string; message: string }>;
  /** another secondary had taken the volume over first (a forced failover): this site is a second primary beside it, recorded as split brain with it */
  splitBrainWith?: string;
  /**
   * every site this failover made this site a primary beside, recorded as split brain with each: the
   * sibling above, and the sites the old primary knew to be primary beside itself (the site it had
   * taken the volume over from, its own split brains)
   */
  splitBrainsWith?: string[];
}

/** What the journal keeps of a failover: the plan, and what its steps learned. */
interface FailoverJournal {
  plan: FailoverPlan;
  notified?: boolean;
  notifyError?: string | null;
  snapshot?: string;
  rollback?: FailoverRollback;
  /** the base kept for failback: what the replica showed when promoted (an apply waited for may have moved it since the plan) */
  base?: string;
  /** what the capture of the failover-* snapshot skipped (at most 100) */
  warnings?: Array<{ path: string; message: string }>;
  /** the old primary's answer: another secondary took the volume over first (its site id and volume) */
  sibling?: SplitBrainSibling | null;
  /** the old primary's answer: the other sites primary beside it (catalog/split-brains.ts records each here) */
  alsoPrimary?: SplitBrainSibling[];
  /** the paired sites that answered, asked after the promotion, that they are primary of what came from the old primary (beside.ts) */
  beside?: SplitBrainSibling[];
}

/**
 * `ferry failover`: plan and execute under the volume's workflow lock. A failover the journal shows
 * in progress (a crash, a cut) is carried on from its last completed step; one already done is
 * not done twice.
 */
export async function runFailover(engine: Engine, volume: string, opts: { force?: boolean; dryRun?: boolean } = {}): Promise<FailoverResult | { plan: FailoverPlan; resuming?: string }> {
  const site = engine.site;
  return withWorkflowLock(site, volume, async () => {
    let wf = runningWorkflow<FailoverJournal>(site.catalog, volume);
    if (wf?.kind === 'migrate') {
      // A migrate stranded after this site demoted itself: settled first, or, its target lost, --force promotes this site (migrate.ts).
      const r = await failoverOutOfMigrate(engine, wf as never, opts);
      if (r) return r;
      wf = runningWorkflow<FailoverJournal>(site.catalog, volume);
    } else if (wf?.kind === 'failback' && wf.step === 'demoted' && !opts.dryRun) {
      // A failback waiting for a new primary that is lost: with --force closed, and this secondary fails over like any other (failback.ts).
      if (!opts.force) throw new FerryError('MIRROR_STATE', `${workflowBusy(wf, 'failover').message}; if the site it fails back from is lost, \`ferry failover ${volume} --force\` makes this site primary again`);
      const instead = await undoDemotedFailback(engine, wf as never);
      const plan = (wf.plan as unknown as { plan: FailbackPlan }).plan;
      return { plan: { volume, oldPrimary: plan.newPrimary, sourceVolume: plan.remoteVolume, snapshot: plan.base, consistent: true, rollback: false, alreadyPrimary: false, force: true, steps: [instead] }, notified: false, snapshot: '', base: plan.base ?? '', instead };
    }
    if (wf && wf.kind !== 'failover') throw workflowBusy(wf, 'failover');
    if (wf) {
      if (opts.dryRun) return { plan: wf.plan.plan, resuming: wf.step };
      if (opts.force && !wf.plan.plan.force) recordStep(site, wf, wf.step, { plan: { ...wf.plan.plan, force: true } });
      return executeFailover(engine, wf.plan.plan, wf);
    }
    const plan = planFailover(engine, volume, opts);
    if (opts.dryRun) return { plan };
    if (plan.alreadyPrimary) {
      const last = lastWorkflow<FailoverJournal>(site.catalog, volume, 'failover');
      // Done before: the recorded result, except that an old primary not told yet is told now.
      if (last?.state === 'done' && last.plan.snapshot) {
        const told = await tellOldPrimary(engine, volume);
        return { ...resultOf(last.plan), ...(told ? { notified: told.notified, notifyError: told.notifyError } : {}), alreadyDone: true };
      }
    }
    return executeFailover(engine, plan);
  });
}

function resultOf(j: FailoverJournal): FailoverResult {
  const beside = [...new Set([...(j.sibling ? [j.sibling.name] : []), ...(j.alsoPrimary ?? []).map((p) => p.name), ...(j.beside ?? []).map((p) => p.name)])];
  return { plan: j.plan, notified: j.notified ?? false, ...(j.notifyError ? { notifyError: j.notifyError } : {}), snapshot: j.snapshot ?? '', base: j.base ?? j.plan.snapshot ?? '', ...(j.rollback ? { rollback: j.rollback } : {}), ...(j.warnings?.length ? { warnings: j.warnings } : {}), ...(j.sibling ? { splitBrainWith: j.sibling.name } : {}), ...(beside.length ? { splitBrainsWith: beside } : {}) };
}

/**
 * Execute a failover plan, journaled: each step is recorded as it completes (in the transaction that
 * made its change), and `wf` (from the journal) resumes after its last completed step. Crash points
 * (FERRY_TEST_CRASH_AT, a test hook): failover:after-notice, failover:after-rollback,
 * failover:after-promote, failover:after-snapshot.
 */
export async function executeFailover(engine: Engine, plan: FailoverPlan, wf?: Workflow<FailoverJournal>): Promise<FailoverResult> {
  const site = engine.site;
  const journal = wf ?? startWorkflow<FailoverJournal>(site, 'failover', plan.volume, { plan });
  try {
    return await continueFailover(engine, journal);
  } catch (err) {
    // Refused before anything changed (the old primary unreachable without --force): nothing to resume.
    if (journal.step === 'planned') finishWorkflow(site, journal, 'rolled-back');
    else noteWorkflowError(site, journal, err);
    throw err;
  }
}

async function continueFailover(engine: Engine, wf: Workflow<FailoverJournal>): Promise<FailoverResult> {
  const site = engine.site;
  const plan = wf.plan.plan;
  const row = () => getSecondary(site.catalog, plan.volume)!;
  // 1. tell the old primary
  if (wf.step === 'planned') {
    // 0. a plain failover asks the other paired sites first whether one took the volume over already (beside.ts)
    if (!plan.force) await refuseIfSiblingTookOver(engine, { volume: plan.volume, from: row().source_site, fromVolume: row().source_volume, oldPrimary: plan.oldPrimary });
    const { notified, notifyError, refused, gone, tookOverBy, alsoPrimary } = await sendNotice(engine, row(), { force: plan.force });
    // The old primary answered and refused: a sibling secondary took the volume over already.
    if (refused) throw refused;
    if (gone && !plan.force) {
      // It answered, not primary of the volume (standalone or removed there, or it follows this site):
      // nothing to stop there, and not "if it is down" (soak seed 8, step 175).
      throw new FerryError('MIRROR_STATE', `the old primary ${plan.oldPrimary} answered that it does not mirror ${plan.sourceVolume} to this site (${gone}): it is not the primary of this replica any more (its mirror here was removed, or the volume is standalone or gone there), so there is nothing there to stop. To promote this replica all the same, run \`ferry failover ${plan.volume} --force\``);
    }
    if (!notified && !plan.force) {
      throw new FerryError('PEER_UNREACHABLE', `cannot tell the old primary ${plan.oldPrimary} (${notifyError}); if it is down, run \`ferry failover ${plan.volume} --force\` (make sure it stays down or stops writing)`);
    }
    const sibling = siblingOf(site, tookOverBy);
    recordStep(site, wf, 'notified', { notified, notifyError: notifyError ?? null, sibling, alsoPrimary: primariesBeside(site, alsoPrimary, [row().source_site, sibling?.site]) });
    await checkpoint('failover:after-notice');
  }
  if (wf.step === 'notified' || wf.step === 'rolled-back') {
    // 2 and 3 under the replica lock: no apply writes into the replica while it is rolled back and
    // promoted. An apply in flight is waited for; with --force it is cancelled (it stops at its next
    // check, leaving the replica marked inconsistent) and rolled back below.
    if (plan.force) cancelApply(site, plan.volume, 'failover --force');
    await withReplicaLock(site, plan.volume, async () => {
      const r = row();
      const vol = getVolume(site.catalog, plan.volume);
      if (vol.role === 'primary' && r.state === 'broken-off') {
        setFailoverNotice(site.catalog, plan.volume, noticeAfterStep1(site, wf.plan), { ifUnset: true });
        recordStep(site, wf, 'promoted', { base: r.applied! });
        return;
      }
      // 2. roll back an unfinished (or cancelled) apply; what the replica holds besides that apply's
      // own work is kept in a replica-writes-* snapshot first (the receiver's rollBack)
      if (r.applying !== null || r.consistent !== 1) {
        if (!plan.force) throw new FerryError('MIRROR_STATE', `${unfinishedApply(r, plan.volume)}; run \`ferry failover ${plan.volume} --force\` to roll it back to ${r.applied} (what the replica holds besides that apply's own work is kept in a snapshot first) and promote it`);
        const back = await engine.receiverFor(r.source_site).rollBack(plan.volume);
        site.catalog.tx(() => {
          site.event({ kind: 'failover.rollback', volume: plan.volume, outcome: 'ok', detail: { to: back.to, kept: back.kept ?? null } });
          recordStep(site, wf, 'rolled-back', { rollback: back });
        });
        await checkpoint('failover:after-rollback');
      }
      // 3. promote; the base (what the replica shows) stays held for failback
      const applied = row().applied!;
      site.catalog.tx(() => {
        setVolumeRole(site.catalog, plan.volume, 'primary');
        breakOffSecondary(site.catalog, plan.volume, noticeAfterStep1(site, wf.plan));
        holdReplica(site.catalog, plan.volume, r.source_site, applied);
        site.event({ kind: 'failover', volume: plan.volume, outcome: 'ok', detail: { transition: 'secondary => primary', oldPrimary: plan.oldPrimary, base: applied, notified: wf.plan.notified ?? false, notifyError: wf.plan.notifyError ?? null } });
        if (wf.plan.sibling) splitBrainFound(site, plan.volume, r.source_site, plan.oldPrimary, wf.plan.sibling);
        for (const p of wf.plan.alsoPrimary ?? []) primaryBesideFound(site, plan.volume, plan.oldPrimary, p);
        recordStep(site, wf, 'promoted', { base: applied });
      });
    });
    await checkpoint('failover:after-promote');
  }
  // 4. the other paired sites: one primary of what came from the old primary is a primary beside
  // this one, though the old primary could not name it (beside.ts)
  if (wf.step === 'promoted') {
    const r = row();
    const { found, unasked } = await askBeside(engine, { volume: plan.volume, from: r.source_site, fromVolume: r.source_volume });
    site.catalog.tx(() => {
      noteBeside(site, plan.volume, plan.oldPrimary, found, unasked);
      recordStep(site, wf, 'asked', { beside: found });
    });
  }
  // 5. a known starting point for failback
  if (wf.step === 'asked') {
    const name = `failover-${new Date(site.clock.now()).toISOString().replace(/[:.]/g, '-')}`;
    const snap = await createSnapshot(site, plan.volume, { name, pool: engine.pool });
    const warnings = snap.warnings.slice(0, 100).map((w) => ({ path: w.path, message: w.message }));
    recordStep(site, wf, 'snapshotted', { snapshot: snap.snapshot.id, warnings });
    await checkpoint('failover:after-snapshot');
  }
  finishWorkflow(site, wf, 'done');
  return resultOf(wf.plan);
}

// ---------------------------------------------------------------- telling the old primary

/**
 * Whether the old primary knows of the failover (secondaries.failover_notice, at the new primary):
 * `pending` until it acknowledged the notice; the daemon keeps sending it, and so does a rerun of
 * `ferry failover`. NULL on a catalog from before this was recorded.
 */
export interface FailoverNotice {
  state: 'pending' | 'told';
  attempts: number;
  lastAttemptAt: number;
  lastError?: string;
  toldAt?: number;
  /** the old primary answered it holds no such mirror (nothing to stop there) */
  note?: string;
  /**
   * the old primary's answer: another of its secondaries had taken the volume over first (a forced
   * or late failover here). Both are primary: the split brain between them, recorded here beside the
   * relation to the old primary, which stays (status shows both).
   */
  splitBrainWith?: SplitBrainSibling;
  /** the old primary's answer: the other sites primary beside it (the site it took the volume over from, its split brains), recorded here too */
  alsoPrimary?: SplitBrainSibling[];
  /** paired sites not reached when asked whether they are primary beside this site (beside.ts): asked again until they answer */
  besideUnasked?: string[];
}

/** A sibling secondary that took the volume over first: its site id, volume and name here. */
export interface SplitBrainSibling {
  site: string;
  volume: string;
  name: string;
}

function noticeAfterStep1(site: Engine['site'], j: FailoverJournal): FailoverNotice {
  const at = site.clock.now();
  const sibling = { ...(j.sibling ? { splitBrainWith: j.sibling } : {}), ...(j.alsoPrimary?.length ? { alsoPrimary: j.alsoPrimary } : {}) };
  return j.notified ? { state: 'told', attempts: 1, lastAttemptAt: at, toldAt: at, ...sibling } : { state: 'pending', attempts: 1, lastAttemptAt: at, ...(j.notifyError ? { lastError: j.notifyError } : {}), ...sibling };
}

/** The sibling named in the old primary's answer, with the name this site knows it by (its id if not paired). */
function siblingOf(site: Engine['site'], tookOverBy: { site: string; volume: string } | undefined): SplitBrainSibling | null {
  return tookOverBy ? { ...tookOverBy, name: findPeerById(site.catalog, tookOverBy.site)?.name ?? tookOverBy.site } : null;
}

/**
 * The other primaries the old primary's answer named (`alsoPrimary`), with the names this site knows
 * them by: each once, never this site itself nor one of `known` (the old primary, the sibling: recorded otherwise).
 */
function primariesBeside(site: Engine['site'], named: Array<{ site: string; volume: string }> | undefined, known: Array<string | undefined>): SplitBrainSibling[] {
  const out: SplitBrainSibling[] = [];
  for (const p of named ?? []) {
    if (p.site === site.id || known.includes(p.site) || out.some((x) => x.site === p.site)) continue;
    out.push({ ...p, name: findPeerById(site.catalog, p.site)?.name ?? p.site });
  }
  return out;
}

/**
 * Send the failover notice to the old primary of `row` (at most 15 s of silence); `late`: after the
 * failover itself; `force`: a forced failover's (taken even if a sibling took the volume over).
 * `refused`: the old primary answered that another of its secondaries took the volume over already.
 */
async function sendNotice(engine: Engine, row: SecondaryRow, o: { late?: boolean; force?: boolean } = {}): Promise<{ notified: boolean; notifyError?: string; gone?: string; refused?: FerryError; tookOverBy?: { site: string; volume: string }; alsoPrimary?: Array<{ site: string; volume: string }> }> {
  const late = o.late === true;
  const peer = findPeerById(engine.site.catalog, row.source_site);
  if (!peer) return { notified: false, notifyError: `site ${row.source_site} is not paired` };
  const client = engine.drPeer(peer, { stallTimeoutMs: 15_000 });
  try {
    const a = await client.failoverNotice({ volume: row.source_volume, at: row.volume, ...(late ? { late: true } : {}), ...(o.force ? { force: true } : {}) });
    return { notified: true, ...(a.tookOverBy ? { tookOverBy: a.tookOverBy } : {}), ...(a.alsoPrimary ? { alsoPrimary: a.alsoPrimary } : {}) };
  } catch (err) {
    // It answers that it has no mirror of the volume to this site (any more) and is not its primary:
    // there is nothing there to stop. Told late, nothing to retry; at the failover, a plain one stops
    // (continueFailover says why).
    if (isFerryError(err, 'MIRROR_NOT_FOUND')) return { notified: late, ...(late ? {} : { notifyError: err.message }), gone: err.message };
    if (!late && isFerryError(err, 'MIRROR_STATE')) return { notified: false, notifyError: err.message, refused: err };
    return { notified: false, notifyError: (err as Error).message };
  } finally {
    client.close();
  }
}

/**
 * Tell the old primary of `volume` of the failover if it was not told yet (it was unreachable), and
 * record the outcome. Returns whether it knows now, and why not; undefined when no notice is
 * recorded (no failover here, or one from before notices were recorded).
 */
export async function tellOldPrimary(engine: Engine, volume: string): Promise<{ notified: boolean; notifyError?: string } | undefined> {
  const site = engine.site;
  const row = getSecondary(site.catalog, volume);
  const notice = parseNotice(row);
  if (!row || row.state !== 'broken-off' || !notice) return undefined;
  if (notice.state === 'told') return { notified: true };
  const r = await sendNotice(engine, row, { late: true });
  const at = site.clock.now();
  const learned = notice.splitBrainWith ? null : siblingOf(site, r.tookOverBy);
  const sibling = notice.splitBrainWith ?? learned;
  const learnedAlso = notice.alsoPrimary ? [] : primariesBeside(site, r.alsoPrimary, [row.source_site, sibling?.site]);
  const also = notice.alsoPrimary ?? learnedAlso;
  const known = { ...(sibling ? { splitBrainWith: sibling } : {}), ...(also.length ? { alsoPrimary: also } : {}) };
  const next: FailoverNotice = r.notified
    ? { state: 'told', attempts: notice.attempts + 1, lastAttemptAt: at, toldAt: at, ...(r.gone ? { note: r.gone } : {}), ...known }
    : { state: 'pending', attempts: notice.attempts + 1, lastAttemptAt: at, lastError: r.notifyError, ...known };
  const peerName = findPeerById(site.catalog, row.source_site)?.name ?? row.source_site;
  site.catalog.tx(() => {
    // the paired sites still to ask (beside.ts) are kept: the failover's last step may have set them meanwhile
    const unasked = parseNotice(getSecondary(site.catalog, volume))?.besideUnasked;
    setFailoverNotice(site.catalog, volume, { ...next, ...(unasked?.length ? { besideUnasked: unasked } : {}) });
    if (learned) splitBrainFound(site, volume, row.source_site, peerName, learned);
    for (const p of learnedAlso) primaryBesideFound(site, volume, peerName, p);
    // an event when it is told, or when the reason it is not changes (not one per attempt)
    if (r.notified) site.event({ kind: 'failover.notice', volume, outcome: 'ok', detail: { oldPrimary: peerName, attempts: next.attempts, ...(r.gone ? { note: r.gone } : {}) } });
    else if (r.notifyError !== notice.lastError) site.event({ kind: 'failover.notice', volume, outcome: 'failed', detail: { oldPrimary: peerName, attempts: next.attempts, error: r.notifyError } });
  });
  return r.notified ? { notified: true } : { notified: false, notifyError: r.notifyError };
}

/** The daemon's retry: tell every old primary not told of a failover here yet (Engine.deliverFailoverNotices). */
export async function deliverFailoverNotices(engine: Engine): Promise<void> {
  const site = engine.site;
  if (site.readOnly) return;
  for (const volume of pendingFailoverNotices(site.catalog)) {
    // (no workflow lock: a notice is idempotent, and a long migrate or failback must not hold it up)
    await tellOldPrimary(engine, volume).catch(() => {});
    await askBesideAgain(engine, volume).catch(() => {});
  }
}

/**
 * At the old primary: a secondary took over `volume`; stop updating that mirror (it becomes
 * broken-off). A `late` notice (this site was unreachable at the failover, and may have gone on
 * writing since) also snapshots the volume the first time (`failover-notice-<time>`, after the
 * answer): what its application wrote is kept, and status shows the split brain when both sides
 * wrote (dr/split-brain.ts compares snapshots).
 */
export function acceptFailoverNotice(engine: Engine, peerId: string, volume: string, o: { late?: boolean; force?: boolean; at?: string } = {}): FailoverNoticeAnswer {
  const site = engine.site;
  const peer = findPeerById(site.catalog, peerId)!;
  const mirrors = listMirrors(site.catalog, volume);
  const m = mirrors.find((x) => x.peer === peer.name);
  if (!m) {
    // This site is not the volume's primary any more: it follows another site (it failed back to
    // it, or migrated to it), which dropped this site's mirrors to the other secondaries. That site
    // is the primary the sender would stand beside: a plain failover is refused, saying so; a
    // forced or late one is answered with it, so that the sender records the split brain with it.
    const sec = getSecondary(site.catalog, volume);
    const primary = sec && sec.state === 'active' && sec.source_site !== peerId ? findPeerById(site.catalog, sec.source_site) : undefined;
    if (!primary || !sec) {
      if (findVolume(site.catalog, volume)?.role === 'primary') return acceptLeftBehind(engine, peer, volume, mirrors, o);
      throw new FerryError('MIRROR_NOT_FOUND', `site ${site.name} has no mirror of ${volume} to ${peer.name}`);
    }
    if (!o.late && !o.force) {
      throw new FerryError(
        'MIRROR_STATE',
        `${site.name} is no longer the primary of ${volume}: it follows ${primary.name} (${sec.source_volume} there), which holds ${volume} as primary: ${peer.name} failing over too would make a second primary beside ${primary.name}. ` +
          `Make ${peer.name} follow ${primary.name} instead (at ${primary.name}: \`ferry mirror repoint ${sec.source_volume} --to ${peer.name}\`), or, if ${primary.name} is lost, fail over with --force`,
      );
    }
    return { mirror: '', state: 'none', tookOverBy: { site: primary.id, volume: sec.source_volume } };
  }
  // Another secondary took the volume over already (its failover broke its mirror off): a plain
  // failover there too would make a second primary that knows nothing of the first, a split brain
  // nobody could see. Refused; a forced one (the first is lost), or one told late (done already), is not.
  const first = mirrors.find((x) => x !== m && x.state === 'broken-off' && x.lastError?.code === 'FAILED_OVER');
  if (first && m.state !== 'broken-off' && !o.late && !o.force) throw tookOverFirst(site.name, volume, peer.name, first);
  if (m.state !== 'broken-off') {
    site.catalog.tx(() => {
      breakOffMirror(site.catalog, m.id, { code: 'FAILED_OVER', message: `${peer.name} took over ${volume}: this site is no longer its primary; run \`ferry failback ${volume}\` here to become its secondary (writes made here are kept)` });
      site.event({ kind: 'mirror.state', volume, outcome: 'info', detail: { mirror: m.id, transition: `${m.state} => broken-off`, reason: `${peer.name} failed over` } });
    });
    if (o.late && getVolume(site.catalog, volume).role === 'primary') void keepAtNotice(engine, volume, peer.name);
  }
  // A forced (or late) failover beside the first: the answer names the first, so that the new
  // primary records the split brain with it (two primaries that know of each other).
  const sibling = first ? findPeer(site.catalog, first.peer) : undefined;
  const also = primariesKnownHere(site, volume, [peerId, sibling?.id]);
  return { mirror: m.id, state: 'broken-off', ...(first && sibling ? { tookOverBy: { site: sibling.id, volume: first.remoteVolume } } : {}), ...(also.length ? { alsoPrimary: also } : {}) };
}

/** The refusal of a plain failover notice: `first` (a mirror broken off by its failover) took the volume over from this site already. */
function tookOverFirst(here: string, volume: string, sender: string, first: Mirror): FerryError {
  return new FerryError(
    'MIRROR_STATE',
    `${first.peer} already took ${volume} over from ${here} (failover): ${sender} failing over too would make a second primary that knows nothing of ${first.peer}. ` +
      `Make ${sender} follow ${first.peer} instead (at ${first.peer}: \`ferry mirror repoint ${first.remoteVolume} --to ${sender}\`), or, if ${first.peer} is lost, fail over with --force`,
  );
}

/**
 * At a primary that holds no mirror to the sender any more (removed here: the sender was left
 * following this site as its secondary), the sender's failover: nothing to stop here, but the
 * sender is a primary beside this site from now on, and beside any secondary that took the volume
 * over from here. Soak seed 8, step 150: a removed its mirror of v2 to c, b took v2 over from a,
 * then c (forced); a answered c "no mirror of v2 to c", taken as nothing to tell, and b and c were
 * both primary, neither knowing of the other. Now it is answered like a notice with a mirror:
 * refused when plain and a sibling took over first (the same refusal), else taken: recorded here
 * as a split brain with the sender (there is no mirror to break off that would show it), and
 * answered with the sibling and the other primaries known here, which the sender records.
 */
function acceptLeftBehind(engine: Engine, peer: Peer, volume: string, mirrors: Mirror[], o: { late?: boolean; force?: boolean; at?: string }): FailoverNoticeAnswer {
  const site = engine.site;
  const first = mirrors.find((x) => x.state === 'broken-off' && x.lastError?.code === 'FAILED_OVER');
  if (first && !o.late && !o.force) throw tookOverFirst(site.name, volume, peer.name, first);
  const sibling = first ? findPeer(site.catalog, first.peer) : undefined;
  const also = primariesKnownHere(site, volume, [peer.id, sibling?.id]);
  if (!listSplitBrains(site.catalog, volume).some((b) => b.site === peer.id)) {
    site.catalog.tx(() => {
      recordSplitBrain(site.catalog, volume, { site: peer.id, remoteVolume: o.at ?? volume, oldPrimary: null });
      site.event({ kind: 'failover.split-brain', volume, outcome: 'info', detail: { sibling: peer.name, siblingVolume: o.at ?? volume, message: `${peer.name} took ${volume} over from this site, which mirrors it there no more (the mirror was removed here): both are primary` } });
    });
  }
  return { mirror: '', state: 'none', ...(first && sibling ? { tookOverBy: { site: sibling.id, volume: first.remoteVolume } } : {}), ...(also.length ? { alsoPrimary: also } : {}) };
}

/**
 * At a primary, before `ferry mirror remove` drops a mirror its destination broke off by taking the
 * volume over: that mirror is how this site knows the destination is primary beside it (the answer
 * to the next failover notice names it: primariesKnownHere). Recorded as a split brain instead, with
 * an event, unless the destination answers that it is not that primary any more (its volume
 * removed, or it follows a site: it gave its copy up, as docs/dr.md's way back has it, or failed
 * back and handed what it knew on). Unreachable, it may be: recorded. Without this, removing it and
 * then a sibling's failover left two primaries that knew nothing of each other.
 */
export async function keepTakenOver(engine: Engine, m: Mirror): Promise<void> {
  const site = engine.site;
  if (m.state !== 'broken-off' || m.lastError?.code !== 'FAILED_OVER' || findVolume(site.catalog, m.volume)?.role !== 'primary') return;
  const peer = findPeer(site.catalog, m.peer);
  if (!peer || listSplitBrains(site.catalog, m.volume).some((b) => b.site === peer.id)) return;
  // removed there, or no longer related to this site (it follows another): not the primary beside this one
  const role = await roleAt(engine, peer, m.remoteVolume);
  if (role === 'gone' || role === 'unrelated' || role === 'not-primary') return;
  site.catalog.tx(() => {
    recordSplitBrain(site.catalog, m.volume, { site: peer.id, remoteVolume: m.remoteVolume, oldPrimary: null });
    site.event({ kind: 'failover.split-brain', volume: m.volume, outcome: 'info', detail: { sibling: peer.name, siblingVolume: m.remoteVolume, message: `${peer.name} took ${m.volume} over from this site (the mirror its failover broke off is removed here): both are primary` } });
  });
}

/**
 * The split brain with a sibling that took the volume over first: recorded for the volume (it
 * outlives the relation to the old primary it was learned through: catalog/split-brains.ts; the
 * notice names it too), and an event. In the caller's transaction.
 */
function splitBrainFound(site: Engine['site'], volume: string, oldPrimaryId: string, oldPrimary: string, sibling: SplitBrainSibling): void {
  recordSplitBrain(site.catalog, volume, { site: sibling.site, remoteVolume: sibling.volume, oldPrimary: oldPrimaryId });
  const paired = findPeerById(site.catalog, sibling.site) !== undefined;
  site.event({ kind: 'failover.split-brain', volume, outcome: 'info', detail: { oldPrimary, sibling: sibling.name, siblingVolume: sibling.volume, message: `${sibling.name} took ${volume} over from ${oldPrimary} first: both are primary${paired ? '' : ` (${sibling.name} is not paired here: pair it with \`ferry site add\` to see its side)`}` } });
}

/**
 * Another site primary of the volume beside this one, named by the old primary's answer to the
 * failover notice (the site it had taken the volume over from, or one it knew of as split brain):
 * this failover made this site a primary beside it too. Recorded for the volume, and an event. In
 * the caller's transaction.
 */
function primaryBesideFound(site: Engine['site'], volume: string, oldPrimary: string, other: SplitBrainSibling, how: 'named' | 'asked' = 'named'): void {
  recordSplitBrain(site.catalog, volume, { site: other.site, remoteVolume: other.volume, oldPrimary: null });
  const paired = findPeerById(site.catalog, other.site) !== undefined;
  const why = how === 'named' ? `as ${oldPrimary} knew when this site took the volume over from it` : `of what came from ${oldPrimary}, as it answered when asked after this site took the volume over`;
  site.event({ kind: 'failover.split-brain', volume, outcome: 'info', detail: { oldPrimary, sibling: other.name, siblingVolume: other.volume, message: `${other.name} is primary of ${volume} too, ${why}: this site is a primary beside it${paired ? '' : ` (${other.name} is not paired here: pair it with \`ferry site add\` to see its side)`}` } });
}

function parseNotice(row: SecondaryRow | undefined): FailoverNotice | null {
  return row?.failover_notice ? (JSON.parse(row.failover_notice) as FailoverNotice) : null;
}

/**
 * The paired sites a failover here could not ask whether they are primary beside it (beside.ts),
 * asked again (the daemon's retry, with the notice's); each that answers is off the list, and one
 * that is primary is recorded.
 */
async function askBesideAgain(engine: Engine, volume: string): Promise<void> {
  const site = engine.site;
  const row = getSecondary(site.catalog, volume);
  const notice = parseNotice(row);
  if (!row || row.state !== 'broken-off' || !notice?.besideUnasked?.length || findVolume(site.catalog, volume)?.role !== 'primary') return;
  const { found, unasked } = await askBeside(engine, { volume, from: row.source_site, fromVolume: row.source_volume, only: notice.besideUnasked });
  const oldPrimary = findPeerById(site.catalog, row.source_site)?.name ?? row.source_site;
  site.catalog.tx(() => noteBeside(site, volume, oldPrimary, found, unasked));
}

/**
 * What asking the paired sites found (beside.ts): each primary beside this one not recorded yet is
 * recorded, and the sites still to ask replace the notice's list. In the caller's transaction.
 */
function noteBeside(site: Engine['site'], volume: string, oldPrimary: string, found: SplitBrainSibling[], unasked: string[]): void {
  const known = new Set(listSplitBrains(site.catalog, volume).map((b) => b.site));
  for (const p of found) if (!known.has(p.site)) primaryBesideFound(site, volume, oldPrimary, p, 'asked');
  const notice = parseNotice(getSecondary(site.catalog, volume));
  if (notice) setFailoverNotice(site.catalog, volume, { ...notice, besideUnasked: unasked.length ? unasked : undefined });
}

async function keepAtNotice(engine: Engine, volume: string, newPrimary: string): Promise<void> {
  const site = engine.site;
  const name = `failover-notice-${new Date(site.clock.now()).toISOString().replace(/[:.]/g, '-')}`;
  try {
    const snap = await createSnapshot(site, volume, { name, pool: engine.pool });
    site.event({ kind: 'failover.notice', volume, outcome: 'info', detail: { newPrimary, kept: snap.snapshot.id, name } });
  } catch (err) {
    site.event({ kind: 'failover.notice', volume, outcome: 'failed', detail: { newPrimary, error: (err as Error).message } });
  }
}

export function isFailedOver(err: unknown): boolean {
  return isFerryError(err, 'FAILED_OVER');
}
