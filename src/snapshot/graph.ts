// Walking the object graph of snapshots: snapshot -> members -> trees ->
// chunks, images -> blocklists -> blocks. Shared subtrees (same id) are
// visited once, which is what makes marking and verifying cheap when
// snapshots share most of their content.
import type { ObjectId } from '../core/ids.ts';
import type { ObjectKind, ObjectReader } from '../store/types.ts';
import { decodeBlockList, decodeImage, decodeSnapshot } from './format.ts';
import { dirEntries, knownPageKinds, PAGE_DIRS, PAGE_LINK, pageEntries, pageKinds, readDir } from './dir-pages.ts';
import type { SnapshotManifest, TreeEntry, TreePage } from './model.ts';
import { pathToText } from './path-text.ts';

export interface VisitedObject {
  id: ObjectId;
  kind: ObjectKind;
  /** member-relative path of the file or directory this object belongs to ('' = member root) */
  member: string;
  path: string;
}

export interface GraphVisitor {
  /** return false to skip descending (e.g. already seen) */
  enter(o: VisitedObject): boolean;
  /** a child object could not be read (missing or corrupt); the walk continues */
  broken?(o: VisitedObject, err: unknown): void;
  /** after every object `enter` returned true for (its children visited, or `broken` called) */
  exit?(o: VisitedObject): void;
}

export function readManifest(store: ObjectReader, id: ObjectId): SnapshotManifest {
  return decodeSnapshot(store.get(id));
}

/** Visit every object of one snapshot. Metadata objects are read (verified); chunks and blocks are only reported. */
export function walkSnapshot(store: ObjectReader, manifestId: ObjectId, v: GraphVisitor): void {
  const top: VisitedObject = { id: manifestId, kind: 'snapshot', member: '', path: '' };
  if (!v.enter(top)) return;
  let m: SnapshotManifest;
  try {
    m = readManifest(store, manifestId);
  } catch (err) {
    v.broken?.(top, err);
    v.exit?.(top);
    return;
  }
  for (const mem of m.members) {
    if (mem.kind === 'tree') walkTree(store, mem.root, mem.name, '', v);
    else walkImage(store, mem.root, mem.name, v);
  }
  v.exit?.(top);
}

function walkTree(store: ObjectReader, id: ObjectId, member: string, path: string, v: GraphVisitor): void {
  const me: VisitedObject = { id, kind: 'tree', member, path };
  if (!v.enter(me)) return;
  let node;
  try {
    node = readDir(store, id);
  } catch (err) {
    v.broken?.(me, err);
    v.exit?.(me);
    return;
  }
  const entries = (list: TreeEntry[]) => {
    for (const e of list) {
      const p = path ? `${path}/${pathToText(e.name)}` : pathToText(e.name);
      if (e.type === 'dir' && e.tree) walkTree(store, e.tree, member, p, v);
      else if (e.type === 'file' && e.chunks) for (const c of e.chunks) v.enter({ id: c, kind: 'chunk', member, path: p });
    }
  };
  if (node.entries) entries(node.entries);
  else {
    // a paged directory: each page is an object of its own (dir-pages.ts), visited once like a tree
    for (const page of node.index.pages) {
      // named by the entries it holds (what a damaged page hides), in its directory
      const po: VisitedObject = { id: page.id, kind: 'tree', member, path: `${path ? `${path}/` : ''}${pathToText(page.first)} .. ${pathToText(page.last)}` };
      if (!v.enter(po)) continue;
      let list;
      try {
        list = pageEntries(store, page);
      } catch (err) {
        v.broken?.(po, err);
        v.exit?.(po);
        continue;
      }
      entries(list);
      v.exit?.(po);
    }
  }
  v.exit?.(me);
}

function walkImage(store: ObjectReader, id: ObjectId, member: string, v: GraphVisitor): void {
  const me: VisitedObject = { id, kind: 'image', member, path: '' };
  if (!v.enter(me)) return;
  let img;
  try {
    img = decodeImage(store.get(id));
  } catch (err) {
    v.broken?.(me, err);
    v.exit?.(me);
    return;
  }
  img.lists.forEach((lid, li) => {
    const lo: VisitedObject = { id: lid, kind: 'blocklist', member, path: `blocks ${li * 4096}-` };
    if (!v.enter(lo)) return;
    let list;
    try {
      list = decodeBlockList(store.get(lid));
    } catch (err) {
      v.broken?.(lo, err);
      v.exit?.(lo);
      return;
    }
    list.blocks.forEach((b, bi) => {
      if (b) v.enter({ id: b, kind: 'chunk', member, path: `block ${li * 4096 + bi} (offset ${(li * 4096 + bi) * img.blockSize})` });
    });
    v.exit?.(lo);
  });
  v.exit?.(me);
}

/** The set of every object id reachable from the given snapshots. */
export function markLive(store: ObjectReader, manifests: ObjectId[]): Set<string> {
  const live = new Set<string>();
  for (const m of manifests) {
    walkSnapshot(store, m, {
      enter(o) {
        if (live.has(o.id)) return false;
        live.add(o.id);
        return true;
      },
      broken(o, err) {
        // A missing metadata object means its children cannot be marked: refusing is
        // the only safe answer, or GC would delete what the snapshot still needs.
        throw Object.assign(new Error(`cannot mark ${o.kind} ${o.id}: ${(err as Error).message}`), { cause: err });
      },
    });
  }
  return live;
}

/**
 * Whether any hard link entry lies in or below tree `id`. A tree's id names its content, so the
 * answer never changes: it is remembered (bounded), and a walk after an update decodes only the
 * trees that are new since the last one (the apply's look for links to replaced files: apply.ts).
 */
export function treeHasHardlinks(store: ObjectReader, id: ObjectId): boolean {
  const known = linksMemo.get(id);
  if (known !== undefined) return known;
  // A paged directory is looked at page by page, and a page the same way: a changed directory of a
  // thousand entries reads only its changed page (the others are remembered, pageKinds).
  const n = readDir(store, id);
  const found = n.entries ? entriesHaveLinks(store, n.entries) : n.index.pages.some((p) => pageHasLinksBelow(store, p));
  remember(id, found);
  return found;
}

function pageHasLinksBelow(store: ObjectReader, p: TreePage): boolean {
  const known = linksMemo.get(p.id);
  if (known !== undefined) return known;
  // a page not seen yet is read once: reading it notes its kinds
  let entries = knownPageKinds(p.id) === undefined ? pageEntries(store, p) : undefined;
  const kinds = pageKinds(store, p);
  if (kinds & PAGE_LINK) return true;
  if (!(kinds & PAGE_DIRS)) return false;
  entries ??= pageEntries(store, p);
  const found = entriesHaveLinks(store, entries);
  remember(p.id, found);
  return found;
}

function entriesHaveLinks(store: ObjectReader, entries: readonly TreeEntry[]): boolean {
  for (const e of entries) if (e.type === 'hardlink' || (e.type === 'dir' && treeHasHardlinks(store, e.tree!))) return true;
  return false;
}

function remember(id: ObjectId, found: boolean): void {
  if (linksMemo.size >= LINKS_MEMO_MAX) linksMemo.clear();
  linksMemo.set(id, found);
}

/** Trees and pages remembered by treeHasHardlinks: about 100 bytes each. */
const LINKS_MEMO_MAX = 200_000;
const linksMemo = new Map<ObjectId, boolean>();
