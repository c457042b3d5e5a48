// The daemon's change journal (src/site/journal-service.ts) on a real daemon and real files: after
// its first full walk, a snapshot reads only what changed; the tree it records is the one a full
// walk records; a change made while the daemon was down is caught by the start-up audit; and an
// audit finds a change the journal could not see (a write through mmap) and says so.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import { join } from 'node:path';
import { createSite, withCatalog, type TestSite } from '../harness/index.ts';

async function withJournalSite(fn: (site: TestSite, data: string) => Promise<void>): Promise<void> {
  const site = await createSite('journal');
  try {
    const data = join(site.dir, 'data');
    for (const d of ['a', 'b', 'c', 'a/deep']) mkdirSync(join(data, d), { recursive: true });
    for (let i = 0; i < 6; i++) writeFileSync(join(data, 'a', `f${i}`), `file ${i}\n`.repeat(100 + i));
    writeFileSync(join(data, 'a', 'deep', 'x'), 'x'.repeat(4096));
    writeFileSync(join(data, 'c', 'z'), 'z\n');
    site.defineVolume('v', [`data=${data}`]);
    await site.start();
    await fn(site, data);
  } finally {
    await site.cleanup();
  }
}

const snap = (site: TestSite, ...extra: string[]) => site.json(['snapshot', 'create', 'v', ...extra]);

async function journalOf(site: TestSite): Promise<{ state: string; reason: string | null; watches: number; missed: number }> {
  const v = (await site.status()).volumes.find((x: { name: string }) => x.name === 'v');
  assert.ok(v.journal?.data, `no journal in status: ${JSON.stringify(v)}`);
  return v.journal.data;
}

async function changes(site: TestSite, a: string, b: string): Promise<Array<{ path: string; change: string }>> {
  const d = await site.json(['snapshot', 'diff', 'v', a, b]);
  return d.members.flatMap((m: { changes?: Array<{ path: string; change: string }> }) => m.changes ?? []).map((c: { path: string; change: string }) => ({ path: c.path, change: c.change }));
}

/** GET /metrics on the daemon's local socket. */
function scrape(site: TestSite): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get({ socketPath: join(site.home, 'ferry.sock'), path: '/metrics' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

/** The site's events of a kind, from `ferry events --json` (one JSON line each). */
async function events(site: TestSite, kind: string): Promise<Array<Record<string, unknown>>> {
  const r = await site.ferry(['events', '--kind', kind, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as Record<string, unknown>);
}

test('after its first full walk, a snapshot reads only what changed, and records the tree a full walk records', async () => {
  await withJournalSite(async (site, data) => {
    const first = await snap(site);
    assert.equal(first.snapshot.stats.journaled, undefined, 'the first snapshot walks in full');
    const j = await journalOf(site);
    assert.equal(j.state, 'live', JSON.stringify(j));
    assert.ok(j.watches >= 5, `watches ${j.watches}`);

    appendFileSync(join(data, 'a', 'f1'), 'more\n');
    writeFileSync(join(data, 'b', 'new'), 'new\n');
    rmSync(join(data, 'c', 'z'));
    mkdirSync(join(data, 'a', 'deep', 'e'));
    const second = await snap(site);
    assert.deepEqual(second.snapshot.stats.journaled, ['data']);
    assert.equal(second.stats.filesRead, 2, 'f1 and new, nothing else');
    // the totals are the volume's, not what was looked at
    assert.equal(second.stats.files, first.stats.files + 1 - 1);
    assert.equal(second.stats.dirs, first.stats.dirs + 1);
    assert.deepEqual(
      (await changes(site, first.snapshot.id, second.snapshot.id)).sort((x, y) => x.path.localeCompare(y.path)),
      [
        { path: 'a/deep', change: 'modified' }, // its mtime: an entry was made in it
        { path: 'a/deep/e', change: 'added' },
        { path: 'a/f1', change: 'modified' },
        { path: 'b', change: 'modified' },
        { path: 'b/new', change: 'added' },
        { path: 'c', change: 'modified' },
        { path: 'c/z', change: 'removed' },
      ],
    );

    // An audit now: the same tree (no differences, nothing missed), and the stat cache carried
    // over from the journaled capture spares every file a read.
    const audit = await snap(site, '--full-walk');
    assert.equal(audit.snapshot.stats.journaled, undefined);
    assert.equal(audit.stats.filesRead, 0);
    assert.deepEqual(await changes(site, second.snapshot.id, audit.snapshot.id), []);
    assert.equal(audit.stats.files, second.stats.files);
    assert.equal((await journalOf(site)).missed, 0);
    assert.deepEqual(await events(site, 'journal.'), []);

    // Nothing changed: nothing looked at, and no stat cache row rewritten (each keeps its row id).
    const rowIds = () => withCatalog(site.home, (db) => db.prepare("SELECT id, dir FROM stat_cache_rows WHERE pending = '' ORDER BY dir").all().map((r: any) => `${Buffer.from(r.dir).toString()}#${r.id}`));
    const rowsBefore = rowIds();
    assert.ok(rowsBefore.length >= 5, JSON.stringify(rowsBefore));
    const idle = await snap(site);
    assert.deepEqual(idle.snapshot.stats.journaled, ['data']);
    assert.equal(idle.stats.filesRead, 0);
    assert.equal(idle.stats.dirsJournaled, 0);
    assert.equal(idle.stats.files, audit.stats.files);
    assert.deepEqual(rowIds(), rowsBefore);
    const owner = withCatalog(site.home, (db) => (db.prepare('SELECT snapshot FROM stat_cache_owner').get() as { snapshot: string }).snapshot);
    assert.equal(owner, idle.snapshot.id, 'the rows describe the newest snapshot');
  });
});

test('kill -9, then a change made while the daemon is down: it is in the first snapshot after it starts (the start-up audit)', async () => {
  await withJournalSite(async (site, data) => {
    const before = await snap(site);
    await site.stop('SIGKILL'); // nothing of the journal survives it
    writeFileSync(join(data, 'a', 'f2'), 'changed while ferry was down\n');
    await site.start();
    const j = await journalOf(site);
    assert.equal(j.state, 'audit-due');
    const after = await snap(site);
    assert.equal(after.snapshot.stats.journaled, undefined, 'walked in full');
    assert.deepEqual(await changes(site, before.snapshot.id, after.snapshot.id), [{ path: 'a/f2', change: 'modified' }]);
    assert.equal((await journalOf(site)).state, 'live');
  });
});

const python = spawnSync('python3', ['-c', 'import mmap']).status === 0;

test('an audit finds a change the journal could not see (a write through mmap), reports it, and records it', { skip: !python && 'python3 is not installed' }, async () => {
  await withJournalSite(async (site, data) => {
    const base = await snap(site);
    // A write through a shared mapping: the file's content and times change, inotify says nothing.
    const f = join(data, 'a', 'deep', 'x');
    const py = spawnSync('python3', ['-c', `import mmap,os\nfd=os.open(${JSON.stringify(f)},os.O_RDWR)\nm=mmap.mmap(fd,0)\nm[0:5]=b'MMAP!'\nm.flush()\nm.close()\nos.close(fd)`]);
    assert.equal(py.status, 0, py.stderr.toString());
    const blind = await snap(site);
    assert.deepEqual(blind.snapshot.stats.journaled, ['data']);
    assert.deepEqual(await changes(site, base.snapshot.id, blind.snapshot.id), [], 'the journal did not see it: the old record, whole');
    const audit = await snap(site, '--full-walk');
    assert.deepEqual(await changes(site, blind.snapshot.id, audit.snapshot.id), [{ path: 'a/deep/x', change: 'modified' }]);
    const j = await journalOf(site);
    assert.equal(j.missed, 1);
    const metrics = await scrape(site);
    assert.match(metrics, /^ferry_journal_missed_total\{volume="v",member="data"\} 1$/m);
    assert.match(metrics, /^ferry_journal_live\{volume="v",member="data"\} 1$/m);
    const list = await events(site, 'journal.');
    assert.equal(list.length, 1, JSON.stringify(list));
    const [missed] = list as Array<{ event: { kind: string; volume: string }; details: { member: string; snapshot: string } }>;
    assert.equal(missed.event.kind, 'journal.missed');
    assert.equal(missed.event.volume, 'v');
    assert.equal(missed.details.member, 'data');
    assert.equal(missed.details.snapshot, audit.snapshot.id);
  });
});

test('serve --no-journal: every snapshot walks in full, and status shows no journal', async () => {
  const site = await createSite('nojournal');
  try {
    const data = join(site.dir, 'data');
    mkdirSync(data);
    writeFileSync(join(data, 'f'), 'f\n');
    site.defineVolume('v', [`data=${data}`]);
    await site.start({ args: ['--no-journal'] });
    await snap(site);
    writeFileSync(join(data, 'g'), 'g\n');
    const second = await snap(site);
    assert.equal(second.snapshot.stats.journaled, undefined);
    const v = (await site.status()).volumes.find((x: { name: string }) => x.name === 'v');
    assert.equal(v.journal, null);
  } finally {
    await site.cleanup();
  }
});
