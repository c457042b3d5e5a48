// The destination releases the older replication snapshot after each apply. When nothing changed
// (the released snapshot has the applied one's member roots), nothing but its manifest became
// garbage and no collection runs (it would mark the whole store); when something changed, the
// collection runs and frees the old data: with the threshold at 0 (site.gcThreshold), as it did
// before the automatic collection waited for enough to free (gc-auto.test.ts has the default).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setSiteSettings, waitFor } from '../harness/index.ts';
import { makePair, storeTotals, writeRandomFile, writeSmallFiles } from '../harness/proxied-pair.ts';

const KiB = 1024;

test('an update with nothing changed releases the old replication snapshot without a collection; one with changes collects', { timeout: 120_000 }, async () => {
  const pair = await makePair();
  try {
    writeSmallFiles(join(pair.data, 'small'), 30);
    writeRandomFile(join(pair.data, 'big.bin'), 256 * KiB);
    await pair.json(pair.a, ['mirror', 'initialize', 'vol', '--wait']);
    await setSiteSettings({ dir: pair.dir, json: (args) => pair.json(pair.b, args) }, { gcThreshold: 0 });
    const events = async (kind: string): Promise<any[]> => {
      const r = await pair.ferry(pair.b, ['events', '--kind', kind, '--json']);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
    };
    const gcBefore = (await events('gc')).length;

    const same = await pair.json(pair.a, ['mirror', 'update', 'vol', '--wait']);
    assert.equal(same.applied, true);
    const releases = await events('replication.release');
    const last = releases.at(-1);
    assert.match(JSON.stringify(last), /deferred: nothing but their manifests to free/);

    // A change: the file's old data is garbage once the older snapshot is released, and collected.
    const objectsBefore = storeTotals(pair.b.home).objects;
    writeRandomFile(join(pair.data, 'big.bin'), 256 * KiB);
    const changed = await pair.json(pair.a, ['mirror', 'update', 'vol', '--wait']);
    assert.equal(changed.applied, true);
    await waitFor('a collection at b after the update with changes', async () => (await events('gc')).length > gcBefore, 30_000);
    assert.equal((await events('gc')).length, gcBefore + 1, 'one collection: none after the update where nothing changed');
    const after = await events('replication.release');
    assert.doesNotMatch(JSON.stringify(after.at(-1)), /deferred/);
    assert.ok(storeTotals(pair.b.home).objects <= objectsBefore + 2, 'the old big.bin chunks were collected');
  } finally {
    await pair.cleanup();
  }
});
