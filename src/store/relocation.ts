// GC's copy path into new packs (see gc.ts, which plans what to copy, and
// PackStore.commitRelocation, which indexes the copies and retires the old packs in one
// transaction). Must never index anything itself: until that commit the old rows point at
// the old packs, which stay on disk.
import type { Clock } from '../core/clock.ts';
import { FerryError } from '../core/errors.ts';
import { objectIdToBytes, type ObjectId } from '../core/ids.ts';
import type { PackSink, SealedPack } from './pack-files.ts';
import type { Codec } from './types.ts';

/**
 * GC's copy path: live objects are appended to new packs with no dedup (their
 * rows already exist); the new packs are sealed but indexed only by
 * PackStore.commitRelocation, in the transaction that retires the old packs.
 */
export class Relocation {
  #sink: PackSink;
  /** tells the store the sink is no longer its to recover */
  #forget: (sink: PackSink) => void;
  #clock: Clock;
  #sealed: SealedPack[] = [];
  #finished = false;

  constructor(sink: PackSink, clock: Clock, forget: (sink: PackSink) => void) {
    this.#sink = sink;
    this.#forget = forget;
    this.#clock = clock;
  }

  /** Appends a verified object's stored bytes, to be moved from `fromPack`. */
  copy(obj: { id: ObjectId; kindCode: number; codec: Codec; rawLength: number; stored: Uint8Array; fromPack: number }): void {
    if (this.#finished) throw new FerryError('INTERNAL', 'relocation already finished');
    this.#sink.append(
      { id: obj.id, idBytes: objectIdToBytes(obj.id), kindCode: obj.kindCode, codec: obj.codec, rawLength: obj.rawLength, storedLength: obj.stored.length, fromPack: obj.fromPack },
      obj.stored,
    );
    if (this.#sink.full) this.#seal();
  }

  #seal(): void {
    const s = this.#sink.seal(this.#clock.now());
    if (s) this.#sealed.push(s);
  }

  get copied(): number {
    return this.#sealed.reduce((n, s) => n + s.entries.length, 0) + this.#sink.count;
  }

  /** Seals the last pack: every copy is now durable (not yet indexed). */
  finish(): SealedPack[] {
    if (!this.#finished) {
      this.#seal();
      this.#finished = true;
    }
    return this.#sealed;
  }

  /** Removes every pack this relocation wrote; for failures before the commit. */
  abandon(): void {
    this.#sink.abandon(this.#sealed);
    this.#sealed = [];
    this.#finished = true;
    this.#forget(this.#sink);
  }

  /** Forgets the packs without removing them (a simulated crash); recover() deletes them. */
  drop(): void {
    this.#sink.drop();
    this.#finished = true;
    this.#forget(this.#sink);
  }

  /** @internal */
  get sink(): PackSink {
    return this.#sink;
  }
}
