// Mirror state and health under a fake clock, in one process: two Sites on a
// ManualClock, an Engine and a Daemon each on 127.0.0.1:0, real HTTP/2 with
// mutual TLS between them. Scheduled retries are driven by engine.tick()
// with the clock moved past nextRunAt, so nothing sleeps.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ManualClock } from '../../src/core/clock.ts';
import { FerryError, isFerryError } from '../../src/core/errors.ts';
import type { Receiver } from '../../src/replication/types.ts';
import { Daemon } from '../../src/app/daemon.ts';
import { Engine } from '../../src/site/engine.ts';
import { createMirror, type MirrorStatus } from '../../src/site/mirrors.ts';
import { addPeer } from '../../src/site/peers.ts';
import { Site } from '../../src/site/site.ts';
import { createVolume } from '../../src/site/volumes.ts';
import { assertTreesEqual, tempDir } from '../helpers.ts';
import { listSnapshots } from '../../src/catalog/snapshots.ts';

const S = 1000;

test('health and state under a fake clock: up, warn past max-delay, disconnected after 3 failures, back to idle', async () => {
  const tmp = tempDir('ferry-health-');
  const clock = new ManualClock(Date.UTC(2026, 0, 1, 12));
  const A = Site.init(join(tmp.path, 'a'), 'a', { clock });
  const B = Site.init(join(tmp.path, 'b'), 'b', { clock });
  // The retry jitter's random factor fixed at its middle: the backoffs are exactly 5, 10, 20 s.
  const eA = new Engine(A, { random: () => 0.5 });
  let eB = new Engine(B);
  const dA = new Daemon(eA);
  let dB = new Daemon(eB);
  let dBRunning = false;
  try {
    await dA.start('127.0.0.1:0');
    const portB = (await dB.start('127.0.0.1:0')).port;
    dBRunning = true;
    addPeer(A, 'b', `https://127.0.0.1:${portB}`, B.id);
    addPeer(B, 'a', `https://127.0.0.1:${dA.info!.port}`, A.id);
    const data = join(tmp.path, 'data');
    mkdirSync(data);
    writeFileSync(join(data, 'f.txt'), 'one\n');
    createVolume(A, 'vol', { members: [{ path: data }] });
    createMirror(A, { volume: 'vol', to: 'b', scheduleS: 60, maxDelayS: 600 });
    const status = (): MirrorStatus => eA.status().find((m) => m.volume === 'vol' && m.peer === 'b')!;

    assert.equal(status().state, 'uninitialized');
    assert.equal(status().health, 'warn');
    const init = await eA.update('vol', 'b', { initialize: true });
    let m = status();
    assert.equal(m.state, 'idle');
    assert.equal(m.health, 'up', m.healthReasons.join('; '));
    assert.equal(m.base, init.snapshot);
    assert.equal(m.lagSeconds, 0);
    assert.equal(m.nextRunAt, clock.now() + 60 * S);

    // Lag is measured from the base snapshot's capture time: up to max-delay, then warn.
    clock.advance(599 * S);
    assert.equal(status().health, 'up');
    assert.equal(status().lagSeconds, 599);
    clock.advance(2 * S);
    m = status();
    assert.equal(m.health, 'warn');
    assert.match(m.healthReasons.join(';'), /exceeds max delay 600/);
    assert.equal(m.state, 'idle', 'lag alone does not change the state');

    // A scheduled update (its run time is long past) brings health back up.
    writeFileSync(join(data, 'f.txt'), 'two\n');
    const ticked = eA.tick();
    assert.equal(ticked.length, 1);
    const r2 = await ticked[0];
    assert.ok(r2 && r2.base === init.snapshot);
    m = status();
    assert.equal(m.health, 'up');
    assert.equal(m.lagSeconds, 0);
    assert.deepEqual(eA.tick(), [], 'not due again until the schedule says so');

    // The destination goes away: updates fail with PEER_UNREACHABLE, counted, retried with backoff.
    await dB.stop();
    dBRunning = false;
    const baseBefore = m.base;
    const snapsBefore = listSnapshots(A.catalog, 'vol').length;
    clock.advance(60 * S);
    const backoffs = [5, 10, 20];
    for (let i = 1; i <= 3; i++) {
      const jobs = eA.tick();
      assert.equal(jobs.length, 1, `attempt ${i} was not scheduled`);
      assert.equal(await jobs[0], undefined, 'a failed scheduled update resolves to undefined');
      m = status();
      assert.equal(m.failures, i);
      assert.equal(m.lastError?.code, 'PEER_UNREACHABLE');
      assert.equal(m.base, baseBefore, 'a failed update does not move the base');
      assert.equal(m.health, 'warn');
      assert.equal(m.state, i < 3 ? 'idle' : 'disconnected', `after ${i} failure(s)`);
      assert.equal(m.nextRunAt, clock.now() + backoffs[i - 1] * S, `backoff after ${i} failure(s)`);
      assert.deepEqual(eA.tick(), [], 'no retry before the backoff expires');
      clock.advance(backoffs[i - 1] * S);
    }
    assert.match(m.healthReasons.join(';'), /state disconnected/);
    // Snapshots are still taken at the source while the peer is away.
    assert.ok(listSnapshots(A.catalog, 'vol').length > snapsBefore, 'no snapshot was taken while the peer was unreachable');
    // A manual update fails the same way, now with exit-worthy error.
    await assert.rejects(eA.update('vol', 'b', { force: true }), (err) => isFerryError(err, 'PEER_UNREACHABLE'));
    assert.equal(status().state, 'disconnected');

    // The destination comes back (a new engine and daemon on the same site and port).
    eB = new Engine(B);
    dB = new Daemon(eB);
    await dB.start(`127.0.0.1:${portB}`);
    dBRunning = true;
    writeFileSync(join(data, 'g.txt'), 'written while b was away\n');
    clock.advance(5 * 60 * S);
    const retry = eA.tick();
    assert.equal(retry.length, 1, 'a disconnected mirror is still retried');
    const r3 = await retry[0];
    assert.ok(r3, 'the retry after the peer came back failed');
    m = status();
    assert.equal(m.state, 'idle');
    assert.equal(m.health, 'up', m.healthReasons.join('; '));
    assert.equal(m.failures, 0);
    assert.equal(m.lastError, null);
    assert.equal(m.base, r3.snapshot);
    assert.equal(m.nextRunAt, clock.now() + 60 * S);
    const replica = B.catalog.db.get<{ path: string }>("SELECT path FROM members WHERE volume = 'vol'")!.path;
    assertTreesEqual(replica, data);
  } finally {
    await dA.stop().catch(() => {});
    if (dBRunning) await dB.stop().catch(() => {});
    A.close();
    B.close();
    tmp.cleanup();
  }
});

test('a commit whose answer is lost: the next update adopts the newest snapshot both sides hold as its base', async () => {
  const tmp = tempDir('ferry-lost-');
  const clock = new ManualClock(Date.UTC(2026, 0, 2));
  const A = Site.init(join(tmp.path, 'a'), 'a', { clock });
  const B = Site.init(join(tmp.path, 'b'), 'b', { clock });
  const eB = new Engine(B);
  let loseAnswer = false;
  // In process, no network: the destination's receiver, with a commit whose answer can be lost
  // after the destination committed and applied (a cut link, a source daemon stopped at that instant).
  const rx = (): Receiver => eB.receiverFor(A.id);
  const eA = new Engine(A, {
    connect: () => ({
      hello: (r) => rx().hello(r),
      missing: (v, ids) => rx().missing(v, ids),
      put: (v, objects) => rx().put(v, objects),
      async commit(v, r) {
        const c = await rx().commit(v, r);
        if (loseAnswer) {
          loseAnswer = false;
          throw new FerryError('TRANSFER_INTERRUPTED', 'connection to b lost before its answer');
        }
        return c;
      },
    }),
  });
  try {
    addPeer(A, 'b', 'https://127.0.0.1:9', B.id);
    addPeer(B, 'a', 'https://127.0.0.1:9', A.id);
    const data = join(tmp.path, 'data');
    mkdirSync(data);
    writeFileSync(join(data, 'f.txt'), 'one\n');
    createVolume(A, 'vol', { members: [{ path: data }] });
    createMirror(A, { volume: 'vol', to: 'b' });
    const init = await eA.update('vol', 'b', { initialize: true });

    clock.advance(S);
    writeFileSync(join(data, 'f.txt'), 'two\n');
    loseAnswer = true;
    await assert.rejects(eA.update('vol', 'b'), (err) => isFerryError(err, 'TRANSFER_INTERRUPTED'));
    const lost = listSnapshots(A.catalog, 'vol').at(-1)!;
    assert.notEqual(lost.id, init.snapshot);
    let m = eA.status()[0];
    assert.equal(m.base, init.snapshot, 'the source did not hear the commit');
    // ... but the destination committed and applied it, and released the old base.
    const sec = B.catalog.db.get<{ applied: string }>("SELECT applied FROM secondaries WHERE volume = 'vol'")!;
    assert.equal(sec.applied, lost.id);
    assert.deepEqual(listSnapshots(B.catalog, 'vol').map((s) => s.id), [lost.id]);

    // The next update: both sides hold `lost` complete, so it is the base; no full sync is needed.
    clock.advance(S);
    writeFileSync(join(data, 'f.txt'), 'three\n');
    const r = await eA.update('vol', 'b');
    assert.equal(r.base, lost.id);
    m = eA.status()[0];
    assert.equal(m.state, 'idle');
    assert.equal(m.base, r.snapshot);
    assert.equal(m.lastError, null);
    assert.deepEqual(listSnapshots(A.catalog, 'vol').filter((s) => s.holds.includes('mirror:vol@b')).map((s) => s.id), [r.snapshot], 'one base hold at the source');
    assertTreesEqual(B.catalog.db.get<{ path: string }>("SELECT path FROM members WHERE volume = 'vol'")!.path, data);
  } finally {
    await eA.close();
    await eB.close();
    A.close();
    B.close();
    tmp.cleanup();
  }
});
