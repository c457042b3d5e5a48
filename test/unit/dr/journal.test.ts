// The refusal a workflow in progress gives (dr/journal.ts workflowBusy) names
// the command that finishes it, whole: the CLI accepts it as it stands (a
// migrate's rerun needs --to, and it must be the journal's target: another one
// starts a new migrate once this one is settled).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { workflowBusy, type Workflow, type WorkflowKind } from '../../../src/dr/journal.ts';
import { dryParse, shellWords } from '../../harness/dry-parse.ts';

const running = (kind: WorkflowKind, plan: unknown): Workflow<unknown> => ({ id: 'w1', kind, volume: 'app', step: 'demoted', state: 'running', plan, error: null, startedAt: 0, updatedAt: 0 });

test('a workflow in progress: the refusal names its rerun, accepted by the CLI, a migrate\'s with its target', async () => {
  const cases: Array<[WorkflowKind, unknown, string]> = [
    ['failover', { plan: { volume: 'app' } }, 'ferry failover app'],
    ['failback', { plan: { volume: 'app', newPrimary: 'b' } }, 'ferry failback app'],
    ['migrate', { plan: { volume: 'app', to: 'b' } }, 'ferry migrate app --to b'],
  ];
  for (const [kind, plan, command] of cases) {
    const message = workflowBusy(running(kind, plan), 'snapshot delete').message;
    const said = /rerun `(ferry [^`]+)` to finish it/.exec(message)?.[1];
    assert.equal(said, command, message);
    await dryParse(shellWords(said!.slice('ferry'.length)));
  }
  assert.match(workflowBusy(running('migrate-accept', {}), 'failover').message, /restart `ferry serve` here/);
});
