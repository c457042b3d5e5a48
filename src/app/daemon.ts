// `ferry serve`: the site's daemon. Two listeners:
// - the peer API: HTTP/2 over mutual TLS on --listen. A peer is whoever
//   presents a certificate whose fingerprint is a paired site id; anyone
//   else gets PEER_UNTRUSTED before any route runs. Bodies are bounded:
//   JSON to 1 MiB, id lists to 64 Ki ids, object streams to one object at a
//   time (64 MiB at most).
//   The read-only web dashboard (/ui/, app/dashboard.ts) shares the port and
//   is routed before that check: loopback clients, or the dashboard token.
// - the local API: HTTP/1.1 on a Unix socket in the site home (mode 0600),
//   used by the CLI while the daemon holds the site.
// It also runs the engine's scheduler, and on SIGTERM stops taking work,
// cancels transfers (what arrived is kept, so they resume), and closes.
import http from 'node:http';
import http2 from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { chmodSync, existsSync, renameSync, unlinkSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { FerryError, asFerryError, wrapIoError } from '../core/errors.ts';
import { decodeIds, decodeObjectStream, encodeBitmap, MAX_IDS_PER_QUERY, MAX_JSON_BYTES, MAX_OBJECT_BYTES, parseJson, releaseAfterAnswer } from '../replication/protocol.ts';
import type { HelloRequest, CommitRequest } from '../replication/types.ts';
import { WINDOW_BYTES } from '../transport/http2-connection.ts';
import { STALL_TIMEOUT_MS } from '../transport/stall-watch.ts';
import type { Engine } from '../site/engine.ts';
import { errorBody, KEEPALIVE_HEADER, keepaliveMs, readBody, ROUTES, splitHostPort } from '../transport/http.ts';
import { testKnobs } from '../core/test-knobs.ts';
import { siteIdFromCert, tlsOptionsFor } from '../transport/identity.ts';
import { runOp, serveDr } from './ops.ts';
import { renderMetrics, RuntimeProbe } from './metrics.ts';
import { Dashboard, isDashboardPath } from './dashboard.ts';
import { parseEventQuery, queryEvents } from '../site/log.ts';
import { StreamBudget, type StreamAccount } from '../transport/stream-budget.ts';
import { findPeerById } from '../catalog/peers.ts';
import { memory } from '../core/memory.ts';

export { daemonInfoPath, socketPath, type DaemonInfo } from '../site/home.ts';
import { daemonInfoPath, socketPath, type DaemonInfo } from '../site/home.ts';

/** How long a stopping daemon lets open peer streams finish before cutting them. */
const STOP_GRACE_MS = 2_000;

export class Daemon {
  readonly engine: Engine;
  #peerServer: http2.Http2SecureServer | undefined;
  #localServer: http.Server | undefined;
  #metricsServer: http.Server | undefined;
  #sessions = new Set<http2.ServerHttp2Session>();
  /** bytes the peers' streams hold, per connection and in all (stream-budget.ts): set by start(), from the memory budget in force then */
  streamBudget = new StreamBudget();
  /** the peers' sockets: http2 lends them only behind a proxy that forbids destroy() */
  #sockets = new Set<TLSSocket>();
  info: DaemonInfo | undefined;
  /** the web dashboard under /ui/: answered before the peer check (browsers present no site certificate) */
  readonly #dashboard: Dashboard;
  /** the process and Node runtime figures of /metrics (the event loop's delay is sampled while the daemon runs) */
  readonly #runtime = new RuntimeProbe();

  constructor(engine: Engine) {
    this.engine = engine;
    this.#dashboard = new Dashboard(engine, () => this.info);
  }

  async start(listen: string): Promise<DaemonInfo> {
    // The peers' streams: the memory budget's stream share for all of them (at least one object of
    // the largest size, so no object is refused forever), unless a test knob sets the budgets.
    const k = testKnobs();
    const limit = Math.max(memory.share('stream').limit, MAX_OBJECT_BYTES);
    this.streamBudget = new StreamBudget({ sessionLimit: k.sessionBudgetBytes ?? limit, daemonLimit: k.daemonBudgetBytes ?? limit });
    memory.observe('stream', () => {
      const st = this.streamBudget.stats();
      return { limit: st.daemonLimit, used: st.held, peak: st.peak };
    });
    const site = this.engine.site;
    const [host, portStr] = splitHostPort(listen);
    const server = http2.createSecureServer({
      ...tlsOptionsFor(this.engine.identity),
      requestCert: true,
      rejectUnauthorized: false, // trust is the pinned fingerprint, checked per session
      allowHTTP1: false,
      // A stream buffers at most one object (64 MiB). Capping streams per connection with
      // maxConcurrentStreams made clients' early streams fail with REFUSED_STREAM (they open
      // them before seeing the server's settings): a byte budget across streams is still to do.
      settings: { initialWindowSize: WINDOW_BYTES },
      maxSessionMemory: 64,
    });
    server.on('secureConnection', (socket: TLSSocket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
    server.on('session', (session) => {
      this.#sessions.add(session);
      session.on('close', () => this.#sessions.delete(session));
      session.on('error', () => {});
      try {
        session.setLocalWindowSize(WINDOW_BYTES);
      } catch {
        // session already closing
      }
    });
    server.on('stream', (stream, headers) => {
      void this.#handlePeer(stream, headers);
    });
    server.on('tlsClientError', () => {});
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new FerryError('IO', `cannot listen on ${listen}: ${err.message}`, { cause: err })));
      server.listen(Number(portStr), host, () => resolve());
    });
    this.#peerServer = server;
    const port = (server.address() as { port: number }).port;

    const sock = socketPath(site.paths.home);
    if (existsSync(sock)) unlinkSync(sock); // we hold the site lock: any socket here is stale
    const local = http.createServer((req, res) => void this.#handleLocal(req, res));
    await new Promise<void>((resolve, reject) => {
      local.once('error', reject);
      local.listen(sock, () => resolve());
    });
    chmodSync(sock, 0o600);
    this.#localServer = local;
    this.info = { pid: process.pid, socket: sock, listen: `${host}:${port}`, port, startedAt: Date.now() };
    // Written beside and renamed: a reader never sees a half-written file.
    const infoPath = daemonInfoPath(site.paths.home);
    try {
      writeFileSync(`${infoPath}.tmp`, JSON.stringify(this.info) + '\n', { mode: 0o600 });
      renameSync(`${infoPath}.tmp`, infoPath);
    } catch (err) {
      rmSync(`${infoPath}.tmp`, { force: true });
      throw wrapIoError(err, `writing ${infoPath}`, { writing: true });
    }
    this.#runtime.start();
    site.event({ kind: 'daemon.start', outcome: 'ok', detail: { ...this.info } });
    return this.info;
  }

  #peerOf(stream: http2.ServerHttp2Stream): string {
    const cert = (stream.session?.socket as TLSSocket | undefined)?.getPeerCertificate(true);
    const id = cert?.raw ? siteIdFromCert(cert.raw) : '';
    if (!id || !findPeerById(this.engine.site.catalog, id)) {
      throw new FerryError('PEER_UNTRUSTED', `site ${this.engine.site.name} does not know the site id ${id || '(no certificate)'}; pair it there first: \`ferry site add NAME URL --id ${id || '<id>'}\``);
    }
    return id;
  }

  async #handlePeer(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): Promise<void> {
    const reply = (status: number, body: Buffer | string, type = 'application/json') => {
      if (stream.destroyed || stream.closed) return;
      try {
        stream.respond({ ':status': status, 'content-type': type });
        stream.end(body);
      } catch {
        // the peer went away
      }
    };
    if (isDashboardPath(String(headers[':path'] ?? ''))) return this.#dashboard.handle(stream, headers);
    stream.on('error', () => {});
    let account: StreamAccount | undefined;
    try {
      const peer = this.#peerOf(stream);
      const path = String(headers[':path'] ?? '');
      if (headers[':method'] === 'GET' && path === ROUTES.ping) return reply(200, JSON.stringify({ site: this.engine.site.name, id: this.engine.site.id }));
      if (headers[':method'] !== 'POST') throw new FerryError('PROTOCOL', `unsupported method ${String(headers[':method'])}`);
      // What this stream may make us buffer, counted per connection and in all: a bounded body is
      // reserved whole, up front; an object stream as each object's header declares (decodeObjectStream).
      account = this.streamBudget.open(stream.session ?? stream);
      account.hold(path.endsWith('/objects') ? 0 : path.endsWith('/missing') ? MAX_IDS_PER_QUERY * 32 : MAX_JSON_BYTES);
      if (path === ROUTES.siteEvents) {
        const q = parseEventQuery(parseJson(await readBody(stream, MAX_JSON_BYTES, 'events query'), 'events query'));
        const site = this.engine.site;
        return reply(200, JSON.stringify({ site: site.name, id: site.id, ...queryEvents(site.catalog, site.clock.now(), q) }));
      }
      const long = headers[KEEPALIVE_HEADER] === '1';
      const dr = /^\/v1\/dr\/([a-z-]+)$/.exec(path);
      if (dr) {
        const body = parseJson(await readBody(stream, MAX_JSON_BYTES, dr[1]), dr[1]) as Record<string, unknown>;
        if (long) return replyLong(stream, () => serveDr(this.engine, peer, dr[1], body));
        return reply(200, JSON.stringify(await serveDr(this.engine, peer, dr[1], body)));
      }
      const rx = this.engine.receiverFor(peer);
      if (path === ROUTES.hello) {
        const body = parseJson(await readBody(stream, MAX_JSON_BYTES, 'hello'), 'hello');
        return reply(200, JSON.stringify(await rx.hello(body as HelloRequest)));
      }
      const m = /^\/v1\/replication\/([^/]+)\/(missing|objects|commit)$/.exec(path);
      if (!m) throw new FerryError('PROTOCOL', `no route ${path.slice(0, 200)}`);
      let volume: string;
      try {
        volume = decodeURIComponent(m[1]);
      } catch {
        throw new FerryError('PROTOCOL', 'the volume name in the URL is not valid percent-encoding');
      }
      switch (m[2]) {
        case 'missing': {
          const ids = decodeIds(await readBody(stream, MAX_IDS_PER_QUERY * 32, 'id list'));
          return reply(200, encodeBitmap(await rx.missing(volume, ids)), 'application/octet-stream');
        }
        case 'objects': {
          // Objects taken before a budget refusal are stored: the refusal says how many, so the peer resends from there.
          let received = 0;
          async function* counted<T>(objects: AsyncIterable<T>): AsyncGenerator<T> {
            for await (const o of objects) {
              yield o;
              received++;
            }
          }
          // A sender gone silent (a link that died without a reset reaching us) must not hold its
          // stream, and the objects it delivered unflushed, for ever: the put ends, and what arrived is kept.
          const stallMs = testKnobs().stallTimeoutMs ?? STALL_TIMEOUT_MS;
          stream.setTimeout(stallMs, () => stream.destroy(new FerryError('TRANSFER_INTERRUPTED', `no data from the peer for ${stallMs / 1000} s`)));
          try {
            // The stream holds what the decoder buffers plus what the receiver has taken and not yet
            // stored (objects being verified): one count against the budget. The receiver only takes
            // more while the budget allows; else it stores what it has first.
            const acct = account;
            let decoding = 0;
            let downstream = 0;
            const decoderHold = {
              hold(n: number) {
                acct.hold(n + downstream);
                decoding = n;
              },
            };
            const putHold = (n: number): boolean => {
              try {
                acct.hold(decoding + n);
              } catch (err) {
                if (err instanceof FerryError && err.code === 'PEER_BUSY') return false;
                throw err;
              }
              downstream = n;
              return true;
            };
            const r = await rx.put(volume, counted(decodeObjectStream(stream, { budget: decoderHold })), undefined, { hold: putHold });
            return reply(200, JSON.stringify(r));
          } catch (err) {
            if (err instanceof FerryError && err.code === 'PEER_BUSY') throw new FerryError('PEER_BUSY', err.message, { details: { ...err.details, received } });
            throw err;
          }
        }
        case 'commit': {
          const body = parseJson(await readBody(stream, MAX_JSON_BYTES, 'commit'), 'commit');
          // Applying a large snapshot takes minutes: keep the answer's stream alive meanwhile.
          if (long) return replyLong(stream, () => rx.commit(volume, body as CommitRequest));
          return reply(200, JSON.stringify(await rx.commit(volume, body as CommitRequest)));
        }
      }
    } catch (err) {
      const { status, body } = errorBody(err);
      reply(status, body);
      if (err instanceof FerryError && err.code === 'PEER_BUSY') {
        // Refused by the budget: the body is not read, so release the stream once the answer is out.
        releaseAfterAnswer(stream);
        const session = stream.session ?? stream;
        if (this.streamBudget.warnOnce(session)) {
          this.engine.site.event({ kind: 'peer.busy', outcome: 'warning', detail: { peer: peerIdOf(stream), message: err.message } });
        }
      }
      // A stranger gets its answer, then loses the connection: it must not hold streams open here.
      // (A paired peer refused one operation, also a 403, keeps its connection.)
      if (err instanceof FerryError && err.code === 'PEER_UNTRUSTED' && stream.session) {
        const session = stream.session;
        setTimeout(() => session.destroy(), 100).unref();
      }
    } finally {
      account?.close();
    }
  }

  async #handleLocal(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (req.method === 'GET' && req.url === '/metrics') return serveMetrics(this.engine, this.#runtime, res);
    // NDJSON: progress lines while the operation runs, then one result or error line.
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    await serveLocal(this.engine, req, (line) => res.write(line));
    res.end();
  }

  /** Plain HTTP for Prometheus (it cannot present a paired identity): GET /metrics only. */
  async startMetrics(listen: string): Promise<number> {
    const [host, port] = splitHostPort(listen);
    const server = http.createServer((req, res) => {
      if (req.method === 'GET' && req.url === '/metrics') return serveMetrics(this.engine, this.#runtime, res);
      res.writeHead(404).end('only GET /metrics here\n');
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new FerryError('IO', `cannot listen for metrics on ${listen}: ${err.message}`)));
      server.listen(Number(port), host, () => resolve());
    });
    this.#metricsServer = server;
    return (server.address() as { port: number }).port;
  }

  async stop(): Promise<void> {
    const site = this.engine.site;
    this.#dashboard.close();
    this.#runtime.stop();
    await this.engine.close();
    for (const s of this.#sessions) s.close();
    // A graceful close waits for every open stream, and a put from a peer whose link died
    // silently never ends: after a grace period, cut what is left (a cut put keeps what arrived).
    const cut = setTimeout(() => {
      // Destroying a session only ends its socket, and waits for the peer's end: destroy the sockets.
      for (const s of this.#sessions) s.destroy();
      for (const sock of this.#sockets) sock.destroy();
      this.#localServer?.closeAllConnections();
      this.#metricsServer?.closeAllConnections();
    }, STOP_GRACE_MS);
    await Promise.all([
      new Promise<void>((r) => (this.#peerServer ? this.#peerServer.close(() => r()) : r())),
      new Promise<void>((r) => (this.#localServer ? this.#localServer.close(() => r()) : r())),
      new Promise<void>((r) => (this.#metricsServer ? this.#metricsServer.close(() => r()) : r())),
    ]);
    clearTimeout(cut);
    for (const s of this.#sessions) s.destroy();
    rmSync(daemonInfoPath(site.paths.home), { force: true });
    rmSync(socketPath(site.paths.home), { force: true });
    site.event({ kind: 'daemon.stop', outcome: 'ok' });
  }
}

/**
 * One request of the local API (the CLI's, on the site's Unix socket): `POST /local/<operation>`
 * with a JSON body of arguments. Writes NDJSON lines: progress while the operation runs, then one
 * `{"result": ...}` or `{"error": ...}` line. Never throws.
 */
export async function serveLocal(engine: Engine, req: AsyncIterable<Buffer | Uint8Array> & { method?: string; url?: string }, write: (line: string) => void): Promise<void> {
  const line = (o: unknown) => write(JSON.stringify(o) + '\n');
  try {
    const m = /^\/local\/([a-z.-]+)$/.exec(req.url ?? '');
    if (req.method !== 'POST' || !m) throw new FerryError('USAGE', `no local operation ${req.url}`);
    const args = parseJson(await readBody(req, MAX_JSON_BYTES, 'request'), 'request') as Record<string, unknown>;
    let last = 0;
    const result = await runOp(
      {
        engine,
        daemon: true,
        progress: (p) => {
          const now = Date.now();
          if (now - last >= 200 || p.phase !== 'sending') {
            last = now;
            line({ progress: p });
          }
        },
      },
      m[1],
      args,
    );
    line({ result });
  } catch (err) {
    line({ error: asFerryError(err).toJSON() });
  }
}

/** Answer 200 now, a space every keepaliveMs() while `work` runs, then its result or error (see KEEPALIVE_HEADER). */
async function replyLong(stream: http2.ServerHttp2Stream, work: () => Promise<unknown>): Promise<void> {
  const open = () => !stream.destroyed && !stream.closed;
  try {
    stream.respond({ ':status': 200, 'content-type': 'application/json', [KEEPALIVE_HEADER]: '1' });
  } catch {
    return; // the peer went away
  }
  const beat = setInterval(() => {
    if (open()) stream.write(' ');
  }, keepaliveMs());
  let out: string;
  try {
    out = JSON.stringify({ result: await work() });
  } catch (err) {
    out = errorBody(err).body;
  } finally {
    clearInterval(beat);
  }
  if (open()) stream.end(out);
}

function serveMetrics(engine: Engine, runtime: RuntimeProbe, res: http.ServerResponse): void {
  try {
    const body = renderMetrics(engine, runtime);
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(body);
  } catch (err) {
    res.writeHead(500).end(`# metrics failed: ${(err as Error).message}\n`);
  }
}

/** The site id a stream's peer presented (for logs), or ''. */
function peerIdOf(stream: http2.ServerHttp2Stream): string {
  try {
    const cert = (stream.session?.socket as TLSSocket | undefined)?.getPeerCertificate(true);
    return cert?.raw ? siteIdFromCert(cert.raw) : '';
  } catch {
    return '';
  }
}
