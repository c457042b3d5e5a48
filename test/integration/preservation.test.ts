// What a snapshot keeps, through the real CLI: permissions (setuid, setgid,
// sticky), ownership (as root: arbitrary uids), mtimes, symlinks of every
// kind (never followed), hard links, empty files and directories, names that
// are not UTF-8, FIFOs (recorded, never opened), and image members (sparse,
// restored sparse; block changes stored and diffed block by block).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  chmodSync, closeSync, ftruncateSync, lchownSync, linkSync, lstatSync, lutimesSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, renameSync, statSync,
  symlinkSync, utimesSync, writeFileSync, writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { fillBytes } from '../tree-gen.ts';
import { ACL_TOOLS_MISSING, aclToolsPresent, aclTree, assertTreesEqual, describeTree, pathWithout, sparseFile, writeAt, xattrDump } from '../helpers.ts';
import { makeSite } from '../harness/cli-site.ts';

const isRoot = process.getuid?.() === 0;

const b = (bytes: number[]) => Buffer.from(bytes);
/** Join path parts that may be raw bytes. */
const p = (...parts: Array<string | Buffer>) => Buffer.concat(parts.flatMap((x, i) => (i === 0 ? [Buffer.from(x)] : [Buffer.from('/'), Buffer.from(x)])));

/** A tree with one of everything; returns facts the test checks beside the full comparison. */
function buildTree(root: string, outside: string): void {
  mkdirSync(root, { recursive: true });
  const t = (sec: number, us: number) => sec + us / 1e6;
  // plain files with assorted modes, owners, times
  const files: Array<[string, number, number, number]> = [
    ['plain.txt', 0o644, 0, 0],
    ['private', 0o600, 12345, 54321],
    ['setuid-bin', 0o4755, 0, 0],
    ['setgid-bin', 0o2750, 4242, 4343],
    ['readonly', 0o444, 65534, 65534],
  ];
  for (const [name, mode, uid, gid] of files) {
    writeFileSync(join(root, name), `contents of ${name}\n`);
    if (isRoot) lchownSync(join(root, name), uid, gid);
    chmodSync(join(root, name), mode);
    utimesSync(join(root, name), t(1_500_000_000 + mode, 123_456), t(1_500_000_000 + mode, 123_456));
  }
  // a multi-chunk file
  writeFileSync(join(root, 'large.bin'), fillBytes(1_500_000, 42));
  // empty file, empty dirs (one nested), sticky world-writable dir
  writeFileSync(join(root, 'empty'), '');
  mkdirSync(join(root, 'empty-dir'));
  mkdirSync(join(root, 'nest', 'empty-inner'), { recursive: true });
  mkdirSync(join(root, 'tmp'));
  writeFileSync(join(root, 'tmp', 'scratch'), 'scratch');
  // hard links within the member: same dir and another dir
  writeFileSync(join(root, 'linked'), 'shared inode\n');
  linkSync(join(root, 'linked'), join(root, 'linked-again'));
  linkSync(join(root, 'linked'), join(root, 'nest', 'linked-deep'));
  // symlinks: relative, absolute, dangling, to /etc, to a directory outside, to a directory inside
  symlinkSync('plain.txt', join(root, 'rel-link'));
  symlinkSync('../nest/../plain.txt', join(root, 'nest', 'up-link'));
  symlinkSync('/etc/passwd', join(root, 'abs-link'));
  symlinkSync('does/not/exist', join(root, 'dangling'));
  symlinkSync('/etc', join(root, 'etc'));
  symlinkSync(outside, join(root, 'outside'));
  symlinkSync('nest', join(root, 'nest-link'));
  if (isRoot) lchownSync(join(root, 'rel-link'), 777, 888);
  // names that are not UTF-8 (a file, and a directory with a file in it)
  writeFileSync(p(root, b([0xff, 0xfe, 0x41])), 'latin-1 name\n');
  mkdirSync(p(root, b([0x63, 0x61, 0x66, 0xe9])));
  writeFileSync(p(root, b([0x63, 0x61, 0x66, 0xe9]), b([0x80])), 'lone continuation byte\n');
  // a FIFO: capture must record it and never open it (nobody writes to it: an open would block)
  execFileSync('mkfifo', ['-m', '0640', join(root, 'nest', 'pipe')]);
  // ... and FIFOs whose path is not UTF-8 (named, or inside a directory named, with raw bytes)
  execFileSync('mkfifo', ['-m', '0600', join(root, 'fifo-tmp-1')]);
  renameSync(join(root, 'fifo-tmp-1'), p(root, b([0x70, 0xff])));
  execFileSync('mkfifo', ['-m', '0644', join(root, 'fifo-tmp-2')]);
  renameSync(join(root, 'fifo-tmp-2'), p(root, b([0x63, 0x61, 0x66, 0xe9]), 'pipe'));
  // directory metadata last (creating children changes it)
  for (const [d, mode, uid] of [['tmp', 0o1777, 0], ['empty-dir', 0o700, 2000], ['nest', 0o750, 3000], ['nest/empty-inner', 0o755, 0]] as const) {
    if (isRoot) lchownSync(join(root, d), uid, uid + 1);
    chmodSync(join(root, d), mode);
  }
  for (const d of ['tmp', 'empty-dir', 'nest/empty-inner', 'nest']) utimesSync(join(root, d), t(1_400_000_000, 999_999), t(1_400_000_000, 999_999));
  lutimesSync(join(root, 'rel-link'), 1_300_000_000, 1_300_000_000);
}

test('a tree snapshot restores exactly: modes, owners, times, links, odd names, FIFO; symlinks are never followed', async () => {
  const site = await makeSite();
  try {
    const data = join(site.dir, 'data');
    const outside = join(site.dir, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'bait'), 'must never be captured or written');
    buildTree(data, outside);
    const etcBefore = readdirSync('/etc').sort();
    assert.equal((await site.ferry(['volume', 'create', 'v', '--member', data])).code, 0);

    const r = await site.ferry(['snapshot', 'create', 'v', '--json'], { timeoutMs: 60_000 });
    // Special files are recorded exactly: nothing warns.
    assert.equal(r.code, 0, `snapshot failed (${r.code}): ${r.stderr}`);
    assert.deepEqual(r.json.warnings, []);
    const st = r.json.stats;
    // regular files only from the tree: nothing under /etc or the outside directory was read
    const regular = [...describeTree(data).values()].filter((e) => e.type === 'file');
    assert.equal(st.files + st.hardlinks, regular.length);
    assert.equal(st.symlinks, 7);
    assert.equal(st.specials, 3);
    assert.equal(st.hardlinks, 2);
    assert.equal(st.bytes, regular.filter((e) => e.ino === undefined).reduce((n, e) => n + e.size, 0) + 'shared inode\n'.length);

    const out = join(site.dir, 'out');
    const rr = await site.ferry(['restore', 'v', '--snapshot', 'latest', '--target', out]);
    assert.equal(rr.code, 0, rr.stderr);
    assertTreesEqual(out, data);
    // spot checks of what the comparison covers
    assert.equal(statSync(join(out, 'setuid-bin')).mode & 0o7777, 0o4755);
    assert.equal(statSync(join(out, 'tmp')).mode & 0o7777, 0o1777);
    if (isRoot) assert.equal(statSync(join(out, 'private')).uid, 12345);
    assert.equal(readlinkSync(join(out, 'etc')), '/etc');
    assert.ok(lstatSync(join(out, 'etc')).isSymbolicLink());
    assert.ok(lstatSync(join(out, 'nest', 'pipe')).isFIFO());
    assert.ok(lstatSync(p(out, b([0x70, 0xff]))).isFIFO());
    assert.ok(lstatSync(p(out, b([0x63, 0x61, 0x66, 0xe9]), 'pipe')).isFIFO());
    assert.equal(statSync(join(out, 'linked')).ino, statSync(join(out, 'nest', 'linked-deep')).ino);
    assert.equal(readFileSync(p(out, b([0x63, 0x61, 0x66, 0xe9]), b([0x80])), 'utf8'), 'lone continuation byte\n');

    // Restoring with --force over a target where the snapshot's directories are symlinks out of it:
    // the symlinks are replaced, never written through.
    const trap = join(site.dir, 'trap');
    mkdirSync(trap);
    symlinkSync(outside, join(trap, 'nest'));
    symlinkSync(join(outside, 'bait'), join(trap, 'plain.txt'));
    symlinkSync('/etc', join(trap, 'tmp'));
    const rf = await site.ferry(['restore', 'v', '--snapshot', 'latest', '--target', trap, '--force']);
    assert.equal(rf.code, 0, rf.stderr);
    assertTreesEqual(trap, data);
    assert.deepEqual(readdirSync(outside), ['bait']);
    assert.equal(readFileSync(join(outside, 'bait'), 'utf8'), 'must never be captured or written');
    assert.deepEqual(readdirSync('/etc').sort(), etcBefore);
    assert.equal((await site.ferry(['verify'])).code, 0);
  } finally {
    site.cleanup();
  }
});

const KiB = 1024;
const BLOCK = 64 * KiB;

test('a sparse image member restores byte-identical and sparse; block changes are stored and diffed by block', async () => {
  const site = await makeSite();
  try {
    const img = join(site.dir, 'disk.img');
    const size = 64 << 20;
    const fd = openSync(img, 'w');
    ftruncateSync(fd, size);
    closeSync(fd);
    writeAt(img, 0, fillBytes(BLOCK, 2));
    writeAt(img, 5 * BLOCK + 100, fillBytes(3000, 4)); // unaligned, inside one block
    writeAt(img, 40 * 1024 * KiB - 10, fillBytes(20, 6)); // straddles two blocks
    writeAt(img, size - 512, fillBytes(512, 8)); // the very end
    assert.equal((await site.ferry(['volume', 'create', 'disk', '--member', `image:${img}`])).code, 0);
    const s1 = await site.json(['snapshot', 'create', 'disk']);
    assert.equal(s1.stats.bytes, size);
    assert.ok(s1.stats.bytesAdded < 5 * BLOCK + 64 * KiB, `holes were stored: ${s1.stats.bytesAdded} bytes added`);

    const out = join(site.dir, 'restored.img');
    const r = await site.ferry(['restore', 'disk', '--snapshot', 'latest', '--target', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(readFileSync(out).equals(readFileSync(img)), 'restored image differs');
    const rst = statSync(out);
    assert.equal(rst.size, size);
    assert.ok(rst.blocks * 512 < 2 << 20, `restored image is not sparse: ${rst.blocks * 512} bytes allocated for ${size}`);

    // Change three blocks in place (one of them a hole before), and put one data block back to zeros.
    writeAt(img, 10 * BLOCK, fillBytes(BLOCK, 10));
    writeAt(img, 20 * BLOCK + 7, Buffer.from('seven'));
    writeAt(img, 0, Buffer.from('overwritten start'));
    writeAt(img, 5 * BLOCK + 100, Buffer.alloc(3000));
    const s2 = await site.json(['snapshot', 'create', 'disk']);
    assert.ok(s2.stats.bytesAdded >= 3 * BLOCK, `only ${s2.stats.bytesAdded} bytes added for 3 changed blocks`);
    assert.ok(s2.stats.bytesAdded < 3 * BLOCK + 64 * KiB, `${s2.stats.bytesAdded} bytes added for 3 changed blocks`);
    const d = await site.json(['snapshot', 'diff', 'disk', s1.snapshot.id, s2.snapshot.id]);
    const m = d.members[0];
    assert.equal(m.kind, 'image');
    assert.equal(m.changedBlocks, 4);
    assert.deepEqual(m.ranges, [[0, BLOCK], [5 * BLOCK, BLOCK], [10 * BLOCK, BLOCK], [20 * BLOCK, BLOCK]]);
    const text = await site.ferry(['snapshot', 'diff', 'disk', s1.snapshot.id, s2.snapshot.id]);
    assert.match(text.stdout, /4 blocks changed/);

    const out2 = join(site.dir, 'restored2.img');
    assert.equal((await site.ferry(['restore', 'disk', '--snapshot', s2.snapshot.id, '--target', out2])).code, 0);
    assert.ok(readFileSync(out2).equals(readFileSync(img)));
    // the first snapshot is still the first image
    const out1 = join(site.dir, 'restored1.img');
    assert.equal((await site.ferry(['restore', 'disk', '--snapshot', s1.snapshot.id, '--target', out1])).code, 0);
    assert.ok(readFileSync(out1).equals(readFileSync(out)));
    assert.equal((await site.ferry(['verify'])).code, 0);
  } finally {
    site.cleanup();
  }
});

test('mtimes before 1970 come back exactly (file, directory, symlink), not as the time of the restore', async () => {
  const site = await makeSite();
  try {
    const data = join(site.dir, 'data');
    mkdirSync(join(data, 'old-dir'), { recursive: true });
    writeFileSync(join(data, 'old-dir', 'punched-card.txt'), 'from 1960\n');
    symlinkSync('punched-card.txt', join(data, 'old-dir', 'link'));
    // touch -d gives the nanoseconds (Node's utimes turns a negative number into 'now')
    execFileSync('touch', ['-h', '-d', '1960-01-01 00:00:00.123456789 UTC', join(data, 'old-dir', 'punched-card.txt'), join(data, 'old-dir', 'link')]);
    execFileSync('touch', ['-d', '1969-12-31 23:59:59.999999 UTC', join(data, 'old-dir')]);
    assert.equal((await site.ferry(['volume', 'create', 'v', '--member', data])).code, 0);
    assert.equal((await site.ferry(['snapshot', 'create', 'v'])).code, 0);
    const out = join(site.dir, 'out');
    const r = await site.ferry(['restore', 'v', '--snapshot', 'latest', '--target', out]);
    assert.equal(r.code, 0, r.stderr);
    assertTreesEqual(out, data);
    for (const rel of ['old-dir', 'old-dir/punched-card.txt', 'old-dir/link']) {
      const want = lstatSync(join(data, rel), { bigint: true }).mtimeNs;
      const got = lstatSync(join(out, rel), { bigint: true }).mtimeNs;
      assert.ok(got < 0n, `${rel} came back at ${got} ns`);
      // kept to the microsecond (floor): the restored time is in the same microsecond as the original
      const us = (ns: bigint) => (ns - (((ns % 1000n) + 1000n) % 1000n)) / 1000n;
      assert.equal(us(got), us(want), `${rel}: ${got} vs ${want}`);
    }
    // A second snapshot of the restored tree is the same tree: the times round-trip.
    assert.equal((await site.ferry(['volume', 'create', 'w', '--member', out])).code, 0);
    const a = await site.json(['snapshot', 'show', 'v', 'latest']);
    const b = await site.json(['snapshot', 'create', 'w']);
    const bShow = await site.json(['snapshot', 'show', 'w', b.snapshot.id]);
    assert.equal(bShow.members[0].root, a.members[0].root);
  } finally {
    site.cleanup();
  }
});

/** A Unix socket at `path` with nothing listening (what a process that died leaves). */
async function staleSocket(dir: string, path: string | Buffer): Promise<void> {
  const server = createServer();
  const tmp = join(dir, 'tmp.sock');
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(tmp, resolve));
  renameSync(tmp, path);
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

test('Unix sockets are restored as sockets with their metadata, under odd names and long paths too', async () => {
  const site = await makeSite();
  try {
    const data = join(site.dir, 'data');
    const deep = join(data, 'x'.repeat(70), 'y'.repeat(70));
    mkdirSync(deep, { recursive: true });
    mkdirSync(p(data, b([0x72, 0xff])));
    await staleSocket(site.dir, join(data, 'app.sock'));
    await staleSocket(site.dir, join(deep, 'deep.sock'));
    await staleSocket(site.dir, p(data, b([0x72, 0xff]), b([0x73, 0xfe])));
    chmodSync(join(data, 'app.sock'), 0o700);
    utimesSync(join(data, 'app.sock'), 1_500_000_000, 1_500_000_000);
    if (isRoot) lchownSync(join(data, 'app.sock'), 4321, 8765);
    assert.equal((await site.ferry(['volume', 'create', 'v', '--member', data])).code, 0);
    assert.ok([0, 8].includes((await site.ferry(['snapshot', 'create', 'v'])).code));
    const out = join(site.dir, 'out');
    const r = await site.ferry(['restore', 'v', '--snapshot', 'latest', '--target', out, '--json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(r.json.warnings, []);
    assertTreesEqual(out, data);
    assert.ok(lstatSync(join(out, 'app.sock')).isSocket());
    assert.ok(lstatSync(join(out, 'x'.repeat(70), 'y'.repeat(70), 'deep.sock')).isSocket());
    assert.ok(lstatSync(p(out, b([0x72, 0xff]), b([0x73, 0xfe]))).isSocket());
    // one socket alone, by --path
    const one = join(site.dir, 'one.sock');
    assert.equal((await site.ferry(['restore', 'v', '--snapshot', 'latest', '--path', 'app.sock', '--target', one])).code, 0);
    assert.ok(lstatSync(one).isSocket());
    assert.equal(lstatSync(one).mode & 0o7777, 0o700);
  } finally {
    site.cleanup();
  }
});

test('holes in files of a tree member are restored as holes: same bytes, little allocated', async () => {
  const site = await makeSite();
  try {
    const data = join(site.dir, 'data');
    mkdirSync(join(data, 'vm'), { recursive: true });
    const size = 64 << 20;
    sparseFile(join(data, 'vm', 'disk.raw'), size, [
      [5 * 1024 * KiB + 123, fillBytes(8 * KiB, 3)], // unaligned, mid-file
      [40 * 1024 * KiB - 50, fillBytes(100, 5)], // straddles a 4 KiB boundary
      [size - 10, fillBytes(10, 7)], // the very end
    ]);
    writeFileSync(join(data, 'vm', 'zeros-then-tail'), Buffer.concat([Buffer.alloc(3 << 20), Buffer.from('tail')]));
    assert.equal((await site.ferry(['volume', 'create', 'v', '--member', data])).code, 0);
    assert.equal((await site.ferry(['snapshot', 'create', 'v'])).code, 0);
    const allocated = (path: string) => statSync(path).blocks * 512;
    const out = join(site.dir, 'out');
    const r = await site.ferry(['restore', 'v', '--snapshot', 'latest', '--target', out]);
    assert.equal(r.code, 0, r.stderr);
    assertTreesEqual(out, data);
    assert.ok(allocated(join(out, 'vm', 'disk.raw')) <= 64 * KiB, `${allocated(join(out, 'vm', 'disk.raw'))} bytes allocated for ${allocated(join(data, 'vm', 'disk.raw'))} at the source`);
    assert.ok(allocated(join(out, 'vm', 'zeros-then-tail')) <= 16 * KiB, `the zeros were written: ${allocated(join(out, 'vm', 'zeros-then-tail'))} bytes allocated`);
    // one file by --path, and over an existing file with --force
    const one = join(site.dir, 'one.raw');
    writeFileSync(one, fillBytes(1 << 20, 9));
    assert.equal((await site.ferry(['restore', 'v', '--snapshot', 'latest', '--path', 'vm/disk.raw', '--target', one, '--force'])).code, 0);
    assert.ok(readFileSync(one).equals(readFileSync(join(data, 'vm', 'disk.raw'))));
    assert.ok(allocated(one) <= 64 * KiB, `${allocated(one)} bytes allocated`);
  } finally {
    site.cleanup();
  }
});

const aclSkip = aclToolsPresent() ? false : ACL_TOOLS_MISSING;
const sh = (cmd: string, ...args: string[]) => execFileSync(cmd, args);

test('extended attributes and POSIX ACLs are captured and restored exactly; an ACL never turns into group rights', { skip: aclSkip }, async () => {
  const site = await makeSite();
  try {
    const data = join(site.dir, 'data');
    aclTree(data);
    const want = xattrDump(data);
    assert.ok(want.get('acl-file')?.some((l) => l.startsWith('system.posix_acl_access=')));
    assert.equal(statSync(join(data, 'acl-file')).mode & 0o777, 0o670);
    assert.equal((await site.ferry(['volume', 'create', 'v', '--member', data])).code, 0);
    const s1 = await site.ferry(['snapshot', 'create', 'v', '--json']);
    assert.equal(s1.code, 0, s1.stderr);
    assert.deepEqual(s1.json.warnings, []);

    const out = join(site.dir, 'out');
    const r = await site.ferry(['restore', 'v', '--snapshot', 'latest', '--target', out, '--json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assertTreesEqual(out, data);
    assert.deepEqual(xattrDump(out), want);
    assert.match(sh('getfacl', '-c', join(out, 'acl-file')).toString(), /^group::r--$/m);
    // one file by --path into a directory with a default ACL of its own: it does not take that ACL
    const elsewhere = join(site.dir, 'elsewhere');
    mkdirSync(elsewhere);
    sh('setfacl', '-d', '-m', 'u:4321:rwx', elsewhere);
    assert.equal((await site.ferry(['restore', 'v', '--snapshot', 'latest', '--path', 'shared/stripped', '--target', join(elsewhere, 'stripped')])).code, 0);
    assert.deepEqual(xattrDump(elsewhere).get('stripped') ?? [], []);

    // Without setfattr: restored with a warning, and the group keeps only its own rights (r--, not the mask's rwx)
    const noSet = pathWithout(site.dir, ['setfattr']);
    const out2 = join(site.dir, 'out2');
    const r2 = await site.ferry(['restore', 'v', '--snapshot', 'latest', '--target', out2, '--json'], { env: { PATH: noSet } });
    assert.equal(r2.code, 8, r2.stdout + r2.stderr);
    assert.match(JSON.stringify(r2.json.warnings), /not restored: setfattr is not installed/);
    assert.equal(statSync(join(out2, 'acl-file')).mode & 0o777, 0o640);
    assert.equal(xattrDump(out2).size, 0);

    // Without getfattr: the snapshot says once that it captured no attributes
    const noGet = pathWithout(site.dir, ['getfattr']);
    const s2 = await site.ferry(['snapshot', 'create', 'v', '--json'], { env: { PATH: noGet } });
    assert.equal(s2.code, 8, s2.stderr);
    const notCaptured = s2.json.warnings.filter((w: { problem: string }) => w.problem === 'xattrs-not-captured');
    assert.equal(notCaptured.length, 1);
    assert.match(notCaptured[0].message, /apt-get install attr/);
  } finally {
    site.cleanup();
  }
});
