// Min delay, pause and resume through real daemons: a manual update within
// --min-delay is refused (exit 4, MIRROR_STATE) unless --force; a paused
// mirror takes no scheduled updates and needs --force for a manual one;
// resume brings the schedule back.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertTreesEqual } from '../helpers.ts';
import { assertRefused, cleanupSites, createSite, pairSites, waitFor, type TestSite } from '../harness/index.ts';

const sites: TestSite[] = [];
after(() => cleanupSites(sites));

test('min-delay refuses a manual update unless forced; pause stops the schedule, resume restarts it', async () => {
  const [a, b] = await Promise.all([createSite('a'), createSite('b')]);
  sites.push(a, b);
  const manualData = join(a.dir, 'manual');
  const data = join(a.dir, 'data');
  for (const d of [manualData, data]) {
    mkdirSync(d);
    writeFileSync(join(d, 'f.txt'), 'one\n');
  }
  a.defineVolume('manual', [manualData]);
  a.defineVolume('vol', [data]);
  await Promise.all([a.start({ tick: 200 }), b.start({ tick: 200 })]);
  await pairSites(a, b);
  // Two mirrors: one updated by hand with a min delay (no schedule, so no scheduled update can
  // make a manual one busy), one on a 2 s schedule for pause and resume.
  await Promise.all([
    a.json(['mirror', 'create', 'manual', '--to', 'b', '--min-delay', '1h']),
    // (no min delay here: scheduled updates respect it too, and this one must run after resume)
    a.json(['mirror', 'create', 'vol', '--to', 'b', '--schedule', '2s']),
  ]);
  const [init] = await Promise.all([
    a.json(['mirror', 'initialize', 'manual', '--to', 'b', '--wait']),
    a.json(['mirror', 'initialize', 'vol', '--to', 'b', '--wait']),
  ]);
  const shown = await Promise.all(['manual', 'vol'].map((v) => b.json(['volume', 'show', v])));
  const manualReplica = shown[0].members[0].path as string;
  const replica = shown[1].members[0].path as string;

  // Within the min delay: refused, and nothing moves.
  writeFileSync(join(manualData, 'f.txt'), 'two\n');
  const refused = await a.ferry(['mirror', 'update', 'manual', '--to', 'b', '--wait', '--json']);
  assertRefused(refused, 4, 'MIRROR_STATE', /within its min delay/);
  const m0 = a.mirrorRow('manual', 'b');
  assert.equal(m0.base, init.snapshot);
  assert.equal(m0.state, 'idle');
  assert.equal(m0.failures, 0);
  // --force passes.
  const forced = await a.json(['mirror', 'update', 'manual', '--to', 'b', '--force', '--wait']);
  assert.notEqual(forced.snapshot, init.snapshot);
  assertTreesEqual(manualReplica, manualData);
  assert.equal(a.mirrorRow('manual', 'b').base, forced.snapshot);

  // Pause: once quiet, no scheduled update runs, even well past the next run time.
  await a.json(['mirror', 'pause', 'vol', '--to', 'b']);
  const paused = await waitFor('the mirror to be quiet after the pause', () => {
    const m = a.mirrorRow('vol', 'b');
    return m.state === 'updating' ? undefined : m;
  });
  assert.equal(paused.paused, true);
  writeFileSync(join(data, 'f.txt'), 'three: written while paused\n');
  // The daemon's clock is this machine's: wait two schedule periods past the next run time.
  const dueBy = Math.max(paused.nextRunAt ?? 0, Date.now()) + 2 * 2000;
  await waitFor('two schedule periods past the next run time', () => (Date.now() > dueBy ? true : undefined), 20_000, 200);
  const still = await a.mirror('vol', 'b');
  assert.equal(still.base, paused.base, 'a paused mirror took a scheduled update');
  assert.equal(still.lastSuccessAt, paused.lastSuccessAt);
  assert.equal(still.paused, true);
  assert.match((await a.ferry(['mirror', 'list'])).stdout, /vol@b +b:vol +paused /);
  assert.equal(still.state, 'paused', 'status shows a paused mirror at rest as paused');

  // A manual update of a paused mirror needs --force.
  assertRefused(await a.ferry(['mirror', 'update', 'vol', '--to', 'b', '--wait', '--json']), 4, 'MIRROR_STATE', /paused/);
  const manual = await a.json(['mirror', 'update', 'vol', '--to', 'b', '--force', '--wait']);
  assertTreesEqual(replica, data);
  const afterManual = await a.mirror('vol', 'b');
  assert.equal(afterManual.base, manual.snapshot);
  assert.equal(afterManual.paused, true, 'a forced update does not resume the mirror');

  // Resume: the schedule takes over again.
  await a.json(['mirror', 'resume', 'vol', '--to', 'b']);
  writeFileSync(join(data, 'f.txt'), 'four: after resume\n');
  const resumedAt = Date.now();
  await waitFor('a scheduled update after resume', () => {
    const m = a.mirrorRow('vol', 'b');
    return m.baseTime! > resumedAt && m.state === 'idle' ? m : undefined;
  }, 60_000, 200);
  const resumed = await a.mirror('vol', 'b');
  assert.equal(resumed.paused, false);
  assert.equal(resumed.health, 'up');
  assert.equal(resumed.lastError, null);
  assertTreesEqual(replica, data);
});
