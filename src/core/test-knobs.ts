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
  /** faults injected into this process's requests to its peers (transport/faults.ts) */
  faults?: readonly FaultRule[];
  /**
   * directories with more entries than this are paged, in pages of about two entries (snapshot/
   * dir-pages.ts), so that small test trees exercise paged directories. Every process of a test
   * must have the same value: it decides tree ids.
   */
  treePageMin?: number;
  /**
   * files an apply's record of what it wrote holds in memory before it puts them in the catalog
   * (replication/receive/written-files.ts; default 8,192), so small tests take that path
   */
  writtenInMemory?: number;
}

/**
 * One fault of a peer link (transport/faults.ts injects it into the requests this process makes,
 * replication and DR alike). From FERRY_TEST_FAULTS: rules separated by `;`, each
 * `call:action[:key=value,...]`, e.g. `dr.failback:cut`, `put:cut:bytes=200000,nth=2`,
 * `commit:fail:code=PEER_BUSY,times=3`, `hello:stall`.
 */
export interface FaultRule {
  /** the call it hits: hello, missing, put, commit, events, dr.<op> (dr.failback, dr.state, ...), or * for any */
  call: string;
  /**
   * fail: the request is refused before it is sent (error `code`, TRANSFER_INTERRUPTED by default);
   * cut: the connection is cut once `bytes` of the request's body are sent (all of it by default:
   * the peer gets the request, its answer is lost); stall: the request goes out and then no byte
   * moves (the stall watch ends it)
   */
  action: 'fail' | 'cut' | 'stall';
  /** the first matching call it hits (1: the first) */
  nth: number;
  /** how many matching calls it hits, from the nth on */
  times: number;
  bytes?: number;
  code?: string;
}

const FAULT_ACTIONS = new Set(['fail', 'cut', 'stall']);

/** FERRY_TEST_FAULTS's rules (see FaultRule); anything it cannot read is an error naming it. */
export function parseFaultRules(text: string, what = 'FERRY_TEST_FAULTS'): FaultRule[] {
  return text
    .split(';')
    .map((r) => r.trim())
    .filter(Boolean)
    .map((r) => {
      const [call, action, opts, extra] = r.split(':');
      const bad = (why: string) => new Error(`${what}: "${r}": ${why} (a rule is call:fail|cut|stall[:nth=N,times=N,bytes=N,code=CODE])`);
      if (!call || !/^[\w.*-]+$/.test(call) || extra !== undefined) throw bad('not call:action[:options]');
      if (!FAULT_ACTIONS.has(action)) throw bad(`unknown action ${action ?? '(none)'}`);
      const rule: FaultRule = { call, action: action as FaultRule['action'], nth: 1, times: 1 };
      for (const kv of (opts ?? '').split(',').filter(Boolean)) {
        const [k, v] = kv.split('=');
        if (k === 'code' && v && /^[A-Z_]+$/.test(v)) rule.code = v;
        else if ((k === 'nth' || k === 'times' || k === 'bytes') && v !== undefined && /^\d+$/.test(v) && Number.isSafeInteger(Number(v)) && (k === 'bytes' || Number(v) > 0)) rule[k] = Number(v);
        else throw bad(`option ${kv} is not nth=N, times=N (above 0), bytes=N or code=CODE`);
      }
      return rule;
    });
}

type Kind = 'count' | 'ms' | 'list' | 'path' | 'faults';

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
  { env: 'FERRY_TEST_FAULTS', key: 'faults', kind: 'faults' },
  { env: 'FERRY_TEST_TREE_PAGE_MIN', key: 'treePageMin', kind: 'count' },
  { env: 'FERRY_TEST_WRITTEN_IN_MEMORY', key: 'writtenInMemory', kind: 'count' },
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
    else if (k.kind === 'faults') out[k.key] = parseFaultRules(v, k.env);
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
