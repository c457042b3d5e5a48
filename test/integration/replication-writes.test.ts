// Writes into a replica, through real daemons: the next update is refused
// (exit 4, REPLICA_WRITTEN), the writes are kept at the destination in a
// snapshot named replica-writes-* that `ferry restore` brings back, and
// `mirror update --force` then makes the replica equal the source again.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { assertTreesEqual, describeTree } from '../helpers.ts';
import { assertRefused, cleanupSites, createSite, pairSites, type TestSite } from '../harness/index.ts';

const sites: TestSite[] = [];
after(() => cleanupSites(sites));

test('writes into the replica: update refused and the writes kept in a restorable snapshot; --force then overwrites', async () => {
  const [a, b] = await Promise.all([createSite('a'), createSite('b')]);
  sites.push(a, b);
  const data = join(a.dir, 'data');
  const disk = join(a.dir, 'disk.img');
  mkdirSync(join(data, 'dir'), { recursive: true });
  writeFileSync(join(data, 'keep.txt'), 'from the source\n');
  writeFileSync(join(data, 'dir', 'edit-me.txt'), 'original\n');
  writeFileSync(join(data, 'dir', 'delete-me.txt'), 'will be deleted at the replica\n');
  writeFileSync(disk, randomBytes(1 << 20));
  a.defineVolume('vol', [`data=tree:${data}`, `disk=image:${disk}`]);
  await Promise.all([a.start(), b.start()]);
  await pairSites(a, b);
  await a.json(['mirror', 'create', 'vol', '--to', 'b']);
  const init = await a.json(['mirror', 'initialize', 'vol', '--to', 'b', '--wait']);
  const members = (await b.json(['volume', 'show', 'vol'])).members;
  const rData = members.find((m: any) => m.name === 'data').path as string;
  const rDisk = members.find((m: any) => m.name === 'disk').path as string;
  assertTreesEqual(rData, data);

  // Someone writes into the replica (tree and image) ...
  writeFileSync(join(rData, 'intruder.txt'), 'written at the secondary\n');
  writeFileSync(join(rData, 'dir', 'edit-me.txt'), 'edited at the secondary\n');
  rmSync(join(rData, 'dir', 'delete-me.txt'));
  const fd = openSync(rDisk, 'r+');
  writeSync(fd, Buffer.alloc(4096, 0x5a), 0, 4096, 128 << 10);
  closeSync(fd);
  const writtenTree = describeTree(rData);
  const writtenDisk = readFileSync(rDisk);
  // ... while the source moves on.
  writeFileSync(join(data, 'keep.txt'), 'from the source, second version\n');

  const refused = await a.ferry(['mirror', 'update', 'vol', '--to', 'b', '--wait', '--json']);
  assertRefused(refused, 4, 'REPLICA_WRITTEN', /wrote into the replica/);
  const kept = refused.json.error.details?.writesSnapshot as string;
  assert.match(kept, /^replica-writes-/);
  // Nothing at the replica was overwritten.
  assert.deepEqual(describeTree(rData), writtenTree);
  assert.ok(readFileSync(rDisk).equals(writtenDisk));
  const m1 = await a.mirror('vol', 'b');
  assert.equal(m1.lastError?.code, 'REPLICA_WRITTEN');
  assert.equal(m1.health, 'warn');
  const bs1 = await b.status();
  const sec1 = bs1.volumes.find((v: any) => v.name === 'vol').secondary;
  assert.equal(sec1.applied, init.snapshot, 'the refused snapshot was not applied');
  const listed = await b.json(['snapshot', 'list', 'vol']);
  const writesSnap = listed.find((s: any) => s.name === kept);
  assert.ok(writesSnap, `no snapshot ${kept} at the destination: ${JSON.stringify(listed.map((s: any) => s.name))}`);

  // --force: the writes, kept already (the replica is as the refusal found it), are overwritten; the replica equals the source.
  const forced = await a.json(['mirror', 'update', 'vol', '--to', 'b', '--force', '--wait']);
  assert.equal(forced.applied, true);
  assert.equal(forced.writesSnapshot, kept, 'the snapshot that keeps them is named again, not made twice');
  assert.equal((await b.json(['snapshot', 'list', 'vol'])).filter((s: any) => s.name?.startsWith('replica-writes-')).length, 1);
  assertTreesEqual(rData, data);
  assert.ok(readFileSync(rDisk).equals(readFileSync(disk)));
  const m2 = await a.mirror('vol', 'b');
  assert.equal(m2.lastError, null);
  assert.equal(m2.health, 'up');
  assert.equal(m2.base, forced.snapshot);
  const sec2 = (await b.status()).volumes.find((v: any) => v.name === 'vol').secondary;
  assert.equal(sec2.applied, forced.snapshot);
  assert.equal(sec2.consistent, true);

  // The kept writes survive the forced update and restore exactly (the CLI restores with the site to itself).
  const bPort = b.port!;
  await b.stop();
  const target = join(b.dir, 'recovered');
  const r = await b.json(['restore', 'vol', '--snapshot', kept, '--target', target]);
  assert.equal(r.snapshot, writesSnap.id);
  assert.deepEqual(
    [...describeTree(join(target, 'data'))].map(([k, v]) => [k, v.content]),
    [...writtenTree].map(([k, v]) => [k, v.content]),
  );
  assert.ok(readFileSync(join(target, 'disk')).equals(writtenDisk), 'the image writes were not kept');
  await b.start({ port: bPort });

  // And the mirror carries on normally.
  writeFileSync(join(data, 'after.txt'), 'after the forced update\n');
  const next = await a.json(['mirror', 'update', 'vol', '--to', 'b', '--wait']);
  assert.equal(next.applied, true);
  assert.equal(next.writesSnapshot, undefined);
  assertTreesEqual(rData, data);
});
