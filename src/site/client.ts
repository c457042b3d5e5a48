// The HTTP/2 client to a paired site: a Receiver over the network. Mutual
// TLS with this site's identity; the server's certificate must hash to the
// pinned site id, or the connection is dropped before any request is sent.
import http2 from 'node:http2';
import type { TLSSocket } from 'node:tls';
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

export class PeerClient implements Receiver {
  readonly peer: Peer;
  readonly #ident: SiteIdentity;
  #session: http2.ClientHttp2Session | undefined;
  #ready: Promise<http2.ClientHttp2Session> | undefined;
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
      const session = http2.connect(this.peer.url, {
        ...tlsOptionsFor(this.#ident),
        rejectUnauthorized: false, // trust is the pinned fingerprint, checked below
        checkServerIdentity: () => undefined,
        settings: { initialWindowSize: WINDOW_BYTES },
      });
      const timer = setTimeout(() => {
        session.destroy();
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
          session.destroy();
          reject(new FerryError('PEER_UNTRUSTED', `${this.peer.url} presented site id ${id || '(none)'}, but ${this.peer.name} is paired as ${this.peer.id}; if the site was re-created, re-pair it (\`ferry site remove ${this.peer.name}\`, then \`ferry site add\`)`));
          return;
        }
        session.setLocalWindowSize(WINDOW_BYTES);
        if (process.env.FDBG) process.on('beforeExit', () => { const so: any = session.socket; process.stderr.write(`SESSION state=${JSON.stringify(session.state)} closed=${session.closed} destroyed=${session.destroyed} sock.writableLength=${so?.writableLength} bytesWritten=${so?.bytesWritten} reading=${so?._handle?.reading} sockDestroyed=${so?.destroyed} pendingWrites=${so?._pendingData ? 'yes' : 'no'} \n`); });
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
    if (process.env.FDBG) process.stderr.write(`DBG ${path} REF\n`);
    try {
      return await new Promise<Buffer>((resolve, reject) => {
        const req = session.request({ ':method': 'POST', ':path': path, 'content-type': contentType });
        const D = (m: string) => process.env.FDBG && process.stderr.write(`DBG ${path} ${m}\n`);
        D('start');
        req.on('close', () => D('close'));
        req.on('error', (e) => D('error ' + e.message));
        req.on('aborted', () => D('aborted'));
        req.on('end', () => D('end'));
        session.on('close', () => D('session close'));
        session.on('error', (e) => D('session error ' + e.message));
        session.socket?.on('close', () => D('socket close'));
        let settled = false;
        const fail = (err: FerryError) => {
          if (settled) return;
          settled = true;
          req.close(http2.constants.NGHTTP2_CANCEL);
          reject(err);
        };
        const onAbort = () => fail(new FerryError('TRANSFER_INTERRUPTED', `request to ${this.peer.name} was cancelled`));
        signal?.addEventListener('abort', onAbort, { once: true });
        req.setTimeout(this.stallTimeoutMs, () => fail(new FerryError('TRANSFER_INTERRUPTED', `${this.peer.name} stalled: no data for ${this.stallTimeoutMs / 1000} s`)));
        req.on('error', (err) => fail(new FerryError('TRANSFER_INTERRUPTED', `connection to ${this.peer.name} failed: ${err.message}`, { cause: err })));
        let status = 0;
        req.on('response', (h) => {
          status = Number(h[':status']);
        });
        readBody(req, 8 * MAX_JSON_BYTES, `answer from ${this.peer.name}`).then(
          (buf) => {
            signal?.removeEventListener('abort', onAbort);
            if (settled) return;
            settled = true;
            if (status === 200) resolve(buf);
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
                if (!req.write(part)) { D('wait drain'); await new Promise<void>((r) => req.once('drain', r)); }
              }
              req.end();
            } catch (err) {
              fail(err instanceof FerryError ? err : new FerryError('TRANSFER_INTERRUPTED', `sending to ${this.peer.name}: ${(err as Error).message}`));
            }
          })();
        }
      });
    } finally {
      if (process.env.FDBG) process.stderr.write(`DBG ${path} UNREF destroyed=${session.destroyed}\n`);
      if (!session.destroyed) session.unref();
    }
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
        yield Buffer.from(o.stored.buffer, o.stored.byteOffset, o.stored.byteLength);
      }
    }
    const buf = await this.#request(ROUTES.objects(volume), frames(), 'application/x-ferry-objects', signal);
    return JSON.parse(buf.toString('utf8')) as PutResult;
  }

  commit(volume: string, req: CommitRequest, signal?: AbortSignal): Promise<CommitResponse> {
    return this.#json(ROUTES.commit(volume), req, signal);
  }

  close(): void {
    this.#session?.close();
    this.#session = undefined;
  }
}
