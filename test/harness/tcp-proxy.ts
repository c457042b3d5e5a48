// A loopback TCP proxy for fault injection: 127.0.0.1:port -> 127.0.0.1:target.
// Each connection is two lanes (up: client -> target, down: target -> client);
// each lane is a queue drained by a pump that obeys the proxy's current mode,
// which tests switch at run time:
//   pass                  forward as fast as the sockets allow
//   delay(ms)             hold each piece ms after it arrived (order kept)
//   throttle(bytes/s)     pace each lane to a rate
//   stall()               forward nothing and close nothing (a black hole)
//   resetAfter(n)         once n more bytes have gone up, reset every
//                         connection (RST both sides), and any new one at its
//                         first byte, until the mode changes
// and, outside the modes, freeze(): the connections open now stall for good
// (a path that died without a reset: a dropped NAT entry, a dead router)
// while new connections follow the mode.
// Delay and throttle combine (`set({ delayMs, bytesPerSecond })`). Bytes are
// counted when forwarded, so `up`/`down` are what the link carried. While a
// lane is held its source is paused once a little is queued, so a stall
// exerts TCP backpressure instead of buffering without bound.
import net from 'node:net';

export interface ProxyMode {
  delayMs?: number;
  bytesPerSecond?: number;
  stall?: boolean;
  /** reset all connections once this many more bytes have gone upstream */
  resetAfterUpBytes?: number;
}

type Item = { kind: 'data'; buf: Buffer; at: number } | { kind: 'end' } | { kind: 'reset' };

const HIGH_WATER = 256 * 1024;

class Lane {
  readonly queue: Item[] = [];
  queued = 0;
  running = false;
  nextSendAt = 0;
  readonly src: net.Socket;
  readonly dst: net.Socket;
  readonly dir: 'up' | 'down';
  constructor(src: net.Socket, dst: net.Socket, dir: 'up' | 'down') {
    this.src = src;
    this.dst = dst;
    this.dir = dir;
  }
}

interface Conn {
  client: net.Socket;
  target: net.Socket;
  lanes: Lane[];
  dead: boolean;
  frozen: boolean;
}

export class TcpProxy {
  readonly server: net.Server;
  port = 0;
  /** the port connections go to; may be changed (a restarted daemon listens elsewhere) */
  target: number;
  /** bytes forwarded client -> target, and target -> client, over all connections */
  up = 0;
  down = 0;
  connections = 0;
  resets = 0;
  #mode: ProxyMode = {};
  #resetAt: number | undefined;
  readonly #conns = new Set<Conn>();
  #wakers = new Set<() => void>();

  private constructor(target: number) {
    this.target = target;
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true }, (c) => this.#accept(c));
  }

  static async start(target: number, mode: ProxyMode = {}): Promise<TcpProxy> {
    const p = new TcpProxy(target);
    p.set(mode);
    await new Promise<void>((resolve, reject) => {
      p.server.once('error', reject);
      p.server.listen(0, '127.0.0.1', () => resolve());
    });
    p.port = (p.server.address() as net.AddressInfo).port;
    // Tests await the processes and timers that use the proxy; the proxy alone keeps nothing alive.
    p.server.unref();
    return p;
  }

  get url(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  get mode(): Readonly<ProxyMode> {
    return this.#mode;
  }

  /** Replace the mode (all fields at once). */
  set(mode: ProxyMode): void {
    this.#mode = { ...mode };
    this.#resetAt = mode.resetAfterUpBytes === undefined ? undefined : this.up + mode.resetAfterUpBytes;
    const w = this.#wakers;
    this.#wakers = new Set();
    for (const f of w) f();
  }

  pass(): void {
    this.set({});
  }
  delay(ms: number): void {
    this.set({ delayMs: ms });
  }
  throttle(bytesPerSecond: number): void {
    this.set({ bytesPerSecond });
  }
  stall(): void {
    this.set({ stall: true });
  }
  resetAfter(upBytes: number): void {
    this.set({ resetAfterUpBytes: upBytes });
  }

  /** Live connections. */
  get open(): number {
    return this.#conns.size;
  }

  /** The connections open now forward nothing more, ever, and never close; new ones follow the mode. */
  freeze(): void {
    for (const c of this.#conns) c.frozen = true;
  }

  /** Reset every connection now (RST to both sides). */
  resetAll(): void {
    for (const c of this.#conns) this.#kill(c);
  }

  /** Resolve once `pred()` holds (checked every 5 ms); reject after timeoutMs. */
  async waitFor(pred: () => boolean, timeoutMs = 60_000, what = 'proxy condition'): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (!pred()) {
      if (Date.now() > until) throw new Error(`timed out waiting for ${what} (up ${this.up}, down ${this.down})`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  async close(): Promise<void> {
    this.resetAll();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  #accept(client: net.Socket): void {
    this.connections++;
    const target = net.connect({ host: '127.0.0.1', port: this.target, allowHalfOpen: true, noDelay: true });
    client.unref();
    target.unref();
    const conn: Conn = { client, target, lanes: [], dead: false, frozen: false };
    conn.lanes = [new Lane(client, target, 'up'), new Lane(target, client, 'down')];
    this.#conns.add(conn);
    for (const lane of conn.lanes) {
      lane.src.on('data', (buf: Buffer) => {
        lane.queue.push({ kind: 'data', buf, at: performance.now() });
        lane.queued += buf.length;
        if (lane.queued > HIGH_WATER) lane.src.pause();
        void this.#pump(conn, lane);
      });
      lane.src.on('end', () => {
        lane.queue.push({ kind: 'end' });
        void this.#pump(conn, lane);
      });
      // A close without a clean end (reset, killed peer): pass the reset on, in order.
      lane.src.on('close', () => {
        if (lane.src.readableEnded) return;
        lane.queue.push({ kind: 'reset' });
        void this.#pump(conn, lane);
      });
      lane.src.on('error', () => {});
    }
    const finish = () => {
      if (client.destroyed && target.destroyed) this.#conns.delete(conn);
    };
    client.on('close', finish);
    target.on('close', finish);
  }

  #kill(c: Conn): void {
    if (c.dead) return;
    c.dead = true;
    this.resets++;
    for (const l of c.lanes) {
      l.queue.length = 0;
      l.queued = 0;
    }
    for (const s of [c.client, c.target]) {
      if (s.destroyed) continue;
      // RST, not FIN: the peers see the connection cut, as on a real link failure.
      if (s.readyState === 'open' || s.readyState === 'readOnly' || s.readyState === 'writeOnly') s.resetAndDestroy();
      else s.destroy();
    }
    this.#conns.delete(c);
  }

  /** Wait for a mode change, or `ms` (whichever first). */
  #changed(ms?: number): Promise<void> {
    return new Promise<void>((resolve) => {
      let t: NodeJS.Timeout | undefined;
      const done = () => {
        if (t) clearTimeout(t);
        this.#wakers.delete(done);
        resolve();
      };
      this.#wakers.add(done);
      if (ms !== undefined) t = setTimeout(done, Math.max(0, ms));
    });
  }

  async #pump(c: Conn, lane: Lane): Promise<void> {
    if (lane.running) return;
    lane.running = true;
    try {
      while (lane.queue.length > 0 && !c.dead) {
        const m = this.#mode;
        if (m.stall || c.frozen) {
          await this.#changed();
          continue;
        }
        // A held connection (reset mode, limit already reached) is cut at its first byte.
        if (this.#resetAt !== undefined && this.up >= this.#resetAt) {
          this.#kill(c);
          return;
        }
        const item = lane.queue[0];
        if (item.kind === 'end') {
          lane.queue.shift();
          lane.dst.end();
          continue;
        }
        if (item.kind === 'reset') {
          this.#kill(c);
          return;
        }
        const now = performance.now();
        if (m.delayMs && now < item.at + m.delayMs) {
          await this.#changed(item.at + m.delayMs - now);
          continue;
        }
        let n = item.buf.length;
        if (m.bytesPerSecond) {
          if (now < lane.nextSendAt) {
            await this.#changed(lane.nextSendAt - now);
            continue;
          }
          // Pieces of about 1/50 s keep the pacing smooth.
          n = Math.min(n, Math.max(1024, Math.floor(m.bytesPerSecond / 50)));
          lane.nextSendAt = Math.max(lane.nextSendAt, now) + (n / m.bytesPerSecond) * 1000;
        }
        let cut = false;
        if (lane.dir === 'up' && this.#resetAt !== undefined && this.up + n >= this.#resetAt) {
          n = this.#resetAt - this.up;
          cut = true;
        }
        const piece = item.buf.subarray(0, n);
        if (n === item.buf.length) lane.queue.shift();
        else item.buf = item.buf.subarray(n);
        lane.queued -= n;
        if (lane.dir === 'up') this.up += n;
        else this.down += n;
        if (lane.queued <= HIGH_WATER / 2 && lane.src.isPaused() && !lane.src.destroyed) lane.src.resume();
        if (cut) {
          // Let the last bytes reach the kernel before the reset.
          if (n > 0) await new Promise<void>((r) => lane.dst.write(piece, () => r()));
          this.#kill(c);
          return;
        }
        if (n > 0 && !lane.dst.destroyed && !lane.dst.write(piece)) {
          await new Promise<void>((r) => {
            const go = () => {
              lane.dst.off('drain', go);
              lane.dst.off('close', go);
              r();
            };
            lane.dst.on('drain', go);
            lane.dst.on('close', go);
          });
        }
      }
    } finally {
      lane.running = false;
    }
    // Items may have arrived while the last write was awaited.
    if (lane.queue.length > 0 && !c.dead) void this.#pump(c, lane);
  }
}
