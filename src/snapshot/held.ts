// The walk's bound on what it holds for directories already walked whose
// tree still waits on a file being read (capture.ts). Such a directory holds
// a record and a stat cache row for every entry until its last file is
// chunked; a walk that outruns the chunk workers (a full walk where one file
// in each directory changed: one in a thousand, at a million files) would
// otherwise hold the whole volume's records at once (965 MiB in the CLI's
// snapshot at a million files). Past the bound the walk starts no new
// directory until held ones are done; the workers go on with the files
// queued meanwhile, so they do not idle.
//
// Owns: the count of entries held and the directories holding them. Must
// never: wait on a directory whose tree depends on the walk going on (only
// directories whose walk is finished are held), nor on work the walk keeps
// in a batch of its own: `beforeWait` sends that out first (the walk reads
// extended attributes in batches it flushes only as it goes: xattrs.ts).

/** Entries held before the walk waits: about 750 bytes each (a record, its stat cache row), so ~24 MiB. */
export const HELD_MAX = 32_768;

export class HeldEntries {
  #held = 0;
  #peak = 0;
  readonly #max: number;
  readonly #onHeld: ((entries: number) => void) | undefined;
  readonly #holding = new Set<Promise<void>>();
  readonly #beforeWait: () => void;

  constructor(beforeWait: () => void, max = HELD_MAX, onHeld?: (entries: number) => void) {
    this.#beforeWait = beforeWait;
    this.#max = max;
    this.#onHeld = onHeld;
  }

  /** the most entries held at once */
  get peak(): number {
    return this.#peak;
  }

  /** A walked directory holds `entries` until `tree` settles (either way). */
  hold(tree: Promise<unknown>, entries: number): void {
    this.#held += entries;
    if (this.#held > this.#peak) this.#peak = this.#held;
    this.#onHeld?.(this.#held);
    const done: Promise<void> = tree.then(
      () => this.#drop(done, entries),
      () => this.#drop(done, entries),
    );
    this.#holding.add(done);
  }

  #drop(p: Promise<void>, entries: number): void {
    this.#held -= entries;
    this.#holding.delete(p);
  }

  /** Resolves once the walk may start another directory: held entries at or under the bound. */
  async room(): Promise<void> {
    while (this.#held > this.#max && this.#holding.size > 0) {
      this.#beforeWait();
      await Promise.race(this.#holding);
    }
  }
}
