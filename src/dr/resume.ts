// The daemon's side of the workflow journal: at start (and then now and
// again while any is left), carry on every DR workflow a crash or a cut left
// in progress, the way rerunning its command would: a failover or a failback
// is finished from its last completed step; a migrate is finished if the new
// primary took over and rolled back if it did not; the new primary's half of
// a migrate runs its post hook. A workflow that cannot go on yet (the peer is
// unreachable) stays in the journal with its error, for the next try. And a
// migrate that `failover --force` closed without its target's answer asks the
// target again until it answers.
import type { Engine } from '../site/engine.ts';
import { executeFailback } from './failback.ts';
import { executeFailover } from './failover.ts';
import { noteWorkflowError, withWorkflowLock } from './journal.ts';
import { resumeMigrate, settleForcedMigrate } from './migrate.ts';
import { resumeMigrateAccept } from './migrate-accept.ts';
import { forcedMigratesToSettle, runningWorkflow, runningWorkflows } from '../catalog/workflows.ts';

export async function resumeWorkflows(engine: Engine): Promise<void> {
  const site = engine.site;
  if (site.readOnly) return;
  for (const w of runningWorkflows(site.catalog)) {
    await withWorkflowLock(site, w.volume, async () => {
      // A command may have finished it meanwhile.
      const wf = runningWorkflow(site.catalog, w.volume);
      if (!wf || wf.id !== w.id) return;
      site.event({ kind: 'workflow.resume', volume: wf.volume, outcome: 'info', detail: { workflow: wf.id, kind: wf.kind, step: wf.step } });
      try {
        switch (wf.kind) {
          case 'failover':
            await executeFailover(engine, (wf.plan as { plan: never }).plan, wf as never);
            break;
          case 'failback':
            await executeFailback(engine, (wf.plan as { plan: never }).plan, {}, wf as never);
            break;
          case 'migrate':
            await resumeMigrate(engine, wf as never);
            break;
          case 'migrate-accept':
            await resumeMigrateAccept(engine, wf as never);
            break;
        }
      } catch (err) {
        noteWorkflowError(site, wf, err);
        site.event({ kind: 'workflow.resume', volume: wf.volume, outcome: 'failed', detail: { workflow: wf.id, kind: wf.kind, step: wf.step, error: (err as Error).message } });
      }
    }).catch(() => {});
  }
  // Migrates that `failover --force` closed while their target could not answer: ask it again.
  for (const w of forcedMigratesToSettle(site.catalog)) {
    await withWorkflowLock(site, w.volume, () => settleForcedMigrate(engine, w as never)).catch((err) => {
      site.event({ kind: 'workflow.resume', volume: w.volume, outcome: 'failed', detail: { workflow: w.id, kind: w.kind, settling: 'failover --force', error: (err as Error).message } });
    });
  }
}
