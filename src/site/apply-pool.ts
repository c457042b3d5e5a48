// Applying new subtrees of a replica on worker threads. An initial apply (or
// one that adds whole directories) writes every file of the snapshot:
// decompressing its chunks, creating, writing and renaming each file, one
// after another, on one thread. The directories directly below a member
// root that the replica does not have yet are independent of each other, so
// each is handed to a worker (ApplyOptions.subtrees), which opens the site's
// catalog read-only, reads the (committed, flushed) objects itself and
// writes the subtree; the member's applier makes the hard links once every
// subtree is in place. Two workers: the source side is idle during an apply.
//
// Owns: the workers and their messages. Must never: write outside the
// subtree it was given (the same applier code, rooted at the member, with
// the same checks), or keep the process alive when idle.
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { ObjectId } from '../core/ids.ts';
import { FerryError, isFerryError } from '../core/errors.ts';
import { applySubtree, type SubtreeResult, type SubtreeRunner } from '../replication/apply.ts';
import type { TreeEntry } from '../snapshot/model.ts';
import type { CachedFile } from '../snapshot/stat-cache.ts';
import { Site } from './site.ts';

const WORKERS = 2;

interface JobIn {
  seq: number;
  home: string;
  root: Uint8Array;
  dir: Uint8Array;
  rel: string;
  tree: string;
  meta: TreeEntry;
  noOwner?: boolean;
}

type JobOut = { seq: number; result: SubtreeResult } | { seq: number; error: { code: string; message: string } };

const toBuffer = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

/** Buffers arrive as Uint8Array from another thread: make the entry's Buffer fields Buffers again. */
function reviveEntry(e: TreeEntry): TreeEntry {
  return { ...e, name: toBuffer(e.name), ...(e.target ? { target: toBuffer(e.target) } : {}), xattrs: (e.xattrs ?? []).map(([k, v]) => [toBuffer(k), toBuffer(v)]) };
}

export class ApplyPool {
  readonly #home: string;
  readonly #slots: Array<{ worker: Worker; busy: number }> = [];
  readonly #waiting = new Map<number, { resolve: (r: SubtreeResult) => void; reject: (e: Error) => void; slot: { worker: Worker; busy: number } }>();
  #seq = 0;

  constructor(home: string) {
    this.#home = home;
  }

  readonly run: SubtreeRunner = (job) => {
    const slot = this.#pick();
    const seq = ++this.#seq;
    if (slot.busy++ === 0) slot.worker.ref();
    return new Promise<SubtreeResult>((resolve, reject) => {
      this.#waiting.set(seq, { resolve, reject, slot });
      const msg: JobIn = { seq, home: this.#home, root: job.root, dir: job.dir, rel: job.rel, tree: job.tree, meta: job.meta, noOwner: job.noOwner };
      slot.worker.postMessage(msg);
    });
  };

  async close(): Promise<void> {
    await Promise.all(this.#slots.splice(0).map((s) => s.worker.terminate()));
  }

  #pick(): { worker: Worker; busy: number } {
    if (this.#slots.length < WORKERS && this.#slots.every((s) => s.busy > 0)) return this.#spawn();
    return this.#slots.reduce((a, b) => (b.busy < a.busy ? b : a));
  }

  #spawn(): { worker: Worker; busy: number } {
    const worker = new Worker(new URL(import.meta.url), {
      workerData: { ferryApplyWorker: true },
      ...(process.execArgv.some((x) => /^(-e|-p|-pe|--eval|--print|--input-type)(=|$)/.test(x)) ? { execArgv: [] } : {}),
      name: `ferry-apply-${this.#slots.length}`,
    });
    const slot = { worker, busy: 0 };
    worker.unref();
    worker.on('message', (m: JobOut) => {
      const w = this.#waiting.get(m.seq);
      if (!w) return;
      this.#waiting.delete(m.seq);
      if (--w.slot.busy === 0) w.slot.worker.unref();
      if ('error' in m) w.reject(new FerryError(m.error.code as never, m.error.message));
      else {
        const r = m.result;
        w.resolve({
          ...r,
          links: r.links.map((l) => ({ ...l, path: toBuffer(l.path), parent: toBuffer(l.parent), e: reviveEntry(l.e), ...(l.parentMeta ? { parentMeta: reviveEntry(l.parentMeta) } : {}) })),
        });
      }
    });
    const fail = (err: Error) => {
      const i = this.#slots.indexOf(slot);
      if (i >= 0) this.#slots.splice(i, 1);
      for (const [seq, w] of this.#waiting) {
        if (w.slot !== slot) continue;
        this.#waiting.delete(seq);
        w.reject(new FerryError('INTERNAL', `an apply worker failed: ${err.message}`));
      }
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`exited with code ${code}`)));
    this.#slots.push(slot);
    return slot;
  }
}

if (!isMainThread && parentPort && (workerData as { ferryApplyWorker?: boolean } | null)?.ferryApplyWorker) {
  const port = parentPort;
  const sites = new Map<string, Site>();
  port.on('message', (m: JobIn) => {
    try {
      let site = sites.get(m.home);
      if (!site) sites.set(m.home, (site = Site.open(m.home, { readOnly: true })));
      const store = site.store;
      const written: Array<[string, string, CachedFile]> = [];
      const warnings: Array<[string, string]> = [];
      const r = applySubtree(toBuffer(m.root), toBuffer(m.dir), m.rel, m.tree as ObjectId, reviveEntry(m.meta), {
        // objects were verified when they arrived; the replica is verified after the apply (receiver.ts)
        store: { has: (id) => store.has(id), info: (id) => store.info(id), get: (id) => store.getUnhashed(id) },
        noOwner: m.noOwner,
        onFileWritten: (dir, name, f) => written.push([dir, name, f]),
        onWarning: (p, msg) => warnings.push([p, msg]),
      });
      port.postMessage({ seq: m.seq, result: { ...r, written, warnings } } satisfies JobOut);
    } catch (err) {
      const e = isFerryError(err) ? { code: err.code, message: err.message } : { code: 'INTERNAL', message: String((err as Error)?.stack ?? err) };
      port.postMessage({ seq: m.seq, error: e } satisfies JobOut);
    }
  });
}
