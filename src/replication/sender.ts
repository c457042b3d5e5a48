// The sending side of one transfer: negotiate what the receiver lacks, top
// down from the snapshot manifest (a subtree the receiver has is not
// descended), then stream the missing objects bottom-up (chunks, then trees
// deepest first, the manifest last) so that whenever the receiver holds a
// tree it also holds everything below it. That ordering is what lets the
// next negotiation skip a subtree after an interrupted transfer, so resuming
// never resends what arrived.
import { FerryError } from '../core/errors.ts';
import type { ObjectId } from '../core/ids.ts';
import type { ObjectKind, PreparedObject } from '../store/types.ts';
import { decodeBlockList, decodeImage, decodeSnapshot, decodeTree } from '../snapshot/format.ts';
import { MAX_IDS_PER_QUERY } from './protocol.ts';
import type { Receiver } from './types.ts';
import type { TokenBucket } from './token-bucket.ts';

/** What the sender needs of its store: metadata reads (verified) and stored bytes for sending. */
export interface SenderStore {
  get(id: ObjectId): Buffer;
  info(id: ObjectId): { kind: ObjectKind; rawLength: number; storedLength: number; codec: number } | undefined;
  readStored(id: ObjectId): { codec: number; rawLength: number; stored: Buffer };
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
}

export interface SendOptions {
  signal?: AbortSignal;
  limiter?: TokenBucket;
  onProgress?: (p: TransferProgress) => void;
  /** bytes per put request: each is flushed durable at the receiver (the resume granularity) */
  batchBytes?: number;
}

interface Pending {
  id: ObjectId;
  kind: ObjectKind;
}

/** Send every object of snapshot `manifest` that `receiver` lacks for `volume`. */
export async function sendSnapshot(store: SenderStore, receiver: Receiver, volume: string, manifest: ObjectId, o: SendOptions = {}): Promise<TransferStats> {
  const stats: TransferStats = { objectsOffered: 0, objectsSent: 0, bytesSent: 0, rawBytesSent: 0, roundTrips: 0 };
  const progress: TransferProgress = { phase: 'negotiating', objectsTotal: 0, bytesTotal: 0, objectsSent: 0, bytesSent: 0 };
  // Metadata objects to send, by level (0 = manifest); chunks to send.
  const levels: Pending[][] = [];
  const chunks: ObjectId[] = [];
  const seen = new Set<string>();

  const ask = async (ids: Pending[]): Promise<Pending[]> => {
    const fresh = ids.filter((p) => !seen.has(p.id) && (seen.add(p.id), true));
    const out: Pending[] = [];
    for (let i = 0; i < fresh.length; i += MAX_IDS_PER_QUERY) {
      o.signal?.throwIfAborted();
      const batch = fresh.slice(i, i + MAX_IDS_PER_QUERY);
      const miss = await receiver.missing(volume, batch.map((p) => p.id), o.signal);
      stats.roundTrips++;
      stats.objectsOffered += batch.length;
      if (miss.length !== batch.length) throw new FerryError('PROTOCOL', `receiver answered ${miss.length} of ${batch.length} ids`);
      batch.forEach((p, k) => {
        if (miss[k]) out.push(p);
      });
    }
    return out;
  };

  let frontier = await ask([{ id: manifest, kind: 'snapshot' }]);
  while (frontier.length > 0) {
    levels.push(frontier);
    const next: Pending[] = [];
    for (const p of frontier) {
      const raw = store.get(p.id);
      switch (p.kind) {
        case 'snapshot':
          for (const m of decodeSnapshot(raw).members) next.push({ id: m.root, kind: m.kind === 'tree' ? 'tree' : 'image' });
          break;
        case 'tree':
          for (const e of decodeTree(raw).entries) {
            if (e.type === 'dir') next.push({ id: e.tree!, kind: 'tree' });
            else if (e.type === 'file') for (const c of e.chunks ?? []) next.push({ id: c, kind: 'chunk' });
          }
          break;
        case 'image':
          for (const l of decodeImage(raw).lists) next.push({ id: l, kind: 'blocklist' });
          break;
        case 'blocklist':
          for (const b of decodeBlockList(raw).blocks) if (b) next.push({ id: b, kind: 'chunk' });
          break;
        default:
          break;
      }
    }
    const missing = await ask(next);
    frontier = [];
    for (const p of missing) {
      if (p.kind === 'chunk') chunks.push(p.id);
      else frontier.push(p);
    }
  }

  const order: ObjectId[] = [...chunks];
  for (let l = levels.length - 1; l >= 0; l--) for (const p of levels[l]) order.push(p.id);
  progress.objectsTotal = order.length;
  for (const id of order) progress.bytesTotal += store.info(id)?.storedLength ?? 0;
  progress.phase = 'sending';
  o.onProgress?.({ ...progress });

  const batchBytes = o.batchBytes ?? 64 * 1024 * 1024;
  let i = 0;
  while (i < order.length) {
    o.signal?.throwIfAborted();
    let j = i;
    let bytes = 0;
    while (j < order.length && (j === i || bytes < batchBytes)) bytes += store.info(order[j++])?.storedLength ?? 0;
    const slice = order.slice(i, j);
    async function* objects(): AsyncGenerator<PreparedObject> {
      for (const id of slice) {
        const info = store.info(id);
        if (!info) throw new FerryError('OBJECT_NOT_FOUND', `object ${id} vanished from the store while sending`);
        const s = store.readStored(id);
        if (o.limiter) await o.limiter.take(s.stored.byteLength, o.signal);
        yield { kind: info.kind, id, rawLength: s.rawLength, codec: s.codec as PreparedObject['codec'], stored: s.stored };
        stats.objectsSent++;
        stats.bytesSent += s.stored.byteLength;
        stats.rawBytesSent += s.rawLength;
        progress.objectsSent++;
        progress.bytesSent += s.stored.byteLength;
        o.onProgress?.({ ...progress });
      }
    }
    await receiver.put(volume, objects(), o.signal);
    stats.roundTrips++;
    i = j;
  }
  return stats;
}
