// What releasing a snapshot would free, estimated cheaply: its objects that the snapshot kept
// next to it does not name, found by walking the two side by side and skipping every subtree,
// image and block list they share (so the cost is what changed between them, not the volume).
// The automatic collection (site/auto-collect.ts) adds these up and collects once they are worth
// a full mark of the store (docs/store.md, "When garbage is collected").
//
// An estimate, not a promise: an object the released snapshot shares only with a third snapshot,
// or with an unchanged part of the kept one, is counted although it stays, and an object shared
// by two released snapshots is counted once for each. A wrong estimate only moves the next
// collection earlier or later; what a collection frees is decided by its own mark.
import type { ObjectId } from '../core/ids.ts';
import { recordLength } from '../store/pack.ts';
import type { ObjectReader } from '../store/types.ts';
import { decodeBlockList, decodeImage } from './format.ts';
import { decodeDir, pageEntriesOf, type DirNode } from './dir-pages.ts';
import { readManifest } from './graph.ts';
import type { SnapshotManifest, TreeEntry } from './model.ts';

/**
 * Bytes in the store (whole records) of the objects snapshot `released` (a manifest id) names and
 * `kept` (a manifest id; null: none) does not, as far as their differences show. An object not
 * in the store counts nothing; a manifest that cannot be read counts as having no members.
 */
export function releasableBytes(store: ObjectReader, released: ObjectId, kept: ObjectId | null): number {
  const gone = new Set<ObjectId>();
  const stays = new Set<ObjectId>();
  gone.add(released);
  const a = manifestOrNull(store, released);
  const b = kept ? manifestOrNull(store, kept) : null;
  const walk = new PairWalk(store, gone, stays);
  for (const m of a?.members ?? []) {
    const other = b?.members.find((x) => x.name === m.name && x.kind === m.kind);
    if (m.kind === 'tree') walk.trees(m.root, other?.root ?? null);
    else walk.images(m.root, other?.root ?? null);
  }
  let bytes = 0;
  for (const id of gone) {
    if (stays.has(id)) continue;
    const info = store.info(id);
    if (info) bytes += recordLength(info.storedLength);
  }
  return bytes;
}

function manifestOrNull(store: ObjectReader, id: ObjectId): SnapshotManifest | null {
  try {
    return readManifest(store, id);
  } catch {
    return null;
  }
}

/** Objects of the released side's differing parts (`gone`) and of the kept side's (`stays`). */
class PairWalk {
  readonly #store: ObjectReader;
  readonly #gone: Set<ObjectId>;
  readonly #stays: Set<ObjectId>;

  constructor(store: ObjectReader, gone: Set<ObjectId>, stays: Set<ObjectId>) {
    this.#store = store;
    this.#gone = gone;
    this.#stays = stays;
  }

  trees(a: ObjectId, b: ObjectId | null): void {
    if (a === b) return;
    // pages both sides share hold the same entries (dir-pages.ts): neither counted nor read
    const na = this.#read(a, this.#gone, decodeDir);
    const nb = b ? this.#read(b, this.#stays, decodeDir) : undefined;
    const common = new Set<ObjectId>();
    if (na?.index && nb?.index) {
      const inA = new Set(na.index.pages.map((p) => p.id));
      for (const p of nb.index.pages) if (inA.has(p.id)) common.add(p.id);
    }
    const ea = this.#nodeEntries(na, this.#gone, common);
    const eb = this.#nodeEntries(nb, this.#stays, common);
    let i = 0;
    let j = 0;
    while (i < ea.length || j < eb.length) {
      const cmp = i >= ea.length ? 1 : j >= eb.length ? -1 : Buffer.compare(ea[i].name, eb[j].name);
      if (cmp < 0) this.#whole(ea[i++], this.#gone);
      else if (cmp > 0) this.#whole(eb[j++], this.#stays);
      else {
        const x = ea[i++];
        const y = eb[j++];
        if (x.type === 'dir' && y.type === 'dir') {
          if (x.tree && y.tree) this.trees(x.tree, y.tree);
          continue;
        }
        if (sameChunks(x, y)) continue;
        this.#whole(x, this.#gone);
        this.#whole(y, this.#stays);
      }
    }
  }

  images(a: ObjectId, b: ObjectId | null): void {
    if (a === b) return;
    const ia = this.#read(a, this.#gone, decodeImage);
    const ib = b ? this.#read(b, this.#stays, decodeImage) : undefined;
    if (!ia) return;
    ia.lists.forEach((la, li) => {
      const lb = ib?.lists[li];
      if (la === lb) return;
      this.#blocks(la, this.#gone);
      if (lb) this.#blocks(lb, this.#stays);
    });
  }

  #blocks(list: ObjectId, into: Set<ObjectId>): void {
    for (const block of this.#read(list, into, decodeBlockList)?.blocks ?? []) if (block) into.add(block);
  }

  /** An entry and everything below it. */
  #whole(e: TreeEntry, into: Set<ObjectId>): void {
    if (e.type === 'file') for (const c of e.chunks ?? []) into.add(c);
    else if (e.type === 'dir' && e.tree) for (const child of this.#entries(e.tree, into)) this.#whole(child, into);
  }

  #entries(tree: ObjectId, into: Set<ObjectId>): TreeEntry[] {
    return this.#nodeEntries(this.#read(tree, into, decodeDir), into, new Set());
  }

  /** The entries of a directory read (its pages counted and read, but for `skip`). */
  #nodeEntries(node: DirNode | undefined, into: Set<ObjectId>, skip: Set<ObjectId>): TreeEntry[] {
    if (!node) return [];
    if (node.entries) return node.entries;
    const out: TreeEntry[] = [];
    for (const p of node.index.pages) {
      if (skip.has(p.id)) continue;
      for (const e of this.#read(p.id, into, (bytes) => pageEntriesOf(bytes, p)) ?? []) out.push(e);
    }
    return out;
  }

  /** Counts the object and decodes it; undefined when it cannot be read (an estimate goes on without it). */
  #read<T>(id: ObjectId, into: Set<ObjectId>, decode: (bytes: Uint8Array) => T): T | undefined {
    into.add(id);
    try {
      return decode(this.#store.get(id));
    } catch {
      return undefined;
    }
  }
}

function sameChunks(x: TreeEntry, y: TreeEntry): boolean {
  if (x.type !== y.type) return false;
  const cx = x.chunks ?? [];
  const cy = y.chunks ?? [];
  return cx.length === cy.length && cx.every((c, k) => c === cy[k]);
}
