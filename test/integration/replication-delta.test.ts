// Wire efficiency on real daemons: after in-place rewrites inside large
// files, appends, a small edit in a small file and scattered unaligned image
// writes, the update sends about the bytes written (chunks go as deltas
// against the base's), and the replica is equal.
//
// The data is seeded, not random: where content-defined chunk boundaries fall
// decides how much of a file a rewrite disturbs. With fresh random bytes each
// run, a region can remove a cut and shift the next few (up to 14 of 24 MiB
// of chunks at new offsets in 60 simulated runs), so the apply's patch check
// and the wire bound failed in about one run in five, load or not.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, closeSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { assertTreesEqual, seededBytes, writeRandomFile } from '../helpers.ts';
import { cleanupSites, createSite, pairSites, type TestSite } from '../harness/index.ts';

const MiB = 1 << 20;
const KiB = 1 << 10;
const sites: TestSite[] = [];
after(() => cleanupSites(sites));


function overwrite(path: string, offset: number, bytes: Buffer): number {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
  return bytes.length;
}

test('an update after in-place writes, appends and unaligned image writes sends about what was written', async () => {
  const a = await createSite('a');
  sites.push(a);
  const b = await createSite('b');
  sites.push(b);
  const data = join(a.dir, 'data');
  const disk = join(a.dir, 'disk.img');
  mkdirSync(data, { recursive: true });
  writeRandomFile(join(data, 'large.bin'), 24 * MiB, 'large');
  writeRandomFile(join(data, 'medium.bin'), 3 * MiB, 'medium');
  writeFileSync(join(data, 'small.bin'), seededBytes(48 * KiB, 'small'));
  writeRandomFile(disk, 16 * MiB, 'disk');
  a.defineVolume('vol', [`data=tree:${data}`, `disk=image:${disk}`]);
  await Promise.all([a.start(), b.start()]);
  await pairSites(a, b);
  // Deltas whatever the link measures (on loopback `auto` may send whole objects: link-fit.ts).
  await a.json(['mirror', 'create', 'vol', '--to', 'b', '--deltas', 'always']);
  await a.json(['mirror', 'initialize', 'vol', '--to', 'b', '--wait']);

  let written = 0;
  // Four 256 KiB regions rewritten in place, at offsets that fall inside chunks.
  for (const at of [1 * MiB + 12345, 7 * MiB + 999, 13 * MiB + 4096 * 3, 20 * MiB + 1]) written += overwrite(join(data, 'large.bin'), at, seededBytes(256 * KiB, `region ${at}`));
  const tail = seededBytes(1536 * KiB, 'tail');
  appendFileSync(join(data, 'medium.bin'), tail);
  written += tail.length;
  written += overwrite(join(data, 'small.bin'), 20 * KiB, seededBytes(2 * KiB, 'edit'));
  // 20 writes of 64 KiB at 4 KiB-aligned offsets: most straddle two 64 KiB blocks.
  const fd = openSync(disk, 'r+');
  for (let i = 0; i < 20; i++) {
    const at = (i * 197 + 3) * 4 * KiB;
    writeSync(fd, seededBytes(64 * KiB, `write ${i}`), 0, 64 * KiB, at);
    written += 64 * KiB;
  }
  closeSync(fd);

  const upd = await a.json(['mirror', 'update', 'vol', '--to', 'b', '--wait']);
  const shown = await b.json(['volume', 'show', 'vol']);
  assertTreesEqual(shown.members.find((m: any) => m.name === 'data').path, data);
  assert.ok(readFileSync(shown.members.find((m: any) => m.name === 'disk').path).equals(readFileSync(disk)), 'image replica differs');
  const wire = upd.transfer.bytes as number;
  // Whole chunks would be ~1 MiB per region and per append, and 2 blocks per image write: well over 2x.
  assert.ok(wire <= written * 1.1 + 64 * KiB, `sent ${wire} bytes for ${written} bytes written (ratio ${(wire / written).toFixed(2)})`);
  assert.ok(wire >= written * 0.9, `sent ${wire} bytes for ${written} bytes of random data written: too few to be true`);
  // The apply copied the large files and wrote only the chunks that changed (plus 2.6 MiB of image
  // blocks), not the 28.5 MiB of the two files.
  const out = await b.ferry(['events', '--kind', 'replica.apply', '--json']);
  assert.equal(out.code, 0, out.stderr);
  const events = out.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
  const done = events.filter((e) => e.event.outcome === 'ok' && e.details.to === upd.snapshot);
  assert.equal(done.length, 1, JSON.stringify(events));
  assert.ok(done[0].details.bytesWritten < 18 * MiB, `the apply wrote ${done[0].details.bytesWritten} bytes of file data: ${JSON.stringify(done[0])}`);
});
