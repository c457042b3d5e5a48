// Directories as stored objects: a directory of up to PAGE_DIR_MIN entries
// is one 'tree' object; a larger one is a 'treeindex' naming 'treepage'
// objects, each a run of its sorted entries (format-index.ts). Pages are cut
// after an entry whose name hashes to a boundary (about one name in
// PAGE_AVG), or after PAGE_MAX entries since the last cut: the cuts depend
// on the names alone (the FastCDC idea applied to the entry list, as in
// prolly trees), so a changed entry changes its own page and the index, and
// every other page keeps its id. Both sites page the same way (the rule is
// part of the format: it decides tree ids, which the verification of a
// replica compares), and everything that reads a directory reads it here.
//
// Owns: the paging rule, and reading a directory whatever its form. Must
// never: hand out entries of a page whose content differs from what its
// index says of it (count, first and last name): the page-skipping diff
// and lookups rely on those ranges.
import { FerryError } from '../core/errors.ts';
import type { ObjectId } from '../core/ids.ts';
import { testKnobs } from '../core/test-knobs.ts';
import type { ObjectReader } from '../store/types.ts';
import { decodeTree, decodeTreeIndex, encodeTree, encodeTreeIndex } from './format.ts';
import { MAGIC } from './format-core.ts';
import type { TreeEntry, TreeIndex, TreePage } from './model.ts';

/** A directory with more entries than this is paged. */
export const PAGE_DIR_MIN = 256;
/** About one name in this many ends a page (a power of two). */
export const PAGE_AVG = 64;
/** A page never holds more entries than this. */
export const PAGE_MAX = 1024;

interface PageRule {
  min: number;
  mask: number;
  max: number;
}

function rule(): PageRule {
  const t = testKnobs().treePageMin;
  return t === undefined ? { min: PAGE_DIR_MIN, mask: PAGE_AVG - 1, max: PAGE_MAX } : { min: t, mask: 1, max: 8 };
}

/** Whether a page ends after the entry named `name` (FNV-1a, then murmur3's finalizer). */
function boundary(name: Uint8Array, mask: number): boolean {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name[i], 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h & mask) === 0;
}

/** Where the sorted `entries` of a directory are cut into pages: each page's end (exclusive). */
export function pageCuts(entries: readonly TreeEntry[], r: PageRule = rule()): number[] {
  const cuts: number[] = [];
  let since = 0;
  for (let i = 0; i < entries.length; i++) {
    since++;
    if (since >= r.max || boundary(entries[i].name, r.mask)) {
      cuts.push(i + 1);
      since = 0;
    }
  }
  if (since > 0) cuts.push(entries.length);
  return cuts;
}

/**
 * How a directory was stored (putDir, putEditedDir): `pages` of its index, and which of them were
 * made now (the others stand from before); null when it is one tree object.
 */
export type Paging = { pages: TreePage[]; made: Set<number> } | null;

/**
 * Store a directory of sorted `entries` (the encoders check them) and return its id: one tree
 * object, or its pages and their index (told to `onPaging`).
 */
export function putDir(put: (raw: Buffer) => ObjectId, entries: TreeEntry[], onPaging?: (p: Paging) => void): ObjectId {
  const r = rule();
  const cuts = entries.length > r.min ? pageCuts(entries, r) : [];
  if (cuts.length < 2) {
    onPaging?.(null);
    return put(encodeTree({ entries }));
  }
  const pages: TreePage[] = [];
  let from = 0;
  for (const to of cuts) {
    const run = entries.slice(from, to);
    const id = put(encodeTree({ entries: run }, 'treepage'));
    notePage(id, run);
    pages.push({ id, count: run.length, first: run[0].name, last: run[run.length - 1].name });
    from = to;
  }
  onPaging?.({ pages, made: new Set(pages.keys()) });
  return put(encodeTreeIndex({ count: entries.length, pages }));
}

/** A directory object as read: its entries, or its index. */
export type DirNode = { entries: TreeEntry[]; index?: undefined } | { entries?: undefined; index: TreeIndex };

const INDEX_MAGIC = Buffer.from(MAGIC.treeindex, 'latin1');

/** Decode a directory object (a tree or a tree index; a page is not a directory). */
export function decodeDir(bytes: Uint8Array): DirNode {
  if (bytes.length >= 4 && INDEX_MAGIC.equals(bytes.subarray(0, 4))) return { index: decodeTreeIndex(bytes) };
  return { entries: decodeTree(bytes).entries };
}

const PAGE_MAGIC = Buffer.from(MAGIC.treepage, 'latin1');

/** Decode any object stored as kind 'tree': a directory (tree or index) or a page (`page` true). */
export function decodeTreeObject(bytes: Uint8Array): DirNode & { page?: boolean } {
  if (bytes.length >= 4 && PAGE_MAGIC.equals(bytes.subarray(0, 4))) return { entries: decodeTree(bytes, 'treepage').entries, page: true };
  return decodeDir(bytes);
}

/** Read directory `id` from the store. */
export function readDir(store: Pick<ObjectReader, 'get'>, id: ObjectId): DirNode {
  return decodeDir(store.get(id));
}

/** What a page holds must be what its index says: its count, first and last names. */
export function checkPage(p: TreePage, entries: TreeEntry[]): TreeEntry[] {
  const n = entries.length;
  if (n !== p.count || !entries[0].name.equals(p.first) || !entries[n - 1].name.equals(p.last)) {
    throw new FerryError('OBJECT_CORRUPT', `corrupt treeindex: page ${p.id} holds ${n} entries from ${entries[0]?.name.toString('latin1')} to ${entries[n - 1]?.name.toString('latin1')}, the index says ${p.count} from ${p.first.toString('latin1')} to ${p.last.toString('latin1')}`);
  }
  notePage(p.id, entries);
  return entries;
}

/** The entries of one page, checked against its index. */
export function pageEntries(store: Pick<ObjectReader, 'get'>, p: TreePage): TreeEntry[] {
  return checkPage(p, decodeTree(store.get(p.id), 'treepage').entries);
}

/** The entries of one page from its bytes, checked against its index. */
export function pageEntriesOf(bytes: Uint8Array, p: TreePage): TreeEntry[] {
  return checkPage(p, decodeTree(bytes, 'treepage').entries);
}

/** Every entry of a directory node, in order (its pages read from the store). */
export function nodeEntries(store: Pick<ObjectReader, 'get'>, n: DirNode): TreeEntry[] {
  if (n.entries) return n.entries;
  const out: TreeEntry[] = [];
  for (const p of n.index.pages) for (const e of pageEntries(store, p)) out.push(e);
  return out;
}

/** Every entry of directory `id`, in order. */
export function dirEntries(store: Pick<ObjectReader, 'get'>, id: ObjectId): TreeEntry[] {
  return nodeEntries(store, readDir(store, id));
}

/**
 * The entries of directories `a` (null: none) and `b` that can differ, in order: pages the two
 * share hold the same entries in both (a name is in one page of each), so they are left out of
 * both lists, unread. A merge of the two lists is then the diff of the directories.
 */
export function dirDiffEntries(store: Pick<ObjectReader, 'get'>, a: ObjectId | null, b: ObjectId | null): [TreeEntry[], TreeEntry[]] {
  if (a === b) return [[], []];
  const na = a ? readDir(store, a) : null;
  const nb = b ? readDir(store, b) : null;
  if (na?.index && nb?.index) {
    const inA = new Set(na.index.pages.map((p) => p.id));
    const common = new Set(nb.index.pages.filter((p) => inA.has(p.id)).map((p) => p.id));
    const only = (x: TreeIndex) => {
      const out: TreeEntry[] = [];
      for (const p of x.pages) if (!common.has(p.id)) for (const e of pageEntries(store, p)) out.push(e);
      return out;
    };
    return [only(na.index), only(nb.index)];
  }
  return [na ? nodeEntries(store, na) : [], nb ? nodeEntries(store, nb) : []];
}

/**
 * The page of `base` whose names overlap those of page `p` (the page it most likely replaced), or
 * undefined. For a diff against the base (the sender's and the commit check's: files the same as
 * the base's are skipped); an entry that moved to another page is only treated as new.
 */
export function overlappingPage(base: TreeIndex, p: TreePage): TreePage | undefined {
  const pages = base.pages;
  let lo = 0;
  let hi = pages.length - 1;
  // the first base page whose last name is not below p.first
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (Buffer.compare(pages[mid].last, p.first) < 0) lo = mid + 1;
    else hi = mid;
  }
  const q = pages[lo];
  return q && Buffer.compare(q.last, p.first) >= 0 && Buffer.compare(q.first, p.last) <= 0 ? q : undefined;
}

/** The page of `x` where an entry named `name` is, or would go if it were added. */
export function pageOf(x: TreeIndex, name: Uint8Array): number {
  // the last page whose first name is not after `name` (the first page for a name before all)
  let lo = 0;
  let hi = x.pages.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (Buffer.compare(x.pages[mid].first, name) <= 0) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/**
 * Store paged directory `x` with the pages at the indexes of `edits` holding the entries given
 * there instead (sorted, each within the names its page may hold: pageOf; possibly none), and
 * return its id: the same object putDir would make of the whole list, reading only the pages a
 * change reaches. Cuts depend only on the entries since the last cut, so the pages before the
 * first edit stand, and a page after it stands when the cuts arrive at its start.
 */
export function putEditedDir(store: Pick<ObjectReader, 'get'>, put: (raw: Buffer) => ObjectId, x: TreeIndex, edits: Map<number, TreeEntry[]>, onPaging?: (p: Paging) => void): ObjectId {
  const r = rule();
  let count = x.count;
  for (const [i, list] of edits) count += list.length - x.pages[i].count;
  const first = Math.min(...edits.keys());
  if (count <= r.min) {
    // small enough to be one tree object again: read it whole
    const all: TreeEntry[] = [];
    x.pages.forEach((p, i) => all.push(...(edits.get(i) ?? pageEntries(store, p))));
    return putDir(put, all, onPaging);
  }
  const pages: TreePage[] = x.pages.slice(0, first);
  let run: TreeEntry[] = [];
  let made: { id: ObjectId; entries: TreeEntry[] } | undefined; // the last page made here
  const fresh = new Set<number>();
  const cut = () => {
    const id = put(encodeTree({ entries: run }, 'treepage'));
    notePage(id, run);
    fresh.add(pages.length);
    pages.push({ id, count: run.length, first: run[0].name, last: run[run.length - 1].name });
    made = { id, entries: run };
    run = [];
  };
  for (let i = first; i < x.pages.length; i++) {
    const edited = edits.get(i);
    if (edited === undefined && run.length === 0) {
      pages.push(x.pages[i]);
      continue;
    }
    for (const e of edited ?? pageEntries(store, x.pages[i])) {
      run.push(e);
      if (run.length >= r.max || boundary(e.name, r.mask)) cut();
    }
  }
  if (run.length > 0) cut();
  if (pages.length >= 2) {
    onPaging?.({ pages, made: fresh });
    return put(encodeTreeIndex({ count, pages }));
  }
  // one page left: a plain tree object, as putDir makes of a list with no cut inside
  onPaging?.(null);
  return put(encodeTree({ entries: made?.id === pages[0].id ? made.entries : pageEntries(store, pages[0]) }));
}

/** pageKinds: the page holds a hard link entry. */
export const PAGE_LINK = 1;
/** pageKinds: the page holds a directory entry. */
export const PAGE_DIRS = 2;

/**
 * What page `p` holds besides files and symlinks (PAGE_LINK, PAGE_DIRS), remembered per page id
 * (bounded; a page's id names its content). Every page made or decoded is noted on the way
 * (checkPage, putDir, putEditedDir), so a look for hard links reads only pages never seen: a
 * journaled capture and the apply's look for links ask it of every page of a changed directory.
 */
export function pageKinds(store: Pick<ObjectReader, 'get'>, p: TreePage): number {
  const known = pageKindsMemo.get(p.id);
  if (known !== undefined) return known;
  pageEntries(store, p); // decoding notes it (checkPage)
  return pageKindsMemo.get(p.id)!;
}

/** What page `id` holds, if it is remembered. */
export function knownPageKinds(id: ObjectId): number | undefined {
  return pageKindsMemo.get(id);
}

/** Whether page `p` holds a hard link entry. */
export function pageHasHardlinks(store: Pick<ObjectReader, 'get'>, p: TreePage): boolean {
  return (pageKinds(store, p) & PAGE_LINK) !== 0;
}

function notePage(id: ObjectId, entries: readonly TreeEntry[]): number {
  let kinds = 0;
  for (const e of entries) kinds |= e.type === 'hardlink' ? PAGE_LINK : e.type === 'dir' ? PAGE_DIRS : 0;
  if (pageKindsMemo.size >= PAGE_KINDS_MAX) pageKindsMemo.clear();
  pageKindsMemo.set(id, kinds);
  return kinds;
}

/** Pages remembered by pageKinds: about 100 bytes each (16,000 pages at a million files in 1,000 directories). */
const PAGE_KINDS_MAX = 200_000;
const pageKindsMemo = new Map<ObjectId, number>();
