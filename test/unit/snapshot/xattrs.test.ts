// Extended attributes through the attr tools (xattrs.ts): what the writer
// sets the reader reads back, byte for byte, under names that are not UTF-8
// or hold the dump format's own special characters; inherited ACLs are
// cleared; the mode of a file whose ACL cannot be set never widens.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ACL_ACCESS, ACL_DEFAULT, XattrReader, XattrWriter, hasDefaultAcl, modeWithoutAcl, readXattrsSync, xattrToolsPresent, type Xattrs } from '../../../src/snapshot/xattrs.ts';
import { tempDir } from '../../helpers.ts';

const skip = xattrToolsPresent() ? false : 'getfattr/setfattr are not installed (apt-get install attr acl; npm test installs them as root)';
const B = (s: string | number[]) => Buffer.from(s as string);
const names = (x: Xattrs | undefined) => (x ?? []).map(([n, v]) => `${n.toString('latin1')}=${v.toString('hex')}`);

test('what the writer sets, the readers read back exactly (odd names and values)', { skip }, async () => {
  const dir = tempDir();
  try {
    const paths = ['plain', 'a\\b', 'new\nline', 'eq=ual', ' lead', 'trail ', '#hash'].map((n) => B(join(dir.path, n)));
    paths.push(Buffer.concat([B(dir.path + '/'), B([0x63, 0x61, 0x66, 0xe9, 0x0d])]));
    for (const p of paths) writeFileSync(p, 'x');
    const sub = B(join(dir.path, 'sub'));
    mkdirSync(sub);
    const want: Xattrs = [
      [B('user.empty'), Buffer.alloc(0)],
      [B('user.na=me\\x'), B([0, 1, 2, 0x0a, 0x5c, 0xff])],
      [B('user.z'), Buffer.alloc(3000, 7)],
    ];
    const failures: string[] = [];
    const w = new XattrWriter((p, m) => failures.push(`${p}: ${m}`));
    for (const p of paths) assert.equal(w.set(p, want), true);
    w.flush();
    assert.deepEqual(failures, []);
    const sync = readXattrsSync([...paths, sub, B(join(dir.path, 'missing'))]);
    for (let i = 0; i < paths.length; i++) assert.deepEqual(names(sync[i].xattrs), names(want), paths[i].toString('latin1'));
    assert.deepEqual(sync[paths.length].xattrs, []);
    // gone: unknown, and no error of its own (the walk reports what vanished)
    assert.deepEqual(sync[paths.length + 1], { xattrs: undefined });
    const reader = new XattrReader();
    const pending = paths.map((p) => reader.read(p));
    reader.flush();
    for (const r of await Promise.all(pending)) assert.deepEqual(names(r.xattrs), names(want));
    // names the writer removes from an entry that had them
    assert.equal(w.set(paths[0], want.slice(2), { had: want }), true);
    w.flush();
    assert.deepEqual(names(readXattrsSync([paths[0]])[0].xattrs), names(want.slice(2)));
  } finally {
    dir.cleanup();
  }
});

test('ACLs: a captured ACL comes back (and the group bits with it); inherited ACLs are cleared', { skip }, () => {
  const dir = tempDir();
  try {
    const shared = join(dir.path, 'shared');
    mkdirSync(shared);
    execFileSync('setfacl', ['-d', '-m', 'u:1234:rwx', shared]);
    const f = join(shared, 'f');
    writeFileSync(f, 'x');
    const [inheritedDir] = readXattrsSync([B(shared)]);
    assert.ok(hasDefaultAcl(inheritedDir.xattrs));
    // the file inherited an access ACL from the default
    assert.ok(readXattrsSync([B(f)])[0].xattrs!.some(([n]) => n.equals(ACL_ACCESS)));
    const w = new XattrWriter((p, m) => assert.fail(`${p}: ${m}`));
    w.set(B(f), [], { clearAcls: true, mode: 0o640 });
    const sub = join(shared, 'sub');
    mkdirSync(sub);
    w.set(B(sub), [], { clearAcls: true, isDir: true });
    w.flush();
    assert.equal(execFileSync('stat', ['-c', '%a', f]).toString().trim(), '640');
    assert.deepEqual(readXattrsSync([B(f), B(sub)]).map((r) => r.xattrs), [[], []]);

    // a file whose group has r-- but a named user rwx: the mode shows the mask (rwx)
    const g = join(dir.path, 'g');
    writeFileSync(g, 'x');
    execFileSync('chmod', ['640', g]);
    execFileSync('setfacl', ['-m', 'u:1234:rwx', g]);
    const acl = readXattrsSync([B(g)])[0].xattrs!;
    assert.equal((execFileSync('stat', ['-c', '%a', g]).toString().trim()), '670');
    assert.equal(modeWithoutAcl(0o670, acl), 0o640);
    assert.equal(modeWithoutAcl(0o670, []), 0o670);
    const h = join(dir.path, 'h');
    writeFileSync(h, 'x');
    execFileSync('chmod', ['670', h]);
    const w2 = new XattrWriter((p, m) => assert.fail(`${p}: ${m}`));
    w2.set(B(h), acl);
    w2.flush();
    assert.match(execFileSync('getfacl', ['-c', h]).toString(), /group::r--/);
    assert.equal(hasDefaultAcl(acl), false);
    // an ACL the kernel refuses (two owner entries): a warning, and the group bits narrowed, never the mask's
    const bad = Buffer.alloc(4 + 5 * 8);
    bad.writeUInt32LE(2, 0);
    [[0x01, 6], [0x01, 6], [0x04, 4], [0x10, 7], [0x20, 4]].forEach(([tag, perm], i) => {
      bad.writeUInt16LE(tag, 4 + 8 * i);
      bad.writeUInt16LE(perm, 6 + 8 * i);
      bad.writeUInt32LE(0xffffffff, 8 + 8 * i);
    });
    const k = join(dir.path, 'k');
    writeFileSync(k, 'x', { mode: 0o600 });
    const warned: string[] = [];
    const w3 = new XattrWriter((p, m) => warned.push(`${p}: ${m}`));
    assert.equal(w3.set(B(k), [[ACL_ACCESS, bad]], { mode: 0o670 }), true);
    w3.flush();
    assert.equal(warned.length, 1, warned.join('\n'));
    assert.equal(execFileSync('stat', ['-c', '%a', k]).toString().trim(), '640');
    // symlinks are never followed
    const l = join(dir.path, 'l');
    symlinkSync('g', l);
    assert.deepEqual(readXattrsSync([B(l)])[0].xattrs, []);
    assert.ok(ACL_DEFAULT.length > 0);
  } finally {
    dir.cleanup();
  }
});
