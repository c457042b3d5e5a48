// The fault-injection proxy itself: every mode forwards bytes intact and in
// order, counts them, and fails the way it says (a stall holds without
// closing; a reset cuts after exactly N bytes upstream).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { TcpProxy } from '../harness/tcp-proxy.ts';

/** A target that echoes everything and remembers what it got. */
async function echoServer(): Promise<{ port: number; received: () => number; close: () => Promise<void> }> {
  let received = 0;
  const socks = new Set<net.Socket>();
  const server = net.createServer((s) => {
    socks.add(s);
    s.on('error', () => {});
    s.on('close', () => socks.delete(s));
    s.on('data', (b) => {
      received += b.length;
      s.write(b);
    });
    s.on('end', () => s.end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    received: () => received,
    close: () => {
      for (const s of socks) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Connect, send `data`, half-close, and collect the echo until the socket closes. */
function roundTrip(port: number, data: Buffer): Promise<{ echo: Buffer; error?: NodeJS.ErrnoException }> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    let error: NodeJS.ErrnoException | undefined;
    const s = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true }, () => {
      s.write(data);
      s.end();
    });
    s.on('data', (b) => parts.push(b));
    s.on('error', (e) => (error = e));
    s.on('close', () => resolve({ echo: Buffer.concat(parts), error }));
  });
}

test('pass, delay and throttle forward every byte in order and count them', async () => {
  const target = await echoServer();
  const proxy = await TcpProxy.start(target.port);
  try {
    const a = randomBytes(1 << 20);
    const r1 = await roundTrip(proxy.port, a);
    assert.ok(r1.echo.equals(a));
    assert.equal(proxy.up, a.length);
    assert.equal(proxy.down, a.length);

    proxy.delay(20);
    const b = randomBytes(200_000);
    assert.ok((await roundTrip(proxy.port, b)).echo.equals(b));

    proxy.throttle(2 << 20);
    const c = randomBytes(300_000);
    assert.ok((await roundTrip(proxy.port, c)).echo.equals(c));

    proxy.set({ delayMs: 5, bytesPerSecond: 4 << 20 });
    const d = randomBytes(100_000);
    assert.ok((await roundTrip(proxy.port, d)).echo.equals(d));
    assert.equal(proxy.up, a.length + b.length + c.length + d.length);
    assert.equal(proxy.down, proxy.up);
    assert.equal(proxy.connections, 4);
  } finally {
    await proxy.close();
    await target.close();
  }
});

test('stall holds the data without closing, and pass releases it', async () => {
  const target = await echoServer();
  const proxy = await TcpProxy.start(target.port);
  try {
    proxy.stall();
    const data = randomBytes(2 << 20); // more than the proxy queues: backpressure reaches the sender
    const done = roundTrip(proxy.port, data);
    let settled = false;
    void done.then(() => (settled = true));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(target.received(), 0);
    assert.equal(proxy.up, 0);
    assert.equal(settled, false, 'a stalled link must not close');
    assert.equal(proxy.open, 1);
    proxy.pass();
    const r = await done;
    assert.ok(r.echo.equals(data));
    assert.equal(r.error, undefined);
  } finally {
    await proxy.close();
    await target.close();
  }
});

test('resetAfter(n) cuts both sides after exactly n bytes upstream, and keeps cutting until the mode changes', async () => {
  const target = await echoServer();
  const proxy = await TcpProxy.start(target.port);
  try {
    await roundTrip(proxy.port, Buffer.from('warm-up'));
    const before = proxy.up;
    proxy.resetAfter(300_000);
    const r = await roundTrip(proxy.port, randomBytes(1 << 20));
    assert.equal(proxy.up - before, 300_000);
    assert.ok(target.received() <= before + 300_000);
    assert.ok(r.echo.length <= 300_000);
    assert.equal(r.error?.code, 'ECONNRESET');
    assert.equal(proxy.resets, 1);
    // The link stays cut: a new connection is reset at its first byte.
    const again = await roundTrip(proxy.port, Buffer.from('x'));
    assert.equal(again.echo.length, 0);
    assert.equal(proxy.resets, 2);
    proxy.pass();
    const ok = await roundTrip(proxy.port, Buffer.from('after'));
    assert.equal(ok.echo.toString(), 'after');
  } finally {
    await proxy.close();
    await target.close();
  }
});

test('freeze() stalls the open connections for good while new ones pass', async () => {
  const target = await echoServer();
  const proxy = await TcpProxy.start(target.port);
  try {
    const old = net.connect({ host: '127.0.0.1', port: proxy.port });
    old.on('error', () => {});
    await new Promise<void>((r) => old.once('connect', () => r()));
    old.write('before');
    await proxy.waitFor(() => proxy.down === 6, 5_000, 'the first echo');
    proxy.freeze();
    old.write('after');
    const fresh = await roundTrip(proxy.port, Buffer.from('new path'));
    assert.equal(fresh.echo.toString(), 'new path');
    proxy.pass(); // a mode change does not thaw a frozen connection
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(target.received(), 6 + 8);
    assert.equal(old.destroyed, false);
    old.destroy();
  } finally {
    await proxy.close();
    await target.close();
  }
});
