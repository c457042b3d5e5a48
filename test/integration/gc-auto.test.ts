// The destination's automatic collection after mirror updates (docs/store.md, "When garbage is
// collected"): a release only adds what it frees to a running estimate kept in the catalog; a
// collection runs once the estimate passes the threshold (site.gcThreshold), and `ferry gc`
// collects whatever the estimate says. The estimate survives a restart of the daemon.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanupSites, waitFor, KiB, MiB, mirroredPair, setSiteSettings, storeTotals, type TestSite } from '../harness/index.ts';

const sites: TestSite[] = [];
after(() => cleanupSites(sites));

function events(site: TestSite, kind: string): any[] {
  return site.catalog((db) => db.prepare('SELECT detail FROM events WHERE kind = ? ORDER BY id').all(kind) as Array<{ detail: string }>).map((r) => JSON.parse(r.detail));
}

function okEvents(site: TestSite, kind: string): number {
  return site.catalog((db) => (db.prepare("SELECT count(*) AS n FROM events WHERE kind = ? AND outcome = 'ok'").get(kind) as { n: number }).n);
}

async function collection(site: TestSite): Promise<any> {
  return (await site.status()).store.collection;
}

/** Rewrite the volume's file with new random bytes and run an update (the old content is unique to the snapshot it releases). */
async function changeAndUpdate(a: TestSite, data: string, bytes: number): Promise<void> {
  writeFileSync(join(data, 'big-0.bin'), randomBytes(bytes));
  const r = await a.json(['mirror', 'update', 'vol', '--wait']);
  assert.equal(r.applied, true);
}

test('updates under the threshold defer the collection and count what they release; past it they collect; ferry gc collects anyway; the count survives a restart', { timeout: 300_000 }, async () => {
  const { a, b, data } = await mirroredPair(sites, ['gca', 'gcb'], { files: 1, fileSize: MiB });
  const gcBefore = okEvents(b, 'gc');

  // 1 MiB changed: the released snapshot's old 1 MiB is counted, not collected.
  const bytesBefore = storeTotals(b.home).bytes;
  await changeAndUpdate(a, data, MiB);
  assert.match(events(b, 'replication.release').at(-1).collect ?? '(no collect field)', /^deferred: 1\.0 MiB releasable of threshold 64\.0 MiB$/);
  assert.equal(okEvents(b, 'gc'), gcBefore, 'no collection under the threshold');
  assert.ok(storeTotals(b.home).bytes >= bytesBefore + MiB, 'the released snapshot\'s old data is still in the store');
  const first = await collection(b);
  assert.equal(first.threshold, 'default');
  assert.equal(first.thresholdBytes, 64 * MiB, 'the default: 64 MiB while 5 % of the store is less');
  assert.ok(first.releasableBytes >= MiB && first.releasableBytes < MiB + 64 * KiB, `the estimate grew by about the changed bytes: ${first.releasableBytes}`);
  // Plain status says it too.
  const plain = (await b.ferry(['status'])).stdout;
  assert.match(plain, /^store [\d.]+ [KMG]?i?B; 1\.\d MiB to free at the next collection, which runs at 64(\.0)? MiB \(the default\) or a day after the last; last collection /m, plain);

  // The estimate is kept in the catalog: a restart does not forget it.
  await b.stop();
  await b.start();
  assert.equal((await collection(b)).releasableBytes, first.releasableBytes);

  // A threshold of 1.5 MiB: the next 1 MiB change passes it, and the update collects.
  await setSiteSettings(b, { gcThreshold: '1536KiB' });
  assert.deepEqual([(await collection(b)).thresholdBytes, (await collection(b)).threshold], [1536 * KiB, 'gc_threshold']);
  const peak = storeTotals(b.home).bytes;
  await changeAndUpdate(a, data, MiB);
  assert.match(events(b, 'replication.release').at(-1).collect, /^collecting: 2\.\d MiB releasable, over the threshold of 1\.5 MiB$/);
  // The collection runs as soon as no writer is in progress (just after the apply).
  await waitFor('a collection at b', () => okEvents(b, 'gc') > gcBefore, { timeoutMs: 30_000 });
  assert.equal(okEvents(b, 'gc'), gcBefore + 1, 'one collection, once past the threshold');
  const collected = await collection(b);
  assert.equal(collected.releasableBytes, 0, 'a collection starts the count again');
  assert.ok(collected.lastCollectionAt !== null);
  assert.ok(storeTotals(b.home).bytes < peak, 'the two older versions of the file were collected');

  // Under the threshold again; `ferry gc` collects regardless, and resets the count.
  await changeAndUpdate(a, data, 256 * KiB);
  assert.equal(okEvents(b, 'gc'), gcBefore + 1);
  assert.ok((await collection(b)).releasableBytes >= MiB, 'the old 1 MiB version is counted');
  const gc = await b.json(['gc']);
  assert.equal(gc.executed, true);
  assert.ok(gc.freed >= MiB, `ferry gc freed the old version: ${gc.freed}`);
  assert.equal(okEvents(b, 'gc'), gcBefore + 2);
  assert.equal((await collection(b)).releasableBytes, 0);
});

test('threshold 0: every update that changed something collects, as before', { timeout: 300_000 }, async () => {
  const { a, b, data } = await mirroredPair(sites, ['gc0a', 'gc0b'], { files: 1, fileSize: 256 * KiB });
  await setSiteSettings(b, { gcThreshold: 0 });
  const gcBefore = okEvents(b, 'gc');
  await changeAndUpdate(a, data, 256 * KiB);
  assert.equal(events(b, 'replication.release').at(-1).collect, 'collecting: the threshold is 0 (site.gcThreshold)');
  await waitFor('a collection at b', () => okEvents(b, 'gc') > gcBefore, { timeoutMs: 30_000 });
  assert.equal(okEvents(b, 'gc'), gcBefore + 1);
  assert.equal((await collection(b)).releasableBytes, 0);
});
