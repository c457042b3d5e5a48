// What an apply wrote: for each file it put in place, what lstat saw of it once there (size, mtime,
// ctime, inode) and the chunks it was written from. The verification after the apply takes a file
// that still shows exactly that as those chunks without reading it (ReplicaCapture.captureTrees).
//
// Why bounded: the apply of an initialize writes every file of the volume, and a record per file
// held in memory (about 500 bytes each: the object, three bigints, the chunk ids) was the largest
// thing a destination daemon held: 100 MiB live at 200,000 files, half a GiB at a million, and the
// garbage of building it as much again. So at most `limit` files are held; past it they are put in
// the catalog (catalog/secondaries.ts putAppliedFiles, one encoded row per directory and batch, the
// stat cache's encoding) and the verification reads a directory's rows when it comes to it. The rows
// are the running apply's only: they go when an apply starts or ends.
//
// Owns: the record and its bound. Must never: hand the verification a file the apply did not write
// in this run (rows of another apply are dropped first).
import type { Catalog } from '../../catalog/catalog.ts';
import { appliedFilesOf, dropAppliedFiles, putAppliedFiles } from '../../catalog/secondaries.ts';
import { testKnobs } from '../../core/test-knobs.ts';
import { decodeDirCache, encodeDirCache, type CachedFile } from '../../snapshot/stat-cache.ts';

/** Files held in memory before a batch goes to the catalog: about 4 MiB. */
export const WRITTEN_IN_MEMORY = 8192;

/** One member's written files of one directory: name (latin1) -> what lstat saw. */
export type WrittenDir = Map<string, CachedFile>;

export class WrittenFiles {
  readonly #cat: Catalog;
  readonly #volume: string;
  readonly #limit: number;
  /** member -> directory (latin1, '' for the root) -> name -> file, not yet put in the catalog */
  readonly #held = new Map<string, Map<string, WrittenDir>>();
  #heldFiles = 0;
  /** members with rows in the catalog */
  readonly #spilled = new Set<string>();
  /** files recorded, per member */
  readonly #count = new Map<string, number>();

  constructor(cat: Catalog, volume: string, limit = testKnobs().writtenInMemory ?? WRITTEN_IN_MEMORY) {
    this.#cat = cat;
    this.#volume = volume;
    this.#limit = limit;
    dropAppliedFiles(cat, volume);
  }

  /** The apply put file `name` of directory `dir` of `member` in place, and lstat saw `f`. */
  add(member: string, dir: string, name: string, f: CachedFile): void {
    let dirs = this.#held.get(member);
    if (!dirs) this.#held.set(member, (dirs = new Map()));
    let d = dirs.get(dir);
    if (!d) dirs.set(dir, (d = new Map()));
    d.set(name, f);
    this.#count.set(member, (this.#count.get(member) ?? 0) + 1);
    if (++this.#heldFiles >= this.#limit) this.#spill();
  }

  /** How many files the apply wrote into `member`. */
  count(member: string): number {
    return this.#count.get(member) ?? 0;
  }

  /** The files written into directory `dir` (latin1) of `member`, or undefined when none. */
  dir(member: string, dir: string): WrittenDir | undefined {
    const held = this.#held.get(member)?.get(dir);
    if (!this.#spilled.has(member)) return held;
    const rows = appliedFilesOf(this.#cat, this.#volume, member, Buffer.from(dir, 'latin1'));
    if (rows.length === 0) return held;
    // later batches over earlier ones, what is still held over all
    const out: WrittenDir = new Map();
    for (const data of rows) for (const [n, f] of decodeDirCache(data)) out.set(n, f);
    for (const [n, f] of held ?? []) out.set(n, f);
    return out;
  }

  /** The catalog's rows of this record go (the verification is done with it). */
  drop(): void {
    this.#held.clear();
    this.#heldFiles = 0;
    if (this.#spilled.size > 0) dropAppliedFiles(this.#cat, this.#volume);
    this.#spilled.clear();
  }

  #spill(): void {
    const rows: Array<[string, Buffer, Buffer]> = [];
    for (const [member, dirs] of this.#held) {
      for (const [dir, files] of dirs) rows.push([member, Buffer.from(dir, 'latin1'), encodeDirCache([...files].map(([n, f]) => [Buffer.from(n, 'latin1'), f]))]);
      this.#spilled.add(member);
    }
    putAppliedFiles(this.#cat, this.#volume, rows);
    this.#held.clear();
    this.#heldFiles = 0;
  }
}
