// The daemon's attribute helper (xattr-helper.ts): a long-lived bash that runs
// getfattr and setfattr batches so the daemon does not fork itself per
// batch. What goes through it must come back exactly as from a direct spawn,
// under names with newlines, leading dashes, spaces and bytes that are not
// UTF-8; a helper killed mid-request fails that request clearly, and the
// next one starts a new helper (or, if none can start, runs directly).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeDump, readXattrsSync, XattrReader, XattrWriter, xattrRuns, xattrToolsPresent, type Xattrs } from '../../../src/snapshot/xattrs.ts';
import { startXattrHelpers, stopXattrHelpers, XATTR_HELPER_NAME, XattrHelpers, xattrHelpers } from '../../../src/snapshot/xattr-helper.ts';
import { FerryError } from '../../../src/core/errors.ts';
import { tempDir } from '../../helpers.ts';
import { waitFor } from '../../harness/wait.ts';

const skip = xattrToolsPresent() ? false : 'getfattr/setfattr are not installed (apt-get install attr)';
const B = (s: string | number[]) => Buffer.from(s as string);
const names = (x: Xattrs | undefined) => (x ?? []).map(([n, v]) => `${n.toString('latin1')}=${v.toString('hex')}`);

/** Names that break line-based or argv-based framing. */
const HOSTILE = [B('new\nline'), B('-leading-dash'), B('--'), B('sp ace'), B(' lead'), B('back\\slash'), B([0x63, 0x61, 0x66, 0xe9, 0x0d]), B([0xff, 0xfe, 0x0a])];
const WANT: Xattrs = [
  [B('user.na=me\\x'), B([0, 1, 2, 0x0a, 0x5c, 0xff])],
  [B('user.plain'), B('value with spaces\nand a newline')],
];

function files(dir: string): Buffer[] {
  mkdirSync(dir);
  return HOSTILE.map((n) => {
    const p = Buffer.concat([B(dir + '/'), n]);
    writeFileSync(p, 'x');
    return p;
  });
}

async function readAll(paths: Buffer[]) {
  const reader = new XattrReader();
  const pending = paths.map((p) => reader.read(p));
  reader.flush();
  return (await Promise.all(pending)).map((r) => ({ ...r, xattrs: names(r.xattrs) }));
}

/** Processes whose parent is `pid` (from /proc), with their command lines. */
function children(pid: number): Array<{ pid: number; cmd: string }> {
  const out: Array<{ pid: number; cmd: string }> = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'latin1');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push({ pid: Number(d), cmd: readFileSync(`/proc/${d}/cmdline`, 'latin1').replace(/\0/g, ' ') });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

const inGroup = (pgid: number) =>
  readdirSync('/proc').filter((d) => {
    if (!/^\d+$/.test(d)) return false;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'latin1');
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]) === pgid;
    } catch {
      return false;
    }
  });

/** The error of a request whose helper `pid` died: IO, naming the helper, its pid and why. */
const gone = (pid: number, why: string) => (e: unknown) => {
  assert.ok(e instanceof FerryError);
  assert.equal(e.code, 'IO');
  assert.ok(e.message.includes(`the ${XATTR_HELPER_NAME} process (pid ${pid}) is gone: ${why}`), e.message);
  return true;
};

test('through the helper, attributes of hostile names are written and read exactly as by a direct spawn', { skip }, async () => {
  const dir = tempDir();
  let helpers: XattrHelpers | undefined;
  try {
    const direct = files(join(dir.path, 'direct'));
    const helped = files(join(dir.path, 'helped'));
    const dump = (paths: Buffer[]) => encodeDump(paths.map((path) => ({ path, set: WANT })));
    // written: directly, and through a helper; the same status and output
    const d = spawnSync('setfattr', ['-h', '--restore=-'], { input: dump(direct) });
    helpers = await startXattrHelpers();
    assert.equal(xattrHelpers(), helpers);
    const h = await helpers.run(['setfattr', '-h', '--restore=-'], dump(helped));
    assert.ok(h);
    assert.deepEqual([h.status, h.stdout, h.stderr], [d.status, d.stdout, d.stderr]);
    // read through the helper (the reader uses it while it is registered), each tree, and a path that is missing
    const missing = B(join(dir.path, 'missing\n-x'));
    const before = xattrRuns.helper.read;
    const viaHelper = await readAll([...direct, ...helped, missing]);
    assert.equal(xattrRuns.helper.read, before + 1, 'the reader went through the helper');
    for (const r of viaHelper.slice(0, -1)) assert.deepEqual(r, { xattrs: names(WANT) });
    assert.deepEqual(viaHelper.at(-1), { xattrs: [] }); // names() of undefined: gone, no error of its own
    // the raw runs agree byte for byte: stdout (the dump of odd names) and stderr (the missing path's error)
    const argv = ['getfattr', '-h', '-d', '-m', '^user\\.', '-e', 'hex', '--absolute-names', '--'];
    const list = Buffer.concat([...direct, missing].flatMap((p) => [p, B([0])]));
    const raw = await helpers.run(['xargs', '-0', '-r', ...argv], list);
    const rawDirect = spawnSync('xargs', ['-0', '-r', ...argv], { input: list });
    assert.ok(raw);
    assert.deepEqual([raw.status, raw.stdout, raw.stderr], [rawDirect.status, rawDirect.stdout, rawDirect.stderr]);
    assert.equal(raw.status, 123);
    assert.ok(raw.stdout.includes(B('# file: ' + dir.path + '/direct/new\\012line')));
    // the synchronous callers, through the FIFO helper: the writer on a third tree, readXattrsSync on all
    const synced = files(join(dir.path, 'synced'));
    const writes = xattrRuns.helper.write;
    const w = new XattrWriter((p, m) => assert.fail(`${p}: ${m}`));
    for (const p of synced) w.set(p, WANT);
    w.flush();
    assert.equal(xattrRuns.helper.write, writes + 1, 'the writer went through the helper');
    const syncReads = xattrRuns.helper.read;
    const sync = readXattrsSync([...direct, ...helped, ...synced, missing]).map((r) => ({ ...r, xattrs: names(r.xattrs) }));
    assert.equal(xattrRuns.helper.read, syncReads + 1, 'readXattrsSync went through the helper');
    assert.deepEqual(sync, [...viaHelper.slice(0, -1), ...synced.map(() => ({ xattrs: names(WANT) })), viaHelper.at(-1)]);
    const rawSync = helpers.runSync(['xargs', '-0', '-r', ...argv], list);
    assert.ok(rawSync);
    assert.deepEqual([rawSync.status, rawSync.stdout, rawSync.stderr], [rawDirect.status, rawDirect.stdout, rawDirect.stderr]);
    await stopXattrHelpers(helpers);
    helpers = undefined;
    assert.equal(xattrHelpers(), undefined);
    // and directly again, once the helpers are stopped: the same answers
    const directRuns = xattrRuns.direct.read;
    assert.deepEqual(await readAll([...direct, ...helped, missing]), viaHelper);
    assert.equal(xattrRuns.direct.read, directRuns + 1);
    assert.deepEqual(readXattrsSync([...direct, ...helped, ...synced, missing]).map((r) => ({ ...r, xattrs: names(r.xattrs) })), sync);
    assert.equal(xattrRuns.direct.read, directRuns + 2);
  } finally {
    await stopXattrHelpers(helpers);
    dir.cleanup();
  }
});

test('a helper killed mid-request fails that request with a clear IO error (its tool killed with it); the next request starts a new helper', { skip }, async () => {
  const dir = tempDir();
  const helpers = new XattrHelpers({ size: 1 });
  try {
    await helpers.start();
    const [pid] = helpers.pids();
    const slow = helpers.run(['sleep', '300'], Buffer.alloc(0));
    // the request is in flight once the helper runs its tool
    const tool = await waitFor('the helper to run sleep', () => children(pid).find((c) => c.cmd.startsWith('sleep ')));
    process.kill(pid, 'SIGKILL');
    await assert.rejects(slow, gone(pid, 'it was killed by SIGKILL'));
    // the tool it ran went with it (its process group)
    await waitFor('the killed helper\'s tool to be gone', () => !inGroup(pid).includes(String(tool.pid)));
    writeFileSync(join(dir.path, 'plain'), 'x');
    const next = await helpers.run(['getfattr', '-h', '-d', '--absolute-names', '--', join(dir.path, 'plain')], Buffer.alloc(0));
    assert.ok(next);
    assert.equal(next.status, 0);
    assert.ok(!helpers.pids().includes(pid));
    // killed while idle, its exit not yet seen by this thread: the request goes to a new helper, it does not fail
    const idle = helpers.pids()[0];
    process.kill(idle, 'SIGKILL');
    while (!readFileSync(`/proc/${idle}/stat`, 'latin1').includes(') Z ')); // exited (a zombie until reaped by the event loop)
    const after = await helpers.run(['printf', 'y'], Buffer.alloc(0));
    assert.deepEqual([after?.status, after?.stdout.toString()], [0, 'y']);
  } finally {
    await helpers.stop();
    dir.cleanup();
  }
});

test('the synchronous helper killed mid-request: the request fails with a clear IO error; calls run directly until a new one is up', { skip }, async () => {
  const dir = tempDir();
  const helpers = new XattrHelpers({ size: 1 });
  try {
    await helpers.start();
    const before = helpers.pids();
    // the tool kills the helper (its parent) while the request is in flight, then would run for minutes
    assert.throws(() => helpers.runSync(['sh', '-c', 'kill -9 $PPID; exec sleep 300'], Buffer.alloc(0)), gone(before[1], 'its reply ended early'));
    // its tool went with it (its process group), and no request is lost meanwhile: direct runs
    await waitFor('the killed helper\'s group to be gone', () => inGroup(before[1]).length === 0);
    assert.equal(helpers.runSync(['true'], Buffer.alloc(0)), undefined);
    const again = await waitFor('a new synchronous helper', () => helpers.runSync(['printf', 'x'], Buffer.alloc(0)));
    assert.deepEqual([again.status, again.stdout.toString()], [0, 'x']);
    assert.equal(helpers.pids().length, 2);
    assert.ok(!helpers.pids().includes(before[1]));
    // killed while idle, its death not yet seen by this thread (busy, as in an apply's walk): the call
    // finds no reader for its request, and runs directly instead of failing
    const idle = helpers.pids()[1];
    process.kill(idle, 'SIGKILL');
    while (!readFileSync(`/proc/${idle}/stat`, 'latin1').includes(') Z ')); // exited (a zombie until reaped by the event loop)
    assert.equal(helpers.runSync(['true'], Buffer.alloc(0)), undefined);
  } finally {
    await helpers.stop();
    dir.cleanup();
  }
});

test('where no helper can start again (bash gone from the PATH), runs go direct, with one warning', { skip }, async () => {
  const dir = tempDir();
  const warnings: string[] = [];
  const helpers = new XattrHelpers({ size: 1, onWarning: (m) => warnings.push(m) });
  const path = process.env.PATH;
  try {
    await helpers.start();
    for (const pid of helpers.pids()) process.kill(pid, 'SIGKILL');
    await waitFor('the helpers to be gone', () => helpers.pids().length === 0);
    // a PATH with the attr tools and xargs, but no bash
    const bin = join(dir.path, 'bin');
    mkdirSync(bin);
    for (const tool of ['getfattr', 'setfattr', 'xargs']) {
      const where = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
      symlinkSync(where, join(bin, tool));
    }
    process.env.PATH = bin;
    assert.equal(await helpers.run(['true'], Buffer.alloc(0)), undefined);
    assert.equal(await helpers.run(['true'], Buffer.alloc(0)), undefined);
    assert.equal(helpers.runSync(['true'], Buffer.alloc(0)), undefined);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /cannot start the ferry-xattr-helper process \(bash\).*run directly by the daemon/);
  } finally {
    process.env.PATH = path;
    await helpers.stop();
    dir.cleanup();
  }
});
