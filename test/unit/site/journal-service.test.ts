// The site's change journal (src/site/journal-service.ts) in-process, on real directories: when a
// capture may read only what changed, what an audit is, a set put back by a capture that failed,
// and a member with more directories than watches allowed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSnapshot } from '../../../src/site/snapshots.ts';
import { createVolume, parseMemberSpec } from '../../../src/site/volumes.ts';
import { attachJournal, JournalService } from '../../../src/site/journal-service.ts';
import type { Site } from '../../../src/site/site.ts';
import type { ChunkPool } from '../../../src/snapshot/chunk-pool.ts';
import { withLocalSite } from '../local-site.ts';

async function withJournal(o: { maxWatches?: number; auditEveryMs?: number }, fn: (c: { site: Site; pool: ChunkPool; data: string; journal: JournalService }) => Promise<void>): Promise<void> {
  await withLocalSite('journal-service', async ({ dir, site, pool }) => {
    const data = join(dir, 'data');
    for (const d of ['a', 'b', 'c']) mkdirSync(join(data, d), { recursive: true });
    for (let i = 0; i < 4; i++) writeFileSync(join(data, 'a', `f${i}`), `f${i}\n`.repeat(50));
    createVolume(site, 'v', { members: [parseMemberSpec(`data=${data}`)] });
    const journal = new JournalService(site, { inThread: true, ...o });
    await journal.start();
    attachJournal(site, journal);
    try {
      await fn({ site, pool, data, journal });
    } finally {
      attachJournal(site, undefined);
      await journal.close();
    }
  });
}

test('the first capture walks in full; the next ones read only what changed; --full-walk is an audit that finds nothing missed', async () => {
  await withJournal({}, async ({ site, pool, data, journal }) => {
    assert.equal(journal.status('v').data.state, 'audit-due');
    const first = await createSnapshot(site, 'v', { pool });
    assert.equal(first.snapshot.stats.journaled, undefined);
    assert.equal(journal.status('v').data.state, 'live');
    appendFileSync(join(data, 'a', 'f0'), 'x');
    const second = await createSnapshot(site, 'v', { pool });
    assert.deepEqual(second.snapshot.stats.journaled, ['data']);
    assert.equal(second.stats.filesRead, 1);
    assert.equal(second.stats.files, first.stats.files);
    const audit = await createSnapshot(site, 'v', { pool, fullWalk: true });
    assert.equal(audit.snapshot.stats.journaled, undefined);
    assert.equal(journal.status('v').data.missed, 0);
    assert.ok(journal.status('v').data.lastAudit !== null);
  });
});

test('a capture that failed puts its set back: the next capture still sees the change', async () => {
  await withJournal({}, async ({ site, pool, data }) => {
    await createSnapshot(site, 'v', { pool });
    writeFileSync(join(data, 'b', 'new'), 'new\n');
    await assert.rejects(createSnapshot(site, 'v', { pool, signal: AbortSignal.abort(new Error('cut')) }));
    const next = await createSnapshot(site, 'v', { pool });
    assert.deepEqual(next.snapshot.stats.journaled, ['data']);
    assert.equal(next.stats.filesRead, 1, 'b/new, from the set put back');
  });
});

test('an audit is due once a day: the capture after that walks in full', async () => {
  await withJournal({ auditEveryMs: 0 }, async ({ site, pool, journal }) => {
    await createSnapshot(site, 'v', { pool });
    assert.equal(journal.status('v').data.state, 'audit-due');
    const again = await createSnapshot(site, 'v', { pool });
    assert.equal(again.snapshot.stats.journaled, undefined);
  });
});

test('more directories than watches allowed: every capture walks in full, and status says why', async () => {
  await withJournal({ maxWatches: 2 }, async ({ site, pool, data, journal }) => {
    const s = journal.status('v').data;
    assert.equal(s.state, 'audit-due');
    assert.match(s.reason ?? '', /more than 2 directories/);
    await createSnapshot(site, 'v', { pool });
    appendFileSync(join(data, 'c', 'g'), 'g');
    const next = await createSnapshot(site, 'v', { pool });
    assert.equal(next.snapshot.stats.journaled, undefined);
    assert.match(journal.status('v').data.reason ?? '', /more than 2 directories/);
  });
});

test('a secondary volume is not watched (its members are replicas the apply writes)', () => {
  assert.equal(JournalService.watches({ name: 'r', role: 'secondary', createdAt: 0, hooks: {}, retention: {} as never, members: [] }), false);
  assert.equal(JournalService.watches({ name: 'p', role: 'primary', createdAt: 0, hooks: {}, retention: {} as never, members: [] }), true);
});
