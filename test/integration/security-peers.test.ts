// Who may talk, and how much they can make the daemon hold (design promise
// 6): an unpaired certificate, or none, is refused with PEER_UNTRUSTED on
// every route before any body is read; a client pinning another id refuses
// the server before sending anything; and a paired peer's oversized or
// malformed control messages are refused with a clear error and bounded
// memory. After each case nothing outside the replica changed and a
// legitimate transfer still works.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type http2 from 'node:http2';
import { Site } from '../../src/site/site.ts';
import { Engine } from '../../src/site/engine.ts';
import { Daemon } from '../../src/app/daemon.ts';
import { PeerClient } from '../../src/transport/client.ts';
import { addPeer } from '../../src/site/peers.ts';
import { createIdentity } from '../../src/transport/identity.ts';
import { encodeIds, MAX_IDS_PER_QUERY, MAX_JSON_BYTES } from '../../src/replication/protocol.ts';
import { PROTOCOL_VERSION } from '../../src/replication/types.ts';
import { ROUTES } from '../../src/transport/http.ts';
import type { ObjectId } from '../../src/core/ids.ts';
import { tempDir } from '../helpers.ts';
import { connectRaw, memoryGrowth, netEnv, prep, rawRequest, record, rejectsWith, type NetEnv, type RawAnswer } from '../harness/security.ts';
import { findVolume } from '../../src/catalog/volumes.ts';

let env: NetEnv;
let outsideBefore: string[];
let s: http2.ClientHttp2Session;

before(async () => {
  env = await netEnv();
  await env.legit();
  s = await connectRaw(env.url, env.aIdent);
  outsideBefore = env.outsideListing();
});

after(async () => {
  s?.close();
  await env?.close();
});

async function healthy(): Promise<void> {
  assert.deepEqual(env.outsideListing(), outsideBefore);
  await env.legit();
  outsideBefore = env.outsideListing();
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v));
const events = () => env.b.catalog.db.get<{ n: number }>('SELECT count(*) AS n FROM events')!.n;

test('an unpaired certificate, or none, gets PEER_UNTRUSTED on every route, without its body being read', async () => {
  const strangers = [createIdentity('mallory'), createIdentity('a') /* same name as the paired site, another key */, undefined];
  const obj = prep('chunk', randomBytes(1000));
  const routes: Array<[string, string, Buffer]> = [
    ['GET', ROUTES.ping, Buffer.alloc(0)],
    ['POST', ROUTES.hello, json({ protocol: PROTOCOL_VERSION, sourceVolume: 'vol', volume: 'intruder', members: [{ name: 'data', kind: 'tree' }] })],
    ['POST', ROUTES.missing('vol'), encodeIds([obj.id])],
    ['POST', ROUTES.objects('vol'), record(obj)],
    ['POST', ROUTES.commit('vol'), json({ snapshot: '01ARZ3NDEKTSV4RRFFQ69G5FAV', manifest: obj.id })],
    ['POST', '/v1/replication/vol/nosuchroute', Buffer.alloc(0)],
    ['PUT', '/anything', Buffer.alloc(0)],
  ];
  const n0 = events();
  for (const ident of strangers) {
    for (const [method, path, body] of routes) {
      const c = await connectRaw(env.url, ident);
      try {
        // The body is followed by 4 MiB more and never ended: the answer must not wait for it.
        const { result: r, rssMiB } = await memoryGrowth(() => rawRequest(c, path, method === 'GET' ? null : [body, Buffer.alloc(4 << 20)], { method, end: method === 'GET' }));
        assert.equal(r.status, 403, `${ident ? 'stranger' : 'no certificate'} ${method} ${path}: ${r.body.toString()}`);
        assert.equal(r.json?.error?.code, 'PEER_UNTRUSTED');
        assert.ok(rssMiB < 100);
      } finally {
        c.close();
      }
    }
  }
  assert.equal(env.b.store.has(obj.id), false);
  assert.equal(findVolume(env.b.catalog, 'intruder'), undefined);
  assert.equal(events(), n0, 'an untrusted peer leaves no trace in the catalog');
  await healthy();
});

test('a client that pins another site id refuses the server before sending a request', async () => {
  // b's real daemon, but the client expects some other site there.
  const wrongPin = new PeerClient(env.aIdent, { ...env.peerB, id: createIdentity('x').id });
  await rejectsWith(wrongPin.hello({ protocol: PROTOCOL_VERSION, sourceVolume: 'vol', volume: 'pinned', members: [{ name: 'data', kind: 'tree' }] }), ['PEER_UNTRUSTED'], /presented site id/);
  wrongPin.close();
  assert.equal(findVolume(env.b.catalog, 'pinned'), undefined);
  // An impostor daemon (site c, which has paired a and would accept it) at the URL where a expects b.
  const cTmp = tempDir('ferry-secimp-');
  const c = Site.init(join(cTmp.path, 'c'), 'c');
  addPeer(c, 'a', 'https://127.0.0.1:1', env.a.id);
  const cDaemon = new Daemon(new Engine(c));
  try {
    const info = await cDaemon.start('127.0.0.1:0');
    const fooled = new PeerClient(env.aIdent, { ...env.peerB, url: `https://127.0.0.1:${info.port}` });
    for (const call of [
      () => fooled.hello({ protocol: PROTOCOL_VERSION, sourceVolume: 'vol', volume: 'vol', members: [{ name: 'data', kind: 'tree' }] }),
      () => fooled.missing('vol', [prep('chunk', Buffer.from('x')).id]),
      () => fooled.commit('vol', { snapshot: '01ARZ3NDEKTSV4RRFFQ69G5FAV', manifest: prep('chunk', Buffer.from('x')).id }),
    ]) {
      await rejectsWith(call(), ['PEER_UNTRUSTED'], /paired as/);
    }
    fooled.close();
    assert.equal(findVolume(c.catalog, 'vol'), undefined, 'the impostor received nothing');
    assert.equal(c.catalog.db.get<{ n: number }>("SELECT count(*) AS n FROM events WHERE kind LIKE 'secondary.%'")!.n, 0);
  } finally {
    await cDaemon.stop();
    c.close();
    cTmp.cleanup();
  }
  await healthy();
});

async function refusedBounded(path: string, body: Buffer | Buffer[], why: RegExp, opts: { end?: boolean; status?: number; code?: string } = {}): Promise<RawAnswer> {
  const { result: r, rssMiB } = await memoryGrowth(() => rawRequest(s, path, body, { end: opts.end }));
  assert.equal(r.status, opts.status ?? 400, `${path}: ${r.body.toString().slice(0, 300)}`);
  assert.equal(r.json?.error?.code, opts.code ?? 'PROTOCOL');
  assert.match(r.json!.error!.message, why);
  assert.ok(rssMiB < 100, `memory grew by ${rssMiB.toFixed(1)} MiB`);
  return r;
}

test('id lists beyond 65,536 ids are refused; exactly 65,536 are answered', async () => {
  const ids = Array.from({ length: MAX_IDS_PER_QUERY + 1 }, () => randomBytes(32).toString('hex') as ObjectId);
  await refusedBounded(ROUTES.missing('vol'), encodeIds(ids), /id list exceeds 2097152 bytes/);
  // Far beyond, and never ended: refused as soon as the limit is passed.
  await refusedBounded(ROUTES.missing('vol'), [Buffer.alloc(1 << 20), Buffer.alloc(1 << 20), Buffer.alloc(1 << 20), Buffer.alloc(8 << 20)], /id list exceeds/, { end: false });
  await refusedBounded(ROUTES.missing('vol'), Buffer.alloc(33), /not a whole number of 32-byte ids/);
  const r = await rawRequest(s, ROUTES.missing('vol'), encodeIds(ids.slice(0, MAX_IDS_PER_QUERY)));
  assert.equal(r.status, 200);
  assert.equal(r.body.length, MAX_IDS_PER_QUERY / 8);
  assert.ok(r.body.every((b) => b === 0xff));
  await healthy();
});

test('JSON bodies beyond 1 MiB, hellos with 10,000 members, deep nesting and garbage are refused with clear errors', async () => {
  const big = Buffer.alloc(MAX_JSON_BYTES + 1, 0x20);
  for (const route of [ROUTES.hello, ROUTES.commit('vol')]) {
    await refusedBounded(route, big, /exceeds 1048576 bytes/);
    await refusedBounded(route, [Buffer.alloc(MAX_JSON_BYTES), Buffer.alloc(8 << 20)], /exceeds 1048576 bytes/, { end: false });
  }
  const members = Array.from({ length: 10_000 }, (_, i) => ({ name: `m${i}`, kind: 'tree' }));
  await refusedBounded(ROUTES.hello, json({ protocol: PROTOCOL_VERSION, sourceVolume: 'vol', volume: 'many', members }), /hello.members must be a list of 1 to 4096 members, not 10000/);
  assert.equal(findVolume(env.b.catalog, 'many'), undefined);
  const deepOpen = Buffer.from('['.repeat(MAX_JSON_BYTES - 10));
  const deepValid = Buffer.from('['.repeat(400_000) + ']'.repeat(400_000));
  const deepObj = Buffer.from('{"a":'.repeat(150_000) + '1' + '}'.repeat(150_000));
  for (const route of [ROUTES.hello, ROUTES.commit('vol')]) {
    await refusedBounded(route, deepOpen, /not valid JSON/);
    await refusedBounded(route, deepValid, /must be a JSON object|not valid JSON/);
    await refusedBounded(route, deepObj, route === ROUTES.hello ? /hello.protocol must be a number/ : /commit.snapshot must be a string/);
    await refusedBounded(route, randomBytes(5000), /not valid JSON/);
    for (const v of ['null', '[]', '"str"', '123', 'true', '{}']) {
      const r = await rawRequest(s, route, Buffer.from(v));
      assert.ok(r.status >= 400 && r.status < 500, `${route} ${v}: ${r.status}`);
      assert.equal(r.json!.error!.code, 'PROTOCOL', `${route} ${v}`);
    }
  }
  // Commit fields are checked one by one.
  const id = '01ARZ3NDEKTSV4RRFFQ69G5FAV';
  const hex = 'a'.repeat(64);
  for (const [body, why] of [
    [{ snapshot: 'x', manifest: hex }, /commit.snapshot is not a snapshot id/],
    [{ snapshot: id.toLowerCase(), manifest: hex }, /commit.snapshot is not a snapshot id/],
    [{ snapshot: id, manifest: 'A'.repeat(64) }, /commit.manifest is not an object id/],
    [{ snapshot: id, manifest: '../'.repeat(20) }, /commit.manifest/],
    [{ snapshot: id, manifest: hex, force: 'yes' }, /commit.force must be a boolean/],
    [{ snapshot: 'x'.repeat(500_000), manifest: hex }, /commit.snapshot must be a string of at most 26 characters/],
  ] as const) {
    await refusedBounded(ROUTES.commit('vol'), json(body), why);
  }
  // A hello from a newer protocol is a version error, not a crash.
  const r = await rawRequest(s, ROUTES.hello, json({ protocol: 99, sourceVolume: 'vol', volume: 'vol', members: [{ name: 'data', kind: 'tree' }] }));
  assert.equal(r.status, 400);
  assert.equal(r.json?.error?.code, 'FORMAT_VERSION');
  await healthy();
});

test(
  'an untrusted peer that keeps its request open after the 403 still loses its connection',
  async () => {
    const c = await connectRaw(env.url, createIdentity('lingerer'));
    const closed = new Promise<boolean>((resolve) => {
      c.once('close', () => resolve(true));
      setTimeout(() => resolve(false), 2000);
    });
    const req = c.request({ ':method': 'POST', ':path': ROUTES.hello });
    req.on('error', () => {});
    req.resume();
    req.write(Buffer.alloc(1000));
    const status = await new Promise<number>((r) => req.once('response', (h) => r(Number(h[':status']))));
    assert.equal(status, 403);
    const wasClosed = await closed;
    c.destroy();
    assert.equal(wasClosed, true, 'the daemon still holds the session 2 s after refusing it');
  },
);

test(
  'the daemon stops promptly even while a peer holds a request stream open',
  async () => {
    const other = await netEnv();
    try {
      await other.legit();
      const c = await connectRaw(other.url, other.aIdent);
      const req = c.request({ ':method': 'POST', ':path': ROUTES.objects('vol') });
      req.on('error', () => {});
      req.write(Buffer.alloc(10)); // a record header not even complete, and never ended
      await new Promise((r) => setTimeout(r, 300));
      const t0 = Date.now();
      const stopped = other.daemon.stop().then(() => true);
      const inTime = await Promise.race([stopped, new Promise<boolean>((r) => setTimeout(() => r(false), 3000))]);
      c.destroy();
      await stopped;
      assert.equal(inTime, true, `stop() took ${Date.now() - t0} ms: it waited for the peer to go away`);
    } finally {
      // close() stops the daemon again: harmless once stopped.
      await other.close().catch(() => {});
    }
  },
);
