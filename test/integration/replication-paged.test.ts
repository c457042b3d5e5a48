// Large directories are paged (src/snapshot/dir-pages.ts): an update that
// changes one file of a large directory sends that file, one page of the
// directory's entries and its index, not the whole entry list; and a
// directory stored whole (by a ferry before paging, or kept from such a
// capture) and the same directory paged are the same replica: neither the
// writes check nor the verification takes the difference in form for a
// difference in content. Real daemons on loopback.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertTreesEqual } from '../helpers.ts';
import { cleanupSites, createSite, pairSites, type TestSite } from '../harness/index.ts';

const KiB = 1024;
const sites: TestSite[] = [];
after(() => cleanupSites(sites));

/** `n` small files in `dir` (names f0000..), each its own content. */
function fill(dir: string, n: number): void {
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < n; i++) writeFileSync(join(dir, `f${String(i).padStart(4, '0')}`), `file ${i} of ${dir}\n`);
}

async function pair(env?: Record<string, string>): Promise<{ a: TestSite; b: TestSite; data: string; replica: string }> {
  const a = await createSite('a');
  const b = await createSite('b');
  sites.push(a, b);
  const data = join(a.dir, 'data');
  fill(join(data, 'big'), 700);
  fill(join(data, 'other'), 400);
  writeFileSync(join(data, 'top.txt'), 'top\n');
  a.defineVolume('vol', [`data=tree:${data}`]);
  await Promise.all([a.start({ env }), b.start({ env })]);
  await pairSites(a, b);
  await a.json(['mirror', 'create', 'vol', '--to', 'b']);
  await a.json(['mirror', 'initialize', 'vol', '--to', 'b', '--wait']);
  const replica = (await b.status()).volumes.find((v: any) => v.name === 'vol').members.find((m: any) => m.name === 'data').path;
  assertTreesEqual(replica, data);
  return { a, b, data, replica };
}

test('one file changed in a directory of 700: the update sends its page and the index, not 700 entries', async () => {
  const { a, data, replica } = await pair();
  writeFileSync(join(data, 'big', 'f0350'), 'changed\n');
  const upd = await a.json(['mirror', 'update', 'vol', '--to', 'b', '--wait']);
  assertTreesEqual(replica, data);
  // The directory's entries as one tree object are ~40 KiB; a page of them is ~4 KiB.
  assert.ok(upd.transfer.rawBytes < 16 * KiB, `the update sent ${upd.transfer.rawBytes} raw bytes`);
});

test('a replica of directories stored whole, updated from paged ones: no writes found, the verification passes', async () => {
  // FERRY_TEST_TREE_PAGE_MIN=100000: no directory here is paged (as a ferry before paging stored them)
  const { a, b, data, replica } = await pair({ FERRY_TEST_TREE_PAGE_MIN: '100000' });
  await Promise.all([a.stop(), b.stop()]);
  // Restarted as they are now: the source's first capture is a full walk, which pages both large
  // directories; the replica's journal starts over, so its writes check walks it whole too.
  await Promise.all([a.start(), b.start()]);
  writeFileSync(join(data, 'big', 'f0100'), 'changed after the restart\n');
  const upd = await a.json(['mirror', 'update', 'vol', '--to', 'b', '--wait']);
  assertTreesEqual(replica, data);
  const snaps = await b.json(['snapshot', 'list', 'vol']);
  const list = (Array.isArray(snaps) ? snaps : snaps.snapshots) as Array<{ name: string | null }>;
  assert.ok(!list.some((s) => s.name?.startsWith('replica-writes-')), `writes were found in an untouched replica: ${JSON.stringify(list.map((s) => s.name))}`);
  const sec = (await b.status()).volumes.find((v: any) => v.name === 'vol').secondary;
  assert.equal(sec.applied, upd.snapshot);
  assert.equal(sec.consistent, true);
  // and on: a second update from the paged snapshot
  writeFileSync(join(data, 'other', 'f0001'), 'changed again\n');
  await a.json(['mirror', 'update', 'vol', '--to', 'b', '--wait']);
  assertTreesEqual(replica, data);
});
