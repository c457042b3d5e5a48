// The one poll of the tests: wait for a condition, never sleep for a guess.
//
// `fn` is called until it returns a value (anything but undefined or false).
// An error it throws counts as "not yet" (a mirror not listed yet, a catalog
// row not written yet) and is retried; if the time runs out the last one is in
// the message. An error made by `giveUp` ends the wait at once: for conditions
// that can no longer come true (the daemon exited). With `strict`, any error
// ends it at once (for probes whose every error is a failure).
export interface WaitOptions {
  /** default 30 s */
  timeoutMs?: number;
  /** pause between calls; default 200 ms */
  everyMs?: number;
  /** an error thrown by `fn` fails the wait at once instead of being retried */
  strict?: boolean;
}

const GIVE_UP = Symbol('waitFor: give up');

/** An error that ends a waitFor at once instead of being retried. */
export function giveUp(message: string): Error {
  return Object.assign(new Error(message), { [GIVE_UP]: true });
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeout: number | WaitOptions = {}, everyMs?: number): Promise<T> {
  const o: WaitOptions = typeof timeout === 'number' ? { timeoutMs: timeout, everyMs } : timeout;
  const timeoutMs = o.timeoutMs ?? 30_000;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v as T;
      last = undefined;
    } catch (err) {
      if (o.strict || (err as { [GIVE_UP]?: boolean })?.[GIVE_UP]) throw err;
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`, { cause: last });
    await new Promise((r) => setTimeout(r, o.everyMs ?? 200));
  }
}
