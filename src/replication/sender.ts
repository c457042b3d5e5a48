// The sending side of one transfer: negotiate what the receiver lacks, top
// down from the snapshot manifest (a subtree the receiver has is not
// descended), then stream the missing objects bottom-up (chunks, then trees
// deepest first, the manifest last) so that whenever the receiver holds a
// tree it also holds everything below it. That ordering is what lets the
// next negotiation skip a subtree after an interrupted transfer, so resuming
// never resends what arrived.
import { memory } from '../core/memory.ts';
import { FerryError } from '../core/errors.ts';
import { sameIds, type ObjectId } from '../core/ids.ts';
import { type ObjectKind, type PreparedObject } from '../store/types.ts';
import { decodeBlockList, decodeImage, decodeSnapshot } from '../snapshot/format.ts';
import { decodeTreeObject, nodeEntries, overlappingPage, pageEntries } from '../snapshot/dir-pages.ts';
import type { TreeEntry } from '../snapshot/model.ts';
import { cachedRefs, deltaObject, encodeDelta, planDictionary, type DeltaPlan } from './delta.ts';
import { deltaHeaderBytes, isDelta, MAX_DELTA_REFS, MAX_IDS_PER_QUERY, type WireObject } from './protocol.ts';
import { VerifyPool, type Encoded, type ToEncode } from './verify-pool.ts';
import type { Receiver } from './types.ts';
import type { TokenBucket } from './token-bucket.ts';

/** What the sender needs of its store: metadata reads (verified) and stored bytes for sending. */
export interface SenderStore {
  get(id: ObjectId): Buffer;
  /** the bytes checked by their record's CRC, not hashed (a delta's references: the receiver checks what the delta rebuilds) */
  getUnhashed?(id: ObjectId): Buffer;
  info(id: ObjectId): { kind: ObjectKind; rawLength: number; storedLength: number; codec: number } | undefined;
  /** `crcOnly`: check the record's CRC and header, not the content's hash (the receiver hashes every object) */
  readStored(id: ObjectId, opts?: { crcOnly?: boolean }): { codec: number; rawLength: number; stored: Buffer };
}

export interface TransferProgress {
  phase: 'negotiating' | 'sending' | 'committing';
  objectsTotal: number;
  bytesTotal: number;
  objectsSent: number;
  bytesSent: number;
}

export interface TransferStats {
  objectsOffered: number;
  objectsSent: number;
  bytesSent: number;
  rawBytesSent: number;
  roundTrips: number;
  /** objects sent as deltas against the base */
  deltas: number;
  /**
   * What the link took (transport fit, link-fit.ts): seconds with a put request in flight; the
   * stored bytes of the objects sent (what they would have cost whole); the quickest question's
   * round trip.
   */
  putSeconds: number;
  storedBytes: number;
  minRttMs?: number;
}

export interface SendOptions {
  signal?: AbortSignal;
  limiter?: TokenBucket;
  onProgress?: (p: TransferProgress) => void;
  /** bytes per put request: each is flushed durable at the receiver (the resume granularity) */
  batchBytes?: number;
  /**
   * The manifest of the common base, when the receiver takes deltas: a
   * changed chunk may then go as a delta against the base's chunks at the
   * same place (same path and offset, or same image block).
   */
  deltaBase?: ObjectId;
}

interface Pending {
  id: ObjectId;
  kind: ObjectKind;
  /** the object at the same place in the base, if any (for deltas) */
  base?: ObjectId;
  /** a page of a paged directory, its entries taken with its index (not read again) */
  expanded?: boolean;
}

/**
 * Workers that make deltas (verify-pool.ts, encode): decoding the stored chunk and compressing it
 * against its dictionary, synchronously there. With node's asynchronous zstd on the main thread
 * each call cost it about 0.3 ms, two calls a delta.
 */
let encoders: VerifyPool | undefined;

async function encodeOne(job: ToEncode): Promise<Encoded> {
  encoders ??= new VerifyPool('encode');
  try {
    return (await encoders.encode([job]))[0];
  } catch {
    return encodeDelta(job, job.dictionary, job.refCount); // the pool failed (a worker died): here
  }
}

/** Deltas computed ahead of the one being sent (on the encoding workers meanwhile). */
const DELTA_AHEAD = 8;

/** Send every object of snapshot `manifest` that `receiver` lacks for `volume`. */
export async function sendSnapshot(store: SenderStore, receiver: Receiver, volume: string, manifest: ObjectId, o: SendOptions = {}): Promise<TransferStats> {
  const stats: TransferStats = { objectsOffered: 0, objectsSent: 0, bytesSent: 0, rawBytesSent: 0, roundTrips: 0, deltas: 0, putSeconds: 0, storedBytes: 0 };
  const progress: TransferProgress = { phase: 'negotiating', objectsTotal: 0, bytesTotal: 0, objectsSent: 0, bytesSent: 0 };
  // Metadata objects to send, by level (0 = manifest); chunks to send.
  const levels: Pending[][] = [];
  const chunks: ObjectId[] = [];
  const seen = new Set<string>();
  // For deltas: each changed chunk's candidate references in the base.
  const refsOf = new Map<ObjectId, DeltaPlan>();
  const baseOf = <T>(id: ObjectId | undefined, decode: (raw: Buffer) => T): T | undefined => (o.deltaBase && id ? decode(store.get(id)) : undefined);

  /** Which of `ids` the receiver lacks, asked in questions of up to MAX_IDS_PER_QUERY ids. */
  const lacking = async (ids: ObjectId[]): Promise<Set<ObjectId>> => {
    const out = new Set<ObjectId>();
    for (let i = 0; i < ids.length; i += MAX_IDS_PER_QUERY) {
      o.signal?.throwIfAborted();
      const batch = ids.slice(i, i + MAX_IDS_PER_QUERY);
      const asked = performance.now();
      const miss = await receiver.missing(volume, batch, o.signal);
      const ms = performance.now() - asked;
      stats.minRttMs = stats.minRttMs === undefined ? ms : Math.min(stats.minRttMs, ms);
      stats.roundTrips++;
      if (miss.length !== batch.length) throw new FerryError('PROTOCOL', `receiver answered ${miss.length} of ${batch.length} ids`);
      batch.forEach((id, k) => miss[k] && out.add(id));
    }
    return out;
  };

  /**
   * The objects not asked about before that the receiver lacks, and, in the same question, which of
   * `extra` it lacks (the next level's bases and this level's delta references: below).
   */
  const ask = async (ids: Pending[], extra: ObjectId[] = []): Promise<{ missing: Pending[]; lacks: Set<ObjectId> }> => {
    const fresh = ids.filter((p) => !seen.has(p.id) && (seen.add(p.id), true));
    stats.objectsOffered += fresh.length;
    const question = fresh.map((p) => p.id);
    const inQuestion = new Set(question);
    for (const id of extra) if (!inQuestion.has(id)) (inQuestion.add(id), question.push(id));
    const lacks = await lacking(question);
    return { missing: fresh.filter((p) => lacks.has(p.id)), lacks };
  };

  /**
   * The bases of the changed block lists and trees in `level` (their objects at the same place in
   * the common base). The receiver holds a list or tree only with every object below it (a commit
   * checked that), so the blocks or files a changed one shares with its base need not be asked
   * about: 4096 ids per list where a few writes changed a few blocks. They are asked about with the
   * question that finds `level` missing, not in one of their own (a round trip a level saved: on a
   * 50 ms link a tree five deep cost a quarter of a second). A receiver that lost objects answers
   * its block lists as lacking (Receiver.missing), and then every block is asked about as before.
   */
  const basesOf = (level: Pending[]): ObjectId[] => [...new Set(level.filter((p) => (p.kind === 'blocklist' || p.kind === 'tree') && p.base && p.base !== p.id).map((p) => p.base!))];

  /** A directory's entries against the base's at the same place (`held`: the receiver holds those). */
  const entriesOf = (entries: TreeEntry[], base: TreeEntry[] | undefined, held: boolean, next: Pending[]): void => {
    const byName = base ? new Map(base.map((e) => [e.name.toString('latin1'), e])) : undefined;
    for (const e of entries) {
      const be = byName?.get(e.name.toString('latin1'));
      if (e.type === 'dir') next.push({ id: e.tree!, kind: 'tree', base: be?.type === 'dir' ? be.tree : undefined });
      else if (e.type === 'file') {
        if (held && be?.type === 'file' && be.size === e.size && sameIds(be.chunks, e.chunks)) continue;
        for (const c of e.chunks ?? []) next.push({ id: c, kind: 'chunk' });
        if (be?.type === 'file' && be.chunks?.length && e.chunks?.length) mapFileRefs(store, e.chunks, be.chunks, refsOf);
      }
    }
  };

  let frontier = (await ask([{ id: manifest, kind: 'snapshot', base: o.deltaBase }])).missing;
  // The frontier's bases the receiver holds (asked with the question that found the frontier missing).
  let baseHeld = new Set<ObjectId>();
  // Delta references the receiver lacks (asked with the question of the level that planned them).
  const goneRefs = new Set<ObjectId>();
  while (frontier.length > 0) {
    levels.push(frontier);
    const next: Pending[] = [];
    const plannedBefore = refsOf.size;
    for (const p of frontier) {
      const raw = store.get(p.id);
      switch (p.kind) {
        case 'snapshot': {
          const base = baseOf(p.base, decodeSnapshot);
          for (const m of decodeSnapshot(raw).members) {
            const bm = base?.members.find((x) => x.name === m.name && x.kind === m.kind);
            next.push({ id: m.root, kind: m.kind === 'tree' ? 'tree' : 'image', base: bm?.root });
          }
          break;
        }
        case 'tree': {
          if (p.expanded) break; // a page whose entries were taken with its index
          const node = decodeTreeObject(raw);
          const b = baseOf(p.base, decodeTreeObject);
          // A file the same as the base's at the same place has its chunks at a receiver that holds
          // the base's tree (it holds a tree only with everything below it): not asked about. At a
          // million files in a thousand directories this is most of an update's questions.
          const held = b !== undefined && baseHeld.has(p.base!);
          if (node.index) {
            // A paged directory (dir-pages.ts): its pages' entries are taken here, each page against
            // the base's page it overlaps (or the base's whole directory), so that paging costs no
            // round trip of its own; a page the base has is held with the base.
            const had = b?.index && held ? new Set(b.index.pages.map((x) => x.id)) : undefined;
            for (const pg of node.index.pages) {
              if (had?.has(pg.id)) continue;
              next.push({ id: pg.id, kind: 'tree', expanded: true });
              const bp = b?.index ? overlappingPage(b.index, pg) : undefined;
              entriesOf(pageEntries(store, pg), bp ? pageEntries(store, bp) : b?.entries, held, next);
            }
            break;
          }
          entriesOf(node.entries, b ? nodeEntries(store, b) : undefined, held, next);
          break;
        }
        case 'image': {
          const base = baseOf(p.base, decodeImage);
          decodeImage(raw).lists.forEach((l, i) => next.push({ id: l, kind: 'blocklist', base: base?.lists[i] }));
          break;
        }
        case 'blocklist': {
          const base = baseOf(p.base, decodeBlockList);
          // Blocks the same as the base's at the same place are held by a receiver that holds the base's list.
          const skip = base && baseHeld.has(p.base!) ? base.blocks : undefined;
          decodeBlockList(raw).blocks.forEach((b, i) => {
            if (!b || skip?.[i] === b) return;
            next.push({ id: b, kind: 'chunk' });
            const bb = base?.blocks[i];
            if (bb && bb !== b && !refsOf.has(b)) refsOf.set(b, { refs: [bb], offset: 0, length: store.info(bb)?.rawLength ?? 0 });
          });
          break;
        }
        default:
          break;
      }
    }
    // One question: the next level, its bases, and the references of the deltas planned at this level.
    const bases = basesOf(next);
    const refs = refsOf.size > plannedBefore ? [...refsOf.values()].slice(plannedBefore).flatMap((x) => x.refs) : [];
    const { missing, lacks } = await ask(next, [...bases, ...refs]);
    baseHeld = new Set(bases.filter((id) => !lacks.has(id)));
    for (const r of refs) if (lacks.has(r)) goneRefs.add(r);
    frontier = [];
    for (const p of missing) {
      if (p.kind === 'chunk') chunks.push(p.id);
      else frontier.push(p);
    }
  }

  // Deltas only for chunks the receiver lacks, against references it still has.
  if (refsOf.size > 0) {
    const wanted = new Set(chunks);
    for (const [id, plan] of refsOf) if (!wanted.has(id) || plan.refs.some((r) => goneRefs.has(r))) refsOf.delete(id);
  }

  const order: ObjectId[] = [...chunks];
  for (let l = levels.length - 1; l >= 0; l--) for (const p of levels[l]) order.push(p.id);
  progress.objectsTotal = order.length;
  // Each object's index entry, looked up once (a catalog query each): sizes for the progress and the
  // batches, kind for sending; kept by place in `order`, not in maps of objects (an initialize's
  // negotiation can hold a million: ~100 bytes each in maps, 16 here).
  const storedLen = new Float64Array(order.length);
  const kindOf = new Array<ObjectKind | undefined>(order.length);
  order.forEach((id, at) => {
    const info = store.info(id);
    kindOf[at] = info?.kind;
    storedLen[at] = info?.storedLength ?? 0;
    progress.bytesTotal += storedLen[at];
  });
  progress.phase = 'sending';
  o.onProgress?.({ ...progress });

  // A delta's references, read without hashing: the receiver hashes what the delta rebuilds, so a bad reference fails there.
  const refSource = { get: cachedRefs((id: ObjectId) => (store.getUnhashed ? store.getUnhashed(id) : store.get(id))) };
  const batchBytes = o.batchBytes ?? 64 * 1024 * 1024;
  let i = 0;
  while (i < order.length) {
    o.signal?.throwIfAborted();
    let j = i;
    let bytes = 0;
    while (j < order.length && (j === i || bytes < batchBytes)) bytes += storedLen[j++];
    const first = i;
    const slice = order.slice(i, j);
    const prepare = async (id: ObjectId, at: number): Promise<WireObject> => {
      const kind = kindOf[at];
      if (!kind) throw new FerryError('OBJECT_NOT_FOUND', `object ${id} vanished from the store while sending`);
      const s = store.readStored(id, { crcOnly: true });
      const whole: PreparedObject = { kind, id, rawLength: s.rawLength, codec: s.codec as PreparedObject['codec'], stored: s.stored };
      const refs = refsOf.get(id);
      if (!refs) return whole;
      const dictionary = planDictionary(refSource, refs);
      if (!dictionary) return whole;
      // The record just read (not a second read), decoded on a worker: the receiver checks what the delta rebuilds.
      const r = await encodeOne({ id, codec: s.codec, rawLength: s.rawLength, stored: s.stored, dictionary, refCount: refs.refs.length });
      if (r.error) throw new FerryError('OBJECT_CORRUPT', r.error);
      if (!r.frame) return whole;
      return deltaObject({ kind, id, rawLength: s.rawLength }, refs, r.frame);
    };
    async function* objects(): AsyncGenerator<WireObject> {
      const ahead: Promise<WireObject>[] = [];
      // the stored bytes of the objects read ahead: within the memory budget's send share (one at least)
      const sizes: number[] = [];
      let aheadBytes = 0;
      const share = memory.share('send');
      let k = 0;
      try {
        while (k < slice.length || ahead.length > 0) {
          while (k < slice.length && ahead.length < DELTA_AHEAD) {
            const size = storedLen[first + k];
            if (ahead.length > 0 && aheadBytes + size > share.limit) break;
            const p = prepare(slice[k], first + k);
            k++;
            p.catch(() => {}); // awaited below, in order; this only keeps an early failure from being "unhandled"
            ahead.push(p);
            sizes.push(size);
            aheadBytes += size;
            share.hold(size);
          }
          const w = await ahead.shift()!;
          stats.storedBytes += sizes[0];
          const wire = isDelta(w) ? deltaHeaderBytes(w.refs.length) + w.stored.byteLength : w.stored.byteLength;
          if (o.limiter) await o.limiter.take(wire, o.signal);
          yield w;
          // handed to the transport (which holds it no longer than its window): out of the read-ahead
          const size = sizes.shift()!;
          aheadBytes -= size;
          share.release(size);
          stats.objectsSent++;
          stats.bytesSent += wire;
          stats.rawBytesSent += w.rawLength;
          if (isDelta(w)) stats.deltas++;
          progress.objectsSent++;
          progress.bytesSent += wire;
          o.onProgress?.({ ...progress });
        }
      } finally {
        share.release(aheadBytes);
      }
    }
    const putStarted = performance.now();
    await receiver.put(volume, objects(), o.signal).finally(() => refSource.get.clear());
    stats.putSeconds += (performance.now() - putStarted) / 1000;
    stats.roundTrips++;
    i = j;
  }
  return stats;
}

/** Base bytes either side of a changed chunk's range that its dictionary also takes (small shifts). */
const DELTA_SLACK = 64 * 1024;

/**
 * A changed file's chunks against the base file's: each new chunk not in the
 * base gets, as its dictionary, the base file's bytes over the same range
 * (plus a little either side), named as the run of base chunks covering it.
 * Chunk lengths come from the store's index.
 */
function mapFileRefs(store: SenderStore, chunks: ObjectId[], baseChunks: ObjectId[], refsOf: Map<ObjectId, DeltaPlan>): void {
  const inBase = new Set(baseChunks);
  if (chunks.every((c) => inBase.has(c))) return;
  const spans = (ids: ObjectId[]) => {
    let at = 0;
    return ids.map((id) => {
      const len = store.info(id)?.rawLength ?? 0;
      const span = { id, start: at, end: at + len };
      at += len;
      return span;
    });
  };
  const base = spans(baseChunks);
  let j = 0;
  for (const c of spans(chunks)) {
    if (inBase.has(c.id) || refsOf.has(c.id) || c.end === c.start) continue;
    const from = Math.max(0, c.start - DELTA_SLACK);
    const to = c.end + DELTA_SLACK;
    while (j < base.length && base[j].end <= from) j++;
    let k = j;
    while (k < base.length && base[k].start < to && k - j < MAX_DELTA_REFS) k++;
    if (k === j) continue; // beyond the old end: appended data has nothing to refer to
    const run = base.slice(j, k);
    const offset = Math.max(0, from - run[0].start);
    const length = Math.min(run[run.length - 1].end, to) - run[0].start - offset;
    if (length > 0) refsOf.set(c.id, { refs: run.map((x) => x.id), offset, length });
  }
}
