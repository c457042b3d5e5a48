// Test knobs (src/core/test-knobs.ts): all named FERRY_TEST_*, listed in one place, read from the
// environment only by the process's entry, and a wrong value refused by name.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TEST_KNOBS, testKnobs, testKnobsFromEnv, withTestKnobs } from '../../../src/core/test-knobs.ts';
import { crashPoint, pausePoint } from '../../../src/core/crash.ts';
import { systemClock } from '../../../src/core/clock.ts';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

test('every knob is FERRY_TEST_*, and the environment is read for them in one place only', () => {
  for (const k of TEST_KNOBS) assert.match(k.env, /^FERRY_TEST_[A-Z_]+$/);
  assert.equal(new Set(TEST_KNOBS.map((k) => k.env)).size, TEST_KNOBS.length);
  // The ferry variables production code may read: the operator's.
  const operators = new Set(['FERRY_HOME', 'FERRY_CONFIG', 'FERRY_DEBUG', 'FERRY_NO_PROGRESS']);
  const findings: string[] = [];
  for (const p of sources(join(ROOT, 'src'))) {
    const rel = relative(ROOT, p);
    readFileSync(p, 'utf8').split('\n').forEach((line, i) => {
      const code = line.replace(/\/\/.*$/, '').trim();
      if (code.startsWith('*') || code.startsWith('/*')) return;
      for (const m of code.matchAll(/env(?:\.|\[['"])(FERRY_[A-Z_]+)/g)) if (!operators.has(m[1])) findings.push(`${rel}:${i + 1}: reads ${m[1]}`);
      if (rel !== 'src/core/test-knobs.ts' && /['"`]FERRY_TEST_/.test(code)) findings.push(`${rel}:${i + 1}: names a test knob`);
    });
  }
  assert.deepEqual(findings, []);
});

test('knobs parse from an environment; a wrong value is refused by name', () => {
  const k = testKnobsFromEnv({ FERRY_TEST_STALL_TIMEOUT_MS: '1500', FERRY_TEST_CRASH_AT: 'a:b, c:d', FERRY_TEST_PAUSE_FILE: '/tmp/x', FERRY_TEST_CLOCK_OFFSET_MS: '-3600000', OTHER: '1' });
  assert.equal(k.stallTimeoutMs, 1500);
  assert.deepEqual(k.crashAt, ['a:b', 'c:d']);
  assert.deepEqual(k.pauseAt, []);
  assert.equal(k.pauseFile, '/tmp/x');
  assert.equal(k.clockOffsetMs, -3_600_000);
  assert.throws(() => testKnobsFromEnv({ FERRY_TEST_PUT_BATCH_BYTES: 'lots' }), /FERRY_TEST_PUT_BATCH_BYTES=lots/);
  assert.throws(() => testKnobsFromEnv({ FERRY_TEST_PUT_BATCH_BYTES: '0' }), /above 0/);
  assert.deepEqual(testKnobsFromEnv({}), { crashAt: [], pauseAt: [] });
});

test('code reads the installed knobs: a pause point, and the clock', async () => {
  assert.equal(await pausePoint('x:y'), false, 'off unless installed');
  crashPoint('x:y'); // not named: returns
  await withTestKnobs({ pauseAt: ['x:y'], pauseFile: '/', clockOffsetMs: 3_600_000 }, async () => {
    assert.equal(await pausePoint('x:y'), true, 'a pause point named by the installed knobs (its file exists: no wait)');
    assert.ok(Math.abs(systemClock.now() - Date.now() - 3_600_000) < 1000);
  });
  assert.deepEqual(testKnobs().pauseAt, [], 'put back after');
  assert.ok(Math.abs(systemClock.now() - Date.now()) < 1000);
});
