// Diff two snapshots of a member from their Merkle trees alone: equal
// subtree ids are skipped without being read, file data is never read
// (chunk lists and sizes from the index tell what changed).
import type { ObjectId } from '../core/ids.ts';
import type { ObjectReader } from '../store/types.ts';
import { decodeBlockList, decodeImage } from './format.ts';
import { dirDiffEntries, dirEntries } from './dir-pages.ts';
import { BLOCKS_PER_LIST, type TreeEntry } from './model.ts';
import { pathToText } from './path-text.ts';

export type ChangeKind = 'added' | 'removed' | 'modified';

export interface PathChange {
  change: ChangeKind;
  /** member-relative, as text (path-text.ts: names that are not UTF-8 spelled with \\xHH) */
  path: string;
  type: TreeEntry['type'];
  /** what differs, for 'modified': content, type, mode, owner, mtime, target, xattrs */
  what?: string[];
  /** file size after (added/modified) or before (removed) */
  size: number;
  /** bytes of content that are new in B (added/modified files: sum of chunks B has and A's entry has not) */
  bytesChanged: number;
}

export interface DiffSummary {
  added: number;
  removed: number;
  modified: number;
  bytesAdded: number;
  bytesRemoved: number;
  bytesChanged: number;
}

export interface ImageDiff {
  blockSize: number;
  sizeBefore: number;
  sizeAfter: number;
  changedBlocks: number;
  changedBytes: number;
  /** changed byte ranges [offset, length], merged, in location order */
  ranges: Array<[number, number]>;
}

function chunkLen(store: ObjectReader, id: ObjectId): number {
  return store.info(id)?.rawLength ?? 0;
}

/** What differs between two entries of the same path (empty: nothing): content, type, mode, owner, mtime, target, xattrs, device. */
export function metaDiff(a: TreeEntry, b: TreeEntry): string[] {
  const what: string[] = [];
  if (a.type !== b.type) return ['type'];
  if (a.type === 'file') {
    const ca = a.chunks ?? [];
    const cb = b.chunks ?? [];
    if (a.size !== b.size || ca.length !== cb.length || ca.some((c, i) => c !== cb[i])) what.push('content');
  }
  if ((a.type === 'symlink' || a.type === 'hardlink') && !a.target!.equals(b.target!)) what.push('target');
  if (a.type === 'dir' && a.tree !== b.tree) what.push('content');
  if ((a.rdev ?? 0) !== (b.rdev ?? 0)) what.push('device');
  if (a.mode !== b.mode) what.push('mode');
  if (a.uid !== b.uid || a.gid !== b.gid) what.push('owner');
  if (a.mtimeNs !== b.mtimeNs) what.push('mtime');
  if (a.xattrs.length !== b.xattrs.length || a.xattrs.some(([n, v], i) => !n.equals(b.xattrs[i][0]) || !v.equals(b.xattrs[i][1]))) what.push('xattrs');
  return what;
}

/** Every change between two trees, in path order. `emit` sees each change as found (no need to hold them all). */
export function diffTrees(store: ObjectReader, a: ObjectId | null, b: ObjectId | null, emit: (c: PathChange) => void, prefix = ''): DiffSummary {
  const sum: DiffSummary = { added: 0, removed: 0, modified: 0, bytesAdded: 0, bytesRemoved: 0, bytesChanged: 0 };
  const out = (c: PathChange) => {
    if (c.change === 'added') {
      sum.added++;
      sum.bytesAdded += c.bytesChanged;
    } else if (c.change === 'removed') {
      sum.removed++;
      sum.bytesRemoved += c.size;
    } else {
      sum.modified++;
      sum.bytesChanged += c.bytesChanged;
    }
    emit(c);
  };
  walk(store, a, b, prefix, out);
  return sum;
}

function walk(store: ObjectReader, a: ObjectId | null, b: ObjectId | null, prefix: string, out: (c: PathChange) => void): void {
  if (a === b) return;
  const [ea, eb] = dirDiffEntries(store, a, b);
  let i = 0;
  let j = 0;
  while (i < ea.length || j < eb.length) {
    const cmp = i >= ea.length ? 1 : j >= eb.length ? -1 : Buffer.compare(ea[i].name, eb[j].name);
    if (cmp < 0) {
      whole(store, ea[i++], prefix, 'removed', out);
    } else if (cmp > 0) {
      whole(store, eb[j++], prefix, 'added', out);
    } else {
      const x = ea[i++];
      const y = eb[j++];
      const path = prefix + pathToText(x.name);
      if (x.type === 'dir' && y.type === 'dir') {
        const what = metaDiff(x, y).filter((w) => w !== 'content');
        if (what.length) out({ change: 'modified', path, type: 'dir', what, size: 0, bytesChanged: 0 });
        walk(store, x.tree!, y.tree!, path + '/', out);
        continue;
      }
      if (x.type !== y.type) {
        whole(store, x, prefix, 'removed', out);
        whole(store, y, prefix, 'added', out);
        continue;
      }
      const what = metaDiff(x, y);
      if (what.length === 0) continue;
      let bytesChanged = 0;
      if (what.includes('content')) {
        const old = new Set(x.chunks ?? []);
        for (const c of y.chunks ?? []) if (!old.has(c)) bytesChanged += chunkLen(store, c);
      }
      out({ change: 'modified', path, type: y.type, what, size: y.size, bytesChanged });
    }
  }
}

function whole(store: ObjectReader, e: TreeEntry, prefix: string, change: 'added' | 'removed', out: (c: PathChange) => void): void {
  const path = prefix + pathToText(e.name);
  out({ change, path, type: e.type, size: e.size, bytesChanged: change === 'added' ? e.size : 0 });
  if (e.type === 'dir') {
    for (const child of dirEntries(store, e.tree!)) whole(store, child, path + '/', change, out);
  }
}

/** Changed blocks between two image manifests, skipping equal blocklists unread. */
export function diffImages(store: ObjectReader, a: ObjectId | null, b: ObjectId): ImageDiff {
  const ib = decodeImage(store.get(b));
  const ia = a ? decodeImage(store.get(a)) : null;
  const res: ImageDiff = { blockSize: ib.blockSize, sizeBefore: ia?.size ?? 0, sizeAfter: ib.size, changedBlocks: 0, changedBytes: 0, ranges: [] };
  const comparable = ia && ia.blockSize === ib.blockSize;
  const nBlocks = Math.ceil(ib.size / ib.blockSize);
  for (let li = 0; li < ib.lists.length; li++) {
    const lb = ib.lists[li];
    const la = comparable ? ia.lists[li] : undefined;
    if (la === lb) continue;
    const bb = decodeBlockList(store.get(lb)).blocks;
    const ba = la ? decodeBlockList(store.get(la)).blocks : [];
    for (let k = 0; k < bb.length; k++) {
      const blockNo = li * BLOCKS_PER_LIST + k;
      if (blockNo >= nBlocks) break;
      const before = k < ba.length ? ba[k] : undefined;
      if (before !== undefined && before === bb[k]) continue;
      const off = blockNo * ib.blockSize;
      const len = Math.min(ib.blockSize, ib.size - off);
      res.changedBlocks++;
      res.changedBytes += len;
      const last = res.ranges[res.ranges.length - 1];
      if (last && last[0] + last[1] === off) last[1] += len;
      else res.ranges.push([off, len]);
    }
  }
  return res;
}

const DIFFERS = Symbol('differs');

/**
 * Whether two trees hold the same entries, however each directory is stored: a directory may be
 * one tree object or paged (dir-pages.ts), and a tree captured before paging existed, or kept from
 * a parent capture, has another id than the same directory captured now. Stops at the first change.
 */
export function sameTreeContent(store: ObjectReader, a: ObjectId, b: ObjectId): boolean {
  if (a === b) return true;
  try {
    walk(store, a, b, '', () => {
      throw DIFFERS;
    });
  } catch (err) {
    if (err === DIFFERS) return false;
    throw err;
  }
  return true;
}
