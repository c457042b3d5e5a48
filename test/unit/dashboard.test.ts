// The dashboard's pure parts: who may read it (decideAccess and its pieces),
// the token file, and the lag history rebuilt from catalog events under a
// fake clock. The routes themselves are tested over real sockets and in a
// real browser in test/integration/dashboard.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ManualClock } from '../../src/core/clock.ts';
import { isFerryError } from '../../src/core/errors.ts';
import { newSnapshotId } from '../../src/core/ids.ts';
import {
  cookieNameFor,
  cookieValue,
  dashboardToken,
  decideAccess,
  isDashboardPath,
  isLocalAuthority,
  isLoopback,
  lagHistory,
  tokensEqual,
  ulidTime,
  type AccessRequest,
} from '../../src/app/dashboard.ts';
import type { Mirror } from '../../src/site/mirrors.ts';
import { Site } from '../../src/site/site.ts';
import { tempDir } from '../helpers.ts';

test('isDashboardPath: /ui and below only', () => {
  for (const p of ['/ui', '/ui/', '/ui/api/status', '/ui?token=x', '/ui/?token=x']) assert.equal(isDashboardPath(p), true, p);
  for (const p of ['/', '/uix', '/v1/ping', '/v1/ui/', '/UI/', '']) assert.equal(isDashboardPath(p), false, p);
});

test('isLoopback: 127/8 and ::1, also IPv4-mapped; nothing else', () => {
  for (const a of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1', '::FFFF:127.0.0.2']) assert.equal(isLoopback(a), true, a);
  for (const a of ['192.0.2.2', '::ffff:192.0.2.2', '10.0.0.1', '0.0.0.0', '::', 'localhost', '', undefined, '127.0.0.1.example']) assert.equal(isLoopback(a), false, String(a));
});

test('isLocalAuthority: IP literals and localhost names; other names need the token', () => {
  for (const a of ['127.0.0.1:7420', '127.0.0.1', '[::1]:7420', 'localhost:7420', 'LOCALHOST', 'dash.localhost:1', '192.0.2.2:7420']) assert.equal(isLocalAuthority(a), true, a);
  for (const a of ['evil.example:7420', 'localhost.evil.example', '', undefined, 'a:b:c', '[::1']) assert.equal(isLocalAuthority(a), false, String(a));
});

test('cookieValue finds one cookie among several', () => {
  assert.equal(cookieValue('a=1; ferry_dashboard_x=tok; b=2', 'ferry_dashboard_x'), 'tok');
  assert.equal(cookieValue('ferry_dashboard_xy=tok', 'ferry_dashboard_x'), undefined);
  assert.equal(cookieValue(undefined, 'x'), undefined);
  assert.match(cookieNameFor('BM33TVKL6ZSB4PKBA32375DVBJ7TER3OCL7B2BH3ING4MRFEBMMQ'), /^ferry_dashboard_[a-z0-9]{16}$/);
});

test('tokensEqual compares whole tokens', () => {
  assert.equal(tokensEqual('abc', 'abc'), true);
  assert.equal(tokensEqual('abc', 'abd'), false);
  assert.equal(tokensEqual('abc', 'abcd'), false);
  assert.equal(tokensEqual('', 'a'), false);
});

test('decideAccess: loopback needs nothing; remote needs the token by bearer, page query or cookie', () => {
  const TOKEN = 'T'.repeat(43);
  const NAME = 'ferry_dashboard_abc';
  let reads = 0;
  const token = () => {
    reads++;
    return TOKEN;
  };
  const req = (o: Partial<AccessRequest>): AccessRequest => ({ remoteAddress: '192.0.2.9', authority: '192.0.2.2:7420', authorization: undefined, cookie: undefined, queryToken: null, ...o });
  const local = { remoteAddress: '127.0.0.1', authority: '127.0.0.1:7420' };

  assert.deepEqual(decideAccess(req(local), NAME, token), { allowed: true, via: 'loopback' });
  assert.deepEqual(decideAccess(req({ remoteAddress: '::1', authority: 'localhost:7420' }), NAME, token), { allowed: true, via: 'loopback' });
  assert.equal(reads, 0, 'a loopback visit without a credential does not read (or create) the token');

  assert.deepEqual(decideAccess(req({}), NAME, token), { allowed: false, reason: 'no token' });
  assert.deepEqual(decideAccess(req({ authorization: `Bearer ${TOKEN}` }), NAME, token), { allowed: true, via: 'bearer' });
  assert.deepEqual(decideAccess(req({ authorization: `bearer ${TOKEN}` }), NAME, token), { allowed: true, via: 'bearer' });
  assert.deepEqual(decideAccess(req({ queryToken: TOKEN }), NAME, token), { allowed: true, via: 'query' });
  assert.deepEqual(decideAccess(req({ cookie: `x=1; ${NAME}=${TOKEN}` }), NAME, token), { allowed: true, via: 'cookie' });
  for (const bad of [
    { authorization: `Bearer ${TOKEN}x` },
    { authorization: `Basic ${TOKEN}` },
    { authorization: TOKEN },
    { queryToken: TOKEN.slice(1) },
    { queryToken: '' },
    { cookie: `${NAME}=wrong` },
    { cookie: `other=${TOKEN}` },
  ]) {
    assert.equal(decideAccess(req(bad), NAME, token).allowed, false, JSON.stringify(bad));
  }
  // A wrong credential from loopback still passes: loopback needs none.
  assert.deepEqual(decideAccess(req({ ...local, authorization: 'Bearer wrong' }), NAME, token), { allowed: true, via: 'loopback' });
  // Loopback under a foreign name (DNS rebinding) is treated as remote.
  assert.equal(decideAccess(req({ remoteAddress: '127.0.0.1', authority: 'evil.example:7420' }), NAME, token).allowed, false);
  assert.deepEqual(decideAccess(req({ remoteAddress: '127.0.0.1', authority: 'evil.example:7420', authorization: `Bearer ${TOKEN}` }), NAME, token), { allowed: true, via: 'bearer' });
  // No token file readable: remote clients are refused, loopback ones still pass.
  const broken = () => {
    throw new Error('unreadable');
  };
  assert.equal(decideAccess(req({ authorization: `Bearer ${TOKEN}` }), NAME, broken).allowed, false);
  assert.equal(decideAccess(req({ authorization: `Bearer ${TOKEN}` }), NAME, () => undefined).allowed, false);
  assert.equal(decideAccess(req({ ...local, authorization: `Bearer ${TOKEN}` }), NAME, broken).allowed, true);
});

test('dashboardToken: made on first use with mode 0600, then reused; a damaged file is refused', () => {
  const tmp = tempDir('ferry-dash-token-');
  try {
    assert.equal(dashboardToken(tmp.path, { create: false }), undefined);
    const t1 = dashboardToken(tmp.path, { create: true })!;
    assert.match(t1, /^[A-Za-z0-9_-]{43}$/);
    const file = join(tmp.path, 'dashboard.token');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(readFileSync(file, 'utf8'), `${t1}\n`);
    assert.equal(dashboardToken(tmp.path, { create: true }), t1);
    assert.equal(dashboardToken(tmp.path, { create: false }), t1);
    // A token another process wrote (by hand, say) is used as it is.
    const mine = 'x'.repeat(40);
    writeFileSync(file, `${mine}\n`);
    assert.equal(dashboardToken(tmp.path, { create: true }), mine);
    writeFileSync(file, 'short\n');
    assert.throws(() => dashboardToken(tmp.path, { create: true }), (e) => isFerryError(e) && e.code === 'CONFIG_INVALID' && /delete it/.test(e.message));
  } finally {
    tmp.cleanup();
  }
});

test('ulidTime reads the time a snapshot id was made at', () => {
  const clock = new ManualClock(Date.UTC(2026, 5, 1, 8, 30, 15, 123));
  assert.equal(ulidTime(newSnapshotId(clock)), clock.now());
  assert.equal(ulidTime('not-a-ulid'), null);
});

test('lagHistory: a sawtooth from the catalog events, cut to the window', () => {
  const tmp = tempDir('ferry-dash-lag-');
  const T0 = Date.UTC(2026, 0, 1, 12);
  const clock = new ManualClock(T0);
  const site = Site.init(join(tmp.path, 'home'), 'a', { clock });
  try {
    const S = 1000;
    const at = (ms: number) => clock.set(T0 + ms);
    // Snapshot ids carry their capture time; these are not in the catalog, so their ULID time is used.
    at(10 * S);
    const s1 = newSnapshotId(clock);
    at(12 * S);
    site.event({ kind: 'replication.update', volume: 'vol', outcome: 'ok', detail: { mirror: 'vol@b', base: null, snapshot: s1 } });
    at(40 * S);
    const s2 = newSnapshotId(clock);
    at(45 * S);
    site.event({ kind: 'replication.update', volume: 'vol', outcome: 'ok', detail: { mirror: 'vol@b', base: s1, snapshot: s2 } });
    // Neither a failed update nor another mirror's moves the base.
    at(50 * S);
    site.event({ kind: 'replication.update', volume: 'vol', outcome: 'failed', detail: { mirror: 'vol@b', error: { code: 'PEER_UNREACHABLE' } } });
    site.event({ kind: 'replication.update', volume: 'vol', outcome: 'ok', detail: { mirror: 'vol@c', base: s2, snapshot: newSnapshotId(clock) } });
    const m: Pick<Mirror, 'id' | 'volume' | 'peer' | 'maxDelayS' | 'base' | 'createdAt'> = { id: 'vol@b', volume: 'vol', peer: 'b', maxDelayS: 30, base: s2, createdAt: T0 };
    const now = T0 + 60 * S;

    const all = lagHistory(site, m, now - 3600 * S, now);
    assert.equal(all.maxDelayS, 30);
    assert.deepEqual(all.points, [
      [T0 + 12 * S, 2],
      [T0 + 45 * S, 35],
      [T0 + 45 * S, 5],
      [now, 20],
    ]);
    // A window that starts between the updates begins with the lag of the base held then.
    assert.deepEqual(lagHistory(site, m, T0 + 30 * S, now).points, [
      [T0 + 30 * S, 20],
      [T0 + 45 * S, 35],
      [T0 + 45 * S, 5],
      [now, 20],
    ]);
    // A base moved by adoption (mirror.base) counts too.
    at(70 * S);
    const s3 = newSnapshotId(clock);
    at(75 * S);
    site.event({ kind: 'mirror.base', volume: 'vol', outcome: 'info', detail: { mirror: 'vol@b', from: s2, to: s3 } });
    const later = lagHistory(site, { ...m, base: s3 }, T0 + 50 * S, T0 + 80 * S).points;
    assert.deepEqual(later, [
      [T0 + 50 * S, 10],
      [T0 + 75 * S, 35],
      [T0 + 75 * S, 5],
      [T0 + 80 * S, 10],
    ]);
    // No base yet: no line at all.
    assert.deepEqual(lagHistory(site, { ...m, id: 'vol@z', base: null }, T0, now).points, []);
  } finally {
    site.close();
    tmp.cleanup();
  }
});
