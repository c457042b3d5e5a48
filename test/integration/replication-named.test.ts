// Named snapshots through real daemons: `mirror initialize --snapshot NAME`
// sends that existing snapshot (the replica shows its content, not the live
// tree), and `mirror update --snapshot NAME` moves the replica to another
// named one; an older one than the base, or an unknown name, is refused.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync, rmSync, chmodSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { assertTreesEqual, describeTree } from '../helpers.ts';
import { assertRefused, cleanupSites, createSite, pairSites, type TestSite } from '../harness/index.ts';

const sites: TestSite[] = [];
after(() => cleanupSites(sites));

test('initialize and update from named snapshots: the replica shows each snapshot, not the live tree', async () => {
  const [a, b] = await Promise.all([createSite('a'), createSite('b')]);
  sites.push(a, b);
  const data = join(a.dir, 'data');
  mkdirSync(join(data, 'etc'), { recursive: true });
  writeFileSync(join(data, 'etc', 'app.conf'), 'version = 1\n');
  writeFileSync(join(data, 'db.bin'), randomBytes(64 << 10));
  symlinkSync('etc/app.conf', join(data, 'conf'));
  a.defineVolume('vol', [data]);

  // Two named snapshots, each followed by changes to the live tree; a copy of the tree as each
  // snapshot saw it to compare with. (The CLI takes snapshots while no daemon holds the site.)
  const copy = (to: string) => execFileSync('cp', ['-a', data, to]);
  const s1 = await a.json(['snapshot', 'create', 'vol', '--name', 'app-consistent-1']);
  const expected1 = join(a.dir, 'expected1');
  copy(expected1);
  writeFileSync(join(data, 'etc', 'app.conf'), 'version = 2\n');
  writeFileSync(join(data, 'later.txt'), 'in the second named snapshot\n');
  chmodSync(join(data, 'db.bin'), 0o600);
  const s2 = await a.json(['snapshot', 'create', 'vol', '--name', 'app-consistent-2']);
  const expected2 = join(a.dir, 'expected2');
  copy(expected2);
  writeFileSync(join(data, 'etc', 'app.conf'), 'version = 3 (live, in no named snapshot)\n');
  writeFileSync(join(data, 'live-only.txt'), 'live\n');
  rmSync(join(data, 'later.txt'));

  await Promise.all([a.start(), b.start()]);
  await pairSites(a, b);
  await a.json(['mirror', 'create', 'vol', '--to', 'b']);
  const init = await a.json(['mirror', 'initialize', 'vol', '--to', 'b', '--snapshot', 'app-consistent-1', '--wait']);
  assert.equal(init.snapshot, s1.snapshot.id, 'the named snapshot itself is sent, not a new one');
  const replica = (await b.json(['volume', 'show', 'vol'])).members[0].path as string;
  assertTreesEqual(replica, expected1);
  assert.ok(!describeTree(replica).has('live-only.txt'));
  assert.equal(a.mirrorRow('vol', 'b').base, s1.snapshot.id);
  assert.equal(b.secondaryRow('vol')!.applied, s1.snapshot.id);

  const upd = await a.json(['mirror', 'update', 'vol', '--to', 'b', '--snapshot', 'app-consistent-2', '--wait']);
  assert.equal(upd.snapshot, s2.snapshot.id);
  assert.equal(upd.base, s1.snapshot.id);
  assertTreesEqual(replica, expected2);
  const m2 = await a.mirror('vol', 'b');
  assert.equal(m2.base, s2.snapshot.id);
  assert.equal(m2.state, 'idle');
  assert.equal(m2.health, 'up');
  // The destination holds both under the same ids and names (named snapshots are not released).
  const bSnaps = await b.json(['snapshot', 'list', 'vol']);
  assert.deepEqual(bSnaps.map((s: any) => [s.id, s.name]), [[s1.snapshot.id, 'app-consistent-1'], [s2.snapshot.id, 'app-consistent-2']]);

  // Going back to the older named snapshot is refused: it is older than the base. So is a name that does not exist.
  // (One at a time: a second update of a mirror while one runs is refused as busy.)
  const back = await a.ferry(['mirror', 'update', 'vol', '--to', 'b', '--snapshot', 'app-consistent-1', '--wait', '--json']);
  const unknown = await a.ferry(['mirror', 'update', 'vol', '--to', 'b', '--snapshot', 'no-such-name', '--wait', '--json']);
  assertRefused(back, 4, 'MIRROR_STATE', /older than the mirror's base/);
  assertRefused(unknown, 3, 'SNAPSHOT_NOT_FOUND');
  assertTreesEqual(replica, expected2);
  const m3 = a.mirrorRow('vol', 'b');
  assert.equal(m3.base, s2.snapshot.id);
  assert.equal(m3.state, 'idle', 'a refused update leaves the mirror idle');

  // Without --snapshot, an update takes a new snapshot of the live tree.
  const live = await a.json(['mirror', 'update', 'vol', '--to', 'b', '--wait']);
  assert.ok(live.snapshot > s2.snapshot.id);
  assertTreesEqual(replica, data);
});

test('snapshot create while the daemon holds the site goes through the daemon', async () => {
  const a = await createSite('solo');
  sites.push(a);
  const data = join(a.dir, 'data');
  mkdirSync(data);
  writeFileSync(join(data, 'f'), 'x');
  a.defineVolume('vol', [data]);
  await a.start();
  const s = await a.json(['snapshot', 'create', 'vol', '--name', 'while-serving']);
  assert.equal(s.snapshot.name, 'while-serving');
});
