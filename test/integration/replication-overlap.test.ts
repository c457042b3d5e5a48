// The overlap of capture and transfer (docs/replication.md, "Overlap of
// capture and transfer"): during an initialize, the chunks the capture stores
// already go to the destination while the capture runs. Proved on real
// daemons: the source's capture is held at its last step (FERRY_TEST_PAUSE_AT
// snapshot:before-manifest) and the destination's store must already hold
// objects then; every object crosses once (the transfer's counts equal the
// source store's, which holds only this snapshot); the replica matches byte
// for byte. A peer that is down, or goes down during the capture, fails the
// initialize as before (transient) with the snapshot taken, and the next
// initialize completes without resending what arrived early. An update with a
// delta base sends nothing early. In one process (two Sites, the destination's
// real receiver behind a wrapper): an early put that fails stops only the
// early stream, and the update still sends every object once.
import { installTestKnobs, testKnobs } from '../../src/core/test-knobs.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FerryError } from '../../src/core/errors.ts';
import type { Receiver } from '../../src/replication/types.ts';
import { Engine } from '../../src/site/engine.ts';
import { createMirror } from '../../src/site/mirrors.ts';
import { addPeer } from '../../src/site/peers.ts';
import { Site } from '../../src/site/site.ts';
import { createVolume } from '../../src/site/volumes.ts';
import { assertTreesEqual, tempDir } from '../helpers.ts';
import { withCatalog, waitFor } from '../harness/index.ts';
import { killDaemon, makePair, mirrorStatus, startDaemon, storeTotals, writeRandomFile, writeSmallFiles, type Pair } from '../harness/proxied-pair.ts';

const KiB = 1 << 10;
const MiB = 1 << 20;
const PAUSE_STEP = 'snapshot:before-manifest';

/**
 * Random files of 256 KiB (incompressible: stored bytes are about the file bytes): 40 of them, 10 MiB,
 * so that more than the early stream's first batch (4 MiB) is stored beyond the newest 4 MiB it
 * holds back.
 */
const BIG_FILES = 40;

/** BIG_FILES random files, and 20 small files in two directories. */
function writeData(pair: Pair): void {
  mkdirSync(join(pair.data, 'big'));
  for (let i = 0; i < BIG_FILES; i++) writeRandomFile(join(pair.data, 'big', `f${String(i).padStart(2, '0')}.bin`), 256 * KiB);
  writeSmallFiles(join(pair.data, 'small', 'one'), 10, 'a');
  writeSmallFiles(join(pair.data, 'small', 'two'), 10, 'b');
}

function snapshotCount(home: string): number {
  return withCatalog(home, (db) => Number((db.prepare('SELECT count(*) AS n FROM snapshots').get() as { n: number }).n));
}

/** Start the source's daemon with the capture held at its last step until `release` exists. */
async function startHeldSource(pair: Pair, release: string): Promise<void> {
  await startDaemon(pair.a, { ...pair.env, FERRY_TEST_PAUSE_AT: PAUSE_STEP, FERRY_TEST_PAUSE_FILE: release });
}

test('initialize: chunks reach the destination while the capture runs; each object crosses once; replica equal', { timeout: 180_000 }, async () => {
  const pair = await makePair();
  try {
    writeData(pair);
    const release = join(pair.dir, 'release');
    await startHeldSource(pair, release);

    const attempt = pair.ferry(pair.a, ['mirror', 'initialize', 'vol', '--wait', '--json']);
    // The capture is held before its manifest: chunks must arrive at b meanwhile.
    const early = await waitFor('objects at the destination while the source capture is held', () => {
      const t = storeTotals(pair.b.home);
      return t.objects > 0 ? t : undefined;
    }, 60_000, 100);
    assert.equal(snapshotCount(pair.a.home), 0, 'the source capture had not finished (no snapshot recorded yet)');
    assert.ok(!existsSync(release));
    assert.ok(early.bytes >= 4 * MiB, `at least one early batch arrived: ${JSON.stringify(early)}`);
    writeFileSync(release, '');

    const r = await attempt;
    assert.equal(r.code, 0, `initialize failed: ${r.stdout} ${r.stderr}\n${pair.a.log.join('').slice(-3000)}`);
    const transfer = r.json.transfer;
    assertTreesEqual(pair.replica(), pair.data);

    // Every object once: the source store holds exactly this snapshot's objects, which is what an
    // initialize without the overlap sends (stored form, no deltas).
    const source = storeTotals(pair.a.home);
    assert.equal(transfer.objects, source.objects, `objects sent ${transfer.objects}, the snapshot has ${source.objects}`);
    assert.equal(transfer.bytes, source.bytes, `bytes sent ${transfer.bytes}, the snapshot stores ${source.bytes}`);
    assert.ok(transfer.early, `the transfer reports its early part: ${JSON.stringify(transfer)}`);
    assert.ok(transfer.early.objects >= early.objects && transfer.early.bytes >= early.bytes, `early ${JSON.stringify(transfer.early)} vs held ${JSON.stringify(early)}`);
    assert.ok(transfer.early.objects < transfer.objects, 'the manifest (and what the early stream held back) goes after the capture');
    assert.equal(transfer.early.error, undefined);
    assert.ok(transfer.phases['snapshot.early'] > 0, JSON.stringify(transfer.phases));
    const m = await mirrorStatus(pair);
    assert.equal(m.state, 'idle');
    assert.deepEqual(m.lastTransfer.early, transfer.early);
    assert.equal(m.lastTransfer.bytes, transfer.bytes);

    // An update with a delta base (deltas pinned: on loopback `auto` may choose whole objects, which
    // go early: transport-fit.test.ts): nothing goes early (changed chunks go as deltas after the capture).
    await pair.json(pair.a, ['mirror', 'set', 'vol', '--deltas', 'always']);
    writeRandomFile(join(pair.data, 'big', 'added.bin'), 5 * MiB);
    const u = await pair.json(pair.a, ['mirror', 'update', 'vol', '--wait']);
    assert.equal(u.transfer.early, undefined, JSON.stringify(u.transfer));
    assert.equal(u.transfer.phases['snapshot.early'], undefined);
    assert.ok(u.transfer.bytes >= 5 * MiB && u.transfer.bytes < 6 * MiB, `the update sent ${u.transfer.bytes} bytes`);
    assertTreesEqual(pair.replica(), pair.data);
  } finally {
    await pair.cleanup();
  }
});

test('peer down before or during the capture: the initialize fails transiently with its snapshot taken; the next one completes without resending', { timeout: 240_000 }, async () => {
  const pair = await makePair();
  try {
    writeData(pair);
    const release = join(pair.dir, 'release');
    writeFileSync(release, ''); // not held at first
    await startHeldSource(pair, release);

    // Down from the start: the early stream cannot connect; the capture goes on and is recorded.
    await killDaemon(pair.b);
    const down = await pair.ferry(pair.a, ['mirror', 'initialize', 'vol', '--wait', '--json']);
    assert.equal(down.code, 6, `a transient failure (exit 6): ${down.stdout} ${down.stderr}`);
    assert.match(down.json.error.code, /PEER_UNREACHABLE|TRANSFER_INTERRUPTED/);
    assert.equal(snapshotCount(pair.a.home), 1, 'the snapshot was taken while the peer was down');
    let m = await mirrorStatus(pair);
    assert.equal(m.state, 'uninitialized');
    assert.match(m.lastError.code, /PEER_UNREACHABLE|TRANSFER_INTERRUPTED/);

    // Down during the capture: b is up while the capture stores new chunks (some go early), and
    // killed while the capture is held; the capture then finishes, and the initialize fails.
    await startDaemon(pair.b, pair.env);
    pair.proxy.target = pair.b.port!;
    mkdirSync(join(pair.data, 'more'));
    for (let i = 0; i < BIG_FILES; i++) writeRandomFile(join(pair.data, 'more', `g${i}.bin`), 256 * KiB);
    rmSync(release);
    const before = storeTotals(pair.b.home);
    const attempt = pair.ferry(pair.a, ['mirror', 'initialize', 'vol', '--wait', '--json']);
    const arrived = await waitFor('early objects at the destination', () => {
      const t = storeTotals(pair.b.home);
      return t.objects > before.objects ? t : undefined;
    }, 60_000, 100);
    await killDaemon(pair.b);
    writeFileSync(release, '');
    const cut = await attempt;
    assert.equal(cut.code, 6, `a transient failure (exit 6): ${cut.stdout} ${cut.stderr}`);
    assert.match(cut.json.error.code, /PEER_UNREACHABLE|TRANSFER_INTERRUPTED/);
    assert.equal(snapshotCount(pair.a.home), 2, 'the capture finished and was recorded');

    // Back up: the next initialize completes and does not resend what arrived early.
    await startDaemon(pair.b, pair.env);
    pair.proxy.target = pair.b.port!;
    const held = storeTotals(pair.b.home);
    assert.ok(held.bytes >= arrived.bytes);
    const ok = await pair.json(pair.a, ['mirror', 'initialize', 'vol', '--wait']);
    assertTreesEqual(pair.replica(), pair.data);
    // The new snapshot's own manifest and trees are new; every chunk it sends was missing at b.
    const sourceBytes = storeTotals(pair.a.home).bytes;
    assert.ok(ok.transfer.bytes <= sourceBytes - held.bytes + 64 * KiB, `the retry sent ${ok.transfer.bytes} bytes; the source stores ${sourceBytes}, b held ${held.bytes}`);
    m = await mirrorStatus(pair);
    assert.equal(m.state, 'idle');
    assert.equal(m.lastError, null);
    assert.equal(m.base, ok.snapshot);
  } finally {
    await pair.cleanup();
  }
});

test('in process: an early put that fails stops only the early stream; the update completes and sends every object once', { timeout: 180_000 }, async () => {
  const tmp = tempDir('ferry-overlap-');
  const A = Site.init(join(tmp.path, 'a'), 'a');
  const B = Site.init(join(tmp.path, 'b'), 'b');
  const eB = new Engine(B);
  const release = join(tmp.path, 'release');
  const calls: string[] = [];
  // The capture is held before its manifest until the first put (necessarily an early one) has
  // failed: that put releases it.
  const eA = new Engine(A, {
    connect: (): Receiver => {
      const rx = eB.receiverFor(A.id);
      return {
        hello: (r) => (calls.push('hello'), rx.hello(r)),
        missing: (v, ids) => (calls.push('missing'), rx.missing(v, ids)),
        async put(v, objects) {
          calls.push('put');
          if (!existsSync(release)) {
            writeFileSync(release, '');
            throw new FerryError('TRANSFER_INTERRUPTED', 'connection to b reset (test)');
          }
          return rx.put(v, objects);
        },
        commit: (v, r) => (calls.push('commit'), rx.commit(v, r)),
      };
    },
  });
  const saved = testKnobs();
  installTestKnobs({ ...saved, pauseAt: [PAUSE_STEP], pauseFile: release });
  try {
    addPeer(A, 'b', 'https://127.0.0.1:9', B.id);
    addPeer(B, 'a', 'https://127.0.0.1:9', A.id);
    const data = join(tmp.path, 'data');
    mkdirSync(join(data, 'big'), { recursive: true });
    for (let i = 0; i < BIG_FILES; i++) writeRandomFile(join(data, 'big', `f${i}.bin`), 256 * KiB);
    writeSmallFiles(join(data, 'small'), 10);
    createVolume(A, 'vol', { members: [{ path: data }] });
    createMirror(A, { volume: 'vol', to: 'b' });
    const r = await eA.update('vol', 'b', { initialize: true });
    assert.deepEqual(calls.slice(0, 3), ['hello', 'missing', 'put'], `the early stream spoke first: ${calls.join(' ')}`);
    assert.ok(existsSync(release));
    assert.equal(r.transfer.early?.error?.code, 'TRANSFER_INTERRUPTED', JSON.stringify(r.transfer));
    assert.equal(r.transfer.early?.objects, 0);
    // After the capture, the usual hello, negotiation, puts and one commit.
    assert.equal(calls.filter((c) => c === 'hello').length, 2);
    assert.equal(calls.filter((c) => c === 'commit').length, 1);
    const source = A.catalog.db.get<{ n: number; b: number }>('SELECT count(*) AS n, coalesce(sum(stored_length), 0) AS b FROM objects')!;
    assert.equal(r.transfer.objects, Number(source.n));
    assert.equal(r.transfer.bytes, Number(source.b));
    assertTreesEqual(B.catalog.db.get<{ path: string }>("SELECT path FROM members WHERE volume = 'vol'")!.path, data);
  } finally {
    installTestKnobs(saved);
    await eA.close();
    await eB.close();
    A.close();
    B.close();
    tmp.cleanup();
  }
});
