// A full disk: the site home (or only its store) on a small tmpfs, and a
// snapshot of more data than fits. The command fails with NO_SPACE (exit 7)
// and says the disk is full; the catalog still opens, verify passes, and once
// space is freed a snapshot succeeds and restores exactly. Needs mount
// (root in a sandbox that allows it): skipped with the reason otherwise.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertTreesEqual, tempDir } from '../helpers.ts';
import { assertError, assertSiteSound, makeSite, writeRandomFile, type TestSite } from '../harness/cli-site.ts';
import { remount, tryMount, unmount } from '../harness/small-fs.ts';

const MiB = 1 << 20;

function fillData(data: string): void {
  mkdirSync(join(data, 'sub'), { recursive: true });
  for (let i = 0; i < 3; i++) writeRandomFile(join(data, `big-${i}.bin`), 5 * MiB);
  for (let i = 0; i < 30; i++) writeFileSync(join(data, 'sub', `s${i}`), `small ${i}\n`);
}

async function fullDiskScenario(t: TestContext, site: TestSite, mountPoint: string, data: string): Promise<void> {
  assert.equal((await site.ferry(['volume', 'create', 'v', '--member', data])).code, 0);
  // A small snapshot fits.
  const first = await site.json(['snapshot', 'create', 'v', '--name', 'fits']);
  const storeBefore = (await site.json(['info'])).store;
  // 15 MiB of incompressible data does not fit in 8 MiB.
  fillData(join(data, 'more'));
  const r = await site.ferry(['snapshot', 'create', 'v', '--json']);
  assertError(r, 7, 'NO_SPACE', /disk is full/);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'a stack trace instead of a clear message');
  t.diagnostic(`error: ${r.json?.error?.message}`);

  // The catalog opens, nothing half-made is listed or indexed, verify passes.
  const ids = await assertSiteSound(site, 'v');
  assert.deepEqual(ids, [first.snapshot.id]);
  const storeAfter = (await site.json(['info'])).store;
  assert.equal(storeAfter.objects, storeBefore.objects, 'objects of the failed snapshot were indexed');
  assert.equal(storeAfter.rawBytes, storeBefore.rawBytes);
  // Still full: a second attempt fails the same way, cleanly.
  assertError(await site.ferry(['snapshot', 'create', 'v']), 7, 'NO_SPACE');
  await assertSiteSound(site, 'v');

  // Free space: the snapshot succeeds and restores exactly.
  remount(mountPoint, 64);
  const ok = await site.ferry(['snapshot', 'create', 'v', '--json']);
  assert.equal(ok.code, 0, `snapshot after freeing space: ${ok.stderr}`);
  const out = join(site.dir, 'out');
  assert.equal((await site.ferry(['restore', 'v', '--snapshot', 'latest', '--target', out])).code, 0);
  assertTreesEqual(out, data);
  const out1 = join(site.dir, 'out-fits');
  assert.equal((await site.ferry(['restore', 'v', '--snapshot', 'fits', '--target', out1])).code, 0);
  assert.deepEqual(readdirSync(out1), ['sub']);
  await assertSiteSound(site, 'v');
}

test('the site home on a full tmpfs: NO_SPACE (exit 7), the site stays sound, and recovers once space is freed', async (t) => {
  const tmp = tempDir();
  const mnt = join(tmp.path, 'mnt');
  mkdirSync(mnt);
  const why = tryMount(mnt, 8);
  if (why) {
    tmp.cleanup();
    t.skip(why);
    return;
  }
  let site: TestSite | undefined;
  try {
    site = await makeSite('full', { home: join(mnt, 'home') });
    const data = join(site.dir, 'data');
    mkdirSync(join(data, 'sub'), { recursive: true });
    for (let i = 0; i < 10; i++) writeFileSync(join(data, 'sub', `s${i}`), `small ${i}\n`);
    await fullDiskScenario(t, site, mnt, data);
  } finally {
    unmount(mnt);
    site?.cleanup();
    tmp.cleanup();
  }
});

test('only the store on a full tmpfs: NO_SPACE (exit 7), the site stays sound, and recovers once space is freed', async (t) => {
  const site = await makeSite('store-full');
  const store = join(site.home, 'store');
  rmSync(store, { recursive: true });
  mkdirSync(store);
  const why = tryMount(store, 8);
  if (why) {
    site.cleanup();
    t.skip(why);
    return;
  }
  try {
    const data = join(site.dir, 'data');
    mkdirSync(join(data, 'sub'), { recursive: true });
    writeFileSync(join(data, 'sub', 'one'), 'one\n');
    await fullDiskScenario(t, site, store, data);
  } finally {
    unmount(store);
    site.cleanup();
  }
});

/** Fill the filesystem at `mnt` to its last byte (a ballast file, then whatever fallocate left). */
function fillUp(mnt: string): string {
  const ballast = join(mnt, 'ballast');
  const free = statfsSync(mnt).bavail * statfsSync(mnt).bsize;
  try {
    execFileSync('fallocate', ['-l', String(free), ballast], { stdio: 'pipe' });
  } catch {
    // fallocate may fill what it can and fail: the disk is as full as it gets
  }
  for (let i = 0; ; i++) {
    try {
      writeFileSync(join(mnt, `ballast-${i}`), Buffer.alloc(4096));
    } catch {
      break;
    }
  }
  return ballast;
}

test('a full disk when the site lock is written: NO_SPACE (exit 7) naming the lock and what to free, no lock left behind', async (t) => {
  const tmp = tempDir();
  const mnt = join(tmp.path, 'mnt');
  mkdirSync(mnt);
  const why = tryMount(mnt, 8);
  if (why) {
    tmp.cleanup();
    t.skip(why);
    return;
  }
  let site: TestSite | undefined;
  try {
    site = await makeSite('lockfull', { home: join(mnt, 'home') });
    const data = join(site.dir, 'data');
    mkdirSync(data);
    writeFileSync(join(data, 'one'), 'one\n');
    assert.equal((await site.ferry(['volume', 'create', 'v', '--member', data])).code, 0);
    const ballast = fillUp(mnt);
    for (const args of [['snapshot', 'create', 'v'], ['gc']]) {
      const r = await site.ferry([...args, '--json']);
      assertError(r, 7, 'NO_SPACE', /site lock[\s\S]*disk is full[\s\S]*Free space/);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'a stack trace instead of a clear message');
      t.diagnostic(`${args.join(' ')}: ${r.json?.error?.message}`);
      assert.ok(!existsSync(join(site.home, 'lock')), 'an empty lock file was left behind: the next command waits for it to go stale');
    }
    // Space again: the next command runs at once.
    rmSync(ballast, { force: true });
    for (const f of readdirSync(mnt)) if (f.startsWith('ballast-')) rmSync(join(mnt, f));
    const ok = await site.ferry(['snapshot', 'create', 'v']);
    assert.equal(ok.code, 0, ok.stderr);
  } finally {
    unmount(mnt);
    site?.cleanup();
    tmp.cleanup();
  }
});
