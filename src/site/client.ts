// The HTTP/2 client to a paired site: a Receiver over the network. Mutual
// TLS with this site's identity; the server's certificate must hash to the
// pinned site id, or the connection is dropped before any request is sent.
import http2 from 'node:http2';
import { isIP } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import { FerryError } from '../core/errors.ts';
import type { ObjectId } from '../core/ids.ts';
import type { PreparedObject } from '../store/types.ts';
import { decodeBitmap, encodeIds, encodeObjectHeader, MAX_JSON_BYTES } from '../replication/protocol.ts';
import type { CommitRequest, CommitResponse, HelloRequest, HelloResponse, PutResult, Receiver } from '../replication/types.ts';
import { errorFromBody, readBody, ROUTES } from './http.ts';
import { siteIdFromCert, tlsOptionsFor, type SiteIdentity } from './identity.ts';
import type { Peer } from './peers.ts';

export const WINDOW_BYTES = 16 * 1024 * 1024;
const CONNECT_TIMEOUT_MS = 10_000;
/** A request that moves no bytes for this long is treated as a stalled link. */
export const STALL_TIMEOUT_MS = 60_000;
const SLICE_BYTES = 256 * 1024;

export class PeerClient implements Receiver {
  readonly peer: Peer;
  readonly #ident: SiteIdentity;
  #session: http2.ClientHttp2Session | undefined;
  #ready: Promise<http2.ClientHttp2Session> | undefined;
  /** each session's socket: http2 only lends it behind a proxy that forbids destroy() */
  readonly #sockets = new WeakMap<http2.ClientHttp2Session, TLSSocket>();
  readonly stallTimeoutMs: number;

  constructor(ident: SiteIdentity, peer: Peer, options: { stallTimeoutMs?: number } = {}) {
    this.#ident = ident;
    this.peer = peer;
    this.stallTimeoutMs = options.stallTimeoutMs ?? (Number(process.env.FERRY_STALL_TIMEOUT_MS) || STALL_TIMEOUT_MS); // env: a test hook
  }

  #connect(): Promise<http2.ClientHttp2Session> {
    if (this.#session && !this.#session.closed && !this.#session.destroyed) return Promise.resolve(this.#session);
    if (this.#ready) return this.#ready;
    this.#ready = new Promise<http2.ClientHttp2Session>((resolve, reject) => {
      const url = new URL(this.peer.url);
      const host = url.hostname.replace(/^\[|\]$/g, '');
      let socket: TLSSocket | undefined;
      const session = http2.connect(this.peer.url, {
        settings: { initialWindowSize: WINDOW_BYTES },
        createConnection: () =>
          (socket = tls.connect({
            ...tlsOptionsFor(this.#ident),
            host,
            port: Number(url.port || 443),
            ALPNProtocols: ['h2'],
            ...(isIP(host) ? {} : { servername: host }),
            rejectUnauthorized: false, // trust is the pinned fingerprint, checked below
            checkServerIdentity: () => undefined,
          })),
      });
      if (socket) this.#sockets.set(session, socket);
      const timer = setTimeout(() => {
        this.#drop(session);
        reject(new FerryError('PEER_UNREACHABLE', `${this.peer.name} (${this.peer.url}) did not answer within ${CONNECT_TIMEOUT_MS / 1000} s`));
      }, CONNECT_TIMEOUT_MS);
      session.once('error', (err) => {
        clearTimeout(timer);
        reject(new FerryError('PEER_UNREACHABLE', `cannot reach ${this.peer.name} at ${this.peer.url}: ${(err as Error).message}`, { cause: err }));
      });
      session.once('connect', () => {
        clearTimeout(timer);
        const cert = (session.socket as TLSSocket).getPeerCertificate(true);
        const id = cert?.raw ? siteIdFromCert(cert.raw) : '';
        if (id !== this.peer.id) {
          this.#drop(session);
          reject(new FerryError('PEER_UNTRUSTED', `${this.peer.url} presented site id ${id || '(none)'}, but ${this.peer.name} is paired as ${this.peer.id}; if the site was re-created, re-pair it (\`ferry site remove ${this.peer.name}\`, then \`ferry site add\`)`));
          return;
        }
        session.setLocalWindowSize(WINDOW_BYTES);
        session.on('error', () => {});
        session.unref();
        this.#session = session;
        resolve(session);
      });
    }).finally(() => {
      this.#ready = undefined;
    });
    return this.#ready;
  }

  async #request(path: string, body: Buffer | AsyncIterable<Buffer>, contentType: string, signal?: AbortSignal): Promise<Buffer> {
    const session = await this.#connect();
    session.ref();
    let watchdog: NodeJS.Timeout | undefined;
    try {
      return await new Promise<Buffer>((resolve, reject) => {
        const req = session.request({ ':method': 'POST', ':path': path, 'content-type': contentType });
        let settled = false;
        const fail = (err: FerryError) => {
          if (settled) return;
          settled = true;
          req.close(http2.constants.NGHTTP2_CANCEL);
          reject(err);
        };
        const onAbort = () => fail(new FerryError('TRANSFER_INTERRUPTED', `request to ${this.peer.name} was cancelled`));
        signal?.addEventListener('abort', onAbort, { once: true });
        // The stall watchdog is our own timer, refreshed whenever bytes move either way, not
        // req.setTimeout: http2 stream timers are unref'd, and once the session stops reading
        // (waiting on the peer's flow-control window over a link that died silently) nothing
        // else keeps the process alive: a CLI transfer would just exit, status 0, mid-request.
        // A stalled connection is useless for later requests too: it is destroyed, so the next
        // attempt connects afresh instead of queueing behind it.
        watchdog = setTimeout(() => {
          fail(new FerryError('TRANSFER_INTERRUPTED', `${this.peer.name} stalled: no data for ${this.stallTimeoutMs / 1000} s`));
          this.#drop(session);
        }, this.stallTimeoutMs);
        const moved = () => watchdog?.refresh();
        req.on('error', (err) => fail(new FerryError('TRANSFER_INTERRUPTED', `connection to ${this.peer.name} failed: ${err.message}`, { cause: err })));
        let status = 0;
        req.on('response', (h) => {
          moved();
          status = Number(h[':status']);
        });
        async function* answer(): AsyncGenerator<Buffer> {
          for await (const part of req) {
            moved();
            yield part as Buffer;
          }
        }
        readBody(answer(), 8 * MAX_JSON_BYTES, `answer from ${this.peer.name}`).then(
          (buf) => {
            signal?.removeEventListener('abort', onAbort);
            if (settled) return;
            settled = true;
            if (status === 200) resolve(buf);
            // The stream ended without response headers: the connection went away mid-request.
            else if (status === 0) reject(new FerryError('TRANSFER_INTERRUPTED', `connection to ${this.peer.name} closed before it answered`));
            else reject(errorFromBody(status, buf, this.peer.name));
          },
          (err) => fail(err instanceof FerryError ? err : new FerryError('TRANSFER_INTERRUPTED', `reading answer from ${this.peer.name}: ${(err as Error).message}`)),
        );
        if (Buffer.isBuffer(body)) req.end(body);
        else {
          (async () => {
            try {
              for await (const part of body) {
                if (settled) return;
                moved();
                if (!req.write(part)) {
                  await new Promise<void>((r) => {
                    const go = () => {
                      req.off('drain', go);
                      req.off('close', go);
                      r();
                    };
                    req.on('drain', go);
                    req.on('close', go);
                  });
                }
              }
              if (!settled) req.end();
            } catch (err) {
              fail(err instanceof FerryError ? err : new FerryError('TRANSFER_INTERRUPTED', `sending to ${this.peer.name}: ${(err as Error).message}`));
            }
          })();
        }
      });
    } finally {
      clearTimeout(watchdog);
      if (!session.destroyed) session.unref();
    }
  }

  /**
   * Forget a session that can no longer carry requests, and destroy its socket: http2's own
   * destroy() ends the socket gracefully, which waits for queued writes that a dead link
   * never takes, and the pending write would keep the process alive.
   */
  #drop(session: http2.ClientHttp2Session): void {
    if (this.#session === session) this.#session = undefined;
    session.destroy();
    this.#sockets.get(session)?.destroy();
  }

  async #json<T>(path: string, payload: unknown, signal?: AbortSignal): Promise<T> {
    const buf = await this.#request(path, Buffer.from(JSON.stringify(payload)), 'application/json', signal);
    return JSON.parse(buf.toString('utf8')) as T;
  }

  /** A JSON call to one of the peer's other routes (DR workflows). */
  call<T>(path: string, payload: unknown, signal?: AbortSignal): Promise<T> {
    return this.#json(path, payload, signal);
  }

  hello(req: HelloRequest, signal?: AbortSignal): Promise<HelloResponse> {
    return this.#json(ROUTES.hello, req, signal);
  }

  async missing(volume: string, ids: ObjectId[], signal?: AbortSignal): Promise<boolean[]> {
    const buf = await this.#request(ROUTES.missing(volume), encodeIds(ids), 'application/octet-stream', signal);
    return decodeBitmap(buf, ids.length);
  }

  async put(volume: string, objects: AsyncIterable<PreparedObject>, signal?: AbortSignal): Promise<PutResult> {
    async function* frames(): AsyncGenerator<Buffer> {
      for await (const o of objects) {
        yield encodeObjectHeader(o);
        const stored = Buffer.from(o.stored.buffer, o.stored.byteOffset, o.stored.byteLength);
        // In slices, so that a slow link shows progress (the stall watchdog) within an object.
        for (let at = 0; at < stored.length; at += SLICE_BYTES) yield stored.subarray(at, at + SLICE_BYTES);
      }
    }
    const buf = await this.#request(ROUTES.objects(volume), frames(), 'application/x-ferry-objects', signal);
    return JSON.parse(buf.toString('utf8')) as PutResult;
  }

  commit(volume: string, req: CommitRequest, signal?: AbortSignal): Promise<CommitResponse> {
    return this.#json(ROUTES.commit(volume), req, signal);
  }

  close(): void {
    const session = this.#session;
    this.#session = undefined;
    if (!session) return;
    session.close();
    // A graceful close that a dead link holds up is cut short.
    const socket = this.#sockets.get(session);
    if (socket && !socket.destroyed) {
      const t = setTimeout(() => socket.destroy(), 2_000).unref();
      socket.once('close', () => clearTimeout(t));
    }
  }
}
