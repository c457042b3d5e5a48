// The early stream of a replication without a delta base (an initialize):
// while the capture of the target snapshot runs, the chunks it newly stores
// already go to the destination, so that when the capture ends most of them
// are there, and the negotiation (sender.ts), which asks the destination what
// it lacks, sends only the rest: trees, the manifest, and whatever the early
// stream missed.
//
// Owns: a queue of chunk ids (fed by the store's onAdded observer), batches
// cut by bytes, one `missing` question per batch (a resumed initialize does
// not resend what arrived), one put at a time (the next batch's question is
// asked meanwhile), pacing by the mirror's token bucket, and its own
// statistics.
//
// Must never: send a tree, image, block list or manifest. The negotiation
// skips a subtree the destination already holds, so metadata may arrive only
// after everything below it; a tree the capture stored does not even mean its
// chunks were queued here (a chunk already in the store is deduplicated, not
// stored again). Chunks have no such order: they are safe in any order.
// Must never throw into its caller nor leave a rejection unhandled: it is an
// optimisation, so any failure (peer unreachable, hello refused, a cut put)
// stops it, is recorded in its stats, and the update goes on as if it had
// not run. Must never run on after finish() or stop() has returned.
import { FerryError, isFerryError } from '../core/errors.ts';
import type { ObjectId } from '../core/ids.ts';
import type { ObjectKind, PreparedObject } from '../store/types.ts';
import { MAX_IDS_PER_QUERY } from './protocol.ts';
import type { TransferProgress } from './sender.ts';
import type { TokenBucket } from './token-bucket.ts';
import type { Receiver } from './types.ts';

/** What the early stream needs of the store: the stored form of an object (pending in the open pack or indexed). */
export interface EarlyStore {
  readStored(id: ObjectId, opts?: { crcOnly?: boolean }): { codec: number; rawLength: number; stored: Buffer };
}

export interface EarlySendOptions {
  /** Connect to the destination and say hello; called once, when the first batch is ready. */
  open: (signal: AbortSignal) => Promise<Receiver>;
  /** the volume's name at the destination */
  volume: string;
  /** the update's signal: aborting it stops the stream */
  signal?: AbortSignal;
  limiter?: TokenBucket;
  onProgress?: (p: TransferProgress) => void;
  /** bytes per put request (each one a pack made durable at the receiver); default 16 MiB */
  batchBytes?: number;
  /** with no put in flight, a batch goes once this much is queued; default 4 MiB */
  minBatchBytes?: number;
  /** the newest chunk bytes not sent (see EARLY_HOLD_BACK_BYTES); default 4 MiB */
  holdBackBytes?: number;
}

export interface EarlyStats {
  /** chunks the capture stored while the stream listened */
  objectsQueued: number;
  /** ids asked about (the destination already had the others) */
  objectsOffered: number;
  objectsSent: number;
  /** stored bytes sent (what crossed the wire, as sender.ts counts it) */
  bytesSent: number;
  rawBytesSent: number;
  roundTrips: number;
  batches: number;
  /** seconds with a put or question in flight (they overlap the capture) */
  seconds: number;
  /** why the stream stopped early (it was only an optimisation: the update went on) */
  error?: { code: string; message: string };
}

const MiB = 1024 * 1024;
export const EARLY_BATCH_BYTES = 16 * MiB;
export const EARLY_MIN_BATCH_BYTES = 4 * MiB;
/**
 * The newest chunk bytes are held back: the open pack's writer buffers its last 4 MiB (pack.ts), and
 * reading a record still in that buffer would make this stream the one that writes it out; were
 * that write to fail (a full disk), the store would discard the capture's unflushed objects under
 * the capture's feet. A chunk followed by at least this many queued bytes is on file (or in an
 * indexed pack). What is held back when the capture ends goes with the negotiation.
 */
export const EARLY_HOLD_BACK_BYTES = 4 * MiB;
/**
 * Batches under way at once: one put on the wire while the next batch's question is asked. Puts
 * themselves go one at a time, like the negotiation's: the receiver sees one object stream per
 * transfer, and a cut loses at most one object in flight.
 */
const MAX_BATCHES = 2;
/** ids per batch: one question each (well under the protocol's limit and the receiver's 2 MiB budget) */
const MAX_BATCH_IDS = Math.min(16_384, MAX_IDS_PER_QUERY);

interface Queued {
  id: ObjectId;
  bytes: number;
  /** bytes queued up to and including this one, since the stream began */
  upTo: number;
}

export class EarlySender {
  readonly #store: EarlyStore;
  readonly #o: EarlySendOptions;
  readonly #ac = new AbortController();
  readonly #stats: EarlyStats = { objectsQueued: 0, objectsOffered: 0, objectsSent: 0, bytesSent: 0, rawBytesSent: 0, roundTrips: 0, batches: 0, seconds: 0 };
  #queue: Queued[] = [];
  /** bytes ever queued (see Queued.upTo) */
  #queuedTotal = 0;
  /** bytes queued or in a batch and neither sent nor found present yet (for progress) */
  #pendingBytes = 0;
  #pendingObjects = 0;
  /** batches under way, each settled (never rejected) once its put has ended */
  readonly #puts = new Set<Promise<void>>();
  /** the newest batch's promise: the next one puts only after it */
  #lastBatch: Promise<void> = Promise.resolve();
  #busySince = 0;
  #closing = false;
  #failed = false;
  #opened = false;
  #wake: (() => void) | undefined;
  readonly #done: Promise<void>;
  readonly #onAbort = () => this.#ac.abort(this.#o.signal?.reason);

  constructor(store: EarlyStore, o: EarlySendOptions) {
    this.#store = store;
    this.#o = o;
    if (o.signal?.aborted) this.#ac.abort(o.signal.reason);
    else o.signal?.addEventListener('abort', this.#onAbort, { once: true });
    this.#done = this.#run();
  }

  /** The store observer: queue a chunk just stored; other kinds never go early. */
  readonly added = (id: ObjectId, kind: ObjectKind, storedLength: number): void => {
    if (kind !== 'chunk' || this.#closing || this.#failed) return;
    this.#queuedTotal += storedLength;
    this.#queue.push({ id, bytes: storedLength, upTo: this.#queuedTotal });
    this.#pendingBytes += storedLength;
    this.#pendingObjects++;
    this.#stats.objectsQueued++;
    this.#poke();
  };

  /** Start no new batch (the capture has ended); wait for those in flight. What is still queued is the negotiation's. */
  finish(): Promise<EarlyStats> {
    this.#closing = true;
    // A hello still on its way is not waited for: nothing was sent, and the update says hello itself.
    if (!this.#opened) this.#ac.abort(new FerryError('TRANSFER_INTERRUPTED', 'the capture ended before the early stream was connected'));
    this.#poke();
    return this.#end();
  }

  /** Abort what is in flight and wait for it to stop (the update failed or was cancelled). */
  stop(): Promise<EarlyStats> {
    this.#closing = true;
    this.#ac.abort(new FerryError('TRANSFER_INTERRUPTED', 'the early stream was stopped'));
    this.#poke();
    return this.#end();
  }

  async #end(): Promise<EarlyStats> {
    await this.#done;
    this.#o.signal?.removeEventListener('abort', this.#onAbort);
    this.#queue = [];
    return { ...this.#stats, ...(this.#stats.error ? { error: { ...this.#stats.error } } : {}) };
  }

  #poke(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  /** Wait until `ready` holds; false when the stream is ending instead. */
  async #until(ready: () => boolean): Promise<boolean> {
    for (;;) {
      if (this.#closing || this.#failed || this.#ac.signal.aborted) return false;
      if (ready()) return true;
      await new Promise<void>((r) => (this.#wake = r));
    }
  }

  /** How many chunks at the front of the queue may go (see EARLY_HOLD_BACK_BYTES), and their bytes. */
  #eligible(): { n: number; bytes: number } {
    const q = this.#queue;
    if (q.length === 0) return { n: 0, bytes: 0 };
    const limit = this.#queuedTotal - (this.#o.holdBackBytes ?? EARLY_HOLD_BACK_BYTES);
    // upTo grows along the queue: the last entry within the limit, by bisection
    let lo = 0;
    let hi = q.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (q[mid].upTo <= limit) lo = mid + 1;
      else hi = mid;
    }
    return { n: lo, bytes: lo === 0 ? 0 : q[lo - 1].upTo - (q[0].upTo - q[0].bytes) };
  }

  #batchReady(): boolean {
    if (this.#puts.size >= MAX_BATCHES) return false;
    const { n, bytes } = this.#eligible();
    if (n === 0) return false;
    if (bytes >= (this.#o.batchBytes ?? EARLY_BATCH_BYTES) || n >= MAX_BATCH_IDS) return true;
    return this.#puts.size === 0 && bytes >= (this.#o.minBatchBytes ?? EARLY_MIN_BATCH_BYTES);
  }

  async #run(): Promise<void> {
    try {
      // Nothing is said to the peer before a first batch is ready (a pre hook that fails, or a
      // capture that stores little or nothing new, never contacts it).
      if (!(await this.#until(() => this.#batchReady()))) return;
      const rx = await this.#o.open(this.#ac.signal);
      this.#opened = true;
      while (await this.#until(() => this.#batchReady())) {
        const batch = this.#take();
        if (this.#puts.size === 0) this.#busySince = performance.now();
        const p: Promise<void> = this.#send(rx, batch, this.#lastBatch)
          .catch((err) => this.#fail(err))
          .finally(() => {
            this.#puts.delete(p);
            if (this.#puts.size === 0) this.#stats.seconds += (performance.now() - this.#busySince) / 1000;
            this.#poke();
          });
        this.#puts.add(p);
        this.#lastBatch = p;
      }
    } catch (err) {
      this.#fail(err);
    } finally {
      while (this.#puts.size > 0) await Promise.allSettled([...this.#puts]);
    }
  }

  #take(): Queued[] {
    const max = this.#o.batchBytes ?? EARLY_BATCH_BYTES;
    const { n: eligible } = this.#eligible();
    let n = 0;
    let bytes = 0;
    while (n < eligible && n < MAX_BATCH_IDS && (n === 0 || bytes < max)) bytes += this.#queue[n++].bytes;
    return this.#queue.splice(0, n);
  }

  #fail(err: unknown): void {
    this.#failed = true;
    // A stop asked for is no failure; the first real one is what the stats keep.
    if (this.#ac.signal.aborted || this.#stats.error) return;
    const fe = isFerryError(err) ? err : new FerryError('INTERNAL', String((err as Error)?.message ?? err), { cause: err });
    this.#stats.error = { code: fe.code, message: fe.message };
  }

  #progress(): void {
    const s = this.#stats;
    this.#o.onProgress?.({ phase: 'sending', objectsTotal: s.objectsSent + this.#pendingObjects, bytesTotal: s.bytesSent + this.#pendingBytes, objectsSent: s.objectsSent, bytesSent: s.bytesSent });
  }

  async #send(rx: Receiver, batch: Queued[], previous: Promise<void>): Promise<void> {
    const signal = this.#ac.signal;
    const { volume, limiter } = this.#o;
    const s = this.#stats;
    let unsettled = batch.reduce((a, b) => a + b.bytes, 0);
    let unsettledObjects = batch.length;
    const settle = (bytes: number) => {
      unsettled -= bytes;
      unsettledObjects--;
      this.#pendingBytes -= bytes;
      this.#pendingObjects--;
    };
    try {
      signal.throwIfAborted();
      const miss = await rx.missing(volume, batch.map((b) => b.id), signal);
      s.roundTrips++;
      s.objectsOffered += batch.length;
      if (miss.length !== batch.length) throw new FerryError('PROTOCOL', `receiver answered ${miss.length} of ${batch.length} ids`);
      const send: Queued[] = [];
      batch.forEach((b, k) => (miss[k] ? send.push(b) : settle(b.bytes)));
      if (send.length === 0) return;
      // One put at a time: this batch's question went while the previous batch was on the wire.
      await previous;
      if (this.#failed) return;
      signal.throwIfAborted();
      const store = this.#store;
      const self = this;
      async function* objects(): AsyncGenerator<PreparedObject> {
        for (const b of send) {
          signal.throwIfAborted();
          // Pending in the open pack or indexed since: readStored reads either (the receiver hashes every object).
          const r = store.readStored(b.id, { crcOnly: true });
          const wire = r.stored.byteLength;
          if (limiter) await limiter.take(wire, signal);
          yield { kind: 'chunk', id: b.id, rawLength: r.rawLength, codec: r.codec as PreparedObject['codec'], stored: r.stored };
          s.objectsSent++;
          s.bytesSent += wire;
          s.rawBytesSent += r.rawLength;
          settle(b.bytes);
          self.#progress();
        }
      }
      await rx.put(volume, objects(), signal);
      s.roundTrips++;
      s.batches++;
    } finally {
      // What was not sent is the negotiation's now: it no longer counts as pending here.
      this.#pendingBytes -= unsettled;
      this.#pendingObjects -= unsettledObjects;
    }
  }
}
