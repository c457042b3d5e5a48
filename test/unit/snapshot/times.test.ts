// Times round-trip through capture (toMicros) and restore (timeArg) to the
// microsecond, before 1970 as after: Node takes a negative number of seconds
// for 'now', so times go to utimes as decimal strings.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { futimesSync, lstatSync, lutimesSync, openSync, closeSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { toMicros } from '../../../src/snapshot/capture.ts';
import { timeArg } from '../../../src/snapshot/materialize.ts';
import { tempDir } from '../../helpers.ts';

const CASES = [
  0n, 1n, 999n, 1000n, -1n, -999n, -1000n, -1001n, -500n,
  1_700_000_000_123_456_789n, -315_619_199_876_543_211n, // 1960-01-01 00:00:00.123456789
  -2_000_000_000_000_000_000n, 4_000_000_000_999_999_999n, // 1906, 2096
];

test('toMicros floors to the microsecond, negative times included', () => {
  assert.equal(toMicros(-1n), -1000n);
  assert.equal(toMicros(-1000n), -1000n);
  assert.equal(toMicros(-1001n), -2000n);
  assert.equal(toMicros(1999n), 1000n);
  assert.equal(toMicros(-315_619_199_876_543_211n), -315_619_199_876_544_000n);
});

test('a captured time set with utimes, futimes and lutimes reads back as the same microsecond', () => {
  const dir = tempDir();
  try {
    const f = join(dir.path, 'f');
    const l = join(dir.path, 'l');
    writeFileSync(f, 'x');
    symlinkSync('f', l);
    for (const ns of CASES) {
      const want = toMicros(ns);
      const t = timeArg(want);
      utimesSync(f, t, t);
      assert.equal(toMicros(lstatSync(f, { bigint: true }).mtimeNs), want, `utimes ${ns} (${t})`);
      utimesSync(f, 0, 0);
      const fd = openSync(f, 'r+');
      try {
        futimesSync(fd, t, t);
      } finally {
        closeSync(fd);
      }
      assert.equal(toMicros(lstatSync(f, { bigint: true }).mtimeNs), want, `futimes ${ns} (${t})`);
      lutimesSync(l, t, t);
      assert.equal(toMicros(lstatSync(l, { bigint: true }).mtimeNs), want, `lutimes ${ns} (${t})`);
    }
  } finally {
    dir.cleanup();
  }
});
