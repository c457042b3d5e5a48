// The site's change journal (src/site/journal-service.ts) in-process, on real directories: when a
// capture may read only what changed, what an audit is, a set put back by a capture that failed,
// and a member with more directories than watches allowed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { eventsAfter } from '../../../src/catalog/events.ts';
import { ManualClock } from '../../../src/core/clock.ts';
import { createSnapshot } from '../../../src/site/snapshots.ts';
import { createVolume, parseMemberSpec, updateVolumeSettings } from '../../../src/site/volumes.ts';
import { attachJournal, DAY_MS, JournalService } from '../../../src/site/journal-service.ts';
import type { Site } from '../../../src/site/site.ts';
import type { ChunkPool } from '../../../src/snapshot/chunk-pool.ts';
import { withLocalSite } from '../local-site.ts';

async function withJournal(o: { maxWatches?: number; auditEveryMs?: number; clock?: ManualClock }, fn: (c: { site: Site; pool: ChunkPool; data: string; journal: JournalService }) => Promise<void>): Promise<void> {
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
  }, o.clock ? { clock: o.clock } : {});
}

const MIN = 60_000;

function unavailable(site: Site): Array<Record<string, unknown>> {
  return eventsAfter(site.catalog, { after: 0, since: 0, volume: null, kind: 'journal.unavailable', limit: 100 }).map((e) => ({ volume: e.volume, ...(JSON.parse(e.detail) as Record<string, unknown>) }));
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
  assert.equal(JournalService.watches({ name: 'r', role: 'secondary', createdAt: 0, hooks: {}, retention: {} as never, journal: true, members: [] }), false);
  assert.equal(JournalService.watches({ name: 'p', role: 'primary', createdAt: 0, hooks: {}, retention: {} as never, journal: true, members: [] }), true);
});

test('out of watches: the member is walked in full, its watches released, and not watched again before a back-off (10 min, doubling, up to a day); said once', async () => {
  const clock = new ManualClock();
  // data, a, b, c: four directories, two watches allowed
  await withJournal({ maxWatches: 2, clock }, async ({ site, pool, journal }) => {
    const t0 = clock.now();
    let s = journal.status('v').data;
    assert.equal(s.state, 'audit-due');
    assert.match(s.reason ?? '', /more than 2 directories/);
    assert.equal(s.watches, 0, 'released, not held for a tree it cannot watch whole');
    assert.equal(s.retryAt, t0 + 10 * MIN);
    const ev = unavailable(site);
    assert.equal(ev.length, 1);
    assert.equal(ev[0].member, 'data');
    assert.equal(ev[0].retryInMs, 10 * MIN);
    assert.match(String(ev[0].fix), /fs\.inotify\.max_user_watches.*volume set v --no-journal/);

    // Within the back-off: snapshots walk in full and do not try the watch again.
    for (let i = 0; i < 2; i++) {
      clock.advance(4 * MIN);
      const r = await createSnapshot(site, 'v', { pool });
      assert.equal(r.snapshot.stats.journaled, undefined);
      assert.equal(journal.status('v').data.retryAt, t0 + 10 * MIN, 'not tried again');
    }
    // Past it: tried (and out of watches again), then twice as long, ... up to a day.
    const waits: number[] = [];
    for (let i = 0; i < 10; i++) {
      clock.set(journal.status('v').data.retryAt!);
      await createSnapshot(site, 'v', { pool });
      waits.push(journal.status('v').data.retryAt! - clock.now());
    }
    assert.deepEqual(waits, [20, 40, 80, 160, 320, 640, 1280, 1440, 1440, 1440].map((m) => m * MIN));
    assert.equal(waits.at(-1), DAY_MS);
    assert.equal(unavailable(site).length, 1, 'said once, not at every try');
    s = journal.status('v').data;
    assert.equal(s.watches, 0);
  });
});

test('out of watches, then the tree fits: the next try watches it and the back-off is reset; running out again is said again', async () => {
  const clock = new ManualClock();
  await withJournal({ maxWatches: 3, clock }, async ({ site, pool, data, journal }) => {
    assert.notEqual(journal.status('v').data.retryAt, null);
    rmSync(join(data, 'c'), { recursive: true });
    clock.advance(10 * MIN);
    const walked = await createSnapshot(site, 'v', { pool });
    assert.equal(walked.snapshot.stats.journaled, undefined, 'the walk the new watch counts from');
    let s = journal.status('v').data;
    assert.equal(s.retryAt, null);
    assert.equal(s.reason, null);
    assert.equal(s.watches, 3);
    appendFileSync(join(data, 'a', 'f0'), 'x');
    const next = await createSnapshot(site, 'v', { pool });
    assert.deepEqual(next.snapshot.stats.journaled, ['data']);
    assert.equal(next.stats.filesRead, 1);

    // A directory made while watched: out of watches again (the watch releases them at once).
    mkdirSync(join(data, 'c'));
    const over = await createSnapshot(site, 'v', { pool });
    assert.equal(over.snapshot.stats.journaled, undefined);
    s = journal.status('v').data;
    assert.equal(s.retryAt, clock.now() + 10 * MIN, 'a new run of failures starts from 10 min');
    assert.equal(unavailable(site).length, 2);
  });
});

test('a settings change (volume set) tries a member that ran out of watches again at once', async () => {
  const clock = new ManualClock();
  await withJournal({ maxWatches: 3, clock }, async ({ site, pool, data, journal }) => {
    await createSnapshot(site, 'v', { pool });
    const retryAt = journal.status('v').data.retryAt;
    assert.notEqual(retryAt, null);
    rmSync(join(data, 'c'), { recursive: true }); // the limit "raised": the tree fits now
    await createSnapshot(site, 'v', { pool });
    assert.equal(journal.status('v').data.retryAt, retryAt, 'the back-off holds without a settings change');
    await journal.refresh(updateVolumeSettings(site, 'v', { journal: true }), { retry: true });
    await createSnapshot(site, 'v', { pool });
    assert.equal(journal.status('v').data.retryAt, null);
    assert.equal(journal.status('v').data.watches, 3);
    const next = await createSnapshot(site, 'v', { pool });
    assert.deepEqual(next.snapshot.stats.journaled, ['data']);
  });
});

test('a volume with the journal off is not watched and walks in full; turned on, its next capture is an audit, then journaled ones', async () => {
  await withJournal({}, async ({ site, pool, data, journal }) => {
    await createSnapshot(site, 'v', { pool });
    assert.equal(journal.status('v').data.state, 'live');
    await journal.refresh(updateVolumeSettings(site, 'v', { journal: false }));
    const off = journal.status('v').data;
    assert.equal(off.state, 'off');
    assert.equal(off.watches, 0);
    appendFileSync(join(data, 'a', 'f0'), 'x');
    const walked = await createSnapshot(site, 'v', { pool });
    assert.equal(walked.snapshot.stats.journaled, undefined);
    assert.equal(journal.status('v').data.state, 'off');

    await journal.refresh(updateVolumeSettings(site, 'v', { journal: true }));
    assert.equal(journal.status('v').data.state, 'audit-due');
    assert.ok(journal.status('v').data.watches >= 4);
    const audit = await createSnapshot(site, 'v', { pool });
    assert.equal(audit.snapshot.stats.journaled, undefined);
    appendFileSync(join(data, 'a', 'f1'), 'x');
    const next = await createSnapshot(site, 'v', { pool });
    assert.deepEqual(next.snapshot.stats.journaled, ['data']);
    assert.equal(next.stats.filesRead, 1);
  });
});

test('a secondary volume with the journal off: its replicas are not watched (every writes check walks in full); turned on, they are', async () => {
  await withLocalSite('journal-replica-off', async ({ dir, site }) => {
    const replica = join(dir, 'replica');
    mkdirSync(join(replica, 'a'), { recursive: true });
    createVolume(site, 'r', { members: [parseMemberSpec(`data=${replica}`)], role: 'secondary', journal: false });
    const journal = new JournalService(site, { inThread: true });
    await journal.start();
    try {
      const off = updateVolumeSettings(site, 'r', {});
      assert.equal(await journal.replicaTake(off, 'data'), undefined, 'no journal: the writes check walks in full');
      assert.equal(journal.status('r').data.state, 'off');
      assert.equal(journal.status('r').data.replica, true);
      const on = updateVolumeSettings(site, 'r', { journal: true });
      await journal.refresh(on);
      writeFileSync(join(replica, 'a', 'w'), 'written behind ferry\'s back\n');
      const t = await journal.replicaTake(on, 'data');
      assert.ok(t, 'watched');
      assert.deepEqual(t.set.dirs.map((d) => d.dir), ['a']);
    } finally {
      await journal.close();
    }
  });
});
