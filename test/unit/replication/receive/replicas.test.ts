// The receiving side's state (replication/receive/replicas.ts): one ReplicaState per secondary
// volume, one registry per site. Applies of a volume run one at a time and in order; a forced
// failover's cancellation reaches the applies of its volume only, and ends with the lock holder
// that asked; a transfer keeps one GC writer open however many puts it takes; two sites in one
// process share none of it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Replicas } from '../../../../src/replication/receive/replicas.ts';
import { applyInFlight, cancelApply, withReplicaLock } from '../../../../src/site/receiver.ts';
import { withLocalSite } from '../../local-site.ts';

/** A promise and the function that settles it. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}

const paths = { catalog: '/nonexistent/catalog.db', store: '/nonexistent/store' };

test('applies of one volume run one at a time, in the order asked, and a failed one does not stop the next', async () => {
  const r = new Replicas(paths);
  const s = r.of('app');
  const order: string[] = [];
  const g = gate();
  const first = s.exclusive(async () => {
    order.push('first:start');
    await g.wait;
    order.push('first:end');
    throw new Error('first failed');
  });
  const second = s.exclusive(async () => {
    order.push('second');
    return 2;
  });
  assert.equal(r.applying('app'), true);
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(order, ['first:start'], 'the second waits for the first');
  g.open();
  await assert.rejects(first, /first failed/);
  assert.equal(await second, 2);
  assert.deepEqual(order, ['first:start', 'first:end', 'second']);
  assert.equal(r.applying('app'), false, 'nothing queued any more');
});

test('a cancel reaches only its volume, only while an apply is in flight, and ends with the lock holder', async () => {
  const r = new Replicas(paths);
  r.of('idle').cancel('failover --force');
  assert.equal(r.of('idle').cancelled, undefined, 'no apply in flight: nothing to cancel');

  const ga = gate();
  const gb = gate();
  const a = r.of('a').exclusive(() => ga.wait);
  const b = r.of('b').exclusive(() => gb.wait);
  const failover = r.of('a').withLock(async () => r.of('a').cancelled);
  r.of('a').cancel('failover --force');
  assert.equal(r.of('a').cancelled, 'failover --force');
  assert.equal(r.of('b').cancelled, undefined, "another volume's apply goes on");
  ga.open();
  await a;
  assert.equal(await failover, 'failover --force', 'the failover holding the lock still sees why');
  assert.equal(r.of('a').cancelled, undefined, 'the cancellation ended with the failover');
  gb.open();
  await b;
});

test('a transfer holds one GC writer until it is done, however many puts and commits touch it', () => {
  const r = new Replicas(paths);
  let begun = 0;
  let ended = 0;
  const beginWrite = () => {
    begun++;
    return () => ended++;
  };
  r.of('app').transferring(beginWrite);
  r.of('app').transferring(beginWrite);
  r.of('other').transferring(beginWrite);
  assert.equal(begun, 2, 'one writer per volume with a transfer open');
  r.of('app').transferDone();
  r.of('app').transferDone();
  assert.equal(ended, 1, 'done once');
  r.of('other').transferDone();
  assert.equal(ended, 2);
});

test("two sites in one process: one site's apply lock and cancellation are not the other's", async () => {
  await withLocalSite('a', async ({ site: a }) => {
    await withLocalSite('b', async ({ site: b }) => {
      assert.notEqual(a.replicas, b.replicas);
      const g = gate();
      const held = withReplicaLock(a, 'app', () => g.wait);
      assert.equal(applyInFlight(a, 'app'), true);
      assert.equal(applyInFlight(b, 'app'), false, "site b's volume app is not locked by site a");
      // b's lock is free: it runs now, while a's is held
      assert.equal(await withReplicaLock(b, 'app', async () => b.replicas.of('app').cancelled ?? 'free'), 'free');
      cancelApply(a, 'app', 'failover --force');
      assert.equal(a.replicas.of('app').cancelled, 'failover --force');
      assert.equal(b.replicas.of('app').cancelled, undefined);
      g.open();
      await held;
      assert.equal(applyInFlight(a, 'app'), false);
    });
  });
});
