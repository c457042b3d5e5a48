// Capture from the change journal (capture.ts, CaptureOptions.journal) on real directories: after
// any sequence of changes, a journaled capture gives the same tree id as a full walk of the same
// tree, counts the same totals (the parent's plus what it looked at minus what is gone), and reads
// only what changed. Rounds of random changes (seeded) check the whole set of kinds together.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, chmodSync, existsSync, linkSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { ObjectId } from '../../../src/core/ids.ts';
import { captureTree, type CaptureStats, type StatCacheIO } from '../../../src/snapshot/capture.ts';
import { dirEntries } from '../../../src/snapshot/dir-pages.ts';
import { ChangeJournal } from '../../../src/snapshot/journal.ts';
import { decodeDirCache } from '../../../src/snapshot/stat-cache.ts';
import { withLocalSite } from '../local-site.ts';

function memoryCache(): StatCacheIO {
  const saved = new Map<string, Buffer>();
  return { load: (dir) => (saved.has(dir.toString('latin1')) ? decodeDirCache(saved.get(dir.toString('latin1'))!) : undefined), save: (dir, data) => void saved.set(dir.toString('latin1'), data) };
}

const TOTALS = ['dirs', 'files', 'bytes', 'symlinks', 'hardlinks', 'specials'] as const;
type Totals = Record<(typeof TOTALS)[number], number>;
const totalsOf = (s: CaptureStats): Totals => Object.fromEntries(TOTALS.map((k) => [k, s[k]])) as Totals;

/** A small seeded generator (xorshift): the same seed, the same changes. */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  return (n: number) => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % n;
  };
}

function allDirs(root: string, rel = ''): string[] {
  const out = [rel];
  for (const e of readdirSync(join(root, rel), { withFileTypes: true })) if (e.isDirectory()) out.push(...allDirs(root, rel ? `${rel}/${e.name}` : e.name));
  return out;
}

function allFiles(root: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(root, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...allFiles(root, r));
    else out.push(r);
  }
  return out;
}

async function harness(fn: (h: { data: string; full: () => Promise<{ root: ObjectId; stats: CaptureStats }>; journaled: (parent: ObjectId, parentTotals: Totals) => Promise<{ root: ObjectId; totals: Totals; stats: CaptureStats; journaled: boolean }>; take: () => Promise<void> }) => Promise<void>): Promise<void> {
  await withLocalSite('journal-capture', async ({ dir, site, pool }) => {
    const data = join(dir, 'data');
    mkdirSync(join(data, 'a', 'b'), { recursive: true });
    mkdirSync(join(data, 'c'));
    for (let i = 0; i < 5; i++) writeFileSync(join(data, 'a', `f${i}`), `file ${i}\n`.repeat(i * 10 + 1));
    writeFileSync(join(data, 'a', 'b', 'deep'), 'deep\n');
    writeFileSync(join(data, 'c', 'g'), 'g\n');
    symlinkSync('a/f1', join(data, 'ln'));
    const cache = memoryCache();
    const journal = new ChangeJournal({ barrierDir: join(dir, 'barrier'), inThread: true });
    let dirty: Awaited<ReturnType<ChangeJournal['take']>> | undefined;
    // Captures start well after the files' ctimes so the stat cache trusts them (racy rule): a
    // journaled capture re-reads only what the journal names.
    let clock = Date.now() + 10_000;
    try {
      await journal.watch('v', data);
      await fn({
        data,
        full: () => captureTree(data, { store: site.store, pool, cache, startedAt: (clock += 10_000) }),
        take: async () => {
          dirty = await journal.take('v');
          assert.equal(dirty.lost, null);
        },
        journaled: async (parent, parentTotals) => {
          const r = await captureTree(data, { store: site.store, pool, cache, startedAt: (clock += 10_000), journal: { parent, dirs: dirty!.dirs, tree: (id) => ({ entries: dirEntries(site.store, id) }), store: site.store } });
          const totals = { ...parentTotals };
          if (r.removed) for (const k of TOTALS) totals[k] += r.stats[k] - r.removed[k];
          else Object.assign(totals, totalsOf(r.stats));
          return { root: r.root, totals, stats: r.stats, journaled: r.journaled ?? false };
        },
      });
    } finally {
      await journal.close();
    }
  });
}

test('nothing changed: the journaled capture is the parent tree, nothing read or listed', async () => {
  await harness(async (h) => {
    const first = await h.full();
    await h.take();
    const j = await h.journaled(first.root, totalsOf(first.stats));
    assert.equal(j.root, first.root);
    assert.deepEqual(j.totals, totalsOf(first.stats));
    assert.equal(j.stats.filesRead, 0);
    assert.equal(j.stats.dirsJournaled, 0);
  });
});

test('every kind of change: the journaled capture equals a full walk, reading only the changed files', async () => {
  await harness(async (h) => {
    const first = await h.full();
    await h.take(); // the journal counts from here
    appendFileSync(join(h.data, 'a', 'f2'), 'more\n'); // content
    chmodSync(join(h.data, 'a', 'f3'), 0o600); // mode
    utimesSync(join(h.data, 'c', 'g'), 1000, 1000); // mtime
    rmSync(join(h.data, 'a', 'f4')); // removed
    writeFileSync(join(h.data, 'a', 'b', 'new'), 'new\n'); // added, deep
    mkdirSync(join(h.data, 'n', 'm'), { recursive: true }); // new subtree
    writeFileSync(join(h.data, 'n', 'm', 'x'), 'x\n');
    renameSync(join(h.data, 'c'), join(h.data, 'a', 'c-moved')); // moved subtree
    symlinkSync('elsewhere', join(h.data, 'a', 'b', 'ln2'));
    chmodSync(join(h.data, 'a', 'b'), 0o750); // a directory's own metadata
    await h.take();
    const j = await h.journaled(first.root, totalsOf(first.stats));
    const full = await h.full();
    assert.equal(j.journaled, true);
    assert.equal(j.root, full.root, 'the same tree as a full walk');
    assert.deepEqual(j.totals, totalsOf(full.stats), 'the same totals');
    // f2 (content), f3 (a chmod changes the ctime: the stat cache cannot vouch for it), new, x, and
    // g (moved: a new path); a full walk with the same stat cache reads the same ones
    assert.equal(j.stats.filesRead, 5, `read ${j.stats.filesRead} files`);
  });
});

test('a hard link made: the journaled capture is done again as a full walk (the same tree)', async () => {
  await harness(async (h) => {
    const first = await h.full();
    await h.take();
    linkSync(join(h.data, 'a', 'f0'), join(h.data, 'c', 'f0-link'));
    await h.take();
    const j = await h.journaled(first.root, totalsOf(first.stats));
    const full = await h.full();
    assert.equal(j.journaled, false);
    assert.equal(j.root, full.root);
    assert.deepEqual(j.totals, totalsOf(full.stats));
  });
});

test('extended attributes changed are seen (an attribute change is a change event)', { skip: spawnSync('setfattr', ['--version']).status !== 0 && 'setfattr is not installed' }, async () => {
  await harness(async (h) => {
    const first = await h.full();
    await h.take();
    assert.equal(spawnSync('setfattr', ['-n', 'user.note', '-v', 'hello', join(h.data, 'a', 'f1')]).status, 0);
    await h.take();
    const j = await h.journaled(first.root, totalsOf(first.stats));
    const full = await h.full();
    assert.notEqual(full.root, first.root);
    assert.equal(j.root, full.root);
  });
});

test('random rounds of changes (seeded): each journaled capture equals a full walk of the same tree', async () => {
  await harness(async (h) => {
    const r = rng(20261206);
    let parent = await h.full();
    let totals = totalsOf(parent.stats);
    await h.take();
    for (let round = 0; round < 12; round++) {
      for (let k = 0, n = 1 + r(8); k < n; k++) {
        const dirs = allDirs(h.data);
        const files = allFiles(h.data).filter((f) => statSync(join(h.data, f), { throwIfNoEntry: false })?.isFile());
        const d = dirs[r(dirs.length)];
        const f = files.length ? files[r(files.length)] : undefined;
        switch (r(8)) {
          case 0: writeFileSync(join(h.data, d, `w${round}-${k}`), `${round} ${k}\n`.repeat(r(50) + 1)); break;
          case 1: if (f) appendFileSync(join(h.data, f), 'x'); break;
          case 2: if (f) rmSync(join(h.data, f)); break;
          case 3: if (f) chmodSync(join(h.data, f), 0o600 + r(0o100)); break;
          case 4: mkdirSync(join(h.data, d, `d${round}-${k}`)); writeFileSync(join(h.data, d, `d${round}-${k}`, 'in'), 'in\n'); break;
          case 5: if (d !== '' && dirs.length > 2) { const to = dirs.filter((x) => x !== d && !x.startsWith(`${d}/`))[0]; const dest = join(h.data, to, `mv${round}-${k}`); if (!existsSync(dest)) renameSync(join(h.data, d), dest); } break;
          case 6: if (d !== '') rmSync(join(h.data, d), { recursive: true }); break;
          case 7: if (f) renameSync(join(h.data, f), join(h.data, d, `rn${round}-${k}`)); break;
        }
      }
      await h.take();
      const j = await h.journaled(parent.root, totals);
      const full = await h.full();
      assert.equal(j.root, full.root, `round ${round}: journaled ${j.root}, full walk ${full.root}`);
      assert.deepEqual(j.totals, totalsOf(full.stats), `round ${round}: totals`);
      parent = full;
      totals = j.totals;
      await h.take(); // the full walk above counts as the parent of the next round
    }
  });
});
