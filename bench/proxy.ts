// Byte-counting TCP proxies on loopback, for the replication benchmark.
//
// Each proxy listens on 127.0.0.1:<ephemeral> and forwards every connection
// to 127.0.0.1:<target>, counting the payload bytes in each direction (what
// the two ends write into their sockets: TLS records, HTTP/2 frames, rsync's
// protocol; not TCP/IP headers). The proxies run in a worker thread, so the
// counts stay exact and the forwarding keeps going while the main thread is
// busy, and the counters live in shared memory, readable at any moment
// without a message round trip. The target can be changed between
// connections (a restarted daemon on a new port keeps the same proxy port).

import { createServer, connect, type Server, type Socket } from 'node:net';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

const SLOTS = 16;
// Per slot: [bytes client->target, bytes target->client, connections].
const FIELDS = 3;

export interface ProxyCount {
  /** Bytes the connecting side sent (towards the target). */
  up: number;
  /** Bytes the target sent back. */
  down: number;
  connections: number;
}

interface WorkerData {
  countingProxy: true;
  counts: SharedArrayBuffer;
  targets: SharedArrayBuffer;
}

type Request = { op: 'add'; slot: number } | { op: 'close' };
type Reply = { op: 'added'; slot: number; port: number } | { op: 'error'; slot: number; message: string } | { op: 'closed' };

export class CountingProxies {
  private readonly worker: Worker;
  private readonly counts: BigInt64Array;
  private readonly targets: Int32Array;
  private readonly names: string[] = [];

  private constructor(worker: Worker, counts: SharedArrayBuffer, targets: SharedArrayBuffer) {
    this.worker = worker;
    this.counts = new BigInt64Array(counts);
    this.targets = new Int32Array(targets);
  }

  static start(): CountingProxies {
    const counts = new SharedArrayBuffer(SLOTS * FIELDS * 8);
    const targets = new SharedArrayBuffer(SLOTS * 4);
    const data: WorkerData = { countingProxy: true, counts, targets };
    const worker = new Worker(new URL(import.meta.url), { workerData: data });
    return new CountingProxies(worker, counts, targets);
  }

  /** Starts a proxy named `name` towards 127.0.0.1:targetPort; returns its slot and port. */
  add(name: string, targetPort: number): Promise<{ slot: number; port: number }> {
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
      this.worker.postMessage({ op: 'add', slot } satisfies Request);
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
  const servers: Server[] = [];
  const sockets = new Set<Socket>();
  const port = parentPort!;
  port.on('message', (m: Request) => {
    if (m.op === 'close') {
      for (const s of sockets) s.destroy();
      let open = servers.length;
      if (open === 0) port.postMessage({ op: 'closed' } satisfies Reply);
      for (const server of servers) {
        server.close(() => {
          if (--open === 0) port.postMessage({ op: 'closed' } satisfies Reply);
        });
      }
      return;
    }
    const slot = m.slot;
    const base = slot * FIELDS;
    const server = createServer({ noDelay: true }, (client) => {
      Atomics.add(counts, base + 2, 1n);
      const upstream = connect({ host: '127.0.0.1', port: Atomics.load(targets, slot), noDelay: true });
      sockets.add(client);
      sockets.add(upstream);
      client.on('data', (chunk: Buffer) => void Atomics.add(counts, base, BigInt(chunk.length)));
      upstream.on('data', (chunk: Buffer) => void Atomics.add(counts, base + 1, BigInt(chunk.length)));
      // pipe() forwards with backpressure and passes a half-close (FIN) on.
      client.pipe(upstream);
      upstream.pipe(client);
      const cut = (): void => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', cut);
      upstream.on('error', cut);
      client.on('close', () => {
        sockets.delete(client);
        if (!upstream.writableEnded) upstream.end();
      });
      upstream.on('close', () => {
        sockets.delete(upstream);
        if (!client.writableEnded) client.end();
      });
    });
    servers.push(server);
    server.on('error', (err) => port.postMessage({ op: 'error', slot, message: err.message } satisfies Reply));
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      port.postMessage({ op: 'added', slot, port: typeof address === 'object' && address ? address.port : 0 } satisfies Reply);
    });
  });
}

if (!isMainThread && (workerData as Partial<WorkerData> | null)?.countingProxy) runWorker(workerData as WorkerData);
