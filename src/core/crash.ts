// Test hooks for crash safety: named points in the durable steps of the DR
// workflows (and the replica apply) where a test can make the process die,
// or hold it still, at exactly that step.
//
//   FERRY_TEST_CRASH_AT=step[,...]   at a named step the process kills itself
//                                   with SIGKILL (nothing is flushed, no
//                                   finally runs: the same as kill -9 there)
//   FERRY_TEST_PAUSE_AT=step[,...]   at a named step the process waits until
//   FERRY_TEST_PAUSE_FILE=path      the file exists (or 120 s pass, or the
//                                   caller's cancel check says so)
//
// Step names are `workflow:after-what` (docs/dr.md lists them). Unset, both
// cost one environment lookup. This module imports nothing of ferry's and
// never runs in normal operation.
import { existsSync, writeSync } from 'node:fs';
import { testKnobs } from './test-knobs.ts';

function named(steps: readonly string[], step: string): boolean {
  return steps.length > 0 && steps.includes(step);
}

/** Die here (SIGKILL to this process) when FERRY_TEST_CRASH_AT names `step`. */
export function crashPoint(step: string): void {
  if (!named(testKnobs().crashAt, step)) return;
  try {
    writeSync(2, `ferry: crash point ${step}: SIGKILL (FERRY_TEST_CRASH_AT)\n`);
  } catch {
    // stderr closed: die anyway
  }
  process.kill(process.pid, 'SIGKILL');
}

/**
 * Wait here while FERRY_TEST_PAUSE_AT names `step` and FERRY_TEST_PAUSE_FILE does not exist yet; `cancelled`
 * ends the wait early (a pause inside work that can be cancelled). Returns whether it paused.
 */
export async function pausePoint(step: string, cancelled: () => boolean = () => false): Promise<boolean> {
  if (!named(testKnobs().pauseAt, step)) return false;
  const file = testKnobs().pauseFile;
  const until = Date.now() + 120_000;
  while (!(file && existsSync(file)) && !cancelled() && Date.now() < until) await new Promise((r) => setTimeout(r, 25));
  return true;
}

/** A durable step of a workflow is complete: a test may crash the process here, or hold it still. */
export async function checkpoint(step: string): Promise<void> {
  crashPoint(step);
  await pausePoint(step);
}
