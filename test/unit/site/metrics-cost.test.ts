// A scrape costs the same on day one and day 1,000: the metrics' totals are
// kept in the catalog as their events are recorded (catalog/counters.ts), and
// the scrape reads them, never the event log. Counted, not timed: every
// statement a scrape runs (Sqlite.trace) and the rows it returned, for a site
// with a short history and again after a long one; and no statement's query
// plan reads the events table. Also: the totals a catalog from before the
// counters starts with are its history's, counted once at the upgrade.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Catalog } from '../../../src/catalog/catalog.ts';
import { countersOf, listCounters } from '../../../src/catalog/counters.ts';
import type { EventRecord } from '../../../src/catalog/events.ts';
import { Engine } from '../../../src/site/engine.ts';
import { renderMetrics } from '../../../src/app/metrics.ts';
import { Site } from '../../../src/site/site.ts';
import { createVolume, parseMemberSpec } from '../../../src/site/volumes.ts';
import { tempDir } from '../../helpers.ts';
import { withLocalSite } from '../local-site.ts';

/** A day of a site's life, as events: two transfers, a failed one, a snapshot, an apply, hook runs, and the events that count nothing. */
function day(i: number): EventRecord[] {
  return [
    { kind: 'replication.update', volume: 'app', outcome: 'ok', detail: { mirror: 'app@b', bytes: 1000 + i, objects: 3, seconds: 0.2 } },
    { kind: 'replication.update', volume: 'app', outcome: 'warning', detail: { mirror: 'app@b', bytes: 10, objects: 1, seconds: 40 } },
    { kind: 'replication.update', volume: 'app', outcome: 'failed', detail: { mirror: 'app@b', error: { code: 'PEER_UNREACHABLE', message: 'x' } } },
    { kind: 'snapshot.create', volume: 'app', outcome: 'ok', detail: { snapshot: `s${i}`, seconds: 2 } },
    { kind: 'replica.apply', volume: 'app', outcome: 'ok', detail: { seconds: { writesCheck: 0.5, apply: 3, verify: 1 } } },
    { kind: 'hook.pre', volume: 'app', outcome: 'failed', detail: {} },
    { kind: 'hook.post', volume: 'app', outcome: 'ok', detail: {} },
    { kind: 'mirror.state', volume: 'app', outcome: 'info', detail: { transition: 'idle => updating' } },
  ];
}

function scrape(engine: Engine): { text: string; statements: string[]; rows: number } {
  const statements: string[] = [];
  let rows = 0;
  const db = engine.site.catalog.db;
  db.trace = (sql, n) => {
    statements.push(sql);
    rows += n;
  };
  try {
    return { text: renderMetrics(engine), statements, rows };
  } finally {
    db.trace = undefined;
  }
}

function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  assert.ok(line, `${series} in the exposition`);
  return Number(line.slice(series.length + 1));
}

test("a scrape runs the same statements and reads the same rows after 10 days' history and after 1,000; none reads the event log", async () => {
  await withLocalSite('cost', async ({ dir, site }) => {
    mkdirSync(join(dir, 'data'));
    createVolume(site, 'app', { members: [parseMemberSpec(join(dir, 'data'))] });
    const engine = new Engine(site, { connect: () => ({}) as never });
    try {
      for (let i = 0; i < 10; i++) site.catalog.tx(() => day(i).forEach((e) => site.event(e)));
      const young = scrape(engine);
      for (let i = 10; i < 1000; i++) site.catalog.tx(() => day(i).forEach((e) => site.event(e)));
      const old = scrape(engine);
      assert.deepEqual(old.statements, young.statements, 'the same statements');
      assert.equal(old.rows, young.rows, 'the same number of rows');
      const db = site.catalog.db.db;
      for (const sql of new Set(old.statements)) {
        const plan = db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all().map((r) => String((r as { detail: string }).detail));
        assert.ok(!plan.some((d) => /\bevents\b/.test(d)), `a scrape reads the event log: ${sql}\n${plan.join('\n')}`);
      }
      // ... and the totals are the whole history's.
      const l = '{volume="app",peer="b"}';
      assert.equal(sample(old.text, `ferry_mirror_transferred_bytes_total${l}`), 1000 * 1010 + (999 * 1000) / 2);
      assert.equal(sample(old.text, `ferry_mirror_transferred_objects_total${l}`), 4000);
      assert.equal(sample(old.text, `ferry_mirror_update_failures_total${l}`), 1000);
      assert.equal(sample(old.text, 'ferry_hook_failures_total'), 1000);
      assert.equal(sample(old.text, `ferry_mirror_transfer_duration_seconds_count${l}`), 2000);
      assert.ok(Math.abs(sample(old.text, `ferry_mirror_transfer_duration_seconds_sum${l}`) - 1000 * 40.2) < 1e-6);
      assert.equal(sample(old.text, 'ferry_mirror_transfer_duration_seconds_bucket{volume="app",peer="b",le="0.1"}'), 0);
      assert.equal(sample(old.text, 'ferry_mirror_transfer_duration_seconds_bucket{volume="app",peer="b",le="0.5"}'), 1000);
      assert.equal(sample(old.text, 'ferry_mirror_transfer_duration_seconds_bucket{volume="app",peer="b",le="30"}'), 1000);
      assert.equal(sample(old.text, 'ferry_mirror_transfer_duration_seconds_bucket{volume="app",peer="b",le="60"}'), 2000);
      assert.equal(sample(old.text, 'ferry_mirror_transfer_duration_seconds_bucket{volume="app",peer="b",le="+Inf"}'), 2000);
      assert.equal(sample(old.text, 'ferry_snapshot_duration_seconds_count{volume="app"}'), 1000);
      assert.equal(sample(old.text, 'ferry_replica_apply_duration_seconds_sum{volume="app"}'), 4500);
      assert.equal(sample(old.text, 'ferry_replica_apply_duration_seconds_bucket{volume="app",le="5"}'), 1000);
    } finally {
      await engine.close();
    }
  });
});

test('an event and its counting are one transaction: an event rolled back counts nothing', async () => {
  await withLocalSite('tx', async ({ site }) => {
    site.event(day(0)[0]);
    assert.throws(() => site.catalog.tx(() => {
      site.event(day(1)[0]);
      throw new Error('rolled back');
    }));
    const bytes = listCounters(site.catalog).find((c) => c.name === 'ferry_mirror_transferred_bytes_total');
    assert.equal(bytes?.value, 1000);
  });
});

test('a catalog from before the counters: its history is counted once, at the first open; events an older ferry adds later are counted at the next', () => {
  const tmp = tempDir();
  try {
    const home = join(tmp.path, 'home');
    const site = Site.init(home, 'old');
    const key = (name: string, labels: Record<string, string>) => `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    const expected = new Map<string, number>();
    for (let i = 0; i < 50; i++) {
      for (const e of day(i)) {
        site.event(e);
        for (const a of countersOf(e)) expected.set(key(a.name, a.labels), (expected.get(key(a.name, a.labels)) ?? 0) + a.delta);
      }
    }
    assert.ok(expected.size >= 10, 'the history counts towards several series');
    const totals = (cat: Catalog) => new Map(listCounters(cat).map((c) => [key(c.name, c.labels), c.value]));
    const sorted = (m: Map<string, number>) => [...m].sort(([a], [b]) => (a < b ? -1 : 1));
    // Kept as they were recorded...
    assert.deepEqual(sorted(totals(site.catalog)), sorted(expected));
    // ... and, from a catalog as the ferry before the counters left it, the same totals after the upgrade.
    site.catalog.db.exec("DROP TABLE counters; DELETE FROM meta WHERE key = 'counted_through'");
    site.close();
    const upgraded = Site.open(home);
    assert.deepEqual(sorted(totals(upgraded.catalog)), sorted(expected));
    // An older ferry records events without counting them: the next open counts those, and only those.
    const older = day(99)[0];
    upgraded.catalog.db.run("INSERT INTO events (at, kind, volume, outcome, detail) VALUES (0, 'replication.update', 'app', 'ok', ?)", JSON.stringify(older.detail));
    upgraded.close();
    const again = Site.open(home);
    try {
      const bytes = key('ferry_mirror_transferred_bytes_total', { volume: 'app', peer: 'b' });
      assert.equal(totals(again.catalog).get(bytes), expected.get(bytes)! + 1099);
    } finally {
      again.close();
    }
  } finally {
    tmp.cleanup();
  }
});
