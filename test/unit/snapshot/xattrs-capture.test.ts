// Capture reads extended attributes beside the walk (xattrs.ts) and keeps
// them in the stat cache with each entry, files and others alike: an
// unchanged entry's attributes come from the cache, and a change of them
// (which changes the ctime) is read again.
import { dirEntries } from '../../../src/snapshot/dir-pages.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { captureTree, type StatCacheIO } from '../../../src/snapshot/capture.ts';
import { NOT_A_FILE, decodeDirCache, type CachedFile } from '../../../src/snapshot/stat-cache.ts';
import { xattrToolsPresent } from '../../../src/snapshot/xattrs.ts';
import type { ObjectId } from '../../../src/core/ids.ts';
import type { Site } from '../../../src/site/site.ts';
import { withLocalSite } from '../local-site.ts';

const skip = xattrToolsPresent() && process.getuid?.() === 0 ? false : 'needs getfattr/setfattr (apt-get install attr) and root (trusted.* on a symlink)';

function memoryCache(): StatCacheIO & { saved: Map<string, Buffer> } {
  const saved = new Map<string, Buffer>();
  // a directory's rows: its pages' (a paged directory: key dir NUL first name), then its own
  const load = (dir: Buffer) => {
    const k = dir.toString('latin1');
    const keys = [...saved.keys()].filter((x) => x.startsWith(`${k}\0`)).concat(saved.has(k) ? [k] : []);
    if (keys.length === 0) return undefined;
    const out = new Map<string, CachedFile>();
    for (const x of keys) for (const [n, f] of decodeDirCache(saved.get(x)!)) out.set(n, f);
    return out;
  };
  return { saved, load, save: (dir, data) => saved.set(dir.toString('latin1'), data) };
}

/** name -> 'attr=hex,...' of the root tree's entries */
function attrsOf(site: Site, root: ObjectId): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of dirEntries(site.store, root)) out[e.name.toString()] = e.xattrs.map(([k, v]) => `${k}=${v.toString('hex')}`).join(',');
  return out;
}

test('attributes of files, directories and symlinks are captured, kept in the stat cache, and read again when they change', { skip }, async () => {
  await withLocalSite('xattrs', async ({ dir: tmp, site, pool }) => {
    const data = join(tmp, 'data');
    mkdirSync(join(data, 'd'), { recursive: true });
    writeFileSync(join(data, 'f'), 'content\n');
    symlinkSync('f', join(data, 'l'));
    const set = (name: string, value: string, path: string, ...flags: string[]) => execFileSync('setfattr', [...flags, '-n', name, '-v', value, path]);
    set('user.f', 'one', join(data, 'f'));
    set('user.d', 'two', join(data, 'd'));
    set('trusted.l', 'three', join(data, 'l'), '-h');
    const cache = memoryCache();
    // a start well after every ctime: everything is settled, so cached
    const later = () => Date.now() + 10_000;
    const first = await captureTree(data, { store: site.store, pool, cache, startedAt: later() });
    const want = { d: `user.d=${Buffer.from('two').toString('hex')}`, f: `user.f=${Buffer.from('one').toString('hex')}`, l: `trusted.l=${Buffer.from('three').toString('hex')}` };
    assert.deepEqual(attrsOf(site, first.root), want);
    const rows = cache.load(Buffer.alloc(0))!;
    assert.equal(rows.get('d')?.size, NOT_A_FILE);
    assert.equal(rows.get('l')?.size, NOT_A_FILE);
    assert.equal(rows.get('f')?.xattrs?.length, 1);
    // unchanged: the same tree, nothing read
    const second = await captureTree(data, { store: site.store, pool, cache, startedAt: later() });
    assert.equal(second.root, first.root);
    assert.equal(second.stats.filesRead, 0);
    // changed attributes (content and mtime untouched) are seen
    set('user.f', 'changed', join(data, 'f'));
    set('user.d', 'changed', join(data, 'd'));
    execFileSync('setfattr', ['-h', '-x', 'trusted.l', join(data, 'l')]);
    const third = await captureTree(data, { store: site.store, pool, cache, startedAt: later() });
    const hex = Buffer.from('changed').toString('hex');
    assert.deepEqual(attrsOf(site, third.root), { d: `user.d=${hex}`, f: `user.f=${hex}`, l: '' });
  });
});
