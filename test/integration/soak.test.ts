// A short soak (docs/soak.md): two real sites on loopback through fault proxies, about a minute of
// seeded random actions and faults with the checker after every step, then every fault healed and
// everything checked once more. The seed is fixed, so it is the same actions every time as far as
// the machine's timing allows; a violation names its step, and `npm run soak -- --seed 20261206
// --minutes 1` runs the same soak with a reproduction script and a shrunk action list on failure.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../soak/harness.ts';
import { lastLine, runSoak, type SoakResult } from '../soak/run.ts';
import { renderScript } from '../soak/repro.ts';

const SEED = 20261206;
let result: SoakResult | undefined;

test(`a one-minute soak (seed ${SEED}, two sites): every step checked, no violation`, { timeout: 20 * 60_000 }, async () => {
  const lines: string[] = [];
  result = await runSoak({ seed: SEED, sites: 2, minutes: 1, print: (s) => lines.push(s) });
  const r = result;
  const tail = lines.slice(-60).join('\n');
  assert.ok(r.steps >= 5, `only ${r.steps} steps ran:\n${tail}`);
  assert.deepEqual(
    r.violations.map((v) => `[${v.check}] step ${v.step}: ${v.message.slice(0, 600)}`),
    [],
    `${lastLine(r)}; reproduce with: npm run soak -- --seed ${SEED} --minutes 1\n${tail}`,
  );
  assert.match(lastLine(r), /^soak: \d+ steps, \d+ faults, 0 violations$/);
});

test('the reproduction script of that soak is valid bash', (t) => {
  if (!result) return t.skip('the soak did not run');
  const tmp = tempDir('ferry-soak-script-');
  try {
    const file = join(tmp.path, 'repro.sh');
    writeFileSync(file, renderScript({ seed: SEED, sites: 2, ops: result.ops }));
    execFileSync('bash', ['-n', file]);
  } finally {
    tmp.cleanup();
  }
});
