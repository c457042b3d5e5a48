// The peer connection's wrappers (src/transport/): fault injection, the stall watch, busy-retry
// and the rate limit, each around a fake PeerConnection that records what reached the "peer", and
// the client's calls named as fault rules name them (replication and DR alike).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FerryError } from '../../../src/core/errors.ts';
import { parseFaultRules, withTestKnobs } from '../../../src/core/test-knobs.ts';
import type { PeerConnection, PeerRequest, RequestOptions } from '../../../src/transport/connection.ts';
import { framesOf } from '../../../src/transport/connection.ts';
import { FaultPlan, withFaults } from '../../../src/transport/faults.ts';
import { withStallWatch } from '../../../src/transport/stall-watch.ts';
import { withBusyRetry } from '../../../src/transport/busy-retry.ts';
import { withRateLimit } from '../../../src/transport/rate-limit.ts';
import { composeConnection, knobFaults } from '../../../src/transport/compose.ts';
import { PeerClient } from '../../../src/transport/client.ts';
import { drPeerOver } from '../../../src/transport/dr-client.ts';
import { TokenBucket, type TimeSource } from '../../../src/replication/token-bucket.ts';

const peer = { name: 'b', id: 'b-id', url: 'https://127.0.0.1:9', createdAt: 0 };

interface Fake extends PeerConnection {
  /** each request that reached the peer: its call and the body bytes that arrived */
  got: Array<{ call: string; body: Buffer }>;
  resets: number;
}

/** A peer reached through nothing: it reads the whole body, then answers (`answer` may throw its refusal). */
function fake(answer: (req: PeerRequest, n: number) => Buffer | Promise<Buffer> = () => Buffer.from('{}')): Fake {
  const f: Fake = {
    peer,
    got: [],
    resets: 0,
    async request(req: PeerRequest, o: RequestOptions = {}) {
      o.onMoved?.();
      const parts: Buffer[] = [];
      for await (const p of framesOf(req.body)) parts.push(p);
      if (o.signal?.aborted) throw new FerryError('TRANSFER_INTERRUPTED', 'request to b was cancelled');
      f.got.push({ call: req.call, body: Buffer.concat(parts) });
      const a = await answer(req, f.got.length);
      o.onMoved?.(); // the answer arrives
      return a;
    },
    quiet: async () => {},
    reset: () => void f.resets++,
    close: () => {},
  };
  return f;
}

const req = (call: string, body: PeerRequest['body'] = Buffer.from('{"x":1}')): PeerRequest => ({ call, path: `/${call}`, contentType: 'application/json', body });

test('fault rules parse from FERRY_TEST_FAULTS; a rule that cannot be read is refused by name', () => {
  assert.deepEqual(parseFaultRules('dr.failback:cut; put:cut:bytes=1000,nth=2 ;commit:fail:code=PEER_BUSY,times=3'), [
    { call: 'dr.failback', action: 'cut', nth: 1, times: 1 },
    { call: 'put', action: 'cut', nth: 2, times: 1, bytes: 1000 },
    { call: 'commit', action: 'fail', nth: 1, times: 3, code: 'PEER_BUSY' },
  ]);
  assert.throws(() => parseFaultRules('put:explode'), /FERRY_TEST_FAULTS: "put:explode": unknown action explode/);
  assert.throws(() => parseFaultRules('put:cut:bytes=lots'), /option bytes=lots/);
  assert.throws(() => parseFaultRules('put:cut:nth=0'), /option nth=0/);
});

test('fail: only the named call, from its nth, as many times as asked; every other call passes', async () => {
  const f = fake();
  const plan = new FaultPlan(parseFaultRules('dr.failback:fail:nth=2,times=1'));
  const c = withFaults(f, plan);
  await c.request(req('dr.failback'));
  await c.request(req('hello'));
  await assert.rejects(c.request(req('dr.failback')), (e: FerryError) => e.code === 'TRANSFER_INTERRUPTED' && /test fault dr\.failback:fail/.test(e.message));
  await c.request(req('dr.failback'));
  assert.deepEqual(f.got.map((g) => g.call), ['dr.failback', 'hello', 'dr.failback'], 'the failed call never reached the peer');
  assert.deepEqual(plan.fired, [{ peer: 'b', call: 'dr.failback', action: 'fail' }]);
  const busy = withFaults(fake(), new FaultPlan(parseFaultRules('commit:fail:code=PEER_BUSY')));
  await assert.rejects(busy.request(req('commit')), (e: FerryError) => e.code === 'PEER_BUSY');
});

test('cut after N bytes: the peer gets exactly N bytes of the body, the caller an interruption, the connection is reset', async () => {
  const f = fake();
  const c = withFaults(f, new FaultPlan(parseFaultRules('put:cut:bytes=2500')));
  async function* frames() {
    for (let i = 0; i < 4; i++) yield Buffer.alloc(1000, i);
  }
  await assert.rejects(c.request(req('put', { frames })), (e: FerryError) => e.code === 'TRANSFER_INTERRUPTED' && /was cut: put \(test fault put:cut\)/.test(e.message));
  assert.equal(f.got.length, 0, 'the cut request ends cancelled at the peer');
  assert.equal(f.resets, 1);
  // What the peer read before the cut: a recording fake that keeps partial bodies.
  const seen: number[] = [];
  const partial: PeerConnection = {
    ...f,
    async request(r, o = {}) {
      let n = 0;
      for await (const p of framesOf(r.body)) n += p.length;
      seen.push(n);
      if (o.signal?.aborted) throw new FerryError('TRANSFER_INTERRUPTED', 'cancelled');
      return Buffer.from('{}');
    },
  };
  await assert.rejects(withFaults(partial, new FaultPlan(parseFaultRules('put:cut:bytes=2500'))).request(req('put', { frames })));
  assert.deepEqual(seen, [2500]);
});

test('cut (whole body): the peer gets the request and acts on it; its answer is lost', async () => {
  const f = fake();
  const c = withFaults(f, new FaultPlan(parseFaultRules('dr.failback:cut')));
  await assert.rejects(c.request(req('dr.failback')), (e: FerryError) => e.code === 'TRANSFER_INTERRUPTED' && /test fault/.test(e.message));
  assert.deepEqual(f.got.map((g) => g.call), ['dr.failback'], 'the peer received the whole request');
  assert.equal(f.resets, 1);
  assert.deepEqual(JSON.parse((await c.request(req('dr.failback'))).toString()), {}, 'once only');
});

test('stall: the request goes out and nothing moves; the stall watch ends it and resets the connection', async () => {
  const f = fake();
  const c = withStallWatch(withFaults(f, new FaultPlan(parseFaultRules('hello:stall'))), 50);
  await assert.rejects(c.request(req('hello')), (e: FerryError) => e.code === 'TRANSFER_INTERRUPTED' && /b stalled: no data for 0.05 s/.test(e.message));
  assert.equal(f.resets, 1);
  assert.equal(f.got.length, 0);
  await c.request(req('hello'));
  assert.equal(f.got.length, 1, 'the next request goes through');
});

test('busy-retry: a refused buffer is sent again; a stream only where it can resume, from where the peer stopped', async () => {
  const f = fake((_r, n) => {
    if (n <= 2) throw new FerryError('PEER_BUSY', 'busy', { details: { received: 1 } });
    return Buffer.from('{}');
  });
  const fast = { baseMs: 1, maxMs: 2, jitter: 0 };
  await withBusyRetry(f, { policy: fast }).request(req('commit'));
  assert.equal(f.got.length, 3, 'sent three times');

  const g = fake((_r, n) => {
    if (n === 1) throw new FerryError('PEER_BUSY', 'busy', { details: { received: 1 } });
    return Buffer.from('{}');
  });
  let from = 0;
  const objects = ['a', 'b', 'c'];
  const body = {
    async *frames() {
      for (const o of objects.slice(from)) yield Buffer.from(o);
    },
    resume(refusal: FerryError) {
      from += Number(refusal.details?.received);
      return true;
    },
  };
  await withBusyRetry(g, { policy: fast }).request(req('put', body));
  assert.deepEqual(g.got.map((x) => x.body.toString()), ['abc', 'bc'], 'resent from the refused object');

  const h = fake(() => {
    throw new FerryError('PEER_BUSY', 'busy');
  });
  await assert.rejects(withBusyRetry(h, { policy: fast }).request(req('put', { frames: body.frames })), (e: FerryError) => e.code === 'PEER_BUSY');
  assert.equal(h.got.length, 1, 'a stream that cannot resume is not sent again');
  await assert.rejects(withBusyRetry(h, { policy: fast, retries: 2 }).request(req('hello')), (e: FerryError) => e.code === 'PEER_BUSY');
  assert.equal(h.got.length, 4, 'the refusal stands after the retries');
});

test('rate limit: the bytes of a streamed body go through the bucket; JSON calls do not', async () => {
  let now = 0;
  const slept: number[] = [];
  const time: TimeSource = { now: () => now, sleep: async (ms) => void (slept.push(ms), (now += ms)) };
  const bucket = new TokenBucket(64 * 1024, time);
  const f = fake();
  const c = withRateLimit(f, bucket);
  await c.request(req('hello'));
  async function* frames() {
    for (let i = 0; i < 4; i++) yield Buffer.alloc(64 * 1024);
  }
  await c.request(req('put', { frames }));
  assert.equal(f.got[1].body.length, 256 * 1024);
  assert.equal(Math.round(slept.reduce((a, b) => a + b, 0)), 3000, '256 KiB at 64 KiB/s with a 64 KiB burst: 3 s of waiting');
});

test('the client names its calls as fault rules do, replication and DR; the knob plan is one per installation', async () => {
  const f = fake((r) => Buffer.from(r.call === 'dr.state' ? JSON.stringify({}) : '{}'));
  const plan = new FaultPlan(parseFaultRules('*:fail:nth=3'));
  const client = new PeerClient(composeConnection(f, { faults: plan }));
  await client.call('/v1/dr/state', {}).catch(() => {});
  await client.events({ limit: 1 } as never).catch(() => {});
  await assert.rejects(client.commit('vol', {} as never), /test fault \*:fail/);
  await assert.rejects(drPeerOver(new PeerClient(composeConnection(fake(), { faults: new FaultPlan(parseFaultRules('dr.failback:fail')) }))).failback({} as never), /failed: dr\.failback/);
  assert.deepEqual(f.got.map((g) => g.call), ['dr.state', 'events']);
  assert.equal(knobFaults(), undefined, 'no knob, no plan');
  await withTestKnobs({ faults: parseFaultRules('put:stall') }, () => {
    const p = knobFaults();
    assert.ok(p && p === knobFaults(), 'one plan while the knobs are installed');
  });
});
