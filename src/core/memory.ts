// The daemon's memory budget (issue 13, point 5): one figure (default 256
// MiB; `serve --memory-budget`, the site setting `site.memoryBudget`) divided
// into named shares, each the bound of one kind of buffer or cache. The code
// that holds such memory sizes itself from its share's limit and counts what
// it holds in it (`hold`/`set`); where a share is full it waits for room
// (`acquire`) or holds less (a cache evicts, a batch closes early), it never
// fails for it. Each share keeps its peak, shown with the limits in /metrics
// and `status --json` (daemon.memory), so an operator sees which share is
// at its bound.
//
// Shares (fractions of the budget; floors where one unit of work needs a
// minimum, e.g. one object of MAX_OBJECT_BYTES in a peer stream):
// - stream:   bytes the peers' streams hold at this daemon (transport/stream-budget.ts)
// - send:     a sender's batch of objects read ahead of the wire (replication/sender.ts)
// - receive:  received objects taken and not yet stored (replication/receive/intake.ts)
// - capture:  file bytes handed to chunk workers and not yet returned, and their rings (snapshot/chunk-pool.ts)
// - refs:     delta references kept for reuse, at sender and receiver (replication/delta.ts cachedRefs)
// - workers:  the heaps of the worker threads (chunk, verify/encode, apply/stage): resourceLimits
// - catalog:  sqlite's page cache over every connection of the process (PRAGMA cache_size)
// What is left is the main thread's own heap, code and native runtime.
//
// Owns: the arithmetic and the counts. Must never: refuse work because a share is full.
import { FerryError } from './errors.ts';

const MiB = 1024 * 1024;
export const DEFAULT_MEMORY_BUDGET = 256 * MiB;
/** Below this the shares' floors (82 MiB) and the runtime's own leave nothing: refused. */
export const MIN_MEMORY_BUDGET = 96 * MiB;

export type ShareName = 'stream' | 'send' | 'receive' | 'capture' | 'refs' | 'workers' | 'catalog';

/** Each share: its fraction of the budget, and the least it may be (one unit of its work). */
const PLAN: Record<ShareName, { fraction: number; floor: number }> = {
  stream: { fraction: 0.1, floor: 16 * MiB },
  send: { fraction: 0.08, floor: 8 * MiB },
  receive: { fraction: 0.06, floor: 8 * MiB },
  capture: { fraction: 0.16, floor: 12 * MiB },
  refs: { fraction: 0.04, floor: 4 * MiB },
  workers: { fraction: 0.4, floor: 32 * MiB },
  catalog: { fraction: 0.03, floor: 2 * MiB },
};

export const SHARE_NAMES = Object.keys(PLAN) as ShareName[];

/** One bounded kind of memory: its limit, what it holds now, the most it held. */
export class Share {
  readonly name: string;
  #limit: number;
  #used = 0;
  #peak = 0;
  readonly #waiters: Array<{ bytes: number; resolve: () => void }> = [];

  constructor(name: string, limit: number) {
    this.name = name;
    this.#limit = limit;
  }

  get limit(): number {
    return this.#limit;
  }

  get used(): number {
    return this.#used;
  }

  get peak(): number {
    return this.#peak;
  }

  /** @internal MemoryBudget.configure */
  setLimit(limit: number): void {
    this.#limit = limit;
    this.#wake();
  }

  /** Whether `bytes` more fit now (always true when nothing is held: one unit of work larger than the share still runs, alone). */
  fits(bytes: number): boolean {
    return this.#used === 0 || this.#used + bytes <= this.#limit;
  }

  /** Take `bytes` now if they fit (see fits); false leaves the count as it was. */
  tryHold(bytes: number): boolean {
    if (!this.fits(bytes)) return false;
    this.#add(bytes);
    return true;
  }

  /** Take `bytes` once they fit: waits (in order) while the share is full. */
  async acquire(bytes: number): Promise<void> {
    if (this.#waiters.length === 0 && this.tryHold(bytes)) return;
    await new Promise<void>((resolve) => this.#waiters.push({ bytes, resolve }));
  }

  /** Give back `bytes` taken with tryHold/acquire/hold. */
  release(bytes: number): void {
    this.#used = Math.max(0, this.#used - bytes);
    this.#wake();
  }

  /** Count `bytes` that a structure bounding itself by this share's limit holds (no wait). */
  hold(bytes: number): void {
    this.#add(bytes);
  }

  /** Record what a structure holds now, where it keeps its own count (a gauge); the peak follows. */
  set(bytes: number): void {
    this.#used = Math.max(0, bytes);
    if (this.#used > this.#peak) this.#peak = this.#used;
    this.#wake();
  }

  /** Forget the peak (a test, or a new measurement). */
  resetPeak(): void {
    this.#peak = this.#used;
  }

  #add(bytes: number): void {
    this.#used += bytes;
    if (this.#used > this.#peak) this.#peak = this.#used;
  }

  #wake(): void {
    while (this.#waiters.length > 0 && this.fits(this.#waiters[0].bytes)) {
      const w = this.#waiters.shift()!;
      this.#add(w.bytes);
      w.resolve();
    }
  }
}

/** A sum over several holders (e.g. each sqlite connection's cache): `part()` gives each its own gauge. */
export interface ShareReport {
  limit: number;
  used: number;
  peak: number;
}

export class MemoryBudget {
  #total = DEFAULT_MEMORY_BUDGET;
  readonly #shares = new Map<ShareName, Share>();
  /** where the figure came from: default, the site setting, or --memory-budget */
  source = 'default';

  constructor(total = DEFAULT_MEMORY_BUDGET) {
    for (const n of SHARE_NAMES) this.#shares.set(n, new Share(n, 0));
    this.configure(total);
  }

  get total(): number {
    return this.#total;
  }

  /** Set the budget and recompute every share's limit (structures that size themselves read the limits when they next start work). */
  configure(total: number, source = this.source): void {
    if (!Number.isSafeInteger(total) || total < MIN_MEMORY_BUDGET) {
      throw new FerryError('CONFIG_INVALID', `the memory budget must be at least ${MIN_MEMORY_BUDGET / MiB} MiB, got ${total} bytes; give e.g. 256MiB`);
    }
    this.#total = total;
    this.source = source;
    for (const [n, s] of this.#shares) s.setLimit(shareLimit(n, total));
  }

  share(name: ShareName): Share {
    return this.#shares.get(name)!;
  }

  readonly #observed = new Map<ShareName, () => ShareReport>();

  /** A share whose structure keeps its own counts and enforces its own limit (the peers' stream budget): reported from it. */
  observe(name: ShareName, read: () => ShareReport): void {
    this.#observed.set(name, read);
  }

  report(): { budget: number; source: string; shares: Record<ShareName, ShareReport> } {
    const shares = {} as Record<ShareName, ShareReport>;
    for (const [n, s] of this.#shares) shares[n] = this.#observed.get(n)?.() ?? { limit: s.limit, used: s.used, peak: s.peak };
    return { budget: this.#total, source: this.source, shares };
  }
}

/** A share's limit for a budget of `total` bytes: its fraction, at least its floor. */
export function shareLimit(name: ShareName, total: number): number {
  const p = PLAN[name];
  return Math.max(p.floor, Math.floor((total * p.fraction) / MiB) * MiB);
}

/** The process's budget: one per process (the daemon's, or a CLI's working on the site directly). */
export const memory = new MemoryBudget();

/** Connections to the catalog a daemon keeps open at once (its own, the apply workers', the journal's): each gets this part of the catalog share. */
export const CATALOG_CONNECTIONS = 4;

/** The page cache bound of one catalog connection (PRAGMA cache_size). */
export function catalogCacheBytes(): number {
  return Math.floor(memory.share('catalog').limit / CATALOG_CONNECTIONS);
}

/**
 * Each pool's part of the workers share: its workers' old-generation heaps together. The chunk and
 * verify workers hold their data in ArrayBuffers outside the heap; the apply and stage workers
 * decode trees (one directory at a time), hence their larger parts.
 */
export const WORKER_HEAP_FRACTION = { chunk: 0.16, verify: 0.12, encode: 0.12, apply: 0.3, stage: 0.3 } as const;
/** The least heap limit a worker starts with: a chunk worker uses 12-17 MiB of heap at work, a verify or stage worker 7-16 (docs/memory.md); one over its limit dies. */
export const MIN_WORKER_HEAP_MB = 32;

/**
 * A pool may start a worker of `heapMb`: its first always (one per pool is the least that works),
 * more only while the workers share has room; the share then counts it until it exits.
 */
export function admitWorker(heapMb: number, first: boolean): boolean {
  const share = memory.share('workers');
  const bytes = heapMb * MiB;
  if (first) {
    share.hold(bytes);
    return true;
  }
  return share.used + bytes <= share.limit && share.tryHold(bytes);
}

/** The heap limit (MiB, old generation) of each of `workers` threads of a pool whose part of the workers share is `fraction`. */
export function workerHeapMb(fraction: number, workers: number): number {
  const bytes = (memory.share('workers').limit * fraction) / Math.max(1, workers);
  return Math.max(MIN_WORKER_HEAP_MB, Math.floor(bytes / MiB));
}

/** Worker pools of the process, for the report: each gives its live workers. */
type WorkerSource = { name: string; workers: () => Array<{ getHeapStatistics(): Promise<{ used_heap_size: number; total_heap_size: number; heap_size_limit: number }> }> };
const workerSources = new Set<WorkerSource>();

/** Count a pool's workers in the report (held weakly by nothing: call the returned function when the pool closes). */
export function registerWorkers(source: WorkerSource): () => void {
  workerSources.add(source);
  return () => workerSources.delete(source);
}

export interface MemoryReport {
  budget: number;
  source: string;
  shares: Record<ShareName, ShareReport>;
  process: { rss: number; peakRss: number | null; heapUsed: number; heapTotal: number; external: number; arrayBuffers: number };
  workers: Array<{ pool: string; heapUsed: number; heapTotal: number; heapLimit: number }>;
}

/** The budget, its shares, and what the process and each worker thread hold now. */
export async function memoryReport(): Promise<MemoryReport> {
  const m = process.memoryUsage();
  let peakRss: number | null = null;
  try {
    const { readFileSync } = await import('node:fs');
    const hwm = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (hwm) peakRss = Number(hwm[1]) * 1024;
  } catch {
    // no /proc here
  }
  const workers: MemoryReport['workers'] = [];
  for (const src of workerSources) {
    for (const w of src.workers()) {
      try {
        const h = await w.getHeapStatistics();
        workers.push({ pool: src.name, heapUsed: h.used_heap_size, heapTotal: h.total_heap_size, heapLimit: h.heap_size_limit });
      } catch {
        // the worker ended meanwhile
      }
    }
  }
  return { ...memory.report(), process: { rss: m.rss, peakRss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers }, workers };
}
