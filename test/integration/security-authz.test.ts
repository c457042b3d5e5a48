// A paired peer may write only into the volumes this site holds as its
// secondary (design promise 6), only snapshots of the volume it mirrors and
// taken by itself, never an older one than the replica shows, and volume
// names from the network never pick a path. Driven through a real daemon
// over HTTP/2 + mutual TLS; after each case nothing outside the replica
// changed and a legitimate transfer still works.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createVolume } from '../../src/site/volumes.ts';
import { createSnapshot } from '../../src/site/snapshots.ts';
import { sendSnapshot } from '../../src/replication/sender.ts';
import { encodeIds } from '../../src/replication/protocol.ts';
import { PROTOCOL_VERSION } from '../../src/replication/types.ts';
import { ROUTES } from '../../src/transport/http.ts';
import { addPeer } from '../../src/site/peers.ts';
import { createIdentity } from '../../src/transport/identity.ts';
import { readManifest } from '../../src/snapshot/graph.ts';
import { assertTreesEqual } from '../helpers.ts';
import { connectRaw, forgeSnapshot, listing, netEnv, prep, rawRequest, record, rejectsWith, secondaryRow, type NetEnv, type RawAnswer } from '../harness/security.ts';
import { findVolume } from '../../src/catalog/volumes.ts';

let env: NetEnv;
let outsideBefore: string[];
const cIdent = createIdentity('c');

before(async () => {
  env = await netEnv();
  await env.legit();
  const b = env.b;
  // At b: its own primary and standalone volumes (member `data`, like a's vol), and c's secondary.
  for (const [name, role] of [['prim', 'primary'], ['solo', 'standalone']] as const) {
    const dir = join(env.tmp, `b-${name}`);
    mkdirSync(dir);
    writeFileSync(join(dir, 'own.txt'), `${name} data of site b\n`);
    createVolume(b, name, { role, members: [{ path: dir, name: 'data' }] });
  }
  addPeer(b, 'c', 'https://127.0.0.1:2', cIdent.id);
  await env.daemon.engine.receiverFor(cIdent.id).hello({ protocol: PROTOCOL_VERSION, sourceVolume: 'cvol', volume: 'other', members: [{ name: 'data', kind: 'tree' }] });
  outsideBefore = env.outsideListing();
});

after(async () => {
  await env?.close();
});

async function healthy(): Promise<void> {
  assert.deepEqual(env.outsideListing(), outsideBefore);
  await env.legit();
  outsideBefore = env.outsideListing();
}

/** One request on its own connection (a 403 makes the daemon close the session). */
async function once(path: string, body: Buffer | null, opts: { method?: string } = {}): Promise<RawAnswer> {
  const s = await connectRaw(env.url, env.aIdent);
  try {
    return await rawRequest(s, path, body, opts);
  } finally {
    s.close();
  }
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v));
const helloBody = (volume: string, extra: Record<string, unknown> = {}) => json({ protocol: PROTOCOL_VERSION, sourceVolume: 'vol', volume, members: [{ name: 'data', kind: 'tree' }], ...extra });

test('a paired peer cannot touch a volume that is not its secondary: missing, objects, commit and hello are refused', async () => {
  const obj = prep('chunk', randomBytes(1000));
  const snap = await createSnapshot(env.a, 'vol', { pool: env.aPool });
  const commit = json({ snapshot: snap.snapshot.id, manifest: snap.snapshot.manifest });
  for (const vol of ['prim', 'solo', 'other', 'nothere', '..%2Fvol', '%2e%2e', 'vol%00', 'VOL']) {
    for (const [route, body] of [
      [ROUTES.missing(vol).replace(encodeURIComponent(vol), vol), encodeIds([obj.id])],
      [ROUTES.objects(vol).replace(encodeURIComponent(vol), vol), record(obj)],
      [ROUTES.commit(vol).replace(encodeURIComponent(vol), vol), commit],
    ] as const) {
      const r = await once(route, body);
      assert.equal(r.status, 403, `${route}: ${r.body.toString()}`);
      assert.equal(r.json?.error?.code, 'NOT_AUTHORIZED', route);
    }
    assert.equal(env.b.store.has(obj.id), false, `object sent to ${vol} was stored`);
  }
  for (const vol of ['prim', 'solo', 'other']) {
    const r = await once(ROUTES.hello, helloBody(vol));
    assert.equal(r.status, 403, r.body.toString());
    assert.equal(r.json?.error?.code, 'NOT_AUTHORIZED');
    assert.equal(findVolume(env.b.catalog, vol)!.role, vol === 'prim' ? 'primary' : vol === 'solo' ? 'standalone' : 'secondary');
  }
  assert.equal(env.b.catalog.db.get<{ source_site: string }>("SELECT source_site FROM secondaries WHERE volume = 'other'")!.source_site, cIdent.id);
  assert.equal(findVolume(env.b.catalog, 'nothere'), undefined);
  await healthy();
});

test('a commit whose manifest names another source volume, or another origin site, is refused', async () => {
  const row = secondaryRow(env.b);
  const replicaBefore = listing(env.replica);
  // a's other volume, vol2, sent into vol's secondary.
  const d2 = join(env.tmp, 'a-data2');
  mkdirSync(d2);
  writeFileSync(join(d2, 'other-volume.txt'), 'vol2\n');
  createVolume(env.a, 'vol2', { role: 'primary', members: [{ path: d2, name: 'data' }] });
  const s2 = await createSnapshot(env.a, 'vol2', { pool: env.aPool });
  await sendSnapshot(env.a.store, env.client, 'vol', s2.snapshot.manifest);
  await rejectsWith(env.client.commit('vol', { snapshot: s2.snapshot.id, manifest: s2.snapshot.manifest }), ['NOT_AUTHORIZED'], /is of volume vol2, but this secondary mirrors vol/);
  await rejectsWith(env.client.commit('vol', { snapshot: s2.snapshot.id, manifest: s2.snapshot.manifest, force: true }), ['NOT_AUTHORIZED']);
  // A manifest of vol, with a's own tree, claiming to have been taken at site c.
  const sa = await createSnapshot(env.a, 'vol', { pool: env.aPool });
  const real = readManifest(env.a.store, sa.snapshot.manifest);
  await sendSnapshot(env.a.store, env.client, 'vol', sa.snapshot.manifest);
  const forged = forgeSnapshot({ volume: 'vol', origin: cIdent.id, members: real.members });
  let r = await once(ROUTES.objects('vol'), record(forged.obj));
  assert.equal(r.status, 200, r.body.toString());
  await rejectsWith(env.client.commit('vol', { snapshot: forged.id, manifest: forged.manifest }), ['NOT_AUTHORIZED'], /was taken at site .*, not by the sending peer/);
  // The manifest of one snapshot under the id of another.
  const other = forgeSnapshot({ volume: 'vol', origin: env.a.id, members: real.members });
  r = await once(ROUTES.objects('vol'), record(other.obj));
  assert.equal(r.status, 200);
  await rejectsWith(env.client.commit('vol', { snapshot: forged.id, manifest: other.manifest }), ['PROTOCOL'], /is snapshot .*, not/);
  // Members that differ from the secondary's.
  const wrongMembers = forgeSnapshot({ volume: 'vol', origin: env.a.id, members: [{ ...real.members[0], name: 'elsewhere' }] });
  r = await once(ROUTES.objects('vol'), record(wrongMembers.obj));
  assert.equal(r.status, 200);
  await rejectsWith(env.client.commit('vol', { snapshot: wrongMembers.id, manifest: wrongMembers.manifest }), ['PROTOCOL'], /has members elsewhere:tree/);
  assert.deepEqual(secondaryRow(env.b), row);
  assert.deepEqual(listing(env.replica), replicaBefore);
  rmSync(d2, { recursive: true });
  await healthy();
});

test("a commit naming a snapshot of another volume of this site (its own primary's) is refused, not applied into the replica", async () => {
  const row = secondaryRow(env.b);
  const replicaBefore = listing(env.replica);
  // b's own primary `prim` has a snapshot; a learns its ids (e.g. b replicates prim to a).
  const p = await createSnapshot(env.b, 'prim', { pool: env.daemon.engine.pool });
  for (const force of [false, true]) {
    await rejectsWith(env.client.commit('vol', { snapshot: p.snapshot.id, manifest: p.snapshot.manifest, force }), ['NOT_AUTHORIZED'], /is not a snapshot of volume vol here/);
  }
  assert.deepEqual(secondaryRow(env.b), row);
  assert.deepEqual(listing(env.replica), replicaBefore);
  assert.equal(existsSync(join(env.replica, 'own.txt')), false);
  // And into c's secondary, with c's snapshot: a is not c.
  await rejectsWith(env.client.commit('other', { snapshot: p.snapshot.id, manifest: p.snapshot.manifest }), ['NOT_AUTHORIZED']);
  await healthy();
});

test('a replayed older snapshot is refused and the replica stays at the newer one', async () => {
  // S1 named (so b keeps it after S2 is applied), S2, S3 unnamed.
  writeFileSync(join(env.aData, 'replay.txt'), 'v1\n');
  const s1 = await createSnapshot(env.a, 'vol', { pool: env.aPool, name: 'keep-s1' });
  await sendSnapshot(env.a.store, env.client, 'vol', s1.snapshot.manifest);
  assert.equal((await env.client.commit('vol', { snapshot: s1.snapshot.id, manifest: s1.snapshot.manifest })).applied, true);
  writeFileSync(join(env.aData, 'replay.txt'), 'v2\n');
  const s2 = await createSnapshot(env.a, 'vol', { pool: env.aPool });
  await sendSnapshot(env.a.store, env.client, 'vol', s2.snapshot.manifest);
  assert.equal((await env.client.commit('vol', { snapshot: s2.snapshot.id, manifest: s2.snapshot.manifest })).applied, true);
  writeFileSync(join(env.aData, 'replay.txt'), 'v3\n');
  const s3 = await createSnapshot(env.a, 'vol', { pool: env.aPool });
  await sendSnapshot(env.a.store, env.client, 'vol', s3.snapshot.manifest);
  assert.equal((await env.client.commit('vol', { snapshot: s3.snapshot.id, manifest: s3.snapshot.manifest })).applied, true);
  assertTreesEqual(env.replica, env.aData);
  // S2 was released at b: its objects are sent again first, so the commit finds them all.
  await sendSnapshot(env.a.store, env.client, 'vol', s2.snapshot.manifest);
  for (const [s, what] of [[s2, 'released, objects resent'], [s1, 'still at b (named)']] as const) {
    for (const force of [false, true]) {
      await rejectsWith(env.client.commit('vol', { snapshot: s.snapshot.id, manifest: s.snapshot.manifest, force }), ['PROTOCOL'], /older than .* a replayed or out-of-order snapshot is refused/);
      assert.equal(secondaryRow(env.b).applied, s3.snapshot.id, what);
      assertTreesEqual(env.replica, env.aData);
    }
  }
  // A forged manifest with a new id but an older time.
  const m3 = readManifest(env.a.store, s3.snapshot.manifest);
  const old = forgeSnapshot({ volume: 'vol', origin: env.a.id, members: m3.members, time: m3.time - 60_000 });
  assert.equal((await once(ROUTES.objects('vol'), record(old.obj))).status, 200);
  await rejectsWith(env.client.commit('vol', { snapshot: old.id, manifest: old.manifest, force: true }), ['PROTOCOL'], /older than/);
  // The applied one again is a no-op.
  assert.equal((await env.client.commit('vol', { snapshot: s3.snapshot.id, manifest: s3.snapshot.manifest })).applied, true);
  assert.equal(secondaryRow(env.b).applied, s3.snapshot.id);
  await healthy();
});

test('volume and member names from the network are validated; a new replica is made only under <home>/replicas', async () => {
  const replicasBefore = readdirSync(env.b.paths.replicas).sort();
  const volumesBefore = env.b.catalog.db.all<{ name: string }>('SELECT name FROM volumes ORDER BY name');
  const badVolumes = ['../x', 'a/b', '.hidden', '..', '.', '', '/abs', 'x'.repeat(129), 'a\u0000b', 'a b', '-dash', 'é'];
  for (const v of badVolumes) {
    for (const body of [helloBody(v), json({ protocol: PROTOCOL_VERSION, sourceVolume: v, volume: 'okname', members: [{ name: 'data', kind: 'tree' }] })]) {
      const r = await once(ROUTES.hello, body);
      assert.equal(r.status, 400, `${JSON.stringify(v)}: ${r.body.toString()}`);
      assert.equal(r.json?.error?.code, 'PROTOCOL');
    }
  }
  for (const m of ['..', 'a/b', '.m', '', '../../etc']) {
    const r = await once(ROUTES.hello, json({ protocol: PROTOCOL_VERSION, sourceVolume: 'vol', volume: 'okname', members: [{ name: m, kind: 'tree' }] }));
    assert.equal(r.status, 400, `member ${JSON.stringify(m)}: ${r.body.toString()}`);
  }
  for (const members of [[{ name: 'data', kind: 'dir' }], [{ name: 'data', kind: 'tree' }, { name: 'data', kind: 'tree' }], [], 'data', [null]]) {
    const r = await once(ROUTES.hello, json({ protocol: PROTOCOL_VERSION, sourceVolume: 'vol', volume: 'okname', members }));
    assert.equal(r.status, 400, `members ${JSON.stringify(members)}: ${r.body.toString()}`);
  }
  assert.deepEqual(readdirSync(env.b.paths.replicas).sort(), replicasBefore);
  assert.deepEqual(env.b.catalog.db.all<{ name: string }>('SELECT name FROM volumes ORDER BY name'), volumesBefore);

  // A planted symlink or directory where the new replica would go: refused, nothing made through it.
  symlinkSync(env.outside, join(env.b.paths.replicas, 'planted'));
  symlinkSync(join(env.outside, 'newdir'), join(env.b.paths.replicas, 'dangling'));
  for (const v of ['planted', 'dangling']) {
    const r = await once(ROUTES.hello, helloBody(v));
    assert.ok(r.status >= 400 && r.status < 600, r.body.toString());
    assert.equal(findVolume(env.b.catalog, v), undefined);
  }
  assert.equal(existsSync(join(env.outside, 'newdir')), false);
  assert.equal(existsSync(join(env.outside, 'data')), false);
  rmSync(join(env.b.paths.replicas, 'planted'));
  rmSync(join(env.b.paths.replicas, 'dangling'));
  assert.deepEqual(env.outsideListing(), outsideBefore);

  // A valid new name: the replica is created under <home>/replicas, at the site's choice of path.
  const r = await once(ROUTES.hello, json({ protocol: PROTOCOL_VERSION, sourceVolume: '..evil', volume: 'fresh', members: [{ name: 'data', kind: 'tree' }] }));
  assert.equal(r.status, 400, 'source volume names are validated too');
  const ok = await once(ROUTES.hello, json({ protocol: PROTOCOL_VERSION, sourceVolume: 'vol', volume: 'fresh', members: [{ name: 'data', kind: 'tree' }, { name: 'img', kind: 'image' }] }));
  assert.equal(ok.status, 200, ok.body.toString());
  const replicas = (ok.json as unknown as { replicas: Array<{ path: string }> }).replicas.map((x) => x.path);
  assert.deepEqual(replicas, [join(env.b.paths.replicas, 'fresh', 'data'), join(env.b.paths.replicas, 'fresh', 'img')]);
  assert.deepEqual(readdirSync(env.b.paths.replicas).sort(), [...replicasBefore, 'fresh'].sort());
  // Outside the replicas nothing changed: the only new paths are the fresh replica's.
  const now = env.outsideListing();
  const added = now.filter((l) => !outsideBefore.includes(l)).map((l) => l.split(' ')[0]);
  const removed = outsideBefore.filter((l) => !now.includes(l)).map((l) => l.split(' ')[0]);
  assert.deepEqual(removed, ['b/replicas']);
  assert.deepEqual(added, ['b/replicas', 'b/replicas/fresh', 'b/replicas/fresh/data', 'b/replicas/fresh/img']);
  outsideBefore = now;
  await healthy();
});

test('a volume name in the URL that is not valid percent-encoding is a 4xx, not an internal error', async () => {
  const r = await once('/v1/replication/%E0%A4%A/missing', Buffer.alloc(0));
  assert.ok(r.status >= 400 && r.status < 500, `HTTP ${r.status}: ${r.body.toString()}`);
});
