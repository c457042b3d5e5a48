// A replica directory left by a crash at the destination between its mkdir
// and the catalog row that names it (FERRY_TEST_CRASH_AT, a test hook: the
// daemon SIGKILLs itself at secondary-create:after-mkdir, the directory
// empty, or at secondary-create:after-members, its members made and empty).
// What is left holds no data and is exactly what ferry would make there, so
// the next hello uses it and the initialize runs; nothing is deleted. A
// leftover holding anything at all (a file beside the members, or inside
// one) is refused as before (REPLICA_PATH_INVALID), its file untouched.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertTreesEqual } from '../helpers.ts';
import { cleanupSites, createSite, exited, KiB, pairSites, writeVolumeData, type TestSite } from '../harness/index.ts';

const sites: TestSite[] = [];
after(() => cleanupSites(sites));

/** The volumes of a site's catalog, by name. */
const volumesAt = (s: TestSite): string[] => (s.catalog((db) => db.prepare('SELECT name FROM volumes ORDER BY name').all()) as Array<{ name: string }>).map((r) => r.name);

/** The daemon of `site` killed itself at crash point `step`: forget the process. */
async function diedAt(site: TestSite, step: string): Promise<void> {
  const { signal } = await exited(site.proc!);
  assert.ok(signal === 'SIGKILL' && site.log.includes(`crash point ${step}`), `[${site.name}] the daemon did not die at ${step}:\n${site.log.slice(-3000)}`);
  await site.stop();
}

/** Two running paired sites; at a, `vol` (one tree member) and `vol2` (a tree and an image member), not mirrored yet. */
async function twoSites(names: [string, string]): Promise<{ a: TestSite; b: TestSite; data: string; data2: string; disk: string }> {
  const [a, b] = await Promise.all(names.map((n) => createSite(n)));
  sites.push(a, b);
  const data = join(a.dir, 'data');
  writeVolumeData(data, 2, 64 * KiB);
  a.defineVolume('vol', [`data=${data}`]);
  const data2 = join(a.dir, 'data2');
  writeVolumeData(data2, 2, 16 * KiB);
  const disk = join(a.dir, 'disk.img');
  writeFileSync(disk, Buffer.alloc(256 * KiB, 7));
  a.defineVolume('vol2', [`data=${data2}`, `disk=image:${disk}`]);
  await Promise.all([a.start(), b.start()]);
  await pairSites(a, b);
  return { a, b, data, data2, disk };
}

test('a crash at the destination between the replica directory\'s mkdir and its catalog row: the empty directory it left is used again, and the initialize runs', async () => {
  const { a, b, data, data2, disk } = await twoSites(['sender', 'crashed']);
  const cases = [
    { volume: 'vol', step: 'secondary-create:after-mkdir', left: [] as string[] },
    { volume: 'vol2', step: 'secondary-create:after-members', left: ['data', 'disk'] },
  ];
  for (const c of cases) {
    await b.stop();
    await b.start({ env: { FERRY_TEST_CRASH_AT: c.step } });
    await a.json(['mirror', 'create', c.volume, '--to', b.name]);
    const r = await a.ferry(['mirror', 'initialize', c.volume, '--to', b.name, '--wait', '--json']);
    assert.notEqual(r.code, 0, `[${c.step}] the initialize should fail with the destination's crash: ${r.stdout}`);
    await diedAt(b, c.step);
    // As the crash left it: the replica's directory, holding only what ferry made there (empty), and no volume naming it.
    const base = join(b.home, 'replicas', c.volume);
    assert.deepEqual(readdirSync(base).sort(), c.left, `[${c.step}] what the crash left`);
    for (const e of c.left) assert.equal(statSync(join(base, e)).isDirectory() ? readdirSync(join(base, e)).length : statSync(join(base, e)).size, 0, `[${c.step}] ${e} is empty`);
    assert.ok(!volumesAt(b).includes(c.volume), `[${c.step}] no catalog row names it`);
    await b.start();
    await a.json(['mirror', 'initialize', c.volume, '--to', b.name, '--wait']);
    assert.ok(volumesAt(b).includes(c.volume), `[${c.step}] the secondary is made`);
    assertTreesEqual(join(base, 'data'), c.volume === 'vol' ? data : data2);
    if (c.volume === 'vol2') assert.deepEqual(readFileSync(join(base, 'disk')), readFileSync(disk));
  }
  // The reuse is said in the event of the create.
  const events = await b.ferry(['events', '--kind', 'secondary.create', '--json']);
  const ok = events.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((e) => e.event.outcome === 'ok');
  assert.equal(ok.length, 2, events.stdout);
  assert.ok(ok.every((e) => typeof e.details.reused === 'string'), events.stdout);
});

test('a replica directory left holding anything (a file beside the members, or inside one) is still refused, and its file is untouched', async () => {
  const { a, b } = await twoSites(['offers', 'keeps']);
  // vol: a file in the directory itself; vol2: its members as a crash leaves them, one file inside a member.
  const base = join(b.home, 'replicas', 'vol');
  mkdirSync(base, { recursive: true });
  writeFileSync(join(base, 'notes.txt'), 'put here by hand\n');
  const base2 = join(b.home, 'replicas', 'vol2');
  mkdirSync(join(base2, 'data'), { recursive: true });
  writeFileSync(join(base2, 'disk'), '');
  writeFileSync(join(base2, 'data', 'x.txt'), 'written into the member\n');
  for (const [volume, file, text] of [['vol', join(base, 'notes.txt'), 'put here by hand\n'], ['vol2', join(base2, 'data', 'x.txt'), 'written into the member\n']]) {
    await a.json(['mirror', 'create', volume, '--to', b.name]);
    await a.refused(['mirror', 'initialize', volume, '--to', b.name, '--wait'], 4, 'REPLICA_PATH_INVALID', /exists already/);
    assert.equal(readFileSync(file, 'utf8'), text, `${file} untouched`);
    assert.ok(!volumesAt(b).includes(volume), `no secondary ${volume} made`);
  }
  assert.deepEqual(readdirSync(base), ['notes.txt']);
  assert.deepEqual(readdirSync(base2).sort(), ['data', 'disk']);
  assert.deepEqual(readdirSync(join(base2, 'data')), ['x.txt']);
});
