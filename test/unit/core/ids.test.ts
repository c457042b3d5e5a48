// Snapshot ids (ULIDs) sort in the order they were made within a process,
// also within one millisecond and when the clock steps back: ferry orders the
// snapshots one site took by (time, id), and two taken in the same
// millisecond must not come out in a random order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../../src/core/clock.ts';
import { newSnapshotId, parseSnapshotId, snapshotIdTime } from '../../../src/core/ids.ts';

const sorted = (ids: string[]) => [...ids].sort();

test('ids made in the same millisecond sort in the order they were made', () => {
  const clock = new ManualClock(Date.UTC(2026, 2, 1, 12));
  const ids = Array.from({ length: 200 }, () => newSnapshotId(clock));
  assert.deepEqual(sorted(ids), ids);
  assert.equal(new Set(ids).size, ids.length);
  for (const id of ids) {
    assert.equal(parseSnapshotId(id), id, 'a valid ULID');
    assert.equal(snapshotIdTime(id), clock.now(), 'the time part is the clock\'s millisecond');
  }
});

test('the random part is incremented within a millisecond, and fresh in the next', () => {
  const clock = new ManualClock(Date.UTC(2026, 2, 1, 12));
  const fixed = () => new Uint8Array(10).fill(0x42);
  const a = newSnapshotId(clock, fixed);
  const b = newSnapshotId(clock, fixed);
  assert.equal(a.slice(0, 10), b.slice(0, 10));
  assert.ok(b > a);
  // the same random bytes again would give a's id: the increment is what makes b differ
  assert.notEqual(a, b);
  clock.advance(1);
  const c = newSnapshotId(clock, () => new Uint8Array(10));
  assert.ok(c > b);
  assert.equal(c.slice(10), '0'.repeat(16), 'a new millisecond takes fresh random bits');
});

test('a random part at its maximum carries into the next millisecond, never wraps', () => {
  const clock = new ManualClock(Date.UTC(2026, 2, 1, 12));
  const max = () => new Uint8Array(10).fill(0xff);
  const a = newSnapshotId(clock, max);
  assert.equal(a.slice(10), 'Z'.repeat(16));
  const b = newSnapshotId(clock, max);
  assert.ok(b > a, `${b} after ${a}`);
  assert.equal(snapshotIdTime(b), clock.now() + 1);
});

test('a clock that steps back does not make ids go back', () => {
  const clock = new ManualClock(Date.UTC(2026, 2, 1, 12));
  const a = newSnapshotId(clock);
  clock.advance(-5_000);
  const b = newSnapshotId(clock);
  assert.ok(b > a, `${b} after ${a}`);
  assert.equal(snapshotIdTime(b), snapshotIdTime(a), 'kept at the last millisecond used');
  clock.advance(10_000);
  const c = newSnapshotId(clock);
  assert.ok(c > b);
  assert.equal(snapshotIdTime(c), clock.now());
});

test('each clock has its own sequence: a test clock in the future does not drag the real one along', () => {
  const future = new ManualClock(Date.UTC(2100, 0, 1));
  newSnapshotId(future);
  const now = Date.now();
  const real = newSnapshotId();
  assert.ok(Math.abs(snapshotIdTime(real) - now) < 60_000, 'the real clock\'s ids carry the real time');
});
