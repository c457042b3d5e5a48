// The benchmark's disk probe (bench/disk-probe.ts): real files written and fsynced, and kept; the
// warning only when the probe before the runs was much slower than the one after.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeProbe, PROBE_FILE_BYTES, PROBE_FILES, probeDisk, UNSETTLED_RATIO, unsettledWarning } from '../../../bench/disk-probe.ts';

test('the probe writes its files and times them; they stay (a delete would slow what follows)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-probe-'));
  try {
    const p = probeDisk(dir, 'x', 40);
    assert.equal(p.files, 40);
    assert.equal(p.bytes, 40 * PROBE_FILE_BYTES);
    assert.equal(PROBE_FILES, 2000, 'the benchmark\'s probe');
    assert.ok(p.seconds > 0 && p.cpuSeconds > 0, 'timed');
    assert.equal(readdirSync(join(dir, 'probe-x')).length, 40, 'kept');
    assert.match(describeProbe(p), /^40 files of 128 KiB written and fsynced in \d+\.\d\d s \(CPU \d+\.\d\d s\)$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a first probe much slower than the last is a warning; a settled disk, or a probe missing, is not', () => {
  const p = (seconds: number) => ({ files: 1, bytes: 1, seconds, cpuSeconds: 0 });
  assert.match(unsettledWarning(p(6), p(3)) ?? '', /took 2\.0x as long as after them[\s\S]*had not settled/);
  assert.equal(unsettledWarning(p(3 * UNSETTLED_RATIO - 0.1), p(3)), undefined);
  assert.equal(unsettledWarning(p(2), p(3)), undefined, 'slower after the runs: not this warning');
  assert.equal(unsettledWarning(undefined, p(3)), undefined);
});
