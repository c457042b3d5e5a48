// The HTTP/2 client to a paired site: a Receiver over the network. Mutual
// TLS with this site's identity; the server's certificate must hash to the
// pinned site id, or the connection is dropped before any request is sent.
import { testKnobs } from '../core/test-knobs.ts';
import { backoffMs, type BackoffPolicy } from '../core/backoff.ts';
import http2 from 'node:http2';
import { isIP } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { FerryError } from '../core/errors.ts';
import type { ObjectId } from '../core/ids.ts';
import { decodeBitmap, encodeIds, encodeObjectHeader, MAX_JSON_BYTES, parseAnswer, parseCommitResponse, parseHelloResponse, parsePutResult, wirePayload, type WireObject } from '../replication/protocol.ts';
import type { CommitRequest, CommitResponse, HelloRequest, HelloResponse, PutResult, Receiver } from '../replication/types.ts';
import { errorFromBody, KEEPALIVE_HEADER, parseLongAnswer, readBody, ROUTES } from './http.ts';
import type { EventQuery, PeerEventsAnswer } from '../catalog/events.ts';
import { siteIdFromCert, tlsOptionsFor, type SiteIdentity } from './identity.ts';
import type { Peer } from '../catalog/peers.ts';

export const WINDOW_BYTES = 16 * 1024 * 1024;
const CONNECT_TIMEOUT_MS = 10_000;
/** A request that moves no bytes for this long is treated as a stalled link. */
export const STALL_TIMEOUT_MS = 60_000;
const SLICE_BYTES = 256 * 1024;
/**
 * A request the peer refused for its memory budget (PEER_BUSY: the streams of this connection, or
 * of all its peers, hold too much) is sent again once this client's other requests on the wire have
 * finished, after a pause that doubles: at most this many times, then the refusal stands (it is
 * transient: the mirror job retries later, resuming).
 */
const BUSY_RETRIES = 6;
/** The pause before each retry of a refused request: 100 ms, doubling, with jitter (core/backoff.ts). */
const BUSY_RETRY: BackoffPolicy = { baseMs: 100, maxMs: 3_200, jitter: 0.2 };
/** Objects of a put already sent, kept so that a refused put resumes at the refused object. */
const RESEND_BYTES = 32 * 1024 * 1024;

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

export class PeerClient implements Receiver {
  readonly peer: Peer;
  readonly #ident: SiteIdentity;
  #session: http2.ClientHttp2Session | undefined;
  #ready: Promise<http2.ClientHttp2Session> | undefined;
  /** each session's socket: http2 only lends it behind a proxy that forbids destroy() */
  readonly #sockets = new WeakMap<http2.ClientHttp2Session, TLSSocket>();
  readonly stallTimeoutMs: number;
  /** requests on the wire (not those waiting to retry): a refused request waits for these */
  readonly #onWire = new Set<Promise<unknown>>();

  constructor(ident: SiteIdentity, peer: Peer, options: { stallTimeoutMs?: number } = {}) {
    this.#ident = ident;
    this.peer = peer;
    this.stallTimeoutMs = options.stallTimeoutMs ?? testKnobs().stallTimeoutMs ?? STALL_TIMEOUT_MS;
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

  /** One request; a whole-buffer body is sent again when the peer is busy (see BUSY_RETRIES). */
  #request(path: string, body: Buffer | AsyncIterable<Buffer>, contentType: string, signal?: AbortSignal): Promise<Buffer> {
    if (!Buffer.isBuffer(body)) return this.#send(path, body, contentType, signal);
    return this.#retryBusy(() => this.#send(path, body, contentType, signal), signal);
  }

  /**
   * Runs `attempt` until it is not refused with PEER_BUSY (or `resume` says it cannot go on),
   * at most BUSY_RETRIES more times. The stream budget at the peer is what this connection's
   * requests hold: each retry waits for the others on the wire here to finish first. Only
   * requests on the wire are waited for (a refused one is not), so two refused requests never
   * wait for each other.
   */
  async #retryBusy<T>(attempt: () => Promise<T>, signal: AbortSignal | undefined, resume?: (err: FerryError) => boolean): Promise<T> {
    for (let n = 0; ; n++) {
      try {
        return await attempt();
      } catch (err) {
        if (!(err instanceof FerryError) || err.code !== 'PEER_BUSY' || n >= BUSY_RETRIES || (resume && !resume(err))) throw err;
        await Promise.allSettled([...this.#onWire]);
        try {
          await sleep(backoffMs(n + 1, BUSY_RETRY, Math.random), undefined, { signal });
        } catch {
          throw new FerryError('TRANSFER_INTERRUPTED', `request to ${this.peer.name} was cancelled`);
        }
      }
    }
  }

  #send(path: string, body: Buffer | AsyncIterable<Buffer>, contentType: string, signal?: AbortSignal): Promise<Buffer> {
    const p = this.#sendOnce(path, body, contentType, signal);
    this.#onWire.add(p);
    const done = () => this.#onWire.delete(p);
    p.then(done, done);
    return p;
  }

  async #sendOnce(path: string, body: Buffer | AsyncIterable<Buffer>, contentType: string, signal?: AbortSignal): Promise<Buffer> {
    const session = await this.#connect();
    session.ref();
    let watchdog: NodeJS.Timeout | undefined;
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
    return parseAnswer(buf, `${this.peer.name}'s answer to ${path}`) as T;
  }

  /** The peer's event history (it answers only paired sites, at most MAX_EVENTS_PER_CALL events a call). */
  events(query: EventQuery, signal?: AbortSignal): Promise<PeerEventsAnswer> {
    return this.#json(ROUTES.siteEvents, query, signal);
  }

  /** A JSON call to one of the peer's other routes (DR workflows). */
  call<T>(path: string, payload: unknown, signal?: AbortSignal): Promise<T> {
    return this.#json(path, payload, signal);
  }

  async hello(req: HelloRequest, signal?: AbortSignal): Promise<HelloResponse> {
    return parseHelloResponse(await this.#json(ROUTES.hello, req, signal));
  }

  async missing(volume: string, ids: ObjectId[], signal?: AbortSignal): Promise<boolean[]> {
    const buf = await this.#request(ROUTES.missing(volume), encodeIds(ids), 'application/octet-stream', signal);
    return decodeBitmap(buf, ids.length);
  }

  /**
   * Streams objects in one request. Refused for the peer's memory budget, it is sent again from
   * the refused object on (the refusal says how many were received, and those are stored): the
   * objects already sent are kept for that, the last RESEND_BYTES of them.
   */
  async put(volume: string, objects: AsyncIterable<WireObject>, signal?: AbortSignal): Promise<PutResult> {
    const source = objects[Symbol.asyncIterator]();
    const kept: WireObject[] = [];
    let keptBytes = 0;
    let first = 0; // index of kept[0] in the whole sequence
    let pulled = 0;
    let from = 0;
    let current = 0; // the attempt whose frames may pull from the source (an abandoned one stops)
    const total: PutResult = { received: 0, stored: 0, bytes: 0 };
    async function* frames(start: number, mine: number): AsyncGenerator<Buffer> {
      for (let i = start; ; i++) {
        if (mine !== current) return;
        let o: WireObject;
        if (i < pulled) o = kept[i - first];
        else {
          const r = await source.next();
          if (r.done) return;
          o = r.value;
          pulled++;
          kept.push(o);
          keptBytes += o.stored.byteLength;
          while (keptBytes > RESEND_BYTES && kept.length > 1) {
            keptBytes -= kept.shift()!.stored.byteLength;
            first++;
          }
        }
        yield encodeObjectHeader(o);
        // In slices, so that a slow link shows progress (the stall watchdog) within an object.
        for (const part of wirePayload(o)) for (let at = 0; at < part.length; at += SLICE_BYTES) yield part.subarray(at, at + SLICE_BYTES);
      }
    }
    const buf = await this.#retryBusy(
      () => this.#send(ROUTES.objects(volume), frames(from, ++current), 'application/x-ferry-objects', signal),
      signal,
      (err) => {
        const received = Number(err.details?.received);
        if (!Number.isSafeInteger(received) || received < 0 || from + received > pulled) return false;
        from += received;
        total.received += received;
        total.stored += received;
        return from >= first;
      },
    );
    const r = parsePutResult(parseAnswer(buf, `${this.peer.name}'s answer to a put`));
    return { ...r, received: r.received + total.received, stored: r.stored + total.stored, bytes: r.bytes };
  }

  async commit(volume: string, req: CommitRequest, signal?: AbortSignal): Promise<CommitResponse> {
    return parseCommitResponse(await this.#json(ROUTES.commit(volume), req, signal));
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
