// One fuzz target in a worker thread (scripts/fuzz.ts starts it). The runner
// watches from outside: before each execution the input is copied into
// shared memory and a heartbeat counter moves, so a hang (a loop that never
// returns) or a heap exhausted by one input is reported with the input that
// did it. Coverage is started before the code under test is loaded.
import { parentPort, workerData } from 'node:worker_threads';
import { Coverage } from './coverage.ts';
import type { FuzzTarget } from './engine.ts';

export interface WorkerInput {
  target: string;
  ms?: number;
  execs?: number;
  seed: number;
  guided: boolean;
  /** with guided false: measure coverage anyway (to compare), without guiding by it */
  measure?: boolean;
  batch?: number;
  /** [u32 length][bytes] of the input being run */
  current: SharedArrayBuffer;
  /** [executions] */
  heartbeat: SharedArrayBuffer;
}

const w = workerData as WorkerInput;
const SRC = new URL('../../src/', import.meta.url).href;
let coverAlso: ((url: string) => boolean) | undefined;
const coverage = w.guided || w.measure ? new Coverage((url) => url.startsWith(SRC) || (coverAlso?.(url) ?? false)) : undefined;

const { TARGETS } = await import('./targets/index.ts');
const { fuzz } = await import('./engine.ts');
const target = TARGETS.find((t: FuzzTarget) => t.name === w.target);
if (!target) throw new Error(`no fuzz target ${w.target}`);
coverAlso = target.coverAlso;

const current = new Uint8Array(w.current);
const currentLength = new DataView(w.current);
const heartbeat = new Int32Array(w.heartbeat);

await target.setup?.();
try {
  const stats = await fuzz(target, {
    seed: w.seed,
    ms: w.ms,
    execs: w.execs,
    coverage,
    guide: w.guided,
    batch: w.batch,
    onExec(input) {
      const n = Math.min(input.length, current.length - 4);
      currentLength.setUint32(0, n, true);
      current.set(input.subarray(0, n), 4);
      Atomics.add(heartbeat, 0, 1);
    },
    onCrash(crash) {
      parentPort!.postMessage({ type: 'crash', crash });
    },
  });
  parentPort!.postMessage({ type: 'done', stats: { ...stats, crashes: stats.crashes.map((c) => ({ ...c, input: undefined })) } });
} finally {
  await target.teardown?.();
  coverage?.close();
}
