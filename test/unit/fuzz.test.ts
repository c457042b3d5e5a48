// A short fuzz pass over every decoder (test/fuzz/, docs/fuzzing.md), with a
// fixed seed and a fixed number of executions per target, so that it is the
// same pass every time and a regression shows in CI: no input may end in
// anything but acceptance or a FerryError with one of the target's codes.
// Without coverage (measuring it costs time); the long runs, with coverage
// measured or guiding, are `npm run fuzz`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fuzz } from '../fuzz/engine.ts';
import { TARGETS } from '../fuzz/targets/index.ts';

/** Executions per target: a second or less each on an idle machine; the slow ones (files, a site) get fewer. */
const EXECS: Record<string, number> = { 'pack-file': 500, config: 1000, 'local-api': 2500, dashboard: 8000, 'object-stream': 3000, delta: 3000, 'peer-answer': 5000 };
const DEFAULT_EXECS = 15000;

for (const target of TARGETS) {
  test(`fuzz ${target.name}: ${EXECS[target.name] ?? DEFAULT_EXECS} inputs from seed 1, no crash`, async () => {
    await target.setup?.();
    try {
      const stats = await fuzz(target, { seed: 1, execs: EXECS[target.name] ?? DEFAULT_EXECS, minimize: false });
      const crashes = stats.crashes.map((c) => `${c.kind}: ${c.message}\n  input (base64): ${c.input.toString('base64').slice(0, 400)}\n${c.stack}`);
      assert.deepEqual(crashes, [], `reproduce with: npm run fuzz -- --target ${target.name} --seconds 10`);
      assert.ok(stats.execs >= (EXECS[target.name] ?? DEFAULT_EXECS));
    } finally {
      await target.teardown?.();
    }
  });
}
