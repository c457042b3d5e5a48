// Every duration, rate and count a mirror takes is checked once, with the same
// bounds on the command line, in the site file and on the wire: a value out of
// bounds is refused where it is written, never stored to break the scheduler
// or the volume's other mirrors later. A catalog that already holds such
// values (written before these checks) still opens: status, list, export and
// the other mirrors work, the mirror shows what is wrong, and `mirror set`
// or `mirror remove` repairs it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertRefused, cleanupSites, createSite, pairSites, withCatalog, type TestSite } from '../harness/index.ts';

const sites: TestSite[] = [];
after(() => cleanupSites(sites));

test('out-of-bounds mirror settings are refused; a catalog already holding them recovers, and the other mirrors keep working', { timeout: 240_000 }, async () => {
  const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((n) => createSite(n)));
  sites.push(a, b, c);
  const data = join(a.dir, 'data');
  mkdirSync(data);
  writeFileSync(join(data, 'f.txt'), 'one\n');
  a.defineVolume('app', [data]);
  await Promise.all([a, b, c].map((s) => s.start()));
  await Promise.all([pairSites(a, b), pairSites(a, c)]);

  // Refused where they are written, with the bounds in the message.
  const refused: Array<[string[], RegExp]> = [
    [['--schedule', '100000000w'], /--schedule .*(at most|from)/],
    [['--min-delay', '0.5s'], /--min-delay .*whole seconds/],
    [['--max-delay', '600w'], /--max-delay .*(at most|from)/],
    [['--bandwidth', '0.4'], /--bandwidth .*at least/],
    [['--keep', '1.5'], /--keep/],
    [['--schedule', '0s'], /--schedule .*at least/],
  ];
  for (const [args, msg] of refused) assertRefused(await a.ferry(['mirror', 'create', 'app', '--to', 'b', ...args, '--json']), 2, 'USAGE', msg);
  assert.deepEqual(await a.json(['mirror', 'list']), [], 'a refused mirror was stored');

  await a.json(['mirror', 'create', 'app', '--to', 'b', '--bandwidth', '1.5KiB/s']);
  await a.json(['mirror', 'create', 'app', '--to', 'c']);
  await a.json(['mirror', 'initialize', 'app', '--to', 'b', '--wait']);
  await a.json(['mirror', 'initialize', 'app', '--to', 'c', '--wait']);

  // A catalog written before these checks: the values the review found stored.
  await a.stop();
  withCatalog(a.home, (db) => {
    db.prepare('UPDATE mirrors SET schedule_s = ?, next_run_at = ?, min_delay_s = ?, max_delay_s = ?, bandwidth = ? WHERE peer = ?').run(100_000_000 * 604_800, 100_000_000 * 604_800 * 1000 + Date.now(), 0.5, 600 * 604_800, 0, 'b');
  }, { write: true });
  await a.start();

  const listed = await a.json(['mirror', 'list']);
  assert.equal(listed.length, 2);
  const mb = await a.mirror('app', 'b');
  assert.equal(mb.health, 'warn');
  assert.match(mb.healthReasons.join('; '), /schedule/);
  assert.match(mb.healthReasons.join('; '), /mirror set/);
  // What is in force is within bounds (and never "no limit" for a bandwidth of 0).
  assert.ok(mb.scheduleS >= 1 && mb.scheduleS <= 315_360_000, `schedule in force ${mb.scheduleS}`);
  assert.ok(Number.isInteger(mb.minDelayS), `min delay in force ${mb.minDelayS}`);
  assert.ok(mb.bandwidth >= 1024, `bandwidth in force ${mb.bandwidth}`);
  assert.ok(mb.nextRunAt === null || mb.nextRunAt < Date.now() + 316_000_000_000, `next run ${mb.nextRunAt}`);

  // The other mirror of the volume still updates: its hello names b's mirror as a sibling.
  writeFileSync(join(data, 'g.txt'), 'two\n');
  const uc = await a.json(['mirror', 'update', 'app', '--to', 'c', '--wait']);
  assert.equal(uc.applied, true);

  // Export writes what is in force, and the file it writes passes check.
  const file = join(a.dir, 'exported.yaml');
  assert.equal((await a.ferry(['config', 'export', '--output', file])).code, 0);
  const chk = await a.ferry(['config', 'check', file, '--offline']);
  assert.equal(chk.code, 0, chk.stderr);
  // Applying it writes the values in force: the settings are sound again.
  const applied = await a.json(['config', 'apply', file]);
  assert.ok(applied.actions.some((x: { verb: string; name: string; reason?: string }) => x.verb === 'change' && x.name === 'app@b' && /repairs/.test(x.reason ?? '')), JSON.stringify(applied.actions));
  assert.equal((await a.mirror('app', 'b')).settingsProblems, undefined);
  assert.equal((await a.json(['config', 'apply', file, '--dry-run'])).changed, false, 'applied twice: nothing left to repair');

  // `mirror set` repairs it; `mirror remove` works too.
  assertRefused(await a.ferry(['mirror', 'set', 'app', '--to', 'b', '--schedule', '100000000w', '--json']), 2, 'USAGE', /--schedule/);
  const set = await a.json(['mirror', 'set', 'app', '--to', 'b', '--schedule', '15m', '--min-delay', '1m', '--max-delay', '2h', '--bandwidth', '10MiB/s']);
  assert.equal(set.scheduleS, 900);
  const fixed = await a.mirror('app', 'b');
  assert.deepEqual([fixed.scheduleS, fixed.minDelayS, fixed.maxDelayS, fixed.bandwidth], [900, 60, 7200, 10 * 1024 * 1024]);
  assert.doesNotMatch(fixed.healthReasons.join('; '), /stored|mirror set/);
  assert.ok(fixed.nextRunAt === null || fixed.nextRunAt <= Date.now() + 900_000, `next run ${fixed.nextRunAt}`);
  await a.json(['mirror', 'remove', 'app', '--to', 'b']);
  assert.deepEqual((await a.json(['mirror', 'list'])).map((m: { peer: string }) => m.peer), ['c']);
});
