// Two secondaries of one primary, on three real daemons: london takes the volume over without
// re-pointing tokyo (--no-repoint), and then a plain failover at tokyo would make a second primary
// that knows nothing of london (the soak, seed 1: two primaries, no split brain to show). The old
// primary, told of the second failover, refuses it and says what to do: make tokyo follow london, or
// force the failover if london is lost. A forced one goes ahead, and tokyo records the split brain
// with london (the old primary's answer names it) beside its broken-off relation to seattle, and
// `ferry status` shows it. Found by the soak (seed 1, 12 minutes, step 6).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { cleanupSites, createSite, KiB, pairPlain, writeVolumeData, type TestSite } from '../harness/index.ts';

/** seattle's volume mirrored to london and tokyo (all three paired), then london fails over with --no-repoint. */
async function londonTookOver(sites: TestSite[], tag: string): Promise<{ seattle: TestSite; london: TestSite; tokyo: TestSite }> {
  const [seattle, london, tokyo] = await Promise.all([createSite(`seattle-${tag}`), createSite(`london-${tag}`), createSite(`tokyo-${tag}`)]);
  sites.push(seattle, london, tokyo);
  const data = join(seattle.dir, 'data');
  writeVolumeData(data, 2, 64 * KiB);
  seattle.defineVolume('vol', [data]);
  await Promise.all([seattle.start(), london.start(), tokyo.start()]);
  await Promise.all([pairPlain(seattle, london), pairPlain(seattle, tokyo), pairPlain(london, tokyo)]);
  for (const to of ['london', 'tokyo']) {
    await seattle.json(['mirror', 'create', 'vol', '--to', to]);
    await seattle.json(['mirror', 'initialize', 'vol', '--to', to, '--wait']);
  }
  await london.json(['failover', 'vol', '--no-repoint']);
  return { seattle, london, tokyo };
}

test('a plain failover at a secondary whose primary a sibling already took over is refused, saying to re-point it or force', async () => {
  const sites: TestSite[] = [];
  try {
    const { seattle, london, tokyo } = await londonTookOver(sites, 'sf');

    await tokyo.refused(['failover', 'vol'], 4, 'MIRROR_STATE', /london already took vol over from seattle[\s\S]*mirror repoint vol --to tokyo[\s\S]*--force/);
    assert.equal((await tokyo.volumeStatus('vol')).role, 'secondary', 'tokyo stays a secondary');
    assert.notEqual((await seattle.mirror('vol', 'tokyo')).state, 'broken-off', "seattle's mirror to tokyo is not broken off by a refused notice");
    // As the refusal says: london re-points tokyo, which then follows london.
    await london.json(['mirror', 'repoint', 'vol', '--to', 'tokyo']);
    assert.equal(tokyo.catalog((db) => (db.prepare("SELECT source_site FROM secondaries WHERE volume = 'vol'").get() as { source_site: string }).source_site), london.id);
  } finally {
    await cleanupSites(sites);
  }
});

test('a forced failover at a secondary whose primary a sibling already took over records the split brain against that sibling', async () => {
  const sites: TestSite[] = [];
  try {
    const { seattle, london, tokyo } = await londonTookOver(sites, 'sff');

    const fo = await tokyo.json(['failover', 'vol', '--force']);
    assert.equal(fo.splitBrainWith, 'london', 'the failover says whom it is a second primary beside');
    assert.equal((await tokyo.volumeStatus('vol')).role, 'primary');
    // Recorded: tokyo's relation to seattle stays broken off (seattle may fail back to it), and the
    // failover notice names london; status shows the split brain with london.
    const row = tokyo.catalog((db) => db.prepare("SELECT source_site, state, json_extract(failover_notice, '$.splitBrainWith.site') AS sibling FROM secondaries WHERE volume = 'vol'").get()) as { source_site: string; state: string; sibling: string };
    assert.deepEqual({ ...row }, { source_site: seattle.id, state: 'broken-off', sibling: london.id });
    const sec = (await tokyo.volumeStatus('vol')).secondary;
    assert.equal(sec.notice.splitBrainWith.name, 'london');
    const human = await tokyo.ferry(['status']);
    assert.match(human.stdout, /split brain with london \(vol there\): it took vol over from seattle first/);
    // seattle broke both mirrors off: it yields to either by failback, nothing is dropped.
    assert.equal((await seattle.mirror('vol', 'tokyo')).state, 'broken-off');
    assert.equal((await seattle.mirror('vol', 'london')).state, 'broken-off');
  } finally {
    await cleanupSites(sites);
  }
});
