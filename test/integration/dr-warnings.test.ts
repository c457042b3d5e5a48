// Snapshots a DR workflow takes tell what went wrong while they were taken, like `snapshot
// create`: the failover-* snapshot of a failover and, above all, the failback-kept-* snapshot of a
// failback name their capture's warnings and the command exits 8. The warning here is a post hook
// that fails (it fails only once a flag file exists, so the mirror's own updates stay clean).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanupSites, createSite, pairSites, writeVolumeData, KiB, type TestSite } from '../harness/index.ts';

const sites: TestSite[] = [];
after(() => cleanupSites(sites));

test('failover and failback report the capture warnings of the snapshots they take (exit 8)', async () => {
  const [a, b] = await Promise.all([createSite('warn-east'), createSite('warn-west')]);
  sites.push(a, b);
  const data = join(a.dir, 'data');
  writeVolumeData(data, 2, 16 * KiB);
  const flagA = join(a.dir, 'hook-fails');
  const flagB = join(b.dir, 'hook-fails');
  a.defineVolume('vol', [data], { post: { command: `test ! -e ${flagA}`, timeout: 30 } });
  await Promise.all([a.start(), b.start()]);
  await pairSites(a, b);
  await a.json(['mirror', 'create', 'vol', '--to', b.name]);
  await a.json(['mirror', 'initialize', 'vol', '--to', b.name, '--wait']);
  await b.json(['volume', 'set', 'vol', '--post', `test ! -e ${flagB}`]);

  writeFileSync(flagB, '');
  const fo = await b.ferry(['failover', 'vol', '--json']);
  assert.equal(fo.code, 8, `failover: ${fo.stdout}\n${fo.stderr}`);
  assert.equal(fo.json.warnings.length, 1, JSON.stringify(fo.json.warnings));
  assert.match(fo.json.warnings[0].message, /post hook/);

  // east learns of the failover (the notice), then fails back: its kept snapshot's post hook fails
  writeFileSync(flagA, '');
  const fb = await a.ferry(['failback', 'vol']);
  assert.equal(fb.code, 8, `failback: ${fb.stdout}\n${fb.stderr}`);
  assert.match(fb.stderr, /1 warning\(s\) while capturing the kept snapshot failback-kept-\S+ \(writes made here at a path it skipped are not in it\)/);
  assert.match(fb.stderr, /warning: .*post hook/);
  const events = (await a.ferry(['events', '--kind', 'failback', '--json'])).stdout.split('\n').filter((l) => l.includes('"warning"'));
  assert.equal(events.length, 1, 'one warning event names the kept snapshot and its paths');
});
