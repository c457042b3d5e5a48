// The bandwidth limiter: with an injected clock, the flow it allows is the
// rate over any window (plus at most one burst), paced in small steps rather
// than in bursts; large objects pass as debt; idle time refills only up to
// the burst; a sleep is cancellable and leaves no listener behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { realTime, TokenBucket, type TimeSource } from '../../../src/replication/token-bucket.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

/** A clock that only moves when someone sleeps (or the test advances it). */
class FakeTime implements TimeSource {
  t = 1000;
  sleeps: number[] = [];
  now(): number {
    return this.t;
  }
  async sleep(ms: number): Promise<void> {
    this.sleeps.push(ms);
    this.t += ms;
  }
}

test('pacing is smooth: after the burst, every piece waits its own share, and the total matches the rate', async () => {
  const time = new FakeTime();
  const rate = 1 * MiB;
  const bucket = new TokenBucket(rate, time);
  assert.equal(bucket.burst, 256 * KiB);
  const piece = 64 * KiB;
  const n = 100;
  const passed: Array<[number, number]> = []; // (time, cumulative bytes) as each piece is allowed through
  let bytes = 0;
  const start = time.now();
  for (let i = 0; i < n; i++) {
    await bucket.take(piece);
    bytes += piece;
    passed.push([time.now(), bytes]);
  }
  // The burst went through without waiting; everything after it at exactly the rate.
  const elapsed = (time.now() - start) / 1000;
  const expected = (n * piece - bucket.burst) / rate;
  assert.ok(Math.abs(elapsed - expected) < 1e-6, `took ${elapsed} s, expected ${expected} s`);
  assert.equal(time.sleeps.length, n - bucket.burst / piece);
  const share = (piece / rate) * 1000;
  for (const s of time.sleeps) assert.ok(Math.abs(s - share) < 1e-6, `a sleep of ${s} ms; each piece should wait ${share} ms`);
  // Over any window, no more than rate * window + burst passed.
  for (let i = 0; i < passed.length; i++) {
    for (let j = i + 1; j < passed.length; j++) {
      const window = (passed[j][0] - passed[i][0]) / 1000;
      const sent = passed[j][1] - passed[i][1] + piece;
      assert.ok(sent <= rate * window + bucket.burst + piece, `${sent} bytes in ${window} s`);
    }
  }
});

test('an object larger than the burst passes as debt, paid by waiting', async () => {
  const time = new FakeTime();
  const bucket = new TokenBucket(1 * MiB, time);
  await bucket.take(4 * MiB); // 256 KiB in the bucket, 3.75 MiB of debt
  assert.deepEqual(time.sleeps, [3750]);
  await bucket.take(1 * MiB);
  assert.deepEqual(time.sleeps, [3750, 1000]);
});

test('idle time refills the bucket only up to the burst', async () => {
  const time = new FakeTime();
  const bucket = new TokenBucket(1 * MiB, time);
  await bucket.take(1 * MiB);
  time.t += 60_000; // a minute idle
  await bucket.take(bucket.burst); // the burst passes at once
  assert.equal(time.sleeps.length, 1);
  await bucket.take(bucket.burst); // but no more than that
  assert.equal(time.sleeps.length, 2);
  assert.ok(Math.abs(time.sleeps[1] - 250) < 1e-6);
});

test('rates are validated; the burst is at least 64 KiB', () => {
  assert.throws(() => new TokenBucket(0), RangeError);
  assert.throws(() => new TokenBucket(-1), RangeError);
  assert.throws(() => new TokenBucket(Number.NaN), RangeError);
  assert.equal(new TokenBucket(1000, new FakeTime()).burst, 64 * KiB);
});

test('real-time sleeps: cancellable, immediate when already aborted, and leave no abort listener behind', async () => {
  const ac = new AbortController();
  const bucket = new TokenBucket(1 * MiB);
  // Many short waits on one signal (as a transfer does, once per object).
  for (let i = 0; i < 30; i++) await bucket.take(bucket.burst / 8 + 8 * KiB, ac.signal);
  assert.equal(getEventListeners(ac.signal, 'abort').length, 0);
  // A long wait is cut short by abort.
  const waiting = bucket.take(64 * MiB, ac.signal);
  setTimeout(() => ac.abort(new Error('stop')), 20);
  await assert.rejects(waiting, /stop/);
  // Already aborted: no wait at all (refused before the next turn of the event loop, not after 10 s).
  const slept = realTime.sleep(10_000, ac.signal).then(() => 'slept', (err: Error) => err.message);
  const nextTurn = new Promise<string>((r) => setImmediate(() => r('still waiting')));
  assert.equal(await Promise.race([slept, nextTurn]), 'stop');
});
