import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ERRORS, FerryError, asFerryError, wrapIoError } from '../../../src/core/errors.ts';
import { renderErrorsDoc } from '../../../scripts/gen-errors-doc.ts';
import { ROOT } from '../../helpers.ts';

test('docs/errors.md documents every error code (regenerate with node scripts/gen-errors-doc.ts)', () => {
  assert.equal(readFileSync(join(ROOT, 'docs', 'errors.md'), 'utf8'), renderErrorsDoc());
});

test('errors are JSON-serialisable with code, kind and message', () => {
  const e = new FerryError('VOLUME_NOT_FOUND', 'no volume x', { details: { volume: 'x' } });
  assert.deepEqual(JSON.parse(JSON.stringify(e)), { code: 'VOLUME_NOT_FOUND', kind: 'usage', message: 'no volume x', details: { volume: 'x' } });
  assert.equal(e.exitCode, ERRORS.VOLUME_NOT_FOUND.exit);
});

test('system errors become errors that say what to do', () => {
  const full = wrapIoError(Object.assign(new Error('nope'), { code: 'ENOSPC' }), 'writing pack');
  assert.equal(full.code, 'NO_SPACE');
  assert.match(full.message, /disk is full; free space/);
  assert.equal(wrapIoError(Object.assign(new Error('x'), { code: 'EACCES' }), 'reading f').code, 'IO');
});

/** A Node system error as fs raises it. */
const sysErr = (code: string, syscall: string, path?: string, dest?: string) => Object.assign(new Error(`${code}: ..., ${syscall}`), { code, syscall, path, dest });

test('a refused operation names the syscall and its path, and says what to do: EPERM (immutable, not the owner) is not "cannot read"', () => {
  const rename = wrapIoError(sysErr('EPERM', 'rename', '/r/etc/.ferry-tmp.x', '/r/etc/app.conf'), 'renaming into place /r/etc/app.conf');
  assert.equal(rename.code, 'IO');
  assert.match(rename.message, /^renaming into place \/r\/etc\/app\.conf: rename of \/r\/etc\/\.ferry-tmp\.x to \/r\/etc\/app\.conf failed \(EPERM: operation not permitted\)/);
  assert.ok(rename.message.includes('`lsattr -d /r/etc/app.conf /r/etc`'), rename.message);
  assert.ok(rename.message.includes('`chattr -i /r/etc/app.conf`'), rename.message);
  assert.doesNotMatch(rename.message, /can read it/);
  const unlink = wrapIoError(sysErr('EPERM', 'unlink', '/r/old'), 'removing /r/old').message;
  assert.match(unlink, /unlink of \/r\/old failed \(EPERM/);
  assert.ok(unlink.includes('`chattr -i /r/old`'), unlink);
  const rm = wrapIoError(sysErr('EPERM', 'rm', '/r/dir'), 'removing /r/dir').message;
  assert.ok(rm.includes('`lsattr -R /r/dir`'), rm);
  const chmod = wrapIoError(sysErr('EPERM', 'chmod', '/r/f'), 'setting the mode and mtime of /r/f').message;
  assert.match(chmod, /chmod of \/r\/f failed \(EPERM.*chattr -i \/r\/f.*owner or root/);
  const utime = wrapIoError(sysErr('EPERM', 'utime', '/r/f'), 'x').message;
  assert.match(utime, /utime of \/r\/f failed .*owner or root/);
});

test('EACCES: a read says read permission, a write says write permission on the directory, an open says which it was when told', () => {
  const read = wrapIoError(sysErr('EACCES', 'scandir', '/data/private'), 'reading member directory /data/private').message;
  assert.match(read, /scandir of \/data\/private failed \(EACCES: permission denied\): run ferry as a user that can read it/);
  const mkdir = wrapIoError(sysErr('EACCES', 'mkdir', '/r/new'), 'creating /r/new').message;
  assert.match(mkdir, /mkdir of \/r\/new failed \(EACCES: permission denied\): ferry's user may not write in \/r:/);
  assert.match(wrapIoError(sysErr('EACCES', 'open', '/r/f'), 'creating /r/f', { writing: true }).message, /may not write in \/r:/);
  assert.match(wrapIoError(sysErr('EACCES', 'open', '/r/f'), 'reading /r/f', { writing: false }).message, /can read it/);
  assert.match(wrapIoError(sysErr('EACCES', 'open', '/r/f'), 'opening /r/f').message, /may not read or write \/r\/f/);
});

/** chattr works here (root, a filesystem with inode flags). */
function chattrWorks(dir: string): boolean {
  const f = join(dir, 'probe');
  writeFileSync(f, '');
  const ok = spawnSync('chattr', ['+i', f]).status === 0;
  if (ok) spawnSync('chattr', ['-i', f]);
  unlinkSync(f);
  return ok;
}

test('a real immutable file: replacing it by rename is refused with EPERM, and the message says to clear the flag', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-eperm-'));
  const locked = join(dir, 'locked');
  try {
    if (!chattrWorks(dir)) return t.skip('chattr +i is not available here (needs root and a filesystem with inode flags)');
    writeFileSync(locked, 'old');
    writeFileSync(join(dir, 'new'), 'new');
    assert.equal(spawnSync('chattr', ['+i', locked]).status, 0);
    let err: unknown;
    try {
      renameSync(join(dir, 'new'), locked);
    } catch (e) {
      err = e;
    }
    const fe = wrapIoError(err, `renaming into place ${locked}`);
    assert.ok(fe.message.includes(`rename of ${join(dir, 'new')} to ${locked} failed (EPERM`), fe.message);
    assert.ok(fe.message.includes(`chattr -i ${locked}`), fe.message);
  } finally {
    spawnSync('chattr', ['-i', locked]);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('asFerryError: a full disk that reaches a boundary unwrapped is NO_SPACE, never INTERNAL; anything else is INTERNAL', () => {
  const full = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write', path: '/h/x' });
  const e = asFerryError(full);
  assert.equal(e.code, 'NO_SPACE');
  assert.match(e.message, /write \/h\/x: the disk is full; free space/);
  assert.equal(asFerryError(Object.assign(new Error('quota'), { code: 'EDQUOT' })).code, 'NO_SPACE');
  const bug = asFerryError(new TypeError('x is undefined'), { brief: true, prefix: 'unhandled: ' });
  assert.equal(bug.code, 'INTERNAL');
  assert.equal(bug.message, 'unhandled: x is undefined');
  const kept = new FerryError('SITE_LOCKED', 'busy');
  assert.equal(asFerryError(kept), kept);
});
