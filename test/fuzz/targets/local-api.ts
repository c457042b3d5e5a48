// Fuzz target for the local API (src/app/daemon.ts serveLocal, src/app/ops.ts):
// a request as the daemon's Unix socket receives it (method, URL, JSON body),
// run in-process against a real site in a temporary directory. Every answer
// must end in one result or one error line, and no error may be INTERNAL
// (an exception the operation did not expect: a TypeError from an argument
// of the wrong shape, say). URLs under /v1/dr/ are a paired peer's DR calls
// (serveDr, as the daemon's peer port routes them), against a volume this
// site holds as that peer's secondary.
//
// The operations act for real, so the arguments are fenced in before they
// run: paths on disk are mapped into the sandbox, hook commands become
// `true`, peer URLs point at a closed local port, config.apply is a dry run.
// What is fenced is still validated first where a validator exists (the URL
// parser runs on the original value).
import { PROTOCOL_VERSION } from '../../../src/replication/types.ts';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ERRORS, FerryError, type ErrorCode } from '../../../src/core/errors.ts';
import { serveLocal } from '../../../src/app/daemon.ts';
import { Engine } from '../../../src/site/engine.ts';
import { Dashboard, isDashboardPath } from '../../../src/app/dashboard.ts';
import { OPS, serveDr } from '../../../src/app/ops.ts';
import { parseJson } from '../../../src/replication/protocol.ts';
import { addPeer, parsePeerUrl } from '../../../src/site/peers.ts';
import type { Receiver } from '../../../src/replication/types.ts';
import { Site } from '../../../src/site/site.ts';
import { createSnapshot } from '../../../src/site/snapshots.ts';
import { createMirror } from '../../../src/site/mirrors.ts';
import { createVolume, parseMemberSpec } from '../../../src/site/volumes.ts';
import { FuzzViolation, type FuzzTarget } from '../engine.ts';
import { findPeerById } from '../../../src/catalog/peers.ts';

/** A paired peer that is never reachable: its URL is a closed local port. */
const PEER_ID = 'A'.repeat(52);
const DEAD_URL = 'https://127.0.0.1:9';

/** The replication side of that peer: every call fails as an unreachable peer's would. */
const unreachable = new Proxy({} as Receiver, {
  get: () => async () => {
    throw new FerryError('PEER_UNREACHABLE', 'fuzz: the peer is never reachable');
  },
});

let sandbox: string | undefined;
let engine: Engine | undefined;

function dir(...parts: string[]): string {
  if (!sandbox) throw new Error('local-api target used without setup');
  return join(sandbox, ...parts);
}

/** A name that stays one path component: no '/', no NUL, never '.' or '..'. */
function component(s: string): string {
  const c = s.replace(/[/\0]/g, '_').slice(0, 100);
  return c === '' || c === '.' || c === '..' ? `_${c}` : c;
}

/** A member spec `[NAME=][tree:|image:]PATH` with its path moved under the sandbox's data directory. */
function fenceMember(spec: unknown): unknown {
  if (typeof spec !== 'string') return spec;
  const m = /^((?:[^=/]+=)?(?:tree:|image:)?)(.*)$/s.exec(spec)!;
  return `${m[1]}${dir('data', component(m[2]))}`;
}

/** Arguments made safe to run: see the top of the file. */
function fence(op: string, body: unknown): unknown {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return body;
  const a = { ...(body as Record<string, unknown>) };
  if (typeof a.url === 'string') {
    try {
      parsePeerUrl(a.url);
    } catch (err) {
      if (!(err instanceof FerryError)) throw err;
    }
    a.url = DEAD_URL;
  }
  if (typeof a.target === 'string') a.target = dir('restore', component(a.target));
  if (op.startsWith('link.') && typeof a.path === 'string') a.path = dir('links', component(a.path));
  if (Array.isArray(a.members)) a.members = a.members.map(fenceMember);
  if (op === 'config.apply') a.dryRun = true;
  delete a.wait;
  const hooks = a.hooks;
  if (hooks !== null && typeof hooks === 'object' && !Array.isArray(hooks)) {
    const h = { ...(hooks as Record<string, unknown>) };
    for (const [k, v] of Object.entries(h)) {
      if (v !== null && typeof v === 'object' && typeof (v as { command?: unknown }).command === 'string' && (v as { command: string }).command.trim()) h[k] = { ...v, command: 'true' };
    }
    a.hooks = h;
  }
  return a;
}

interface Request {
  method: string;
  url: string;
  body: Buffer;
}

const OP_NAMES = Object.keys(OPS);

/** The request an input stands for: `{method, url, body}` as JSON, or else raw bytes as the body of some operation. */
function requestOf(input: Buffer): Request {
  let doc: unknown;
  try {
    doc = JSON.parse(input.toString('utf8'));
  } catch {
    doc = undefined;
  }
  if (doc !== null && typeof doc === 'object' && !Array.isArray(doc) && typeof (doc as { url?: unknown }).url === 'string') {
    const d = doc as { method?: unknown; url: string; body?: unknown };
    const op = /^\/(?:local|v1\/dr)\/(.*)$/.exec(d.url)?.[1] ?? '';
    const body = fence(op, d.body);
    let text: string;
    try {
      text = body === undefined ? '' : JSON.stringify(body);
    } catch {
      text = `${'['.repeat(10_000)}${']'.repeat(10_000)}`; // nested too deep to write again: a deep body of nothing
    }
    return { method: typeof d.method === 'string' ? d.method : 'POST', url: d.url, body: Buffer.from(text) };
  }
  return { method: 'POST', url: `/local/${OP_NAMES[input.length % OP_NAMES.length]}`, body: input };
}

async function* chunksOf(b: Buffer): AsyncGenerator<Buffer> {
  for (let at = 0; at < b.length; at += 16384) yield b.subarray(at, at + 16384);
}

const SEEDS: Array<{ url: string; body: unknown }> = [
  { url: '/local/status', body: {} },
  { url: '/local/volume.create', body: { name: 'v2', members: ['b', 'm=tree:c'], hooks: { pre: { command: 'x', timeout: 30 } }, retention: { last: 3 } } },
  { url: '/local/volume.set', body: { name: 'vol', retention: { daily: 2 } } },
  { url: '/local/volume.remove', body: { name: 'v2', force: true } },
  { url: '/local/snapshot.create', body: { volume: 'vol', name: 'n1' } },
  { url: '/local/snapshot.delete', body: { volume: 'vol', snapshots: ['n1'], dryRun: true } },
  { url: '/local/snapshot.peers', body: { volume: 'vol' } },
  { url: '/local/snapshot.peer-delete', body: { volume: 'vol', snapshot: 'n1', dryRun: true } },
  { url: '/local/gc', body: { dryRun: true } },
  { url: '/local/verify', body: { volume: 'vol' } },
  { url: '/local/restore', body: { volume: 'vol', snapshot: 'first', target: 'r1', path: 'f' } },
  { url: '/local/site.add', body: { name: 'p2', url: 'https://example.org:7420', id: 'B'.repeat(52) } },
  { url: '/local/site.list', body: {} },
  { url: '/local/site.remove', body: { name: 'p2' } },
  { url: '/local/mirror.create', body: { volume: 'vol', to: 'peer:remote', scheduleS: 900, minDelayS: 0, maxDelayS: 3600, bandwidth: 1000000, keep: 3 } },
  { url: '/local/mirror.list', body: { volume: 'vol' } },
  { url: '/local/mirror.update', body: { volume: 'vol', to: 'peer', force: true } },
  { url: '/local/mirror.pause', body: { volume: 'vol', to: 'peer' } },
  { url: '/local/mirror.resume', body: { volume: 'vol', to: 'peer' } },
  { url: '/local/mirror.remove', body: { volume: 'vol', to: 'peer' } },
  { url: '/local/failover', body: { volume: 'vol', dryRun: true } },
  { url: '/local/failback', body: { volume: 'vol', dryRun: true } },
  { url: '/local/migrate', body: { volume: 'vol', to: 'peer', dryRun: true } },
  { url: '/local/link.create', body: { path: 'l1', volume: 'vol', scheduleS: 3600 } },
  { url: '/local/link.refresh', body: { path: 'l1' } },
  { url: '/local/link.list', body: {} },
  { url: '/local/link.remove', body: { path: 'l1' } },
  { url: '/local/config.apply', body: { text: 'version: 1\nvolumes:\n  vol:\n    members: [/srv/x]\n', file: 'site.yaml', dryRun: true } },
  { url: '/local/mirror.repoint', body: { volume: 'vol', to: 'peer' } },
  { url: '/local/nope', body: {} },
  { url: '/v1/dr/failover-notice', body: { volume: 'rep' } },
  { url: '/v1/dr/state', body: { volume: 'rep', base: null } },
  { url: '/v1/dr/changes', body: { volume: 'rep', base: '01JGFJJZ000000000000000000' } },
  { url: '/v1/dr/peer-delete', body: { volume: 'rep', snapshot: '01JGFJJZ000000000000000000' } },
  { url: '/v1/dr/repoint', body: { volume: 'rep', newSource: 'B'.repeat(52), newSourceVolume: 'src' } },
  { url: '/v1/dr/takeover', body: { volume: 'rep', newSourceVolume: 'src', snapshots: ['01JGFJJZ000000000000000000'], oldSource: null, oldSourceVolume: null } },
  { url: '/v1/dr/takeover-notice', body: { volume: 'rep', by: 'B'.repeat(52) } },
  { url: '/v1/dr/migrate-accept', body: { volume: 'rep', final: '01JGFJJZ000000000000000000', backTo: 'src', schedule: { scheduleS: 900, minDelayS: 0, maxDelayS: 3600, bandwidth: null }, others: [] } },
  { url: '/v1/dr/failback', body: { volume: 'vol', to: 'rep', base: null, full: false, schedule: { scheduleS: null, minDelayS: 0, maxDelayS: 3600, bandwidth: null } } },
];

const KEYS = [
  'name', 'members', 'hooks', 'pre', 'post', 'command', 'timeout', 'retention', 'last', 'daily', 'secondary', 'force', 'volume', 'snapshots', 'snapshot', 'dryRun', 'member', 'path',
  'target', 'noOwner', 'url', 'id', 'to', 'scheduleS', 'minDelayS', 'maxDelayS', 'bandwidth', 'keep', 'full', 'repoint', 'keepData', 'text', 'file', 'prune', 'peer', 'wait', 'body', 'method',
  ...OP_NAMES.map((o) => `/local/${o}`), 'vol', 'peer', 'first', '../x', 'rep', 'base', 'final', 'backTo', 'others', 'newSource', 'newSourceVolume', 'oldSource', 'by', 'schedule',
].map((k) => Buffer.from(k));

/** The site every input runs against, made once per run (and a volume held as the peer's secondary). */
async function openSandbox(): Promise<Engine> {
  sandbox = mkdtempSync(join(tmpdir(), 'ferry-fuzz-local-'));
  for (const d of ['data/a', 'data/b', 'data/c', 'restore', 'links']) mkdirSync(dir(d), { recursive: true });
  writeFileSync(dir('data/a/f'), 'hello');
  writeFileSync(dir('data/img'), Buffer.alloc(8192, 1));
  const site = Site.init(dir('home'), 'fuzz');
  engine = new Engine(site, { connect: () => unreachable });
  createVolume(site, 'vol', { members: [parseMemberSpec(dir('data/a'))] });
  await createSnapshot(site, 'vol', { name: 'first', pool: engine.pool });
  addPeer(site, 'peer', DEAD_URL, PEER_ID);
  createMirror(site, { volume: 'vol', to: 'peer', scheduleS: null, bandwidth: null, keepSnapshots: null });
  // a volume held as that peer's secondary, for its DR calls
  await engine.receiverFor(PEER_ID).hello({ protocol: PROTOCOL_VERSION, sourceVolume: 'src', volume: 'rep', members: [{ name: 'data', kind: 'tree' }] });
  return engine;
}

async function closeSandbox(): Promise<void> {
  const e = engine;
  engine = undefined;
  if (e) {
    await e.close();
    e.site.close();
  }
  if (sandbox) rmSync(sandbox, { recursive: true, force: true });
  sandbox = undefined;
}

export const localApiTarget: FuzzTarget = {
  name: 'local-api',
  about: 'the daemon\'s local API in-process (serveLocal: URL, body, every operation\'s arguments) against a real site',
  codes: (Object.keys(ERRORS) as ErrorCode[]).filter((c) => c !== 'INTERNAL'),
  kind: 'json',
  maxLength: 256 * 1024,
  dictionary: KEYS,
  timeoutMs: 20_000,
  memoryAllowance: 256 * 1024 * 1024,
  seeds: () => SEEDS.map((s) => Buffer.from(JSON.stringify({ method: 'POST', ...s }))),
  async setup() {
    await openSandbox();
  },
  teardown: closeSandbox,
  async run(input) {
    if (!engine) throw new Error('local-api target used without setup');
    const r = requestOf(input);
    const dr = /^\/v1\/dr\/([a-z-]+)$/.exec(r.url);
    if (dr) {
      // The daemon answers a DR call only from a paired peer: pair it again if an earlier input removed it.
      if (!findPeerById(engine.site.catalog, PEER_ID)) addPeer(engine.site, `peer-${Date.now().toString(36)}`, DEAD_URL, PEER_ID);
      return serveDr(engine, PEER_ID, dr[1], parseJson(r.body, dr[1]) as Record<string, unknown>);
    }
    const lines: string[] = [];
    await serveLocal(engine, Object.assign(chunksOf(r.body), { method: r.method, url: r.url }), (l) => lines.push(l));
    const all = lines.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { progress?: unknown; result?: unknown; error?: { code: ErrorCode; message: string } });
    const last = all.at(-1);
    if (!last || all.slice(0, -1).some((m) => !('progress' in m))) throw new FuzzViolation('the answer does not end in exactly one result or error line');
    if ('result' in last) return last.result;
    if (!last.error) throw new FuzzViolation('the last line is neither a result nor an error');
    if (last.error.code === 'INTERNAL') {
      const e = new Error(last.error.message.split('\n')[0]);
      e.stack = last.error.message;
      throw e;
    }
    throw new FerryError(last.error.code, last.error.message);
  },
};

// ---- the dashboard: the /ui/ routes of the peer port, before any peer check

interface UiRequest {
  method?: unknown;
  path?: unknown;
  remote?: unknown;
  authority?: unknown;
  authorization?: unknown;
  cookie?: unknown;
}

const UI_SEEDS: UiRequest[] = [
  { method: 'GET', path: '/ui/', remote: '127.0.0.1' },
  { method: 'GET', path: '/ui', remote: '::1' },
  { method: 'HEAD', path: '/ui/api/status', remote: '127.0.0.1' },
  { method: 'GET', path: '/ui/api/events?limit=5&volume=vol', remote: '127.0.0.1' },
  { method: 'GET', path: '/ui/api/snapshots?volume=vol', remote: '127.0.0.1' },
  { method: 'GET', path: '/ui/api/lag?seconds=60', remote: '127.0.0.1' },
  { method: 'GET', path: '/ui/?token=abc', remote: '10.1.2.3', authority: 'site.example:7420' },
  { method: 'GET', path: '/ui/api/status', remote: '10.1.2.3', authorization: 'Bearer abc', cookie: 'ferry-ui=abc' },
  { method: 'POST', path: '/ui/api/status', remote: '127.0.0.1' },
  { method: 'GET', path: '/ui/favicon.svg', remote: '127.0.0.1' },
];

/** The few parts of an HTTP/2 stream the dashboard touches: what it answers is recorded. */
function fakeStream(remote: unknown): { stream: never; answer: { status?: number; body?: string } } {
  const answer: { status?: number; body?: string } = {};
  const stream = {
    destroyed: false,
    closed: false,
    session: { socket: { remoteAddress: typeof remote === 'string' ? remote : undefined } },
    on: () => stream,
    respond: (h: Record<string, unknown>) => {
      answer.status = Number(h[':status']);
    },
    end: (b?: string) => {
      answer.body = b;
    },
  };
  return { stream: stream as never, answer };
}

let dashboard: Dashboard | undefined;

export const dashboardTarget: FuzzTarget = {
  name: 'dashboard',
  about: 'the web dashboard\'s request handling (Dashboard.handle: path, query, method, access headers) on a real site',
  codes: [],
  kind: 'json',
  maxLength: 16 * 1024,
  dictionary: ['/ui/', '/ui/api/', 'status', 'events', 'snapshots', 'lag', 'limit', 'volume', 'seconds', 'token', 'vol', '?', '&', '=', '%', '%00', '%ff', '127.0.0.1', 'Bearer '].map((k) => Buffer.from(k)),
  seeds: () => UI_SEEDS.map((r) => Buffer.from(JSON.stringify(r))),
  async setup() {
    dashboard = new Dashboard(await openSandbox());
  },
  async teardown() {
    dashboard?.close();
    dashboard = undefined;
    await closeSandbox();
  },
  run(input) {
    if (!dashboard) throw new Error('dashboard target used without setup');
    let r: UiRequest;
    try {
      const v = JSON.parse(input.toString('utf8')) as unknown;
      r = v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as UiRequest) : { path: String(v) };
    } catch {
      r = { method: 'GET', path: input.toString('latin1'), remote: '127.0.0.1' };
    }
    // As http2 hands them over: strings, and a list of strings for cookie only.
    const str = (v: unknown) => (v === undefined || v === null ? undefined : String(v));
    const cookie = Array.isArray(r.cookie) ? r.cookie.map(String) : str(r.cookie);
    const headers: Record<string, unknown> = { ':method': str(r.method), ':path': str(r.path), ':authority': str(r.authority), authorization: str(r.authorization), cookie };
    // the daemon hands the dashboard only its own paths
    if (!isDashboardPath(String(headers[':path'] ?? ''))) return 'not a dashboard path';
    const { stream, answer } = fakeStream(r.remote);
    dashboard.handle(stream, headers as never);
    if (answer.status === undefined) throw new FuzzViolation('the dashboard gave no answer');
    if (answer.status >= 500) {
      const code = (JSON.parse(answer.body ?? '{}') as { error?: { code?: string; message?: string } }).error;
      throw new FuzzViolation(`the dashboard answered ${answer.status}: ${code?.code}: ${code?.message?.slice(0, 300)}`);
    }
    return answer.status;
  },
};
