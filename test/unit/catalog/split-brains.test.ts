// Split brains a site knows of (src/catalog/split-brains.ts): kept for the volume, whatever becomes of
// the relation they were found through; gone when one of the two sites follows the other, or the
// volume is removed here. A catalog from before the table carries over the ones its failover notices
// recorded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ManualClock } from '../../../src/core/clock.ts';
import { Catalog } from '../../../src/catalog/catalog.ts';
import { addSecondary, endSecondary } from '../../../src/catalog/secondaries.ts';
import { clearSplitBrain, listSplitBrains, recordSplitBrain } from '../../../src/catalog/split-brains.ts';
import { forgetVolume } from '../../../src/catalog/volumes.ts';
import { recentEvents } from '../../../src/catalog/events.ts';
import { tempDir } from '../../helpers.ts';

const SEATTLE = 'S'.repeat(52);
const LONDON = 'L'.repeat(52);

function volume(cat: Catalog, name: string): void {
  cat.db.run("INSERT INTO volumes (name, role, created_at) VALUES (?, 'primary', 0)", name);
}

test('a split brain outlives the relation it was found through, and goes when one site follows the other or the volume is removed', () => {
  const tmp = tempDir();
  try {
    const cat = Catalog.create(join(tmp.path, 'catalog.db'), { id: 'T'.repeat(52), name: 'tokyo' }, new ManualClock(1000));
    volume(cat, 'vol');
    addSecondary(cat, 'vol', SEATTLE, 'vol', null);
    recordSplitBrain(cat, 'vol', { site: LONDON, remoteVolume: 'vol-l', oldPrimary: SEATTLE });
    recordSplitBrain(cat, 'vol', { site: LONDON, remoteVolume: 'other', oldPrimary: null }); // the first record stays
    endSecondary(cat, 'vol'); // seattle failed back here: the relation goes
    assert.deepEqual(listSplitBrains(cat, 'vol'), [{ volume: 'vol', site: LONDON, remoteVolume: 'vol-l', oldPrimary: SEATTLE, foundAt: 1000 }]);
    assert.deepEqual(clearSplitBrain(cat, 'vol', SEATTLE, 'not this one'), [], 'a split brain with another site is not touched');
    // This site follows seattle again: nothing to do with london.
    addSecondary(cat, 'vol', SEATTLE, 'vol', null);
    assert.equal(listSplitBrains(cat, 'vol').length, 1);
    endSecondary(cat, 'vol');
    // It follows london: over, with an event saying why.
    addSecondary(cat, 'vol', LONDON, 'vol-l', null);
    assert.deepEqual(listSplitBrains(cat, 'vol'), []);
    assert.deepEqual(JSON.parse(recentEvents(cat, 1, 'vol')[0].detail), { site: LONDON, remoteVolume: 'vol-l', reason: 'this site follows it now' });
    recordSplitBrain(cat, 'vol', { site: LONDON, remoteVolume: 'vol-l', oldPrimary: null });
    forgetVolume(cat, 'vol');
    assert.deepEqual(listSplitBrains(cat), []);
    cat.close();
  } finally {
    tmp.cleanup();
  }
});

test('a catalog from before the table gets the split brains its failover notices recorded, once', () => {
  const tmp = tempDir();
  try {
    const path = join(tmp.path, 'catalog.db');
    const cat = Catalog.create(path, { id: 'T'.repeat(52), name: 'tokyo' }, new ManualClock(1000));
    volume(cat, 'vol');
    addSecondary(cat, 'vol', SEATTLE, 'vol', null);
    cat.db.run("UPDATE secondaries SET state = 'broken-off', failover_notice = ?, updated_at = 77 WHERE volume = 'vol'", JSON.stringify({ state: 'told', attempts: 1, lastAttemptAt: 5, splitBrainWith: { site: LONDON, volume: 'vol-l', name: 'london' } }));
    cat.db.exec('DROP TABLE split_brains'); // as an older ferry left it
    cat.close();
    const again = Catalog.open(path);
    assert.deepEqual(listSplitBrains(again, 'vol'), [{ volume: 'vol', site: LONDON, remoteVolume: 'vol-l', oldPrimary: SEATTLE, foundAt: 77 }]);
    clearSplitBrain(again, 'vol', LONDON, 'resolved');
    again.close();
    const third = Catalog.open(path);
    assert.deepEqual(listSplitBrains(third, 'vol'), [], 'carried over only when the table is created: a resolved one does not come back');
    third.close();
  } finally {
    tmp.cleanup();
  }
});
