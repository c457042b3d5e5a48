// How long a failed job waits before it is tried again: one computation for
// every retry path of the daemon (mirror updates and peer-snapshot deliveries,
// link refreshes, DR workflow resumption, failover notices), so none can spin. Each failure is
// counted and waits base * 2^(failures - 1), capped, spread by a random factor
// (jitter) so that many mirrors failing together do not retry together. An
// error that retrying will not cure (anything not `transient`: a failed hook,
// a refusal, a full disk) waits at least for the job's next period, so a
// scheduled job never runs more often failing than succeeding. Time and
// randomness are injected: tests compute waits without sleeping.
import type { Clock } from './clock.ts';

export interface BackoffPolicy {
  /** the wait after the first failure */
  baseMs: number;
  /** the longest wait, before jitter */
  maxMs: number;
  /** the wait is multiplied by a factor drawn from [1 - jitter, 1 + jitter) */
  jitter: number;
}

/** A random number in [0, 1), as Math.random gives. */
export type Random = () => number;

/** Mirror updates and peer-snapshot deliveries: 5 s, 10 s, 20 s ... up to 5 min. */
export const MIRROR_RETRY: BackoffPolicy = { baseMs: 5_000, maxMs: 5 * 60_000, jitter: 0.2 };
/** Scheduled link refreshes: the same steps. */
export const LINK_RETRY: BackoffPolicy = MIRROR_RETRY;
/** An automatic collection that failed (the disk too full even to repack, a damaged snapshot): 5 s up to 5 min. */
export const GC_RETRY: BackoffPolicy = MIRROR_RETRY;
/** Resuming DR workflows left in progress (the peer they wait for may be down for long): 30 s up to 10 min. */
export const WORKFLOW_RETRY: BackoffPolicy = { baseMs: 30_000, maxMs: 10 * 60_000, jitter: 0.2 };
/** Failover notices to an old primary that was unreachable (failover --force): 15 s up to 5 min. */
export const NOTICE_RETRY: BackoffPolicy = { baseMs: 15_000, maxMs: 5 * 60_000, jitter: 0.2 };

/**
 * A tree member (or replica) whose watches ran out (inotify's ENOSPC, fs.inotify.max_user_watches):
 * its change journal is not tried again before 10 min, then 20 min, ... up to a day (the watches of a
 * large tree cost minutes to add, for nothing while the limit stands).
 */
export const JOURNAL_WATCH_RETRY: BackoffPolicy = { baseMs: 10 * 60_000, maxMs: 24 * 3600_000, jitter: 0 };

/** The wait after `failures` consecutive failures (1: after the first), with jitter. */
export function backoffMs(failures: number, policy: BackoffPolicy, random: Random): number {
  const n = Math.max(1, Math.floor(failures));
  const wait = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(n - 1, 40));
  const r = Math.min(Math.max(random(), 0), 1);
  return Math.round(wait * (1 - policy.jitter + 2 * policy.jitter * r));
}

export interface Failure {
  /** consecutive failures, this one included */
  failures: number;
  /** `transient` errors may pass by themselves; any other kind waits for the next period too */
  transient: boolean;
  /** the job's period (its schedule) in ms; null: it has none */
  periodMs: number | null;
}

/** The wait before the next attempt after a failure. */
export function retryDelayMs(f: Failure, policy: BackoffPolicy, random: Random): number {
  const wait = backoffMs(f.failures, policy, random);
  return f.transient || f.periodMs === null ? wait : Math.max(wait, f.periodMs);
}

/** The longest wait retryDelayMs can give for a job of this period: a planned run further away is not believed. */
export function longestRetryMs(periodMs: number | null, policy: BackoffPolicy): number {
  return Math.ceil(Math.max(policy.maxMs * (1 + policy.jitter), periodMs ?? 0));
}

/**
 * Retry state kept in memory, per key, for jobs whose failures the catalog does not record (link
 * refreshes, workflow resumption): `due` says whether a key may run now, `failed` counts a failure
 * and sets its wait, `succeeded` clears it. A daemon restart starts every key afresh.
 */
export class RetryGate {
  readonly #state = new Map<string, { failures: number; notBefore: number }>();
  readonly #policy: BackoffPolicy;
  readonly #clock: Clock;
  readonly #random: Random;

  constructor(policy: BackoffPolicy, clock: Clock, random: Random) {
    this.#policy = policy;
    this.#clock = clock;
    this.#random = random;
  }

  due(key: string): boolean {
    const s = this.#state.get(key);
    return !s || s.notBefore <= this.#clock.now();
  }

  /** Count a failure of `key`; returns the failures so far and the wait before the next try. */
  failed(key: string, o: { transient?: boolean; periodMs?: number | null } = {}): { failures: number; retryInMs: number } {
    const failures = (this.#state.get(key)?.failures ?? 0) + 1;
    const retryInMs = retryDelayMs({ failures, transient: o.transient ?? true, periodMs: o.periodMs ?? null }, this.#policy, this.#random);
    this.#state.set(key, { failures, notBefore: this.#clock.now() + retryInMs });
    return { failures, retryInMs };
  }

  succeeded(key: string): void {
    this.#state.delete(key);
  }

  failures(key: string): number {
    return this.#state.get(key)?.failures ?? 0;
  }

  /** Forget keys that no longer exist (a removed link). */
  retain(keys: Iterable<string>): void {
    const keep = new Set(keys);
    for (const k of this.#state.keys()) if (!keep.has(k)) this.#state.delete(k);
  }
}
