// Busy-retry: a request the peer refused for its memory budget (PEER_BUSY: the
// streams of this connection, or of all its peers, hold too much) is sent
// again once the other requests on the wire of this connection have finished,
// after a pause that doubles: at most BUSY_RETRIES times, then the refusal
// stands (it is transient: the mirror job retries later, resuming). A buffer
// body is sent again as it is; a stream only where it can resume where the
// peer stopped (StreamBody.resume: a put resumes at the refused object).
// Wraps any PeerConnection (connection.ts); composed by compose.ts.
import { setTimeout as sleep } from 'node:timers/promises';
import { backoffMs, type BackoffPolicy, type Random } from '../core/backoff.ts';
import { FerryError } from '../core/errors.ts';
import { around, type PeerConnection, type RequestBody } from './connection.ts';

export const BUSY_RETRIES = 6;
/** The pause before each retry of a refused request: 100 ms, doubling, with jitter (core/backoff.ts). */
export const BUSY_RETRY: BackoffPolicy = { baseMs: 100, maxMs: 3_200, jitter: 0.2 };

function canResend(body: RequestBody, refusal: FerryError): boolean {
  if (Buffer.isBuffer(body)) return true;
  return body.resume ? body.resume(refusal) : false;
}

export function withBusyRetry(inner: PeerConnection, o: { retries?: number; policy?: BackoffPolicy; random?: Random } = {}): PeerConnection {
  const retries = o.retries ?? BUSY_RETRIES;
  const policy = o.policy ?? BUSY_RETRY;
  const random = o.random ?? Math.random;
  return around(inner, async (req, ro = {}) => {
    for (let n = 0; ; n++) {
      try {
        return await inner.request(req, ro);
      } catch (err) {
        if (!(err instanceof FerryError) || err.code !== 'PEER_BUSY' || n >= retries || !canResend(req.body, err)) throw err;
        // The stream budget at the peer is what this connection's requests hold: wait for the others
        // on the wire first. A refused request is not on the wire, so two never wait for each other.
        await inner.quiet();
        try {
          await sleep(backoffMs(n + 1, policy, random), undefined, { signal: ro.signal });
        } catch {
          throw new FerryError('TRANSFER_INTERRUPTED', `request to ${inner.peer.name} was cancelled`);
        }
      }
    }
  });
}
