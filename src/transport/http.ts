// Small shared pieces of ferry's HTTP: bounded body reading, error mapping
// between FerryError and HTTP responses, and the route names.
import { testKnobs } from '../core/test-knobs.ts';
import { ERRORS, FerryError, asFerryError, isErrorCode, isFerryError, type FerryErrorJSON } from '../core/errors.ts';
import { releaseAfterAnswer } from '../replication/protocol.ts';

export const ROUTES = {
  hello: '/v1/replication/hello',
  missing: (vol: string) => `/v1/replication/${encodeURIComponent(vol)}/missing`,
  objects: (vol: string) => `/v1/replication/${encodeURIComponent(vol)}/objects`,
  commit: (vol: string) => `/v1/replication/${encodeURIComponent(vol)}/commit`,
  ping: '/v1/ping',
  dr: (op: string) => `/v1/dr/${op}`,
  /** a paired peer reads this site's event history (`ferry events --site`): read-only, bounded */
  siteEvents: '/v1/site/events',
};

/**
 * Read a whole body of at most `limit` bytes. On refusal the source is not
 * destroyed (as `for await` would do on a throw): a destroyed HTTP/2 stream is
 * reset and the peer would never see the error answer. It is closed once the
 * answer is out (releaseAfterAnswer).
 */
export async function readBody(source: AsyncIterable<Buffer | Uint8Array>, limit: number, what: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  const it = source[Symbol.asyncIterator]();
  for (;;) {
    const r = await it.next();
    if (r.done) break;
    const p = r.value;
    n += p.byteLength;
    if (n > limit) {
      releaseAfterAnswer(source);
      throw new FerryError('PROTOCOL', `${what} exceeds ${limit} bytes`);
    }
    parts.push(Buffer.from(p.buffer, p.byteOffset, p.byteLength));
  }
  return Buffer.concat(parts);
}

export function httpStatusFor(err: FerryError): number {
  switch (err.kind) {
    case 'usage':
      return ERRORS[err.code].exit === 3 ? 404 : 400;
    case 'conflict':
      return 409;
    case 'transient':
      return 503;
    case 'corrupt':
      return 422;
    default:
      return err.code === 'NOT_AUTHORIZED' || err.code === 'PEER_UNTRUSTED' ? 403 : err.code === 'PROTOCOL' || err.code === 'FORMAT_VERSION' ? 400 : 500;
  }
}

export function errorBody(err: unknown): { status: number; body: string } {
  const fe = asFerryError(err, { brief: true });
  return { status: httpStatusFor(fe), body: JSON.stringify({ error: fe.toJSON() }) };
}

/** Rebuild a FerryError from a peer's JSON error (unknown codes become PROTOCOL). */
export function errorFromBody(status: number, body: Buffer, peer: string): FerryError {
  try {
    const j = JSON.parse(body.toString('utf8')) as { error?: FerryErrorJSON };
    if (j.error && isErrorCode(j.error.code) && typeof j.error.message === 'string') {
      return new FerryError(j.error.code, `${peer}: ${j.error.message.slice(0, 2000)}`, { details: j.error.details });
    }
  } catch {
    // fall through
  }
  return new FerryError(status >= 500 ? 'PEER_UNREACHABLE' : 'PROTOCOL', `${peer} answered HTTP ${status}: ${body.toString('utf8').slice(0, 300)}`);
}

/** A long answer (see KEEPALIVE_HEADER), `{"result": ...}` or `{"error": ...}` after keepalive spaces: the result's JSON, or the error. */
export function parseLongAnswer(buf: Buffer, peer: string): Buffer | FerryError {
  let j: { result?: unknown; error?: unknown } | undefined;
  try {
    j = JSON.parse(buf.toString('utf8')) as { result?: unknown; error?: unknown };
  } catch {
    j = undefined;
  }
  // a peer may send anything: only an object is an answer ('result' in "a" would throw)
  const o = j !== null && typeof j === 'object' && !Array.isArray(j) ? j : undefined;
  if (o && 'result' in o) return Buffer.from(JSON.stringify(o.result));
  return errorFromBody(o && 'error' in o ? 500 : 502, buf, peer);
}

/**
 * Long answers (a commit applies a whole snapshot; DR calls run workflows): a
 * client that sends this request header lets the server answer 200 at once,
 * send a space every keepaliveMs() while it works (JSON allows leading
 * whitespace; the client's stall watchdog sees bytes moving), then
 * `{"result": ...}` or `{"error": ...}`. The server echoes the header.
 */
export const KEEPALIVE_HEADER = 'ferry-keepalive';
export const keepaliveMs = (): number => testKnobs().keepaliveMs ?? 10_000; // shorter only as a test knob (core/test-knobs.ts)

/** HOST:PORT of a listen address (an IPv6 host in brackets), checked. */
export function splitHostPort(listen: string): [string, string] {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(listen);
  if (!m || Number(m[2]) > 65535) throw new FerryError('USAGE', `--listen takes HOST:PORT (e.g. 127.0.0.1:7420, or port 0 for any), got ${listen}`);
  return [m[1].replace(/^\[|\]$/g, ''), m[2]];
}
