// A writer's run over the object store, refused once a failed write has discarded what the
// run relied on (see the class comment). Must never let a run store more after a discard.
import { FerryError } from '../core/errors.ts';
import type { ObjectId } from '../core/ids.ts';
import type { SharedIndexRef } from './index-probe.ts';
import type { PackStore } from './pack-store.ts';
import type { ObjectKind, PreparedObject } from './types.ts';

/**
 * One writer's run over the store (a capture, one request of an incoming
 * transfer): the store's writes, refused once a failed write has discarded
 * the objects pending in the open pack (PackStore.discardEpoch), whoever
 * made it. A writer relies on what it stored, and on what it found pending
 * and skipped, being kept: what it writes next may stand above those objects
 * (a tree above its chunks), so after a discard nothing more of its run may
 * be stored. `check()` after the run's flush says whether anything it relied
 * on was discarded after its last write.
 */
export class WriteSession {
  readonly #store: PackStore;
  readonly #epoch: number;

  constructor(store: PackStore) {
    this.#store = store;
    this.#epoch = store.discardEpoch;
  }

  has(id: ObjectId): boolean {
    return this.#store.has(id);
  }

  put(kind: ObjectKind, raw: Uint8Array): { id: ObjectId; added: boolean } {
    this.check();
    return this.#store.put(kind, raw);
  }

  putPrepared(obj: PreparedObject, options?: { trusted?: boolean }): boolean {
    this.check();
    return this.#store.putPrepared(obj, options);
  }

  putRecord(record: Uint8Array, options: { trusted: true; absentAt?: number }): { id: ObjectId; added: boolean } {
    this.check();
    return this.#store.putRecord(record, options);
  }

  sharedIndex(): SharedIndexRef | undefined {
    return this.#store.sharedIndex();
  }

  get commitEpoch(): number {
    return this.#store.commitEpoch;
  }

  /** Throws (the failure's code: NO_SPACE, IO) when pending objects were discarded since this session began. */
  check(): void {
    if (this.#store.discardEpoch === this.#epoch) return;
    const cause = this.#store.lastDiscard;
    throw new FerryError(
      cause?.code ?? 'IO',
      `objects written since this began were discarded when a write to the store failed (${cause?.message ?? 'a write failed'}); nothing more of it was stored`,
      { cause, details: { discarded: true } },
    );
  }
}
