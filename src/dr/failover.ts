// Failover: at a secondary, promote the replica to primary. Plan, then
// execute. The order is chosen so that a crash at any step is finished by
// running failover again:
//   1. tell the old primary (if reachable) so it stops updating: idempotent;
//      without --force an unreachable old primary refuses the failover, since
//      a primary that keeps running and writing is a split brain in the making;
//   2. if an apply was cut (the replica is inconsistent), roll the replica
//      back to the newest complete snapshot (only with --force);
//   3. one transaction: the volume becomes primary, the secondary relation
//      becomes `broken-off` (the base stays held: failback starts from it);
//   4. the new primary snapshots itself, so failback has a known start.
import { FerryError, isFerryError } from '../core/errors.ts';
import { checkpoint } from '../core/crash.ts';
import type { ObjectId } from '../core/ids.ts';
import { applyTree, applyImage } from '../replication/apply.ts';
import { captureTree } from '../snapshot/capture.ts';
import { readManifest } from '../snapshot/graph.ts';
import type { Engine } from '../site/engine.ts';
import { ROUTES } from '../site/http.ts';
import { findPeerById } from '../site/peers.ts';
import { createSnapshot, resolveSnapshot } from '../site/snapshots.ts';
import { getVolume } from '../site/volumes.ts';
import { PeerClient } from '../site/client.ts';
import { applyInFlight, cancelApply, holdName, withReplicaLock } from '../site/receiver.ts';
import { finishWorkflow, lastWorkflow, noteWorkflowError, recordStep, runningWorkflow, startWorkflow, withWorkflowLock, workflowBusy, type Workflow } from './journal.ts';
import { failoverOutOfMigrate } from './migrate.ts';
import { undoDemotedFailback, type FailbackPlan } from './failback.ts';

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

interface SecRow {
  volume: string;
  source_site: string;
  source_volume: string;
  applied: string | null;
  applying: string | null;
  consistent: number;
  state: string;
}

export function planFailover(engine: Engine, volume: string, opts: { force?: boolean } = {}): FailoverPlan {
  const site = engine.site;
  const vol = getVolume(site, volume);
  const row = site.db.get<SecRow>('SELECT * FROM secondaries WHERE volume = ?', volume);
  if (!row) throw new FerryError('MIRROR_STATE', `volume ${volume} is not a secondary here (role ${vol.role}); failover runs at a secondary`);
  const alreadyPrimary = vol.role === 'primary' && row.state === 'broken-off';
  const consistent = row.consistent === 1 && row.applying === null;
  if (!row.applied) throw new FerryError('MIRROR_STATE', `the replica of ${volume} was never completely applied: there is nothing consistent to promote`);
  // An apply running now (not cut) is waited for, or with --force cancelled and rolled back.
  const inFlight = !alreadyPrimary && applyInFlight(site, volume);
  if (!consistent && !opts.force && !inFlight) {
    throw new FerryError('MIRROR_STATE', `the replica of ${volume} is inconsistent (an apply of ${row.applying} was cut); run \`ferry failover ${volume} --force\` to roll it back to ${row.applied} and promote it`);
  }
  const peer = findPeerById(site, row.source_site);
  const steps = [
    `tell ${peer?.name ?? row.source_site} to stop updating ${row.source_volume}${opts.force ? ' (if reachable)' : ''}`,
    ...(inFlight ? [opts.force ? `cancel the apply in flight and roll the replica back to ${row.applied}` : `wait for the apply in flight to finish`] : consistent ? [] : [`roll the replica back to ${row.applied}`]),
    `make ${volume} primary here; keep base ${row.applied} for failback`,
    `take snapshot failover-<time> of ${volume}`,
  ];
  return { volume, oldPrimary: peer?.name ?? row.source_site, sourceVolume: row.source_volume, snapshot: row.applied, consistent, rollback: !consistent, alreadyPrimary, force: opts.force ?? false, applyInFlight: inFlight, steps };
}

export interface FailoverResult {
  plan: FailoverPlan;
  notified: boolean;
  notifyError?: string;
  snapshot: string;
  /** no failover was needed after all (a stranded migrate or failback was settled or undone): what happened instead */
  instead?: string;
  /** a rerun found this failover already done: the result is the one recorded then */
  alreadyDone?: boolean;
}

/** What the journal keeps of a failover: the plan, and what its steps learned. */
interface FailoverJournal {
  plan: FailoverPlan;
  notified?: boolean;
  notifyError?: string | null;
  snapshot?: string;
}

/**
 * `ferry failover`: plan and execute under the volume's workflow lock. A failover the journal shows
 * in progress (a crash, a cut) is carried on from its last completed step; one already done is
 * not done twice.
 */
export async function runFailover(engine: Engine, volume: string, opts: { force?: boolean; dryRun?: boolean } = {}): Promise<FailoverResult | { plan: FailoverPlan; resuming?: string }> {
  const site = engine.site;
  return withWorkflowLock(site, volume, async () => {
    let wf = runningWorkflow<FailoverJournal>(site, volume);
    if (wf?.kind === 'migrate') {
      // A migrate stranded after this site demoted itself: settled first, or, its target lost, --force promotes this site (migrate.ts).
      const r = await failoverOutOfMigrate(engine, wf as never, opts);
      if (r) return r;
      wf = runningWorkflow<FailoverJournal>(site, volume);
    } else if (wf?.kind === 'failback' && wf.step === 'demoted' && !opts.dryRun) {
      // A failback waiting for a new primary that is lost: with --force closed, and this secondary fails over like any other (failback.ts).
      if (!opts.force) throw new FerryError('MIRROR_STATE', `${workflowBusy(wf, 'failover').message}; if the site it fails back from is lost, \`ferry failover ${volume} --force\` makes this site primary again`);
      const instead = await undoDemotedFailback(engine, wf as never);
      const plan = (wf.plan as unknown as { plan: FailbackPlan }).plan;
      return { plan: { volume, oldPrimary: plan.newPrimary, sourceVolume: plan.remoteVolume, snapshot: plan.base, consistent: true, rollback: false, alreadyPrimary: false, force: true, steps: [instead] }, notified: false, snapshot: '', instead };
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
      const last = lastWorkflow<FailoverJournal>(site, volume, 'failover');
      if (last?.state === 'done' && last.plan.snapshot) return { ...resultOf(last.plan), alreadyDone: true };
    }
    return executeFailover(engine, plan);
  });
}

function resultOf(j: FailoverJournal): FailoverResult {
  return { plan: j.plan, notified: j.notified ?? false, ...(j.notifyError ? { notifyError: j.notifyError } : {}), snapshot: j.snapshot ?? '' };
}

/**
 * Execute a failover plan, journaled: each step is recorded as it completes (in the transaction that
 * made its change), and `wf` (from the journal) resumes after its last completed step. Crash points
 * (FERRY_CRASH_AT, a test hook): failover:after-notice, failover:after-rollback,
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
  const row = () => site.db.get<SecRow>('SELECT * FROM secondaries WHERE volume = ?', plan.volume)!;
  // 1. tell the old primary
  if (wf.step === 'planned') {
    const peer = findPeerById(site, row().source_site);
    let notified = false;
    let notifyError: string | undefined;
    if (peer) {
      const client = new PeerClient(engine.identity, peer, { stallTimeoutMs: 15_000 });
      try {
        await client.call(ROUTES.dr('failover-notice'), { volume: row().source_volume, at: plan.volume });
        notified = true;
      } catch (err) {
        notifyError = (err as Error).message;
      } finally {
        client.close();
      }
    } else notifyError = `site ${row().source_site} is not paired`;
    if (!notified && !plan.force) {
      throw new FerryError('PEER_UNREACHABLE', `cannot tell the old primary ${plan.oldPrimary} (${notifyError}); if it is down, run \`ferry failover ${plan.volume} --force\` (make sure it stays down or stops writing)`);
    }
    recordStep(site, wf, 'notified', { notified, notifyError: notifyError ?? null });
    await checkpoint('failover:after-notice');
  }
  if (wf.step === 'notified' || wf.step === 'rolled-back') {
    // 2 and 3 under the replica lock: no apply writes into the replica while it is rolled back and
    // promoted. An apply in flight is waited for; with --force it is cancelled (it stops at its next
    // check, leaving the replica marked inconsistent) and rolled back below.
    if (plan.force) cancelApply(site, plan.volume, 'failover --force');
    await withReplicaLock(site, plan.volume, async () => {
      const r = row();
      const vol = getVolume(site, plan.volume);
      if (vol.role === 'primary' && r.state === 'broken-off') {
        recordStep(site, wf, 'promoted');
        return;
      }
      // 2. roll back an interrupted (or cancelled) apply
      if (r.applying !== null || r.consistent !== 1) {
        if (!plan.force) {
          throw new FerryError('MIRROR_STATE', `the apply of ${r.applying} into the replica of ${plan.volume} did not complete; run \`ferry failover ${plan.volume} --force\` to roll it back to ${r.applied} and promote it`);
        }
        const target = readManifest(site.store, resolveSnapshot(site, plan.volume, r.applied!).manifest as ObjectId);
        for (const m of vol.members) {
          const want = target.members.find((x) => x.name === m.name)!;
          if (m.kind === 'tree') {
            const now = await captureTree(m.path, { store: site.store, pool: engine.pool, startedAt: site.clock.now() });
            await applyTree(m.path, now.root, want.root, { store: site.store });
          } else applyImage(m.path, null, want.root, { store: site.store });
        }
        site.store.flush();
        site.db.tx(() => {
          site.db.run('UPDATE secondaries SET applying = NULL, applying_from = NULL, consistent = 1 WHERE volume = ?', plan.volume);
          site.event({ kind: 'failover.rollback', volume: plan.volume, outcome: 'ok', detail: { to: r.applied } });
          recordStep(site, wf, 'rolled-back');
        });
        await checkpoint('failover:after-rollback');
      }
      // 3. promote; the base (what the replica shows) stays held for failback
      const applied = row().applied!;
      site.db.tx(() => {
        site.db.run("UPDATE volumes SET role = 'primary' WHERE name = ?", plan.volume);
        site.db.run("UPDATE secondaries SET state = 'broken-off', updated_at = ? WHERE volume = ?", site.clock.now(), plan.volume);
        site.db.run('INSERT OR IGNORE INTO holds (snapshot, holder, created_at) VALUES (?, ?, ?)', applied, holdName(r.source_site), site.clock.now());
        site.event({ kind: 'failover', volume: plan.volume, outcome: 'ok', detail: { transition: 'secondary => primary', oldPrimary: plan.oldPrimary, base: applied, notified: wf.plan.notified ?? false, notifyError: wf.plan.notifyError ?? null } });
        recordStep(site, wf, 'promoted');
      });
    });
    await checkpoint('failover:after-promote');
  }
  // 4. a known starting point for failback
  if (wf.step === 'promoted') {
    const name = `failover-${new Date(site.clock.now()).toISOString().replace(/[:.]/g, '-')}`;
    const snap = await createSnapshot(site, plan.volume, { name, pool: engine.pool });
    recordStep(site, wf, 'snapshotted', { snapshot: snap.snapshot.id });
    await checkpoint('failover:after-snapshot');
  }
  finishWorkflow(site, wf, 'done');
  return resultOf(wf.plan);
}

/** At the old primary: a secondary took over `volume`; stop updating that mirror (it becomes broken-off). */
export function acceptFailoverNotice(engine: Engine, peerId: string, volume: string): { mirror: string; state: string } {
  const site = engine.site;
  const peer = findPeerById(site, peerId)!;
  const m = site.db.get<{ id: string; state: string }>('SELECT id, state FROM mirrors WHERE volume = ? AND peer = ?', volume, peer.name);
  if (!m) throw new FerryError('MIRROR_NOT_FOUND', `site ${site.name} has no mirror of ${volume} to ${peer.name}`);
  if (m.state !== 'broken-off') {
    site.db.tx(() => {
      site.db.run("UPDATE mirrors SET state = 'broken-off', last_error = ? WHERE id = ?", JSON.stringify({ code: 'FAILED_OVER', message: `${peer.name} took over ${volume}` }), m.id);
      site.event({ kind: 'mirror.state', volume, outcome: 'info', detail: { mirror: m.id, transition: `${m.state} => broken-off`, reason: `${peer.name} failed over` } });
    });
  }
  return { mirror: m.id, state: 'broken-off' };
}

export function isFailedOver(err: unknown): boolean {
  return isFerryError(err, 'FAILED_OVER');
}
