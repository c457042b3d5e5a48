// The DR workflow journal (`workflows`): one row per failover, failback or
// migrate (and the new primary's half of a migrate), its plan, and the last
// step it completed. What the steps mean, and the events that record them,
// are dr/journal.ts's and each workflow's. At most one runs per volume (a
// unique index on the running ones).
import type { Catalog } from './catalog.ts';

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

/** A row of `workflows`. */
interface WorkflowRow {
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

function toWorkflow<P>(r: WorkflowRow): Workflow<P> {
  return { id: r.id, kind: r.kind, volume: r.volume, step: r.step, state: r.state, plan: JSON.parse(r.plan) as P, error: r.error ? JSON.parse(r.error) : null, startedAt: r.started_at, updatedAt: r.updated_at };
}

/** Read the journal; a catalog opened read-only that predates the table has no workflows. */
function query<T>(fn: () => T, empty: T): T {
  try {
    return fn();
  } catch (err) {
    if (/no such table: workflows/.test((err as Error).message)) return empty;
    throw err;
  }
}

export function runningWorkflow<P = Record<string, unknown>>(cat: Catalog, volume: string): Workflow<P> | undefined {
  const r = query(() => cat.db.get<WorkflowRow>("SELECT * FROM workflows WHERE volume = ? AND state = 'running'", volume), undefined);
  return r ? toWorkflow<P>(r) : undefined;
}

export function runningWorkflows(cat: Catalog): Workflow[] {
  return query(() => cat.db.all<WorkflowRow>("SELECT * FROM workflows WHERE state = 'running' ORDER BY started_at"), []).map((r) => toWorkflow(r));
}

/** The newest workflow of a kind for a volume, whatever its state. */
export function lastWorkflow<P = Record<string, unknown>>(cat: Catalog, volume: string, kind: WorkflowKind): Workflow<P> | undefined {
  const r = query(() => cat.db.get<WorkflowRow>('SELECT * FROM workflows WHERE volume = ? AND kind = ? ORDER BY started_at DESC, rowid DESC LIMIT 1', volume, kind), undefined);
  return r ? toWorkflow<P>(r) : undefined;
}

/** Migrates closed by `failover --force` whose target has not answered yet (src/dr/migrate.ts, settleForcedMigrate). */
export function forcedMigratesToSettle(cat: Catalog): Workflow[] {
  return query(() => cat.db.all<WorkflowRow>("SELECT * FROM workflows WHERE kind = 'migrate' AND state = 'rolled-back' AND json_extract(plan, '$.forced.unresolved') = 1 ORDER BY started_at"), []).map((r) => toWorkflow(r));
}

/** A workflow is left in progress, or a forced migrate rollback still owes its target an answer (cheap: the daemon asks every tick). */
export function workflowsLeft(cat: Catalog): boolean {
  return query(() => cat.db.get("SELECT 1 FROM workflows WHERE state = 'running' OR (kind = 'migrate' AND json_extract(plan, '$.forced.unresolved') = 1) LIMIT 1") !== undefined, false);
}

/** The row of a new workflow, running at `step`. */
export function insertWorkflow(cat: Catalog, w: { id: string; kind: WorkflowKind; volume: string; step: string; plan: unknown; at: number }): void {
  cat.db.run('INSERT INTO workflows (id, kind, volume, step, state, plan, started_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)', w.id, w.kind, w.volume, w.step, 'running', JSON.stringify(w.plan), w.at, w.at);
}

/** The workflow completed `step`; its plan is now `plan`, its last error forgotten. */
export function writeWorkflowStep(cat: Catalog, id: string, step: string, plan: unknown, at: number): void {
  cat.db.run('UPDATE workflows SET step = ?, plan = ?, error = NULL, updated_at = ? WHERE id = ?', step, JSON.stringify(plan), at, id);
}

/** The workflow is over (or its plan amended, when `state` is undefined). */
export function writeWorkflowState(cat: Catalog, id: string, state: WorkflowState | undefined, plan: unknown, at: number): void {
  if (state === undefined) cat.db.run('UPDATE workflows SET plan = ?, updated_at = ? WHERE id = ?', JSON.stringify(plan), at, id);
  else cat.db.run('UPDATE workflows SET state = ?, plan = ?, updated_at = ? WHERE id = ?', state, JSON.stringify(plan), at, id);
}

/** Why the workflow stopped (it stays running). */
export function writeWorkflowError(cat: Catalog, id: string, error: { code: string; message: string }, at: number): void {
  cat.db.run('UPDATE workflows SET error = ?, updated_at = ? WHERE id = ?', JSON.stringify(error), at, id);
}
