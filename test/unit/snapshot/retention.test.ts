import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { applyRetention, parseRetention, type RetentionCandidate } from '../../../src/snapshot/retention.ts';

const H = 3_600_000;
const T0 = Date.UTC(2026, 10, 1);

function hourly(n: number): RetentionCandidate[] {
  return Array.from({ length: n }, (_, i) => ({ id: `s${String(i).padStart(4, '0')}`, time: T0 + i * H, name: null, held: false }));
}

test('empty policy keeps everything', () => {
  const d = applyRetention(hourly(10), {});
  assert.equal(d.remove.length, 0);
});

test('keep last N keeps the newest N', () => {
  const d = applyRetention(hourly(10), { last: 3 });
  assert.deepEqual(d.keep.map((k) => k.id), ['s0009', 's0008', 's0007']);
  assert.equal(d.remove.length, 7);
});

test('daily keeps the newest snapshot of each of the last N days', () => {
  const snaps = hourly(24 * 5); // five days, hourly
  const d = applyRetention(snaps, { daily: 3 });
  const kept = d.keep.map((k) => new Date(snaps.find((s) => s.id === k.id)!.time).toISOString());
  assert.deepEqual(kept, ['2026-11-05T23:00:00.000Z', '2026-11-04T23:00:00.000Z', '2026-11-03T23:00:00.000Z']);
});

test('hourly for a day plus daily for a week', () => {
  const snaps = hourly(24 * 10);
  const d = applyRetention(snaps, { hourly: 24, daily: 7 });
  assert.equal(d.keep.length, 24 + 6); // the newest day's last snapshot counts for both
});

test('named and held snapshots are never removed, and the newest is kept', () => {
  const snaps = hourly(10);
  snaps[2].name = 'before-upgrade';
  snaps[4].held = true;
  const d = applyRetention(snaps, { last: 1 });
  assert.ok(!d.remove.includes('s0002'));
  assert.ok(!d.remove.includes('s0004'));
  assert.ok(!d.remove.includes('s0009'));
  assert.equal(d.remove.length, 7);
});

test('retention never removes named, held or newest, and keeps at least min(last, n)', () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ dt: fc.integer({ min: 0, max: 40 * 24 * H }), named: fc.boolean(), held: fc.boolean() }), { minLength: 1, maxLength: 60 }),
      fc.record({ last: fc.integer({ min: 0, max: 5 }), hourly: fc.integer({ min: 0, max: 30 }), daily: fc.integer({ min: 0, max: 10 }), weekly: fc.integer({ min: 0, max: 4 }), monthly: fc.integer({ min: 0, max: 3 }) }),
      (raw, policy) => {
        const snaps = raw.map((r, i) => ({ id: `s${String(i).padStart(3, '0')}`, time: T0 + r.dt, name: r.named ? `n${i}` : null, held: r.held }));
        const p = parseRetention(policy);
        const d = applyRetention(snaps, p);
        assert.equal(d.keep.length + d.remove.length, snaps.length);
        const newest = [...snaps].sort((a, b) => b.time - a.time || (a.id < b.id ? 1 : -1))[0];
        assert.ok(!d.remove.includes(newest.id));
        for (const s of snaps) if (s.name || s.held) assert.ok(!d.remove.includes(s.id));
        if (p.last) assert.ok(d.keep.length >= Math.min(p.last, snaps.length));
      },
    ),
  );
});

test('bad policies are refused with a clear message', () => {
  assert.throws(() => parseRetention({ forever: 1 }), /unknown retention rule forever/);
  assert.throws(() => parseRetention({ last: -1 }), /whole number/);
  assert.throws(() => parseRetention({ daily: 1.5 }), /whole number/);
});

test('with the site\'s order given, newest and last N follow it, not the times (another site\'s clock may be ahead)', () => {
  // s0000..s0003 taken here, hourly; x0 received from a site whose clock is a day ahead, recorded between s0001 and s0002
  const snaps: RetentionCandidate[] = [
    ...hourly(4).map((s, i) => ({ ...s, order: i < 2 ? i : i + 1 })),
    { id: 'x0', time: T0 + 24 * H, name: null, held: false, order: 2 },
  ];
  const d = applyRetention(snaps, { last: 2 });
  assert.deepEqual(d.keep.map((k) => k.id), ['s0003', 's0002']);
  assert.deepEqual(d.keep[0].reasons, ['newest', 'last 2']);
  // buckets still go by each snapshot's own time: x0's day is a day of its own
  const daily = applyRetention(snaps, { daily: 2 });
  assert.deepEqual(daily.keep.map((k) => k.id).sort(), ['s0003', 'x0']);
});
