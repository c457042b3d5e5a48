// The walk's bound on what directories already walked hold while their files are read (held.ts):
// a walk that outruns the chunk workers must not hold every directory's records at once (a full
// walk with one changed file in each directory held the whole volume: 965 MiB in the CLI's
// snapshot at a million files). Bounded, the capture is the same tree; and the wait for held
// directories must not wait on the walk's own batches (the extended attributes of the files read:
// without their flush the walk stopped for good and the CLI ended, exit 0, with no snapshot).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { captureTree, type StatCacheIO } from '../../../src/snapshot/capture.ts';
import { decodeDirCache } from '../../../src/snapshot/stat-cache.ts';
import { withLocalSite } from '../local-site.ts';

function memoryCache(): StatCacheIO {
  const saved = new Map<string, Buffer>();
  return { load: (dir) => (saved.has(dir.toString('latin1')) ? decodeDirCache(saved.get(dir.toString('latin1'))!) : undefined), save: (dir, data) => saved.set(dir.toString('latin1'), data) };
}

const DIRS = 30;
const FILES = 40;

test('a walk holds at most its bound (plus one directory) of walked directories waiting on their files, and captures the same tree', async () => {
  await withLocalSite('held', async ({ dir, site, pool }) => {
    const data = join(dir, 'data');
    for (let d = 0; d < DIRS; d++) {
      mkdirSync(join(data, `d${d}`), { recursive: true });
      for (let f = 0; f < FILES; f++) writeFileSync(join(data, `d${d}`, `f${f}`), `file ${d}/${f}\n`);
    }
    const later = Date.now() + 10_000; // every file past the racy margin: trusted from the cache
    const cache = memoryCache();
    await captureTree(data, { store: site.store, pool, cache, startedAt: later });
    for (let d = 0; d < DIRS; d++) appendFileSync(join(data, `d${d}`, 'f7'), 'changed\n');

    const maxHeld = 100;
    let peak = 0;
    const bounded = await captureTree(data, { store: site.store, pool, cache, startedAt: later + 10_000, maxHeld, onHeld: (n) => (peak = Math.max(peak, n)) });
    assert.equal(bounded.stats.filesRead, DIRS, 'one file read in each directory');
    // A directory starts only at or under the bound; it then adds its entries and their cache rows (2 x FILES), and the root, last, its own (2 x DIRS).
    assert.ok(peak > 0, 'directories were held');
    assert.ok(peak <= maxHeld + 2 * FILES + 2 * DIRS, `peak ${peak} over the bound`);

    // The same content captured with no bound and no cache (every file read): the same tree.
    const whole = await captureTree(data, { store: site.store, pool, startedAt: later + 20_000, maxHeld: Infinity });
    assert.equal(whole.stats.filesRead, DIRS * FILES);
    assert.equal(bounded.root, whole.root);
  });
});
