// The DR workflow journal. Each failover, failback and migrate (and the new
// primary's half of a migrate) records its plan and every step it completes
// in the catalog's `workflows` table; where a step changes the catalog, the
// step is recorded in that same transaction, so the journal never lags what
// was done. A rerun of the command, or the daemon at start, reads the journal
// to finish the workflow or undo it (each workflow says which: failover.ts,
// failback.ts, migrate.ts). At most one workflow runs per volume.
//
// This module owns the journal's events and the per-volume lock that
// serializes workflows within a process (the rows are catalog/workflows.ts's);
// it never decides what a step means.
import { randomUUID } from 'node:crypto';
import { FerryError } from '../core/errors.ts';
import type { Site } from '../site/site.ts';
import { insertWorkflow, runningWorkflow, writeWorkflowError, writeWorkflowState, writeWorkflowStep, type Workflow, type WorkflowKind } from '../catalog/workflows.ts';

export type { Workflow, WorkflowKind, WorkflowState } from '../catalog/workflows.ts';

/**
 * The command that finishes a workflow left in progress: its own, run again (the journal's plan is
 * followed). A migrate's names its target: the CLI requires --to, and another target would start a
 * new migrate once this one is settled.
 */
export function rerunOf(wf: Workflow<unknown>): string {
  switch (wf.kind) {
    case 'failover':
      return `rerun \`ferry failover ${wf.volume}\``;
    case 'failback':
      return `rerun \`ferry failback ${wf.volume}\``;
    case 'migrate': {
      const to = (wf.plan as { plan?: { to?: unknown } } | null)?.plan?.to;
      return `rerun \`ferry migrate ${wf.volume} --to ${typeof to === 'string' ? to : 'SITE'}\``;
    }
    case 'migrate-accept':
      return 'restart `ferry serve` here (its post hook is still to run)';
  }
}

/** A workflow of another kind is in progress on the volume: say which, and how to finish it. */
export function workflowBusy(wf: Workflow<unknown>, wanted: string): FerryError {
  const how = wf.kind === 'migrate-accept' ? rerunOf(wf) : `${rerunOf(wf)} to finish it`;
  return new FerryError('MIRROR_STATE', `a ${wf.kind} of ${wf.volume} is in progress here (step ${wf.step}, started ${new Date(wf.startedAt).toISOString()}): ${wanted} must wait; ${how}`);
}

/** Record a new workflow at its first step (in the caller's transaction, if any). */
export function startWorkflow<P extends object>(site: Site, kind: WorkflowKind, volume: string, plan: P, step = 'planned'): Workflow<P> {
  const now = site.clock.now();
  const id = randomUUID();
  site.catalog.tx(() => {
    const busy = runningWorkflow(site.catalog, volume);
    if (busy) throw workflowBusy(busy, kind);
    insertWorkflow(site.catalog, { id, kind, volume, step, plan, at: now });
    site.event({ kind: 'workflow', volume, outcome: 'info', detail: { workflow: id, kind, step, transition: `=> ${step}` } });
  });
  return { id, kind, volume, step, state: 'running', plan, error: null, startedAt: now, updatedAt: now };
}

/**
 * Record that `step` is complete, merging `learned` into the plan. Call it inside the transaction that
 * made the step's change, where there is one: the journal and the change commit together.
 */
export function recordStep<P extends object>(site: Site, wf: Workflow<P>, step: string, learned: Partial<P> = {}): void {
  const plan = { ...wf.plan, ...learned };
  const now = site.clock.now();
  site.catalog.tx(() => {
    writeWorkflowStep(site.catalog, wf.id, step, plan, now);
    site.event({ kind: 'workflow', volume: wf.volume, outcome: 'info', detail: { workflow: wf.id, kind: wf.kind, transition: `${wf.step} => ${step}` } });
  });
  wf.step = step;
  wf.plan = plan;
  wf.error = null;
  wf.updatedAt = now;
}

/** The workflow is over: done, or rolled back to where it started. */
export function finishWorkflow<P extends object>(site: Site, wf: Workflow<P>, state: 'done' | 'rolled-back', learned: Partial<P> = {}): void {
  const plan = { ...wf.plan, ...learned };
  const now = site.clock.now();
  site.catalog.tx(() => {
    writeWorkflowState(site.catalog, wf.id, state, plan, now);
    site.event({ kind: 'workflow', volume: wf.volume, outcome: state === 'done' ? 'ok' : 'warning', detail: { workflow: wf.id, kind: wf.kind, step: wf.step, transition: `running => ${state}` } });
  });
  wf.state = state;
  wf.plan = plan;
}

/** Merge what was learned into a workflow's plan, whatever its state (a closed one's answer arriving later). */
export function amendWorkflow<P extends object>(site: Site, wf: Workflow<P>, learned: Partial<P>): void {
  const plan = { ...wf.plan, ...learned };
  site.catalog.tx(() => {
    writeWorkflowState(site.catalog, wf.id, undefined, plan, site.clock.now());
    site.event({ kind: 'workflow', volume: wf.volume, outcome: 'info', detail: { workflow: wf.id, kind: wf.kind, amended: Object.keys(learned) } });
  });
  wf.plan = plan;
}

/** Remember why the workflow stopped (it stays running: a rerun or the daemon at start carries on). */
export function noteWorkflowError(site: Site, wf: Workflow<unknown>, err: unknown): void {
  const e = err instanceof FerryError ? { code: err.code, message: err.message } : { code: 'INTERNAL', message: String((err as Error)?.message ?? err) };
  try {
    writeWorkflowError(site.catalog, wf.id, e, site.clock.now());
    wf.error = e;
  } catch {
    // the original error matters more
  }
}

/** What `ferry status` shows of a volume's workflow in progress. */
export function workflowSummary(site: Site, volume: string): { id: string; kind: WorkflowKind; step: string; startedAt: number; updatedAt: number; error: { code: string; message: string } | null } | null {
  const wf = runningWorkflow(site.catalog, volume);
  return wf ? { id: wf.id, kind: wf.kind, step: wf.step, startedAt: wf.startedAt, updatedAt: wf.updatedAt, error: wf.error } : null;
}

/** Workflows of one volume run one at a time in this process (a command and the daemon's resume at start). */
const locks = new Map<string, Promise<unknown>>();
export async function withWorkflowLock<T>(site: Site, volume: string, fn: () => Promise<T>): Promise<T> {
  const key = `${site.paths.home}\0${volume}`;
  const prev = locks.get(key) ?? Promise.resolve();
  const run = prev.then(fn, fn);
  const tail = run.catch(() => {});
  locks.set(key, tail);
  try {
    return await run;
  } finally {
    if (locks.get(key) === tail) locks.delete(key);
  }
}
