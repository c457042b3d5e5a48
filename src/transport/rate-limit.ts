// Rate limiting: the bytes of every streamed request body (the objects of a
// put) go through a token bucket (replication/token-bucket.ts), so a mirror's
// bandwidth limit paces what it puts on the wire; the JSON calls around them
// are not paced. Wraps any PeerConnection (connection.ts); composed by
// compose.ts, with one bucket per connection asked for with a limit (one
// mirror update's).
import type { TokenBucket } from '../replication/token-bucket.ts';
import { around, type PeerConnection } from './connection.ts';

export function withRateLimit(inner: PeerConnection, bucket: TokenBucket): PeerConnection {
  return around(inner, (req, o = {}) => {
    const body = req.body;
    if (Buffer.isBuffer(body)) return inner.request(req, o);
    const stream = body;
    async function* paced(): AsyncGenerator<Buffer> {
      for await (const part of stream.frames()) {
        await bucket.take(part.length, o.signal);
        yield part;
      }
    }
    return inner.request({ ...req, body: { frames: paced, ...(stream.resume ? { resume: (refusal) => stream.resume!(refusal) } : {}) } }, o);
  });
}
