// Replication of the file kinds that are easy to get subtly wrong, between
// two real `ferry serve` daemons: times before 1970, Unix sockets, sparse
// files (allocation, not only bytes), and extended attributes with POSIX
// ACLs (and a site without the tools for them). Each test mirrors its own volume over one pair of daemons, checks the
// baseline, changes the tree, and checks the update: the replica must equal
// the source in content and metadata, and the apply's verification must pass
// on the first attempt (a mismatch fails the update with REPLICA_MISMATCH).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, lstatSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { ACL_TOOLS_MISSING, aclToolsPresent, aclTree, assertTreesEqual, pathWithout, sparseFile, writeAt, xattrDump } from '../helpers.ts';
import { fillBytes } from '../tree-gen.ts';
import { cleanupSites, createSite, metricValue, pairSites, scrapeMetrics, type TestSite } from '../harness/index.ts';

const sites: TestSite[] = [];
let a: TestSite;
let b: TestSite;

before(async () => {
  a = await createSite('a');
  sites.push(a);
  b = await createSite('b');
  sites.push(b);
  await Promise.all([a.start(), b.start()]);
  await pairSites(a, b);
});
after(() => cleanupSites(sites));

/** Mirror a new volume of one tree member `data` from a to b; returns the replica's path. */
async function mirrorTree(volume: string, data: string): Promise<string> {
  await a.json(['volume', 'create', volume, '--member', data]);
  await a.json(['mirror', 'create', volume, '--to', 'b']);
  await a.json(['mirror', 'initialize', volume, '--to', 'b', '--wait']);
  const shown = await b.json(['volume', 'show', volume]);
  return shown.members[0].path as string;
}

/** Snapshot and send an update; it must apply (and verify) the first time. */
async function update(volume: string): Promise<void> {
  await a.json(['mirror', 'update', volume, '--to', 'b', '--wait']);
  assert.equal(b.secondaryRow(volume)?.consistent, true);
}

test('times before 1970 replicate exactly (file, directory, symlink), baseline and update', async () => {
  const data = join(a.dir, 'old');
  mkdirSync(join(data, 'archive'), { recursive: true });
  writeFileSync(join(data, 'archive', 'card.txt'), 'from 1960\n');
  const stamp = (when: string, ...paths: string[]) => execFileSync('touch', ['-h', '-d', when, ...paths]);
  execFileSync('ln', ['-s', 'card.txt', join(data, 'archive', 'link')]);
  stamp('1960-01-01 00:00:00.123456789 UTC', join(data, 'archive', 'card.txt'), join(data, 'archive', 'link'));
  stamp('1969-12-31 23:59:59.5 UTC', join(data, 'archive'));
  const replica = await mirrorTree('old', data);
  assertTreesEqual(replica, data);
  assert.ok(lstatSync(join(replica, 'archive', 'card.txt'), { bigint: true }).mtimeNs < 0n);

  writeFileSync(join(data, 'archive', 'card2.txt'), 'also old\n');
  stamp('1950-06-15 12:00:00.000001 UTC', join(data, 'archive', 'card2.txt'), join(data, 'archive'));
  stamp('1965-01-01 UTC', join(data, 'archive', 'card.txt'));
  await update('old');
  assertTreesEqual(replica, data);
});

/** A listening Unix socket at `path` (a running application's), closed by the returned function. */
async function listenAt(path: string): Promise<() => Promise<void>> {
  const server: Server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(path, resolve));
  return () => new Promise<void>((resolve) => server.close(() => resolve()));
}

test('Unix sockets are recreated by the apply and the verification agrees: a member with sockets initializes and updates', async () => {
  const data = join(a.dir, 'sockets');
  mkdirSync(join(data, 'run'), { recursive: true });
  writeFileSync(join(data, 'app.conf'), 'listen = run/app.sock\n');
  const closers = [await listenAt(join(data, 'run', 'app.sock'))];
  // a socket left behind by a process that is gone (moved away from the server that made it)
  const stale = await listenAt(join(data, 'run', 'tmp.sock'));
  renameSync(join(data, 'run', 'tmp.sock'), join(data, 'run', 'stale.sock'));
  await stale();
  chmodSync(join(data, 'run', 'stale.sock'), 0o600);
  utimesSync(join(data, 'run', 'stale.sock'), 1_600_000_000, 1_600_000_000);
  // a FIFO and a socket in a directory whose name is not UTF-8, and a socket whose path is longer
  // than a socket address holds (108 bytes)
  const odd = Buffer.concat([Buffer.from(data), Buffer.from('/run\xff', 'latin1')]);
  mkdirSync(odd);
  execFileSync('mkfifo', [join(data, 'fifo')]);
  renameSync(join(data, 'fifo'), Buffer.concat([odd, Buffer.from('/pipe')]));
  const sock = await listenAt(join(data, 'tmp2.sock'));
  renameSync(join(data, 'tmp2.sock'), Buffer.concat([odd, Buffer.from('/s')]));
  await sock();
  const deep = join(data, 'd'.repeat(60), 'e'.repeat(60));
  mkdirSync(deep, { recursive: true });
  const deepSock = await listenAt(join(data, 'tmp3.sock'));
  renameSync(join(data, 'tmp3.sock'), join(deep, 'deep.sock'));
  await deepSock();
  try {
    const replica = await mirrorTree('sockets', data);
    assertTreesEqual(replica, data);
    assert.ok(lstatSync(join(replica, 'run', 'app.sock')).isSocket());
    assert.ok(lstatSync(join(replica, 'run', 'stale.sock')).isSocket());

    // a socket goes, another comes, one changes mode: the update applies and verifies
    rmSync(join(data, 'run', 'stale.sock'));
    closers.push(await listenAt(join(data, 'new.sock')));
    chmodSync(join(data, 'run', 'app.sock'), 0o660);
    await update('sockets');
    assertTreesEqual(replica, data);
    assert.ok(lstatSync(join(replica, 'new.sock')).isSocket());
    // nothing changed: the writes check finds the replica as applied (its sockets included)
    await update('sockets');
  } finally {
    for (const c of closers) await c();
  }
});

const KiB = 1024;

test('holes in files replicate as holes: baseline (staged and applied), in-place changes and growth (the patch path)', async () => {
  const data = join(a.dir, 'sparse');
  mkdirSync(join(data, 'vm'), { recursive: true });
  const size = 48 << 20;
  for (const f of [join(data, 'root.raw'), join(data, 'vm', 'disk.raw')]) sparseFile(f, size, [[7 * 1024 * KiB + 5, fillBytes(8 * KiB, 1)], [size - 3, Buffer.from('end')]]);
  const allocated = (path: string) => statSync(path).blocks * 512;
  const replica = await mirrorTree('sparse', data);
  assertTreesEqual(replica, data);
  for (const f of ['root.raw', 'vm/disk.raw']) assert.ok(allocated(join(replica, f)) <= 64 * KiB, `baseline: ${f} has ${allocated(join(replica, f))} bytes allocated`);

  // in place: a block written into a hole and the data block changed (most chunks are kept: the apply
  // copies the replica's file and writes what changed); and a file that grows by a hole and a tail
  writeAt(join(data, 'root.raw'), 30 * 1024 * KiB, fillBytes(4 * KiB, 2));
  writeAt(join(data, 'root.raw'), 7 * 1024 * KiB + 5, fillBytes(8 * KiB, 3));
  truncateSync(join(data, 'vm', 'disk.raw'), 64 << 20);
  writeAt(join(data, 'vm', 'disk.raw'), (64 << 20) - 5, Buffer.from('grown'));
  await update('sparse');
  assertTreesEqual(replica, data);
  assert.ok(readFileSync(join(replica, 'root.raw')).equals(readFileSync(join(data, 'root.raw'))));
  for (const f of ['root.raw', 'vm/disk.raw']) assert.ok(allocated(join(replica, f)) <= 96 * KiB, `update: ${f} has ${allocated(join(replica, f))} bytes allocated`);
  // the changed chunks were written, not the whole 48 + 64 MiB (the rest came from the replica's own files)
  const applies = (await b.ferry(['events', '--kind', 'replica.apply', '--volume', 'sparse', '--json'])).stdout.trim().split('\n').map((l) => JSON.parse(l));
  const last = applies.filter((e) => e.details.transition === 'inconsistent => consistent').pop();
  assert.ok(last.details.bytesWritten < 40 << 20, `the update wrote ${last.details.bytesWritten} bytes`);
});

const aclSkip = aclToolsPresent() ? false : ACL_TOOLS_MISSING;
const sh = (cmd: string, ...args: string[]) => execFileSync(cmd, args);

test('extended attributes and POSIX ACLs replicate exactly: baseline, changed and removed attributes, inheritance', { skip: aclSkip }, async () => {
  const data = join(a.dir, 'acls');
  aclTree(data);
  sh('setfattr', '-n', 'user.dir', '-v', 'on a directory', join(data, 'shared', 'sub'));
  const replica = await mirrorTree('acls', data);
  assertTreesEqual(replica, data);
  assert.deepEqual(xattrDump(replica), xattrDump(data));
  assert.match(sh('getfacl', '-c', join(replica, 'acl-file')).toString(), /^group::r--$/m);

  // The replica root gets a default ACL of its own (not part of any snapshot): nothing made in it may take it.
  sh('setfacl', '-d', '-m', 'u:999:rwx', replica);
  // changes: an ACL changed and one removed, an attribute removed and one changed (metadata only),
  // new entries in the directory with the default ACL, one with its inherited ACL removed
  sh('setfacl', '-m', 'u:1234:r--,g::rw-', join(data, 'acl-file'));
  sh('setfacl', '-b', join(data, 'shared', 'inherited'));
  sh('setfattr', '-x', 'user.comment', join(data, 'user-attrs'));
  sh('setfattr', '-n', 'user.binary', '-v', 'changed', join(data, 'user-attrs'));
  sh('setfattr', '-x', 'user.dir', join(data, 'shared', 'sub'));
  writeFileSync(join(data, 'shared', 'new'), 'new, inherits\n');
  writeFileSync(join(data, 'shared', 'new-stripped'), 'new, no ACL\n');
  sh('setfacl', '-b', join(data, 'shared', 'new-stripped'));
  mkdirSync(join(data, 'shared', 'new-dir'));
  writeFileSync(join(data, 'top-new'), 'made in the root\n');
  mkdirSync(join(data, 'top-dir'));
  writeFileSync(join(data, 'top-dir', 'f'), 'made in a new directory\n');
  await update('acls');
  assertTreesEqual(replica, data);
  assert.deepEqual(xattrDump(replica), xattrDump(data));
  // nothing changed since: the writes check finds the replica as applied
  await update('acls');
  // The attributes were read and set through each daemon's helper processes (snapshot/xattr-helper.ts):
  // no getfattr or setfattr batch of the daemons' main threads forked the daemon.
  const runs = async (site: TestSite, via: string, kind: string) => metricValue(await scrapeMetrics(site.home), `ferry_xattr_tool_runs_total{via="${via}",kind="${kind}"}`);
  for (const site of [a, b]) {
    assert.ok((await runs(site, 'helper', 'read'))! > 0, `${site.name}: no attribute read went through the helper`);
    assert.deepEqual([await runs(site, 'direct', 'read'), await runs(site, 'direct', 'write')], [0, 0], `${site.name}: attribute tools spawned by the daemon`);
  }
  assert.ok((await runs(b, 'helper', 'write'))! > 0, 'the apply set no attributes through the helper');
});

test('an apply refuses (TOOL_MISSING) when a snapshot has ACLs and this site has no setfattr, and succeeds once it has', { skip: aclSkip }, async () => {
  const data = join(a.dir, 'no-tools');
  mkdirSync(data);
  writeFileSync(join(data, 'plain'), 'no attributes\n');
  const replica = await mirrorTree('no-tools', data);
  writeFileSync(join(data, 'acl-file'), 'acl\n');
  sh('setfacl', '-m', 'u:1234:rwx', join(data, 'acl-file'));
  // b's daemon runs without setfattr on its PATH
  await b.stop();
  await b.start({ port: b.port, env: { PATH: pathWithout(b.dir, ['setfattr']) } });
  const r = await a.ferry(['mirror', 'update', 'no-tools', '--to', 'b', '--wait', '--json']);
  assert.notEqual(r.code, 0);
  assert.match(r.stdout + r.stderr, /TOOL_MISSING/);
  assert.match(r.stdout + r.stderr, /apt-get install attr/);
  assert.equal(b.secondaryRow('no-tools')?.consistent, false);
  await b.stop();
  await b.start({ port: b.port });
  await update('no-tools');
  assertTreesEqual(replica, data);
  assert.deepEqual(xattrDump(replica), xattrDump(data));
});
