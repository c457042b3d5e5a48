// Two secondaries of one primary, on three real daemons: london takes the volume over without
// re-pointing tokyo (--no-repoint), and then a plain failover at tokyo would make a second primary
// that knows nothing of london (the soak, seed 1: two primaries, no split brain to show). The old
// primary, told of the second failover, refuses it and says what to do: make tokyo follow london, or
// force the failover if london is lost. Found by the soak (test/soak/known.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { cleanupSites, KiB, createSite, pairPlain, writeVolumeData, type TestSite } from '../harness/index.ts';

test('a plain failover at a secondary whose primary a sibling already took over is refused, saying to re-point it or force', async () => {
  const sites: TestSite[] = [];
  try {
    const [seattle, london, tokyo] = await Promise.all([createSite('seattle-sf'), createSite('london-sf'), createSite('tokyo-sf')]);
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
