// Time and randomness are injected so schedules, retention and ids can be
// tested without sleeping.
import { randomBytes } from 'node:crypto';

export interface Clock {
  /** milliseconds since the epoch */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

export type RandomSource = (n: number) => Uint8Array;
export const systemRandom: RandomSource = (n) => randomBytes(n);

/** A clock that only moves when told: for tests. */
export class ManualClock implements Clock {
  #t: number;
  constructor(start = Date.UTC(2026, 0, 1)) {
    this.#t = start;
  }
  now(): number {
    return this.#t;
  }
  advance(ms: number): void {
    this.#t += ms;
  }
  set(ms: number): void {
    this.#t = ms;
  }
}
