// Damaged data: flipped bytes in a pack (chunk data and tree objects), a
// catalog of a newer format, a file that is not a ferry catalog. Each is
// refused or reported with the documented code and exit status, naming what
// is affected, and nothing is made worse.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdirSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { assertError, listPackFiles, makeSite, siteState, writeRandomFile } from '../harness/cli-site.ts';
import { assertTreesEqual } from '../helpers.ts';
import { cleanupSites, createSite, pairSites } from '../harness/index.ts';

function tree(root: string): string {
  mkdirSync(join(root, 'sub'), { recursive: true });
  writeFileSync(join(root, 'a.txt'), 'alpha\n');
  writeFileSync(join(root, 'sub', 'b.txt'), 'beta\n');
  return root;
}

/** Flip `n` bytes of `file` at `at`. */
function flip(file: string, at: number, n = 16): void {
  const fd = openSync(file, 'r+');
  try {
    const buf = Buffer.alloc(n);
    readSync(fd, buf, 0, n, at);
    for (let i = 0; i < n; i++) buf[i] ^= 0xff;
    writeSync(fd, buf, 0, n, at);
  } finally {
    closeSync(fd);
  }
}

test('a damaged pack: verify exits 5 naming the damaged snapshots and member paths', async () => {
  const site = await makeSite();
  try {
    const a = join(site.dir, 'a');
    mkdirSync(join(a, 'deep', 'er'), { recursive: true });
    writeFileSync(join(a, 'small.txt'), 'small\n');
    const other = join(site.dir, 'other');
    mkdirSync(other);
    writeFileSync(join(other, 'o.txt'), 'unrelated\n');
    assert.equal((await site.ferry(['volume', 'create', 'o', '--member', other])).code, 0);
    assert.equal((await site.ferry(['snapshot', 'create', 'o', '--name', 'clean'])).code, 0);
    writeRandomFile(join(a, 'deep', 'er', 'big.bin'), 3 << 20);
    assert.equal((await site.ferry(['volume', 'create', 'v', '--member', a])).code, 0);
    const s1 = (await site.json(['snapshot', 'create', 'v', '--name', 'first'])).snapshot.id;
    writeFileSync(join(a, 'small.txt'), 'changed\n');
    const s2 = (await site.json(['snapshot', 'create', 'v', '--name', 'second'])).snapshot.id;
    assert.equal((await site.ferry(['verify'])).code, 0);

    // The big random file is most of the newest pack: damage in its middle hits its data.
    const biggest = listPackFiles(site.home).sort((x, y) => statSync(y).size - statSync(x).size)[0];
    const size = statSync(biggest).size;
    assert.ok(size > 3 << 20, 'the big file should be in one pack');
    flip(biggest, Math.floor(size / 2));

    const r = await site.ferry(['verify']);
    assertError(r, 5, 'VERIFY_FAILED');
    const all = r.stdout + r.stderr;
    for (const id of [s1, s2]) assert.ok(all.includes(id) || all.includes(id === s1 ? 'v@first' : 'v@second'), `verify output does not name snapshot ${id}:\n${all}`);
    assert.match(all, /deep\/er\/big\.bin/, `verify output does not name the damaged file:\n${all}`);
    assert.doesNotMatch(all, /o@clean|o\.txt/, 'an undamaged snapshot was named');

    const j = await site.ferry(['verify', '--json']);
    assert.equal(j.code, 5);
    assert.ok(j.json, `verify --json must print one JSON document:\n${j.stdout}`);
    assert.deepEqual([...j.json.damagedSnapshots].sort(), [s1, s2].sort());
    const used = j.json.damaged.flatMap((d: { usedBy: Array<{ snapshot: string; member: string; path: string }> }) => d.usedBy);
    assert.ok(used.some((u: { member: string; path: string }) => u.member === 'a' && u.path === 'deep/er/big.bin'), JSON.stringify(used));
    assert.equal(j.json.error?.code, 'VERIFY_FAILED');
    // Verifying only the unaffected volume passes.
    assert.equal((await site.ferry(['verify', 'o'])).code, 0);
    // A restore of the damaged file fails as damaged data, not silently.
    const rr = await site.ferry(['restore', 'v', '--snapshot', 'first', '--target', join(site.dir, 'out')]);
    assert.equal(rr.code, 5, rr.stderr);
  } finally {
    site.cleanup();
  }
});

test('a catalog of a newer format is refused with FORMAT_VERSION; a non-ferry file with CATALOG_CORRUPT', async () => {
  const site = await makeSite();
  try {
    const a = tree(join(site.dir, 'a'));
    assert.equal((await site.ferry(['volume', 'create', 'v', '--member', a])).code, 0);
    const catalog = join(site.home, 'catalog.db');
    const db = new DatabaseSync(catalog);
    db.prepare("UPDATE meta SET value = '99' WHERE key = 'format'").run();
    db.close();
    for (const args of [['info'], ['volume', 'list'], ['snapshot', 'create', 'v'], ['gc']]) {
      const r = await site.ferry([...args, '--json']);
      assertError(r, 5, 'FORMAT_VERSION', /upgrade ferry/);
    }
    const db2 = new DatabaseSync(catalog);
    assert.equal((db2.prepare("SELECT value FROM meta WHERE key = 'format'").get() as { value: string }).value, '99', 'the refused catalog was rewritten');
    assert.equal((db2.prepare('SELECT count(*) AS n FROM snapshots').get() as { n: number }).n, 0);
    db2.close();

    // A file that is not a ferry catalog (not even SQLite), and an SQLite database that is not ferry's.
    for (const kind of ['text', 'sqlite']) {
      for (const f of ['catalog.db', 'catalog.db-wal', 'catalog.db-shm']) rmSync(join(site.home, f), { force: true });
      if (kind === 'text') writeFileSync(catalog, 'this is not a database, just some text that is long enough to look like a header\n'.repeat(100));
      else {
        const d = new DatabaseSync(catalog);
        d.exec('CREATE TABLE notes (x TEXT)');
        d.close();
      }
      const before = readFileSync(catalog);
      for (const args of [['info'], ['volume', 'list'], ['volume', 'create', 'w', '--member', a], ['gc']]) {
        const r = await site.ferry([...args, '--json']);
        assertError(r, 5, 'CATALOG_CORRUPT');
        assert.doesNotMatch(r.stderr, /\n\s+at /, 'a stack trace instead of a clear message');
      }
      assert.ok(readFileSync(catalog).equals(before), `${kind}: the refused catalog file was modified`);
    }
  } finally {
    site.cleanup();
  }
});

/** Where the tree object whose raw bytes contain `marker` lies: pack file and offset of its stored bytes. */
function findTreeRecord(home: string, marker: string): { file: string; at: number; length: number } {
  const db = new DatabaseSync(join(home, 'catalog.db'), { readOnly: true });
  try {
    const rows = db.prepare("SELECT o.offset AS offset, o.stored_length AS len, o.codec AS codec, p.name AS pack FROM objects o JOIN packs p ON p.id = o.pack WHERE o.kind = 2").all() as Array<{ offset: number; len: number; codec: number; pack: string }>;
    for (const r of rows) {
      const file = join(home, 'store', 'packs', r.pack.slice(0, 2), `${r.pack}.pack`);
      const fd = openSync(file, 'r');
      const buf = Buffer.alloc(r.len);
      readSync(fd, buf, 0, r.len, r.offset + 46);
      closeSync(fd);
      if (r.codec === 0 && buf.includes(marker)) return { file, at: r.offset + 46, length: r.len };
    }
  } finally {
    db.close();
  }
  throw new Error(`no uncompressed tree object contains ${marker}`);
}

test('a damaged tree object: verify names the directory; gc refuses rather than guess; other snapshots are unaffected', async () => {
  const site = await makeSite();
  try {
    const a = join(site.dir, 'a');
    mkdirSync(join(a, 'keep'), { recursive: true });
    writeFileSync(join(a, 'keep', 'k.txt'), 'kept\n');
    assert.equal((await site.ferry(['volume', 'create', 'v', '--member', a])).code, 0);
    const clean = (await site.json(['snapshot', 'create', 'v', '--name', 'clean'])).snapshot.id;
    mkdirSync(join(a, 'doomed-dir'));
    writeFileSync(join(a, 'doomed-dir', 'marker-file-in-damaged-tree'), 'x\n');
    const hit = (await site.json(['snapshot', 'create', 'v', '--name', 'hit'])).snapshot.id;
    const rec = findTreeRecord(site.home, 'marker-file-in-damaged-tree');
    flip(rec.file, rec.at + Math.floor(rec.length / 2), 4);

    const r = await site.ferry(['verify', '--json']);
    assert.equal(r.code, 5, r.stderr);
    assert.deepEqual(r.json.damagedSnapshots, [hit]);
    const used = r.json.damaged.flatMap((d: { kind: string; usedBy: Array<{ path: string }> }) => d.usedBy.map((u) => [d.kind, u.path]));
    assert.deepEqual(used, [['tree', 'doomed-dir']]);
    const text = await site.ferry(['verify']);
    assert.match(text.stdout, /v@hit a:doomed-dir/);

    // GC cannot see what the damaged tree referenced: it refuses, and deletes nothing.
    const before = siteState(site);
    const gc = await site.ferry(['gc', '--json']);
    assertError(gc, 5, 'OBJECT_CORRUPT', /verify/);
    assert.deepEqual(siteState(site), before);
    // The undamaged snapshot restores; the damaged one fails as damaged data.
    const out = join(site.dir, 'out');
    assert.equal((await site.ferry(['restore', 'v', '--snapshot', clean, '--target', out])).code, 0);
    assert.equal(readFileSync(join(out, 'keep', 'k.txt'), 'utf8'), 'kept\n');
    const bad = await site.ferry(['restore', 'v', '--snapshot', hit, '--target', join(site.dir, 'out2')]);
    assert.equal(bad.code, 5, bad.stderr);
    // Deleting the clean snapshot: the deletion commits, the collection refuses, and the error says both.
    const delClean = await site.ferry(['snapshot', 'delete', 'v', 'clean', '--json']);
    assertError(delClean, 5, 'OBJECT_CORRUPT', /deleted 1 snapshot/);
    assert.deepEqual((await site.json(['snapshot', 'list', 'v'])).map((s: { id: string }) => s.id), [hit]);
    // Deleting the damaged snapshot is the way out: afterwards gc and verify pass.
    const del = await site.ferry(['snapshot', 'delete', 'v', hit]);
    assert.equal(del.code, 0, del.stderr);
    assert.equal((await site.ferry(['gc'])).code, 0);
    assert.equal((await site.ferry(['verify'])).code, 0);
  } finally {
    site.cleanup();
  }
});

/** Rows of lost_packs, with each pack's name (read-only, beside any process). */
function lostPacks(home: string): Array<{ name: string; problem: string }> {
  const db = new DatabaseSync(join(home, 'catalog.db'), { readOnly: true });
  try {
    return db.prepare('SELECT p.name AS name, l.problem AS problem FROM lost_packs l JOIN packs p ON p.id = l.pack ORDER BY p.name').all() as Array<{ name: string; problem: string }>;
  } finally {
    db.close();
  }
}

test('after a pack file is lost, its objects count as absent: the next snapshot stores them again and is whole; verify names only the old snapshots', async () => {
  const site = await makeSite();
  try {
    const a = join(site.dir, 'a');
    mkdirSync(join(a, 'sub'), { recursive: true });
    writeFileSync(join(a, 'a.txt'), 'alpha\n');
    writeFileSync(join(a, 'sub', 'c.txt'), 'gamma\n');
    writeRandomFile(join(a, 'b.bin'), 300_000);
    writeRandomFile(join(a, 'sub', 'd.bin'), 200_000);
    assert.equal((await site.ferry(['volume', 'create', 'v', '--member', a])).code, 0);
    const one = (await site.json(['snapshot', 'create', 'v', '--name', 'one'])).snapshot.id;
    const [first] = listPackFiles(site.home);
    assert.ok(first);
    // A second snapshot that changes one file: its pack holds the new chunk, the changed trees and
    // its manifest; the unchanged files' chunks stay in the first pack, and the stat cache now says
    // those files are unchanged (a capture would reuse their chunk ids without reading them).
    writeFileSync(join(a, 'a.txt'), 'alpha, changed\n');
    const two = (await site.json(['snapshot', 'create', 'v', '--name', 'two'])).snapshot.id;
    assert.equal(listPackFiles(site.home).length, 2);
    rmSync(first);

    // Recovery (any command opening the site for writing) marks the pack lost; verify names both snapshots.
    const r = await site.ferry(['verify', '--json']);
    assert.equal(r.code, 5, r.stderr);
    assert.deepEqual([...r.json.damagedSnapshots].sort(), [one, two].sort());
    const used = r.json.damaged.flatMap((d: { usedBy: Array<{ path: string }> }) => d.usedBy.map((u) => u.path));
    // b.bin's chunks were in the lost pack; so was the (unchanged) tree of sub, below which verify cannot see.
    // (a paged directory's page is named by the range of names it holds: "a.txt .. b.bin")
    const names = (p: string) => used.some((u: string) => u === p || (u.includes(' .. ') && u.split(' .. ')[0] <= p && p <= u.split(' .. ')[1]));
    assert.ok(names('b.bin') && names('sub'), `verify should name what was lost: ${JSON.stringify(used)}`);
    assert.deepEqual(lostPacks(site.home).map((l) => l.problem), ['missing']);
    const info = await site.json(['info']);
    assert.equal(info.store.lostPacks, 1, JSON.stringify(info.store));
    assert.ok(info.store.lostObjects > 0, JSON.stringify(info.store));

    // The data is still on disk: the next snapshot reads it again (the stat cache was dropped) and stores what was lost.
    const three = await site.json(['snapshot', 'create', 'v', '--name', 'three']);
    assert.ok(three.snapshot.stats.filesRead >= 4, `every file should be read again: ${JSON.stringify(three.snapshot.stats)}`);
    assert.ok(three.snapshot.stats.objectsAdded >= 4, JSON.stringify(three.snapshot.stats));
    const after = await site.ferry(['verify', '--json']);
    assert.equal(after.code, 5);
    // Snapshot two shares everything with three, so it is whole again; one still misses its own objects.
    assert.deepEqual(after.json.damagedSnapshots, [one], 'only the snapshot whose own objects are gone may stay damaged');
    for (const name of ['three', 'two']) {
      const out = join(site.dir, `out-${name}`);
      const rr = await site.ferry(['restore', 'v', '--snapshot', name, '--target', out]);
      assert.equal(rr.code, 0, rr.stderr);
      if (name === 'three') assertTreesEqual(out, a);
    }
    assert.equal((await site.ferry(['restore', 'v', '--snapshot', 'one', '--target', join(site.dir, 'out-one')])).code, 5);
    // Another snapshot of the same data adds nothing: the store holds it all again.
    const four = await site.json(['snapshot', 'create', 'v']);
    assert.equal(four.snapshot.stats.objectsAdded, 0, JSON.stringify(four.snapshot.stats));
    // Deleting the damaged snapshot and collecting removes the lost pack's last rows, and the mark with them.
    assert.equal((await site.ferry(['snapshot', 'delete', 'v', 'one'])).code, 0);
    assert.equal((await site.ferry(['gc'])).code, 0);
    assert.deepEqual(lostPacks(site.home), []);
    assert.equal((await site.ferry(['verify'])).code, 0);
  } finally {
    site.cleanup();
  }
});

test('a pack found damaged by verify is marked lost, and the next snapshot stores its objects again', async () => {
  const site = await makeSite();
  try {
    const a = join(site.dir, 'a');
    mkdirSync(a);
    writeRandomFile(join(a, 'big.bin'), 1 << 20);
    writeFileSync(join(a, 'small.txt'), 'small\n');
    assert.equal((await site.ferry(['volume', 'create', 'v', '--member', a])).code, 0);
    const one = (await site.json(['snapshot', 'create', 'v', '--name', 'one'])).snapshot.id;
    const [pack] = listPackFiles(site.home);
    flip(pack, Math.floor(statSync(pack).size / 2));
    // The size is right, so recovery sees nothing: verify reads the record, finds it damaged, marks the pack.
    assert.deepEqual(lostPacks(site.home), []);
    const r = await site.ferry(['verify', '--json']);
    assert.equal(r.code, 5);
    assert.deepEqual(r.json.damagedSnapshots, [one]);
    assert.deepEqual(lostPacks(site.home).map((l) => l.problem), ['damaged']);
    const two = (await site.json(['snapshot', 'create', 'v', '--name', 'two'])).snapshot;
    assert.ok(two.stats.objectsAdded >= 1, JSON.stringify(two.stats));
    // The damaged chunk was stored again from the source: snapshot one, which names the same chunk, is whole again.
    assert.equal((await site.ferry(['verify'])).code, 0);
    for (const name of ['one', 'two']) {
      const out = join(site.dir, `out-${name}`);
      assert.equal((await site.ferry(['restore', 'v', '--snapshot', name, '--target', out])).code, 0);
      assertTreesEqual(out, a);
    }
  } finally {
    site.cleanup();
  }
});

test('a lost pack whose file comes back (restored from a backup) counts again', async () => {
  const site = await makeSite();
  try {
    const a = tree(join(site.dir, 'a'));
    assert.equal((await site.ferry(['volume', 'create', 'v', '--member', a])).code, 0);
    assert.equal((await site.ferry(['snapshot', 'create', 'v', '--name', 'one'])).code, 0);
    const [pack] = listPackFiles(site.home);
    const saved = readFileSync(pack);
    rmSync(pack);
    assert.equal((await site.ferry(['verify'])).code, 5);
    assert.equal(lostPacks(site.home).length, 1);
    writeFileSync(pack, saved);
    assert.equal((await site.ferry(['verify'])).code, 0);
    assert.deepEqual(lostPacks(site.home), []);
    const two = await site.json(['snapshot', 'create', 'v']);
    assert.equal(two.snapshot.stats.objectsAdded, 0, `nothing to store again: ${JSON.stringify(two.snapshot.stats)}`);
  } finally {
    site.cleanup();
  }
});

test('a secondary that lost a pack asks for its objects again on the next update, and heals', async (t) => {
  const a = await createSite('a');
  const b = await createSite('b');
  t.after(() => cleanupSites([a, b]));
  const data = join(a.dir, 'data');
  mkdirSync(join(data, 'keep'), { recursive: true });
  writeRandomFile(join(data, 'x.bin'), 300_000);
  writeRandomFile(join(data, 'keep', 'k1.bin'), 200_000);
  writeFileSync(join(data, 'keep', 'k2.txt'), 'k2\n');
  writeFileSync(join(data, 'y.txt'), 'y1\n');
  // An image too: its changed block list is sent against the base's, whose blocks a healthy receiver
  // holds; one that lost them must be asked about every block again.
  const disk = join(a.dir, 'disk.img');
  writeRandomFile(disk, 2 * 1024 * 1024);
  a.defineVolume('vol', [`data=tree:${data}`, `disk=image:${disk}`]);
  await Promise.all([a.start(), b.start()]);
  await pairSites(a, b);
  await a.json(['mirror', 'create', 'vol', '--to', 'b']);
  await a.json(['mirror', 'initialize', 'vol', '--to', 'b', '--wait']);
  // Second update: keep/ changes (its new tree lands in the newest pack at b), x.bin and keep/k1.bin do not
  // (their chunks stay in b's first pack).
  writeFileSync(join(data, 'keep', 'k2.txt'), 'k2, second\n');
  writeFileSync(join(data, 'y.txt'), 'y2\n');
  const second = await a.json(['mirror', 'update', 'vol', '--to', 'b', '--wait']);
  const shown = (await b.json(['volume', 'show', 'vol'])).members as Array<{ name: string; path: string }>;
  const replica = shown.find((m) => m.name === 'data')!.path;
  const diskReplica = shown.find((m) => m.name === 'disk')!.path;
  assertTreesEqual(replica, data);

  // Lose every pack at b but the one holding the applied snapshot's manifest (and the new keep/ tree).
  await b.stop();
  const db = new DatabaseSync(join(b.home, 'catalog.db'), { readOnly: true });
  const keepPack = (db.prepare('SELECT p.name AS name FROM snapshots s JOIN objects o ON o.id = unhex(s.manifest) JOIN packs p ON p.id = o.pack WHERE s.id = ?').get(second.snapshot) as { name: string }).name;
  db.close();
  const lostFiles = listPackFiles(b.home).filter((f) => !f.endsWith(`${keepPack}.pack`));
  assert.ok(lostFiles.length >= 1);
  for (const f of lostFiles) rmSync(f);
  await b.start({ port: b.port });
  const bInfo = await b.json(['info']);
  assert.ok(bInfo.store.lostPacks >= 1 && bInfo.store.lostObjects >= 2, JSON.stringify(bInfo.store));
  const lostChunks = new DatabaseSync(join(b.home, 'catalog.db'), { readOnly: true });
  const lostIds = (lostChunks.prepare("SELECT hex(o.id) AS id FROM objects o JOIN lost_packs l ON l.pack = o.pack WHERE o.kind = 1").all() as Array<{ id: string }>).map((r) => r.id.toLowerCase());
  lostChunks.close();

  // The next update: only a top-level file changes. keep/'s tree is still held at b, but the chunk of
  // keep/k1.bin below it was lost, as was x.bin's: both travel again, and the replica verifies.
  writeFileSync(join(data, 'y.txt'), 'y3\n');
  const fd = openSync(disk, 'r+');
  writeSync(fd, Buffer.alloc(4096, 7), 0, 4096, 100_000); // one block of the image changes
  closeSync(fd);
  const third = await a.json(['mirror', 'update', 'vol', '--to', 'b', '--wait']);
  assert.equal(third.applied, true);
  assert.ok(third.transfer.rawBytes >= 500_000, `the lost chunks (500 kB) were not sent again: ${JSON.stringify(third.transfer)}`);
  // Sent: the two lost chunks, y.txt's new chunk, the new root tree, keep/'s tree (walked through), the manifest.
  assert.ok(third.transfer.objects >= 5, JSON.stringify(third.transfer));
  assertTreesEqual(replica, data);
  assert.ok(readFileSync(diskReplica).equals(readFileSync(disk)), 'the image replica differs after healing');
  const check = new DatabaseSync(join(b.home, 'catalog.db'), { readOnly: true });
  const stillLost = (check.prepare("SELECT hex(o.id) AS id FROM objects o JOIN lost_packs l ON l.pack = o.pack WHERE o.kind = 1").all() as Array<{ id: string }>).map((r) => r.id.toLowerCase());
  check.close();
  const healed = lostIds.filter((id) => !stillLost.includes(id));
  assert.ok(healed.length >= 2, `lost chunks stored again at b: ${healed.length} of ${lostIds.length}`);
  const v = await b.ferry(['verify', '--json']);
  assert.equal(v.code, 0, `${v.stdout}${v.stderr}`);
  // And one more update sends only what changed: the store is whole again.
  writeFileSync(join(data, 'y.txt'), 'y4\n');
  const fourth = await a.json(['mirror', 'update', 'vol', '--to', 'b', '--wait']);
  assert.ok(fourth.transfer.rawBytes < 100_000, JSON.stringify(fourth.transfer));
  assertTreesEqual(replica, data);
  assert.ok(readFileSync(diskReplica).equals(readFileSync(disk)));
});
