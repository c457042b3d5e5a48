// Removing mirrors and volumes, on two real sites in one process (the sender's
// engine talks to the destination's receiver directly; no network): removal is
// one function every caller uses, so it never leaves a hold, a peer-snapshot
// row or a running job behind; a volume with a mirror is refused with
// VOLUME_IN_USE (not a foreign-key failure); a destination volume whose mirror
// was removed (SnapMirror destroy), or that was failed over, can be removed
// with --force; a re-created mirror inherits nothing of the old one; and a
// restart releases holds whose holder no longer exists, saying so in an event.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Site } from '../../src/site/site.ts';
import { Engine } from '../../src/site/engine.ts';
import { runOp } from '../../src/app/ops.ts';
import { addPeer } from '../../src/site/peers.ts';
import { createVolume } from '../../src/site/volumes.ts';
import { isFerryError } from '../../src/core/errors.ts';
import type { Receiver } from '../../src/replication/types.ts';
import { tempDir } from '../helpers.ts';

interface Pair {
  a: Site;
  b: Site;
  ea: Engine;
  eb: Engine;
  data: string;
  /** while set, a commit at b waits for it (or for its caller's abort) */
  gate: { promise: Promise<void>; open: () => void } | undefined;
  /** a commit is waiting at the gate */
  waiting: boolean;
  close(): Promise<void>;
}

function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}

/** a is the primary of `vol` (a small tree), paired with b; a's engine reaches b's receiver in-process. */
async function pair(tmp: string): Promise<Pair> {
  const a = Site.init(join(tmp, 'a'), 'a');
  const b = Site.init(join(tmp, 'b'), 'b');
  addPeer(a, 'b', 'https://127.0.0.1:9', b.id);
  addPeer(b, 'a', 'https://127.0.0.1:9', a.id);
  const data = join(tmp, 'data');
  mkdirSync(join(data, 'etc'), { recursive: true });
  for (let i = 0; i < 3; i++) writeFileSync(join(data, 'etc', `f${i}.conf`), `setting ${i}\n`.repeat(40));
  createVolume(a, 'vol', { members: [{ path: data }] });
  const eb = new Engine(b);
  const p: Pair = {
    a, b, eb, data, gate: undefined, waiting: false,
    ea: undefined as never,
    async close() {
      await p.ea.close();
      await eb.close();
      a.close();
      b.close();
    },
  };
  p.ea = new Engine(a, {
    connect: () => {
      const rx = eb.receiverFor(a.id);
      const gated: Receiver = {
        hello: (req) => rx.hello(req),
        missing: (v, ids) => rx.missing(v, ids),
        put: (v, objects) => rx.put(v, objects),
        async commit(v, req, signal) {
          if (p.gate) {
            p.waiting = true;
            await new Promise<void>((resolve, reject) => {
              p.gate!.promise.then(resolve);
              signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
            }).finally(() => (p.waiting = false));
          }
          return rx.commit(v, req);
        },
      };
      return gated;
    },
  });
  return p;
}

async function withPair(fn: (p: Pair, tmp: string) => Promise<void>): Promise<void> {
  const tmp = tempDir();
  const p = await pair(tmp.path);
  try {
    await fn(p, tmp.path);
  } finally {
    await p.close();
    tmp.cleanup();
  }
}

const op = (e: Engine, name: string, args: Record<string, unknown>) => runOp({ engine: e, daemon: true }, name, args);
const holders = (s: Site, like: string) => s.catalog.db.all<{ holder: string; snapshot: string }>('SELECT holder, snapshot FROM holds WHERE holder LIKE ?', like);

async function until(what: string, fn: () => boolean): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('mirror remove during an update cancels the job and leaves no hold, row or job; the volume can then be removed', async () => {
  await withPair(async (p) => {
    await op(p.ea, 'mirror.create', { volume: 'vol', to: 'b' });
    await op(p.ea, 'mirror.initialize', { volume: 'vol', to: 'b', wait: true });
    // A peer snapshot: a row per mirror, and a hold of its own.
    await op(p.ea, 'snapshot.create', { volume: 'vol', name: 'p1', peer: true, wait: true });
    assert.equal(p.a.catalog.db.get<{ state: string }>("SELECT state FROM peer_snapshots WHERE mirror = 'vol@b'")?.state, 'present');
    // An update held at its commit: the target is held in flight, the base is held.
    writeFileSync(join(p.data, 'etc', 'f0.conf'), 'changed\n');
    p.gate = gate();
    const job = op(p.ea, 'mirror.update', { volume: 'vol', to: 'b', wait: true, force: true });
    job.catch(() => {});
    await until('the update to reach its commit', () => p.waiting);
    assert.ok(holders(p.a, 'mirror:%:inflight').length === 1, 'the target is held in flight');
    const removing = op(p.ea, 'mirror.remove', { volume: 'vol', to: 'b' });
    // Whatever the removal does with the job, the commit is let through afterwards.
    setTimeout(() => p.gate?.open(), 300).unref();
    await removing;
    await job.catch(() => {});
    assert.deepEqual(holders(p.a, 'mirror:%'), [], 'no hold of the removed mirror is left (base, in flight)');
    assert.deepEqual(p.a.catalog.db.all('SELECT * FROM peer_snapshots'), [], 'no peer-snapshot row of the removed mirror is left');
    assert.deepEqual(p.a.catalog.db.all('SELECT * FROM mirrors'), []);
    // The volume has no mirror now: removed with --force (its peer snapshot's own hold goes with it).
    const r = (await op(p.ea, 'volume.remove', { name: 'vol', force: true })) as { snapshotsRemoved: number };
    assert.ok(r.snapshotsRemoved >= 2);
    assert.deepEqual(p.a.catalog.db.all('SELECT * FROM holds'), []);
  });
});

test('volume remove with a mirror (never initialized) is VOLUME_IN_USE, not a foreign-key failure', async () => {
  await withPair(async (p) => {
    await op(p.ea, 'mirror.create', { volume: 'vol', to: 'b' });
    for (const force of [false, true]) {
      await assert.rejects(op(p.ea, 'volume.remove', { name: 'vol', force }), (err) => isFerryError(err, 'VOLUME_IN_USE') && /mirror remove vol --to b/.test(err.message));
    }
    assert.ok(p.a.catalog.db.get("SELECT 1 FROM volumes WHERE name = 'vol'"), 'nothing was removed');
  });
});

test('a destination volume is removed with --force once its mirror is removed (snapmirror destroy), and after a failover', async () => {
  await withPair(async (p, tmp) => {
    createVolume(p.a, 'vol2', { members: [{ path: mkdirp(join(tmp, 'data2')) }] });
    writeFileSync(join(tmp, 'data2', 'x.txt'), 'x\n');
    for (const v of ['vol', 'vol2']) {
      await op(p.ea, 'mirror.create', { volume: v, to: 'b' });
      await op(p.ea, 'mirror.initialize', { volume: v, to: 'b', wait: true });
    }
    await op(p.ea, 'snapshot.create', { volume: 'vol', name: 'p1', peer: true, wait: true });
    const replica = p.b.catalog.db.get<{ path: string }>("SELECT path FROM members WHERE volume = 'vol'")!.path;
    // snapmirror destroy: the mirror goes at the source, then the volume at the destination.
    await op(p.ea, 'mirror.remove', { volume: 'vol', to: 'b' });
    await assert.rejects(op(p.eb, 'volume.remove', { name: 'vol' }), (err) => isFerryError(err, 'VOLUME_IN_USE') && /--force/.test(err.message));
    await op(p.eb, 'volume.remove', { name: 'vol', force: true });
    assert.equal(p.b.catalog.db.get("SELECT 1 FROM volumes WHERE name = 'vol'"), undefined);
    assert.equal(p.b.catalog.db.get("SELECT 1 FROM secondaries WHERE volume = 'vol'"), undefined, 'the secondary relation ended with the volume');
    assert.ok(existsSync(join(replica, 'etc', 'f0.conf')), 'removing a volume definition never deletes the replica\'s files');
    // vol2 is failed over at b (its old primary cannot be told here: --force), then removed.
    await op(p.eb, 'failover', { volume: 'vol2', force: true, repoint: false });
    assert.equal(p.b.catalog.db.get<{ role: string }>("SELECT role FROM volumes WHERE name = 'vol2'")!.role, 'primary');
    await op(p.eb, 'volume.remove', { name: 'vol2', force: true });
    assert.equal(p.b.catalog.db.get("SELECT 1 FROM volumes WHERE name = 'vol2'"), undefined);
    assert.deepEqual(p.b.catalog.db.all('SELECT * FROM holds'), []);
  });
});

test('a mirror created again to the same site inherits no peer-snapshot rows: its peer snapshots are pending, then delivered', async () => {
  await withPair(async (p) => {
    await op(p.ea, 'mirror.create', { volume: 'vol', to: 'b' });
    await op(p.ea, 'mirror.initialize', { volume: 'vol', to: 'b', wait: true });
    const created = (await op(p.ea, 'snapshot.create', { volume: 'vol', name: 'p1', peer: true, wait: true })) as { snapshot: { id: string } };
    const p1 = created.snapshot.id;
    await op(p.ea, 'mirror.remove', { volume: 'vol', to: 'b' });
    const replica = p.b.catalog.db.get<{ path: string }>("SELECT path FROM members WHERE volume = 'vol'")!.path;
    await op(p.eb, 'volume.remove', { name: 'vol', force: true });
    renameSync(join(replica, '..'), join(replica, '..', '..', 'vol.old')); // the files stay; out of the way of a new replica
    // The same site again: the new mirror has the same id, and b no longer has p1.
    await op(p.ea, 'mirror.create', { volume: 'vol', to: 'b' });
    const peers = (await op(p.ea, 'snapshot.peers', { volume: 'vol' })) as Array<{ id: string; secondaries: Array<{ mirror: string; state: string }> }>;
    assert.deepEqual(peers.find((x) => x.id === p1)?.secondaries.map((s) => s.state), ['pending'], 'not present at a secondary that never received it');
    await op(p.ea, 'mirror.initialize', { volume: 'vol', to: 'b', wait: true });
    assert.equal(p.a.catalog.db.get<{ state: string }>('SELECT state FROM peer_snapshots WHERE snapshot = ?', p1)?.state, 'present');
    const atB = p.b.catalog.db.get<{ name: string }>("SELECT name FROM snapshots WHERE id = ? AND volume = 'vol'", p1);
    assert.equal(atB?.name, 'p1', 'delivered to the new secondary under the same id and name');
    assert.ok(p.b.catalog.db.get("SELECT 1 FROM holds WHERE snapshot = ? AND holder = 'peer'", p1));
  });
});

test('a restart releases holds whose holder no longer exists, and says so in an event', async () => {
  const tmp = tempDir();
  const p = await pair(tmp.path);
  const home = join(tmp.path, 'a');
  try {
    await op(p.ea, 'mirror.create', { volume: 'vol', to: 'b' });
    await op(p.ea, 'mirror.initialize', { volume: 'vol', to: 'b', wait: true });
    const base = p.a.catalog.db.get<{ base: string }>("SELECT base FROM mirrors WHERE id = 'vol@b'")!.base;
    // What older versions left behind: holds of a mirror, a transfer and a link that no longer exist.
    for (const holder of ['mirror:vol@gone', 'mirror:vol@gone:inflight', 'link:/nowhere', 'mirror-from:0123']) {
      p.a.catalog.db.run('INSERT INTO holds (snapshot, holder, created_at) VALUES (?, ?, 0)', base, holder);
    }
  } finally {
    await p.close();
  }
  const a = Site.open(home);
  const e = new Engine(a);
  try {
    assert.deepEqual(a.catalog.db.all<{ holder: string }>('SELECT holder FROM holds ORDER BY holder').map((h) => h.holder), ['mirror:vol@b'], 'only the live mirror\'s base hold is left');
    const ev = a.catalog.db.get<{ detail: string }>("SELECT detail FROM events WHERE kind = 'hold.release' ORDER BY id DESC LIMIT 1");
    assert.ok(ev, 'an event says which holds were released');
    assert.deepEqual(JSON.parse(ev.detail).holds.map((h: { holder: string }) => h.holder).sort(), ['link:/nowhere', 'mirror-from:0123', 'mirror:vol@gone', 'mirror:vol@gone:inflight']);
  } finally {
    await e.close();
    a.close();
    tmp.cleanup();
  }
});

function mkdirp(dir: string): string {
  mkdirSync(dir, { recursive: true });
  return dir;
}

test('a peer snapshot whose deletion waits for an unreachable secondary is deleted here once that mirror is removed', async () => {
  await withPair(async (p) => {
    await op(p.ea, 'mirror.create', { volume: 'vol', to: 'b' });
    await op(p.ea, 'mirror.initialize', { volume: 'vol', to: 'b', wait: true });
    const id = ((await op(p.ea, 'snapshot.create', { volume: 'vol', name: 'p1', peer: true, wait: true })) as { snapshot: { id: string } }).snapshot.id;
    writeFileSync(join(p.data, 'etc', 'f1.conf'), 'moved on\n');
    await op(p.ea, 'mirror.update', { volume: 'vol', to: 'b', wait: true, force: true });
    // b's daemon address answers nothing here (the deletion goes over the network): pending.
    const del = (await op(p.ea, 'snapshot.peer-delete', { volume: 'vol', snapshot: 'p1' })) as { pendingAt: Array<{ peer: string }>; deletedHere: boolean };
    assert.deepEqual(del.pendingAt.map((x) => x.peer), ['b']);
    assert.equal(del.deletedHere, false);
    assert.ok(p.a.catalog.db.get("SELECT 1 FROM holds WHERE snapshot = ? AND holder = 'peer-delete'", id), 'held here until b confirms');
    const m = ((await op(p.ea, 'mirror.list', { volume: 'vol' })) as Array<{ healthReasons: string[] }>)[0];
    assert.ok(m.healthReasons.some((r) => /deletion/.test(r)), JSON.stringify(m.healthReasons));
    await op(p.ea, 'mirror.remove', { volume: 'vol', to: 'b' });
    assert.equal(p.a.catalog.db.get('SELECT 1 FROM snapshots WHERE id = ?', id), undefined, 'b is no longer asked: deleted here');
    assert.deepEqual(p.a.catalog.db.all('SELECT * FROM peer_deletions'), []);
  });
});
