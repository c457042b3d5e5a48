// Transport fit (replication/link-fit.ts): deltas when they cost less time per stored byte than
// whole objects over the measured link; the setting overrides; the other way is tried again after a day.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chooseDeltas, DEFAULT_DELTA_BYTES_PER_SECOND, measureLink, MIN_MEASURED_BYTES, NEAR_ASSUMED_MARGIN, NEAR_RTT_MS, RETRY_OTHER_WAY_MS, sendMeasure, SWITCH_MARGIN } from '../../../src/replication/link-fit.ts';
import type { TransferStats } from '../../../src/replication/sender.ts';

const MiB = 1024 * 1024;
const NOW = 1_800_000_000_000;
const rate = (mibPerS: number, ageMs = 0) => ({ bytesPerSecond: mibPerS * MiB, at: NOW - ageMs });

test('the setting wins: always and never whatever the link', () => {
  assert.equal(chooseDeltas('always', { whole: rate(1000) }, null, NOW).deltas, true);
  assert.equal(chooseDeltas('never', { whole: rate(1) }, 1 * MiB, NOW).deltas, false);
});

test('auto: deltas until the link is measured, then the quicker way per stored byte', () => {
  const unmeasured = chooseDeltas('auto', undefined, null, NOW);
  assert.equal(unmeasured.deltas, true);
  assert.match(unmeasured.reason, /not measured/);
  // Loopback: whole objects arrive faster than the assumed delta rate.
  const fast = chooseDeltas('auto', { whole: rate(110) }, null, NOW);
  assert.equal(fast.deltas, false);
  assert.match(fast.reason, /whole objects arrive sooner/);
  // A 200 Mbit/s link: slower than making deltas.
  assert.equal(chooseDeltas('auto', { whole: rate(22) }, null, NOW).deltas, true);
  // A measured delta rate replaces the assumed one, both ways.
  assert.equal(chooseDeltas('auto', { whole: rate(40), delta: rate(30) }, null, NOW).deltas, false);
  assert.equal(chooseDeltas('auto', { whole: rate(40), delta: rate(90) }, null, NOW).deltas, true);
  assert.ok(DEFAULT_DELTA_BYTES_PER_SECOND > 22 * MiB && DEFAULT_DELTA_BYTES_PER_SECOND < 110 * MiB);
});

test('auto: a bandwidth limit caps the whole rate, measured or not', () => {
  const capped = chooseDeltas('auto', { whole: rate(500) }, 10 * MiB, NOW);
  assert.equal(capped.deltas, true);
  assert.match(capped.reason, /bandwidth limit/);
  assert.equal(chooseDeltas('auto', undefined, 5 * MiB, NOW).deltas, true);
  // A limit above what deltas reach leaves whole objects the quicker way.
  assert.equal(chooseDeltas('auto', { whole: rate(500) }, 400 * MiB, NOW).deltas, false);
});

test('auto: the way not taken is tried again once its figure is a day old', () => {
  const stale = RETRY_OTHER_WAY_MS + 1000;
  // Deltas chosen on a slow day; the whole rate is old: whole once.
  const retryWhole = chooseDeltas('auto', { whole: rate(20, stale), delta: rate(40) }, null, NOW);
  assert.equal(retryWhole.deltas, false);
  assert.match(retryWhole.reason, /trying whole objects again/);
  // Whole chosen; the delta rate is old: deltas once.
  const retryDeltas = chooseDeltas('auto', { whole: rate(100), delta: rate(40, stale) }, null, NOW);
  assert.equal(retryDeltas.deltas, true);
  // Fresh figures, or a delta rate never measured (the assumed one is used): no retry.
  assert.equal(chooseDeltas('auto', { whole: rate(100), delta: rate(40, 1000) }, null, NOW).deltas, false);
  assert.equal(chooseDeltas('auto', { whole: rate(100, stale) }, null, NOW).deltas, false);
  // Under a bandwidth limit the whole rate cannot have changed: no retry of whole objects.
  assert.equal(chooseDeltas('auto', { whole: rate(20, stale), delta: rate(40) }, 10 * MiB, NOW).deltas, true);
});

test('auto: the way in use (measured last) stays unless the other is SWITCH_MARGIN quicker', () => {
  // Loopback on two cores: the initialize measured whole at 56, an update at 40.6, deltas assumed 48:
  // whole stays (48 is not 25 % above 40.6), where the plain comparison flipped to deltas.
  const d = DEFAULT_DELTA_BYTES_PER_SECOND / MiB;
  const near = chooseDeltas('auto', { whole: rate(d / 1.18) }, null, NOW);
  assert.equal(near.deltas, false);
  assert.match(near.reason, /within 25 % of each other, staying with whole objects/);
  assert.equal(chooseDeltas('auto', { whole: rate(d / (SWITCH_MARGIN + 0.05)) }, null, NOW).deltas, true);
  // Deltas in use (measured after whole): whole must be 25 % quicker to take over.
  assert.equal(chooseDeltas('auto', { whole: rate(21.8, 1000), delta: rate(17.8) }, null, NOW).deltas, true);
  assert.equal(chooseDeltas('auto', { whole: rate(30, 1000), delta: rate(17.8) }, null, NOW).deltas, false);
  // Whole in use (measured after deltas): the same margin the other way.
  assert.equal(chooseDeltas('auto', { whole: rate(40), delta: rate(45, 1000) }, null, NOW).deltas, false);
  assert.equal(chooseDeltas('auto', { whole: rate(40), delta: rate(60, 1000) }, null, NOW).deltas, true);
});

test('auto: on a near link an initialize\'s slow whole figure does not make the first update send deltas on an assumed rate', () => {
  const d = DEFAULT_DELTA_BYTES_PER_SECOND / MiB;
  // The benchmark's loopback initialize after a mass delete: whole 33.1 MiB/s, round trip 1.6 ms.
  const loop = chooseDeltas('auto', { whole: rate(33.1), rttMs: 1.6 }, null, NOW);
  assert.equal(loop.deltas, false);
  assert.match(loop.reason, /a near link \(round trip 1.6 ms\)/);
  // The same figure over the WAN (54 ms): deltas, as before.
  assert.equal(chooseDeltas('auto', { whole: rate(33.1), rttMs: 53.8 }, null, NOW).deltas, true);
  // A slow LAN (100 Mbit/s, well under half the assumed rate): deltas.
  assert.equal(chooseDeltas('auto', { whole: rate(d / NEAR_ASSUMED_MARGIN - 1), rttMs: 0.4 }, null, NOW).deltas, true);
  assert.equal(chooseDeltas('auto', { whole: rate(d / NEAR_ASSUMED_MARGIN + 1), rttMs: NEAR_RTT_MS - 1 }, null, NOW).deltas, false);
  // Once deltas are measured, the measured figures decide with the usual margin, near or not.
  assert.equal(chooseDeltas('auto', { whole: rate(33.1, 1000), delta: rate(60), rttMs: 1.6 }, null, NOW).deltas, true);
});

const stats = (storedBytes: number, putSeconds: number, deltas: number, minRttMs?: number): TransferStats => ({
  objectsOffered: 0, objectsSent: 0, bytesSent: 0, rawBytesSent: 0, roundTrips: 0, deltas, putSeconds, storedBytes, ...(minRttMs !== undefined ? { minRttMs } : {}),
});

test('measureLink: each way measured by its own sends; small transfers keep the figures', () => {
  const whole = measureLink(undefined, sendMeasure(stats(100 * MiB, 1, 0, 0.42), false), NOW);
  assert.deepEqual(whole, { whole: { bytesPerSecond: 100 * MiB, at: NOW }, rttMs: 0.4 });
  // An early stream counts with the send after it (both whole).
  const withEarly = measureLink(undefined, sendMeasure(stats(10 * MiB, 0.5, 0), false, { bytes: 30 * MiB, seconds: 1.5 }), NOW);
  assert.equal(withEarly.whole!.bytesPerSecond, 20 * MiB);
  const both = measureLink(whole, sendMeasure(stats(50 * MiB, 2, 12, 3), true), NOW + 1);
  assert.deepEqual(both, { whole: { bytesPerSecond: 100 * MiB, at: NOW }, delta: { bytesPerSecond: 25 * MiB, at: NOW + 1 }, rttMs: 3 });
  // A delta base with nothing sent as a delta (only new files) measured whole.
  assert.ok(measureLink(undefined, sendMeasure(stats(50 * MiB, 1, 0), true), NOW).whole);
  // Too small to tell: unchanged, but for the round trip.
  const small = measureLink(both, sendMeasure(stats(MIN_MEASURED_BYTES - 1, 0.01, 0, 1), false), NOW + 2);
  assert.deepEqual(small, { ...both, rttMs: 1 });
});
