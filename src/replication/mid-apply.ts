// What a replica caught in the middle of an apply holds that the apply did
// not put there. An apply brings a replica from F (what it held when the
// apply started) to T entry by entry; a crash, a cancellation or a failed
// verification leaves it part way: each entry as in F or as in T, or one of
// the apply's temporaries beside its target, or a large file it was
// patching in place, half and half (in-place.ts: judged by its journal record
// and its bytes, through the caller's OwnWork). Anything else (a file F and T
// both lack, content or metadata neither has) was written by someone else
// meanwhile, and must be kept in a snapshot before the replica is changed
// again (receive/replica-capture.ts). What is absent needs no keeping: F and T are held.
//
// Directory metadata is not compared: the apply sets it after the
// directory's children (a new directory is created 0700 first), so part way
// it matches neither side. Pure: reads trees and block lists, writes nothing.
import type { ObjectId } from '../core/ids.ts';
import type { ObjectReader } from '../store/types.ts';
import { metaDiff } from '../snapshot/diff.ts';
import { decodeBlockList, decodeImage } from '../snapshot/format.ts';
import { dirEntries } from '../snapshot/dir-pages.ts';
import { BLOCKS_PER_LIST, type TreeEntry } from '../snapshot/model.ts';
import { isApplyTemporary } from './apply.ts';

const SLASH = Buffer.from('/');

/**
 * Paths (member-relative, at most `limit`) of tree `now` that are neither as in tree `from` nor as in
 * tree `to` (either may be null: empty). Empty when `now` holds only the apply's own work.
 */
export function foreignTreePaths(store: ObjectReader, now: ObjectId, from: ObjectId | null, to: ObjectId | null, limit = 5, own?: OwnWork): string[] {
  const out: string[] = [];
  walk(store, now, from, to, '', Buffer.alloc(0), out, limit, own);
  return out;
}

/**
 * A file the apply patched in place (in-place.ts) is half old, half new when the apply was cut: this
 * says, from its journal record and its bytes, whether a file that is neither side's is such a file
 * holding only the apply's own work. `rel`: its member-relative path (raw bytes).
 */
export type OwnWork = (rel: Buffer) => boolean;

function entries(store: ObjectReader, id: ObjectId | null): Map<string, TreeEntry> {
  const m = new Map<string, TreeEntry>();
  if (id) for (const e of dirEntries(store, id)) m.set(e.name.toString('latin1'), e);
  return m;
}

function walk(store: ObjectReader, now: ObjectId, from: ObjectId | null, to: ObjectId | null, prefix: string, raw: Buffer, out: string[], limit: number, own: OwnWork | undefined): void {
  if (now === from || now === to) return;
  const f = entries(store, from);
  const t = entries(store, to);
  for (const e of dirEntries(store, now)) {
    if (out.length >= limit) return;
    if (isApplyTemporary(e.name)) continue;
    const key = e.name.toString('latin1');
    const path = prefix + e.name.toString('utf8');
    const rawPath = raw.length ? Buffer.concat([raw, SLASH, e.name]) : e.name;
    const fe = f.get(key);
    const te = t.get(key);
    if (e.type === 'dir') {
      const ft = fe?.type === 'dir' ? fe.tree! : null;
      const tt = te?.type === 'dir' ? te.tree! : null;
      if (ft === null && tt === null) out.push(`${path}/`);
      else walk(store, e.tree!, ft, tt, `${path}/`, rawPath, out, limit, own);
      continue;
    }
    if ((fe && metaDiff(fe, e).length === 0) || (te && metaDiff(te, e).length === 0)) continue;
    if (e.type === 'file' && fe?.type === 'file' && te?.type === 'file' && own?.(rawPath)) continue;
    out.push(path);
  }
}

/**
 * Blocks of image `now` that are neither as in image `from` nor as in image `to` (either may be
 * null), at most `limit` block numbers; a size neither has counts as block -1. An all-zero block (a
 * hole) where a side has no block (no image, or a shorter one) is that side's: the apply sizes the
 * image first, and what it has not written yet reads as zeros.
 */
export function foreignImageBlocks(store: ObjectReader, now: ObjectId, from: ObjectId | null, to: ObjectId | null, limit = 5): number[] {
  if (now === from || now === to) return [];
  const n = decodeImage(store.get(now));
  const sides = [from, to].filter((x): x is ObjectId => x !== null).map((id) => decodeImage(store.get(id))).filter((x) => x.blockSize === n.blockSize);
  if (!sides.some((x) => x.size === n.size)) return [-1];
  const blocksIn = (x: { size: number; blockSize: number }) => Math.ceil(x.size / x.blockSize);
  const out: number[] = [];
  const lists = new Map<ObjectId, Array<ObjectId | null>>();
  const blocksOf = (id: ObjectId) => {
    let b = lists.get(id);
    if (!b) lists.set(id, (b = decodeBlockList(store.get(id)).blocks));
    return b;
  };
  for (let li = 0; li < n.lists.length && out.length < limit; li++) {
    const mine = n.lists[li];
    if (sides.some((x) => x.lists[li] === mine)) continue;
    const blocks = blocksOf(mine);
    const theirs = sides.filter((x) => x.lists[li] !== undefined).map((x) => blocksOf(x.lists[li]));
    for (let k = 0; k < blocks.length && out.length < limit; k++) {
      const no = li * BLOCKS_PER_LIST + k;
      if (theirs.some((b) => k < b.length && b[k] === blocks[k])) continue;
      if (blocks[k] === null && (from === null || sides.some((x) => no >= blocksIn(x)))) continue;
      out.push(no);
    }
  }
  return out;
}
