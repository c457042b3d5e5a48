// The client of a paired site: the replication Receiver (hello, missing, put,
// commit), its event history, and JSON calls (DR: dr-client.ts), each encoded
// here and sent over one PeerConnection (connection.ts) as compose.ts puts it
// together: the plain HTTP/2 connection with its stall watch, busy-retry,
// rate limit and test faults around it.
import type { ObjectId } from '../core/ids.ts';
import type { FerryError } from '../core/errors.ts';
import { decodeBitmap, encodeIds, encodeObjectHeader, parseAnswer, parseCommitResponse, parseHelloResponse, parsePutResult, wirePayload, type WireObject } from '../replication/protocol.ts';
import type { CommitRequest, CommitResponse, HelloRequest, HelloResponse, PutResult, Receiver } from '../replication/types.ts';
import type { EventQuery, PeerEventsAnswer } from '../catalog/events.ts';
import type { Peer } from '../catalog/peers.ts';
import { ROUTES } from './http.ts';
import type { SiteIdentity } from './identity.ts';
import type { PeerConnection, StreamBody } from './connection.ts';
import { Http2Connection } from './http2-connection.ts';
import { composeConnection, type ComposeOptions } from './compose.ts';

const SLICE_BYTES = 256 * 1024;
/** Objects of a put already sent, kept so that a refused put resumes at the refused object. */
const RESEND_BYTES = 32 * 1024 * 1024;

/** The name of the call a route is (what a fault rule names): hello, missing, put, commit, events, dr.<op>. */
function callOf(path: string): string {
  if (path === ROUTES.siteEvents) return 'events';
  const dr = /^\/v1\/dr\/([\w-]+)$/.exec(path);
  if (dr) return `dr.${dr[1]}`;
  return /\/(hello|missing|objects|commit)$/.exec(path)?.[1]?.replace('objects', 'put') ?? path;
}

export class PeerClient implements Receiver {
  readonly peer: Peer;
  readonly #conn: PeerConnection;

  /** Over a connection composed here (compose.ts) from this site's identity, or over one given. */
  constructor(ident: SiteIdentity, peer: Peer, options?: ComposeOptions);
  constructor(conn: PeerConnection);
  constructor(a: SiteIdentity | PeerConnection, peer?: Peer, options: ComposeOptions = {}) {
    this.#conn = peer ? composeConnection(new Http2Connection(a as SiteIdentity, peer), options) : (a as PeerConnection);
    this.peer = this.#conn.peer;
  }

  #request(path: string, body: Buffer | StreamBody, contentType: string, signal?: AbortSignal): Promise<Buffer> {
    return this.#conn.request({ call: callOf(path), path, contentType, body }, { signal });
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
   * objects already sent are kept for that, the last RESEND_BYTES of them (busy-retry.ts asks
   * the body whether it can resume).
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
        // In slices, so that a slow link shows progress (the stall watch) within an object.
        for (const part of wirePayload(o)) for (let at = 0; at < part.length; at += SLICE_BYTES) yield part.subarray(at, at + SLICE_BYTES);
      }
    }
    const body: StreamBody = {
      frames: () => frames(from, ++current),
      resume: (err: FerryError) => {
        const received = Number(err.details?.received);
        if (!Number.isSafeInteger(received) || received < 0 || from + received > pulled) return false;
        from += received;
        total.received += received;
        total.stored += received;
        return from >= first;
      },
    };
    const buf = await this.#request(ROUTES.objects(volume), body, 'application/x-ferry-objects', signal);
    const r = parsePutResult(parseAnswer(buf, `${this.peer.name}'s answer to a put`));
    return { ...r, received: r.received + total.received, stored: r.stored + total.stored, bytes: r.bytes };
  }

  async commit(volume: string, req: CommitRequest, signal?: AbortSignal): Promise<CommitResponse> {
    return parseCommitResponse(await this.#json(ROUTES.commit(volume), req, signal));
  }

  close(): void {
    this.#conn.close();
  }
}
