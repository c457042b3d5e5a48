// The early stream of a replication without a delta base (an initialize):
// while the capture of the target snapshot runs, the chunks and trees it
// newly stores already go to the destination, so that when the capture ends
// most of them are there, and the negotiation (sender.ts), which asks the
// destination what it lacks, sends only the rest: the manifest, and whatever
// the early stream held back or missed.
//
// Owns: a queue of chunk and tree ids (fed by the store's onAdded observer),
// the set of ids a later tree may stand on (#vouched), batches
// cut by bytes, one `missing` question per batch (a resumed initialize does
// not resend what arrived), one put at a time (the next batch's question is
// asked meanwhile), pacing by the mirror's token bucket, and its own
// statistics.
//
// Trees go early too (so the destination can stage a baseline's directories
// while the transfer runs: stage.ts), but only in the order the negotiation
// relies on: it skips a subtree the destination already holds, so a tree may
// arrive only after everything below it. A tree the capture stored does not
// even mean its chunks were queued here (a chunk already in the store is
// deduplicated, not stored again), so each object a tree names must be
// vouched for first: sent in this put before it or in an earlier one (a
// later put goes only once the earlier succeeded), or found at the
// destination. What a tree names and nobody vouched for is asked about with
// its batch; a missing chunk is sent ahead of the tree, a missing subtree
// leaves the tree to the negotiation (and so every tree above it).
//
// Memory: what is queued and what is vouched for are per object, and the
// capture can outrun the stream (at 500,000 files the queue held 300,000 ids:
// ~140 bytes each). Both are bounded: past EARLY_QUEUE_MAX queued, an object
// stored is left to the negotiation (counted, objectsLeft); the vouched set
// keeps two generations of EARLY_VOUCHED_MAX ids, and a tree naming an id
// forgotten asks the destination about it with its batch, as for any id
// nobody vouched for (or is left to the negotiation): forgetting is never
// wrong, only a question more.
//
// Must never: send an image, block list or manifest, or a tree before what
// it names. Chunks have no order: they are safe in any order.
// Must never throw into its caller nor leave a rejection unhandled: it is an
// optimisation, so any failure (peer unreachable, hello refused, a cut put)
// stops it, is recorded in its stats, and the update goes on as if it had
// not run. Must never run on after finish() or stop() has returned.
import { FerryError, isFerryError } from '../core/errors.ts';
import type { ObjectId } from '../core/ids.ts';
import type { ObjectKind, PreparedObject } from '../store/types.ts';
import { decodeTreeObject } from '../snapshot/dir-pages.ts';
import { MAX_IDS_PER_QUERY } from './protocol.ts';
import type { TransferProgress } from './sender.ts';
import type { Receiver } from './types.ts';

/** What the early stream needs of the store: the stored form of an object (pending in the open pack or indexed). */
export interface EarlyStore {
  readStored(id: ObjectId, opts?: { crcOnly?: boolean }): { codec: number; rawLength: number; stored: Buffer };
  /** an object's bytes (a tree's, to learn what it names) */
  get(id: ObjectId): Buffer;
}

export interface EarlySendOptions {
  /** Connect to the destination and say hello; called once, when the first batch is ready. */
  open: (signal: AbortSignal) => Promise<Receiver>;
  /** the volume's name at the destination */
  volume: string;
  /** the update's signal: aborting it stops the stream */
  signal?: AbortSignal;
  onProgress?: (p: TransferProgress) => void;
  /** bytes per put request (each one a pack made durable at the receiver); default 16 MiB */
  batchBytes?: number;
  /** with no put in flight, a batch goes once this much is queued; default 4 MiB */
  minBatchBytes?: number;
  /** the newest chunk bytes not sent (see EARLY_HOLD_BACK_BYTES); default 4 MiB */
  holdBackBytes?: number;
  /** ids queued at most (EARLY_QUEUE_MAX), and vouched for per generation (EARLY_VOUCHED_MAX): for tests */
  queueMax?: number;
  vouchedMax?: number;
}

export interface EarlyStats {
  /** chunks the capture stored while the stream listened */
  objectsQueued: number;
  /** stored while the queue was full (EARLY_QUEUE_MAX): left to the negotiation */
  objectsLeft: number;
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
/** Ids queued at most (about 140 bytes each); what the capture stores past it goes with the negotiation. */
export const EARLY_QUEUE_MAX = 65_536;
/** Ids vouched for, per generation (two are kept: see the file's comment). */
export const EARLY_VOUCHED_MAX = 131_072;
/** ids per batch: one question each (well under the protocol's limit and the receiver's 2 MiB budget) */
const MAX_BATCH_IDS = Math.min(16_384, MAX_IDS_PER_QUERY);

interface Queued {
  id: ObjectId;
  kind: 'chunk' | 'tree';
  bytes: number;
  /** bytes queued up to and including this one, since the stream began */
  upTo: number;
}

export class EarlySender {
  readonly #store: EarlyStore;
  readonly #o: EarlySendOptions;
  readonly #ac = new AbortController();
  readonly #stats: EarlyStats = { objectsQueued: 0, objectsLeft: 0, objectsOffered: 0, objectsSent: 0, bytesSent: 0, rawBytesSent: 0, roundTrips: 0, batches: 0, seconds: 0 };
  #queue: Queued[] = [];
  /**
   * Objects a later tree may stand on: found at the destination, or sent in this stream (a put goes
   * only once the one before it succeeded, so what an earlier put carried is there when a later one
   * is stored).
   */
  #vouched: Vouched;
  /** ids in the queue, not yet taken into a batch (what a tree names may not be read before its turn: EARLY_HOLD_BACK_BYTES) */
  readonly #queued = new Set<ObjectId>();
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
    this.#vouched = new Vouched(o.vouchedMax);
    if (o.signal?.aborted) this.#ac.abort(o.signal.reason);
    else o.signal?.addEventListener('abort', this.#onAbort, { once: true });
    this.#done = this.#run();
  }

  /** The store observer: queue a chunk or tree just stored; other kinds never go early. */
  readonly added = (id: ObjectId, kind: ObjectKind, storedLength: number): void => {
    if ((kind !== 'chunk' && kind !== 'tree') || this.#closing || this.#failed) return;
    // (counted even when not queued: it is stored after what is queued, and EARLY_HOLD_BACK_BYTES counts bytes stored after)
    this.#queuedTotal += storedLength;
    if (this.#queue.length >= (this.#o.queueMax ?? EARLY_QUEUE_MAX)) {
      this.#stats.objectsLeft++;
      return;
    }
    this.#queue.push({ id, kind, bytes: storedLength, upTo: this.#queuedTotal });
    this.#queued.add(id);
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
    this.#queued.clear();
    this.#vouched = new Vouched(this.#o.vouchedMax);
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
      this.#stats.roundTrips++; // its hello
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
    const batch = this.#queue.splice(0, n);
    for (const b of batch) this.#queued.delete(b.id);
    return batch;
  }

  /**
   * The objects tree `id` names (its files' chunks, its subdirectories; a paged directory's index its
   * pages), each once; undefined when it cannot be read.
   */
  #namedBy(id: ObjectId): Array<{ id: ObjectId; tree: boolean }> | undefined {
    let entries;
    try {
      const node = decodeTreeObject(this.#store.get(id));
      if (node.index) return node.index.pages.map((p) => ({ id: p.id, tree: true }));
      entries = node.entries;
    } catch {
      return undefined;
    }
    const seen = new Set<ObjectId>();
    const out: Array<{ id: ObjectId; tree: boolean }> = [];
    for (const e of entries) {
      const ids = e.type === 'dir' ? [e.tree!] : e.type === 'file' ? (e.chunks ?? []) : [];
      for (const x of ids) {
        if (seen.has(x)) continue;
        seen.add(x);
        out.push({ id: x, tree: e.type === 'dir' });
      }
    }
    return out;
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
    const { volume } = this.#o;
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
      // What the batch's trees name, asked about with the batch (see the file's comment).
      const names = new Map<ObjectId, Array<{ id: ObjectId; tree: boolean }>>();
      const asked = batch.map((b) => b.id);
      const inQuestion = new Set(asked);
      for (const b of batch) {
        if (b.kind !== 'tree') continue;
        const refs = this.#namedBy(b.id);
        // left to the negotiation: too many names for one question, or one queued after it and not yet taken
        if (!refs || asked.length + refs.length > MAX_IDS_PER_QUERY || refs.some((r) => this.#queued.has(r.id))) continue;
        names.set(b.id, refs);
        for (const r of refs) {
          if (this.#vouched.has(r.id) || inQuestion.has(r.id)) continue;
          inQuestion.add(r.id);
          asked.push(r.id);
        }
      }
      const answers = await rx.missing(volume, asked, signal);
      s.roundTrips++;
      s.objectsOffered += asked.length;
      if (answers.length !== asked.length) throw new FerryError('PROTOCOL', `receiver answered ${answers.length} of ${asked.length} ids`);
      const lacks = new Map<ObjectId, boolean>();
      asked.forEach((id, k) => lacks.set(id, answers[k]));
      // One put at a time: this batch's question went while the previous batch was on the wire. What
      // the earlier batches vouch for is known once the previous one is done.
      await previous;
      if (this.#failed) return;
      signal.throwIfAborted();
      const vouched = this.#vouched;
      const send: Array<{ id: ObjectId; kind: 'chunk' | 'tree'; settles?: number }> = [];
      /** `id` is at the destination, or goes ahead of what comes next (remembered) */
      const there = (id: ObjectId): boolean => {
        if (vouched.has(id)) return true;
        if (lacks.get(id) !== false) return false;
        vouched.add(id);
        return true;
      };
      /** a chunk not there goes now; false when it was there */
      const sendChunk = (id: ObjectId, settles?: number): boolean => {
        if (there(id)) return false;
        vouched.add(id);
        send.push({ id, kind: 'chunk', settles });
        return true;
      };
      for (const b of batch) {
        if (b.kind === 'chunk') {
          if (!sendChunk(b.id, b.bytes)) settle(b.bytes);
          continue;
        }
        if (there(b.id)) {
          settle(b.bytes); // a tree the destination holds has everything below it
          continue;
        }
        const refs = names.get(b.id);
        // Every subtree it names must be there; the chunks it names go first.
        if (!refs || !refs.every((r) => !r.tree || there(r.id))) continue;
        for (const r of refs) if (!r.tree) sendChunk(r.id);
        vouched.add(b.id);
        send.push({ id: b.id, kind: 'tree', settles: b.bytes });
      }
      if (send.length === 0) return;
      const store = this.#store;
      const self = this;
      async function* objects(): AsyncGenerator<PreparedObject> {
        for (const b of send) {
          signal.throwIfAborted();
          // Pending in the open pack or indexed since: readStored reads either (the receiver hashes every object).
          const r = store.readStored(b.id, { crcOnly: true });
          const wire = r.stored.byteLength;
          yield { kind: b.kind, id: b.id, rawLength: r.rawLength, codec: r.codec as PreparedObject['codec'], stored: r.stored };
          s.objectsSent++;
          s.bytesSent += wire;
          s.rawBytesSent += r.rawLength;
          if (b.settles !== undefined) settle(b.settles);
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

/**
 * Ids vouched for, bounded: two generations of `max` ids; when the newer fills, the older is
 * forgotten. An id forgotten is asked about again (EarlySender.#send), never taken as there.
 */
class Vouched {
  #new = new Set<ObjectId>();
  #old = new Set<ObjectId>();
  readonly #max: number;

  constructor(max = EARLY_VOUCHED_MAX) {
    this.#max = max;
  }

  has(id: ObjectId): boolean {
    return this.#new.has(id) || this.#old.has(id);
  }

  add(id: ObjectId): void {
    if (this.#new.has(id)) return;
    if (this.#new.size >= this.#max) {
      this.#old = this.#new;
      this.#new = new Set();
    }
    this.#new.add(id);
  }
}
