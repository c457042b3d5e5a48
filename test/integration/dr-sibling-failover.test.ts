// Two secondaries of one primary, on three real daemons: london takes the volume over without
// re-pointing tokyo (--no-repoint), and then a plain failover at tokyo would make a second primary
// that knows nothing of london (the soak, seed 1: two primaries, no split brain to show). The old
// primary, told of the second failover, refuses it and says what to do: make tokyo follow london, or
// force the failover if london is lost. A forced one goes ahead, and tokyo records the split brain
// with london (the old primary's answer names it) beside its broken-off relation to seattle, and
// `ferry status` shows it. Found by the soak (seed 1, 12 minutes, step 6).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { cleanupSites, createSite, KiB, pairPlain, waitFor, writeVolumeData, type TestSite } from '../harness/index.ts';

/** seattle's volume mirrored to london and tokyo (all three paired), then london fails over with --no-repoint. */
async function londonTookOver(sites: TestSite[], tag: string): Promise<{ seattle: TestSite; london: TestSite; tokyo: TestSite }> {
  const three = await seattleWithTwo(sites, tag);
  await three.london.json(['failover', 'vol', '--no-repoint']);
  return three;
}

/** seattle's volume mirrored to london and tokyo, all three paired and running. */
async function seattleWithTwo(sites: TestSite[], tag: string): Promise<{ seattle: TestSite; london: TestSite; tokyo: TestSite }> {
  const [seattle, london, tokyo] = await Promise.all([createSite(`seattle-${tag}`), createSite(`london-${tag}`), createSite(`tokyo-${tag}`)]);
  sites.push(seattle, london, tokyo);
  const data = join(seattle.dir, 'data');
  writeVolumeData(data, 2, 64 * KiB);
  seattle.defineVolume('vol', [data]);
  await Promise.all([seattle.start(), london.start(), tokyo.start()]);
  await Promise.all([pairPlain(seattle, london), pairPlain(seattle, tokyo), pairPlain(london, tokyo)]);
  for (const to of ['london', 'tokyo']) {
    await seattle.json(['mirror', 'create', 'vol', '--to', to]);
    await seattle.json(['mirror', 'initialize', 'vol', '--to', to, '--wait']);
  }
  return { seattle, london, tokyo };
}

test('a plain failover at a secondary whose primary a sibling already took over is refused, saying to re-point it or force', async () => {
  const sites: TestSite[] = [];
  try {
    const { seattle, london, tokyo } = await londonTookOver(sites, 'sf');

    await tokyo.refused(['failover', 'vol'], 4, 'MIRROR_STATE', /london already took vol over from seattle[\s\S]*mirror repoint vol --to tokyo[\s\S]*--force/);
    assert.equal((await tokyo.volumeStatus('vol')).role, 'secondary', 'tokyo stays a secondary');
    assert.notEqual((await seattle.mirror('vol', 'tokyo')).state, 'broken-off', "seattle's mirror to tokyo is not broken off by a refused notice");
    // As the refusal says: london re-points tokyo, which then follows london.
    await london.json(['mirror', 'repoint', 'vol', '--to', 'tokyo']);
    assert.equal(tokyo.catalog((db) => (db.prepare("SELECT source_site FROM secondaries WHERE volume = 'vol'").get() as { source_site: string }).source_site), london.id);
  } finally {
    await cleanupSites(sites);
  }
});

test('a sibling forced over while the old primary was down, its notice not yet delivered: a plain failover asks the paired sites first and is refused, naming it', async () => {
  const sites: TestSite[] = [];
  try {
    const { seattle, london, tokyo } = await seattleWithTwo(sites, 'tko');
    // london's notice cannot reach seattle (it was down; the retry has not come yet): seattle knows nothing of london's failover.
    await london.stop();
    await london.start({ env: { FERRY_TEST_FAULTS: 'dr.failover-notice:fail:times=1000' } });
    assert.equal((await london.json(['failover', 'vol', '--force', '--no-repoint'])).notified, false);
    // seattle would let tokyo go (it answers the notice as if tokyo were the first); london, asked first, says it took vol over.
    await tokyo.refused(['failover', 'vol'], 4, 'MIRROR_STATE', /london already took vol over from seattle[\s\S]*mirror repoint vol --to tokyo[\s\S]*failover vol --force/);
    assert.equal((await tokyo.volumeStatus('vol')).role, 'secondary', 'tokyo stays a secondary');
    assert.notEqual((await seattle.mirror('vol', 'tokyo')).state, 'broken-off', 'seattle was told nothing: the question came first');
    assert.deepEqual(await splitBrainsAt(london), [], 'the question records nothing');
    // If london is lost, forced: tokyo goes ahead and both record the split brain (asked after the promotion).
    const forced = await tokyo.json(['failover', 'vol', '--force', '--no-repoint']);
    assert.deepEqual(forced.splitBrainsWith, ['london']);
    assert.deepEqual(await splitBrainsAt(london), ['tokyo']);
  } finally {
    await cleanupSites(sites);
  }
});

test('a forced failover at a secondary whose primary a sibling already took over records the split brain against that sibling', async () => {
  const sites: TestSite[] = [];
  try {
    const { seattle, london, tokyo } = await londonTookOver(sites, 'sff');

    const fo = await tokyo.json(['failover', 'vol', '--force']);
    assert.equal(fo.splitBrainWith, 'london', 'the failover says whom it is a second primary beside');
    assert.equal((await tokyo.volumeStatus('vol')).role, 'primary');
    // Recorded: tokyo's relation to seattle stays broken off (seattle may fail back to it), and the
    // failover notice names london; status shows the split brain with london.
    const row = tokyo.catalog((db) => db.prepare("SELECT source_site, state, json_extract(failover_notice, '$.splitBrainWith.site') AS sibling FROM secondaries WHERE volume = 'vol'").get()) as { source_site: string; state: string; sibling: string };
    assert.deepEqual({ ...row }, { source_site: seattle.id, state: 'broken-off', sibling: london.id });
    const sec = (await tokyo.volumeStatus('vol')).secondary;
    assert.equal(sec.notice.splitBrainWith.name, 'london');
    const human = await tokyo.ferry(['status']);
    assert.match(human.stdout, /split brain with london \(vol there\): it took vol over from seattle first/);
    // seattle broke both mirrors off: it yields to either by failback, nothing is dropped.
    assert.equal((await seattle.mirror('vol', 'tokyo')).state, 'broken-off');
    assert.equal((await seattle.mirror('vol', 'london')).state, 'broken-off');
  } finally {
    await cleanupSites(sites);
  }
});

/** The split brains `ferry status --json` shows for vol at a site, by the other site's name. */
async function splitBrainsAt(site: TestSite): Promise<string[]> {
  return ((await site.volumeStatus('vol')).splitBrains as Array<{ name: string }>).map((b) => b.name);
}

function eventsOf(site: TestSite, kind: string): Array<{ detail: Record<string, unknown> }> {
  return site.catalog((db) => db.prepare('SELECT detail FROM events WHERE kind = ? ORDER BY id').all(kind) as Array<{ detail: string }>).map((e) => ({ detail: JSON.parse(e.detail) }));
}

test('the split brain a forced sibling failover recorded outlives the old primary failing back to it, until the other sibling follows it', async () => {
  const sites: TestSite[] = [];
  try {
    const { seattle, london, tokyo } = await londonTookOver(sites, 'sfb');
    assert.equal((await tokyo.json(['failover', 'vol', '--force', '--no-repoint'])).splitBrainWith, 'london');
    // The soak (seed 3, step 173): seattle yields to tokyo. tokyo's relation to seattle, through
    // which it learned of london, ends; london is still primary beside it.
    await seattle.json(['failback', 'vol', '--to', 'tokyo']);
    assert.equal((await seattle.volumeStatus('vol')).role, 'secondary');
    assert.equal((await london.volumeStatus('vol')).role, 'primary');
    const st = await tokyo.volumeStatus('vol');
    assert.equal(st.role, 'primary');
    assert.equal(st.secondary, undefined, "tokyo's relation to seattle is gone");
    assert.match((await tokyo.ferry(['status'])).stdout, /split brain with london \(vol there\): it took vol over from seattle first, and both are primary[\s\S]*ferry picks no winner/);
    assert.deepEqual(await splitBrainsAt(tokyo), ['london'], 'tokyo still shows the split brain with london');
    assert.equal(eventsOf(tokyo, 'failover.split-brain').at(-1)?.detail.sibling, 'london', 'an event records it');
    // Resolved as docs/dr.md says: london yields (its volume removed), tokyo mirrors to it anew.
    const replica = await london.memberPath('vol');
    await london.json(['volume', 'remove', 'vol', '--force']);
    rmSync(dirname(replica), { recursive: true }); // its files (volume remove leaves them): moved away, as the refusal would say
    await tokyo.json(['mirror', 'create', 'vol', '--to', 'london']);
    await tokyo.json(['mirror', 'initialize', 'vol', '--to', 'london', '--wait']);
    assert.deepEqual(await splitBrainsAt(tokyo), [], 'london follows tokyo: the split brain is over');
    assert.equal(eventsOf(tokyo, 'split-brain.resolved').at(-1)?.detail.site, london.id);
  } finally {
    await cleanupSites(sites);
  }
});

test('a secondary left behind when its primary failed back to a sibling: failing over is refused naming that sibling, and forced records the split brain with it', async () => {
  const sites: TestSite[] = [];
  try {
    const { seattle, london, tokyo } = await seattleWithTwo(sites, 'lb');
    // The soak (seed 3, step 1162): tokyo takes over, seattle fails back to it (dropping its mirror
    // to london, which still follows seattle), then london fails over.
    await tokyo.json(['failover', 'vol', '--no-repoint']);
    await seattle.json(['failback', 'vol', '--to', 'tokyo']);
    assert.equal((await seattle.volumeStatus('vol')).role, 'secondary');
    await london.refused(['failover', 'vol'], 4, 'MIRROR_STATE', /no longer the primary of vol: it follows tokyo[\s\S]*mirror repoint vol --to london[\s\S]*--force/);
    assert.equal((await london.volumeStatus('vol')).role, 'secondary', 'london stays a secondary');
    const fo = await london.json(['failover', 'vol', '--force', '--no-repoint']);
    assert.equal(fo.splitBrainWith, 'tokyo', 'seattle answered the forced notice with the site it follows');
    assert.deepEqual(await splitBrainsAt(london), ['tokyo']);
    assert.match((await london.ferry(['status'])).stdout, /split brain with tokyo \(vol there\)/);
    assert.equal(eventsOf(london, 'failover.split-brain').at(-1)?.detail.sibling, 'tokyo');
  } finally {
    await cleanupSites(sites);
  }
});

test('a migrate is refused while a split brain is recorded, and a failback hands the record over to the site it yields to', async () => {
  const sites: TestSite[] = [];
  try {
    const { seattle, london, tokyo } = await londonTookOver(sites, 'sfh');
    await tokyo.json(['failover', 'vol', '--force', '--no-repoint']);
    await seattle.json(['failback', 'vol', '--to', 'tokyo']);
    // Handing the role to seattle by a switchover would leave nobody knowing of london.
    await tokyo.refused(['migrate', 'vol', '--to', 'seattle'], 4, 'MIRROR_STATE', /london is primary of vol too \(split brain[\s\S]*a failback hands the record over/);
    assert.equal((await tokyo.volumeStatus('vol')).role, 'primary', 'the refused migrate changed nothing');
    // As the refusal says: seattle takes over, tokyo yields to it by failback; seattle is primary beside london now.
    // tokyo's answer to seattle's notice already names london (recorded there): seattle learns it at its
    // failover; the failback then hands over what seattle knows already.
    assert.deepEqual((await seattle.json(['failover', 'vol', '--no-repoint'])).splitBrainsWith, ['london']);
    assert.equal(eventsOf(seattle, 'failover.split-brain').at(-1)?.detail.oldPrimary, 'tokyo');
    await tokyo.json(['failback', 'vol', '--to', 'seattle']);
    assert.equal((await tokyo.volumeStatus('vol')).role, 'secondary');
    assert.deepEqual(await splitBrainsAt(seattle), ['london'], 'seattle knows it is primary beside london');
    assert.deepEqual(await splitBrainsAt(tokyo), [], 'tokyo, a secondary now, handed its record over');
    assert.match((await seattle.ferry(['status'])).stdout, /split brain with london \(vol there\)/);
    assert.match(String(eventsOf(tokyo, 'split-brain.resolved').at(-1)?.detail.reason), /handed over to seattle/);
  } finally {
    await cleanupSites(sites);
  }
});

// Chained failovers (the soak, seed 5, steps 187-189): london takes the volume over from seattle
// (re-pointing tokyo), then tokyo takes it over from london. Three primaries: seattle (its mirror to
// london broken off), london (its relation to seattle and its mirror to tokyo broken off), tokyo.
// tokyo and seattle had nothing relating them: neither could show the split brain between them.

/** seattle's volume at london and tokyo; london takes it over (plain) and re-points tokyo. */
async function londonTookOverAndRepointed(sites: TestSite[], tag: string): Promise<{ seattle: TestSite; london: TestSite; tokyo: TestSite }> {
  const three = await seattleWithTwo(sites, tag);
  // an update after both mirrors exist: its hello names tokyo to london as a sibling
  await three.seattle.json(['mirror', 'update', 'vol', '--to', 'london', '--wait']);
  await three.london.json(['failover', 'vol']);
  assert.equal(three.tokyo.catalog((db) => (db.prepare("SELECT source_site FROM secondaries WHERE volume = 'vol'").get() as { source_site: string }).source_site), three.london.id, 'tokyo follows london');
  return three;
}

/**
 * london stopped, tokyo takes the volume over from it (forced): london is not told, tokyo learns
 * nothing yet (its question to the other paired sites, which would find seattle, fails: `faults`,
 * with more of them for tokyo's daemon).
 */
async function tokyoTakesOverWhileLondonIsDown(london: TestSite, tokyo: TestSite, faults = ''): Promise<void> {
  await tokyo.stop();
  await tokyo.start({ env: { FERRY_TEST_FAULTS: ['dr.beside:fail:times=1000', faults].filter(Boolean).join(';') } });
  await london.stop();
  const fo = await tokyo.json(['failover', 'vol', '--force', '--no-repoint']);
  assert.equal(fo.notified, false);
  assert.deepEqual(await splitBrainsAt(tokyo), [], 'nothing learned yet');
}

test('a failover from a primary that had itself taken the volume over records the split brain with the site it took it from', async () => {
  const sites: TestSite[] = [];
  try {
    const { seattle, london, tokyo } = await londonTookOverAndRepointed(sites, 'ch');
    const fo = await tokyo.json(['failover', 'vol', '--force', '--no-repoint']);
    assert.deepEqual(fo.splitBrainsWith, ['seattle'], 'london answered the notice naming seattle, primary beside it');
    for (const s of [seattle, london, tokyo]) assert.equal((await s.volumeStatus('vol')).role, 'primary', `${s.name} is primary`);
    assert.deepEqual(await splitBrainsAt(tokyo), ['seattle']);
    assert.match((await tokyo.ferry(['status'])).stdout, /split brain with seattle \(vol there\): both are primary of vol/);
    assert.equal(eventsOf(tokyo, 'failover.split-brain').at(-1)?.detail.sibling, 'seattle');
    // london yields to tokyo: tokyo is still primary beside seattle, and still knows it.
    await london.json(['failback', 'vol', '--to', 'tokyo']);
    assert.equal((await london.volumeStatus('vol')).role, 'secondary');
    assert.deepEqual(await splitBrainsAt(tokyo), ['seattle']);
  } finally {
    await cleanupSites(sites);
  }
});

test('a site that took the volume over hands the primary it took it from to the site it fails back to, and refuses to migrate away from it', async () => {
  const sites: TestSite[] = [];
  try {
    const { london, tokyo } = await londonTookOverAndRepointed(sites, 'chf');
    // A switchover would leave tokyo primary beside seattle with nobody knowing.
    await london.refused(['migrate', 'vol', '--to', 'tokyo'], 4, 'MIRROR_STATE', /seattle is primary of vol too \(split brain[\s\S]*seattle is the site this one took vol over from[\s\S]*a failback hands the record over/);
    assert.equal((await london.volumeStatus('vol')).role, 'primary', 'the refused migrate changed nothing');
    // tokyo takes over while london is down, and its notice never reaches london (so london's
    // answer cannot name seattle); london then yields to tokyo.
    await tokyoTakesOverWhileLondonIsDown(london, tokyo, 'dr.failover-notice:fail:times=1000');
    await london.start();
    await london.json(['failback', 'vol', '--to', 'tokyo']);
    assert.equal((await london.volumeStatus('vol')).role, 'secondary');
    assert.deepEqual(await splitBrainsAt(tokyo), ['seattle'], 'london handed seattle over with its failback');
    assert.deepEqual(await splitBrainsAt(london), [], 'london, a secondary now, keeps no record');
    assert.equal(eventsOf(tokyo, 'failover.split-brain').at(-1)?.detail.handedBy, 'london');
  } finally {
    await cleanupSites(sites);
  }
});

test('told late (the old primary was down at the forced failover), the old primary still names the site it had taken the volume over from', async () => {
  const sites: TestSite[] = [];
  try {
    const { london, tokyo } = await londonTookOverAndRepointed(sites, 'chl');
    await tokyoTakesOverWhileLondonIsDown(london, tokyo);
    await london.start();
    // Rerunning the failover sends the notice now (the daemon would, after its backoff).
    assert.equal((await tokyo.json(['failover', 'vol'])).notified, true);
    assert.deepEqual(await splitBrainsAt(tokyo), ['seattle'], "london's late answer named seattle");
    assert.deepEqual((await tokyo.volumeStatus('vol')).secondary.notice.alsoPrimary.map((p: { name: string }) => p.name), ['seattle']);
  } finally {
    await cleanupSites(sites);
  }
});

// A secondary the primary no longer mirrors to (soak seed 8, steps 117-150, three sites): a removed
// its mirror of v2 to c, which stayed a secondary of a; b took v2 over from a, then c (forced). a held
// no mirror to c and answered c's notice "no mirror of v2 to c", taken as nothing to tell: b and c
// were primary of v2, neither knowing of the other.

/** seattle's volume at london and tokyo; seattle then removes its mirror to tokyo (tokyo stays its secondary). */
async function tokyoLeftBehind(sites: TestSite[], tag: string): Promise<{ seattle: TestSite; london: TestSite; tokyo: TestSite }> {
  const three = await seattleWithTwo(sites, tag);
  await three.seattle.json(['mirror', 'remove', 'vol', '--to', 'tokyo']);
  assert.equal(three.tokyo.catalog((db) => (db.prepare("SELECT source_site FROM secondaries WHERE volume = 'vol'").get() as { source_site: string }).source_site), three.seattle.id, 'tokyo still follows seattle');
  return three;
}

test('a secondary whose mirror its primary removed, failing over after a sibling took over, records the split brain with that sibling', async () => {
  const sites: TestSite[] = [];
  try {
    const { seattle, london, tokyo } = await tokyoLeftBehind(sites, 'rm');
    await london.json(['failover', 'vol', '--no-repoint']);
    // A plain failover is refused, naming london and the way on (not "cannot tell seattle: if it is down").
    await tokyo.refused(['failover', 'vol'], 4, 'MIRROR_STATE', /london already took vol over from seattle[\s\S]*mirror repoint vol --to tokyo[\s\S]*--force/);
    assert.equal((await tokyo.volumeStatus('vol')).role, 'secondary', 'tokyo stays a secondary');
    const fo = await tokyo.json(['failover', 'vol', '--force', '--no-repoint']);
    assert.equal(fo.notified, true, 'seattle took the notice');
    assert.equal(fo.splitBrainWith, 'london', "seattle's answer named london");
    assert.deepEqual(await splitBrainsAt(tokyo), ['london']);
    assert.match((await tokyo.ferry(['status'])).stdout, /split brain with london \(vol there\)/);
    // seattle, primary still and mirroring to tokyo no more, knows tokyo is primary beside it.
    assert.deepEqual(await splitBrainsAt(seattle), ['tokyo']);
  } finally {
    await cleanupSites(sites);
  }
});

test('a secondary whose mirror its primary removed fails over first, its notice held up: told late, it learns of the sibling that took over meanwhile', async () => {
  const sites: TestSite[] = [];
  try {
    const { seattle, london, tokyo } = await tokyoLeftBehind(sites, 'rml');
    // tokyo's notice cannot reach seattle (the soak had links cut around it): seattle knows nothing of tokyo.
    await tokyo.stop();
    await tokyo.start({ env: { FERRY_TEST_FAULTS: 'dr.failover-notice:fail:times=1000' } });
    const fo = await tokyo.json(['failover', 'vol', '--force', '--no-repoint']);
    assert.equal(fo.notified, false);
    // seattle could not name tokyo to london: london asks the paired sites first, and a plain failover is refused
    await london.refused(['failover', 'vol', '--no-repoint'], 4, 'MIRROR_STATE', /tokyo already took vol over from seattle/);
    await london.json(['failover', 'vol', '--no-repoint', '--force']);
    // forced, london asked the paired sites again after its promotion (dr/beside), and recorded tokyo
    assert.deepEqual(await splitBrainsAt(london), ['tokyo'], 'london asked tokyo');
    // The way heals: tokyo's daemon, restarted, sends the notice at once (and then after a backoff).
    await tokyo.stop();
    await tokyo.start();
    await waitFor('tokyo to tell seattle', async () => (await tokyo.volumeStatus('vol')).secondary.notice?.state === 'told', 30_000, 250);
    assert.deepEqual(await splitBrainsAt(tokyo), ['london'], "seattle's late answer named london");
    assert.deepEqual(await splitBrainsAt(seattle), ['tokyo']);
  } finally {
    await cleanupSites(sites);
  }
});

test('a secondary whose mirror its primary removed fails over first: the primary records it, and a sibling failing over after it is refused (it asks first), forced learns of it', async () => {
  const sites: TestSite[] = [];
  try {
    const { seattle, london, tokyo } = await tokyoLeftBehind(sites, 'rmf');
    // Plain: seattle is up and takes the notice (before, "cannot tell seattle: if it is down, --force").
    const fo = await tokyo.json(['failover', 'vol', '--no-repoint']);
    assert.equal(fo.notified, true);
    assert.equal((await tokyo.volumeStatus('vol')).role, 'primary');
    assert.deepEqual(await splitBrainsAt(seattle), ['tokyo'], 'seattle knows tokyo is primary beside it');
    await london.refused(['failover', 'vol', '--no-repoint'], 4, 'MIRROR_STATE', /tokyo already took vol over from seattle/);
    assert.deepEqual((await london.json(['failover', 'vol', '--no-repoint', '--force'])).splitBrainsWith, ['tokyo']);
    assert.deepEqual(await splitBrainsAt(london), ['tokyo']);
  } finally {
    await cleanupSites(sites);
  }
});

test('a secondary whose primary removed every mirror (standalone there now): a plain failover says the old primary answered it is not its primary, and --force promotes it', async () => {
  const sites: TestSite[] = [];
  try {
    const { seattle, tokyo } = await tokyoLeftBehind(sites, 'rms');
    await seattle.json(['mirror', 'remove', 'vol', '--to', 'london']);
    assert.equal((await seattle.volumeStatus('vol')).role, 'standalone');
    // Soak seed 8, step 175: "cannot tell the old primary (...); if it is down, run --force" while it was up and had answered.
    await tokyo.refused(['failover', 'vol'], 4, 'MIRROR_STATE', /seattle answered that it does not mirror vol to this site[\s\S]*nothing there to stop[\s\S]*`ferry failover vol --force`/);
    assert.equal((await tokyo.volumeStatus('vol')).role, 'secondary', 'tokyo stays a secondary');
    await tokyo.json(['failover', 'vol', '--force']);
    assert.equal((await tokyo.volumeStatus('vol')).role, 'primary');
    assert.deepEqual(await splitBrainsAt(seattle), [], 'a standalone seattle records nothing');
  } finally {
    await cleanupSites(sites);
  }
});

// The soak, seed 1370182201, step 861: b removed its mirrors of v2 to a and to c (both stayed its
// secondaries), a took v2 over, b removed v2 (forgetting a) and made a new v2; c, forced, took v2
// over too. b could name nobody: a and c were primary of v2, neither knowing of the other. The new
// primary now asks every paired site (dr/beside) after its promotion.
test('an old primary that forgot a sibling took over (its mirrors and volume removed): the second failover asks the paired sites, and both primaries record each other', async () => {
  const sites: TestSite[] = [];
  try {
    const { seattle, london, tokyo } = await tokyoLeftBehind(sites, 'fgt');
    await seattle.json(['mirror', 'remove', 'vol', '--to', 'london']);
    await london.json(['failover', 'vol', '--no-repoint', '--force']);
    assert.equal((await london.volumeStatus('vol')).role, 'primary');
    // seattle gives the volume up and makes a new one of that name: nothing of london is known there.
    await seattle.json(['volume', 'remove', 'vol', '--force']);
    const data = join(seattle.dir, 'data2');
    writeVolumeData(data, 1, 16 * KiB);
    await seattle.json(['volume', 'create', 'vol', '--member', `data=tree:${data}`]);
    // asked first, london says it took vol over (before it, seattle would have answered that it does not mirror vol to tokyo)
    await tokyo.refused(['failover', 'vol'], 4, 'MIRROR_STATE', /london already took vol over from seattle/);
    const fo = await tokyo.json(['failover', 'vol', '--force', '--no-repoint']);
    assert.deepEqual(fo.splitBrainsWith, ['london'], 'london answered it is primary of what came from seattle');
    assert.deepEqual(await splitBrainsAt(tokyo), ['london']);
    assert.deepEqual(await splitBrainsAt(london), ['tokyo'], 'london recorded tokyo when asked');
    assert.match(String(eventsOf(london, 'failover.split-brain').at(-1)?.detail.message), /tokyo took vol over from seattle too: both are primary/);
    assert.match((await tokyo.ferry(['status'])).stdout, /split brain with london \(vol there\)/);
  } finally {
    await cleanupSites(sites);
  }
});

test('a paired site down when a failover asks whether it is primary beside it is asked again by the daemon once it is back', async () => {
  const sites: TestSite[] = [];
  try {
    const { seattle, london, tokyo } = await tokyoLeftBehind(sites, 'fgd');
    await seattle.json(['mirror', 'remove', 'vol', '--to', 'london']);
    await london.json(['failover', 'vol', '--no-repoint', '--force']);
    await seattle.json(['volume', 'remove', 'vol', '--force']);
    await london.stop();
    const fo = await tokyo.json(['failover', 'vol', '--force', '--no-repoint']);
    assert.equal(fo.splitBrainsWith, undefined, 'london could not be asked');
    assert.deepEqual(tokyo.catalog((db) => JSON.parse((db.prepare("SELECT json_extract(failover_notice, '$.besideUnasked') AS u FROM secondaries WHERE volume = 'vol'").get() as { u: string }).u)), [london.id]);
    await london.start();
    await waitFor('tokyo to ask london again', async () => (await splitBrainsAt(tokyo)).length > 0, 30_000, 250);
    assert.deepEqual(await splitBrainsAt(tokyo), ['london']);
    assert.deepEqual(await splitBrainsAt(london), ['tokyo']);
    assert.equal(tokyo.catalog((db) => (db.prepare("SELECT json_extract(failover_notice, '$.besideUnasked') AS u FROM secondaries WHERE volume = 'vol'").get() as { u: string | null }).u), null, 'nobody left to ask');
  } finally {
    await cleanupSites(sites);
  }
});

test('a primary that removes the mirror a sibling broke off by its failover still knows that sibling, and names it to the next one failing over (forced: a plain one is refused by the sibling\'s own answer)', async () => {
  const sites: TestSite[] = [];
  try {
    const { seattle, london, tokyo } = await londonTookOver(sites, 'rmb');
    // The broken-off mirror was how seattle knew london is primary beside it.
    await seattle.json(['mirror', 'remove', 'vol', '--to', 'london']);
    assert.deepEqual(await splitBrainsAt(seattle), ['london'], 'seattle keeps knowing london is primary beside it');
    assert.equal(eventsOf(seattle, 'failover.split-brain').at(-1)?.detail.sibling, 'london');
    await tokyo.refused(['failover', 'vol', '--no-repoint'], 4, 'MIRROR_STATE', /london already took vol over from seattle/);
    assert.deepEqual((await tokyo.json(['failover', 'vol', '--no-repoint', '--force'])).splitBrainsWith, ['london'], "seattle's answer named london");
    assert.deepEqual(await splitBrainsAt(tokyo), ['london']);
    assert.equal((await london.volumeStatus('vol')).role, 'primary');
  } finally {
    await cleanupSites(sites);
  }
});

test('a primary removing the mirror of a sibling that took over and then gave its copy up records nothing', async () => {
  const sites: TestSite[] = [];
  try {
    const { seattle, london } = await londonTookOver(sites, 'rmy');
    // As docs/dr.md's way back has it: london yields (its volume removed), seattle mirrors it anew.
    const replica = await london.memberPath('vol');
    await london.json(['volume', 'remove', 'vol', '--force']);
    rmSync(dirname(replica), { recursive: true });
    await seattle.json(['mirror', 'remove', 'vol', '--to', 'london']);
    assert.deepEqual(await splitBrainsAt(seattle), [], 'london answered it holds no such volume: no split brain');
  } finally {
    await cleanupSites(sites);
  }
});

// A recorded split brain goes stale when the other site gives its copy up while this one cannot hear
// of it (the soak's leftover: `mirror remove` could not reach it, or it yielded later): it refused
// every migrate until a new mirror to that site applied an update. A migrate now asks first.
/** london took the volume over, then tokyo (forced), and seattle failed back to tokyo: tokyo, primary, records london. */
async function tokyoRecordsLondon(sites: TestSite[], tag: string): Promise<{ seattle: TestSite; london: TestSite; tokyo: TestSite }> {
  const three = await londonTookOver(sites, tag);
  await three.tokyo.json(['failover', 'vol', '--force', '--no-repoint']);
  await three.seattle.json(['failback', 'vol', '--to', 'tokyo']);
  assert.deepEqual(await splitBrainsAt(three.tokyo), ['london']);
  return three;
}

test('a migrate asks each recorded split brain first: one whose site gave its copy up is dropped and the migrate goes on; one it cannot ask stays, named', async () => {
  const sites: TestSite[] = [];
  try {
    const { seattle, london, tokyo } = await tokyoRecordsLondon(sites, 'sfs');
    // london down: it cannot be asked, so the record stays and the refusal says so.
    await london.stop();
    await tokyo.refused(['migrate', 'vol', '--to', 'seattle'], 4, 'MIRROR_STATE', /london is primary of vol too \(split brain[\s\S]*london could not tell whether it is still primary/);
    assert.deepEqual(await splitBrainsAt(tokyo), ['london'], 'kept: london could not be asked');
    // london back, it yields as docs/dr.md's way back has it (its volume removed), and tokyo does not hear of it.
    await london.start();
    const replica = await london.memberPath('vol');
    await london.json(['volume', 'remove', 'vol', '--force']);
    rmSync(dirname(replica), { recursive: true });
    await tokyo.json(['migrate', 'vol', '--to', 'seattle']);
    assert.equal((await seattle.volumeStatus('vol')).role, 'primary', 'the migrate went on');
    assert.equal((await tokyo.volumeStatus('vol')).role, 'secondary');
    assert.deepEqual(await splitBrainsAt(seattle), [], 'nothing handed over: london is primary of nothing');
    assert.match(String(eventsOf(tokyo, 'split-brain.resolved').at(-1)?.detail.reason), /london answered it holds no volume vol any more \(asked before a migrate\)/);
  } finally {
    await cleanupSites(sites);
  }
});

test('a migrate asks a recorded split brain with no mirror between the two sites (dr/role): still primary, it stays; holding the volume as another site\'s secondary now, it goes', async () => {
  const sites: TestSite[] = [];
  try {
    const { seattle, london, tokyo } = await tokyoRecordsLondon(sites, 'sfr');
    // No mirror relates london and tokyo: london answers its role all the same, and it is primary.
    const refused = await tokyo.refused(['migrate', 'vol', '--to', 'seattle'], 4, 'MIRROR_STATE', /london is primary of vol too \(split brain/);
    assert.doesNotMatch(refused.stderr, /could not tell/, 'london answered: still primary');
    assert.deepEqual(await splitBrainsAt(tokyo), ['london'], 'kept: london is primary');
    // london gives its copy up and then follows another site's volume of that name (oslo's, unrelated
    // to tokyo): it is primary of no vol any more.
    const replica = await london.memberPath('vol');
    await london.json(['volume', 'remove', 'vol', '--force']);
    rmSync(dirname(replica), { recursive: true });
    const oslo = await createSite('oslo-sfr');
    sites.push(oslo);
    writeVolumeData(join(oslo.dir, 'data'), 1, 16 * KiB);
    oslo.defineVolume('vol', [join(oslo.dir, 'data')]);
    await oslo.start();
    await pairPlain(oslo, london);
    await oslo.json(['mirror', 'create', 'vol', '--to', 'london']);
    await oslo.json(['mirror', 'initialize', 'vol', '--to', 'london', '--wait']);
    assert.equal((await london.volumeStatus('vol')).role, 'secondary');
    await tokyo.json(['migrate', 'vol', '--to', 'seattle']);
    assert.equal((await seattle.volumeStatus('vol')).role, 'primary', 'the migrate went on');
    assert.deepEqual(await splitBrainsAt(seattle), [], 'nothing handed over');
    assert.match(String(eventsOf(tokyo, 'split-brain.resolved').at(-1)?.detail.reason), /london answered it is not primary of vol any more \(asked before a migrate\)/);
  } finally {
    await cleanupSites(sites);
  }
});
