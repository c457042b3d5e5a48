// The web dashboard in a real browser: headless Chromium (Debian's package)
// driven by playwright-core against two real `ferry serve` daemons. The page
// must show a mirror going `updating`, then `idle` with health `up`, then
// `warn` once its lag passes max delay, in real time. A second test checks
// access over real sockets: a client on a non-loopback address needs the
// token (bearer or cookie), loopback needs none, and no route changes state.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { ROOT, runFerry, tempDir } from '../helpers.ts';
import { writeRandomFile } from '../harness/cli-site.ts';
import { cleanupSites, createSite, pairSites, type TestSite } from '../harness/index.ts';
import { Daemon } from '../../src/app/daemon.ts';
import { Engine } from '../../src/site/engine.ts';
import { Site } from '../../src/site/site.ts';
import { createVolume } from '../../src/site/volumes.ts';
import { createSnapshot } from '../../src/site/snapshots.ts';

// The callbacks given to page.evaluate run in the browser; this project's types have no DOM.
interface DomElement {
  textContent: string | null;
  getAttribute(name: string): string | null;
  querySelector(selector: string): DomElement | null;
}
declare const document: { querySelector(selector: string): DomElement | null };

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = join(ROOT, 'test-artifacts');

function assertChromium(): void {
  assert.ok(
    existsSync(CHROMIUM),
    `headless Chromium is missing at ${CHROMIUM}: install it with \`apt-get install -y chromium\` (this test drives a real browser; .ci/run installs it)`,
  );
}

async function launchBrowser(profileDir: string): Promise<BrowserContext> {
  assertChromium();
  return chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    ignoreHTTPSErrors: true, // the daemon's certificate is the site's own, self-signed
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** Wait until the element with this data-testid has text matching `re`; on timeout, say what it showed. */
async function waitForText(page: Page, testid: string, re: RegExp, timeoutMs: number): Promise<string> {
  try {
    const h = await page.waitForFunction(
      ([id, src, flags]) => {
        const e = document.querySelector(`[data-testid="${id}"]`);
        const t = e?.textContent ?? null;
        return t !== null && new RegExp(src, flags).test(t) ? t : false;
      },
      [testid, re.source, re.flags] as const,
      { timeout: timeoutMs, polling: 50 },
    );
    return (await h.jsonValue()) as string;
  } catch (err) {
    const now = await page.evaluate((id) => document.querySelector(`[data-testid="${id}"]`)?.textContent ?? '(absent)', testid).catch(() => '(page gone)');
    const banner = await page.textContent('[data-testid="error-banner"]').catch(() => '');
    throw new Error(`waiting for [data-testid="${testid}"] to match ${re}: it shows ${JSON.stringify(now)}${banner ? `; banner: ${banner}` : ''} (${(err as Error).message.split('\n')[0]})`);
  }
}

test('dashboard in Chromium: a mirror shows updating, then idle and up, then warn past max delay', { timeout: 180_000 }, async (t) => {
  assertChromium(); // before anything else: a missing browser fails at once, saying how to install it
  const sites: TestSite[] = [];
  t.after(() => cleanupSites(sites));
  const a = await createSite('a');
  const b = await createSite('b');
  sites.push(a, b);
  const data = join(a.dir, 'data');
  mkdirSync(data);
  writeRandomFile(join(data, 'one.bin'), 1 << 20);
  a.defineVolume('vol', [data]);
  await a.start();
  await b.start();
  await pairSites(a, b);
  // 1 MiB/s: the 2 MiB update below takes about two seconds, long enough to watch.
  await a.json(['mirror', 'create', 'vol', '--to', 'b', '--max-delay', '10s', '--bandwidth', '1MiB/s']);
  await a.json(['mirror', 'initialize', 'vol', '--to', 'b', '--wait']);
  const named = await a.json(['snapshot', 'create', 'vol', '--name', 'nightly']);
  const namedId: string = named.snapshot.id;

  const profile = tempDir('ferry-chromium-');
  const browser = await launchBrowser(profile.path).catch((err) => {
    profile.cleanup();
    throw err;
  });
  t.after(async () => {
    await browser.close(); // first: Chromium writes its profile until it exits
    profile.cleanup();
  });
  const page = browser.pages()[0] ?? (await browser.newPage());
  const pageErrors: string[] = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error') pageErrors.push(m.text());
  });
  const res = await page.goto(`${a.url}/ui/`);
  assert.equal(res?.status(), 200);
  assert.match(res!.headers()['content-security-policy'] ?? '', /default-src 'none'/);

  const M = 'vol@b';
  await waitForText(page, 'site-name', /^a$/, 15_000);
  await waitForText(page, `mirror-state-${M}`, /^idle$/, 15_000);
  await waitForText(page, 'peer-reachable-b', /^yes$/, 15_000);
  await waitForText(page, 'volume-role-vol', /^primary$/, 5_000);

  // New data, then `mirror update` (queued to the daemon; returns at once).
  writeRandomFile(join(data, 'two.bin'), 2 << 20);
  const queued = await a.json(['mirror', 'update', 'vol', '--to', 'b']);
  assert.equal(queued.queued, true);
  await waitForText(page, `mirror-state-${M}`, /^updating$/, 20_000);
  // The transfer's progress bar shows while it runs (or the update is already over).
  const sawProgress = await page.waitForFunction(
    (id) => {
      if (document.querySelector(`[data-testid="mirror-progress-${id}"]`)) return 'progress';
      return document.querySelector(`[data-testid="mirror-state-${id}"]`)?.textContent !== 'updating' ? 'done' : false;
    },
    M,
    { timeout: 30_000, polling: 50 },
  );
  assert.equal(await sawProgress.jsonValue(), 'progress', 'the page showed no progress bar while the mirror was updating');

  await waitForText(page, `mirror-state-${M}`, /^idle$/, 60_000);
  // Caught before the lag of the new base passes 10 s: health up, replica consistent, a last transfer of about 2 MiB.
  await waitForText(page, `mirror-health-${M}`, /^up$/, 5_000);
  await waitForText(page, `mirror-consistent-${M}`, /^true$/, 5_000);
  const last = await waitForText(page, `mirror-last-transfer-${M}`, /MiB/, 5_000);
  assert.match(last, /^2\.\d MiB, \d+ objects, /);
  await waitForText(page, `mirror-error-${M}`, /^none$/, 5_000);

  // Nothing replicates again: once the lag passes the max delay (10 s), health turns warn.
  await waitForText(page, `mirror-health-${M}`, /^warn$/, 30_000);
  await waitForText(page, `mirror-reasons-${M}`, /exceeds max delay 10 s/, 5_000);
  assert.equal(await page.textContent(`[data-testid="mirror-state-${M}"]`), 'idle', 'lag alone does not change the state');

  // The chart: a lag line of several points (the sawtooth of two updates) and the max-delay line.
  const chart = await page.evaluate((id) => {
    const svg = document.querySelector(`[data-testid="mirror-chart-${id}"]`);
    return {
      points: svg?.querySelector('[data-testid="lag-line"]')?.getAttribute('points')?.trim().split(/\s+/).length ?? 0,
      maxLine: svg?.querySelector('[data-testid="max-delay-line"]') !== null && svg !== null,
    };
  }, M);
  assert.ok(chart.points >= 4, `lag line has ${chart.points} points`);
  assert.ok(chart.maxLine, 'the chart draws the max delay line');

  // Snapshots of the volume, with names and holds: the named one, and the base held by the mirror.
  await waitForText(page, `snapshot-name-${namedId}`, /^nightly$/, 5_000);
  const base = (await a.mirror('vol', 'b')).base as string;
  await waitForText(page, `snapshot-holds-${base}`, new RegExp(`^mirror:${M}$`), 5_000);
  // Recent events include the update.
  assert.ok((await page.locator('[data-testid="event"][data-kind="replication.update"]').count()) >= 2, 'the events list shows both updates');

  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true });
  assert.ok(statSync(join(ARTIFACTS, 'dashboard.png')).size > 10_000);
  assert.deepEqual(pageErrors, [], 'the page logged errors (a CSP violation shows here)');
});

// ---------------------------------------------------------------- access over real sockets

interface Answer {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: string;
}

function request(origin: string, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(origin, { rejectUnauthorized: false });
    session.on('error', reject);
    const req = session.request({ ':method': method, ':path': path, ...headers });
    let status = 0;
    let h: http2.IncomingHttpHeaders = {};
    let body = '';
    req.setEncoding('utf8');
    req.on('response', (r) => {
      h = r;
      status = Number(r[':status']);
    });
    req.on('data', (d: string) => (body += d));
    req.on('error', reject);
    req.on('end', () => {
      session.close();
      resolve({ status, headers: h, body });
    });
    req.end(method === 'POST' || method === 'PUT' ? '{}' : undefined);
  });
}

/** Everything a read could change by mistake: every catalog table, and the files of the home. */
function fingerprint(home: string): string {
  const db = new DatabaseSync(join(home, 'catalog.db'), { readOnly: true });
  try {
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as Array<{ name: string }>;
    const rows = tables.map((x) => [x.name, db.prepare(`SELECT * FROM "${x.name}"`).all()]);
    const files = (dir: string): string[] => readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : [`${join(dir, e.name)} ${statSync(join(dir, e.name)).size}`]));
    return JSON.stringify({ rows, files: files(home).sort() }, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
  } finally {
    db.close();
  }
}

function nonLoopbackIPv4(): string | undefined {
  for (const addrs of Object.values(networkInterfaces())) for (const x of addrs ?? []) if (x.family === 'IPv4' && !x.internal) return x.address;
  return undefined;
}

test('dashboard access: remote clients need the token (bearer or cookie), loopback does not; no route changes state', { timeout: 120_000 }, async (t) => {
  const tmp = tempDir('ferry-dash-access-');
  t.after(() => tmp.cleanup());
  const home = join(tmp.path, 'home');
  const site = Site.init(home, 'a');
  const data = join(tmp.path, 'data');
  mkdirSync(data);
  writeRandomFile(join(data, 'f.bin'), 4096);
  createVolume(site, 'vol', { members: [{ path: data }] });
  const engine = new Engine(site);
  await createSnapshot(site, 'vol', { name: 'first', pool: engine.pool });
  const daemon = new Daemon(engine);
  const info = await daemon.start('0.0.0.0:0');
  let running = true;
  t.after(async () => {
    if (running) await daemon.stop().catch(() => {});
    site.close();
  });
  const local = `https://127.0.0.1:${info.port}`;

  // Loopback: no token needed, and asking needs none to exist.
  const page = await request(local, '/ui/');
  assert.equal(page.status, 200);
  assert.match(page.body, /<title>ferry dashboard<\/title>/);
  assert.equal(page.headers['x-content-type-options'], 'nosniff');
  assert.equal(page.headers['cache-control'], 'no-store');
  assert.match(String(page.headers['content-security-policy']), /default-src 'none'; script-src 'sha256-[^']+'; style-src 'sha256-[^']+'; connect-src 'self'/);
  assert.equal((await request(local, '/ui/api/status')).status, 200);
  assert.equal(existsSync(join(home, 'dashboard.token')), false, 'a loopback visit does not create the token');
  // ... but only under a local name: a DNS-rebound page asks for its own name.
  const rebound = await request(local, '/ui/api/status', { ':authority': `evil.example:${info.port}` });
  assert.equal(rebound.status, 401);

  // The peer API behind the same port still refuses anyone without a paired certificate.
  const stranger = await request(local, '/v1/ping');
  assert.equal(stranger.status, 403);
  assert.equal(JSON.parse(stranger.body).error.code, 'PEER_UNTRUSTED');

  // The URL to give a remote browser, from the real CLI (it finds this in-process daemon by daemon.json).
  const cli = await runFerry(['dashboard', '--json'], { home });
  assert.equal(cli.code, 0, cli.stderr);
  const token: string = cli.json.token;
  assert.match(token, /^[A-Za-z0-9_-]{43}$/);
  assert.ok(cli.json.url.endsWith(`:${info.port}/ui/?token=${token}`), cli.json.url);
  assert.equal(statSync(join(home, 'dashboard.token')).mode & 0o777, 0o600);
  const again = await runFerry(['dashboard', '--json'], { home });
  assert.equal(again.json.token, token, 'the token is made once, then reused');

  const before = fingerprint(home);
  const ip = nonLoopbackIPv4();
  if (!ip) {
    t.diagnostic('this machine has no non-loopback IPv4 address: the remote-client half is covered by the unit tests of decideAccess only');
  } else {
    const remote = `https://${ip}:${info.port}`;
    for (const path of ['/ui/', '/ui/api/status', '/ui/api/events', '/ui/api/lag', '/ui/api/snapshots?volume=vol']) {
      const r = await request(remote, path);
      assert.equal(r.status, 401, `${path} without a token from ${ip}`);
      assert.match(r.body, /ferry dashboard/, 'the refusal says how to get the URL');
      assert.doesNotMatch(r.body, new RegExp(token));
    }
    assert.equal((await request(remote, '/ui/api/status', { authorization: 'Bearer not-the-token-but-long-enough-to-look-right' })).status, 401);
    assert.equal((await request(remote, `/ui/?token=${token.slice(0, -1)}x`)).status, 401);
    const bearer = await request(remote, '/ui/api/status', { authorization: `Bearer ${token}` });
    assert.equal(bearer.status, 200);
    assert.equal(JSON.parse(bearer.body).site.name, 'a');

    // ?token= on the page: a cookie (HttpOnly, Secure, SameSite=Strict), and the token leaves the URL.
    const login = await request(remote, `/ui/?token=${token}`);
    assert.equal(login.status, 303);
    assert.equal(login.headers.location, '/ui/');
    const setCookie = String(login.headers['set-cookie']);
    assert.match(setCookie, /HttpOnly/);
    assert.match(setCookie, /Secure/);
    assert.match(setCookie, /SameSite=Strict/);
    const cookie = setCookie.split(';')[0];
    assert.equal((await request(remote, '/ui/', { cookie })).status, 200);
    const snaps = await request(remote, '/ui/api/snapshots?volume=vol', { cookie });
    assert.equal(snaps.status, 200);
    assert.deepEqual(JSON.parse(snaps.body).snapshots.map((s: { name: string }) => s.name), ['first']);
    assert.equal((await request(remote, '/ui/api/status', { cookie: `${cookie.split('=')[0]}=wrong` })).status, 401);
    // ?token= is honoured on the page only, not on API routes.
    assert.equal((await request(remote, `/ui/api/status?token=${token}`)).status, 401);

    // The same in a real browser from the non-loopback address: refused without the token; with the
    // URL `ferry dashboard` prints, the token becomes a cookie, leaves the address bar, and the page works.
    const profile = tempDir('ferry-chromium-');
    const browser = await launchBrowser(profile.path).catch((err) => {
      profile.cleanup();
      throw err;
    });
    t.after(async () => {
      await browser.close();
      profile.cleanup();
    });
    const tab = browser.pages()[0] ?? (await browser.newPage());
    const refused = await tab.goto(`${remote}/ui/`);
    assert.equal(refused?.status(), 401);
    assert.match(await tab.textContent('body') ?? '', /run `ferry dashboard`/);
    const opened = await tab.goto(`${remote}/ui/?token=${token}`);
    assert.equal(opened?.status(), 200);
    assert.equal(tab.url(), `${remote}/ui/`);
    await waitForText(tab, 'site-name', /^a$/, 15_000);
    await waitForText(tab, 'snapshot-count', /^1 snapshot\(s\)$/, 15_000);
    const cookies = await browser.cookies(`${remote}/ui/`);
    assert.equal(cookies.length, 1);
    assert.equal(cookies[0].httpOnly, true);
    assert.equal(cookies[0].secure, true);
    assert.equal(cookies[0].sameSite, 'Strict');
  }

  // Read-only: no method but GET/HEAD, and reading every route changed nothing.
  for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
    const r = await request(local, '/ui/api/status', {}, method);
    assert.equal(r.status, 405, `${method} is refused`);
    assert.equal(r.headers.allow, 'GET, HEAD');
  }
  for (const path of ['/ui/', '/ui/api/status', '/ui/api/events?limit=500', '/ui/api/lag?seconds=86400', '/ui/api/snapshots?volume=vol', '/ui/favicon.svg']) {
    assert.equal((await request(local, path)).status, 200, path);
  }
  assert.equal((await request(local, '/ui/api/snapshots?volume=nope')).status, 404);
  assert.equal((await request(local, '/ui/api/nothing')).status, 404);
  assert.equal(fingerprint(home), before, 'dashboard requests changed the catalog or the files of the home');

  // Without a daemon, `ferry dashboard` says how to start one.
  await daemon.stop();
  running = false;
  const none = await runFerry(['dashboard'], { home: join(tmp.path, 'home') });
  assert.equal(none.code, 6);
  assert.match(none.stderr, /no daemon runs .*ferry serve/);
});
