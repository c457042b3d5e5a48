// Test knobs: settings that exist only so tests can make ferry stall, crash,
// pause or hurry at chosen moments. They are not production settings (those
// are in the catalog, the site file and the command line), they are all named
// FERRY_TEST_*, and this is the one place that lists and reads them: the
// process's entry (cli/main.ts) reads the environment once, at start, and
// installs what it found; code reads the installed values (`testKnobs()`), or
// a test installs its own in-process (`withTestKnobs`). Nothing else reads a
// FERRY_TEST_* variable (test/unit/core/test-knobs.test.ts checks the
// sources). Like fail-rs's failpoints, they are process-wide: a crash point is
// a property of the process, not of one site object.
//
// Unset, every knob is off and costs one property read.

export interface TestKnobs {
  /** a peer stream with no bytes for this long is cut (default 60 s: transport/client.ts, app/daemon.ts) */
  stallTimeoutMs?: number;
  /** interval of the keepalive spaces a long commit sends (default 10 s: transport/http.ts) */
  keepaliveMs?: number;
  /** bytes per put request of the sender (the granularity of a resumed transfer) */
  putBatchBytes?: number;
  /** shift of this process's clock (core/clock.ts: a site whose clock is off) */
  clockOffsetMs?: number;
  /** named steps where the process SIGKILLs itself (core/crash.ts) */
  crashAt: readonly string[];
  /** named steps where the process waits until `pauseFile` exists (core/crash.ts) */
  pauseAt: readonly string[];
  pauseFile?: string;
  /** the stream budgets' limits (transport/stream-budget.ts) */
  sessionBudgetBytes?: number;
  daemonBudgetBytes?: number;
}

type Kind = 'count' | 'ms' | 'list' | 'path';

/** Every knob: its environment variable, its key, what it takes. */
export const TEST_KNOBS: ReadonlyArray<{ env: string; key: keyof TestKnobs; kind: Kind }> = [
  { env: 'FERRY_TEST_STALL_TIMEOUT_MS', key: 'stallTimeoutMs', kind: 'ms' },
  { env: 'FERRY_TEST_KEEPALIVE_MS', key: 'keepaliveMs', kind: 'ms' },
  { env: 'FERRY_TEST_PUT_BATCH_BYTES', key: 'putBatchBytes', kind: 'count' },
  { env: 'FERRY_TEST_CLOCK_OFFSET_MS', key: 'clockOffsetMs', kind: 'ms' },
  { env: 'FERRY_TEST_CRASH_AT', key: 'crashAt', kind: 'list' },
  { env: 'FERRY_TEST_PAUSE_AT', key: 'pauseAt', kind: 'list' },
  { env: 'FERRY_TEST_PAUSE_FILE', key: 'pauseFile', kind: 'path' },
  { env: 'FERRY_TEST_SESSION_BUDGET_BYTES', key: 'sessionBudgetBytes', kind: 'count' },
  { env: 'FERRY_TEST_DAEMON_BUDGET_BYTES', key: 'daemonBudgetBytes', kind: 'count' },
];

export const NO_TEST_KNOBS: TestKnobs = Object.freeze({ crashAt: [], pauseAt: [] });

/**
 * The knobs an environment sets. A value that is not what the knob takes is an error that names it
 * (a test that thinks it set a knob must not run without it).
 */
export function testKnobsFromEnv(env: Record<string, string | undefined>): TestKnobs {
  const out: Record<string, unknown> = { crashAt: [], pauseAt: [] };
  for (const k of TEST_KNOBS) {
    const v = env[k.env];
    if (v === undefined || v === '') continue;
    if (k.kind === 'list') out[k.key] = v.split(',').map((s) => s.trim()).filter(Boolean);
    else if (k.kind === 'path') out[k.key] = v;
    else {
      const n = Number(v);
      if (!Number.isSafeInteger(n) || (k.kind === 'count' && n <= 0)) throw new Error(`${k.env}=${v}: a whole number${k.kind === 'count' ? ' above 0' : ''} is needed (a test knob)`);
      out[k.key] = n;
    }
  }
  return Object.freeze(out) as unknown as TestKnobs;
}

let installed: TestKnobs = NO_TEST_KNOBS;

/** The knobs in force in this process. */
export function testKnobs(): TestKnobs {
  return installed;
}

/** Install the knobs of this process (its entry point, once, from its environment). */
export function installTestKnobs(k: TestKnobs): void {
  installed = k;
}

/** Run `fn` with `k` installed, then put back what was (in-process tests). */
export async function withTestKnobs<T>(k: Partial<TestKnobs>, fn: () => Promise<T> | T): Promise<T> {
  const before = installed;
  installed = Object.freeze({ ...NO_TEST_KNOBS, ...k });
  try {
    return await fn();
  } finally {
    installed = before;
  }
}
