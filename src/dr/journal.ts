// The DR workflow journal. Each failover, failback and migrate (and the new
// primary's half of a migrate) records its plan and every step it completes
// in the catalog's `workflows` table; where a step changes the catalog, the
// step is recorded in that same transaction, so the journal never lags what
// was done. A rerun of the command, or the daemon at start, reads the journal
// to finish the workflow or undo it (each workflow says which: failover.ts,
// failback.ts, migrate.ts). At most one workflow runs per volume.
//
// This module owns the rows and the per-volume lock that serializes
// workflows within a process; it never decides what a step means.
import { randomUUID } from 'node:crypto';
import { FerryError } from '../core/errors.ts';
import type { Site } from '../site/site.ts';

export type WorkflowKind = 'failover' | 'failback' | 'migrate' | 'migrate-accept';
export type WorkflowState = 'running' | 'done' | 'rolled-back';

export interface Workflow<P = Record<string, unknown>> {
  id: string;
  kind: WorkflowKind;
  volume: string;
  step: string;
  state: WorkflowState;
  /** the plan, and what completed steps learned (a kept snapshot's id, a transfer's result) */
  plan: P;
  error: { code: string; message: string } | null;
  startedAt: number;
  updatedAt: number;
}

interface Row {
  id: string;
  kind: WorkflowKind;
  volume: string;
  step: string;
  state: WorkflowState;
  plan: string;
  error: string | null;
  started_at: number;
  updated_at: number;
}

function toWorkflow<P>(r: Row): Workflow<P> {
  return { id: r.id, kind: r.kind, volume: r.volume, step: r.step, state: r.state, plan: JSON.parse(r.plan) as P, error: r.error ? JSON.parse(r.error) : null, startedAt: r.started_at, updatedAt: r.updated_at };
}

/** Read the journal; a catalog opened read-only that predates the table has no workflows. */
function query<T>(site: Site, fn: () => T, empty: T): T {
  try {
    return fn();
  } catch (err) {
    if (/no such table: workflows/.test((err as Error).message)) return empty;
    throw err;
  }
}

export function runningWorkflow<P = Record<string, unknown>>(site: Site, volume: string): Workflow<P> | undefined {
  const r = query(site, () => site.db.get<Row>("SELECT * FROM workflows WHERE volume = ? AND state = 'running'", volume), undefined);
  return r ? toWorkflow<P>(r) : undefined;
}

export function runningWorkflows(site: Site): Workflow[] {
  return query(site, () => site.db.all<Row>("SELECT * FROM workflows WHERE state = 'running' ORDER BY started_at"), []).map((r) => toWorkflow(r));
}

/** The newest workflow of a kind for a volume, whatever its state. */
export function lastWorkflow<P = Record<string, unknown>>(site: Site, volume: string, kind: WorkflowKind): Workflow<P> | undefined {
  const r = query(site, () => site.db.get<Row>('SELECT * FROM workflows WHERE volume = ? AND kind = ? ORDER BY started_at DESC, rowid DESC LIMIT 1', volume, kind), undefined);
  return r ? toWorkflow<P>(r) : undefined;
}

/** A workflow of another kind is in progress on the volume: say which, and how to finish it. */
export function workflowBusy(wf: Workflow<unknown>, wanted: string): FerryError {
  const how = wf.kind === 'migrate-accept' ? 'restart `ferry serve` here (its post hook is still to run)' : `rerun \`ferry ${wf.kind} ${wf.volume}\` to finish it`;
  return new FerryError('MIRROR_STATE', `a ${wf.kind} of ${wf.volume} is in progress here (step ${wf.step}, started ${new Date(wf.startedAt).toISOString()}): ${wanted} must wait; ${how}`);
}

/** Record a new workflow at its first step (in the caller's transaction, if any). */
export function startWorkflow<P extends object>(site: Site, kind: WorkflowKind, volume: string, plan: P, step = 'planned'): Workflow<P> {
  const now = site.clock.now();
  const id = randomUUID();
  site.db.tx(() => {
    const busy = runningWorkflow(site, volume);
    if (busy) throw workflowBusy(busy, kind);
    site.db.run('INSERT INTO workflows (id, kind, volume, step, state, plan, started_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)', id, kind, volume, step, 'running', JSON.stringify(plan), now, now);
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
  site.db.tx(() => {
    site.db.run('UPDATE workflows SET step = ?, plan = ?, error = NULL, updated_at = ? WHERE id = ?', step, JSON.stringify(plan), now, wf.id);
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
  site.db.tx(() => {
    site.db.run('UPDATE workflows SET state = ?, plan = ?, updated_at = ? WHERE id = ?', state, JSON.stringify(plan), now, wf.id);
    site.event({ kind: 'workflow', volume: wf.volume, outcome: state === 'done' ? 'ok' : 'warning', detail: { workflow: wf.id, kind: wf.kind, step: wf.step, transition: `running => ${state}` } });
  });
  wf.state = state;
  wf.plan = plan;
}

/** Merge what was learned into a workflow's plan, whatever its state (a closed one's answer arriving later). */
export function amendWorkflow<P extends object>(site: Site, wf: Workflow<P>, learned: Partial<P>): void {
  const plan = { ...wf.plan, ...learned };
  site.db.tx(() => {
    site.db.run('UPDATE workflows SET plan = ?, updated_at = ? WHERE id = ?', JSON.stringify(plan), site.clock.now(), wf.id);
    site.event({ kind: 'workflow', volume: wf.volume, outcome: 'info', detail: { workflow: wf.id, kind: wf.kind, amended: Object.keys(learned) } });
  });
  wf.plan = plan;
}

/** Migrates closed by `failover --force` whose target has not answered yet (src/dr/migrate.ts, settleForcedMigrate). */
export function forcedMigratesToSettle(site: Site): Workflow[] {
  return query(site, () => site.db.all<Row>("SELECT * FROM workflows WHERE kind = 'migrate' AND state = 'rolled-back' AND json_extract(plan, '$.forced.unresolved') = 1 ORDER BY started_at"), []).map((r) => toWorkflow(r));
}

/** Remember why the workflow stopped (it stays running: a rerun or the daemon at start carries on). */
export function noteWorkflowError(site: Site, wf: Workflow<unknown>, err: unknown): void {
  const e = err instanceof FerryError ? { code: err.code, message: err.message } : { code: 'INTERNAL', message: String((err as Error)?.message ?? err) };
  try {
    site.db.run('UPDATE workflows SET error = ?, updated_at = ? WHERE id = ?', JSON.stringify(e), site.clock.now(), wf.id);
    wf.error = e;
  } catch {
    // the original error matters more
  }
}

/** What `ferry status` shows of a volume's workflow in progress. */
export function workflowSummary(site: Site, volume: string): { id: string; kind: WorkflowKind; step: string; startedAt: number; updatedAt: number; error: { code: string; message: string } | null } | null {
  const wf = runningWorkflow(site, volume);
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
