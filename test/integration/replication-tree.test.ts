// Replication end to end between two real `ferry serve` processes on
// loopback: a baseline, then every kind of change a tree and an image can
// undergo, one incremental update, and a byte-for-byte and metadata
// comparison of source and replica. Bytes on the wire must be about what
// changed, not the volume size.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync,
  appendFileSync, chmodSync, closeSync, lchownSync, linkSync, lutimesSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, symlinkSync, unlinkSync, utimesSync,
  writeFileSync, writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { assertTreesEqual, writeRandomFile } from '../helpers.ts';
import { cleanupSites, createSite, pairSites, type TestSite } from '../harness/index.ts';

const MiB = 1 << 20;
const KiB = 1 << 10;
const sites: TestSite[] = [];
after(() => cleanupSites(sites));


test('two daemons: baseline, then an update carrying every kind of change; replica equal in bytes and metadata', async () => {
  const a = await createSite('a');
  sites.push(a);
  const b = await createSite('b');
  sites.push(b);

  // The source: a tree of assorted entries and an 8 MiB image.
  const data = join(a.dir, 'data');
  const disk = join(a.dir, 'disk.img');
  mkdirSync(join(data, 'docs', 'deep'), { recursive: true });
  mkdirSync(join(data, 'becomes-file', 'sub'), { recursive: true });
  mkdirSync(join(data, 'gone-dir', 'x'), { recursive: true });
  writeFileSync(join(data, 'docs', 'readme.txt'), 'first version\n');
  writeFileSync(join(data, 'docs', 'deep', 'notes.txt'), 'notes\n');
  writeFileSync(join(data, 'docs', 'to-remove.txt'), 'remove me\n');
  writeFileSync(join(data, 'docs', 'to-rename.txt'), randomBytes(20 * KiB));
  writeRandomFile(join(data, 'big.bin'), 3 * MiB); // renamed later: its chunks must not travel again
  writeFileSync(join(data, 'meta-only.txt'), 'metadata changes only\n');
  writeFileSync(join(data, 'owned.txt'), 'chown me\n');
  writeFileSync(join(data, 'touched.txt'), 'touch me\n');
  writeFileSync(join(data, 'becomes-file', 'sub', 'inner.txt'), 'inner\n');
  writeFileSync(join(data, 'gone-dir', 'x', 'y.txt'), 'y\n');
  writeFileSync(join(data, 'becomes-dir'), 'a file for now\n');
  writeFileSync(join(data, 'linked.txt'), 'hard linked\n');
  linkSync(join(data, 'linked.txt'), join(data, 'docs', 'linked-twin.txt'));
  writeFileSync(join(data, 'relinked.txt'), 'link target that gets rewritten\n');
  linkSync(join(data, 'relinked.txt'), join(data, 'relinked-twin.txt'));
  symlinkSync('docs/readme.txt', join(data, 'link-changes'));
  symlinkSync('../big.bin', join(data, 'docs', 'link-removed'));
  symlinkSync('dangling-target', join(data, 'link-dangling'));
  writeRandomFile(disk, 8 * MiB);

  a.defineVolume('vol', [`data=tree:${data}`, `disk=image:${disk}`]);
  await Promise.all([a.start(), b.start()]);
  await pairSites(a, b);
  await a.json(['mirror', 'create', 'vol', '--to', 'b']);

  const init = await a.json(['mirror', 'initialize', 'vol', '--to', 'b', '--wait']);
  assert.equal(init.base, null);
  // The baseline carries the whole volume (random data: no compression helps).
  assert.ok(init.transfer.bytes > 11 * MiB, `baseline sent ${init.transfer.bytes} bytes`);

  const shown = await b.json(['volume', 'show', 'vol']);
  assert.equal(shown.role, 'secondary');
  const replicaData = shown.members.find((m: any) => m.name === 'data').path as string;
  const replicaDisk = shown.members.find((m: any) => m.name === 'disk').path as string;
  assert.ok(replicaData.startsWith(join(b.home, 'replicas', 'vol')), replicaData);
  assertTreesEqual(replicaData, data);
  assert.ok(readFileSync(replicaDisk).equals(readFileSync(disk)), 'image replica differs after the baseline');
  // The baseline's new directories were staged as their trees arrived and moved into place by the
  // apply (replication/stage.ts); the root and docs hold hard links, so the apply wrote those. Nothing
  // is left in the staging area.
  const applies = (await b.ferry(['events', '--kind', 'replica.apply', '--json'])).stdout.trim().split('\n').map((l) => JSON.parse(l));
  const baselineApply = applies.find((e) => e.details.transition === 'inconsistent => consistent');
  assert.ok(baselineApply?.details.staging?.taken >= 3, `staged subtrees taken into place: ${JSON.stringify(baselineApply)}`);
  assert.ok(!existsSync(join(replicaData, '.ferry-stage')), 'the staging area is removed');

  // ---- every kind of change
  let changed = 0;
  const put = (rel: string, content: Buffer | string) => {
    writeFileSync(join(data, rel), content);
    changed += Buffer.byteLength(content);
  };
  put('added.txt', 'a new file\n'); // added
  mkdirSync(join(data, 'new-dir', 'nested'), { recursive: true });
  put('new-dir/nested/n.bin', randomBytes(30 * KiB));
  put('docs/readme.txt', 'second version, longer than the first\n'); // changed
  appendFileSync(join(data, 'docs', 'deep', 'notes.txt'), 'more notes\n');
  changed += 20;
  unlinkSync(join(data, 'docs', 'to-remove.txt')); // removed
  rmSync(join(data, 'gone-dir'), { recursive: true });
  renameSync(join(data, 'docs', 'to-rename.txt'), join(data, 'docs', 'deep', 'renamed.txt')); // renamed
  renameSync(join(data, 'big.bin'), join(data, 'big-renamed.bin'));
  chmodSync(join(data, 'meta-only.txt'), 0o600); // metadata only
  lchownSync(join(data, 'owned.txt'), 1234, 5678);
  utimesSync(join(data, 'touched.txt'), 1_500_000_000.25, 1_500_000_000.25);
  chmodSync(join(data, 'docs', 'deep'), 0o750);
  unlinkSync(join(data, 'link-changes')); // symlinks: changed, removed, added
  symlinkSync('big-renamed.bin', join(data, 'link-changes'));
  unlinkSync(join(data, 'docs', 'link-removed'));
  symlinkSync('/etc/hostname', join(data, 'docs', 'link-added'));
  lutimesSync(join(data, 'link-dangling'), 1_600_000_000, 1_600_000_000);
  rmSync(join(data, 'becomes-file'), { recursive: true }); // directory -> file
  put('becomes-file', 'now a file\n');
  unlinkSync(join(data, 'becomes-dir')); // file -> directory
  mkdirSync(join(data, 'becomes-dir'));
  put('becomes-dir/child.txt', 'child\n');
  linkSync(join(data, 'docs', 'readme.txt'), join(data, 'readme-hardlink')); // hard links: new, and a group whose file changes
  writeFileSync(join(data, 'relinked.txt'), 'rewritten in place through one of its names\n'); // same inode: the twin changes too
  changed += 50;
  // The image: scattered 64 KiB block writes (block-aligned and not).
  const fd = openSync(disk, 'r+');
  const blocks = [0, 3, 17, 40, 64, 77, 100, 127];
  for (const blk of blocks) {
    const buf = randomBytes(64 * KiB);
    writeSync(fd, buf, 0, buf.length, blk * 64 * KiB);
  }
  writeSync(fd, Buffer.from('unaligned'), 0, 9, 90 * 64 * KiB + 1000); // inside one more block
  closeSync(fd);
  changed += (blocks.length + 1) * 64 * KiB;

  const upd = await a.json(['mirror', 'update', 'vol', '--to', 'b', '--wait']);
  assert.equal(upd.base, init.snapshot);
  assert.notEqual(upd.snapshot, init.snapshot);
  assertTreesEqual(replicaData, data);
  assert.ok(readFileSync(replicaDisk).equals(readFileSync(disk)), 'image replica differs after the update');

  // Bytes on the wire are about what changed (plus trees and block lists), not the 11 MiB volume.
  const m = await a.mirror('vol', 'b');
  assert.equal(m.state, 'idle');
  assert.equal(m.health, 'up');
  assert.equal(m.base, upd.snapshot);
  assert.equal(m.lastError, null);
  assert.deepEqual(m.lastTransfer.bytes, upd.transfer.bytes);
  const wire = m.lastTransfer.bytes as number;
  // The whole-block random writes cannot shrink; the 9-byte write inside one more block goes as a small delta.
  assert.ok(wire >= blocks.length * 64 * KiB, `sent ${wire} bytes, less than the changed image blocks`);
  assert.ok(wire < changed + 128 * KiB, `sent ${wire} bytes for ${changed} changed bytes`);
  assert.ok(m.lastTransfer.rawBytes < changed + 256 * KiB, `sent ${m.lastTransfer.rawBytes} raw bytes for ${changed} changed bytes`);

  // The destination's view: the secondary shows the update applied and consistent.
  const bs = await b.status();
  const sec = bs.volumes.find((v: any) => v.name === 'vol').secondary;
  assert.equal(sec.source, 'a');
  assert.equal(sec.applied, upd.snapshot);
  assert.equal(sec.consistent, true);
  assert.equal(sec.applying, null);

  // A third, empty update: nothing but a new manifest travels; the replica stays equal.
  const again = await a.json(['mirror', 'update', 'vol', '--to', 'b', '--wait']);
  assert.ok(again.transfer.bytes < 4 * KiB, `an update with no changes sent ${again.transfer.bytes} bytes`);
  assertTreesEqual(replicaData, data);
});
