// The receiving side's state at one site: one ReplicaState per secondary
// volume (its apply lock, a forced failover's cancellation, the staging of
// its baseline, the transfer that keeps GC waiting), and the site's workers
// (verification, apply) and what its commit checks found complete. A
// Replicas registry is made with its site (site.ts) and reached only through
// it, so two sites in one process (tests open several) share none of it.
//
// Owns: that state, in memory only (the catalog keeps what must survive a
// restart: `applying`, the holds). Must never: let an apply of a volume run
// beside another apply of it or beside a failover's work on it (exclusive),
// or carry one site's state into another's.
import type { ObjectReader } from '../../store/types.ts';
import { Stager, type StageRecord } from '../stage.ts';
import { VerifyPool } from '../verify-pool.ts';
import { ApplyPool, type StorePaths } from './apply-pool.ts';
import { KnownComplete } from './graph.ts';

/** A sender silent this long has given up its transfer (see ReplicaState.transferring). */
export const TRANSFER_IDLE_MS = 15 * 60_000;

/** One secondary volume's state in this process. */
export class ReplicaState {
  readonly volume: string;
  readonly #replicas: Replicas;
  /** the applies queued and running, in order: the tail of the chain (none: nothing queued) */
  #tail: Promise<unknown> | undefined;
  /** why applies in flight are to stop (a forced failover), until the lock holder that asked is done */
  #cancel: string | undefined;
  /** the transfer in progress: GC waits until it is done (see transferring) */
  #transfer: { done: () => void; timer: NodeJS.Timeout } | undefined;
  /** the staging of a baseline's subtrees while the transfer runs (stage.ts) */
  #stager: Stager | undefined;

  constructor(replicas: Replicas, volume: string) {
    this.#replicas = replicas;
    this.volume = volume;
  }

  /** An apply of the volume is running or queued (exclusive). */
  get applying(): boolean {
    return this.#tail !== undefined;
  }

  /** Run `fn` after every apply queued before it, and before any queued after: applies of a volume never overlap. */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.#tail ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => {});
    this.#tail = tail;
    try {
      return await run;
    } finally {
      if (this.#tail === tail) this.#tail = undefined;
    }
  }

  /** Ask the apply in flight (and those queued behind it) to stop at its next check; nothing when none is. */
  cancel(reason: string): void {
    if (this.applying) this.#cancel = reason;
  }

  /** Why applies are to stop now, if they are (cancel). */
  get cancelled(): string | undefined {
    return this.#cancel;
  }

  /**
   * Run `fn` holding the lock every apply holds (a failover takes it so it never promotes a replica
   * while an apply writes into it). A cancellation asked for before ends with it.
   */
  withLock<T>(fn: () => Promise<T>): Promise<T> {
    return this.exclusive(async () => {
      try {
        return await fn();
      } finally {
        this.#cancel = undefined;
      }
    });
  }

  /**
   * Objects received for the volume are named by no snapshot until its commit: GC waits
   * (`beginWrite`, the site's) from the first put until the commit is done (transferDone), or until
   * the sender has been silent for TRANSFER_IDLE_MS (it gave up; what arrived may then be
   * collected, and is sent again if needed). A transfer already open is only kept alive.
   */
  transferring(beginWrite: () => () => void): void {
    if (this.#transfer) {
      this.#transfer.timer.refresh();
      return;
    }
    const done = beginWrite();
    const timer = setTimeout(() => this.transferDone(), TRANSFER_IDLE_MS).unref();
    this.#transfer = { done, timer };
  }

  /** The transfer is over (committed, or its sender gave up): GC may go on. */
  transferDone(): void {
    const cur = this.#transfer;
    if (!cur) return;
    this.#transfer = undefined;
    clearTimeout(cur.timer);
    cur.done();
  }

  /** The staging of the member at `root` (made on first use, on the site's apply workers; `record` then: where it keeps what it wrote). */
  stager(root: string, store: ObjectReader, record: () => StageRecord): Stager {
    this.#stager ??= new Stager(root, this.#replicas.applyPool.stage, store, record());
    return this.#stager;
  }

  /** Forget the staging (its area is cleared by the caller): the next baseline starts a new one. */
  dropStager(): void {
    this.#stager = undefined;
  }
}

/** A site's replica state: one ReplicaState per secondary volume, and the site's receiving workers. */
export class Replicas {
  readonly #paths: StorePaths;
  readonly #states = new Map<string, ReplicaState>();
  #applyPool: ApplyPool | undefined;
  #verifyPool: VerifyPool | undefined;
  /** what commit checks at this site found complete (graph.ts) */
  readonly known = new KnownComplete();

  /** `paths`: the site's catalog and store, which the apply workers open read-only. */
  constructor(paths: StorePaths) {
    this.#paths = { catalog: paths.catalog, store: paths.store };
  }

  /** The volume's state (made on first use). */
  of(volume: string): ReplicaState {
    let s = this.#states.get(volume);
    if (!s) this.#states.set(volume, (s = new ReplicaState(this, volume)));
    return s;
  }

  /** An apply of the volume is running or queued in this process. */
  applying(volume: string): boolean {
    return this.#states.get(volume)?.applying ?? false;
  }

  /** The site's workers for new subtrees of an apply and for staging (apply-pool.ts). */
  get applyPool(): ApplyPool {
    this.#applyPool ??= new ApplyPool(this.#paths);
    return this.#applyPool;
  }

  /** The site's workers that verify and rebuild received objects (verify-pool.ts). Both pools' workers end when idle. */
  get verifyPool(): VerifyPool {
    this.#verifyPool ??= new VerifyPool();
    return this.#verifyPool;
  }
}
