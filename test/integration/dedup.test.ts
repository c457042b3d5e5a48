// Incremental snapshots store only what changed: an insertion of a few bytes
// in the middle of a large file adds about one or two chunks (FastCDC moves
// only nearby boundaries), a copy of a file adds nothing, an unchanged file is
// not read again. Counted from `snapshot create --json` and `info --json`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, renameSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { fillBytes } from '../tree-gen.ts';
import { assertTreesEqual } from '../helpers.ts';
import { makeSite } from '../harness/cli-site.ts';

const MiB = 1 << 20;
// Default chunking: min 256 KiB, avg 1 MiB, max 4 MiB.
const LIMIT = 3 * MiB;
// tree objects and the like
const METADATA = 64 * 1024;

test('an insertion in the middle of a large file stores one or two new chunks', async () => {
  const site = await makeSite();
  try {
    const data = join(site.dir, 'data');
    mkdirSync(join(data, 'small'), { recursive: true });
    // Deterministic pseudo-random content (even seed: incompressible bytes), so chunk boundaries are the same every run.
    const big = fillBytes(12 * MiB, 0x5eed0);
    writeFileSync(join(data, 'big.bin'), big);
    for (let i = 0; i < 20; i++) writeFileSync(join(data, 'small', `s${i}`), `small file ${i}\n`);
    assert.equal((await site.ferry(['volume', 'create', 'v', '--member', data])).code, 0);

    // Wait out the racy window, so the first snapshot's stat cache is trusted by the second.
    await sleep(2100);
    const s1 = await site.json(['snapshot', 'create', 'v']);
    assert.equal(s1.stats.filesRead, 21);
    assert.ok(s1.stats.bytesAdded >= 12 * MiB, `first snapshot added ${s1.stats.bytesAdded}`);
    const info1 = (await site.json(['info'])).store;

    const mid = 6 * MiB + 12345;
    const changed = Buffer.concat([big.subarray(0, mid), Buffer.from('INSERTED'), big.subarray(mid)]);
    writeFileSync(join(data, 'big.bin'), changed);
    // Two small files changed in ways that keep size and mtime: rewritten in place (the ctime
    // tells), and replaced by rename (the inode tells). The stat cache must not be fooled.
    const f0 = join(data, 'small', 's0');
    const m0 = statSync(f0).mtime;
    writeFileSync(f0, 'SMALL FILE 0\n');
    utimesSync(f0, m0, m0);
    const f1 = join(data, 'small', 's1');
    const m1 = statSync(f1).mtime;
    writeFileSync(`${f1}.tmp`, 'SMALL FILE 1\n');
    utimesSync(`${f1}.tmp`, m1, m1);
    renameSync(`${f1}.tmp`, f1);
    const s2 = await site.json(['snapshot', 'create', 'v']);
    const st = s2.stats;
    // Only the changed files were read; the others came from the stat cache.
    assert.equal(st.filesRead, 3, JSON.stringify(st));
    assert.equal(st.filesReused, 18);
    assert.ok(st.bytesAdded > 0, 'the insertion stored nothing');
    assert.ok(st.bytesAdded < LIMIT + METADATA, `insertion of 8 bytes added ${st.bytesAdded} bytes (limit ${LIMIT})`);
    // one or two chunks, two small files, the small/ tree and the root tree
    assert.ok(st.objectsAdded <= 6, `objects added: ${st.objectsAdded}`);
    const info2 = (await site.json(['info'])).store;
    const grew = info2.rawBytes - info1.rawBytes;
    assert.ok(grew >= st.bytesAdded && grew < st.bytesAdded + METADATA, `store grew by ${grew} raw bytes, snapshot says ${st.bytesAdded}`);
    assert.ok(info2.storedBytes - info1.storedBytes < LIMIT + METADATA, `store files grew by ${info2.storedBytes - info1.storedBytes}`);

    // diff sees the same: the modified files (and small/, whose mtime the rename changed); new content about what was stored.
    const d = await site.json(['snapshot', 'diff', 'v', s1.snapshot.id, s2.snapshot.id]);
    const changes = d.members[0].changes;
    assert.deepEqual(changes.map((c: { path: string; change: string }) => [c.path, c.change]), [['big.bin', 'modified'], ['small', 'modified'], ['small/s0', 'modified'], ['small/s1', 'modified']]);
    assert.ok(changes[0].bytesChanged > 0 && changes[0].bytesChanged <= st.bytesAdded, JSON.stringify(changes[0]));

    // A third snapshot of the unchanged tree adds nothing (big.bin is re-read: it was racy; dedup keeps it free).
    const s3 = await site.json(['snapshot', 'create', 'v']);
    assert.equal(s3.stats.bytesAdded, 0, JSON.stringify(s3.stats));
    assert.equal(s3.stats.objectsAdded, 0);

    // Both versions restore exactly.
    for (const [snap, content] of [[s1, big], [s2, changed]] as const) {
      const out = join(site.dir, `out-${snap.snapshot.id}`);
      assert.equal((await site.ferry(['restore', 'v', '--snapshot', snap.snapshot.id, '--target', out])).code, 0);
      assert.ok(readFileSync(join(out, 'big.bin')).equals(content));
    }
    const latest = join(site.dir, 'out-latest');
    assert.equal((await site.ferry(['restore', 'v', '--snapshot', 'latest', '--target', latest])).code, 0);
    assertTreesEqual(latest, data);
    assert.equal((await site.ferry(['verify'])).code, 0);
  } finally {
    site.cleanup();
  }
});

test('appending to a large file and copying it store only the new tail', async () => {
  const site = await makeSite();
  try {
    const data = join(site.dir, 'data');
    mkdirSync(data);
    const big = fillBytes(8 * MiB, 0xabc2);
    writeFileSync(join(data, 'log.bin'), big);
    assert.equal((await site.ferry(['volume', 'create', 'v', '--member', data])).code, 0);
    const s1 = await site.json(['snapshot', 'create', 'v']);
    assert.ok(s1.stats.bytesAdded >= 8 * MiB);

    // A copy of the file under another name adds no chunk at all.
    copyFileSync(join(data, 'log.bin'), join(data, 'copy.bin'));
    const s2 = await site.json(['snapshot', 'create', 'v']);
    assert.ok(s2.stats.bytesAdded < METADATA, `a copy added ${s2.stats.bytesAdded} bytes`);

    // Appending 100 KiB: the last chunk changes, the rest stay.
    const tail = fillBytes(100 * 1024, 0x7a12);
    writeFileSync(join(data, 'log.bin'), Buffer.concat([big, tail]));
    const s3 = await site.json(['snapshot', 'create', 'v']);
    assert.ok(s3.stats.bytesAdded < LIMIT + tail.length + METADATA, `an append of 100 KiB added ${s3.stats.bytesAdded}`);

    const out = join(site.dir, 'out');
    assert.equal((await site.ferry(['restore', 'v', '--snapshot', 'latest', '--target', out])).code, 0);
    assertTreesEqual(out, data);
  } finally {
    site.cleanup();
  }
});
