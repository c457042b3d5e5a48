// Retention through the CLI: --keep-last 2 keeps the newest two snapshots
// (and every named one), deletes the rest after each snapshot, and collects
// the data only they referenced: the store shrinks, verify passes. Retention
// is an automatic release: it collects at once with site.gcThreshold 0, else
// once enough is releasable, or at `ferry gc` (docs/store.md, "When garbage is
// collected"; the threshold itself: test/unit/site/auto-collect.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertTreesEqual } from '../helpers.ts';
import { listPackFiles, makeSite, writeRandomFile } from '../harness/cli-site.ts';
import { setSiteSettings } from '../harness/index.ts';

const MiB = 1 << 20;

function packBytesOnDisk(home: string): number {
  return listPackFiles(home).reduce((n, p) => n + statSync(p).size, 0);
}

test('--keep-last 2: four snapshots leave two, and the removed ones\' unique data is collected', async () => {
  const site = await makeSite();
  try {
    const data = join(site.dir, 'data');
    mkdirSync(data);
    writeFileSync(join(data, 'stable.txt'), 'always here\n');
    assert.equal((await site.ferry(['volume', 'create', 'v', '--member', data, '--keep-last', '2'])).code, 0);
    // Collect after every release, as retention did before the threshold.
    await setSiteSettings(site, { gcThreshold: 0 });
    const ids: string[] = [];
    const removed: string[] = [];
    let peak = 0;
    for (let i = 0; i < 4; i++) {
      // Each snapshot holds 1 MiB of data no other snapshot has.
      if (i > 0) rmSync(join(data, `unique-${i - 1}.bin`));
      writeRandomFile(join(data, `unique-${i}.bin`), MiB);
      const r = await site.json(['snapshot', 'create', 'v']);
      ids.push(r.snapshot.id);
      removed.push(...(r.retention?.removed ?? []));
      peak = Math.max(peak, (await site.json(['info'])).store.rawBytes);
    }
    const left = (await site.json(['snapshot', 'list', 'v'])).map((s: { id: string }) => s.id);
    assert.deepEqual(left, ids.slice(2));
    assert.deepEqual(removed.sort(), ids.slice(0, 2).sort());

    const store = (await site.json(['info'])).store;
    // two snapshots of 1 MiB unique data each, plus metadata
    assert.ok(store.rawBytes < 2 * MiB + 64 * 1024, `store holds ${store.rawBytes} raw bytes for two 1 MiB snapshots`);
    assert.ok(store.storedBytes < 2 * MiB + 256 * 1024, `pack files hold ${store.storedBytes} bytes for two 1 MiB snapshots`);
    assert.equal(packBytesOnDisk(site.home), store.storedBytes, 'pack files on disk do not match the index (leftovers?)');
    assert.equal((await site.ferry(['verify'])).code, 0);
    const out = join(site.dir, 'out');
    assert.equal((await site.ferry(['restore', 'v', '--snapshot', ids[2], '--target', out])).code, 0);
    assert.equal(statSync(join(out, 'unique-2.bin')).size, MiB);
    const out2 = join(site.dir, 'out2');
    assert.equal((await site.ferry(['restore', 'v', '--snapshot', 'latest', '--target', out2])).code, 0);
    assertTreesEqual(out2, data);
    // A gc now finds nothing left to collect.
    const gc = await site.json(['gc']);
    assert.equal(gc.plan.totals.deadObjects, 0);
  } finally {
    site.cleanup();
  }
});

test('named snapshots are kept by retention; thinning applies to unnamed ones only', async () => {
  const site = await makeSite();
  try {
    const data = join(site.dir, 'data');
    mkdirSync(data);
    assert.equal((await site.ferry(['volume', 'create', 'v', '--member', data])).code, 0);
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      writeRandomFile(join(data, `f${i}.bin`), 256 * 1024);
      // f1.bin lives only in snapshots 1 and 2
      if (i === 3) rmSync(join(data, 'f1.bin'));
      const r = await site.json(['snapshot', 'create', 'v', ...(i === 0 ? ['--name', 'before-upgrade'] : [])]);
      ids.push(r.snapshot.id);
    }
    const before = (await site.json(['info'])).store.rawBytes;
    // Setting the policy applies at the next snapshot.
    assert.equal((await site.ferry(['volume', 'set', 'v', '--keep-last', '2'])).code, 0);
    const r = await site.json(['snapshot', 'create', 'v']);
    ids.push(r.snapshot.id);
    // Kept: the named first one, and the newest two.
    const left = (await site.json(['snapshot', 'list', 'v'])).map((s: { id: string; name: string | null }) => [s.id, s.name]);
    assert.deepEqual(left, [[ids[0], 'before-upgrade'], [ids[3], null], [ids[4], null]]);
    assert.deepEqual(r.retention.removed.sort(), [ids[1], ids[2]].sort());
    // Under the default threshold the release waits for a collection: `ferry gc` runs it now.
    assert.equal((await site.json(['info'])).store.rawBytes >= before, true, 'nothing collected by the release itself');
    assert.equal((await site.json(['gc'])).executed, true);
    // f1.bin lived only in the removed snapshots (1 and 2): its data is gone.
    const after = (await site.json(['info'])).store.rawBytes;
    assert.ok(after <= before - 256 * 1024, `store did not shrink: ${before} -> ${after}`);
    assert.equal((await site.ferry(['verify'])).code, 0);
    // The named snapshot still restores with all it had.
    const out = join(site.dir, 'out');
    assert.equal((await site.ferry(['restore', 'v', '--snapshot', 'before-upgrade', '--target', out])).code, 0);
    assert.equal(statSync(join(out, 'f0.bin')).size, 256 * 1024);
  } finally {
    site.cleanup();
  }
});

test('snapshot delete --dry-run changes nothing; volume remove --force deletes the snapshots and collects their data', async () => {
  const site = await makeSite();
  try {
    const data = join(site.dir, 'data');
    mkdirSync(data);
    writeRandomFile(join(data, 'f.bin'), 512 * 1024);
    assert.equal((await site.ferry(['volume', 'create', 'v', '--member', data])).code, 0);
    const s1 = (await site.json(['snapshot', 'create', 'v'])).snapshot.id;
    const info = (await site.json(['info'])).store;
    const dry = await site.json(['snapshot', 'delete', 'v', s1, '--dry-run']);
    assert.deepEqual(dry.plan.delete.map((d: { id: string }) => d.id), [s1]);
    assert.equal((await site.json(['snapshot', 'list', 'v'])).length, 1);
    assert.deepEqual((await site.json(['info'])).store, info);
    const gcDry = await site.json(['gc', '--dry-run']);
    assert.equal(gcDry.executed, false);
    assert.deepEqual((await site.json(['info'])).store, info);

    assert.equal((await site.ferry(['volume', 'remove', 'v'])).code, 4);
    const rm = await site.ferry(['volume', 'remove', 'v', '--force']);
    assert.equal(rm.code, 0, rm.stderr);
    assert.deepEqual(await site.json(['volume', 'list']), []);
    const after = (await site.json(['info'])).store;
    assert.equal(after.objects, 0, `objects left after removing the only volume: ${JSON.stringify(after)}`);
    assert.equal(packBytesOnDisk(site.home), after.storedBytes);
    assert.equal((await site.ferry(['verify'])).code, 0);
    // the member data was not touched
    assert.equal(statSync(join(data, 'f.bin')).size, 512 * 1024);
  } finally {
    site.cleanup();
  }
});
