// PeerConnection: the one interface every request to a paired site goes
// through, replication (hello, missing, put, commit) and DR (`/v1/dr/<op>`)
// alike. The plain HTTP/2 implementation is http2-connection.ts; busy-retry,
// rate limiting, the stall watch and fault injection are wrappers around it,
// one module each (busy-retry.ts, rate-limit.ts, stall-watch.ts, faults.ts),
// composed in one place (compose.ts). A wrapper knows requests as bytes and
// call names only: what a call means is client.ts's and dr-client.ts's.
import type { FerryError } from '../core/errors.ts';
import type { Peer } from '../catalog/peers.ts';

/**
 * A body sent as a stream, pulled afresh for each attempt. `resume`, asked after the peer refused
 * it for its memory budget (PEER_BUSY: the refusal says how much it took), says whether `frames()`
 * can start again where the peer stopped; without it a refused stream is not sent again.
 */
export interface StreamBody {
  frames(): AsyncIterable<Buffer>;
  resume?(refusal: FerryError): boolean;
}

/** A whole buffer (sent again as it is when refused) or a stream. */
export type RequestBody = Buffer | StreamBody;

export interface PeerRequest {
  /** what the call is (hello, missing, put, commit, events, dr.<op>): what a fault rule names */
  call: string;
  path: string;
  contentType: string;
  body: RequestBody;
}

export interface RequestOptions {
  signal?: AbortSignal;
  /** called when the request is on the wire, then whenever bytes move either way (the stall watch) */
  onMoved?: () => void;
}

export interface PeerConnection {
  readonly peer: Peer;
  /** One request; its answer's body (a 200), or the peer's error as a FerryError. */
  request(req: PeerRequest, o?: RequestOptions): Promise<Buffer>;
  /** Settles once every request on the wire now has (a refused request waits for these before it is sent again). */
  quiet(): Promise<void>;
  /** Forget the session, destroying it: the next request connects afresh (a stalled or cut link). */
  reset(): void;
  close(): void;
}

/** A wrapper's view of the connection it wraps: everything but `request` passes through. */
export function around(inner: PeerConnection, request: PeerConnection['request']): PeerConnection {
  return {
    peer: inner.peer,
    request,
    quiet: () => inner.quiet(),
    reset: () => inner.reset(),
    close: () => inner.close(),
  };
}

/** The body as one stream of frames (a buffer is one frame). */
export function framesOf(body: RequestBody): AsyncIterable<Buffer> {
  if (!Buffer.isBuffer(body)) return body.frames();
  return (async function* () {
    yield body;
  })();
}
