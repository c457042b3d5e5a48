// A migrate rolled back with three sites, on real daemons: seattle is the
// primary of a volume mirrored to london (the migrate's target) and tokyo.
// The migrate re-points tokyo to london before seattle demotes itself; a
// rollback must bring tokyo back to seattle. For each crash point of
// seattle's migrate (FERRY_TEST_CRASH_AT, a test hook: the daemon SIGKILLs itself
// right after that step) the daemon restarts, its journal rolls the migrate
// back, and then: seattle is primary, london and tokyo follow it, the
// application was restarted at seattle, and the next updates to both are
// difference-based. When tokyo cannot be reached during the rollback, it is
// left following london, and `ferry mirror repoint vol --to tokyo` at
// seattle brings it back. A site that handed tokyo over cannot take it back
// once the migrate completed (london is the primary then).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertTreesEqual } from '../helpers.ts';
import { PeerClient } from '../../src/transport/client.ts';
import { ROUTES } from '../../src/transport/http.ts';
import { loadIdentity } from '../../src/transport/identity.ts';
import { isFerryError } from '../../src/core/errors.ts';
import { cleanupSites, KiB, createSite, pairPlain, waitFor, writeChange, writeVolumeData, type TestSite } from '../harness/index.ts';

const sites: TestSite[] = [];
after(() => cleanupSites(sites));

let t: { seattle: TestSite; london: TestSite; tokyo: TestSite; data: string; hookLog: string } | undefined;

const roleOf = (s: TestSite): string => (s.catalog((db) => db.prepare("SELECT role FROM volumes WHERE name = 'vol'").get()) as { role: string }).role;
const sourceOf = (s: TestSite): string | undefined => (s.catalog((db) => db.prepare("SELECT source_site FROM secondaries WHERE volume = 'vol'").get()) as { source_site: string } | undefined)?.source_site;
const running = (s: TestSite): unknown[] => s.catalog((db) => db.prepare("SELECT kind, step FROM workflows WHERE state = 'running'").all());
const posts = (): number => (existsSync(t!.hookLog) ? readFileSync(t!.hookLog, 'utf8').split('\n').filter((l) => l === 'post migrate').length : 0);
const holders = (s: TestSite): string[] => (s.catalog((db) => db.prepare("SELECT DISTINCT holder FROM holds WHERE holder LIKE 'mirror-from:%'").all()) as Array<{ holder: string }>).map((h) => h.holder);

/** seattle primary, london and tokyo following it and up to date; the replicas equal the data. */
async function assertHome(label: string): Promise<void> {
  const { seattle, london, tokyo, data } = t!;
  assert.equal(roleOf(seattle), 'primary', `${label}: seattle is primary`);
  assert.equal(sourceOf(london), seattle.id, `${label}: london follows seattle`);
  assert.equal(sourceOf(tokyo), seattle.id, `${label}: tokyo follows seattle`);
  assert.deepEqual(holders(tokyo), [`mirror-from:${seattle.id}`], `${label}: tokyo's holds are seattle's`);
  assert.deepEqual(running(seattle), []);
  // The next updates are difference-based: ~16 KiB changed.
  writeChange(data, `after-${label}.bin`, 16 * KiB);
  for (const to of ['london', 'tokyo']) {
    const u = await seattle.json(['mirror', 'update', 'vol', '--to', to, '--wait', '--force']);
    assert.ok(u.transfer.bytes < 16 * KiB + 24 * KiB, `${label}: update to ${to} sent ${u.transfer.bytes} bytes for ~16 KiB of changes`);
  }
  assertTreesEqual(await london.memberPath('vol'), data);
  assertTreesEqual(await tokyo.memberPath('vol'), data);
}

test('setup: seattle primary, mirrored to london and tokyo', async () => {
  const [seattle, london, tokyo] = await Promise.all([createSite('seattle-rb'), createSite('london-rb'), createSite('tokyo-rb')]);
  sites.push(seattle, london, tokyo);
  const data = join(seattle.dir, 'data');
  writeVolumeData(data, 4, 128 * KiB);
  const hookLog = join(seattle.dir, 'hooks.log');
  seattle.defineVolume('vol', [data], {
    pre: { command: `echo "pre $FERRY_REASON" >> ${hookLog}`, timeout: 20 },
    post: { command: `echo "post $FERRY_REASON" >> ${hookLog}`, timeout: 20 },
  });
  await Promise.all([seattle.start(), london.start(), tokyo.start()]);
  await Promise.all([pairPlain(seattle, london), pairPlain(seattle, tokyo), pairPlain(london, tokyo)]);
  for (const to of ['london', 'tokyo']) {
    await seattle.json(['mirror', 'create', 'vol', '--to', to]);
    await seattle.json(['mirror', 'initialize', 'vol', '--to', to, '--wait']);
  }
  t = { seattle, london, tokyo, data, hookLog };
});

for (const step of ['migrate:after-pre-hook', 'migrate:after-final', 'migrate:after-repoint', 'migrate:after-demote']) {
  test(`migrate rolled back after ${step}: tokyo follows seattle again, by differences`, async () => {
    assert.ok(t, 'setup failed');
    const { seattle, tokyo } = t;
    const before = posts();
    await seattle.stop();
    await seattle.start({ env: { FERRY_TEST_CRASH_AT: step } });
    const r = await seattle.ferry(['migrate', 'vol', '--to', 'london', '--json']);
    assert.notEqual(r.code, 0, `${step}: the migrate cannot report success`);
    await waitFor(`seattle to die at ${step}`, () => seattle.proc!.signalCode === 'SIGKILL', 60_000, 50);
    await seattle.stop();
    if (step === 'migrate:after-repoint' || step === 'migrate:after-demote') assert.equal(sourceOf(tokyo), t.london.id, `${step}: tokyo was re-pointed to london before the crash`);
    // The daemon at start rolls the migrate back (london never accepted).
    await seattle.start();
    await waitFor('the rollback', () => running(seattle).length === 0 && roleOf(seattle) === 'primary' && sourceOf(tokyo) === seattle.id, 60_000);
    assert.ok(posts() > before, `${step}: the application was restarted at seattle`);
    await assertHome(step);
  });
}

test('tokyo unreachable during the rollback: it stays with london until `mirror repoint --to tokyo` at seattle brings it back', async () => {
  assert.ok(t, 'setup failed');
  const { seattle, london, tokyo } = t;
  await seattle.stop();
  await seattle.start({ env: { FERRY_TEST_CRASH_AT: 'migrate:after-repoint' } });
  await seattle.ferry(['migrate', 'vol', '--to', 'london', '--json']);
  await waitFor('seattle to die', () => seattle.proc!.signalCode === 'SIGKILL', 60_000, 50);
  await seattle.stop();
  await tokyo.stop();
  await seattle.start();
  await waitFor('the rollback', () => running(seattle).length === 0 && roleOf(seattle) === 'primary', 60_000);
  const ev = seattle.catalog((db) => db.prepare("SELECT detail FROM events WHERE kind = 'migrate' AND detail LIKE '%notReturned%' ORDER BY id DESC LIMIT 1").get()) as { detail: string } | undefined;
  assert.ok(ev && /mirror repoint vol --to tokyo/.test(ev.detail), `an event says what to run: ${ev?.detail}`);
  await tokyo.start();
  assert.equal(sourceOf(tokyo), london.id, 'tokyo still follows london');
  await seattle.refused(['mirror', 'update', 'vol', '--to', 'tokyo', '--wait'], 4, 'NOT_AUTHORIZED');
  const rp = await seattle.json(['mirror', 'repoint', 'vol', '--to', 'tokyo']);
  assert.equal(rp.outcome, 'repointed', JSON.stringify(rp));
  assert.equal(sourceOf(tokyo), seattle.id);
  assert.ok(rp.update.transfer.bytes < 24 * KiB, `the re-point sent ${rp.update.transfer.bytes} bytes (nothing changed)`);
  await assertHome('repoint by hand');
});

test('once the migrate completed, the site that handed tokyo over cannot take it back', async () => {
  assert.ok(t, 'setup failed');
  const { seattle, london, tokyo } = t;
  await seattle.json(['migrate', 'vol', '--to', 'london']);
  assert.equal(sourceOf(tokyo), london.id);
  const asSeattle = new PeerClient(loadIdentity(join(seattle.home, 'identity')), { name: 'tokyo', id: tokyo.id, url: tokyo.url!, createdAt: 0 });
  try {
    await assert.rejects(asSeattle.call(ROUTES.dr('repoint'), { volume: 'vol', newSource: seattle.id, newSourceVolume: 'vol' }), (err) => isFerryError(err, 'MIRROR_STATE') && /primary/.test(err.message));
  } finally {
    asSeattle.close();
  }
  assert.equal(sourceOf(tokyo), london.id, 'tokyo keeps following london');
  // And the way back is a migrate, as ever.
  await london.json(['migrate', 'vol', '--to', 'seattle']);
  writeFileSync(join(t.data, 'etc', 'app-0.conf'), 'home again\n');
  await assertHome('migrated back');
});
