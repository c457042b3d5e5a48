// The web dashboard: one self-contained page (dashboard-page.html) and a
// read-only JSON API under /ui/ on the daemon's peer port, answered before
// the paired-peer check (a browser presents no site certificate). Access:
// a client on a loopback address may read it; anyone else needs the token in
// <home>/dashboard.token (Authorization: Bearer, or ?token= on the page,
// which sets an HttpOnly cookie). This module owns the access decision, the
// token file, the API's JSON shapes and the lag history; it must never
// change the site's state: every route only reads the catalog and the engine.
import http2 from 'node:http2';
import { isIP } from 'node:net';
import { createHash, randomBytes, timingSafeEqual, X509Certificate } from 'node:crypto';
import { chmodSync, linkSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FerryError, wrapIoError } from '../core/errors.ts';
import type { DaemonInfo } from './daemon.ts';
import type { Engine } from '../site/engine.ts';
import { openPeerSession, presentedSiteId } from '../transport/http2-connection.ts';
import { errorBody, ROUTES } from '../transport/http.ts';
import { formatSiteId, type SiteIdentity } from '../transport/identity.ts';
import { type Mirror, type MirrorStatus } from '../site/mirrors.ts';
import { statusReport } from './ops.ts';
import { type Peer } from '../site/peers.ts';
import { FERRY_VERSION, type Site } from '../site/site.ts';
import { listMirrors } from '../catalog/mirrors.ts';
import { listPeers } from '../catalog/peers.ts';
import { baseMoves, recentEvents } from '../catalog/events.ts';
import { listSnapshots, snapshotById } from '../catalog/snapshots.ts';

/** true for every path the dashboard answers (the daemon routes these before the peer check) */
export function isDashboardPath(path: string): boolean {
  return path === '/ui' || path.startsWith('/ui/') || path.startsWith('/ui?');
}

// ---------------------------------------------------------------- the token

export const TOKEN_FILE = 'dashboard.token';
const TOKEN_BYTES = 32;
const TOKEN_RE = /^[A-Za-z0-9_-]{32,256}$/;

export function tokenPath(home: string): string {
  return join(home, TOKEN_FILE);
}

/**
 * The dashboard token of the site at `home`: read from its file, or (with `create`) made on
 * first use. It is written beside and hard-linked into place, so a reader never sees a
 * half-written file and two processes creating it at once agree on one token.
 */
export function dashboardToken(home: string, opts: { create: boolean }): string | undefined {
  const path = tokenPath(home);
  const read = (): string | undefined => {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new FerryError('IO', `cannot read the dashboard token ${path}: ${(err as Error).message}`, { cause: err });
    }
    const t = text.trim();
    if (!TOKEN_RE.test(t)) throw new FerryError('CONFIG_INVALID', `${path} does not hold a dashboard token (32 or more characters of A-Z a-z 0-9 _ -); delete it and run \`ferry dashboard\` to make a new one`);
    return t;
  };
  const existing = read();
  if (existing || !opts.create) return existing;
  const token = randomBytes(TOKEN_BYTES).toString('base64url');
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    writeFileSync(tmp, token + '\n', { mode: 0o600, flag: 'wx' });
    chmodSync(tmp, 0o600);
    try {
      linkSync(tmp, path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  } catch (err) {
    throw wrapIoError(err, `cannot create the dashboard token ${path}`, { writing: true });
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      // never written
    }
  }
  return read();
}

/** Equal tokens, compared in time independent of where they differ (hashes first: equal lengths). */
export function tokensEqual(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

// ---------------------------------------------------------------- access

export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const a = address.toLowerCase().replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '');
  return a === '::1' || (isIP(a) === 4 && a.startsWith('127.'));
}

/**
 * A loopback client passes without a token only if it asked for this host by an IP literal or a
 * `localhost` name: a page from another origin that rebinds its DNS name to 127.0.0.1 would send
 * its own name here, and needs the token like any remote client.
 */
export function isLocalAuthority(authority: string | undefined): boolean {
  if (!authority) return false;
  const m = /^(\[[^\]]+\]|[^:]+)(?::\d{1,5})?$/.exec(authority);
  if (!m) return false;
  const host = m[1].replace(/^\[|\]$/g, '').toLowerCase();
  return isIP(host) !== 0 || host === 'localhost' || host.endsWith('.localhost');
}

export interface AccessRequest {
  remoteAddress: string | undefined;
  /** the :authority (Host) the client asked for */
  authority: string | undefined;
  /** the Authorization header */
  authorization: string | undefined;
  /** the Cookie header(s) */
  cookie: string | undefined;
  /** ?token= on the URL (honoured on the page only) */
  queryToken: string | null;
}

export type AccessDecision =
  | { allowed: true; via: 'loopback' | 'bearer' | 'cookie' | 'query' }
  | { allowed: false; reason: string };

/**
 * Who may read the dashboard. `token` is called only when the client presented a credential, so
 * a loopback visit never creates the token file. A credential that does not match is refused,
 * except from a loopback client, which needs none.
 */
export function decideAccess(req: AccessRequest, cookieName: string, token: () => string | undefined): AccessDecision {
  const local = isLoopback(req.remoteAddress) && isLocalAuthority(req.authority);
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(req.authorization ?? '')?.[1];
  const cookie = cookieValue(req.cookie, cookieName);
  const presented: Array<['bearer' | 'query' | 'cookie', string]> = [];
  if (bearer) presented.push(['bearer', bearer]);
  if (req.queryToken) presented.push(['query', req.queryToken]);
  if (cookie) presented.push(['cookie', cookie]);
  if (presented.length > 0) {
    let t: string | undefined;
    try {
      t = token();
    } catch {
      t = undefined;
    }
    if (t) {
      for (const [via, value] of presented) if (tokensEqual(value, t)) return { allowed: true, via };
    }
  }
  if (local) return { allowed: true, via: 'loopback' };
  return { allowed: false, reason: presented.length ? 'the token does not match' : 'no token' };
}

export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(/;\s*/)) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

export function cookieNameFor(siteId: string): string {
  return `ferry_dashboard_${siteId.slice(0, 16).toLowerCase()}`;
}

export const UNAUTHORIZED_MESSAGE =
  'This ferry dashboard needs a token for browsers that are not on the site\'s own host.\n' +
  'On that host, run `ferry dashboard` (with the site\'s --home) and open the URL it prints;\n' +
  'API clients send the token as `Authorization: Bearer TOKEN`.\n';

// ---------------------------------------------------------------- lag history

export interface LagSeries {
  id: string;
  volume: string;
  peer: string;
  maxDelayS: number;
  /** [time ms, lag seconds]: a sawtooth, with two points at each instant the base moved */
  points: Array<[number, number]>;
}

/** Capture time of a snapshot: its catalog row, or (once deleted) the time in its ULID. */
function snapshotTime(site: Site, id: string | null | undefined): number | null {
  if (!id) return null;
  const row = snapshotById(site.catalog, id);
  if (row) return row.time;
  return ulidTime(id);
}

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

export function ulidTime(id: string): number | null {
  if (!/^[0-7][0-9A-HJKMNP-TV-Z]{25}$/i.test(id)) return null;
  let t = 0;
  for (const c of id.slice(0, 10).toUpperCase()) t = t * 32 + CROCKFORD.indexOf(c);
  return t;
}

const MAX_LAG_EVENTS = 2000;

/**
 * A mirror's lag over [from, now], rebuilt from the catalog: lag at instant t is t minus the
 * capture time of the base held then, and the base moves only at the events that record it
 * (`replication.update` ok or warning, `mirror.base`). So the history survives restarts and
 * costs nothing while nobody looks.
 */
export function lagHistory(site: Site, m: Pick<Mirror, 'id' | 'volume' | 'peer' | 'maxDelayS' | 'base' | 'createdAt'>, fromMs: number, nowMs: number): LagSeries {
  const from = Math.max(fromMs, m.createdAt);
  const rows = baseMoves(site.catalog, m.id, from, nowMs, MAX_LAG_EVENTS);
  const moves = rows.map((r) => {
    const d = JSON.parse(r.detail) as { base?: string | null; snapshot?: string; from?: string | null; to?: string };
    return r.kind === 'mirror.base' ? { at: r.at, before: d.from ?? null, after: d.to ?? null } : { at: r.at, before: d.base ?? null, after: d.snapshot ?? null };
  });
  const points: Array<[number, number]> = [];
  const push = (t: number, base: string | null) => {
    const bt = snapshotTime(site, base);
    if (bt !== null) points.push([t, Math.max(0, (t - bt) / 1000)]);
  };
  // The series starts where the oldest event it shows begins (or the window, when older ones were cut).
  const start = rows.length === MAX_LAG_EVENTS ? moves[0].at : from;
  push(start, moves.length ? moves[0].before : m.base);
  for (const mv of moves) {
    push(mv.at, mv.before);
    push(mv.at, mv.after);
  }
  push(nowMs, m.base);
  return { id: m.id, volume: m.volume, peer: m.peer, maxDelayS: m.maxDelayS, points };
}

// ---------------------------------------------------------------- peer reachability

export interface Reachability {
  reachable: boolean | null;
  checkedAt: number | null;
  rttMs: number | null;
  error: string | null;
}

const PING_EVERY_MS = 10_000;
const PING_TIMEOUT_MS = 5_000;

/** GET /v1/ping at a paired peer over mutual TLS, its certificate checked against the pinned id. */
export function pingPeer(ident: SiteIdentity, peer: Peer, timeoutMs = PING_TIMEOUT_MS, signal?: AbortSignal): Promise<number> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new Error('cancelled'));
    const started = performance.now();
    const { session, socket } = openPeerSession(ident, peer);
    let settled = false;
    const done = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      session.destroy();
      socket?.destroy();
      if (err) reject(err);
      else resolve(performance.now() - started);
    };
    const timer = setTimeout(() => done(new Error(`no answer within ${timeoutMs / 1000} s`)), timeoutMs);
    // A stopping daemon does not wait for a ping.
    const onAbort = () => done(new Error('cancelled'));
    signal?.addEventListener('abort', onAbort, { once: true });
    session.on('error', (err) => done(err));
    session.once('connect', () => {
      const id = presentedSiteId(session);
      if (id !== peer.id) return done(new Error(`it presented site id ${id || '(none)'}, but ${peer.name} is paired as ${peer.id}`));
      const req = session.request({ ':method': 'GET', ':path': ROUTES.ping });
      let status = 0;
      let body = '';
      req.setEncoding('utf8');
      req.on('response', (h) => (status = Number(h[':status'])));
      req.on('data', (d: string) => (body = (body + d).slice(0, 500)));
      req.on('error', (err) => done(err));
      req.on('end', () => (status === 200 ? done() : done(new Error(`answered HTTP ${status}: ${body}`))));
      req.end();
    });
  });
}

// ---------------------------------------------------------------- the routes

const PAGE = loadPage();

function loadPage(): { html: string; csp: string } {
  const html = readFileSync(new URL('./dashboard-page.html', import.meta.url), 'utf8');
  const hash = (s: string) => `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`;
  const scripts = [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => hash(m[1]));
  const styles = [...html.matchAll(/<style>([\s\S]*?)<\/style>/g)].map((m) => hash(m[1]));
  // Only this page's own inline script and style (by hash), and requests to this origin.
  const csp = [
    "default-src 'none'",
    `script-src ${scripts.join(' ')}`,
    `style-src ${styles.join(' ')}`,
    "connect-src 'self'",
    "img-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
  return { html, csp };
}

const FAVICON =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><path d="M1 11h14l-2 3H3z" fill="#2a6f97"/><path d="M4 10V5h6l2 5z" fill="#61a5c2"/></svg>';

const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'cache-control': 'no-store',
  'content-security-policy': PAGE.csp,
};

const MAX_EVENTS = 500;
const MAX_SNAPSHOTS = 1000;
const DEFAULT_LAG_WINDOW_S = 3600;

type Answer = { status: number; type: string; body: string; headers?: Record<string, string> };

const json = (v: unknown, status = 200): Answer => ({ status, type: 'application/json; charset=utf-8', body: JSON.stringify(v) });
const text = (status: number, body: string): Answer => ({ status, type: 'text/plain; charset=utf-8', body });

export class Dashboard {
  readonly engine: Engine;
  readonly #daemonInfo: () => DaemonInfo | undefined;
  readonly #reach = new Map<string, Reachability & { pinging: boolean }>();
  readonly #stop = new AbortController();

  constructor(engine: Engine, daemonInfo: () => DaemonInfo | undefined = () => undefined) {
    this.engine = engine;
    this.#daemonInfo = daemonInfo;
  }

  /** Answer one /ui/ stream (access check, route, security headers). Never throws. */
  handle(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    stream.on('error', () => {});
    let answer: Answer;
    let head = false;
    try {
      const method = String(headers[':method'] ?? '');
      head = method === 'HEAD';
      const url = new URL(String(headers[':path'] ?? '/ui/'), 'https://dashboard.invalid');
      const site = this.engine.site;
      const cookieName = cookieNameFor(site.id);
      const isPage = url.pathname === '/ui/' || url.pathname === '/ui';
      const access = decideAccess(
        {
          remoteAddress: stream.session?.socket?.remoteAddress,
          authority: String(headers[':authority'] ?? headers.host ?? ''),
          authorization: headers.authorization,
          cookie: Array.isArray(headers.cookie) ? headers.cookie.join('; ') : headers.cookie,
          queryToken: isPage ? url.searchParams.get('token') : null,
        },
        cookieName,
        () => dashboardToken(site.paths.home, { create: true }),
      );
      if (!access.allowed) answer = text(401, UNAUTHORIZED_MESSAGE);
      else if (method !== 'GET' && method !== 'HEAD') answer = { ...text(405, 'the dashboard is read-only: GET only\n'), headers: { allow: 'GET, HEAD' } };
      else if (isPage && url.searchParams.has('token')) {
        // The token leaves the URL (history, screenshots) for a cookie only this origin's pages send.
        answer = { ...text(303, 'see /ui/\n'), headers: { location: '/ui/' } };
        if (access.via === 'query') answer.headers!['set-cookie'] = `${cookieName}=${url.searchParams.get('token')}; Path=/ui; HttpOnly; Secure; SameSite=Strict`;
      } else answer = this.#route(url);
    } catch (err) {
      const { status, body } = errorBody(err);
      answer = { status, type: 'application/json; charset=utf-8', body };
    }
    if (stream.destroyed || stream.closed) return;
    try {
      stream.respond({ ':status': answer.status, 'content-type': answer.type, ...SECURITY_HEADERS, ...answer.headers });
      stream.end(head ? undefined : answer.body);
    } catch {
      // the browser went away
    }
  }

  #route(url: URL): Answer {
    const site = this.engine.site;
    switch (url.pathname) {
      case '/ui':
        return { ...text(308, 'see /ui/\n'), headers: { location: '/ui/' } };
      case '/ui/':
        return { status: 200, type: 'text/html; charset=utf-8', body: PAGE.html };
      case '/ui/favicon.svg':
        return { status: 200, type: 'image/svg+xml', body: FAVICON };
      case '/ui/api/status':
        return json(this.status());
      case '/ui/api/events': {
        const limit = boundedInt(url.searchParams.get('limit'), 50, 1, MAX_EVENTS);
        return json(this.events(limit, url.searchParams.get('volume')));
      }
      case '/ui/api/snapshots': {
        const volume = url.searchParams.get('volume');
        if (!volume) throw new FerryError('USAGE', 'say which volume: /ui/api/snapshots?volume=NAME');
        return json(this.snapshots(volume));
      }
      case '/ui/api/lag': {
        const seconds = boundedInt(url.searchParams.get('seconds'), DEFAULT_LAG_WINDOW_S, 10, 30 * 86400);
        const now = site.clock.now();
        return json({ now, from: now - seconds * 1000, mirrors: listMirrors(site.catalog).map((m) => lagHistory(site, m, now - seconds * 1000, now)) });
      }
      default:
        return text(404, `no dashboard page ${url.pathname.slice(0, 200)}\n`);
    }
  }

  /** Everything the page shows but snapshots, events and lag history. */
  status(): Record<string, unknown> {
    const report = statusReport(this.engine) as { volumes: Array<{ mirrors: MirrorStatus[] } & Record<string, unknown>>; peers: Peer[] } & Record<string, unknown>;
    const identity = this.engine.identity;
    return {
      ...report,
      site: { ...(report.site as object), fingerprint: new X509Certificate(identity.certPem).fingerprint256 },
      peers: report.peers.map((p) => ({ ...p, idFormatted: formatSiteId(p.id), ...this.#reachability(p) })),
      volumes: report.volumes.map((v) => ({
        ...v,
        // As the source sees it: the replica shows a complete snapshot once a base exists, except
        // while the destination applies the next one (the commit phase of a transfer).
        mirrors: v.mirrors.map((m) => ({ ...m, consistent: m.base !== null && m.progress?.phase !== 'committing' })),
      })),
      daemon: this.#daemonInfo() ?? null,
      dashboard: { pollMs: 1000, lagWindowS: DEFAULT_LAG_WINDOW_S },
      version: FERRY_VERSION,
    };
  }

  events(limit: number, volume: string | null): Array<Record<string, unknown>> {
    const rows = recentEvents(this.engine.site.catalog, limit, volume);
    return rows.map((r) => ({ ...r, detail: JSON.parse(r.detail) as unknown }));
  }

  snapshots(volume: string): Record<string, unknown> {
    const all = listSnapshots(this.engine.site.catalog, volume);
    const shown = all.slice(-MAX_SNAPSHOTS).reverse();
    return {
      volume,
      total: all.length,
      snapshots: shown.map((s) => ({ id: s.id, name: s.name, time: s.time, origin: s.origin, parent: s.parent, holds: s.holds, bytes: typeof s.stats.bytes === 'number' ? s.stats.bytes : null })),
    };
  }

  /** The last ping's outcome; a new ping starts in the background when that one is stale. */
  #reachability(p: Peer): Reachability {
    let r = this.#reach.get(p.id);
    if (!r) this.#reach.set(p.id, (r = { reachable: null, checkedAt: null, rttMs: null, error: null, pinging: false }));
    const now = Date.now();
    if (!this.#stop.signal.aborted && !r.pinging && (r.checkedAt === null || now - r.checkedAt >= PING_EVERY_MS)) {
      r.pinging = true;
      const entry = r;
      pingPeer(this.engine.identity, p, PING_TIMEOUT_MS, this.#stop.signal).then(
        (rtt) => Object.assign(entry, { reachable: true, rttMs: Math.round(rtt * 10) / 10, error: null }),
        (err: Error) => Object.assign(entry, { reachable: false, rttMs: null, error: err.message.slice(0, 300) }),
      ).finally(() => Object.assign(entry, { pinging: false, checkedAt: Date.now() }));
    }
    return { reachable: r.reachable, checkedAt: r.checkedAt, rttMs: r.rttMs, error: r.error };
  }

  /** Cancel pings in flight (the daemon is stopping). */
  close(): void {
    this.#stop.abort();
  }
}

function boundedInt(v: string | null, dflt: number, min: number, max: number): number {
  if (v === null || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n)) throw new FerryError('USAGE', `expected a whole number, got ${JSON.stringify(v.slice(0, 40))}`);
  return Math.min(max, Math.max(min, n));
}
