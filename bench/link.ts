// A model of a wide-area link, in user space, for the replication benchmark:
// the proxies every tool's connections cross (bench/proxy.ts) forward each
// byte through it. This machine's kernel has no netem qdisc, so delay and
// rate cannot be set on an interface.
//
// The link joins two sites, a and b; each direction is one serializer shared
// by every connection that crosses it that way:
//   - bytes go out in the order they arrived, at most `rate` bits per second
//     (a piece occupies the direction for bytes x 8 / rate; the next piece
//     starts when the link is free), and arrive one-way delay (rtt / 2)
//     after their last bit went out; a connection's bytes arrive in order
//     and its FIN (half-close) after its last byte;
//   - at most `inFlightBytes` per connection and direction are held in the
//     model (accepted from the sender, not yet handed to the receiver); past
//     that the sending socket is paused, so backpressure reaches the sender
//     through TCP as on a real path; a receiver that does not read holds
//     everything behind it the same way;
//   - a new connection costs the TCP handshake: the target is connected
//     rtt / 2 after the client, and the client's first bytes leave one rtt
//     after it connected;
//   - loss (optional) is an approximation: each segment of 1,448 bytes is
//     lost with the given probability, deterministically from a seed; a piece
//     with a lost segment arrives one rtt later (a fast retransmission) and,
//     since a connection's bytes arrive in order, holds back everything
//     behind it on that connection (head-of-line blocking); the retransmitted
//     segments take link time again. TCP's congestion response (the sender
//     halving its window, then slow start or CUBIC growth) is NOT modelled,
//     nor is slow start on a new connection: real TCP loses more throughput
//     to loss and to new connections than this model does.
// Bytes are what the two ends write into their sockets (TLS records, HTTP/2
// frames, rsync's protocol), not TCP/IP headers.

import { connect, createServer, type Server, type Socket } from 'node:net';

import { Rng } from './prng.ts';

const MiB = 1024 * 1024;
/** TCP payload of one segment on a 1500-byte MTU path with timestamps. */
export const SEGMENT = 1448;

export interface LinkSpec {
  /** Round-trip time in ms; each direction delays half of it. */
  rttMs: number;
  /** Per direction, bits per second; Infinity for no limit. */
  rateBitsPerSecond: number;
  /** Probability that a segment is lost, 0 <= loss <= 0.2. */
  loss: number;
  /** Bytes one connection may have in the model per direction before its sender is paused. */
  inFlightBytes: number;
}

/** Loopback: no delay, no limit (the proxies still count). */
export const LOOPBACK: LinkSpec = { rttMs: 0, rateBitsPerSecond: Infinity, loss: 0, inFlightBytes: 4 * MiB };

/** True when the spec adds nothing to loopback. */
export function isLoopback(spec: LinkSpec): boolean {
  return spec.rttMs === 0 && spec.rateBitsPerSecond === Infinity && spec.loss === 0;
}

/** '50ms', '0.05s', '50' (ms) -> ms. */
export function parseDuration(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*$/i.exec(text);
  if (!m) throw new Error(`--rtt: not a duration: '${text}' (say e.g. 50ms or 0.05s)`);
  const ms = Number(m[1]) * (m[2]?.toLowerCase() === 's' ? 1000 : 1);
  if (!(ms >= 0 && ms <= 10_000)) throw new Error(`--rtt must be between 0 and 10 s, got '${text}'`);
  return ms;
}

/** '200Mbit/s', '200mbit', '1Gbit/s', '25MB/s', '512kbit/s' -> bits per second ('b' bits, 'B' bytes). */
export function parseRate(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(bits?|bytes?|b)(?:\/s|ps)?\s*$/i.exec(text);
  if (!m) throw new Error(`--rate: not a rate: '${text}' (say e.g. 200Mbit/s or 25MB/s)`);
  const scale = { '': 1, k: 1e3, m: 1e6, g: 1e9 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g'];
  const bytes = m[3] === 'B' || /^bytes?$/i.test(m[3]);
  const bits = Number(m[1]) * scale * (bytes ? 8 : 1);
  if (!(bits >= 64_000)) throw new Error(`--rate must be at least 64kbit/s, got '${text}'`);
  return bits;
}

/** '0.1%' or '0.001' -> 0.001. */
export function parseLoss(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$/.exec(text);
  if (!m) throw new Error(`--loss: not a fraction: '${text}' (say e.g. 0.1%)`);
  const loss = Number(m[1]) / (m[2] ? 100 : 1);
  if (!(loss >= 0 && loss <= 0.2)) throw new Error(`--loss must be between 0 and 20 %, got '${text}'`);
  return loss;
}

/** A link from the benchmark's flags; in flight: twice the bandwidth-delay product, at least 4 MiB. */
export function linkSpec(rtt: string | undefined, rate: string | undefined, loss: string | undefined): LinkSpec {
  const rttMs = rtt === undefined ? 0 : parseDuration(rtt);
  const rateBitsPerSecond = rate === undefined ? Infinity : parseRate(rate);
  const bdp = rateBitsPerSecond === Infinity ? 0 : (rateBitsPerSecond / 8) * (rttMs / 1000);
  return { rttMs, rateBitsPerSecond, loss: loss === undefined ? 0 : parseLoss(loss), inFlightBytes: Math.max(4 * MiB, Math.ceil(2 * bdp)) };
}

/** One line for reports. */
export function describeLink(spec: LinkSpec): string {
  if (isLoopback(spec)) return 'loopback (no delay, no rate limit; the proxies only count)';
  const rate = spec.rateBitsPerSecond === Infinity ? 'no rate limit' : `${formatRate(spec.rateBitsPerSecond)} each way`;
  const loss = spec.loss > 0 ? `, ${(spec.loss * 100).toPrecision(2)} % segment loss (retransmission delay only, no congestion response)` : '';
  return `${spec.rttMs} ms RTT, ${rate}${loss}; at most ${(spec.inFlightBytes / MiB).toFixed(1)} MiB in flight per connection and direction (user-space link model, bench/link.ts)`;
}

function formatRate(bits: number): string {
  return bits >= 1e9 ? `${bits / 1e9} Gbit/s` : bits >= 1e6 ? `${bits / 1e6} Mbit/s` : `${bits / 1e3} kbit/s`;
}

/** One direction of the link: when each piece is delivered. */
export class LinkDirection {
  private readonly spec: LinkSpec;
  private readonly rng: Rng;
  /** When the last scheduled bit has gone out (performance.now() ms). */
  private freeAt = 0;
  segments = 0;
  lostSegments = 0;

  constructor(spec: LinkSpec, rng: Rng) {
    this.spec = spec;
    this.rng = rng;
  }

  get oneWayMs(): number {
    return this.spec.rttMs / 2;
  }

  /** A piece of `bytes` handed to the link now (not before `earliest`): when it arrives. */
  schedule(bytes: number, now: number, earliest = 0): number {
    const { rateBitsPerSecond: rate, loss, rttMs } = this.spec;
    const msPerByte = rate === Infinity ? 0 : 8000 / rate;
    const start = Math.max(now, earliest, this.freeAt);
    const segments = Math.ceil(bytes / SEGMENT);
    let lost = 0;
    if (loss > 0) for (let i = 0; i < segments; i++) if (this.rng.float() < loss) lost++;
    this.segments += segments;
    this.lostSegments += lost;
    this.freeAt = start + (bytes + lost * SEGMENT) * msPerByte;
    return this.freeAt + this.oneWayMs + (lost > 0 ? rttMs : 0);
  }
}

/** The two directions between site a and site b. */
export class Link {
  readonly spec: LinkSpec;
  readonly towardsB: LinkDirection;
  readonly towardsA: LinkDirection;

  constructor(spec: LinkSpec, seed = 1) {
    this.spec = spec;
    this.towardsB = new LinkDirection(spec, new Rng(seed, 'link-loss', 'towards-b'));
    this.towardsA = new LinkDirection(spec, new Rng(seed, 'link-loss', 'towards-a'));
  }

  /** The direction bytes sent from `side` take. */
  from(side: 'a' | 'b'): LinkDirection {
    return side === 'a' ? this.towardsB : this.towardsA;
  }
}

export interface LaneCounters {
  /** Bytes delivered to the receiving socket. */
  delivered(bytes: number): void;
}

/** What a lane saw, for tests. */
export interface LaneStats {
  delivered: number;
  /** Most bytes held in the model at once. */
  maxHeld: number;
  /** Times the sender was paused because the model held inFlightBytes. */
  pauses: number;
}

type Item = { kind: 'data'; buf: Buffer; due: number } | { kind: 'end'; due: number } | { kind: 'reset'; due: number };

/** One direction of one connection: src's bytes cross `dir` to dst in order, with backpressure. */
class Lane {
  readonly stats: LaneStats = { delivered: 0, maxHeld: 0, pauses: 0 };
  private readonly queue: Item[] = [];
  private head = 0;
  private held = 0;
  private lastDue = 0;
  private paused = false;
  private waitingDrain = false;
  private timer: NodeJS.Timeout | null = null;
  dst: Socket | null = null;
  /** The sender's bytes leave no earlier than this (the handshake). */
  readyAt = 0;
  done = false;

  private readonly dir: LinkDirection;
  private readonly limit: number;
  private readonly src: Socket;
  private readonly counters: LaneCounters;

  constructor(dir: LinkDirection, limit: number, src: Socket, counters: LaneCounters) {
    this.dir = dir;
    this.limit = limit;
    this.src = src;
    this.counters = counters;
  }

  data(buf: Buffer): void {
    const now = performance.now();
    const due = Math.max(this.dir.schedule(buf.length, now, this.readyAt), this.lastDue);
    this.enqueue({ kind: 'data', buf, due });
    this.held += buf.length;
    if (this.held > this.stats.maxHeld) this.stats.maxHeld = this.held;
    if (this.held >= this.limit && !this.paused) {
      this.paused = true;
      this.stats.pauses++;
      this.src.pause();
    }
    this.pump();
  }

  /** FIN: after the last byte, and no earlier than one-way delay from now. */
  end(): void {
    this.enqueue({ kind: 'end', due: Math.max(this.lastDue, performance.now() + this.dir.oneWayMs, this.readyAt) });
    this.pump();
  }

  /** The sender's connection was cut: cut the receiver's, in order. */
  reset(): void {
    this.enqueue({ kind: 'reset', due: Math.max(this.lastDue, performance.now() + this.dir.oneWayMs) });
    this.pump();
  }

  private enqueue(item: Item): void {
    this.lastDue = item.due;
    this.queue.push(item);
  }

  /** Hands every item that is due to dst, in order, until dst pushes back. */
  pump(): void {
    if (this.timer || this.waitingDrain || this.done) return;
    const dst = this.dst;
    if (!dst) return;
    while (this.head < this.queue.length) {
      const item = this.queue[this.head];
      const now = performance.now();
      if (item.due > now) {
        this.timer = setTimeout(() => {
          this.timer = null;
          this.pump();
        }, Math.max(1, Math.ceil(item.due - now)));
        return;
      }
      this.queue[this.head++] = undefined as unknown as Item;
      if (this.head > 1024 && this.head * 2 > this.queue.length) {
        this.queue.splice(0, this.head);
        this.head = 0;
      }
      if (item.kind === 'end') {
        this.done = true;
        if (!dst.destroyed) dst.end();
        return;
      }
      if (item.kind === 'reset') {
        this.done = true;
        if (!dst.destroyed) dst.resetAndDestroy();
        return;
      }
      this.held -= item.buf.length;
      if (this.paused && this.held < this.limit / 2) {
        this.paused = false;
        this.src.resume();
      }
      if (dst.destroyed) continue;
      this.stats.delivered += item.buf.length;
      this.counters.delivered(item.buf.length);
      if (!dst.write(item.buf)) {
        this.waitingDrain = true;
        dst.once('drain', () => {
          this.waitingDrain = false;
          this.pump();
        });
        return;
      }
    }
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.done = true;
    this.queue.length = 0;
    this.head = 0;
  }
}

export interface ConnectionStats {
  up: LaneStats;
  down: LaneStats;
}

/**
 * Forwards one accepted connection from `client` (at site `from`) to
 * 127.0.0.1:targetPort across the link; the target is connected rtt / 2
 * later (the SYN's way). The client must come from a server made with
 * allowHalfOpen: true, so that a half-close crosses as one. Returns the
 * lanes' statistics, live.
 */
export function forwardOverLink(link: Link, from: 'a' | 'b', client: Socket, targetPort: number,
  counters: { up: LaneCounters; down: LaneCounters }, onUpstream: (socket: Socket) => void = () => {}): ConnectionStats {
  const spec = link.spec;
  const accepted = performance.now();
  client.setNoDelay(true);
  const up = new Lane(link.from(from), spec.inFlightBytes, client, counters.up);
  up.readyAt = accepted + spec.rttMs;
  let upstream: Socket | null = null;
  let down: Lane | null = null;
  let connectTimer: NodeJS.Timeout | null = null;
  let closed = 0;
  const closedOne = (): void => {
    if (++closed === 2) {
      up.stop();
      down?.stop();
    }
  };
  client.on('data', (buf: Buffer) => up.data(buf));
  client.on('end', () => up.end());
  client.on('error', () => {});
  client.on('close', () => {
    if (!client.readableEnded) up.reset();
    if (!upstream) {
      // Gone before the target was even reached: never reach it.
      if (connectTimer) clearTimeout(connectTimer);
      connectTimer = null;
      closedOne();
      closedOne();
    } else closedOne();
  });
  const open = (): void => {
    connectTimer = null;
    if (client.destroyed) return;
    const socket = connect({ host: '127.0.0.1', port: targetPort, allowHalfOpen: true, noDelay: true });
    upstream = socket;
    onUpstream(socket);
    down = new Lane(link.from(from === 'a' ? 'b' : 'a'), spec.inFlightBytes, socket, counters.down);
    const lane = down;
    socket.on('data', (buf: Buffer) => lane.data(buf));
    socket.on('end', () => lane.end());
    socket.on('error', () => {});
    socket.on('close', () => {
      if (!socket.readableEnded) lane.reset();
      closedOne();
    });
    lane.dst = client;
    up.dst = socket;
    up.pump();
  };
  if (spec.rttMs > 0) connectTimer = setTimeout(open, spec.rttMs / 2);
  else open();
  return {
    up: up.stats,
    get down(): LaneStats {
      return down ? down.stats : { delivered: 0, maxHeld: 0, pauses: 0 };
    },
  };
}

/** Counts what a proxy forwards (bench/proxy.ts keeps them in shared memory). */
export interface ProxyCounters {
  up(bytes: number): void;
  down(bytes: number): void;
  connection(): void;
}

/**
 * A proxy on 127.0.0.1:<ephemeral> whose connections cross `link` to
 * 127.0.0.1:target; the connecting side is at site `from`. The target can
 * change between connections (a restarted daemon listens elsewhere).
 */
export class LinkProxy {
  readonly server: Server;
  port = 0;
  /** Where new connections go: a port, or a function read at each connection. */
  target: number | (() => number);
  /** Bytes delivered to the target and to the clients, over all connections. */
  up = 0;
  down = 0;
  readonly connections: ConnectionStats[] = [];
  private readonly sockets = new Set<Socket>();

  private constructor(link: Link, from: 'a' | 'b', target: number | (() => number), counters?: ProxyCounters) {
    this.target = target;
    const up: LaneCounters = { delivered: (n) => { this.up += n; counters?.up(n); } };
    const down: LaneCounters = { delivered: (n) => { this.down += n; counters?.down(n); } };
    this.server = createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
      counters?.connection();
      this.sockets.add(client);
      client.on('close', () => this.sockets.delete(client));
      const port = typeof this.target === 'number' ? this.target : this.target();
      this.connections.push(forwardOverLink(link, from, client, port, { up, down }, (upstream) => {
        this.sockets.add(upstream);
        upstream.on('close', () => this.sockets.delete(upstream));
      }));
    });
  }

  static async start(link: Link, from: 'a' | 'b', target: number | (() => number), counters?: ProxyCounters): Promise<LinkProxy> {
    const proxy = new LinkProxy(link, from, target, counters);
    await new Promise<void>((resolve, reject) => {
      proxy.server.once('error', reject);
      proxy.server.listen(0, '127.0.0.1', () => resolve());
    });
    const address = proxy.server.address();
    proxy.port = typeof address === 'object' && address ? address.port : 0;
    return proxy;
  }

  /** Cuts every connection and stops listening. */
  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
