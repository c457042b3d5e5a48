// The commit check of a received snapshot (checkSnapshotGraph): before a
// snapshot a peer sent is recorded, every object it names is here and is
// what its parent says it is. What a check found complete is remembered per
// site (KnownComplete, held by the site's replica state: replicas.ts), and
// the snapshot a replica shows is the base of the next check (CompleteBase),
// so an update's check walks what changed, not the whole snapshot.
//
// Owns: the graph walk and its refusals. Must never: take an object as
// present without the store saying so, or trust what it found complete once
// the store has lost objects (its removalEpoch changed, or lost objects are
// still indexed).
import { FerryError, isFerryError } from '../../core/errors.ts';
import { sameIds, type ObjectId } from '../../core/ids.ts';
import type { ObjectReader } from '../../store/types.ts';
import { decodeBlockList, decodeImage, decodeSnapshot } from '../../snapshot/format.ts';
import { decodeDir, decodeTreeObject, dirEntries, nodeEntries, overlappingPage, pageEntriesOf, type DirNode } from '../../snapshot/dir-pages.ts';
import { BLOCKS_PER_LIST, type Tree, type TreeEntry, type TreePage } from '../../snapshot/model.ts';

function sameClaims(a: TreePage | undefined, b: TreePage): boolean {
  return a !== undefined && a.id === b.id && a.count === b.count && a.first.equals(b.first) && a.last.equals(b.last);
}

/**
 * Check a snapshot a peer sent, before anything is applied: every object is
 * present (counted, not thrown: the next attempt sends what is missing); every
 * metadata object decodes (so entry names, targets and limits are valid:
 * format.ts); every file's chunks add up to its size and every image block to
 * its length (apply would fail half-way otherwise); and every hard link points
 * at a file of its member reached through directories only (link(2) follows
 * symlinks in the target's path: `s -> /etc` and a link to `s/passwd` would
 * bring a file from outside into the replica). Anything invalid throws
 * OBJECT_CORRUPT (FORMAT_VERSION for a newer format): resending cannot fix it.
 *
 * Metadata objects are visited once each (trees may share subtrees: a few
 * dozen objects can describe 2^40 paths), iteratively (no recursion depth).
 */
export function checkSnapshotGraph(store: ObjectReader, manifestId: ObjectId, what: string, known?: Complete, base?: CompleteBase): { missing: number; firstMissing?: string; complete: Complete; links: number } {
  let missing = 0;
  let linksFound = 0;
  // Trees and block lists checked here that can be skipped next time (see KnownComplete).
  const complete: Complete = { trees: new Set(), lists: new Map() };
  let firstMissing: string | undefined;
  const refuse = (msg: string, err?: unknown): never => {
    const code = isFerryError(err) && err.code === 'FORMAT_VERSION' ? 'FORMAT_VERSION' : 'OBJECT_CORRUPT';
    throw new FerryError(code, `${what} is refused: ${msg}${err ? `: ${(err as Error).message}` : ''}`, err ? { cause: err } : undefined);
  };
  const lost = (kind: string, id: ObjectId) => {
    missing++;
    firstMissing ??= `${kind} ${id}`;
  };
  /** The decoded object, or undefined when it is missing. */
  const load = <T>(kind: string, id: ObjectId, decode: (b: Buffer) => T): T | undefined => {
    let raw: Buffer;
    try {
      raw = store.get(id);
    } catch (err) {
      if (isFerryError(err) && err.code === 'OBJECT_NOT_FOUND') {
        lost(kind, id);
        return undefined;
      }
      return refuse(`${kind} ${id}`, err);
    }
    try {
      return decode(raw);
    } catch (err) {
      return refuse(`${kind} ${id}`, err);
    }
  };
  /** Raw length of a data object, or undefined when it is missing. */
  const dataLength = (id: ObjectId, where: string): number | undefined => {
    const info = store.info(id);
    if (!info) lost(`chunk of ${where}`, id);
    return info?.rawLength;
  };

  const manifest = load('snapshot', manifestId, decodeSnapshot);
  if (!manifest) return { missing, firstMissing, complete, links: 0 };
  const seen = new Set<string>();
  // pages found holding what an index here said of them
  const claimed = new Map<ObjectId, TreePage>();
  for (const m of manifest.members) {
    if (m.kind === 'image') {
      const img = load('image', m.root, decodeImage);
      if (!img) continue;
      img.lists.forEach((lid, li) => {
        // a list is checked against its place in the image: the same list elsewhere needs its own check
        const place = `${li}/${img.size}/${img.blockSize}`;
        const prevId = known?.lists.get(place);
        if (prevId === lid) return;
        const before = missing;
        const list = load('blocklist', lid, decodeBlockList);
        if (!list) return;
        // A list found complete at this place before (the base's, in an update): its blocks were
        // there with the right lengths, so only the blocks that differ from it are looked up.
        let prev: Array<ObjectId | null> | undefined;
        if (prevId) {
          try {
            prev = decodeBlockList(store.get(prevId)).blocks;
          } catch {
            prev = undefined; // gone or unreadable: check every block
          }
        }
        const blocks = Math.ceil(img.size / img.blockSize);
        const want = li < img.lists.length - 1 ? BLOCKS_PER_LIST : blocks - li * BLOCKS_PER_LIST;
        if (list.blocks.length !== want) refuse(`member ${m.name}: blocklist ${li} has ${list.blocks.length} blocks, the image needs ${want} there`);
        list.blocks.forEach((b, k) => {
          if (!b || (prev && prev[k] === b)) return;
          const off = (li * BLOCKS_PER_LIST + k) * img.blockSize;
          const want = Math.min(img.blockSize, img.size - off);
          const got = dataLength(b, `member ${m.name} block ${li * BLOCKS_PER_LIST + k}`);
          if (got !== undefined && got !== want) refuse(`member ${m.name}: block ${li * BLOCKS_PER_LIST + k} is ${got} bytes, the image needs ${want}`);
        });
        if (missing === before) complete.lists.set(place, lid);
      });
      continue;
    }
    const walked: string[] = [];
    const missingBefore = missing;
    const links = new Set<string>();
    // Beside each tree, the base's tree at the same path (CompleteBase): the same id is complete
    // (nothing below it is looked at), and a file the same as the base's there has its chunks.
    // A page of a paged directory (dir-pages.ts) comes with what its index says of it, which must be
    // what it holds, wherever it is met; the base's pages are checked against the base's index.
    const stack: Array<[ObjectId, ObjectId | undefined, TreePage?]> = [[m.root, base?.roots.get(m.name)]];
    while (stack.length > 0) {
      const [id, baseId, page] = stack.pop()!;
      if (!page && claimed.has(id)) refuse(`member ${m.name}: ${id} is a page of a directory, not a directory`);
      if (id === baseId || seen.has(id) || known?.trees.has(id)) {
        if (page && id !== baseId && !sameClaims(claimed.get(id), page)) {
          const held = load('tree', id, (b) => pageEntriesOf(b, page));
          if (held) claimed.set(id, page);
        }
        continue;
      }
      seen.add(id);
      // (a page is not remembered as complete: a directory elsewhere could name it)
      if (!page) walked.push(id);
      const node = page ? load('tree', id, (b): DirNode => ({ entries: pageEntriesOf(b, page) })) : load('tree', id, decodeDir);
      if (!node) continue;
      if (page) claimed.set(id, page);
      let was: DirNode | undefined;
      if (baseId) {
        try {
          was = decodeTreeObject(store.get(baseId));
        } catch {
          was = undefined; // unreadable here: everything below is checked
        }
      }
      if (node.index) {
        const basePages = was?.index ? new Map(was.index.pages.map((p) => [p.id, p])) : undefined;
        for (const p of node.index.pages) {
          const same = basePages?.get(p.id);
          if (same && !sameClaims(same, p)) refuse(`member ${m.name}: tree index ${id} says page ${p.id} holds ${p.count} entries from ${p.first.toString()} to ${p.last.toString()}, which is not what the base's index says of it`);
          stack.push([p.id, same ? p.id : was?.index ? overlappingPage(was.index, p)?.id : baseId, p]);
        }
        continue;
      }
      let before: Map<string, TreeEntry> | undefined;
      if (was) {
        try {
          before = new Map(nodeEntries(store, was).map((e) => [e.name.toString('latin1'), e]));
        } catch {
          before = undefined;
        }
      }
      for (const e of node.entries) {
        const was = before?.get(e.name.toString('latin1'));
        if (e.type === 'dir') stack.push([e.tree!, was?.type === 'dir' ? was.tree : undefined]);
        else if (e.type === 'hardlink') links.add(e.target!.toString('latin1'));
        else if (e.type === 'file') {
          if (was?.type === 'file' && was.size === e.size && sameIds(was.chunks, e.chunks)) continue;
          let sum = 0;
          let complete = true;
          for (const c of e.chunks!) {
            const n = dataLength(c, `${m.name} file ${e.name.toString()}`);
            if (n === undefined) complete = false;
            else sum += n;
          }
          if (complete && sum !== e.size) refuse(`member ${m.name}: file ${e.name.toString()} in tree ${id} has ${sum} bytes of chunks, its size is ${e.size}`);
        }
      }
    }
    linksFound += links.size;
    if (links.size > 0 && missing === 0) checkLinkTargets(store, m.name, m.root, links, refuse);
    // Only a member without hard links (their targets are checked from the member's root, so a
    // subtree's links are only good where it stands), and only when nothing below was missing.
    if (links.size === 0 && missing === missingBefore) for (const id of walked) complete.trees.add(id);
  }
  return { missing, firstMissing, complete, links: linksFound };
}

/**
 * A snapshot held here whose graph a commit found complete, as the base of the next check: its
 * member roots. Only a snapshot without hard links (a link in a subtree skipped as the base's
 * would not have its target checked again in the new snapshot), and only while the store has lost
 * nothing (the base's objects are then all here: GC keeps what a snapshot row reaches).
 */
export interface CompleteBase {
  roots: Map<string, ObjectId>;
}

/**
 * What a commit check found complete: trees (with everything below them), and the last block list
 * found complete at each place in an image (`index/size/blockSize`: a list is only good where it stands).
 */
export interface Complete {
  trees: Set<string>;
  lists: Map<string, ObjectId>;
}

/**
 * What commits here found complete: the next commit does not walk those trees or lists again (an
 * update's snapshot shares most of its trees with the base), and checks a changed list only where
 * it differs from the one before at its place. Forgotten when the store loses objects (GC, a lost
 * pack: its removalEpoch changes) and while lost objects are indexed; one per site (its replica
 * state, replicas.ts: a site has one store), bounded.
 */
export class KnownComplete implements Complete {
  static readonly MAX = 1_000_000;
  #epoch = -1;
  readonly trees = new Set<string>();
  readonly lists = new Map<string, ObjectId>();

  /** What is known of `store` now: none while it has lost objects; forgotten when it lost any since. */
  for(store: { removalEpoch: number; lostObjectCount(): number }): KnownComplete | undefined {
    const healing = store.lostObjectCount() > 0;
    if (this.#epoch !== store.removalEpoch || healing) this.#clear(store.removalEpoch);
    return healing ? undefined : this;
  }

  add(c: Complete): void {
    if (this.trees.size + c.trees.size + this.lists.size + c.lists.size > KnownComplete.MAX) this.#clear(this.#epoch);
    for (const id of c.trees) this.trees.add(id);
    for (const [place, id] of c.lists) this.lists.set(place, id);
  }

  #clear(epoch: number): void {
    this.trees.clear();
    this.lists.clear();
    this.#epoch = epoch;
  }
}

/** Each member-relative target names a file of the member, through directories only. */
function checkLinkTargets(store: ObjectReader, member: string, root: ObjectId, targets: Set<string>, refuse: (msg: string) => never): void {
  // The directories on the targets' paths, decoded once each: targets share their upper levels. Bounded:
  // at most 256 small trees, and only the last large one.
  const cache = new Map<ObjectId, Tree>();
  let large: { id: ObjectId; tree: Tree } | undefined;
  const tree = (id: ObjectId): Tree => {
    const hit = cache.get(id) ?? (large?.id === id ? large.tree : undefined);
    if (hit) return hit;
    const t = { entries: dirEntries(store, id) };
    if (t.entries.length > 4096) large = { id, tree: t };
    else {
      if (cache.size >= 256) cache.clear();
      cache.set(id, t);
    }
    return t;
  };
  for (const t of targets) {
    const parts = t.split('/').map((c) => Buffer.from(c, 'latin1'));
    let dir = root;
    parts.forEach((name, i) => {
      const entries = tree(dir).entries;
      let lo = 0;
      let hi = entries.length - 1;
      let found: (typeof entries)[number] | undefined;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        const c = Buffer.compare(entries[mid].name, name);
        if (c === 0) {
          found = entries[mid];
          break;
        }
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
      }
      const last = i === parts.length - 1;
      const shown = Buffer.from(t, 'latin1').toString();
      if (!found) refuse(`member ${member}: a hard link points at ${shown}, which is not in the snapshot`);
      if (!last && found.type !== 'dir') refuse(`member ${member}: a hard link points at ${shown}, through ${parts.slice(0, i + 1).map((p) => p.toString()).join('/')}, which is a ${found.type}, not a directory`);
      if (last && found.type !== 'file') refuse(`member ${member}: a hard link points at ${shown}, which is a ${found.type}, not a file`);
      if (!last) dir = found.tree!;
    });
  }
}

