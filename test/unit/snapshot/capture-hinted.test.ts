// A file that changed since the last snapshot is read again whole, but where its bytes still match its
// old chunks (from the stat cache, their lengths from the store's index) their boundaries are taken
// without the content-defined scan (chunk-worker.ts, #readHinted). Through a real snapshot: the stats
// count those bytes, and the chunks are those a full scan gives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, openSync, readFileSync, writeSync, closeSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { hashBytes } from '../../../src/core/ids.ts';
import { createSnapshot } from '../../../src/site/snapshots.ts';
import { createVolume } from '../../../src/site/volumes.ts';
import { cutPoints } from '../../../src/snapshot/fastcdc.ts';
import { withLocalSite } from '../local-site.ts';

test('a changed large file: the chunks before and after the edit are taken at their old boundaries, and the snapshot is the new content', async () => {
  await withLocalSite('hinted', async ({ dir, site, pool }) => {
    const data = join(dir, 'data');
    mkdirSync(data);
    const big = join(data, 'big.bin');
    writeFileSync(big, randomBytes(9 * 1024 * 1024));
    writeFileSync(join(data, 'small.txt'), 'small\n');
    createVolume(site, 'vol', { members: [{ kind: 'tree', path: data }] });
    // Past the stat cache's racy margin (capture.ts: 50 ms for fine timestamps, 2 s for coarse
    // ones), so the first snapshot records the file's chunks; a loaded machine met it otherwise.
    await new Promise((r) => setTimeout(r, 2100));
    const first = await createSnapshot(site, 'vol', { pool });
    assert.equal(first.stats.bytesHinted, 0, 'a first read has no old chunks');
    // One byte changed in the middle.
    const fd = openSync(big, 'r+');
    writeSync(fd, Buffer.from([7]), 0, 1, 5 * 1024 * 1024);
    closeSync(fd);
    const second = await createSnapshot(site, 'vol', { pool });
    const content = readFileSync(big);
    assert.ok(second.stats.bytesHinted >= 2 * 1024 * 1024 && second.stats.bytesHinted < content.length, `hinted ${second.stats.bytesHinted} of ${content.length}`);
    // The chunks a full scan of the new content gives are in the store (the one around the edit new).
    let at = 0;
    const ids = cutPoints(content).map((c) => { const id = hashBytes(content.subarray(at, c)); at = c; return id; });
    for (const id of ids) assert.ok(site.store.has(id as never), `chunk ${id} of a full scan is in the store`);
  });
});
