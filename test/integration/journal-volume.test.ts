// The change journal per volume, on real daemons (src/site/journal-service.ts): a volume with the
// journal off (`journal: false` in the site file, `volume create/set --no-journal`) is not watched
// and every snapshot of it walks in full while another volume of the same daemon stays journaled;
// turned on by a reload of the site file (SIGHUP), its next snapshot is an audit, then journaled.
// And a member over the inotify watch limit (a real one: the daemon runs in a user namespace of its
// own whose max_inotify_watches is small, the machine's sysctl untouched) is walked in full, its
// watches released for the other volumes, said once, and not watched again before its back-off;
// once the limit is raised, `volume set --journal` has it watched again at the next snapshot.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { appendFileSync, chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FERRY_BIN } from '../helpers.ts';
import { createSite, waitFor, withCatalog, type TestSite } from '../harness/index.ts';

function tree(root: string, dirs: number): void {
  mkdirSync(root, { recursive: true });
  writeFileSync(join(root, 'top'), 'top\n');
  for (let i = 0; i < dirs; i++) {
    mkdirSync(join(root, `d${i}`));
    writeFileSync(join(root, `d${i}`, 'f'), `f${i}\n`);
  }
}

async function journalOf(site: TestSite, volume: string): Promise<any> {
  const v = (await site.status()).volumes.find((x: { name: string }) => x.name === volume);
  assert.ok(v?.journal?.data, `no journal in status for ${volume}: ${JSON.stringify(v)}`);
  return v.journal.data;
}

const snap = async (site: TestSite, volume: string) => (await site.json(['snapshot', 'create', volume])).snapshot.stats;

function events(home: string, kind: string): Array<{ volume: string | null; outcome: string; detail: any }> {
  return withCatalog(home, (db) => db.prepare('SELECT volume, outcome, detail FROM events WHERE kind = ? ORDER BY id').all(kind) as Array<{ volume: string | null; outcome: string; detail: string }>).map((e) => ({ ...e, detail: JSON.parse(e.detail) }));
}

const siteFile = (on: string, off: string, offJournal: boolean) => `version: 1
volumes:
  on:
    members: [ "data=${on}" ]
  off:
    members: [ "data=${off}" ]
${offJournal ? '' : '    journal: false\n'}`;

test('a volume with the journal off walks in full beside a journaled one; a reload that turns it on makes the next snapshot an audit, then journaled ones', async () => {
  const site = await createSite('jvol');
  try {
    const on = join(site.dir, 'on');
    const off = join(site.dir, 'off');
    tree(on, 3);
    tree(off, 3);
    const file = join(site.home, 'ferry.yaml');
    writeFileSync(file, siteFile(on, off, false));
    await site.start();

    assert.equal((await journalOf(site, 'on')).state, 'audit-due');
    const offStatus = await journalOf(site, 'off');
    assert.equal(offStatus.state, 'off');
    assert.equal(offStatus.watches, 0);
    const shown = await site.json(['volume', 'show', 'off']);
    assert.equal(shown.journal, false);
    assert.match((await site.ferry(['volume', 'show', 'off'])).stdout, /change journal: off/);
    assert.match((await site.ferry(['status'])).stdout, /journal data: off/);
    assert.match((await site.ferry(['config', 'export'])).stdout, /off:\n(.*\n)*? {4}journal: false/);

    await snap(site, 'on');
    await snap(site, 'off');
    appendFileSync(join(on, 'd1', 'f'), 'more\n');
    appendFileSync(join(off, 'd1', 'f'), 'more\n');
    assert.deepEqual((await snap(site, 'on')).journaled, ['data'], 'the other volume of the daemon stays journaled');
    assert.equal((await snap(site, 'off')).journaled, undefined, 'walked in full');
    assert.equal((await journalOf(site, 'off')).state, 'off');

    // The file turns it on; SIGHUP: the watches start, and the next snapshot is an audit (nothing is
    // known of what changed while it was off).
    writeFileSync(file, siteFile(on, off, true));
    site.proc!.kill('SIGHUP');
    await waitFor('the config.reload event', () => events(site.home, 'config.reload')[0]);
    assert.equal(events(site.home, 'config.reload')[0].outcome, 'ok', JSON.stringify(events(site.home, 'config.reload')));
    const j = await journalOf(site, 'off');
    assert.equal(j.state, 'audit-due');
    assert.ok(j.watches >= 4, `watches ${j.watches}`);
    appendFileSync(join(off, 'd2', 'f'), 'more\n');
    const audit = await snap(site, 'off');
    assert.equal(audit.journaled, undefined, 'the first snapshot since the journal was turned on walks in full');
    appendFileSync(join(off, 'd0', 'f'), 'more\n');
    const next = await snap(site, 'off');
    assert.deepEqual(next.journaled, ['data']);
    assert.equal(next.filesRead, 1);
    assert.equal((await journalOf(site, 'off')).state, 'live');

    // And off by the CLI: its watches are released at once.
    await site.json(['volume', 'set', 'on', '--no-journal']);
    const released = await journalOf(site, 'on');
    assert.equal(released.state, 'off');
    assert.equal(released.watches, 0);
    assert.equal((await snap(site, 'on')).journaled, undefined);

    // Made off from the start by the CLI: never watched.
    const third = join(site.dir, 'third');
    tree(third, 1);
    assert.equal((await site.json(['volume', 'create', 'third', '--member', `data=${third}`, '--no-journal'])).journal, false);
    await snap(site, 'third');
    appendFileSync(join(third, 'd0', 'f'), 'more\n');
    assert.equal((await snap(site, 'third')).journaled, undefined);
    assert.equal((await journalOf(site, 'third')).state, 'off');
  } finally {
    await site.cleanup();
  }
});

// A user namespace of the daemon's own, whose inotify watch limit is LIMIT (the machine's stays).
const canUnshare = spawnSync('unshare', ['-U', '-r', 'sh', '-c', 'echo 8 > /proc/sys/user/max_inotify_watches'], { stdio: 'ignore' }).status === 0 && spawnSync('nsenter', ['--version'], { stdio: 'ignore' }).status === 0;

test('a member over the inotify watch limit: walked in full, its watches released for the other volumes, said once, not watched again before its back-off', { skip: !canUnshare && 'no user namespaces here (unshare -U -r, nsenter)' }, async () => {
  const site = await createSite('jlimit');
  try {
    // 12 watches: the barrier, `small` (3 directories) and not `big` (20).
    const big = join(site.dir, 'big');
    const small = join(site.dir, 'small');
    tree(big, 19);
    tree(small, 2);
    site.defineVolume('a-big', [`data=${big}`]);
    site.defineVolume('b-small', [`data=${small}`]);
    const wrapper = join(site.dir, 'ferry-limited');
    writeFileSync(wrapper, `#!/bin/sh\nexec unshare -U -r sh -c 'echo 12 > /proc/sys/user/max_inotify_watches && exec "$0" "$@"' ${FERRY_BIN} "$@"\n`);
    chmodSync(wrapper, 0o755);
    await site.start({ bin: wrapper });

    const j = await journalOf(site, 'a-big');
    assert.equal(j.state, 'audit-due');
    assert.match(j.reason, /inotify watches exhausted/);
    assert.equal(j.watches, 0);
    assert.ok(j.retryAt > Date.now() + 9 * 60_000, `retryAt ${j.retryAt}`);
    assert.match((await site.ferry(['status'])).stdout, /out of watches: not tried again before/);
    // the watches it could not use went back: the small volume is watched whole
    const s = await journalOf(site, 'b-small');
    assert.equal(s.reason, 'no full walk since the watch began');
    assert.equal(s.watches, 3);

    await snap(site, 'a-big');
    await snap(site, 'b-small');
    appendFileSync(join(big, 'd3', 'f'), 'x');
    appendFileSync(join(small, 'd1', 'f'), 'x');
    assert.equal((await snap(site, 'a-big')).journaled, undefined);
    assert.deepEqual((await snap(site, 'b-small')).journaled, ['data']);
    assert.equal((await journalOf(site, 'a-big')).retryAt, j.retryAt, 'not tried again within the back-off');

    const ev = events(site.home, 'journal.unavailable');
    assert.equal(ev.length, 1, JSON.stringify(ev));
    assert.equal(ev[0].volume, 'a-big');
    assert.equal(ev[0].detail.member, 'data');
    assert.match(ev[0].detail.fix, /max_user_watches.*--no-journal/);

    // The operator raises the limit (here, the daemon's namespace's) and says so: the next snapshot
    // watches the member again (walking in full, the base of the new watch), the ones after are journaled.
    const raise = spawnSync('nsenter', ['-U', '-t', String(site.proc!.pid), '--preserve-credentials', 'sh', '-c', 'echo 100 > /proc/sys/user/max_inotify_watches'], { encoding: 'utf8' });
    assert.equal(raise.status, 0, raise.stderr);
    await site.json(['volume', 'set', 'a-big', '--journal']);
    assert.equal((await snap(site, 'a-big')).journaled, undefined);
    const back = await journalOf(site, 'a-big');
    assert.equal(back.retryAt, null);
    assert.equal(back.watches, 20);
    assert.equal(back.state, 'live');
    appendFileSync(join(big, 'd4', 'f'), 'x');
    assert.deepEqual((await snap(site, 'a-big')).journaled, ['data']);
  } finally {
    await site.cleanup();
  }
});
