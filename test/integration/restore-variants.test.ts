// Restore variants through the CLI: one file (--path), one directory
// (--path), one member of a multi-member volume (--member: a tree and an
// image), and --force over a non-empty target.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, closeSync, existsSync, ftruncateSync, linkSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { fillBytes } from '../tree-gen.ts';
import { assertTreesEqual } from '../helpers.ts';
import { assertError, FERRY_BIN, makeSite, type TestSite } from '../harness/cli-site.ts';

/** mtimes are restored to about a microsecond (Node sets times from a double): allow 2 us. */
function assertSameMtime(a: string, b: string): void {
  const d = statSync(a, { bigint: true }).mtimeNs - statSync(b, { bigint: true }).mtimeNs;
  assert.ok(d <= 2000n && d >= -2000n, `mtime of ${a} differs from ${b} by ${d} ns`);
}

function buildTree(root: string): void {
  mkdirSync(join(root, 'etc', 'app', 'conf.d'), { recursive: true });
  mkdirSync(join(root, 'var', 'data'), { recursive: true });
  writeFileSync(join(root, 'etc', 'app', 'app.conf'), 'port = 8080\n');
  chmodSync(join(root, 'etc', 'app', 'app.conf'), 0o640);
  utimesSync(join(root, 'etc', 'app', 'app.conf'), 1_600_000_000.25, 1_600_000_000.25);
  writeFileSync(join(root, 'etc', 'app', 'conf.d', 'extra.conf'), 'debug = false\n');
  symlinkSync('app.conf', join(root, 'etc', 'app', 'current.conf'));
  writeFileSync(join(root, 'var', 'data', 'blob.bin'), fillBytes(600_000, 12));
  // a hard link whose first path (in name order) is outside var/
  writeFileSync(join(root, 'aaa-first'), 'hard-linked content\n');
  linkSync(join(root, 'aaa-first'), join(root, 'var', 'data', 'linked'));
  writeFileSync(join(root, 'top.txt'), 'top\n');
  chmodSync(join(root, 'etc', 'app'), 0o750);
  utimesSync(join(root, 'etc', 'app'), 1_500_000_000.5, 1_500_000_000.5);
}

async function setup(): Promise<{ site: TestSite; data: string; img: string }> {
  const site = await makeSite();
  const data = join(site.dir, 'data');
  buildTree(data);
  const img = join(site.dir, 'disk.img');
  const fd = openSync(img, 'w');
  ftruncateSync(fd, 4 << 20);
  writeSync(fd, fillBytes(100_000, 14), 0, 100_000, 1 << 20);
  closeSync(fd);
  return { site, data, img };
}

test('--path restores one file, or one directory with its metadata', async () => {
  const { site, data } = await setup();
  try {
    assert.equal((await site.ferry(['volume', 'create', 'v', '--member', data])).code, 0);
    assert.equal((await site.ferry(['snapshot', 'create', 'v', '--name', 's'])).code, 0);

    // one file: the target is the file itself
    const f = join(site.dir, 'one', 'app.conf');
    const r = await site.ferry(['restore', 'v', '--snapshot', 's', '--path', 'etc/app/app.conf', '--target', f]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(f, 'utf8'), 'port = 8080\n');
    assert.equal(statSync(f).mode & 0o7777, 0o640);
    assertSameMtime(f, join(data, 'etc', 'app', 'app.conf'));
    assert.deepEqual(readdirSync(join(site.dir, 'one')), ['app.conf']);
    // a symlink by --path stays a symlink
    const l = join(site.dir, 'one', 'current.conf');
    assert.equal((await site.ferry(['restore', 'v', '--snapshot', 's', '--path', 'etc/app/current.conf', '--target', l])).code, 0);
    assert.ok(lstatSync(l).isSymbolicLink());

    // one directory: its contents, and its own mode and mtime
    const d = join(site.dir, 'dir-out');
    const rd = await site.ferry(['restore', 'v', '--snapshot', 's', '--path', 'etc/app', '--target', d]);
    assert.equal(rd.code, 0, rd.stderr);
    assertTreesEqual(d, join(data, 'etc', 'app'));
    assert.equal(statSync(d).mode & 0o7777, 0o750);
    assertSameMtime(d, join(data, 'etc', 'app'));
    // a hard link whose first path lies outside the restored directory comes back as a file with the content
    const v = join(site.dir, 'var-out');
    assert.equal((await site.ferry(['restore', 'v', '--snapshot', 's', '--path', 'var', '--target', v])).code, 0);
    assert.equal(readFileSync(join(v, 'data', 'linked'), 'utf8'), 'hard-linked content\n');
    assert.ok(readFileSync(join(v, 'data', 'blob.bin')).equals(readFileSync(join(data, 'var', 'data', 'blob.bin'))));
    // ... and so does the second name of a hard link restored alone
    const hl = join(site.dir, 'one', 'linked');
    assert.equal((await site.ferry(['restore', 'v', '--snapshot', 's', '--path', 'var/data/linked', '--target', hl])).code, 0);
    assert.equal(readFileSync(hl, 'utf8'), 'hard-linked content\n');
    // a path with a trailing slash or ./ prefix means the same
    const d2 = join(site.dir, 'dir-out2');
    assert.equal((await site.ferry(['restore', 'v', '--snapshot', 's', '--path', './etc/app/', '--target', d2])).code, 0);
    assertTreesEqual(d2, d);
    // '..' is refused, nothing is written
    const bad = await site.ferry(['restore', 'v', '--snapshot', 's', '--path', 'etc/../../x', '--target', join(site.dir, 'bad')]);
    assert.equal(bad.code, 2, bad.stderr);
    assert.equal(existsSync(join(site.dir, 'bad')), false);
  } finally {
    site.cleanup();
  }
});

test('--member restores one member of a multi-member volume (tree + image); without it, every member', async () => {
  const { site, data, img } = await setup();
  try {
    assert.equal((await site.ferry(['volume', 'create', 'db', '--member', `files=tree:${data}`, '--member', `disk=image:${img}`])).code, 0);
    const s = await site.json(['snapshot', 'create', 'db']);
    assert.deepEqual((await site.json(['snapshot', 'show', 'db', s.snapshot.id])).members.map((m: { name: string; kind: string }) => [m.name, m.kind]), [['files', 'tree'], ['disk', 'image']]);

    const all = join(site.dir, 'all');
    assert.equal((await site.ferry(['restore', 'db', '--snapshot', 'latest', '--target', all])).code, 0);
    assert.deepEqual(readdirSync(all).sort(), ['disk', 'files']);
    assertTreesEqual(join(all, 'files'), data);
    assert.ok(readFileSync(join(all, 'disk')).equals(readFileSync(img)));

    const tree = join(site.dir, 'tree-only');
    assert.equal((await site.ferry(['restore', 'db', '--snapshot', 'latest', '--member', 'files', '--target', tree])).code, 0);
    assertTreesEqual(tree, data);
    const image = join(site.dir, 'image-only.img');
    assert.equal((await site.ferry(['restore', 'db', '--snapshot', 'latest', '--member', 'disk', '--target', image])).code, 0);
    assert.ok(readFileSync(image).equals(readFileSync(img)));
    assert.ok(statSync(image).blocks * 512 < 1 << 20, 'the image was not restored sparse');

    // --path in a multi-member volume needs --member; a path in the tree member works with it
    assertError(await site.ferry(['restore', 'db', '--snapshot', 'latest', '--path', 'top.txt', '--target', join(site.dir, 'x')]), 2, 'USAGE', /--member/);
    const top = join(site.dir, 'top.txt');
    assert.equal((await site.ferry(['restore', 'db', '--snapshot', 'latest', '--member', 'files', '--path', 'top.txt', '--target', top])).code, 0);
    assert.equal(readFileSync(top, 'utf8'), 'top\n');
    assertError(await site.ferry(['restore', 'db', '--snapshot', 'latest', '--member', 'disk', '--path', 'x', '--target', join(site.dir, 'y')]), 2, 'USAGE');
    assertError(await site.ferry(['restore', 'db', '--snapshot', 'latest', '--member', 'nope', '--target', join(site.dir, 'z')]), 2, 'USAGE', /files, disk/);
    for (const t of ['x', 'y', 'z']) assert.equal(existsSync(join(site.dir, t)), false);
  } finally {
    site.cleanup();
  }
});

test('--force restores over a non-empty target: snapshot entries win, other entries stay', async () => {
  const { site, data, img } = await setup();
  try {
    assert.equal((await site.ferry(['volume', 'create', 'v', '--member', data])).code, 0);
    assert.equal((await site.ferry(['volume', 'create', 'i', '--member', `image:${img}`])).code, 0);
    assert.equal((await site.ferry(['snapshot', 'create', 'v'])).code, 0);
    assert.equal((await site.ferry(['snapshot', 'create', 'i'])).code, 0);

    const target = join(site.dir, 'target');
    mkdirSync(join(target, 'etc', 'app'), { recursive: true });
    writeFileSync(join(target, 'top.txt'), 'stale content that is longer than the original\n');
    writeFileSync(join(target, 'unrelated'), 'keep me\n');
    writeFileSync(join(target, 'var'), 'a file where the snapshot has a directory');
    mkdirSync(join(target, 'aaa-first')); // a directory where the snapshot has a file
    writeFileSync(join(target, 'aaa-first', 'inside'), 'x');
    writeFileSync(join(target, 'etc', 'app', 'extra-local'), 'local\n');
    assertError(await site.ferry(['restore', 'v', '--snapshot', 'latest', '--target', target]), 4, 'TARGET_NOT_EMPTY');
    assert.equal(readFileSync(join(target, 'top.txt'), 'utf8'), 'stale content that is longer than the original\n');

    const r = await site.ferry(['restore', 'v', '--snapshot', 'latest', '--target', target, '--force']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(join(target, 'top.txt'), 'utf8'), 'top\n');
    assert.equal(readFileSync(join(target, 'unrelated'), 'utf8'), 'keep me\n');
    assert.equal(readFileSync(join(target, 'etc', 'app', 'extra-local'), 'utf8'), 'local\n');
    assert.ok(statSync(join(target, 'var')).isDirectory());
    assert.ok(statSync(join(target, 'aaa-first')).isFile());
    // Everything in the snapshot is exact once the local extras are set aside.
    rmSync(join(target, 'unrelated'));
    rmSync(join(target, 'etc', 'app', 'extra-local'));
    // removing a file changed its directory's mtime: compare without mtimes, then check the files' times
    assertTreesEqual(target, data, { mtimes: false });
    assertSameMtime(join(target, 'var', 'data', 'blob.bin'), join(data, 'var', 'data', 'blob.bin'));

    // An image over an existing file: refused, then replaced with --force.
    const imgOut = join(site.dir, 'img-out');
    writeFileSync(imgOut, 'old');
    assertError(await site.ferry(['restore', 'i', '--snapshot', 'latest', '--target', imgOut]), 4, 'TARGET_NOT_EMPTY');
    assert.equal(readFileSync(imgOut, 'utf8'), 'old');
    assert.equal((await site.ferry(['restore', 'i', '--snapshot', 'latest', '--target', imgOut, '--force'])).code, 0);
    assert.ok(readFileSync(imgOut).equals(readFileSync(img)));
    // A file by --path over an existing file, with --force.
    const one = join(site.dir, 'one.txt');
    writeFileSync(one, 'old old old old');
    assert.equal((await site.ferry(['restore', 'v', '--snapshot', 'latest', '--path', 'top.txt', '--target', one, '--force'])).code, 0);
    assert.equal(readFileSync(one, 'utf8'), 'top\n');
  } finally {
    site.cleanup();
  }
});

test('a whole volume whose first member is an image restores into a new target (created, with each member in it)', async () => {
  const { site, data, img } = await setup();
  try {
    assert.equal((await site.ferry(['volume', 'create', 'db', '--member', `disk=image:${img}`, '--member', `files=tree:${data}`])).code, 0);
    assert.equal((await site.ferry(['snapshot', 'create', 'db'])).code, 0);
    const all = join(site.dir, 'new', 'all');
    const r = await site.ferry(['restore', 'db', '--snapshot', 'latest', '--target', all]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(readdirSync(all).sort(), ['disk', 'files']);
    assert.ok(readFileSync(join(all, 'disk')).equals(readFileSync(img)));
    assertTreesEqual(join(all, 'files'), data);
    // one image member alone, into a directory that does not exist yet
    const one = join(site.dir, 'deeper', 'still', 'disk.img');
    const r1 = await site.ferry(['restore', 'db', '--snapshot', 'latest', '--member', 'disk', '--target', one]);
    assert.equal(r1.code, 0, r1.stderr);
    assert.ok(readFileSync(one).equals(readFileSync(img)));
    // a second restore into the same (now full) target is refused before any member is written
    writeFileSync(join(all, 'files', 'top.txt'), 'changed after the restore\n');
    const again = await site.ferry(['restore', 'db', '--snapshot', 'latest', '--target', all]);
    assertError(again, 4, 'TARGET_NOT_EMPTY');
    assert.equal(readFileSync(join(all, 'files', 'top.txt'), 'utf8'), 'changed after the restore\n');
  } finally {
    site.cleanup();
  }
});

/** Run the CLI with arguments given as raw bytes (Node's own argv is UTF-8 only), through sh and printf. */
function ferryBytes(site: TestSite, args: Array<string | Buffer>): Promise<{ code: number; stdout: string; stderr: string }> {
  const octal = (x: string | Buffer) => `"$(printf '${[...Buffer.from(x)].map((c) => `\\${c.toString(8).padStart(3, '0')}`).join('')}')"`;
  const script = `exec "$0" ${args.map(octal).join(' ')} --home "$1"`;
  return new Promise((resolve) => {
    execFile('sh', ['-c', script, FERRY_BIN, site.home], { env: { ...process.env, FERRY_NO_PROGRESS: '1' } }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

test('--path names entries whose names are not UTF-8: as the shell passes the bytes, or spelled as diff shows them', async () => {
  const site = await makeSite();
  try {
    const data = join(site.dir, 'data');
    mkdirSync(data);
    const cafe = Buffer.from([0x63, 0x61, 0x66, 0xe9]); // 'café' in latin-1
    const dir = Buffer.concat([Buffer.from(data + '/'), cafe]);
    assert.equal((await site.ferry(['volume', 'create', 'v', '--member', data])).code, 0);
    assert.equal((await site.ferry(['snapshot', 'create', 'v', '--name', 'empty'])).code, 0);
    mkdirSync(dir);
    writeFileSync(Buffer.concat([dir, Buffer.from('/menu\x80', 'latin1')]), 'lone continuation byte\n');
    writeFileSync(Buffer.concat([dir, Buffer.from('/a\\b')]), 'a backslash in the name\n');
    linkSync(Buffer.concat([dir, Buffer.from('/menu\x80', 'latin1')]), Buffer.concat([dir, Buffer.from('/twin')]));
    assert.equal((await site.ferry(['snapshot', 'create', 'v', '--name', 's'])).code, 0);

    // diff spells the names so that they can be given back to --path
    const d = await site.ferry(['snapshot', 'diff', 'v', 'empty', 's']);
    assert.equal(d.code, 0, d.stderr);
    const listed = d.stdout.split('\n').filter((l) => l.startsWith('+ ')).map((l) => l.slice(2).replace(/ \(.*\)$/, ''));
    assert.deepEqual(listed, ['caf\\xe9/', 'caf\\xe9/a\\\\b', 'caf\\xe9/menu\\x80', 'caf\\xe9/twin']);

    // the bytes as a shell passes them (Node sees U+FFFD; the CLI takes the bytes from /proc/self/cmdline)
    const f1 = join(site.dir, 'f1');
    const r1 = await ferryBytes(site, ['restore', 'v', '--snapshot', 's', '--path', Buffer.concat([cafe, Buffer.from('/menu\x80', 'latin1')]), '--target', f1]);
    assert.equal(r1.code, 0, r1.stderr);
    assert.equal(readFileSync(f1, 'utf8'), 'lone continuation byte\n');
    const f1b = join(site.dir, 'f1b');
    const r1b = await ferryBytes(site, ['restore', 'v', '--snapshot', 's', Buffer.concat([Buffer.from('--path='), cafe, Buffer.from('/a\\b')]), '--target', f1b]);
    assert.equal(r1b.code, 0, r1b.stderr);
    assert.equal(readFileSync(f1b, 'utf8'), 'a backslash in the name\n');
    // each path as diff printed it
    for (const [i, path] of listed.entries()) {
      const t = join(site.dir, `by-text-${i}`);
      const r = await site.ferry(['restore', 'v', '--snapshot', 's', '--path', path.replace(/\/$/, ''), '--target', t]);
      assert.equal(r.code, 0, `${path}: ${r.stderr}`);
    }
    assert.deepEqual(readdirSync(join(site.dir, 'by-text-0'), { encoding: 'buffer' }).map((n) => n.toString('latin1')).sort(), ['a\\b', 'menu\x80', 'twin']);
    assert.equal(readFileSync(join(site.dir, 'by-text-1'), 'utf8'), 'a backslash in the name\n');
    assert.equal(readFileSync(join(site.dir, 'by-text-2'), 'utf8'), 'lone continuation byte\n');
    // the directory by --path: its hard link stays a hard link (both names inside what is restored)
    const out = join(site.dir, 'by-text-0');
    const menu = Buffer.concat([Buffer.from(out + '/menu'), Buffer.from([0x80])]);
    assert.equal(statSync(menu).ino, statSync(join(out, 'twin')).ino);
    // a name with a backslash typed plainly still works, and what is not there says so
    const plain = join(site.dir, 'plain');
    assert.equal((await site.ferry(['restore', 'v', '--snapshot', 's', '--path', 'caf\\xe9/a\\b', '--target', plain])).code, 0);
    assertError(await site.ferry(['restore', 'v', '--snapshot', 's', '--path', 'caf\\xe9/nothing', '--target', join(site.dir, 'n')]), 3, 'PATH_NOT_IN_SNAPSHOT', /caf\\xe9\/nothing/);
  } finally {
    site.cleanup();
  }
});
