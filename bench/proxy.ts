// The proxies every benchmarked connection crosses: each forwards
// connections from 127.0.0.1:<ephemeral> to 127.0.0.1:<target> over one
// model of the link between site a and site b (bench/link.ts; on loopback
// the model adds nothing and the proxies only count), counting the payload
// bytes in each direction (what the two ends write into their sockets: TLS
// records, HTTP/2 frames, rsync's protocol, a btrfs send stream; not TCP/IP
// headers). Every tool's connections cross the same link: ferry's peer
// connections both ways, rsync's connection to its daemon, the btrfs stream.
//
// The proxies run in a worker thread, so the forwarding keeps its pace while
// the benchmark's main thread is busy, and the counters live in shared
// memory, readable at any moment without a message round trip. The target
// can be changed between connections (a restarted daemon on a new port keeps
// the same proxy port).

import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

import { Link, LinkProxy, type LinkSpec } from './link.ts';

const SLOTS = 16;
// Per slot: [bytes client->target, bytes target->client, connections].
const FIELDS = 3;
// After the slots: segments lost towards b, towards a.
const LINK_FIELDS = 2;

export interface ProxyCount {
  /** Bytes the connecting side sent (towards the target). */
  up: number;
  /** Bytes the target sent back. */
  down: number;
  connections: number;
}

interface WorkerData {
  linkProxies: true;
  spec: LinkSpec;
  seed: number;
  counts: SharedArrayBuffer;
  targets: SharedArrayBuffer;
}

type Request = { op: 'add'; slot: number; from: 'a' | 'b' } | { op: 'close' };
type Reply = { op: 'added'; slot: number; port: number } | { op: 'error'; slot: number; message: string } | { op: 'closed' };

export class LinkProxies {
  readonly spec: LinkSpec;
  private readonly worker: Worker;
  private readonly counts: BigInt64Array;
  private readonly targets: Int32Array;
  private readonly names: string[] = [];

  private constructor(spec: LinkSpec, worker: Worker, counts: SharedArrayBuffer, targets: SharedArrayBuffer) {
    this.spec = spec;
    this.worker = worker;
    this.counts = new BigInt64Array(counts);
    this.targets = new Int32Array(targets);
  }

  /** A worker with one link of this spec between site a and site b; `seed` drives the loss. */
  static start(spec: LinkSpec, seed = 1): LinkProxies {
    const counts = new SharedArrayBuffer((SLOTS * FIELDS + LINK_FIELDS) * 8);
    const targets = new SharedArrayBuffer(SLOTS * 4);
    const data: WorkerData = { linkProxies: true, spec, seed, counts, targets };
    const worker = new Worker(new URL(import.meta.url), { workerData: data });
    return new LinkProxies(spec, worker, counts, targets);
  }

  /**
   * Starts a proxy named `name` towards 127.0.0.1:targetPort; the connecting
   * side is at site `from` (its bytes go towards the other site). Returns its
   * slot and port.
   */
  add(name: string, targetPort: number, from: 'a' | 'b'): Promise<{ slot: number; port: number }> {
    const slot = this.names.length;
    if (slot >= SLOTS) throw new Error(`at most ${SLOTS} proxies`);
    this.names.push(name);
    Atomics.store(this.targets, slot, targetPort);
    return new Promise((resolve, reject) => {
      const onMessage = (m: Reply): void => {
        if (m.op === 'added' && m.slot === slot) {
          this.worker.off('message', onMessage);
          resolve({ slot, port: m.port });
        } else if (m.op === 'error' && m.slot === slot) {
          this.worker.off('message', onMessage);
          reject(new Error(`proxy ${name}: ${m.message}`));
        }
      };
      this.worker.on('message', onMessage);
      this.worker.postMessage({ op: 'add', slot, from } satisfies Request);
    });
  }

  /** Points a proxy at another port (for connections made from now on). */
  retarget(slot: number, targetPort: number): void {
    Atomics.store(this.targets, slot, targetPort);
  }

  read(slot: number): ProxyCount {
    const base = slot * FIELDS;
    return {
      up: Number(Atomics.load(this.counts, base)),
      down: Number(Atomics.load(this.counts, base + 1)),
      connections: Number(Atomics.load(this.counts, base + 2)),
    };
  }

  /** Segments the loss model dropped so far, each way. */
  lostSegments(): { towardsB: number; towardsA: number } {
    const base = SLOTS * FIELDS;
    return { towardsB: Number(Atomics.load(this.counts, base)), towardsA: Number(Atomics.load(this.counts, base + 1)) };
  }

  /** Stops every proxy (open connections are cut) and the worker. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 2000);
      this.worker.once('message', () => {
        clearTimeout(timer);
        resolve();
      });
      this.worker.postMessage({ op: 'close' } satisfies Request);
    });
    await this.worker.terminate();
  }
}

/** The difference of two readings. */
export function countDelta(after: ProxyCount, before: ProxyCount): ProxyCount {
  return { up: after.up - before.up, down: after.down - before.down, connections: after.connections - before.connections };
}

function runWorker(data: WorkerData): void {
  const counts = new BigInt64Array(data.counts);
  const targets = new Int32Array(data.targets);
  const link = new Link(data.spec, data.seed);
  const proxies: LinkProxy[] = [];
  const port = parentPort!;
  const lossBase = SLOTS * FIELDS;
  const lossTimer = setInterval(() => {
    Atomics.store(counts, lossBase, BigInt(link.towardsB.lostSegments));
    Atomics.store(counts, lossBase + 1, BigInt(link.towardsA.lostSegments));
  }, 200);
  port.on('message', (m: Request) => {
    if (m.op === 'close') {
      clearInterval(lossTimer);
      void Promise.all(proxies.map((p) => p.close())).then(() => port.postMessage({ op: 'closed' } satisfies Reply));
      return;
    }
    const slot = m.slot;
    const base = slot * FIELDS;
    LinkProxy.start(link, m.from, () => Atomics.load(targets, slot), {
      up: (n) => void Atomics.add(counts, base, BigInt(n)),
      down: (n) => void Atomics.add(counts, base + 1, BigInt(n)),
      connection: () => void Atomics.add(counts, base + 2, 1n),
    }).then((proxy) => {
      proxies.push(proxy);
      port.postMessage({ op: 'added', slot, port: proxy.port } satisfies Reply);
    }, (err: unknown) => port.postMessage({ op: 'error', slot, message: err instanceof Error ? err.message : String(err) } satisfies Reply));
  });
}

if (!isMainThread && (workerData as Partial<WorkerData> | null)?.linkProxies) runWorker(workerData as WorkerData);
