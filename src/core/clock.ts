// Time and randomness are injected so schedules, retention and ids can be
// tested without sleeping.
import { randomBytes } from 'node:crypto';
import { testKnobs } from './test-knobs.ts';

export interface Clock {
  /** milliseconds since the epoch */
  now(): number;
}

/**
 * The test knob FERRY_TEST_CLOCK_OFFSET_MS shifts this process's clock (a site whose clock is off by
 * that much), so tests can show that nothing between sites depends on their clocks agreeing.
 */
export const systemClock: Clock = { now: () => Date.now() + (testKnobs().clockOffsetMs ?? 0) };

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
