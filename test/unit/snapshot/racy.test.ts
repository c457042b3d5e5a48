// The stat cache's racy rule (capture.ts, RACY_NS): a file whose ctime is
// close to the capture's start is not trusted from the cache by the next
// capture, which reads it again. The margin is 50 ms for a ctime with a
// non-zero part below the millisecond (a filesystem that keeps nanoseconds,
// stamped from a clock tick of a few ms) and 2 s otherwise. The capture's
// start is set from the file's own ctime here, so timing cannot decide.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lstatSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { captureTree, type StatCacheIO } from '../../../src/snapshot/capture.ts';
import { decodeDirCache } from '../../../src/snapshot/stat-cache.ts';
import { withLocalSite } from '../local-site.ts';

/** An in-memory stat cache: what the last capture saved. */
function memoryCache(): StatCacheIO & { saved: Map<string, Buffer> } {
  const saved = new Map<string, Buffer>();
  return { saved, load: (dir) => (saved.has(dir.toString('latin1')) ? decodeDirCache(saved.get(dir.toString('latin1'))!) : undefined), save: (dir, data) => saved.set(dir.toString('latin1'), data) };
}

test('files are trusted from the cache once their ctime is past the margin: 50 ms for nanosecond timestamps, else 2 s', async () => {
  await withLocalSite('racy', async ({ dir: tmpPath, site, pool }) => {
    const data = join(tmpPath, 'data');
    mkdirSync(data);
    writeFileSync(join(data, 'f'), 'content\n');
    const ctimeNs = lstatSync(join(data, 'f'), { bigint: true }).ctimeNs;
    const ctimeMs = Number(ctimeNs / 1_000_000n);
    const fine = ctimeNs % 1_000_000n !== 0n;
    const capture = async (startedAt: number) => {
      const cache = memoryCache();
      await captureTree(data, { store: site.store, pool, cache, startedAt });
      const again = await captureTree(data, { store: site.store, pool, cache, startedAt: startedAt + 10_000 });
      return again.stats.filesRead;
    };
    // Within 20 ms of the capture's start: racy on any filesystem, read again.
    assert.equal(await capture(ctimeMs + 20), 1);
    // 100 ms before: trusted where timestamps have nanoseconds, read again where they may be coarse.
    assert.equal(await capture(ctimeMs + 100), fine ? 0 : 1);
    // 3 s before: trusted everywhere.
    assert.equal(await capture(ctimeMs + 3000), 0);
  });
});
