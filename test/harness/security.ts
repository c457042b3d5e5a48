// Shared pieces of the security tests (test/integration/security-*.test.ts):
// hand-built object bytes (the encoders refuse invalid values, so hostile
// objects are built here byte by byte, per docs/formats.md), a receiving site
// in-process or behind a real daemon, raw HTTP/2 clients, and a listing of
// everything the test controls outside the replica, to show it is untouched.
import http2 from 'node:http2';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hashBytes, newSnapshotId, type ObjectId, type SnapshotId } from '../../src/core/ids.ts';
import { CODEC_NONE, type ObjectKind, type PreparedObject } from '../../src/store/types.ts';
import { encodeSnapshot } from '../../src/snapshot/format.ts';
import type { MemberKind } from '../../src/snapshot/model.ts';
import { Site } from '../../src/site/site.ts';
import { SiteReceiver } from '../../src/site/receiver.ts';
import { ChunkPool } from '../../src/snapshot/chunk-pool.ts';
import { PROTOCOL_VERSION, type CommitResponse } from '../../src/replication/types.ts';
import { Engine } from '../../src/site/engine.ts';
import { Daemon } from '../../src/app/daemon.ts';
import { addPeer, type Peer } from '../../src/site/peers.ts';
import { loadIdentity, type SiteIdentity } from '../../src/transport/identity.ts';
import { PeerClient } from '../../src/transport/client.ts';
import { createVolume } from '../../src/site/volumes.ts';
import { createSnapshot } from '../../src/site/snapshots.ts';
import { runMirrorUpdate } from '../../src/replication/driver/run.ts';
import type { UpdateResult } from '../../src/replication/driver/types.ts';
import type { Receiver } from '../../src/replication/types.ts';
import { getMirror } from '../../src/catalog/mirrors.ts';
import { snapshotById } from '../../src/catalog/snapshots.ts';
import { isFerryError } from '../../src/core/errors.ts';
import { createMirror, updateSource } from '../../src/site/mirrors.ts';
import { assertTreesEqual, tempDir, varint } from '../helpers.ts';

// ---------------------------------------------------------------- bytes

export { varint };

export const T = { file: 1, dir: 2, symlink: 3, hardlink: 4, chardev: 5, blockdev: 6, fifo: 7, socket: 8 } as const;

export interface RawEntry {
  name: Buffer | string;
  type: number;
  mode?: number;
  uid?: number;
  gid?: number;
  mtimeNs?: bigint;
  size?: number;
  chunks?: string[];
  tree?: string;
  target?: Buffer | string;
  rdev?: number;
}

const buf = (b: Buffer | string) => (Buffer.isBuffer(b) ? b : Buffer.from(b, 'latin1'));

/** A tree object's bytes exactly as given: no validation, no sorting (docs/formats.md, "Tree"). */
export function forgeTree(entries: RawEntry[]): Buffer {
  const parts: Buffer[] = [Buffer.from('FTRE'), Buffer.from([1]), varint(entries.length)];
  for (const e of entries) {
    const name = buf(e.name);
    const mt = Buffer.alloc(8);
    mt.writeBigInt64LE(e.mtimeNs ?? 1_700_000_000_000_000_000n);
    const target = e.target === undefined ? undefined : buf(e.target);
    const size = e.size ?? (e.type === T.symlink && target ? target.length : 0);
    parts.push(varint(name.length), name, Buffer.from([e.type]), varint(e.mode ?? 0o644), varint(e.uid ?? 0), varint(e.gid ?? 0), mt, varint(size), varint(0));
    if (e.type === T.file) {
      parts.push(varint(e.chunks?.length ?? 0));
      for (const c of e.chunks ?? []) parts.push(Buffer.from(c, 'hex'));
    } else if (e.type === T.dir) parts.push(Buffer.from(e.tree!, 'hex'));
    else if (e.type === T.symlink || e.type === T.hardlink) parts.push(varint(target!.length), target!);
    else if (e.type === T.chardev || e.type === T.blockdev) parts.push(varint(e.rdev ?? 0));
  }
  return Buffer.concat(parts);
}

/** An object as a peer sends it (codec none), named by the hash of its bytes. */
export function prep(kind: ObjectKind, raw: Buffer): PreparedObject {
  return { kind, id: hashBytes(raw), rawLength: raw.length, codec: CODEC_NONE, stored: raw };
}

let clockMs = Date.now();
/** A snapshot manifest object; times (and so ids) increase with every call. */
export function forgeSnapshot(o: { volume: string; origin: string; members: Array<{ name: string; kind: MemberKind; root: string }>; name?: string | null; time?: number }): { obj: PreparedObject; id: SnapshotId; manifest: ObjectId; time: number } {
  const time = o.time ?? (clockMs = Math.max(Date.now(), clockMs + 1));
  const id = newSnapshotId({ now: () => time });
  const raw = encodeSnapshot({ id, volume: o.volume, name: o.name ?? null, time, origin: o.origin, parent: null, members: o.members.map((m) => ({ ...m, root: m.root as ObjectId })) });
  const obj = prep('snapshot', raw);
  return { obj, id, manifest: obj.id, time };
}

export async function* iter<T>(xs: T[]): AsyncGenerator<T> {
  for (const x of xs) yield x;
}

/** [kind u8][codec u8][raw u32][stored u32][id 32] */
export function recordHeader(kind: number, codec: number, raw: number, stored: number, id: Buffer | string): Buffer {
  const h = Buffer.alloc(42);
  h[0] = kind;
  h[1] = codec;
  h.writeUInt32LE(raw, 2);
  h.writeUInt32LE(stored, 6);
  (typeof id === 'string' ? Buffer.from(id, 'hex') : id).copy(h, 10);
  return h;
}

export function record(o: PreparedObject): Buffer {
  const kinds = ['chunk', 'tree', 'image', 'blocklist', 'snapshot'];
  return Buffer.concat([recordHeader(kinds.indexOf(o.kind), o.codec, o.rawLength, o.stored.length, o.id), Buffer.from(o.stored)]);
}

// ---------------------------------------------------------------- the file system we control

/**
 * Every path under `root` (relative), with type, mode, owner, size, content
 * hash of files and target of symlinks. Paths in `skip` (absolute) and below
 * are left out; directory mtimes are not recorded (they move whenever a
 * child is added, e.g. the catalog's WAL beside it).
 */
export function listing(root: string, skip: string[] = []): string[] {
  const out: string[] = [];
  const walk = (abs: string, rel: string) => {
    for (const n of readdirSync(abs).sort()) {
      const p = join(abs, n);
      if (skip.some((s) => p === s || p.startsWith(s + '/'))) continue;
      const r = rel ? `${rel}/${n}` : n;
      const st = lstatSync(p);
      const base = `${r} mode=${(st.mode & 0o7777).toString(8)} uid=${st.uid} ino=${st.ino} nlink=${st.nlink}`;
      if (st.isSymbolicLink()) out.push(`${base} -> ${readlinkSync(p)}`);
      else if (st.isDirectory()) {
        out.push(`${base} dir`);
        walk(p, r);
      } else if (st.isFile()) out.push(`${base} file ${st.size} ${createHash('sha256').update(readFileSync(p)).digest('hex').slice(0, 16)} mtime=${st.mtimeMs}`);
      else out.push(`${base} other`);
    }
  };
  walk(root, '');
  return out;
}

/** Canaries: a directory beside the replica root, one beside the volume's replica, and `outside`, a symlink target. */
export function plantCanaries(tmp: string, home: string): { outside: string; secret: string } {
  const outside = join(tmp, 'outside');
  mkdirSync(join(outside, 'sub'), { recursive: true });
  writeFileSync(join(outside, 'secret.txt'), 'outside secret\n', { mode: 0o640 });
  writeFileSync(join(outside, 'f'), 'outside f\n', { mode: 0o640 });
  writeFileSync(join(outside, 'sub', 'inner.txt'), 'inner\n', { mode: 0o640 });
  mkdirSync(join(home, 'canary'), { recursive: true });
  writeFileSync(join(home, 'canary', 'c.txt'), 'canary\n');
  mkdirSync(join(home, 'replicas', 'zz-canary'), { recursive: true });
  writeFileSync(join(home, 'replicas', 'zz-canary', 'c.txt'), 'canary\n');
  return { outside, secret: join(outside, 'secret.txt') };
}

/** What legitimately changes in a site home: catalog, store, lock, daemon files. */
export function homeChurn(home: string): string[] {
  return ['catalog.db', 'catalog.db-wal', 'catalog.db-shm', 'catalog.db-journal', 'store', 'lock', 'daemon.json', 'ferry.sock'].map((n) => join(home, n));
}

// ---------------------------------------------------------------- a receiving site, in-process

export interface ReceiverEnv {
  tmp: string;
  b: Site;
  pool: ChunkPool;
  peer: string;
  rx: SiteReceiver;
  /** the tree member replica of volume `vol` (member `data`) */
  replica: string;
  outside: string;
  /** with `source`: the sending site, its volume `vol` (member `data` at aData) */
  a?: Site;
  aData: string;
  /** with `source`: snapshot a's vol, send it to b in-process and commit */
  send(opts?: { force?: boolean; name?: string }): Promise<CommitResponse & { id: string; manifest: ObjectId }>;
  /** listing of everything under tmp but the replica, the source data and the homes' churn */
  outsideListing(): string[];
  close(): Promise<void>;
}

export async function receiverEnv(o: { source?: boolean } = {}): Promise<ReceiverEnv> {
  const t = tempDir('ferry-sec-');
  const b = Site.init(join(t.path, 'b'), 'b');
  const a = o.source ? Site.init(join(t.path, 'a'), 'a') : undefined;
  const peerId = a?.id ?? 'PEERAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
  const pool = new ChunkPool({ workers: 1 });
  const rx = new SiteReceiver(b, peerId, pool);
  const hello = await rx.hello({ protocol: PROTOCOL_VERSION, sourceVolume: 'vol', volume: 'vol', members: [{ name: 'data', kind: 'tree' }] });
  const replica = hello.replicas[0].path;
  const { outside } = plantCanaries(t.path, b.paths.home);
  const aData = join(t.path, 'a-data');
  if (a) {
    mkdirSync(aData);
    createVolume(a, 'vol', { role: 'primary', members: [{ path: aData, name: 'data' }] });
    // a's mirror to b, for the legitimate path (the real driver, with rx as the destination).
    addPeer(a, 'b', 'https://127.0.0.1:9', b.id);
    createMirror(a, { volume: 'vol', to: 'b' });
  }
  const skip = [join(b.paths.home, 'replicas', 'vol'), ...homeChurn(b.paths.home), ...(a ? [...homeChurn(a.paths.home), aData] : [])];
  return {
    tmp: t.path,
    b,
    pool,
    peer: peerId,
    rx,
    replica,
    outside,
    a,
    aData,
    // The legitimate path: the real replication driver (capture, negotiation, send, commit), as the
    // engine runs it; an apply refused at b (writes found in the replica) is answered as the commit was.
    send: async (so = {}) => {
      if (!a) throw new Error('receiverEnv without source');
      const named = so.name ? (await createSnapshot(a, 'vol', { pool, name: so.name })).snapshot.id : undefined;
      const manifestOf = (id: string) => snapshotById(a.catalog, id)!.manifest as ObjectId;
      try {
        const r = await runMirrorUpdate({ source: updateSource(a, pool), connect: () => rx }, 'vol', 'b', { initialize: !getMirror(a.catalog, 'vol', 'b').base, force: so.force, ...(named ? { snapshot: named } : {}) });
        return { snapshot: r.snapshot, applied: r.applied, ...(r.writesSnapshot ? { writesSnapshot: r.writesSnapshot } : {}), id: r.snapshot, manifest: manifestOf(r.snapshot) };
      } catch (err) {
        if (!isFerryError(err, 'REPLICA_WRITTEN')) throw err;
        const d = err.details as { writesSnapshot?: string; transferred: string };
        return { snapshot: d.transferred, applied: false, refused: err.message, ...(d.writesSnapshot ? { writesSnapshot: d.writesSnapshot } : {}), id: d.transferred, manifest: manifestOf(d.transferred) };
      }
    },
    outsideListing: () => listing(t.path, skip),
    close: async () => {
      await pool.close();
      a?.close();
      b.close();
      t.cleanup();
    },
  };
}

export function secondaryRow(b: Site, volume = 'vol'): { applied: string | null; applying: string | null; consistent: number } {
  return b.catalog.db.get('SELECT applied, applying, consistent FROM secondaries WHERE volume = ?', volume)!;
}

export function applyEvents(b: Site): number {
  return b.catalog.db.get<{ n: number }>("SELECT count(*) AS n FROM events WHERE kind = 'replica.apply'")!.n;
}

/** Assert that `p` rejects with a FerryError of one of `codes`; returns it. */
export async function rejectsWith(p: Promise<unknown>, codes: string[], message?: RegExp): Promise<{ code: string; message: string }> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  assert.ok(err, `expected a rejection with ${codes.join('/')}`);
  const code = (err as { code?: string }).code ?? '';
  assert.ok(codes.includes(code), `expected ${codes.join('/')}, got ${code}: ${(err as Error).message}`);
  if (message) assert.match((err as Error).message, message);
  return { code, message: (err as Error).message };
}

// ---------------------------------------------------------------- a receiving site behind a real daemon

/**
 * The legitimate path: an update of `site`'s mirror of `volume` to `peer` (initialize while it has no
 * base) by the real replication driver, runMirrorUpdate over the site's own update source, with
 * `receiver` as the destination (a PeerClient to the daemon). Asserts it was applied.
 */
export async function updateByDriver(site: Site, pool: ChunkPool, receiver: Receiver, volume: string, peer: string): Promise<UpdateResult> {
  const initialize = !getMirror(site.catalog, volume, peer).base;
  const r = await runMirrorUpdate({ source: updateSource(site, pool), connect: () => receiver }, volume, peer, { initialize });
  assert.equal(r.applied, true, `legit update not applied: ${JSON.stringify(r)}`);
  return r;
}

export interface NetEnv {
  tmp: string;
  /** the receiving site (held by the daemon, in this process) */
  b: Site;
  daemon: Daemon;
  url: string;
  /** the sending site: a primary volume `vol` with its data directory */
  a: Site;
  aIdent: SiteIdentity;
  aPool: ChunkPool;
  aData: string;
  /** PeerClient from a to b */
  client: PeerClient;
  peerB: Peer;
  /** the replica at b of a's `vol` (after `legit()` ran once) */
  replica: string;
  outside: string;
  outsideListing(): string[];
  /**
   * A legitimate update of a's mirror of vol to b, by the real replication driver (the engine's
   * runMirrorUpdate: capture, send, commit, move the base) over `client`; the replica must equal a's data.
   */
  legit(): Promise<void>;
  close(): Promise<void>;
}

let legitN = 0;

export async function netEnv(): Promise<NetEnv> {
  const t = tempDir('ferry-secnet-');
  const b = Site.init(join(t.path, 'b'), 'b');
  const a = Site.init(join(t.path, 'a'), 'a');
  const engine = new Engine(b);
  const daemon = new Daemon(engine);
  const info = await daemon.start('127.0.0.1:0');
  const url = `https://127.0.0.1:${info.port}`;
  addPeer(b, 'a', 'https://127.0.0.1:1', a.id);
  const peerB = addPeer(a, 'b', url, b.id);
  const aIdent = loadIdentity(a.paths.identity);
  const aPool = new ChunkPool();
  const aData = join(t.path, 'a-data');
  mkdirSync(aData);
  writeFileSync(join(aData, 'hello.txt'), 'hello\n');
  createVolume(a, 'vol', { role: 'primary', members: [{ path: aData, name: 'data' }] });
  createMirror(a, { volume: 'vol', to: 'b' });
  const client = new PeerClient(aIdent, peerB);
  const { outside } = plantCanaries(t.path, b.paths.home);
  const replica = join(b.paths.replicas, 'vol', 'data');
  const skip = [join(b.paths.home, 'replicas', 'vol'), ...homeChurn(b.paths.home), ...homeChurn(a.paths.home), aData];
  const env: NetEnv = {
    tmp: t.path,
    b,
    daemon,
    url,
    a,
    aIdent,
    aPool,
    aData,
    client,
    peerB,
    replica,
    outside,
    outsideListing: () => listing(t.path, skip),
    legit: async () => {
      writeFileSync(join(aData, `legit-${++legitN}.txt`), `legit ${legitN}\n`);
      await updateByDriver(a, aPool, client, 'vol', 'b');
      assertTreesEqual(replica, aData);
    },
    close: async () => {
      client.close();
      // Raw sessions a test left open (even with streams half-open) must not hold up the daemon's stop.
      for (const rs of rawSessions) rs.destroy();
      rawSessions.clear();
      await daemon.stop();
      await aPool.close();
      a.close();
      b.close();
      t.cleanup();
    },
  };
  return env;
}

// ---------------------------------------------------------------- raw HTTP/2

const rawSessions = new Set<http2.ClientHttp2Session>();

/** A raw HTTP/2 session to the daemon, authenticating as `ident` (or with no certificate at all). */
export function connectRaw(url: string, ident?: SiteIdentity): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const s = http2.connect(url, {
      ...(ident ? { key: ident.keyPem, cert: ident.certPem } : {}),
      rejectUnauthorized: false,
      checkServerIdentity: () => undefined,
    });
    rawSessions.add(s);
    s.once('close', () => rawSessions.delete(s));
    s.once('connect', () => {
      s.on('error', () => {});
      resolve(s);
    });
    s.once('error', reject);
  });
}

export interface RawAnswer {
  status: number;
  body: Buffer;
  json?: { error?: { code: string; message: string } } & Record<string, unknown>;
}

/**
 * One request. `body` is written piece by piece; with `end: false` the
 * request is left open (the answer must come without the body ending).
 */
export function rawRequest(session: http2.ClientHttp2Session, path: string, body: Buffer | Buffer[] | null, opts: { method?: string; end?: boolean; timeoutMs?: number } = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':method': opts.method ?? 'POST', ':path': path, 'content-type': 'application/octet-stream' });
    const timer = setTimeout(() => {
      req.close(http2.constants.NGHTTP2_CANCEL);
      reject(new Error(`no answer to ${path} within ${opts.timeoutMs ?? 20_000} ms`));
    }, opts.timeoutMs ?? 20_000);
    let status = 0;
    const parts: Buffer[] = [];
    req.on('response', (h) => {
      status = Number(h[':status']);
    });
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('error', () => {});
    const finish = () => {
      clearTimeout(timer);
      const b = Buffer.concat(parts);
      let json;
      try {
        json = JSON.parse(b.toString('utf8'));
      } catch {
        json = undefined;
      }
      if (!req.closed) req.close(http2.constants.NGHTTP2_CANCEL);
      if (status === 0) reject(new Error(`stream to ${path} closed without an answer`));
      else resolve({ status, body: b, json });
    };
    req.on('end', finish);
    req.on('close', () => {
      if (status === 0) finish();
    });
    const pieces = body === null ? [] : Array.isArray(body) ? body : [body];
    (async () => {
      for (const p of pieces) {
        if (req.closed || req.destroyed) return;
        if (!req.write(p)) await new Promise<void>((r) => {
          req.once('drain', r);
          req.once('close', r);
        });
      }
      if (opts.end !== false && !req.closed) req.end();
    })().catch(() => {});
  });
}

/** Peak RSS and array-buffer growth (MiB) while `fn` runs, sampled every few ms. */
export async function memoryGrowth<T>(fn: () => Promise<T>): Promise<{ result: T; rssMiB: number; abMiB: number }> {
  const m0 = process.memoryUsage();
  let rss = m0.rss;
  let ab = m0.arrayBuffers;
  const timer = setInterval(() => {
    const m = process.memoryUsage();
    rss = Math.max(rss, m.rss);
    ab = Math.max(ab, m.arrayBuffers);
  }, 5);
  try {
    const result = await fn();
    const m = process.memoryUsage();
    rss = Math.max(rss, m.rss);
    ab = Math.max(ab, m.arrayBuffers);
    return { result, rssMiB: (rss - m0.rss) / 2 ** 20, abMiB: (ab - m0.arrayBuffers) / 2 ** 20 };
  } finally {
    clearInterval(timer);
  }
}
