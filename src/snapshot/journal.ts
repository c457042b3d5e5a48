// The change journal: watches over the site's tree members (and replicas),
// run on their own worker thread, and `take(key)`, which returns everything
// that changed in a tree up to the moment it was called.
//
// Why a worker: libuv reads inotify events on the thread that made the
// watches, and drops a queue overflow without telling anyone
// (tree-watch.ts). The daemon's main thread can be busy for a while
// (a commit, a large tree encoded); the worker's event loop does nothing but
// drain the queue, so the kernel's queue (fs.inotify.max_queued_events) does
// not fill behind it.
//
// Why `take` is exact: every watch of one thread shares one inotify queue,
// and the kernel queues events in the order the changes happen. `take`
// creates a file in a barrier directory the same thread watches, and answers
// only once that file's event has been handled: every change made before
// `take` was called has been recorded by then.
import { mkdirSync, rmSync, unlinkSync, watch, writeFileSync, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { FerryError, wrapIoError } from '../core/errors.ts';
import { workerExecArgv } from '../core/worker-pool.ts';
import { TreeWatch, type DirtySet } from './tree-watch.ts';

export type { DirtyDir, DirtySet } from './tree-watch.ts';

export interface WatchInfo {
  watches: number;
  lost: string | null;
  /** lost for lack of watches: the tree's watches were released (TreeWatch.exhausted) */
  exhausted: boolean;
}

type Request =
  | { t: 'watch'; seq: number; key: string; root: string; skipAtRoot?: string; maxWatches?: number }
  | { t: 'take'; seq: number; key: string }
  | { t: 'putBack'; seq: number; key: string; set: DirtySet }
  | { t: 'unwatch'; seq: number; key: string }
  | { t: 'info'; seq: number; key: string };

type Ask = Request extends infer R ? (R extends { seq: number } ? Omit<R, 'seq'> : never) : never;

type Reply = { seq: number; ok: unknown } | { seq: number; error: string };

/** The journal's state: the watches and the barrier. Runs on the worker, or in-thread for tests. */
class JournalCore {
  readonly #trees = new Map<string, TreeWatch>();
  readonly #barrierDir: string;
  readonly #barrier: FSWatcher;
  readonly #waiting = new Map<string, () => void>();

  constructor(barrierDir: string) {
    this.#barrierDir = barrierDir;
    rmSync(barrierDir, { recursive: true, force: true });
    mkdirSync(barrierDir, { recursive: true, mode: 0o700 });
    this.#barrier = watch(barrierDir, { persistent: false }, (_type, name) => {
      if (typeof name !== 'string') return;
      const done = this.#waiting.get(name);
      if (!done) return;
      this.#waiting.delete(name);
      done();
    });
  }

  async handle(r: Request): Promise<unknown> {
    switch (r.t) {
      case 'watch': {
        this.#trees.get(r.key)?.close();
        const tw = new TreeWatch(r.root, { skipAtRoot: r.skipAtRoot, maxWatches: r.maxWatches });
        this.#trees.set(r.key, tw);
        tw.start();
        return this.#info(tw);
      }
      case 'take': {
        const tw = this.#tree(r.key);
        await this.#barrierPassed(r.seq);
        return tw.take();
      }
      case 'putBack':
        this.#tree(r.key).putBack(r.set);
        return null;
      case 'unwatch':
        this.#trees.get(r.key)?.close();
        this.#trees.delete(r.key);
        return null;
      case 'info':
        return this.#trees.has(r.key) ? this.#info(this.#tree(r.key)) : null;
    }
  }

  #info(tw: TreeWatch): WatchInfo {
    return { watches: tw.watches, lost: tw.lost, exhausted: tw.exhausted };
  }

  #tree(key: string): TreeWatch {
    const tw = this.#trees.get(key);
    if (!tw) throw new Error(`no watch ${key}`);
    return tw;
  }

  /** Resolves once every event queued before now has been handled. */
  #barrierPassed(seq: number): Promise<void> {
    const name = `b.${seq}`;
    const path = join(this.#barrierDir, name);
    return new Promise<void>((resolve) => {
      this.#waiting.set(name, () => {
        try {
          unlinkSync(path);
        } catch {
          // already gone
        }
        resolve();
      });
      try {
        writeFileSync(path, '');
      } catch (err) {
        this.#waiting.delete(name);
        throw wrapIoError(err, `writing the change journal's barrier ${path}`, { writing: true });
      }
    });
  }

  close(): void {
    for (const tw of this.#trees.values()) tw.close();
    this.#trees.clear();
    this.#barrier.close();
    rmSync(this.#barrierDir, { recursive: true, force: true });
  }
}

export interface ChangeJournalOptions {
  /** a directory of the site's own (removed and made anew): the barrier's files go there */
  barrierDir: string;
  /** run the watches on this thread (tests); default: a worker thread */
  inThread?: boolean;
}

/** The site's side of the journal: requests to the watch thread, one answer each. */
export class ChangeJournal {
  readonly #worker: Worker | undefined;
  readonly #core: JournalCore | undefined;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #seq = 0;
  #failed: Error | undefined;

  constructor(o: ChangeJournalOptions) {
    if (o.inThread) {
      this.#core = new JournalCore(o.barrierDir);
      return;
    }
    const execArgv = workerExecArgv();
    this.#worker = new Worker(new URL(import.meta.url), { workerData: { journal: o.barrierDir }, name: 'ferry-journal', ...(execArgv ? { execArgv } : {}) });
    this.#worker.unref();
    this.#worker.on('message', (m: Reply) => {
      const p = this.#pending.get(m.seq);
      if (!p) return;
      this.#pending.delete(m.seq);
      if ('error' in m) p.reject(new FerryError('INTERNAL', `change journal: ${m.error}`));
      else p.resolve(m.ok);
    });
    const fail = (err: Error) => {
      this.#failed ??= err;
      for (const p of this.#pending.values()) p.reject(new FerryError('INTERNAL', `change journal stopped: ${err.message}`));
      this.#pending.clear();
    };
    this.#worker.on('error', fail);
    this.#worker.on('exit', (code) => fail(new Error(`its thread exited (${code})`)));
  }

  #ask(r: Ask): Promise<unknown> {
    const seq = ++this.#seq;
    const req = { ...r, seq } as Request;
    if (this.#core) return this.#core.handle(req);
    if (this.#failed) return Promise.reject(new FerryError('INTERNAL', `change journal stopped: ${this.#failed.message}`));
    return new Promise((resolve, reject) => {
      this.#pending.set(seq, { resolve, reject });
      this.#worker!.ref();
      this.#worker!.postMessage(req);
    }).finally(() => {
      if (this.#pending.size === 0) this.#worker?.unref();
    });
  }

  /** Watch a tree (again: the old watches go, and with them what they saw). */
  watch(key: string, root: string, o: { skipAtRoot?: string; maxWatches?: number } = {}): Promise<WatchInfo> {
    return this.#ask({ t: 'watch', key, root, ...o }) as Promise<WatchInfo>;
  }

  /** Everything that changed in the tree since the last take (or the watch), up to now. */
  take(key: string): Promise<DirtySet> {
    return this.#ask({ t: 'take', key }) as Promise<DirtySet>;
  }

  /** Give back a taken set whose capture failed: its changes count for the next take. */
  putBack(key: string, set: DirtySet): Promise<void> {
    return this.#ask({ t: 'putBack', key, set }) as Promise<void>;
  }

  unwatch(key: string): Promise<void> {
    return this.#ask({ t: 'unwatch', key }) as Promise<void>;
  }

  info(key: string): Promise<WatchInfo | null> {
    return this.#ask({ t: 'info', key }) as Promise<WatchInfo | null>;
  }

  async close(): Promise<void> {
    this.#core?.close();
    if (this.#worker) {
      this.#worker.postMessage({ t: 'close' });
      await this.#worker.terminate();
    }
  }
}

// The worker's side.
if (!isMainThread && parentPort && (workerData as { journal?: string } | null)?.journal) {
  const core = new JournalCore((workerData as { journal: string }).journal);
  const port = parentPort;
  port.on('message', (r: Request | { t: 'close' }) => {
    if (r.t === 'close') {
      core.close();
      port.close();
      return;
    }
    core.handle(r).then(
      (ok) => port.postMessage({ seq: r.seq, ok } satisfies Reply),
      (err) => port.postMessage({ seq: r.seq, error: String((err as Error)?.message ?? err) } satisfies Reply),
    );
  });
}
