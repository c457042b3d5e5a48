// The wait before a retry: doubling from the base up to the cap, spread by
// jitter within its bounds, at least a period for errors retrying cannot
// cure; the in-memory gate with an injected clock, without sleeping.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ManualClock } from '../../../src/core/clock.ts';
import { backoffMs, longestRetryMs, MIRROR_RETRY, RetryGate, retryDelayMs, WORKFLOW_RETRY } from '../../../src/core/backoff.ts';

const mid = () => 0.5;

test('backoff: 5 s, 10 s, 20 s ... capped at 5 min, whatever the count', () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 8].map((n) => backoffMs(n, MIRROR_RETRY, mid)), [5_000, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000]);
  assert.equal(backoffMs(0, MIRROR_RETRY, mid), 5_000, 'no failure counted yet: the base');
  assert.equal(backoffMs(1e9, MIRROR_RETRY, mid), 300_000, 'a huge count neither overflows nor exceeds the cap');
  assert.deepEqual([1, 2, 5, 6].map((n) => backoffMs(n, WORKFLOW_RETRY, mid)), [30_000, 60_000, 480_000, 600_000]);
});

test('jitter: within [1 - j, 1 + j) of the wait, both ends reached', () => {
  assert.equal(backoffMs(1, MIRROR_RETRY, () => 0), 4_000);
  assert.equal(backoffMs(1, MIRROR_RETRY, () => 0.999999), 6_000);
  assert.equal(backoffMs(8, MIRROR_RETRY, () => 0), 240_000);
  fc.assert(fc.property(fc.integer({ min: 1, max: 100 }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (n, r) => {
    const plain = backoffMs(n, MIRROR_RETRY, mid);
    const w = backoffMs(n, MIRROR_RETRY, () => r);
    return w >= plain * 0.8 - 1 && w <= plain * 1.2 + 1 && w <= longestRetryMs(null, MIRROR_RETRY);
  }));
});

test('a failure retrying cannot cure waits at least a period; a transient one only its backoff', () => {
  assert.equal(retryDelayMs({ failures: 1, transient: true, periodMs: 60_000 }, MIRROR_RETRY, mid), 5_000);
  assert.equal(retryDelayMs({ failures: 1, transient: false, periodMs: 60_000 }, MIRROR_RETRY, mid), 60_000);
  assert.equal(retryDelayMs({ failures: 1, transient: false, periodMs: 1_000 }, MIRROR_RETRY, mid), 5_000, 'a short schedule does not make it retry every period');
  assert.equal(retryDelayMs({ failures: 3, transient: false, periodMs: 1_000 }, MIRROR_RETRY, mid), 20_000);
  assert.equal(retryDelayMs({ failures: 2, transient: false, periodMs: null }, MIRROR_RETRY, mid), 10_000, 'no schedule (a pending peer snapshot): the backoff');
  fc.assert(fc.property(fc.integer({ min: 1, max: 60 }), fc.boolean(), fc.option(fc.integer({ min: 1_000, max: 315_360_000_000 }), { nil: null }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (failures, transient, periodMs, r) => {
    const w = retryDelayMs({ failures, transient, periodMs }, MIRROR_RETRY, () => r);
    return w >= MIRROR_RETRY.baseMs * 0.8 && w <= longestRetryMs(periodMs, MIRROR_RETRY) && (transient || periodMs === null || w >= periodMs);
  }));
});

test('RetryGate: due, counted, waits grow, success clears, removed keys forgotten', () => {
  const clock = new ManualClock();
  const g = new RetryGate(MIRROR_RETRY, clock, mid);
  assert.equal(g.due('x'), true);
  assert.deepEqual(g.failed('x'), { failures: 1, retryInMs: 5_000 });
  assert.equal(g.due('x'), false);
  clock.advance(4_999);
  assert.equal(g.due('x'), false);
  clock.advance(1);
  assert.equal(g.due('x'), true);
  assert.deepEqual(g.failed('x', { transient: false, periodMs: 60_000 }), { failures: 2, retryInMs: 60_000 });
  assert.equal(g.due('y'), true, 'keys are independent');
  g.succeeded('x');
  assert.equal(g.due('x'), true);
  assert.equal(g.failures('x'), 0);
  g.failed('y');
  g.retain(['x']);
  assert.equal(g.due('y'), true);
});
