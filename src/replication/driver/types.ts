// What the replication driver (plan.ts, step.ts, run.ts) sees of the world:
// the source (this site's catalog and store, and a way to take a snapshot),
// the destination (a Receiver, made by `connect`), and the options and result
// of one update. It never imports site/: the site builds an UpdateSource
// (site/mirrors.ts) and hands it in, as tests hand in fakes.
import type { ObjectId } from '../../core/ids.ts';
import type { Random } from '../../core/backoff.ts';
import type { ObjectKind } from '../../store/types.ts';
import type { Catalog } from '../../catalog/catalog.ts';
import type { LastTransfer } from '../../catalog/mirrors.ts';
import type { Peer } from '../../catalog/peers.ts';
import type { SnapshotRecord } from '../../catalog/snapshots.ts';
import type { EarlyStore } from '../early-send.ts';
import type { SenderStore, TransferProgress } from '../sender.ts';
import type { Receiver } from '../types.ts';

/** The store as the driver uses it: sending (sender.ts), the early stream (early-send.ts), and its observer of new objects. */
export interface SourceStore extends SenderStore, EarlyStore {
  /** call `fn` for each object stored from now on; returns the function that stops it */
  onAdded(fn: (id: ObjectId, kind: ObjectKind, storedLength: number) => void): () => void;
}

/** The sending site, as the driver needs it. */
export interface UpdateSource {
  /** the site's tables (mirrors, snapshots, holds, peer snapshots), its clock and its events */
  readonly catalog: Catalog;
  readonly store: SourceStore;
  /** how many writers (captures, transfers coming in) are storing objects now */
  readonly writers: number;
  /** take a new snapshot of `volume` (hooks, capture, retention), reporting each capture warning */
  capture(volume: string, o: { signal?: AbortSignal; onWarning: (w: UpdateWarning) => void }): Promise<{ snapshot: SnapshotRecord }>;
}

export interface ConnectOptions {
  /** bytes per second the transfer may use (the mirror's limit; none: unlimited) */
  bandwidth?: number | null;
}

export interface UpdateDeps {
  source: UpdateSource;
  /**
   * the destination of a mirror's peer (a connection per call is allowed: the driver closes none),
   * its requests paced to the mirror's bandwidth limit
   */
  connect: (peer: Peer, o?: ConnectOptions) => Receiver;
  /** randomness for the retry jitter (Math.random by default; tests fix it) */
  random?: Random;
  /** bytes per put request of the target's transfer (the resume granularity; sender.ts's default otherwise) */
  putBatchBytes?: number;
}

export interface UpdateOptions {
  initialize?: boolean;
  snapshot?: string;
  force?: boolean;
  scheduled?: boolean;
  signal?: AbortSignal;
  onProgress?: (p: TransferProgress) => void;
}

export interface UpdateResult {
  mirror: string;
  snapshot: string;
  base: string | null;
  transfer: LastTransfer;
  applied: boolean;
  writesSnapshot?: string;
  /**
   * What the capture of the snapshot sent reported (paths skipped, unreadable, changed while read; a
   * post hook that failed): the replica may lack those paths. The first MAX_WARNINGS_LISTED, or for a
   * snapshot taken earlier (named, queued) one line with its count. The CLI exits 8 when any.
   */
  warnings: UpdateWarning[];
}

export interface UpdateWarning {
  path: string;
  message: string;
  problem?: string;
}
