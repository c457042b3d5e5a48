// Paged directories (src/snapshot/dir-pages.ts, format-index.ts): the paging
// rule, the index format and its checks, and the page-skipping diff, against
// an in-memory store.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { isFerryError } from '../../../src/core/errors.ts';
import type { ObjectId } from '../../../src/core/ids.ts';
import type { ObjectInfo } from '../../../src/store/types.ts';
import { NO_TEST_KNOBS, installTestKnobs, testKnobs } from '../../../src/core/test-knobs.ts';
import { decodeTreeIndex, encodeTree, encodeTreeIndex } from '../../../src/snapshot/format.ts';
import { PAGE_DIR_MIN, PAGE_MAX, decodeTreeObject, dirDiffEntries, dirEntries, overlappingPage, pageCuts, pageEntries, pageHasHardlinks, pageOf, putDir, putEditedDir, readDir } from '../../../src/snapshot/dir-pages.ts';
import { treeHasHardlinks } from '../../../src/snapshot/graph.ts';
import { diffTrees, sameTreeContent } from '../../../src/snapshot/diff.ts';
import type { TreeEntry, TreeIndex } from '../../../src/snapshot/model.ts';

// These tests are about the default rule: a run with every directory paged (FERRY_TEST_TREE_PAGE_MIN,
// test/harness/env-knobs.ts) does not change it here; pagedFrom sets the knob where a test wants it.
installTestKnobs(NO_TEST_KNOBS);

/** Run `fn` (synchronous) with directories paged from `min` entries on, as FERRY_TEST_TREE_PAGE_MIN does. */
function pagedFrom<T>(min: number, fn: () => T): T {
  const before = testKnobs();
  installTestKnobs(Object.freeze({ ...NO_TEST_KNOBS, treePageMin: min }));
  try {
    return fn();
  } finally {
    installTestKnobs(before);
  }
}

class Mem {
  readonly objects = new Map<ObjectId, Buffer>();
  puts = 0;
  put = (raw: Buffer): ObjectId => {
    const id = createHash('sha256').update(raw).digest('hex') as ObjectId;
    this.puts++;
    this.objects.set(id, Buffer.from(raw));
    return id;
  };
  get = (id: ObjectId): Buffer => {
    const b = this.objects.get(id);
    if (!b) throw new Error(`no object ${id}`);
    return b;
  };
  has = (id: ObjectId) => this.objects.has(id);
  info = (_id: ObjectId): ObjectInfo | undefined => undefined; // no chunk is stored: the diff counts none of their bytes
}

const chunk = (n: number): ObjectId => createHash('sha256').update(`chunk ${n}`).digest('hex') as ObjectId;

function file(name: string, v = 0): TreeEntry {
  return { name: Buffer.from(name), type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: BigInt(v), size: 1, xattrs: [], chunks: [chunk(v)] };
}

function dir(n: number, v = 0): TreeEntry[] {
  const out: TreeEntry[] = [];
  for (let i = 0; i < n; i++) out.push(file(`f${String(i).padStart(6, '0')}`, v));
  return out;
}

const corrupt = (re?: RegExp) => (err: unknown) => {
  assert.ok(isFerryError(err, 'OBJECT_CORRUPT'), `expected OBJECT_CORRUPT, got ${String(err)}`);
  if (re) assert.match(err.message, re);
  return true;
};

describe('paging rule', () => {
  test('a directory up to PAGE_DIR_MIN entries is one tree object; a larger one an index of pages', () => {
    const s = new Mem();
    const small = putDir(s.put, dir(PAGE_DIR_MIN));
    assert.equal(readDir(s, small).entries?.length, PAGE_DIR_MIN);
    const large = putDir(s.put, dir(1000));
    const node = readDir(s, large);
    assert.ok(node.index, 'a 1000-entry directory is paged');
    assert.equal(node.index.count, 1000);
    assert.ok(node.index.pages.length >= 4 && node.index.pages.length <= 60, `${node.index.pages.length} pages`);
    assert.ok(node.index.pages.every((p) => p.count <= PAGE_MAX));
    assert.deepEqual(dirEntries(s, large).map((e) => e.name.toString()), dir(1000).map((e) => e.name.toString()));
  });

  test('the same entries always make the same id (both sites page alike)', () => {
    const a = new Mem();
    const b = new Mem();
    assert.equal(putDir(a.put, dir(3000)), putDir(b.put, dir(3000)));
  });

  test('a changed entry changes its own page and the index only', () => {
    const s = new Mem();
    const before = dir(2000);
    const ia = readDir(s, putDir(s.put, before)).index!;
    const after = before.map((e, i) => (i === 777 ? file(e.name.toString(), 9) : e));
    const ib = readDir(s, putDir(s.put, after)).index!;
    const old = new Set(ia.pages.map((p) => p.id));
    assert.equal(ib.pages.filter((p) => !old.has(p.id)).length, 1);
    assert.equal(ib.pages.length, ia.pages.length);
  });

  test('an entry added or removed changes at most its page and a neighbour', () => {
    const s = new Mem();
    const before = dir(2000);
    const ia = readDir(s, putDir(s.put, before)).index!;
    const old = new Set(ia.pages.map((p) => p.id));
    for (const k of [0, 500, 1999]) {
      const removed = before.filter((_, i) => i !== k);
      const ir = readDir(s, putDir(s.put, removed)).index!;
      assert.ok(ir.pages.filter((p) => !old.has(p.id)).length <= 2, `removing entry ${k}`);
      const added = [...before.slice(0, k + 1), file(`f${String(k).padStart(6, "0")}x`), ...before.slice(k + 1)];
      const ia2 = readDir(s, putDir(s.put, added)).index!;
      assert.ok(ia2.pages.filter((p) => !old.has(p.id)).length <= 2, `adding after entry ${k}`);
    }
  });

  test('a run of names with no boundary is cut at PAGE_MAX', () => {
    const cuts = pageCuts(dir(5000), { min: 0, mask: 0xffff_ffff, max: PAGE_MAX });
    assert.deepEqual(cuts, [1024, 2048, 3072, 4096, 5000]);
  });

  test('the test knob pages small directories (so small test trees exercise pages)', () => {
    pagedFrom(2, () => {
      const s = new Mem();
      const node = readDir(s, putDir(s.put, dir(20)));
      assert.ok(node.index && node.index.pages.length >= 2);
      assert.ok(node.index.pages.every((p) => p.count <= 8));
    });
  });
});

describe('tree index format', () => {
  const s = new Mem();
  const idx = readDir(s, putDir(s.put, dir(1500))).index!;

  test('round trip', () => {
    const bytes = encodeTreeIndex(idx);
    assert.deepEqual(encodeTreeIndex(decodeTreeIndex(bytes)), bytes);
  });

  test('bad indexes are refused: order, overlap, counts, one page, trailing bytes', () => {
    const p = idx.pages;
    const bad: Array<[string, TreeIndex, RegExp]> = [
      ['one page', { count: p[0].count, pages: [p[0]] }, /pages, not 2/],
      ['out of order', { count: idx.count, pages: [p[1], p[0], ...p.slice(2)] }, /not after the last name/],
      ['count', { count: idx.count + 1, pages: p }, /the pages hold/],
      ['first after last', { count: idx.count, pages: [{ ...p[0], first: p[0].last, last: p[0].first }, ...p.slice(1)] }, /runs from/],
      ['overlap', { count: idx.count, pages: [{ ...p[0], last: p[1].first }, ...p.slice(1)] }, /not after the last name/],
    ];
    for (const [what, x, re] of bad) assert.throws(() => encodeTreeIndex(x), corrupt(re), what);
    // the decoder makes the same checks: a count one off (its low bit flipped)
    const bytes = encodeTreeIndex(idx);
    const off = Buffer.from(bytes);
    off[5] ^= 1;
    assert.throws(() => decodeTreeIndex(off), corrupt(/the pages hold/));
    assert.throws(() => decodeTreeIndex(Buffer.concat([bytes, Buffer.from([0])])), corrupt(/trailing/));
    assert.throws(() => decodeTreeIndex(bytes.subarray(0, bytes.length - 3)), corrupt());
  });

  test('a page that is not what its index says is refused when read', () => {
    const st = new Mem();
    const root = putDir(st.put, dir(1200));
    const x = readDir(st, root).index!;
    // swap the first page's object for the second's: the claims no longer hold
    const lying: TreeIndex = { count: x.count, pages: x.pages.map((p, i) => (i === 0 ? { ...p, id: x.pages[1].id } : p)) };
    const liar = st.put(encodeTreeIndex(lying));
    assert.throws(() => dirEntries(st, liar), corrupt(/the index says/));
    // a directory's tree object in a page's place is refused (a page is its own kind)
    const leaf = st.put(encodeTree({ entries: dir(3) }));
    const wrongKind: TreeIndex = { count: x.count, pages: x.pages.map((p, i) => (i === 0 ? { ...p, id: leaf } : p)) };
    assert.throws(() => dirEntries(st, st.put(encodeTreeIndex(wrongKind))), corrupt(/expected a treepage/));
    // and a page is not a directory
    assert.throws(() => dirEntries(st, x.pages[0].id), corrupt(/expected a tree object/));
    assert.equal(decodeTreeObject(st.get(x.pages[0].id)).page, true);
  });
});

describe('page-skipping diff', () => {
  test('reads only the pages that differ, and gives the same changes as a full diff', () => {
    const s = new Mem();
    const before = dir(3000);
    const after = before.map((e, i) => (i === 1234 ? file(e.name.toString(), 5) : e));
    const a = putDir(s.put, before);
    const b = putDir(s.put, after);
    const [ea, eb] = dirDiffEntries(s, a, b);
    assert.ok(ea.length <= PAGE_MAX && ea.length < 300, `${ea.length} entries read of 3000`);
    assert.equal(ea.length, eb.length);
    const changes: string[] = [];
    diffTrees(s, a, b, (c) => changes.push(`${c.change} ${c.path}`));
    assert.deepEqual(changes, ['modified f001234']);
  });

  test('random edits: the diff over pages equals the diff over whole lists (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 600 }), fc.array(fc.tuple(fc.integer({ min: 0, max: 699 }), fc.constantFrom('del', 'mod', 'add')), { maxLength: 30 }), (n, edits) => {
        pagedFrom(4, () => {
          const s = new Mem();
          const before = dir(n);
          const m = new Map(before.map((e) => [e.name.toString(), e]));
          for (const [k, op] of edits) {
            const name = `f${String(k).padStart(6, '0')}`;
            if (op === 'del') m.delete(name);
            else if (op === 'mod' && m.has(name)) m.set(name, file(name, k + 1));
            else if (op === 'add') m.set(`${name}a`, file(`${name}a`, k));
          }
          const after = [...m.values()].sort((x, y) => Buffer.compare(x.name, y.name));
          const a = putDir(s.put, before);
          const b = putDir(s.put, after);
          const got: string[] = [];
          diffTrees(s, a, b, (c) => got.push(`${c.change} ${c.path}`));
          // the expected diff, from the two lists whole
          const want: string[] = [];
          const wa = new Map(before.map((e) => [e.name.toString(), e]));
          const all = [...new Set([...wa.keys(), ...m.keys()])].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
          for (const k of all) {
            const x = wa.get(k);
            const y = m.get(k);
            if (!x) want.push(`added ${k}`);
            else if (!y) want.push(`removed ${k}`);
            else if (x.mtimeNs !== y.mtimeNs) want.push(`modified ${k}`);
          }
          assert.deepEqual(got, want);
          assert.equal(sameTreeContent(s, a, b), want.length === 0);
          assert.deepEqual(dirEntries(s, b).map((e) => e.name.toString()), after.map((e) => e.name.toString()));
        });
      }),
      { numRuns: 150 },
    );
  });

  test('a directory paged and the same one stored whole have the same content', () => {
    const s = new Mem();
    const whole = s.put(encodeTree({ entries: dir(1000) }));
    const paged = putDir(s.put, dir(1000));
    assert.notEqual(whole, paged);
    assert.equal(sameTreeContent(s, whole, paged), true);
    assert.equal(sameTreeContent(s, whole, putDir(s.put, dir(1001))), false);
  });

  test('overlappingPage finds the base page a changed page replaced', () => {
    const s = new Mem();
    const before = dir(2000);
    const ia = readDir(s, putDir(s.put, before)).index!;
    const ib = readDir(s, putDir(s.put, before.map((e, i) => (i === 999 ? file(e.name.toString(), 3) : e)))).index!;
    const old = new Set(ia.pages.map((p) => p.id));
    const changed = ib.pages.find((p) => !old.has(p.id))!;
    const q = overlappingPage(ia, changed)!;
    assert.ok(q.first.equals(changed.first) && q.last.equals(changed.last));
    assert.equal(overlappingPage(ia, { ...changed, first: Buffer.from('zz0'), last: Buffer.from('zz9') }), undefined);
  });
});

describe('editing a paged directory page by page', () => {
  test('the id is the one the whole list makes, whatever the edits (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 3, max: 300 }), fc.array(fc.tuple(fc.integer({ min: 0, max: 399 }), fc.constantFrom('del', 'mod', 'add')), { maxLength: 40 }), (n, ops) => {
        pagedFrom(4, () => {
          const s = new Mem();
          const before = dir(n);
          const root = putDir(s.put, before);
          const x = readDir(s, root).index;
          if (!x) return;
          // the edits, page by page, as a journaled capture makes them
          const edits = new Map<number, Map<string, TreeEntry | null>>();
          const want = new Map(before.map((e) => [e.name.toString(), e]));
          for (const [k, op] of ops) {
            const name = op === 'add' ? `f${String(k).padStart(6, '0')}b` : `f${String(k).padStart(6, '0')}`;
            const i = pageOf(x, Buffer.from(name));
            const page = edits.get(i) ?? new Map();
            edits.set(i, page);
            if (op === 'del') {
              page.set(name, null);
              want.delete(name);
            } else if (op === 'add' || want.has(name)) {
              const e = file(name, k + 7);
              page.set(name, e);
              want.set(name, e);
            }
          }
          const lists = new Map<number, TreeEntry[]>();
          for (const [i, page] of edits) {
            const m = new Map(pageEntries(s, x.pages[i]).map((e) => [e.name.toString(), e as TreeEntry | null]));
            for (const [k, v] of page) m.set(k, v);
            lists.set(i, [...m.values()].filter((e): e is TreeEntry => e !== null).sort((a, b) => Buffer.compare(a.name, b.name)));
          }
          const whole = [...want.values()].sort((a, b) => Buffer.compare(a.name, b.name));
          if (lists.size === 0) return;
          assert.equal(putEditedDir(s, s.put, x, lists), putDir(s.put, whole));
        });
      }),
      { numRuns: 300 },
    );
  });

  test('an edit of one page reads no other page (cuts arrive where they were)', () => {
    const s = new Mem();
    const before = dir(5000);
    const x = readDir(s, putDir(s.put, before)).index!;
    const i = pageOf(x, Buffer.from('f002500'));
    const edited = pageEntries(s, x.pages[i]).map((e) => (e.name.toString() === 'f002500' ? file('f002500', 99) : e));
    let reads = 0;
    const counting = { get: (id: ObjectId) => (reads++, s.get(id)) };
    const id = putEditedDir(counting, s.put, x, new Map([[i, edited]]));
    assert.equal(reads, 0);
    assert.equal(id, putDir(s.put, before.map((e) => (e.name.toString() === 'f002500' ? file('f002500', 99) : e))));
  });
});

test('the look for hard links reads a changed paged directory\'s index and nothing else: pages made or read once are remembered', () => {
  const s = new Mem();
  const reads: ObjectId[] = [];
  const counting = { get: (id: ObjectId) => (reads.push(id), s.get(id)), has: s.has, info: s.info };
  // 1,000 files (named for this test: the memory is per page id, for the whole process)
  const list = dir(1000, 4242);
  const a = putDir(s.put, list);
  assert.ok(readDir(s, a).index, 'paged');
  assert.equal(treeHasHardlinks(counting, a), false);
  assert.deepEqual(reads, [a], 'its pages were noted as they were made: only the index is read');
  // one page edited: the new index is read, not one page
  reads.length = 0;
  const x = readDir(s, a).index!;
  const i = pageOf(x, Buffer.from('f000500'));
  const edited = pageEntries(s, x.pages[i]).map((e) => (e.name.toString() === 'f000500' ? file('f000500', 4243) : e));
  const b = putEditedDir(s, s.put, x, new Map([[i, edited]]));
  reads.length = 0;
  assert.equal(treeHasHardlinks(counting, b), false);
  assert.deepEqual(reads, [b]);
  // pages never seen (encoded here, not by putDir): each read once, then remembered; a link two levels
  // down, under a directory entry of one page, is found
  const sub = s.put(encodeTree({ entries: [{ ...file('target', 4244) }, { name: Buffer.from('zlink'), type: 'hardlink', mode: 0o644, uid: 0, gid: 0, mtimeNs: 0n, size: 0, xattrs: [], target: Buffer.from('d/target') }] }));
  const entries = [...dir(300, 4245), { name: Buffer.from('z-sub'), type: 'dir' as const, mode: 0o755, uid: 0, gid: 0, mtimeNs: 0n, size: 0, xattrs: [], tree: sub }];
  const cut = 150;
  const pages = [entries.slice(0, cut), entries.slice(cut)].map((run) => ({ id: s.put(encodeTree({ entries: run }, 'treepage')), count: run.length, first: run[0].name, last: run[run.length - 1].name }));
  const c = s.put(encodeTreeIndex({ count: entries.length, pages }));
  reads.length = 0;
  assert.equal(treeHasHardlinks(counting, c), true);
  assert.deepEqual(reads.sort(), [c, pages[0].id, pages[1].id, sub].sort());
  reads.length = 0;
  assert.equal(treeHasHardlinks(counting, c), true);
  assert.equal(pageHasHardlinks(counting, pages[0]), false);
  assert.equal(pageHasHardlinks(counting, pages[1]), false, 'the link is below the page, not in it');
  assert.deepEqual(reads, []);
});
