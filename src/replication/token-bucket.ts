// A token bucket for bandwidth limits: `rate` bytes per second with a burst
// of a quarter second, refilled continuously, so the flow is smooth rather
// than bursty. Time is injected for tests.
export interface TimeSource {
  now(): number;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const realTime: TimeSource = {
  now: () => performance.now(),
  sleep: (ms, signal) =>
    new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      // The listener goes when the timer fires: a transfer sleeps once per object, on one signal.
      const onAbort = () => {
        clearTimeout(t);
        reject(signal!.reason);
      };
      const t = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
};

export class TokenBucket {
  readonly rate: number;
  readonly burst: number;
  #tokens: number;
  #last: number;
  readonly #time: TimeSource;

  constructor(bytesPerSecond: number, time: TimeSource = realTime) {
    if (!(bytesPerSecond > 0)) throw new RangeError('bandwidth must be positive');
    this.rate = bytesPerSecond;
    this.burst = Math.max(64 * 1024, bytesPerSecond / 4);
    this.#time = time;
    this.#tokens = this.burst;
    this.#last = time.now();
  }

  #refill(): void {
    const now = this.#time.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#last) / 1000) * this.rate);
    this.#last = now;
  }

  /** Wait until `n` bytes may pass. Objects larger than the burst go through as debt, paid by waiting. */
  async take(n: number, signal?: AbortSignal): Promise<void> {
    this.#refill();
    this.#tokens -= n;
    if (this.#tokens >= 0) return;
    await this.#time.sleep((-this.#tokens / this.rate) * 1000, signal);
    this.#refill();
  }
}
