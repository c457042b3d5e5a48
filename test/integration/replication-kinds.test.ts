// Replication of the file kinds that are easy to get subtly wrong, between
// two real `ferry serve` daemons: times before 1970, Unix sockets, sparse
// files (allocation, not only bytes), and extended attributes with POSIX
// ACLs. Each test mirrors its own volume over one pair of daemons, checks the
// baseline, changes the tree, and checks the update: the replica must equal
// the source in content and metadata, and the apply's verification must pass
// on the first attempt (a mismatch fails the update with REPLICA_MISMATCH).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertTreesEqual } from '../helpers.ts';
import { cleanupAll, createSite, pair, type RealSite } from './sites.ts';

const sites: RealSite[] = [];
let a: RealSite;
let b: RealSite;

before(async () => {
  a = await createSite('a');
  sites.push(a);
  b = await createSite('b');
  sites.push(b);
  await Promise.all([a.start(), b.start()]);
  await pair(a, b);
});
after(() => cleanupAll(sites));

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
