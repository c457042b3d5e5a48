// The benchmark's link model (bench/link.ts), through a real proxy on
// loopback: one-way delay and the handshake, the rate (shared by the
// connections of a direction), every byte in order under loss, a half-close
// that arrives after the connection's last bytes (and lets the other side
// still answer), and bounded bytes in flight so that a receiver that does not
// read holds the sender back. Only lower bounds on time are asserted: a
// loaded machine makes things slower, never faster.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';

import { Link, LinkProxy, linkSpec, type LinkSpec, parseDuration, parseLoss, parseRate } from '../../../bench/link.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

async function listen(onConnection: (s: Socket) => void): Promise<{ server: Server; port: number }> {
  const server = createServer({ allowHalfOpen: true, noDelay: true }, onConnection);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const address = server.address();
  return { server, port: typeof address === 'object' && address ? address.port : 0 };
}

async function withProxy(spec: LinkSpec, onConnection: (s: Socket) => void,
  body: (proxy: LinkProxy, link: Link) => Promise<void>): Promise<void> {
  const { server, port } = await listen(onConnection);
  const link = new Link(spec, 3);
  const proxy = await LinkProxy.start(link, 'a', port);
  try {
    await body(proxy, link);
  } finally {
    await proxy.close();
    server.close();
  }
}

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, allowHalfOpen: true, noDelay: true });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** Reads everything until the far end's FIN; resolves with the bytes and when the FIN came. */
function readAll(s: Socket): Promise<{ data: Buffer; endedAt: number; lastDataAt: number }> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let lastDataAt = 0;
    s.on('data', (b: Buffer) => {
      parts.push(b);
      lastDataAt = performance.now();
    });
    s.once('end', () => resolve({ data: Buffer.concat(parts), endedAt: performance.now(), lastDataAt }));
    s.once('error', reject);
  });
}

async function waitFor(what: string, pred: () => boolean, timeoutMs = 15_000): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (!pred()) {
    if (performance.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

test('flags parse as the docs say and refuse nonsense', () => {
  assert.equal(parseDuration('50ms'), 50);
  assert.equal(parseDuration('0.05s'), 50);
  assert.equal(parseRate('200Mbit/s'), 200e6);
  assert.equal(parseRate('200mbit'), 200e6);
  assert.equal(parseRate('1Gbit/s'), 1e9);
  assert.equal(parseRate('25MB/s'), 200e6);
  assert.equal(parseLoss('0.1%'), 0.001);
  assert.equal(parseLoss('0.001'), 0.001);
  assert.throws(() => parseRate('fast'), /--rate/);
  assert.throws(() => parseDuration('-5ms'), /--rtt/);
  assert.throws(() => parseLoss('50%'), /--loss/);
  const wan = linkSpec('50ms', '200Mbit/s', undefined);
  assert.equal(wan.inFlightBytes, 4 * MiB); // 2 x BDP = 2.5 MB, at least 4 MiB
  assert.equal(linkSpec('200ms', '1Gbit/s', undefined).inFlightBytes, 50_000_000);
});

test('one-way delay is rtt/2, a new connection costs the handshake first', async () => {
  const rtt = 200;
  let firstByteAt = 0;
  await withProxy(linkSpec(`${rtt}ms`, undefined, undefined), (s) => {
    s.on('data', (b: Buffer) => {
      if (!firstByteAt) firstByteAt = performance.now();
      s.write(b); // echo
    });
  }, async (proxy) => {
    const started = performance.now();
    const client = await open(proxy.port);
    const echo = (text: string): Promise<number> => new Promise((resolve) => {
      const sent = performance.now();
      client.once('data', () => resolve(performance.now() - sent));
      client.write(text);
    });
    await echo('ping');
    const first = performance.now() - started;
    // Handshake (1 rtt) before the first byte leaves, then half an rtt to the target, and back.
    assert.ok(firstByteAt - started >= 1.5 * rtt - 1, `first byte at the target after ${firstByteAt - started} ms`);
    assert.ok(first >= 2 * rtt - 1, `first echo after ${first} ms from connecting`);
    const second = await echo('ping');
    assert.ok(second >= rtt - 1, `echo on an open connection after ${second} ms`);
    client.destroy();
  });
});

test('the rate holds per direction, shared by the connections crossing it', async () => {
  const rate = 4e6; // 4 Mbit/s: 0.5 MB/s
  const each = 256 * KiB;
  const received = new Map<Socket, Promise<{ data: Buffer }>>();
  await withProxy(linkSpec('0ms', '4Mbit/s', undefined), (s) => {
    received.set(s, readAll(s));
  }, async (proxy) => {
    const started = performance.now();
    const payloads = [randomBytes(each), randomBytes(each)];
    const clients = await Promise.all(payloads.map(() => open(proxy.port)));
    clients.forEach((c, i) => c.end(payloads[i]));
    await waitFor('both connections at the target', () => received.size === 2);
    const results = await Promise.all([...received.values()]);
    const elapsed = performance.now() - started;
    assert.deepEqual(results.map((r) => sha(r.data)).sort(), payloads.map(sha).sort());
    const floor = ((2 * each * 8) / rate) * 1000;
    assert.ok(elapsed >= floor - 1, `${2 * each} bytes at ${rate} bit/s took ${elapsed} ms (at least ${floor})`);
    assert.equal(proxy.up, 2 * each);
    for (const c of clients) c.destroy();
  });
});

test('every byte arrives in order, both ways, on several connections under loss', async () => {
  const size = 2 * MiB;
  await withProxy(linkSpec('20ms', '100Mbit/s', '2%'), (s) => {
    s.pipe(s); // echo, FIN included
  }, async (proxy, link) => {
    const runs = Array.from({ length: 4 }, async () => {
      const payload = randomBytes(size);
      const client = await open(proxy.port);
      const back = readAll(client);
      for (let at = 0; at < size;) {
        const n = Math.min(size - at, 1 + Math.floor(Math.random() * 100 * KiB));
        client.write(payload.subarray(at, at + n));
        at += n;
      }
      client.end();
      const { data } = await back;
      assert.equal(data.length, size);
      assert.equal(sha(data), sha(payload));
      client.destroy();
    });
    await Promise.all(runs);
    assert.equal(proxy.up, 4 * size);
    assert.equal(proxy.down, 4 * size);
    assert.ok(link.towardsB.lostSegments > 0 && link.towardsA.lostSegments > 0, 'no segment was lost at 2 %');
  });
});

test('a lost segment costs its piece a retransmission: one more rtt', async () => {
  const rtt = 100;
  let arrivedAt = 0;
  await withProxy({ ...linkSpec(`${rtt}ms`, undefined, '20%') }, (s) => {
    s.once('data', () => {
      arrivedAt = performance.now();
    });
  }, async (proxy, link) => {
    const client = await open(proxy.port);
    await new Promise((r) => setTimeout(r, rtt * 1.2)); // past the handshake
    const sent = performance.now();
    client.write(randomBytes(64 * KiB)); // 46 segments: one of them is lost (1 - 0.8^46 > 0.9999)
    await waitFor('the piece at the target', () => arrivedAt > 0);
    assert.ok(link.towardsB.lostSegments > 0);
    assert.ok(arrivedAt - sent >= 1.5 * rtt - 1, `arrived after ${arrivedAt - sent} ms`);
    client.destroy();
  });
});

test('a half-close arrives after the last bytes, and the other side can still answer', async () => {
  const size = 256 * KiB;
  let atTarget: Promise<{ data: Buffer; endedAt: number; lastDataAt: number }> | null = null;
  await withProxy(linkSpec('100ms', '16Mbit/s', undefined), (s) => {
    atTarget = readAll(s);
    void atTarget.then(() => s.end('answer after your FIN'));
  }, async (proxy) => {
    const client = await open(proxy.port);
    const answer = readAll(client);
    const payload = randomBytes(size);
    client.end(payload); // data and FIN at once: the FIN must not overtake the data
    await waitFor('the connection at the target', () => atTarget !== null);
    const got = await atTarget!;
    assert.equal(got.data.length, size, 'the FIN arrived before the last bytes');
    assert.equal(sha(got.data), sha(payload));
    assert.ok(got.endedAt >= got.lastDataAt);
    const back = await answer;
    assert.equal(back.data.toString(), 'answer after your FIN');
    client.destroy();
  });
});

test('bytes in flight are bounded: a receiver that does not read holds the sender back', async () => {
  const limit = 256 * KiB;
  const size = 96 * MiB; // far more than the kernel's socket buffers on both hops
  let target: Socket | null = null;
  await withProxy({ ...linkSpec('0ms', undefined, undefined), inFlightBytes: limit }, (s) => {
    s.pause(); // reads nothing until told
    target = s;
  }, async (proxy) => {
    const payload = Buffer.alloc(size);
    for (let i = 0; i < size / 4; i++) payload.writeUInt32LE(i, i * 4);
    const client = await open(proxy.port);
    client.write(payload);
    client.end();
    await waitFor('the proxy to pause its sender', () => proxy.connections.length === 1 && proxy.connections[0].up.pauses > 0);
    const lane = proxy.connections[0].up;
    assert.ok(lane.maxHeld <= limit + 64 * KiB, `the model held ${lane.maxHeld} bytes`);
    assert.ok(client.writableLength > 0, 'the sender was not held back');
    const got = readAll(target!);
    target!.resume();
    const { data } = await got;
    assert.equal(data.length, size);
    assert.ok(data.equals(payload), 'bytes out of order or lost');
    assert.ok(lane.maxHeld <= limit + 64 * KiB, `the model held ${lane.maxHeld} bytes`);
    client.destroy();
  });
});
