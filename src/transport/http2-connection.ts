// The plain HTTP/2 connection to a paired site (PeerConnection, connection.ts):
// one session, requests as bytes, nothing retried, nothing watched. Mutual
// TLS with this site's identity; the server's certificate must hash to the
// pinned site id, or the connection is dropped before any request is sent.
// What wraps it (stall watch, busy-retry, rate limit, faults) is compose.ts's.
import http2 from 'node:http2';
import { isIP } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import { FerryError } from '../core/errors.ts';
import { MAX_JSON_BYTES } from '../replication/protocol.ts';
import { errorFromBody, KEEPALIVE_HEADER, parseLongAnswer, readBody } from './http.ts';
import { siteIdFromCert, tlsOptionsFor, type SiteIdentity } from './identity.ts';
import type { Peer } from '../catalog/peers.ts';
import type { PeerConnection, PeerRequest, RequestOptions } from './connection.ts';

export const WINDOW_BYTES = 16 * 1024 * 1024;
const CONNECT_TIMEOUT_MS = 10_000;

/**
 * An HTTP/2 session to a paired peer over mutual TLS, presenting this site's
 * certificate. TLS itself trusts nothing: the caller checks, on 'connect',
 * that presentedSiteId(session) is the peer's pinned id before any request.
 */
export function openPeerSession(ident: SiteIdentity, peer: Peer, settings?: http2.Settings): { session: http2.ClientHttp2Session; socket: TLSSocket | undefined } {
  const url = new URL(peer.url);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  let socket: TLSSocket | undefined;
  const session = http2.connect(peer.url, {
    ...(settings ? { settings } : {}),
    createConnection: () =>
      (socket = tls.connect({
        ...tlsOptionsFor(ident),
        host,
        port: Number(url.port || 443),
        ALPNProtocols: ['h2'],
        ...(isIP(host) ? {} : { servername: host }),
        rejectUnauthorized: false, // trust is the pinned fingerprint, checked on connect
        checkServerIdentity: () => undefined,
      })),
  });
  return { session, socket };
}

/** The site id of the certificate the other end of a connected session presented ('' if none or unreadable). */
export function presentedSiteId(session: http2.ClientHttp2Session): string {
  try {
    const cert = (session.socket as TLSSocket).getPeerCertificate(true);
    return cert?.raw ? siteIdFromCert(cert.raw) : '';
  } catch {
    return '';
  }
}

export class Http2Connection implements PeerConnection {
  readonly peer: Peer;
  readonly #ident: SiteIdentity;
  #session: http2.ClientHttp2Session | undefined;
  #ready: Promise<http2.ClientHttp2Session> | undefined;
  /** each session's socket: http2 only lends it behind a proxy that forbids destroy() */
  readonly #sockets = new WeakMap<http2.ClientHttp2Session, TLSSocket>();
  /** requests on the wire (quiet() waits for these) */
  readonly #onWire = new Set<Promise<unknown>>();

  constructor(ident: SiteIdentity, peer: Peer) {
    this.#ident = ident;
    this.peer = peer;
  }

  #connect(): Promise<http2.ClientHttp2Session> {
    if (this.#session && !this.#session.closed && !this.#session.destroyed) return Promise.resolve(this.#session);
    if (this.#ready) return this.#ready;
    this.#ready = new Promise<http2.ClientHttp2Session>((resolve, reject) => {
      const { session, socket } = openPeerSession(this.#ident, this.peer, { initialWindowSize: WINDOW_BYTES });
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
        const id = presentedSiteId(session);
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

  request(req: PeerRequest, o: RequestOptions = {}): Promise<Buffer> {
    const p = this.#sendOnce(req, o);
    this.#onWire.add(p);
    const done = () => this.#onWire.delete(p);
    p.then(done, done);
    return p;
  }

  async quiet(): Promise<void> {
    await Promise.allSettled([...this.#onWire]);
  }

  async #sendOnce(r: PeerRequest, o: RequestOptions): Promise<Buffer> {
    const { path, body, contentType } = r;
    const { signal, onMoved } = o;
    const session = await this.#connect();
    session.ref();
    try {
      return await new Promise<Buffer>((resolve, reject) => {
        const req = session.request({ ':method': 'POST', ':path': path, 'content-type': contentType, [KEEPALIVE_HEADER]: '1' });
        let settled = false;
        const fail = (err: FerryError) => {
          if (settled) return;
          settled = true;
          req.close(http2.constants.NGHTTP2_CANCEL);
          reject(err);
        };
        const onAbort = () => fail(new FerryError('TRANSFER_INTERRUPTED', `request to ${this.peer.name} was cancelled`));
        if (signal?.aborted) return onAbort();
        signal?.addEventListener('abort', onAbort, { once: true });
        // Bytes moving either way are reported (the stall watch, stall-watch.ts, refreshes on them):
        // the request is on the wire from here.
        const moved = () => onMoved?.();
        moved();
        req.on('error', (err) => fail(new FerryError('TRANSFER_INTERRUPTED', `connection to ${this.peer.name} failed: ${err.message}`, { cause: err })));
        let status = 0;
        let long = false;
        req.on('response', (h) => {
          moved();
          status = Number(h[':status']);
          long = h[KEEPALIVE_HEADER] === '1';
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
            if (status === 200 && long) {
              const r = parseLongAnswer(buf, this.peer.name);
              if (Buffer.isBuffer(r)) resolve(r);
              else reject(r);
            } else if (status === 200) resolve(buf);
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
              for await (const part of body.frames()) {
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

  reset(): void {
    if (this.#session) this.#drop(this.#session);
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
