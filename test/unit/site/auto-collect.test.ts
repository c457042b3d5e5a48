// The automatic collection's policy (site/auto-collect.ts) on a real site in-process: the estimate of
// what a release frees (snapshot/releasable.ts), retention deferring its collection under the
// threshold, the day-old rule, and a store write that fails for lack of space making the daemon's
// next idle point collect. The destination's releases after mirror updates are in
// test/integration/gc-auto.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { ManualClock } from '../../../src/core/clock.ts';
import { collectionState } from '../../../src/catalog/collection.ts';
import { eventsAfter } from '../../../src/catalog/events.ts';
import { writeMeta } from '../../../src/catalog/meta.ts';
import { collectionDue, GC_MAX_AGE_MS } from '../../../src/site/auto-collect.ts';
import { Engine } from '../../../src/site/engine.ts';
import { createSnapshot } from '../../../src/site/snapshots.ts';
import { createVolume } from '../../../src/site/volumes.ts';
import type { Site } from '../../../src/site/site.ts';
import { releasableBytes } from '../../../src/snapshot/releasable.ts';
import type { ChunkPool } from '../../../src/snapshot/chunk-pool.ts';
import type { PackFileIo } from '../../../src/store/pack.ts';
import { withLocalSite } from '../local-site.ts';

const KiB = 1024;

/** Pack writes reaching past `limit` bytes fail with ENOSPC, as on a full filesystem. */
class SmallDisk implements PackFileIo {
  limit = Infinity;
  write(fd: number, buf: Uint8Array, offset: number, length: number, position: number): number {
    if (position + length > this.limit) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    return writeSync(fd, buf, offset, length, position);
  }
  fsync(): void {}
  fsyncDir(): void {}
}

function eventsOf(site: Site, kind: string): Array<{ outcome: string; detail: any }> {
  return eventsAfter(site.catalog, { after: 0, since: 0, volume: null, kind, limit: 1000 }).map((e) => ({ outcome: e.outcome, detail: JSON.parse(e.detail) }));
}

/** A volume keeping one snapshot, over `data` (made here) holding file `f` of `bytes` random bytes, and its first snapshot. */
async function keepOneVolume(site: Site, pool: ChunkPool, data: string, bytes: number): Promise<void> {
  mkdirSync(data);
  writeFileSync(join(data, 'f'), randomBytes(bytes));
  createVolume(site, 'vol', { members: [{ kind: 'tree', path: data }], retention: { last: 1 } });
  await createSnapshot(site, 'vol', { pool });
}

function gcEvents(site: Site): Array<{ outcome: string; detail: any }> {
  return eventsOf(site, 'gc');
}

test('the estimate of a release counts what differs from the snapshot kept next to it: a changed file\'s old data, not an unchanged or a renamed directory', async () => {
  await withLocalSite('est', async ({ dir, site, pool }) => {
    const data = join(dir, 'data');
    for (const d of ['changed', 'same', 'moved']) mkdirSync(join(data, d), { recursive: true });
    writeFileSync(join(data, 'changed', 'f'), randomBytes(300 * KiB));
    writeFileSync(join(data, 'same', 'f'), randomBytes(100 * KiB));
    writeFileSync(join(data, 'moved', 'f'), randomBytes(200 * KiB));
    createVolume(site, 'vol', { members: [{ kind: 'tree', path: data }] });
    const s1 = (await createSnapshot(site, 'vol', { pool })).snapshot;
    writeFileSync(join(data, 'changed', 'f'), randomBytes(300 * KiB));
    renameSync(join(data, 'moved'), join(data, 'renamed'));
    const s2 = (await createSnapshot(site, 'vol', { pool })).snapshot;
    const est = releasableBytes(site.store, s1.manifest, s2.manifest);
    assert.ok(est >= 300 * KiB && est < 300 * KiB + 8 * KiB, `the old 300 KiB and a few trees and the manifest: ${est}`);
    const whole = releasableBytes(site.store, s1.manifest, null);
    assert.ok(whole >= 600 * KiB, `with nothing kept, everything: ${whole}`);
    assert.ok(releasableBytes(site.store, s2.manifest, s2.manifest) < KiB, 'the same snapshot: its manifest only');
  });
});

test('retention at the source: under the threshold it counts and defers; at threshold 0 it collects; a collection resets the count', async () => {
  await withLocalSite('ret', async ({ dir, site, pool }) => {
    const data = join(dir, 'data');
    await keepOneVolume(site, pool, data, 300 * KiB);
    writeFileSync(join(data, 'f'), randomBytes(300 * KiB));
    const r = await createSnapshot(site, 'vol', { pool });
    assert.equal(r.retention?.removed.length, 1);
    assert.equal(gcEvents(site).length, 0, 'no collection under the default threshold');
    const s = collectionState(site.catalog);
    assert.ok(s.releasable >= 300 * KiB && s.releasable < 310 * KiB, `counted: ${s.releasable}`);
    const ret = eventsOf(site, 'retention').at(-1)!;
    assert.match(String(ret.detail.collect), /^deferred: \d+(\.\d+)? KiB releasable of threshold 64\.0 MiB$/);

    writeMeta(site.catalog, { gc_threshold: '0' });
    writeFileSync(join(data, 'f'), randomBytes(300 * KiB));
    await createSnapshot(site, 'vol', { pool });
    const gc = gcEvents(site);
    assert.equal(gc.length, 1);
    assert.equal(gc[0].detail.reason, 'collecting: the threshold is 0 (site.gcThreshold)');
    assert.equal(collectionState(site.catalog).releasable, 0);
    assert.notEqual(collectionState(site.catalog).lastAt, null);
  });
});

test('a count above 0 whose last collection is a day old is due at the next idle point', async () => {
  const clock = new ManualClock(Date.UTC(2026, 5, 1));
  await withLocalSite('day', async ({ dir, site, pool }) => {
    const data = join(dir, 'data');
    await keepOneVolume(site, pool, data, 64 * KiB);
    assert.equal(collectionDue(site), undefined, 'nothing releasable: nothing due');
    writeFileSync(join(data, 'f'), randomBytes(64 * KiB));
    await createSnapshot(site, 'vol', { pool });
    assert.equal(collectionDue(site), undefined);
    clock.advance(GC_MAX_AGE_MS + 1000);
    assert.match(collectionDue(site) ?? '', /releasable and the last collection never ran .* over a day ago/);
    const engine = new Engine(site);
    try {
      engine.tickCollect();
    } finally {
      await engine.close();
    }
    assert.equal(gcEvents(site).length, 1);
    assert.equal(collectionDue(site), undefined);
  }, { clock });
});

test('a store write that fails for lack of space makes the next idle point collect', async () => {
  const disk = new SmallDisk();
  await withLocalSite('nospace', async ({ site }) => {
    const engine = new Engine(site);
    try {
      engine.tickCollect();
      assert.equal(gcEvents(site).length, 0, 'nothing due: no collection');
      disk.limit = 64 * KiB;
      assert.throws(() => {
        site.store.put('chunk', randomBytes(256 * KiB));
        site.store.flush();
      }, (err: any) => err.code === 'NO_SPACE');
      disk.limit = Infinity;
      assert.match(collectionDue(site) ?? '', /lack of space/);
      engine.tickCollect();
      const gc = gcEvents(site);
      assert.equal(gc.length, 1);
      assert.equal(gc[0].outcome, 'ok');
      assert.match(gc[0].detail.reason, /lack of space/);
      assert.equal(collectionDue(site), undefined, 'the collection cleared the mark');
      assert.equal(collectionState(site.catalog).noSpaceAt, null);
    } finally {
      await engine.close();
    }
  }, { storeIo: disk });
});
