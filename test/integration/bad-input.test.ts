// Bad input through the CLI: each case gets a clear error, the documented
// exit status, and changes nothing (volumes, snapshots, store).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runFerry, tempDir } from '../helpers.ts';
import { assertError, makeSite, NO_DAC, siteState, type TestSite } from '../harness/cli-site.ts';

function tree(root: string): string {
  mkdirSync(join(root, 'sub'), { recursive: true });
  writeFileSync(join(root, 'a.txt'), 'alpha\n');
  writeFileSync(join(root, 'sub', 'b.txt'), 'beta\n');
  return root;
}

async function expectRefused(site: TestSite, args: string[], exit: number, code: string, message?: RegExp): Promise<void> {
  const before = siteState(site);
  const r = await site.ferry([...args, '--json']);
  assertError(r, exit, code, message);
  assert.deepEqual(siteState(site), before, `ferry ${args.join(' ')} changed the site`);
}

test('volume create refuses bad members and overlaps, changing nothing', async () => {
  const site = await makeSite();
  try {
    const a = tree(join(site.dir, 'a'));
    const b = tree(join(site.dir, 'b'));
    mkdirSync(join(site.dir, 'c'));
    symlinkSync(a, join(site.dir, 'link-to-a'));
    assert.equal((await site.ferry(['volume', 'create', 'va', '--member', a])).code, 0);

    await expectRefused(site, ['volume', 'create', 'v1', '--member', join(site.dir, 'missing')], 2, 'MEMBER_INVALID', /does not exist/);
    await expectRefused(site, ['volume', 'create', 'v1', '--member', join(site.dir, 'link-to-a')], 2, 'MEMBER_INVALID', /symlink/);
    // a member inside another member of the same volume, in either order
    await expectRefused(site, ['volume', 'create', 'v1', '--member', b, '--member', join(b, 'sub')], 2, 'MEMBER_INVALID', /overlaps/);
    await expectRefused(site, ['volume', 'create', 'v1', '--member', join(b, 'sub'), '--member', b], 2, 'MEMBER_INVALID', /overlaps/);
    // ... and across volumes, in either direction
    await expectRefused(site, ['volume', 'create', 'v1', '--member', join(a, 'sub')], 2, 'MEMBER_INVALID', /overlaps/);
    await expectRefused(site, ['volume', 'create', 'v1', '--member', site.dir], 2, 'MEMBER_INVALID', /overlaps/);
    // two volumes on the same path (also through a symlinked spelling of it)
    await expectRefused(site, ['volume', 'create', 'v1', '--member', a], 2, 'MEMBER_INVALID', /already member/);
    await expectRefused(site, ['volume', 'create', 'v1', '--member', `${a}/../a`], 2, 'MEMBER_INVALID', /already member/);
    symlinkSync(site.dir, join(site.dir, 'c', 'ancestor-link'));
    await expectRefused(site, ['volume', 'create', 'v1', '--member', join(site.dir, 'c', 'ancestor-link', 'a')], 2, 'MEMBER_INVALID', /already member/);
    await expectRefused(site, ['volume', 'create', 'v1', '--member', join(site.dir, 'c', 'ancestor-link', 'a', 'sub')], 2, 'MEMBER_INVALID', /overlaps/);
    // the same path twice in one volume
    await expectRefused(site, ['volume', 'create', 'v1', '--member', `x=${b}`, '--member', `y=${b}`], 2, 'MEMBER_INVALID');
    // the site's home inside a member, and a member inside the home
    const outer = await makeSite('outer', { home: join(join(site.dir, 'c'), 'home') });
    try {
      await expectRefused(outer, ['volume', 'create', 'v1', '--member', join(site.dir, 'c')], 2, 'MEMBER_INVALID', /site home/);
      mkdirSync(join(outer.home, 'data'));
      await expectRefused(outer, ['volume', 'create', 'v1', '--member', join(outer.home, 'data')], 2, 'MEMBER_INVALID', /site home/);
    } finally {
      outer.cleanup();
    }
    // wrong kind: a directory as image:, a file as tree:
    await expectRefused(site, ['volume', 'create', 'v1', '--member', `image:${b}`], 2, 'MEMBER_INVALID');
    await expectRefused(site, ['volume', 'create', 'v1', '--member', `tree:${join(b, 'a.txt')}`], 2, 'MEMBER_INVALID');
    // an existing name
    await expectRefused(site, ['volume', 'create', 'va', '--member', b], 4, 'VOLUME_EXISTS');
  } finally {
    site.cleanup();
  }
});

test('bad retention and hook settings are usage errors and change nothing', async () => {
  const site = await makeSite();
  try {
    const a = tree(join(site.dir, 'a'));
    for (const flag of [['--keep-last', 'abc'], ['--keep-last', '1.5'], ['--keep-daily', '-1'], ['--keep-hourly', ''], ['--hook-timeout', 'soon'], ['--hook-timeout', '0s']]) {
      await expectRefused(site, ['volume', 'create', 'v', '--member', a, '--pre', 'true', ...flag], 2, 'USAGE', new RegExp(flag[0]));
    }
    assert.equal((await site.ferry(['volume', 'create', 'v', '--member', a, '--keep-last', '3'])).code, 0);
    const before = (await site.json(['volume', 'show', 'v'])).retention;
    await expectRefused(site, ['volume', 'set', 'v', '--keep-weekly', 'many'], 2, 'USAGE');
    assert.deepEqual((await site.json(['volume', 'show', 'v'])).retention, before);
  } finally {
    site.cleanup();
  }
});

test('unknown volume, unknown snapshot, --path not in snapshot, non-empty target', async () => {
  const site = await makeSite();
  try {
    const a = tree(join(site.dir, 'a'));
    assert.equal((await site.ferry(['volume', 'create', 'v', '--member', a])).code, 0);
    assert.equal((await site.ferry(['snapshot', 'create', 'v', '--name', 'one'])).code, 0);
    const target = join(site.dir, 'target');

    for (const args of [['snapshot', 'create', 'nope'], ['snapshot', 'list', 'nope'], ['volume', 'show', 'nope'], ['volume', 'remove', 'nope'], ['verify', 'nope'], ['restore', 'nope', '--snapshot', 'latest', '--target', target]]) {
      await expectRefused(site, args, 3, 'VOLUME_NOT_FOUND', /nope/);
    }
    for (const args of [['snapshot', 'show', 'v', 'two'], ['snapshot', 'delete', 'v', 'two'], ['snapshot', 'diff', 'v', 'one', 'two'], ['restore', 'v', '--snapshot', 'two', '--target', target], ['restore', 'v', '--snapshot', '01ZZZZZZZZZZZZZZZZZZZZZZZZ', '--target', target]]) {
      await expectRefused(site, args, 3, 'SNAPSHOT_NOT_FOUND');
    }
    assert.equal(existsSync(target), false, 'a failed restore created its target');

    await expectRefused(site, ['restore', 'v', '--snapshot', 'one', '--target', target, '--path', 'sub/nothing.txt'], 3, 'PATH_NOT_IN_SNAPSHOT', /sub\/nothing\.txt/);
    await expectRefused(site, ['restore', 'v', '--snapshot', 'one', '--target', target, '--path', 'a.txt/deeper'], 3, 'PATH_NOT_IN_SNAPSHOT');
    assert.equal(existsSync(target), false, 'a failed restore created its target');

    // a non-empty target is refused without --force, and left exactly as it was
    mkdirSync(target);
    writeFileSync(join(target, 'precious'), 'mine');
    await expectRefused(site, ['restore', 'v', '--snapshot', 'one', '--target', target], 4, 'TARGET_NOT_EMPTY', /--force/);
    assert.deepEqual(readdirSync(target), ['precious']);
    assert.equal(readFileSync(join(target, 'precious'), 'utf8'), 'mine');
    // a file restored over an existing file
    await expectRefused(site, ['restore', 'v', '--snapshot', 'one', '--target', join(target, 'precious'), '--path', 'a.txt'], 4, 'TARGET_NOT_EMPTY');
    assert.equal(readFileSync(join(target, 'precious'), 'utf8'), 'mine');
    // a name that already exists in the volume
    await expectRefused(site, ['snapshot', 'create', 'v', '--name', 'one'], 4, 'SNAPSHOT_EXISTS');
    // a volume with snapshots is not removed without --force
    await expectRefused(site, ['volume', 'remove', 'v'], 4, 'VOLUME_IN_USE');
    // a member that disappeared, or became a symlink, after the volume was created
    renameSync(a, `${a}.moved`);
    await expectRefused(site, ['snapshot', 'create', 'v'], 7, 'IO', new RegExp(a));
    symlinkSync(`${a}.moved`, a);
    await expectRefused(site, ['snapshot', 'create', 'v'], 2, 'MEMBER_INVALID', /symlink/);
  } finally {
    site.cleanup();
  }
});

test('unreadable files and directories: the snapshot completes with warnings naming them', async () => {
  const site = await makeSite();
  try {
    const a = tree(join(site.dir, 'a'));
    writeFileSync(join(a, 'secret'), 'top secret');
    chmodSync(join(a, 'secret'), 0);
    mkdirSync(join(a, 'locked'));
    writeFileSync(join(a, 'locked', 'inside'), 'x');
    chmodSync(join(a, 'locked'), 0);
    writeFileSync(join(a, 'z-after.txt'), 'after\n');
    assert.equal((await site.ferry(['volume', 'create', 'v', '--member', a])).code, 0);
    // Root reads anything: drop the capabilities that let it, so mode 000 means unreadable.
    const probe = await site.ferry(['info'], { prefix: NO_DAC });
    if (probe.code !== 0) throw new Error(`cannot run ferry without CAP_DAC_OVERRIDE here: ${probe.stderr}`);
    const r = await site.ferry(['snapshot', 'create', 'v'], { prefix: NO_DAC });
    assert.equal(r.code, 8, `expected exit 8 (warnings): ${r.stderr}`);
    assert.match(r.stderr, /secret/);
    assert.match(r.stderr, /locked/);
    assert.match(r.stderr, /permission denied|EACCES/i);
    const rj = await site.ferry(['snapshot', 'create', 'v', '--json'], { prefix: NO_DAC });
    assert.equal(rj.code, 8);
    const paths = rj.json.warnings.map((w: { path: string }) => w.path).sort();
    assert.deepEqual(paths, ['a:locked', 'a:secret']);
    assert.equal((await site.json(['snapshot', 'list', 'v'])).length, 2);
    // The others were captured.
    const out = join(site.dir, 'out');
    assert.equal((await site.ferry(['restore', 'v', '--snapshot', 'latest', '--target', out])).code, 0);
    assert.equal(readFileSync(join(out, 'a.txt'), 'utf8'), 'alpha\n');
    assert.equal(readFileSync(join(out, 'sub', 'b.txt'), 'utf8'), 'beta\n');
    assert.equal(readFileSync(join(out, 'z-after.txt'), 'utf8'), 'after\n');
    assert.equal(existsSync(join(out, 'secret')), false);
    assert.equal((await site.ferry(['verify'])).code, 0);
  } finally {
    site.cleanup();
  }
});

test('a missing home: info says how to create a site', async () => {
  const tmp = tempDir();
  try {
    const home = join(tmp.path, 'nowhere');
    const r = await runFerry(['info'], { home });
    assertError(r, 2, 'HOME_MISSING', /ferry init/);
    assert.equal(existsSync(home), false, 'info created the home');
    const j = await runFerry(['info', '--json'], { home });
    assert.equal(j.code, 2);
    assert.equal(j.json?.error?.code, 'HOME_MISSING');
    const s = await runFerry(['snapshot', 'create', 'v'], { home });
    assertError(s, 2, 'HOME_MISSING', /ferry init/);
    assert.equal(existsSync(home), false);
    // A home that exists but holds no site.
    mkdirSync(home);
    assertError(await runFerry(['volume', 'list'], { home }), 2, 'HOME_MISSING', /ferry init/);
    assert.deepEqual(readdirSync(home), []);
  } finally {
    tmp.cleanup();
  }
});
