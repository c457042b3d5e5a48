// Moved to test/harness/ (daemon.ts, wait.ts, catalog.ts): this file only re-exports it, for tests
// not yet moved onto the harness. New tests import '../harness/index.ts'.
export { startDaemon, stopDaemon, exited, runningDaemons, withCatalog, type Daemon, type DaemonJson } from '../harness/index.ts';
import { waitFor as harnessWaitFor } from '../harness/index.ts';

/** The harness's waitFor as this file had it: 20 s, every 100 ms, an error thrown by `fn` fails at once. */
export function waitFor<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 20_000, everyMs = 100): Promise<T> {
  return harnessWaitFor(what, fn, { timeoutMs, everyMs, strict: true });
}
