// Applying new subtrees of a replica on worker threads. An initial apply (or
// one that adds whole directories) writes every file of the snapshot:
// decompressing its chunks, creating, writing and renaming each file, one
// after another, on one thread. The directories directly below a member
// root that the replica does not have yet are independent of each other, so
// each is handed to a worker (ApplyOptions.subtrees), which opens the site's
// catalog read-only, reads the (committed, flushed) objects itself and
// writes the subtree; the member's applier makes the hard links once every
// subtree is in place. Two workers: the source side is idle during an apply.
// A new directory near the root that has subdirectories is split into them
// (apply.ts, SPLIT_DEPTH), and jobs wait in the pool until a worker has room,
// so that one large directory does not leave a worker idle.
//
// A site's pool is one of its replica state (replicas.ts); the workers open
// the site's catalog and store read-only by their paths (this layer knows
// nothing of a Site).
//
// Owns: the subtree jobs (the workers are core/worker-pool.ts). Must never: write outside the
// subtree it was given (the same applier code, rooted at the member, with
// the same checks), or keep the process alive when idle.
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { isMainThread, workerData } from 'node:worker_threads';
import type { ObjectId } from '../../core/ids.ts';
import { serveWorker, WorkerPool } from '../../core/worker-pool.ts';
import { WORKER_HEAP_FRACTION, workerHeapMb } from '../../core/memory.ts';
import { PackStore } from '../../store/pack-store.ts';
import type { TreeEntry } from '../../snapshot/model.ts';
import type { CachedFile } from '../../snapshot/stat-cache.ts';
import { Catalog } from '../../catalog/catalog.ts';
import { applySubtree, type SubtreeResult, type SubtreeRunner } from '../apply.ts';
import { stageTree, type StageResult, type StageRunner } from '../stage.ts';

const WORKERS = 2;

/** Where a site keeps its catalog and its store (SitePaths): the workers open both read-only. */
export interface StorePaths {
  catalog: string;
  store: string;
}

interface Job {
  site: StorePaths;
  /** stage this tree (stage.ts) instead of applying a subtree */
  stage?: boolean;
  root: Uint8Array;
  dir: Uint8Array;
  rel: string;
  tree: string;
  meta?: TreeEntry;
  noOwner?: boolean;
  inheritsDefaultAcl?: boolean;
  relinks?: boolean;
}

const toBuffer = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

/** Buffers arrive as Uint8Array from another thread: make the entry's Buffer fields Buffers again. */
function reviveEntry(e: TreeEntry): TreeEntry {
  return { ...e, name: toBuffer(e.name), ...(e.target ? { target: toBuffer(e.target) } : {}), xattrs: (e.xattrs ?? []).map(([k, v]) => [toBuffer(k), toBuffer(v)]) };
}

export class ApplyPool {
  readonly #site: StorePaths;
  // Two jobs per worker: one to work on and the next, so a worker need not wait for the
  // main thread (busy in its own synchronous walk) to be handed more.
  readonly #pool = new WorkerPool<Job, SubtreeResult | StageResult>({ url: new URL(import.meta.url), workerData: { ferryApplyWorker: true }, size: WORKERS, name: 'ferry-apply', inFlight: 2, heapMb: () => workerHeapMb(WORKER_HEAP_FRACTION.apply, WORKERS) });
  /**
   * Staging runs while the transfer (and, at the source, the capture) still works: on threads of
   * the lowest priority (STAGE_NICE), so that it takes only CPU time nothing else wants. Where the
   * transfer keeps every core busy, it waits, and the apply's wait for it is what remains.
   */
  readonly #stagePool = new WorkerPool<Job, SubtreeResult | StageResult>({ url: new URL(import.meta.url), workerData: { ferryApplyWorker: true, nice: STAGE_NICE }, size: WORKERS, name: 'ferry-stage', inFlight: 2, heapMb: () => workerHeapMb(WORKER_HEAP_FRACTION.stage, WORKERS) });

  constructor(site: StorePaths) {
    this.#site = { catalog: site.catalog, store: site.store };
  }

  readonly run: SubtreeRunner = async (job) => {
    const r = (await this.#pool.run({ site: this.#site, root: job.root, dir: job.dir, rel: job.rel, tree: job.tree, meta: job.meta, noOwner: job.noOwner, inheritsDefaultAcl: job.inheritsDefaultAcl, relinks: job.relinks })) as SubtreeResult;
    return {
      ...r,
      links: r.links.map((l) => ({ ...l, path: toBuffer(l.path), parent: toBuffer(l.parent), e: reviveEntry(l.e), ...(l.parentMeta ? { parentMeta: reviveEntry(l.parentMeta) } : {}) })),
    };
  };

  /** Stage a tree of a baseline as it arrives (stage.ts): written beside the replica's content, moved into place by the apply. */
  readonly stage: StageRunner = async (job) => {
    return (await this.#stagePool.run({ site: this.#site, stage: true, root: job.root, dir: job.root, rel: '', tree: job.tree, noOwner: job.noOwner })) as StageResult;
  };

  async close(): Promise<void> {
    await Promise.all([this.#pool.close(), this.#stagePool.close()]);
  }
}

/** The staging threads' nice value: the lowest priority. */
const STAGE_NICE = 19;

/**
 * Lower this thread's priority (Linux: a thread is a task with its own nice value; /proc/thread-self
 * names it). Elsewhere, or if refused, it keeps the process's.
 */
function niceThisThread(nice: number): void {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (Number.isInteger(tid) && tid > 0) setPriority(tid, nice);
  } catch {
    // not Linux, or not allowed: the staging just competes evenly
  }
}

if (!isMainThread && (workerData as { ferryApplyWorker?: boolean } | null)?.ferryApplyWorker) {
  const nice = (workerData as { nice?: number }).nice;
  if (nice !== undefined) niceThisThread(nice);
  const stores = new Map<string, PackStore>();
  serveWorker<Job, SubtreeResult | StageResult>((m) => {
    let store = stores.get(m.site.catalog);
    if (!store) {
      // read-only, as Site.open({ readOnly: true }) opens them: no lock, no recovery, no writes
      const catalog = Catalog.open(m.site.catalog, { readOnly: true });
      stores.set(m.site.catalog, (store = new PackStore({ db: catalog.db, dir: m.site.store })));
    }
    // objects were verified when they arrived; the replica is verified after the apply (apply-job.ts)
    const reader = { has: (id: ObjectId) => store.has(id), info: (id: ObjectId) => store.info(id), get: (id: ObjectId) => store.getUnhashed(id) };
    if (m.stage) return stageTree(toBuffer(m.root), m.tree as ObjectId, { store: reader, noOwner: m.noOwner });
    const written: Array<[string, string, CachedFile]> = [];
    const warnings: Array<[string, string]> = [];
    const r = applySubtree(toBuffer(m.root), toBuffer(m.dir), m.rel, m.tree as ObjectId, m.meta && reviveEntry(m.meta), {
      store: reader,
      noOwner: m.noOwner,
      inheritsDefaultAcl: m.inheritsDefaultAcl,
      relinks: m.relinks,
      onFileWritten: (dir, name, f) => written.push([dir, name, f]),
      onWarning: (p, msg) => warnings.push([p, msg]),
    });
    return { ...r, written, warnings };
  });
}
