// The change journal on real directories: what a take reports after each kind of change, that a
// take sees every change made before it (the barrier), directories created, moved and removed
// while watched, the watch limit and a removed root (lost), and the worker thread.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, chmodSync, linkSync, mkdirSync, renameSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ChangeJournal, type DirtySet } from '../../../src/snapshot/journal.ts';
import { tempDir } from '../../helpers.ts';

function setup(inThread = true) {
  const tmp = tempDir('ferry-journal-');
  const root = join(tmp.path, 'tree');
  mkdirSync(join(root, 'a', 'b'), { recursive: true });
  mkdirSync(join(root, 'c'));
  writeFileSync(join(root, 'a', 'f'), 'one');
  writeFileSync(join(root, 'c', 'g'), 'two');
  const journal = new ChangeJournal({ barrierDir: join(tmp.path, 'barrier'), inThread });
  return { tmp, root, journal, async done() { await journal.close(); tmp.cleanup(); } };
}

/** dir -> summary, for readable assertions */
function summary(set: DirtySet): Record<string, string> {
  const out: Record<string, string> = {};
  for (const d of set.dirs) out[d.dir] = `${d.full ? 'full ' : ''}${d.list ? 'list ' : ''}${d.names === null ? '*' : [...d.names].sort().join(',')}`;
  return out;
}

test('each kind of change is reported in the directory that holds the entry, and a take starts a new set', async () => {
  const s = setup();
  try {
    const info = await s.journal.watch('v', s.root);
    assert.deepEqual(info, { watches: 4, lost: null, exhausted: false });
    assert.deepEqual(summary(await s.journal.take('v')), {}, 'nothing changed yet');

    appendFileSync(join(s.root, 'a', 'f'), 'more');
    assert.deepEqual(summary(await s.journal.take('v')), { a: 'f' }, 'a write names the file, the list is unchanged');
    chmodSync(join(s.root, 'c', 'g'), 0o600);
    utimesSync(join(s.root, 'a', 'f'), 1, 1);
    assert.deepEqual(summary(await s.journal.take('v')), { a: 'f', c: 'g' }, 'chmod and utimes are changes too');
    writeFileSync(join(s.root, 'a', 'b', 'new'), 'x');
    rmSync(join(s.root, 'c', 'g'));
    symlinkSync('target', join(s.root, 'ln'));
    assert.deepEqual(summary(await s.journal.take('v')), { '': 'list ln', 'a/b': 'list new', c: 'list g' });
    chmodSync(join(s.root, 'a'), 0o750);
    const dirMeta = summary(await s.journal.take('v'));
    assert.match(dirMeta[''] ?? '', /\ba\b/, 'a directory whose metadata changed is named in its parent');
    assert.deepEqual(summary(await s.journal.take('v')), {}, 'each change is reported once');
  } finally {
    await s.done();
  }
});

test('a take sees every change made before it was called (the barrier), in-thread and on the worker', async () => {
  for (const inThread of [true, false]) {
    const s = setup(inThread);
    try {
      await s.journal.watch('v', s.root);
      for (let i = 0; i < 40; i++) {
        writeFileSync(join(s.root, 'c', `n${i}`), String(i));
        const set = await s.journal.take('v');
        assert.deepEqual(summary(set), { c: `list n${i}` }, `round ${i} (${inThread ? 'in-thread' : 'worker'})`);
      }
    } finally {
      await s.done();
    }
  }
});

test('a directory created while watched is watched at once, with what was made in it before its watch (full)', async () => {
  const s = setup();
  try {
    await s.journal.watch('v', s.root);
    mkdirSync(join(s.root, 'n', 'deep'), { recursive: true });
    writeFileSync(join(s.root, 'n', 'deep', 'x'), 'x');
    const first = await s.journal.take('v');
    assert.equal(summary(first)[''], 'list n');
    assert.ok(first.dirs.some((d) => d.dir === 'n' && d.full), 'the new directory is marked new in full');
    writeFileSync(join(s.root, 'n', 'deep', 'y'), 'y');
    assert.deepEqual(summary(await s.journal.take('v')), { 'n/deep': 'list y' }, 'its subdirectory is watched too');
  } finally {
    await s.done();
  }
});

test('a directory moved within the tree is watched at its new path; removed, its watches go', async () => {
  const s = setup();
  try {
    await s.journal.watch('v', s.root);
    renameSync(join(s.root, 'a'), join(s.root, 'c', 'moved'));
    const moved = await s.journal.take('v');
    assert.equal(summary(moved)[''], 'list a');
    assert.equal(summary(moved)['c'], 'list moved');
    assert.ok(moved.dirs.some((d) => d.dir === 'c/moved' && d.full), 'the moved directory is captured anew at its new path');
    appendFileSync(join(s.root, 'c', 'moved', 'f'), '!');
    writeFileSync(join(s.root, 'c', 'moved', 'b', 'z'), 'z');
    assert.deepEqual(summary(await s.journal.take('v')), { 'c/moved': 'f', 'c/moved/b': 'list z' }, 'changes are reported at the new path, none at the old');
    rmSync(join(s.root, 'c', 'moved'), { recursive: true });
    assert.deepEqual(summary(await s.journal.take('v')), { c: 'list moved' });
    mkdirSync(join(s.root, 'a'));
    writeFileSync(join(s.root, 'a', 'again'), '1');
    const again = await s.journal.take('v');
    assert.equal(summary(again)[''], 'list a');
    writeFileSync(join(s.root, 'a', 'later'), '1');
    assert.deepEqual(summary(await s.journal.take('v')), { a: 'list later' }, 'a directory made again at an old path is watched');
  } finally {
    await s.done();
  }
});

test('a write through a hard link is seen only where its name was opened (capture re-reads directories with linked files)', async () => {
  const s = setup();
  try {
    linkSync(join(s.root, 'a', 'f'), join(s.root, 'c', 'f-link'));
    await s.journal.watch('v', s.root);
    appendFileSync(join(s.root, 'c', 'f-link'), 'via the link');
    assert.deepEqual(summary(await s.journal.take('v')), { c: 'f-link' });
  } finally {
    await s.done();
  }
});

test('names that are not UTF-8 are reported byte for byte (latin1 strings)', async () => {
  const s = setup();
  try {
    await s.journal.watch('v', s.root);
    const name = Buffer.from([0x66, 0xff, 0xfe, 0x2e, 0x74]);
    writeFileSync(Buffer.concat([Buffer.from(join(s.root, 'c') + '/'), name]), 'x');
    const set = await s.journal.take('v');
    assert.deepEqual(set.dirs.find((d) => d.dir === 'c')?.names, [name.toString('latin1')]);
  } finally {
    await s.done();
  }
});

test('too many directories, the root removed, or no root: the set is lost (the caller walks), and stays lost', async () => {
  const s = setup();
  try {
    const info = await s.journal.watch('v', s.root, { maxWatches: 2 });
    assert.match(info.lost ?? '', /more than 2 directories/);
    // out of watches: the ones it had are released at once, not held for a tree it cannot watch whole
    assert.equal(info.exhausted, true);
    assert.equal(info.watches, 0);
    const over = await s.journal.take('v');
    assert.match(over.lost ?? '', /more than 2/);
    assert.equal(over.exhausted, true);
    await s.journal.watch('w', s.root);
    rmSync(s.root, { recursive: true });
    const gone = await s.journal.take('w');
    assert.match(gone.lost ?? '', /root was removed/);
    assert.match((await s.journal.take('w')).lost ?? '', /root was removed/, 'still lost');
    // a root that is not there when the watch starts: lost from the start, not an empty set
    const none = await s.journal.watch('x', join(s.root, 'never-made'));
    assert.match(none.lost ?? '', /could not be watched/);
    assert.match((await s.journal.take('x')).lost ?? '', /could not be watched/);
  } finally {
    await s.done();
  }
});

test('a set put back (its capture failed) is merged into the next take', async () => {
  const s = setup();
  try {
    await s.journal.watch('v', s.root);
    appendFileSync(join(s.root, 'a', 'f'), 'x');
    const first = await s.journal.take('v');
    await s.journal.putBack('v', first);
    appendFileSync(join(s.root, 'c', 'g'), 'y');
    writeFileSync(join(s.root, 'a', 'h'), 'z');
    assert.deepEqual(summary(await s.journal.take('v')), { a: 'list f,h', c: 'g' });
  } finally {
    await s.done();
  }
});
