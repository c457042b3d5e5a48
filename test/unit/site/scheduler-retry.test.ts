// The daemon's retry paths other than a mirror's own (which records its
// failures in the catalog: replication-health.test.ts, retry-backoff.test.ts),
// under a fake clock: a scheduled link refresh that fails, a scheduled update
// refused before its job starts, and the resumption of DR workflows left in
// progress each wait a growing backoff instead of running every tick.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ManualClock } from '../../../src/core/clock.ts';
import { createLink } from '../../../src/dr/links.ts';
import { newEngine } from '../../../src/app/workflows.ts';
import type { Engine } from '../../../src/site/engine.ts';
import { createMirror } from '../../../src/site/mirrors.ts';
import { registerPeerSnapshot } from '../../../src/site/peer-snapshots.ts';
import { addPeer } from '../../../src/site/peers.ts';
import { Site } from '../../../src/site/site.ts';
import { createSnapshot } from '../../../src/site/snapshots.ts';
import { createVolume } from '../../../src/site/volumes.ts';
import { tempDir } from '../../helpers.ts';

const S = 1000;

async function withEngine(fn: (c: { dir: string; site: Site; engine: Engine; clock: ManualClock }) => Promise<void>): Promise<void> {
  const tmp = tempDir('ferry-retry-');
  const clock = new ManualClock(Date.UTC(2026, 0, 1, 12));
  const site = Site.init(join(tmp.path, 'home'), 'a', { clock });
  // The jitter's random factor at its middle: the waits are exactly 5, 10, 20 s (30, 60 s for workflows).
  const engine = newEngine(site, { random: () => 0.5 });
  try {
    await fn({ dir: tmp.path, site, engine, clock });
  } finally {
    await engine.close();
    site.close();
    tmp.cleanup();
  }
}

const failedEvents = (site: Site, kind: string) => site.catalog.db.all<{ detail: string }>("SELECT detail FROM events WHERE kind = ? AND outcome = 'failed' ORDER BY id", kind).map((r) => JSON.parse(r.detail));

test('a scheduled link refresh that fails waits a growing backoff, counted, not every tick', async () => {
  await withEngine(async ({ dir, site, engine, clock }) => {
    const data = join(dir, 'data');
    mkdirSync(data);
    writeFileSync(join(data, 'f'), 'x');
    createVolume(site, 'app', { members: [{ path: data }] });
    await createSnapshot(site, 'app', { pool: engine.pool });
    const path = join(dir, 'test-copy');
    createLink(site, path, { volume: 'app', scheduleS: 1 });
    rmSync(path, { recursive: true }); // every refresh now fails: the copy is gone
    clock.advance(2 * S);
    for (const [wait, n] of [[5, 1], [10, 2], [20, 3]] as const) {
      await engine.tickLinks();
      await engine.tickLinks(); // the same instant: not tried again
      const fails = failedEvents(site, 'link.refresh');
      assert.equal(fails.length, n, `attempts after ${n} failure(s)`);
      assert.equal(fails.at(-1).failures, n);
      assert.equal(fails.at(-1).retryInMs, wait * S);
      clock.advance(wait * S - 1);
      await engine.tickLinks();
      assert.equal(failedEvents(site, 'link.refresh').length, n, 'tried again before its wait was over');
      clock.advance(1);
    }
  });
});

test('a scheduled update refused before its job starts (the volume is a secondary here) waits a backoff', async () => {
  await withEngine(async ({ dir, site, engine, clock }) => {
    const data = join(dir, 'data');
    mkdirSync(data);
    createVolume(site, 'app', { members: [{ path: data }] });
    addPeer(site, 'b', 'https://127.0.0.1:9', 'A'.repeat(52));
    createMirror(site, { volume: 'app', to: 'b', scheduleS: 1 });
    const snap = await createSnapshot(site, 'app', { pool: engine.pool });
    site.catalog.db.run("UPDATE mirrors SET base = ?, state = 'idle'", snap.snapshot.id);
    site.catalog.db.run("UPDATE volumes SET role = 'secondary' WHERE name = 'app'");
    clock.advance(2 * S);
    const jobs = engine.tick();
    assert.equal(jobs.length, 1);
    assert.equal(await jobs[0], undefined);
    const fails = failedEvents(site, 'scheduler');
    assert.equal(fails.length, 1);
    assert.equal(fails[0].error.code, 'MIRROR_STATE');
    assert.equal(fails[0].retryInMs, 5 * S, 'a refusal waits at least its backoff');
    assert.deepEqual(engine.tick(), [], 'retried on the next tick');
    clock.advance(5 * S);
    const again = engine.tick();
    assert.equal(again.length, 1);
    await again[0];
    assert.equal(failedEvents(site, 'scheduler').at(-1).retryInMs, 10 * S);
  });
});

test('a pending peer snapshot whose secondary cannot be reached is delivered again after a backoff, not every tick', async () => {
  await withEngine(async ({ dir, site, engine, clock }) => {
    const data = join(dir, 'data');
    mkdirSync(data);
    createVolume(site, 'app', { members: [{ path: data }] });
    addPeer(site, 'b', 'https://127.0.0.1:9', 'A'.repeat(52)); // nothing listens there
    createMirror(site, { volume: 'app', to: 'b' }); // no schedule: only the pending peer snapshot makes it run
    const base = await createSnapshot(site, 'app', { pool: engine.pool });
    site.catalog.db.run("UPDATE mirrors SET base = ?, state = 'idle'", base.snapshot.id);
    const peer = await createSnapshot(site, 'app', { pool: engine.pool, name: 'q3-close' });
    registerPeerSnapshot(site, 'app', peer.snapshot.id);
    for (const [wait, n] of [[5, 1], [10, 2]] as const) {
      const jobs = engine.tick();
      assert.equal(jobs.length, 1, `delivery attempt ${n}`);
      assert.equal(await jobs[0], undefined);
      const fails = failedEvents(site, 'replication.update');
      assert.equal(fails.length, n);
      assert.equal(fails.at(-1).error.code, 'PEER_UNREACHABLE');
      assert.equal(fails.at(-1).retryInMs, wait * S);
      assert.deepEqual(engine.tick(), [], 'tried again before its wait was over');
      clock.advance(wait * S);
    }
  });
});

test('DR workflows left in progress are resumed after a growing backoff, not every 30 s forever', async () => {
  await withEngine(async ({ site, engine, clock }) => {
    // A failover journal whose volume is gone: every resumption fails and leaves it running.
    site.catalog.db.run("INSERT INTO workflows (id, kind, volume, step, state, plan, started_at, updated_at) VALUES ('w1', 'failover', 'ghost', 'notified', 'running', ?, ?, ?)",
      JSON.stringify({ plan: { volume: 'ghost', oldPrimary: 'b', force: false } }), clock.now(), clock.now());
    assert.equal(engine.workflowsDue(), true);
    for (const wait of [30, 60, 120]) {
      await engine.resumeWorkflows();
      assert.equal(engine.workflowsDue(), false, 'due again at once');
      clock.advance(wait * S - 1);
      assert.equal(engine.workflowsDue(), false, `due before ${wait} s`);
      clock.advance(1);
      assert.equal(engine.workflowsDue(), true, `not due after ${wait} s`);
    }
    assert.equal(failedEvents(site, 'workflow.resume').length, 3);
    // Once none is left, nothing is due.
    site.catalog.db.run("UPDATE workflows SET state = 'rolled-back' WHERE id = 'w1'");
    assert.equal(engine.workflowsDue(), false);
  });
});

test('a scheduled retry sends the snapshot its own failed attempt took, never one another mirror of the volume took', async () => {
  await withEngine(async ({ dir, site, engine, clock }) => {
    const data = join(dir, 'data');
    mkdirSync(data);
    writeFileSync(join(data, 'f'), 'x');
    createVolume(site, 'app', { members: [{ path: data }] });
    // two secondaries that cannot be reached (nothing listens on port 9): each attempt fails, transient
    addPeer(site, 'b', 'https://127.0.0.1:9', 'A'.repeat(52));
    addPeer(site, 'c', 'https://127.0.0.1:9', 'B'.repeat(51) + 'A');
    createMirror(site, { volume: 'app', to: 'b', scheduleS: 3600 });
    createMirror(site, { volume: 'app', to: 'c', scheduleS: 3600 });
    const base = await createSnapshot(site, 'app', { pool: engine.pool });
    site.catalog.db.run("UPDATE mirrors SET base = ?, state = 'idle', last_success_at = ?", base.snapshot.id, clock.now());
    const queued = () => Object.fromEntries(site.catalog.db.all<{ peer: string; queued: string | null }>('SELECT peer, queued FROM mirrors').map((r) => [r.peer, r.queued]));
    const count = () => site.catalog.db.get<{ n: number }>("SELECT count(*) AS n FROM snapshots WHERE volume = 'app'")!.n;

    clock.advance(3600 * S);
    await Promise.all(engine.tick());
    const first = queued();
    assert.ok(first.b && first.c, `each failed attempt recorded what it took: ${JSON.stringify(first)}`);
    assert.notEqual(first.b, first.c, 'each mirror took its own snapshot');
    assert.equal(count(), 3);

    clock.advance(5 * S); // the first backoff
    await Promise.all(engine.tick());
    assert.deepEqual(queued(), first, 'the retries took up the same snapshots');
    assert.equal(count(), 3, 'no snapshot was taken for a retry');
    const targets = site.catalog.db.all<{ mirror: string; failures: number }>("SELECT json_extract(detail, '$.mirror') AS mirror, json_extract(detail, '$.failures') AS failures FROM events WHERE kind = 'replication.update' AND outcome = 'failed'");
    assert.equal(targets.length, 4, 'two attempts each, both failed');
  });
});
