// Damaged data: flipped bytes in a pack (chunk data and tree objects), a
// catalog of a newer format, a file that is not a ferry catalog. Each is
// refused or reported with the documented code and exit status, naming what
// is affected, and nothing is made worse.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdirSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { assertError, listPackFiles, makeSite, siteState, writeRandomFile } from './cli-util.ts';

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

test('after a pack file is lost, verify names what it broke, and the next snapshot of the same data does not depend on it', { todo: 'PackStore.has() still answers true for objects in a pack recover() reported missing, so capture (dedup and stat cache) re-references the lost chunks: the new snapshot exits 0 but is damaged (src/store/pack-store.ts, src/snapshot/capture.ts)' }, async () => {
  const site = await makeSite();
  try {
    const a = join(site.dir, 'a');
    mkdirSync(a);
    writeFileSync(join(a, 'a.txt'), 'alpha\n');
    writeRandomFile(join(a, 'b.bin'), 300_000);
    assert.equal((await site.ferry(['volume', 'create', 'v', '--member', a])).code, 0);
    const one = (await site.json(['snapshot', 'create', 'v', '--name', 'one'])).snapshot.id;
    const packs = listPackFiles(site.home);
    assert.equal(packs.length, 1);
    rmSync(packs[0]);
    const r = await site.ferry(['verify', '--json']);
    assert.equal(r.code, 5);
    assert.deepEqual(r.json.damagedSnapshots, [one]);
    // The data is still on disk: a new snapshot must store it again (or at least say it could not).
    const two = await site.ferry(['snapshot', 'create', 'v', '--json']);
    if (two.code === 0) {
      const after = await site.ferry(['verify', '--json']);
      assert.deepEqual(after.json.damagedSnapshots, [one], 'the new snapshot silently references the lost objects');
    } else assert.notEqual(two.code, 8, 'a snapshot that depends on lost objects must not pass as a success');
  } finally {
    site.cleanup();
  }
});
