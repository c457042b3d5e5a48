// The daemon's memory budget for what peers make it buffer. Each HTTP/2
// stream holds at most one object (64 MiB) or one bounded body, but a peer
// may open many streams on one connection, and several peers may connect:
// the bytes every stream holds are counted against a budget per connection
// (session) and one for the whole daemon. A stream that would go over is
// refused (PEER_BUSY, answered, then released), never the connection or the
// daemon; what the other streams hold is untouched.
//
// Why a byte budget and not maxConcurrentStreams: a client opens its first
// streams before it has seen the server's SETTINGS, and those past the cap
// were refused with REFUSED_STREAM, which failed real transfers. Reservations
// are made from declared sizes (an object's header states its length) before
// the bytes are read, so a refusal costs the daemon nothing.
//
// Owns: the counts. Must never: block a stream waiting for budget (a stream
// that is not read still fills up to its flow-control window), or let one
// stream's refusal touch another's.
import { testKnobs, type TestKnobs } from '../core/test-knobs.ts';
import { humanBytes } from '../core/units.ts';
import { FerryError } from '../core/errors.ts';

export const DEFAULT_SESSION_BUDGET = 256 * 1024 * 1024;
export const DEFAULT_DAEMON_BUDGET = 1024 * 1024 * 1024;

interface SessionCount {
  held: number;
  streams: number;
  refused: number;
  /** the connection's refusal was logged (see warnOnce) */
  warned?: boolean;
}

export interface BudgetStats {
  /** bytes held by every stream now */
  held: number;
  /** the most held at once */
  peak: number;
  /** streams refused since start */
  refused: number;
  sessionLimit: number;
  daemonLimit: number;
}

/** What one stream holds: `hold(n)` sets it (up or down), `close()` gives it all back. */
export class StreamAccount {
  readonly #budget: StreamBudget;
  readonly #session: SessionCount;
  #held = 0;
  #closed = false;

  constructor(budget: StreamBudget, session: SessionCount) {
    this.#budget = budget;
    this.#session = session;
    session.streams++;
  }

  get held(): number {
    return this.#held;
  }

  /**
   * This stream now holds `bytes`. Growing past the connection's or the
   * daemon's budget throws PEER_BUSY and changes nothing.
   */
  hold(bytes: number): void {
    if (this.#closed) return;
    const delta = bytes - this.#held;
    if (delta > 0) this.#budget.grant(this.#session, delta);
    else this.#budget.release(this.#session, -delta);
    this.#held = bytes;
  }

  close(): void {
    if (this.#closed) return;
    this.hold(0);
    this.#closed = true;
    this.#session.streams--;
  }
}

export class StreamBudget {
  readonly sessionLimit: number;
  readonly daemonLimit: number;
  #held = 0;
  #peak = 0;
  #refused = 0;
  readonly #sessions = new WeakMap<object, SessionCount>();

  constructor(o: { sessionLimit?: number; daemonLimit?: number } = {}) {
    this.sessionLimit = o.sessionLimit ?? DEFAULT_SESSION_BUDGET;
    this.daemonLimit = o.daemonLimit ?? DEFAULT_DAEMON_BUDGET;
    if (!(this.sessionLimit > 0) || !(this.daemonLimit > 0)) throw new FerryError('CONFIG_INVALID', 'stream budgets must be positive byte counts');
  }

  /** Budgets the test knobs set (FERRY_TEST_SESSION_BUDGET_BYTES, FERRY_TEST_DAEMON_BUDGET_BYTES: core/test-knobs.ts), else the defaults. */
  static fromKnobs(k: TestKnobs = testKnobs()): StreamBudget {
    return new StreamBudget({ sessionLimit: k.sessionBudgetBytes, daemonLimit: k.daemonBudgetBytes });
  }

  /** An account for a new stream of `session` (any object naming the connection). */
  open(session: object): StreamAccount {
    let s = this.#sessions.get(session);
    if (!s) {
      s = { held: 0, streams: 0, refused: 0 };
      this.#sessions.set(session, s);
    }
    return new StreamAccount(this, s);
  }

  /**
   * True once per connection, the first time it is asked after one of its streams was refused: the
   * one `peer.busy` warning. (Comparing the count of refusals with 1 when answering missed it
   * whenever a second stream was refused before the first one's answer: refusals come in bursts.)
   */
  warnOnce(session: object): boolean {
    const s = this.#sessions.get(session);
    if (!s || s.refused === 0 || s.warned) return false;
    s.warned = true;
    return true;
  }

  stats(): BudgetStats {
    return { held: this.#held, peak: this.#peak, refused: this.#refused, sessionLimit: this.sessionLimit, daemonLimit: this.daemonLimit };
  }

  /** @internal StreamAccount.hold */
  grant(s: SessionCount, bytes: number): void {
    const why =
      s.held + bytes > this.sessionLimit
        ? `this connection's ${s.streams} open stream(s) already hold ${humanBytes(s.held)} and the budget per connection is ${humanBytes(this.sessionLimit)}`
        : this.#held + bytes > this.daemonLimit
          ? `the site already holds ${humanBytes(this.#held)} for all peers and its budget is ${humanBytes(this.daemonLimit)}`
          : undefined;
    if (why) {
      s.refused++;
      this.#refused++;
      throw new FerryError('PEER_BUSY', `stream refused: it needs ${humanBytes(bytes)} more of buffer, but ${why}; retry once your other requests to this site have finished`, {
        details: { needed: bytes, sessionHeld: s.held, daemonHeld: this.#held, sessionLimit: this.sessionLimit, daemonLimit: this.daemonLimit },
      });
    }
    s.held += bytes;
    this.#held += bytes;
    if (this.#held > this.#peak) this.#peak = this.#held;
  }

  /** @internal StreamAccount.hold */
  release(s: SessionCount, bytes: number): void {
    s.held -= bytes;
    this.#held -= bytes;
  }
}
