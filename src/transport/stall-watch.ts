// The stall watch: a request that moves no byte either way for `ms` is ended
// (TRANSFER_INTERRUPTED, "stalled"), and its connection reset, so the next
// attempt connects afresh instead of queueing behind a dead link. Wraps any
// PeerConnection (connection.ts); composed by compose.ts.
//
// The timer is our own, refreshed whenever the connection under it reports
// bytes moving, not http2's stream timeout: http2 stream timers are unref'd,
// and once a session stops reading (waiting on the peer's flow-control window
// over a link that died silently) nothing else keeps the process alive: a CLI
// transfer would just exit, status 0, mid-request. It starts when the request
// is on the wire: connecting has its own limit (PEER_UNREACHABLE).
import { FerryError } from '../core/errors.ts';
import { around, type PeerConnection, type RequestOptions } from './connection.ts';

/** A request that moves no bytes for this long is treated as a stalled link. */
export const STALL_TIMEOUT_MS = 60_000;

export function withStallWatch(inner: PeerConnection, ms: number): PeerConnection {
  const name = inner.peer.name;
  return around(inner, (req, o: RequestOptions = {}) => {
    const cut = new AbortController();
    const onAbort = () => cut.abort(o.signal?.reason);
    if (o.signal?.aborted) onAbort();
    else o.signal?.addEventListener('abort', onAbort, { once: true });
    let watchdog: NodeJS.Timeout | undefined;
    return new Promise<Buffer>((resolve, reject) => {
      const moved = () => {
        o.onMoved?.();
        if (watchdog) watchdog.refresh();
        else
          watchdog = setTimeout(() => {
            reject(new FerryError('TRANSFER_INTERRUPTED', `${name} stalled: no data for ${ms / 1000} s`));
            cut.abort();
            inner.reset();
          }, ms);
      };
      inner.request(req, { signal: cut.signal, onMoved: moved }).then(resolve, reject);
    }).finally(() => {
      clearTimeout(watchdog);
      o.signal?.removeEventListener('abort', onAbort);
    });
  });
}
