// Tree index objects: a large directory as a list of pages (format.ts
// re-exports them; docs/formats.md, "Tree index"). Each page is a 'treepage'
// object (the tree encoding under its own magic) holding a run of the
// directory's sorted entries; the index names each page with its entry
// count and its first and last names, so the pages' ranges can be checked
// against one another without reading them, and a lookup or a diff reads
// only the pages it needs. Which entries go together is dir-pages.ts's
// business; this module only encodes and checks.
import { FerryError } from '../core/errors.ts';
import { HASH_BYTES, type ObjectId } from '../core/ids.ts';
import { type TreeIndex, type TreePage } from './model.ts';
import { MAX_NAME_BYTES, MAX_TREE_ENTRIES, HEADER_BYTES, entryNameProblem, fail, showBytes, varintSize, writeVarint, writeHeader, writeBytes, writeId, isObjectId, isNonNegInt, Reader } from './format-core.ts';

/** An index names at least two pages (one page would be a plain tree) and at most this many. */
export const MAX_INDEX_PAGES = 1_000_000;

/** Check the index's invariants (shared by encoder and decoder); returns the encoded size. */
function checkIndex(ctx: string, x: TreeIndex, checkIds: boolean): number {
  if (x === null || typeof x !== 'object' || !Array.isArray(x.pages)) fail(ctx, 'pages is not an array');
  const pages = x.pages;
  if (pages.length < 2 || pages.length > MAX_INDEX_PAGES) fail(ctx, `${pages.length} pages, not 2..${MAX_INDEX_PAGES}`);
  if (!isNonNegInt(x.count, MAX_TREE_ENTRIES)) fail(ctx, `entry count ${x.count} is not an integer in 0..${MAX_TREE_ENTRIES}`);
  let n = HEADER_BYTES + varintSize(x.count) + varintSize(pages.length);
  let sum = 0;
  let prev: Buffer | null = null;
  for (let i = 0; i < pages.length; i++) {
    const p = pages[i];
    if (p === null || typeof p !== 'object') fail(ctx, `page ${i} is not an object`);
    if (checkIds && !isObjectId(p.id)) fail(ctx, `page ${i} id is not an object id`);
    if (!isNonNegInt(p.count, MAX_TREE_ENTRIES) || p.count === 0) fail(ctx, `page ${i} count ${p.count} is not an integer in 1..${MAX_TREE_ENTRIES}`);
    for (const [what, name] of [['first', p.first], ['last', p.last]] as const) {
      const why = entryNameProblem(name);
      if (why !== null) fail(ctx, `page ${i} ${what} name is invalid: ${why}`);
    }
    const c = Buffer.compare(p.first, p.last);
    if (p.count === 1 ? c !== 0 : c >= 0) fail(ctx, `page ${i} of ${p.count} entries runs from ${showBytes(p.first)} to ${showBytes(p.last)}`);
    if (prev !== null && Buffer.compare(prev, p.first) >= 0) fail(ctx, `page ${i} starts at ${showBytes(p.first)}, not after the last name of page ${i - 1} (${showBytes(prev)})`);
    prev = p.last;
    sum += p.count;
    n += HASH_BYTES + varintSize(p.count) + varintSize(p.first.length) + p.first.length + varintSize(p.last.length) + p.last.length;
  }
  if (sum !== x.count) fail(ctx, `the pages hold ${sum} entries, the index says ${x.count}`);
  return n;
}

export function encodeTreeIndex(x: TreeIndex): Buffer {
  const size = checkIndex('cannot encode treeindex', x, true);
  const buf = Buffer.allocUnsafe(size);
  let p = writeHeader(buf, 'treeindex');
  p = writeVarint(buf, p, x.count);
  p = writeVarint(buf, p, x.pages.length);
  for (const page of x.pages) {
    p = writeId(buf, p, page.id);
    p = writeVarint(buf, p, page.count);
    p = writeBytes(buf, p, page.first);
    p = writeBytes(buf, p, page.last);
  }
  if (p !== size) throw new FerryError('INTERNAL', `treeindex encoding size mismatch: computed ${size}, wrote ${p}`);
  return buf;
}

/** Decode a tree index; its names are views into a private copy of `bytes`. */
export function decodeTreeIndex(bytes: Uint8Array): TreeIndex {
  const r: Reader = new Reader(bytes, 'treeindex', true);
  r.header('treeindex');
  const count = r.varint('entry count');
  const n = r.varint('page count');
  if (n < 2 || n > MAX_INDEX_PAGES) r.fail(`${n} pages, not 2..${MAX_INDEX_PAGES}`);
  // smallest page: id, 1-byte count, two 1-byte names with their lengths
  if (n * (HASH_BYTES + 5) > r.left) r.fail(`truncated: ${n} pages cannot fit in ${r.left} bytes`);
  const pages: TreePage[] = [];
  for (let i = 0; i < n; i++) {
    const id: ObjectId = r.id('page id');
    const c = r.varint('page entry count');
    const first = r.lenBytes(MAX_NAME_BYTES, 'first name');
    const last = r.lenBytes(MAX_NAME_BYTES, 'last name');
    pages.push({ id, count: c, first, last });
  }
  r.done();
  const x: TreeIndex = { count, pages };
  checkIndex(r.ctx, x, false);
  return x;
}
