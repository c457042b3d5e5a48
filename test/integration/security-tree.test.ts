// Hostile trees and hostile replicas (design promise 6): tree objects built
// by hand with names and link targets that would leave the replica are
// refused at commit, before apply runs; and a replica where a symlink stands
// in for a directory is repaired, never written through.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lstatSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync, chmodSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { decodeTree, encodeBlockList, encodeImage, encodeTree } from '../../src/snapshot/format.ts';
import { readManifest } from '../../src/snapshot/graph.ts';
import { createSnapshot } from '../../src/site/snapshots.ts';
import { createVolume } from '../../src/site/volumes.ts';
import { sendSnapshot } from '../../src/replication/sender.ts';
import { PROTOCOL_VERSION } from '../../src/replication/types.ts';
import { randomBytes, randomFillSync } from 'node:crypto';
import { hashBytes, type ObjectId } from '../../src/core/ids.ts';
import { assertTreesEqual } from '../helpers.ts';
import { applyEvents, forgeSnapshot, forgeTree, iter, listing, prep, receiverEnv, rejectsWith, secondaryRow, T, type RawEntry, type ReceiverEnv } from '../harness/security.ts';
import { listSnapshots } from '../../src/catalog/snapshots.ts';

const uid = process.getuid?.() ?? 0;
const gid = process.getgid?.() ?? 0;
const MTIME = 1_700_000_000_123_456_000n;
const hello = prep('chunk', Buffer.from('hello'));

function file(name: Buffer | string): RawEntry {
  return { name, type: T.file, mode: 0o644, uid, gid, mtimeNs: MTIME, size: 5, chunks: [hello.id] };
}

/** Send a snapshot whose root is `root` (plus `trees` below it) and commit it: it must be refused with nothing applied. */
async function refused(env: ReceiverEnv, root: Buffer, trees: Buffer[], why: RegExp, codes = ['OBJECT_CORRUPT']): Promise<void> {
  const outside = env.outsideListing();
  const replica = listing(env.replica);
  const row = secondaryRow(env.b);
  const applies = applyEvents(env.b);
  const rootObj = prep('tree', root);
  const snap = forgeSnapshot({ volume: 'vol', origin: env.peer, members: [{ name: 'data', kind: 'tree', root: rootObj.id }] });
  const objs = [hello, ...trees.map((t) => prep('tree', t)), rootObj, snap.obj];
  const put = await env.rx.put('vol', iter(objs));
  assert.equal(put.received, objs.length);
  for (const force of [false, true]) {
    await rejectsWith(env.rx.commit('vol', { snapshot: snap.id, manifest: snap.manifest, force }), codes, why);
  }
  // Apply never ran: no snapshot row, no apply state or event, replica and everything else as they were.
  assert.equal(env.b.catalog.db.get('SELECT 1 FROM snapshots WHERE id = ?', snap.id), undefined);
  assert.deepEqual(secondaryRow(env.b), row);
  assert.equal(applyEvents(env.b), applies);
  assert.deepEqual(listing(env.replica), replica);
  assert.deepEqual(env.outsideListing(), outside);
}

/** A valid snapshot still goes through: the replica becomes exactly `entries`. */
async function legit(env: ReceiverEnv, entries: RawEntry[]): Promise<void> {
  const root = prep('tree', encodeTree(decodeTree(forgeTree(entries))));
  const snap = forgeSnapshot({ volume: 'vol', origin: env.peer, members: [{ name: 'data', kind: 'tree', root: root.id }] });
  await env.rx.put('vol', iter([hello, root, snap.obj]));
  const c = await env.rx.commit('vol', { snapshot: snap.id, manifest: snap.manifest });
  assert.equal(c.applied, true, JSON.stringify(c));
  assert.equal(secondaryRow(env.b).applied, snap.id);
}

test('the hand-built tree encoder matches format.ts on valid input (so the refusals below are about the names)', () => {
  const entries: RawEntry[] = [
    file('a'),
    { name: 'd', type: T.dir, mode: 0o755, uid, gid, mtimeNs: MTIME, tree: hello.id },
    { name: 'h', type: T.hardlink, mode: 0o644, uid, gid, mtimeNs: MTIME, target: 'a' },
    { name: 's', type: T.symlink, mode: 0o777, uid, gid, mtimeNs: MTIME, target: '/etc/passwd' },
  ];
  const forged = forgeTree(entries);
  assert.deepEqual(encodeTree(decodeTree(forged)), forged);
});

test('entry names that leave the directory are refused at commit; apply never runs', async (t) => {
  const env = await receiverEnv();
  try {
    await legit(env, [file('before.txt')]);
    const bad: Array<[string, Buffer, RegExp]> = [
      ['..', Buffer.from('..'), /'\.' or '\.\.'/],
      ['.', Buffer.from('.'), /'\.' or '\.\.'/],
      ['a/b', Buffer.from('a/b'), /contains '\/'/],
      ['/etc', Buffer.from('/etc'), /contains '\/'/],
      ['../../x', Buffer.from('../../x'), /contains '\/'/],
      ['NUL', Buffer.from('a\0b'), /NUL/],
      ['empty', Buffer.alloc(0), /empty/],
      ['4097 bytes', Buffer.alloc(4097, 0x61), /4097 bytes, more than the limit of 4096/],
    ];
    for (const [what, name, why] of bad) {
      await t.test(`file named ${what}`, () => refused(env, forgeTree([file(name)]), [], why));
    }
    // A directory named '..' with a file in it: mkdir would land in the replica's parent.
    const inner = forgeTree([file('evil')]);
    await refused(env, forgeTree([{ name: '..', type: T.dir, mode: 0o755, uid, gid, tree: prep('tree', inner).id }]), [inner], /'\.' or '\.\.'/);
    // The bad name deep down, below valid directories.
    const deep = forgeTree([file('..')]);
    const mid = forgeTree([{ name: 'sub', type: T.dir, mode: 0o755, uid, gid, mtimeNs: MTIME, tree: prep('tree', deep).id }]);
    await refused(env, forgeTree([{ name: 'top', type: T.dir, mode: 0o755, uid, gid, mtimeNs: MTIME, tree: prep('tree', mid).id }]), [deep, mid], /'\.' or '\.\.'/);
    // Names that are each valid but repeat or are unsorted (two entries for one path).
    await refused(env, forgeTree([file('x'), file('x')]), [], /not strictly sorted/);
    await refused(env, forgeTree([file('y'), file('x')]), [], /not strictly sorted/);
    // Still healthy: a valid snapshot applies.
    await legit(env, [file('after.txt')]);
    assert.equal(readFileSync(join(env.replica, 'after.txt'), 'utf8'), 'hello');
    assert.equal(existsSync(join(env.replica, 'before.txt')), false);
  } finally {
    await env.close();
  }
});

test('hard links whose target leaves the member, or is not a file of it, are refused at commit', async (t) => {
  const env = await receiverEnv();
  try {
    const link = (target: Buffer | string): RawEntry => ({ name: 'h', type: T.hardlink, mode: 0o644, uid, gid, mtimeNs: MTIME, target });
    const syntax: Array<[string, RegExp]> = [
      ['../../x', /hardlink target/],
      ['/etc/passwd', /hardlink target/],
      ['a/../../x', /hardlink target/],
      ['a//b', /hardlink target/],
      ['a/', /hardlink target/],
      ['./a', /hardlink target/],
      ['a\0b', /NUL/],
      ['', /target is empty/],
    ];
    for (const [target, why] of syntax) {
      await t.test(`hard link to ${JSON.stringify(target)}`, () => refused(env, forgeTree([file('a'), link(target)]), [], why));
    }
    // Syntactically fine, but through a symlink to outside: link(2) would follow it and bring
    // outside/secret.txt into the replica.
    await refused(
      env,
      forgeTree([link('s/secret.txt'), { name: 's', type: T.symlink, mode: 0o777, uid, gid, mtimeNs: MTIME, target: env.outside }]),
      [],
      /through s, which is a symlink, not a directory/,
    );
    // ... or at something that is not a file of the snapshot.
    const sub = forgeTree([file('f')]);
    await refused(env, forgeTree([{ name: 'd', type: T.dir, mode: 0o755, uid, gid, mtimeNs: MTIME, tree: prep('tree', sub).id }, link('d')]), [sub], /which is a dir, not a file/);
    await refused(env, forgeTree([file('a'), link('nothere')]), [], /not in the snapshot/);
    // A file whose chunks do not add up to its size would fail half-way through apply.
    await refused(env, forgeTree([{ ...file('a'), size: 4 }]), [], /5 bytes of chunks, its size is 4/);
    // A hard link done right still works.
    await legit(env, [file('a'), link('a')]);
    assert.equal(statSync(join(env.replica, 'a')).ino, statSync(join(env.replica, 'h')).ino);
  } finally {
    await env.close();
  }
});

test('a DAG of shared subtrees (2^40 paths in 40 objects) is checked in linear time', async () => {
  const env = await receiverEnv();
  try {
    // Level 0 is missing on purpose, so the commit stops after the check instead of applying 2^40 directories.
    const missing = prep('tree', forgeTree([file('leaf')]));
    let below = missing.id;
    const trees: Buffer[] = [];
    for (let i = 0; i < 40; i++) {
      const t = forgeTree([
        { name: 'a', type: T.dir, mode: 0o755, uid, gid, mtimeNs: MTIME, tree: below },
        { name: 'b', type: T.dir, mode: 0o755, uid, gid, mtimeNs: MTIME, tree: below },
      ]);
      trees.push(t);
      below = prep('tree', t).id;
    }
    const root = trees.pop()!;
    const snapTry = forgeSnapshot({ volume: 'vol', origin: env.peer, members: [{ name: 'data', kind: 'tree', root: prep('tree', root).id }] });
    await env.rx.put('vol', iter([...trees.map((t) => prep('tree', t)), prep('tree', root), snapTry.obj]));
    await rejectsWith(env.rx.commit('vol', { snapshot: snapTry.id, manifest: snapTry.manifest }), ['TRANSFER_INTERRUPTED'], /1 object\(s\) missing/);
    assert.deepEqual(listing(env.replica), []);
  } finally {
    await env.close();
  }
});

test('a symlink a previous snapshot had where the next has a directory: replaced, never written through', async () => {
  const env = await receiverEnv({ source: true });
  try {
    const before = env.outsideListing();
    symlinkSync(env.outside, join(env.aData, 'd'));
    symlinkSync('../../../../outside', join(env.aData, 'rel'));
    symlinkSync(join(env.outside, 'secret.txt'), join(env.aData, 'secret-link'));
    assert.equal((await env.send()).applied, true);
    assert.ok(lstatSync(join(env.replica, 'd')).isSymbolicLink());
    assertTreesEqual(env.replica, env.aData);

    // Next snapshot: d, rel and secret-link are now real directories and files with names that exist in outside/.
    for (const n of ['d', 'rel', 'secret-link']) rmSync(join(env.aData, n));
    for (const n of ['d', 'rel']) {
      mkdirSync(join(env.aData, n, 'sub'), { recursive: true });
      writeFileSync(join(env.aData, n, 'f'), 'replica f\n');
      writeFileSync(join(env.aData, n, 'secret.txt'), 'replica secret\n');
      writeFileSync(join(env.aData, n, 'sub', 'inner.txt'), 'replica inner\n');
    }
    writeFileSync(join(env.aData, 'secret-link'), 'a file now\n');
    const c = await env.send();
    assert.equal(c.applied, true, JSON.stringify(c));
    assert.ok(lstatSync(join(env.replica, 'd')).isDirectory());
    assert.ok(lstatSync(join(env.replica, 'rel')).isDirectory());
    assert.ok(lstatSync(join(env.replica, 'secret-link')).isFile());
    assertTreesEqual(env.replica, env.aData);
    assert.deepEqual(env.outsideListing(), before);
    assert.equal(readFileSync(join(env.outside, 'secret.txt'), 'utf8'), 'outside secret\n');
  } finally {
    await env.close();
  }
});

test('a symlink to outside placed by hand in the replica: kept as writes, then replaced by a real directory', async () => {
  const env = await receiverEnv({ source: true });
  try {
    mkdirSync(join(env.aData, 'p', 'sub'), { recursive: true });
    writeFileSync(join(env.aData, 'p', 'f'), 'f v1\n');
    writeFileSync(join(env.aData, 'p', 'secret.txt'), 'replica secret\n');
    chmodSync(join(env.aData, 'p', 'secret.txt'), 0o644);
    writeFileSync(join(env.aData, 'p', 'sub', 'inner.txt'), 'replica inner\n');
    mkdirSync(join(env.aData, 'gone'));
    writeFileSync(join(env.aData, 'gone', 'secret.txt'), 'to be removed\n');
    assert.equal((await env.send()).applied, true);
    const before = env.outsideListing();

    // Someone swaps directories of the replica for symlinks to outside/, whose files have the same names.
    rmSync(join(env.replica, 'p'), { recursive: true });
    symlinkSync(env.outside, join(env.replica, 'p'));
    rmSync(join(env.replica, 'gone'), { recursive: true });
    symlinkSync(env.outside, join(env.replica, 'gone'));
    const swapped = env.outsideListing();

    // The next snapshot changes content under p (f), only metadata of another file (secret.txt: chmod),
    // adds a file (new.txt), leaves sub/ alone, and removes gone/.
    writeFileSync(join(env.aData, 'p', 'f'), 'f v2\n');
    chmodSync(join(env.aData, 'p', 'secret.txt'), 0o600);
    writeFileSync(join(env.aData, 'p', 'new.txt'), 'new\n');
    rmSync(join(env.aData, 'gone'), { recursive: true });

    const refusedC = await env.send();
    assert.equal(refusedC.applied, false);
    assert.match(refusedC.refused!, /wrote into the replica/);
    assert.deepEqual(env.outsideListing(), swapped, 'a refused apply writes nothing');

    // Forced: the writes are kept in a snapshot first, then p becomes a real directory again.
    const forced = await env.send({ force: true });
    assert.equal(forced.applied, true, JSON.stringify(forced));
    assert.ok(forced.writesSnapshot);
    assert.ok(lstatSync(join(env.replica, 'p')).isDirectory());
    assert.equal(existsSync(join(env.replica, 'gone')), false);
    assertTreesEqual(env.replica, env.aData);
    assert.deepEqual(env.outsideListing(), before, 'nothing under outside/ was written, chmod-ed or removed');
    assert.equal(statSync(join(env.outside, 'secret.txt')).mode & 0o777, 0o640);
    assert.equal(readFileSync(join(env.outside, 'f'), 'utf8'), 'outside f\n');

    // The kept writes: a snapshot of the replica as it was, with p as the symlink (never followed).
    const kept = listSnapshots(env.b.catalog, 'vol').find((s) => s.name === forced.writesSnapshot);
    assert.ok(kept, 'writes snapshot kept');
    const m = readManifest(env.b.store, kept.manifest as ObjectId);
    const root = decodeTree(env.b.store.get(m.members[0].root));
    const p = root.entries.find((e) => e.name.toString() === 'p')!;
    assert.equal(p.type, 'symlink');
    assert.equal(p.target!.toString(), env.outside);

    // Still healthy.
    writeFileSync(join(env.aData, 'p', 'f'), 'f v3\n');
    assert.equal((await env.send()).applied, true);
    assertTreesEqual(env.replica, env.aData);
  } finally {
    await env.close();
  }
});

test('a replica member root swapped for a symlink to outside: refused, outside untouched', async () => {
  const env = await receiverEnv({ source: true });
  try {
    writeFileSync(join(env.aData, 'secret.txt'), 'replica secret\n');
    assert.equal((await env.send()).applied, true);
    rmSync(env.replica, { recursive: true });
    symlinkSync(env.outside, env.replica);
    const before = env.outsideListing();
    writeFileSync(join(env.aData, 'secret.txt'), 'v2\n');
    await rejectsWith(env.send(), ['MEMBER_INVALID']);
    await rejectsWith(env.send({ force: true }), ['MEMBER_INVALID']);
    assert.deepEqual(env.outsideListing(), before);
    assert.ok(lstatSync(env.replica).isSymbolicLink());
  } finally {
    await env.close();
  }
});

test('image members: a legitimate image applies; short blocks or lists are refused; a replica swapped for a symlink is never read', async () => {
  const env = await receiverEnv({ source: true });
  const a = env.a!;
  try {
    // A 200 KiB image: 4 blocks of 64 KiB (the last partial), one of them a hole.
    const imgPath = join(env.tmp, 'a-disk.img');
    const img = Buffer.alloc(200 * 1024);
    randomFillSync(img, 0, 64 * 1024);
    randomFillSync(img, 128 * 1024);
    writeFileSync(imgPath, img);
    createVolume(a, 'img', { role: 'primary', members: [{ path: imgPath, name: 'disk' }] });
    const hello = await env.rx.hello({ protocol: PROTOCOL_VERSION, sourceVolume: 'img', volume: 'img', members: [{ name: 'disk', kind: 'image' }] });
    const replica = hello.replicas[0].path;
    const send = async (force = false) => {
      const s = await createSnapshot(a, 'img', { pool: env.pool });
      await sendSnapshot(a.store, env.rx, 'img', s.snapshot.manifest);
      return env.rx.commit('img', { snapshot: s.snapshot.id, manifest: s.snapshot.manifest, force });
    };
    assert.equal((await send()).applied, true);
    assert.deepEqual(readFileSync(replica), img);
    img.fill(7, 70_000, 80_000);
    writeFileSync(imgPath, img);
    assert.equal((await send()).applied, true);
    assert.deepEqual(readFileSync(replica), img);

    // Forged: a block shorter than the image says, and a blocklist with too few blocks.
    const applied = secondaryRow(env.b, 'img');
    const short = prep('chunk', Buffer.alloc(100, 1));
    const full = prep('chunk', Buffer.alloc(65536, 2));
    for (const [blocks, why] of [
      [[full.id, short.id, null, full.id], /block 1 is 100 bytes, the image needs 65536/],
      [[full.id, full.id], /blocklist 0 has 2 blocks, the image needs 4/],
    ] as const) {
      const list = prep('blocklist', encodeBlockList({ blocks: [...blocks] as Array<ObjectId | null> }));
      const image = prep('image', encodeImage({ size: 200 * 1024, blockSize: 65536, lists: [list.id] }));
      const snap = forgeSnapshot({ volume: 'img', origin: env.peer, members: [{ name: 'disk', kind: 'image', root: image.id }] });
      await env.rx.put('img', iter([short, full, list, image, snap.obj]));
      await rejectsWith(env.rx.commit('img', { snapshot: snap.id, manifest: snap.manifest, force: true }), ['OBJECT_CORRUPT'], why);
      assert.deepEqual(secondaryRow(env.b, 'img'), applied);
      assert.deepEqual(readFileSync(replica), img);
    }

    // Someone replaces the image replica with a symlink to a file outside: the writes check must not read it.
    const secret = randomBytes(65536);
    const secretPath = join(env.outside, 'disk-secret.bin');
    writeFileSync(secretPath, secret);
    rmSync(replica);
    symlinkSync(secretPath, replica);
    img.fill(9, 0, 10);
    writeFileSync(imgPath, img);
    const before = env.outsideListing();
    await rejectsWith(send(true), ['MEMBER_INVALID'], /neither a regular file nor a block device/);
    assert.equal(env.b.store.has(hashBytes(secret)), false, 'the outside file was read into the store');
    assert.deepEqual(env.outsideListing(), before);
    assert.deepEqual(readFileSync(secretPath), secret);
  } finally {
    await env.close();
  }
});
