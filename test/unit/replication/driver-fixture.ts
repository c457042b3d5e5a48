// Fakes for the replication driver's unit tests (driver-*.test.ts): a site in
// a temporary directory gives the real catalog and store, a fake source takes
// snapshots with it (and can be told to fail), and a fake Receiver keeps the
// objects and snapshots it was given in memory, records every call, and fails
// or refuses where a test says.
import { PROTOCOL_VERSION } from '../../../src/replication/types.ts';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FerryError, type ErrorCode } from '../../../src/core/errors.ts';
import type { ObjectId } from '../../../src/core/ids.ts';
import type { UpdateSource } from '../../../src/replication/driver/types.ts';
import type { WireObject } from '../../../src/replication/protocol.ts';
import type { CommitRequest, CommitResponse, HelloRequest, HelloResponse, PutResult, Receiver } from '../../../src/replication/types.ts';
import type { ChunkPool } from '../../../src/snapshot/chunk-pool.ts';
import { getMirror, type Mirror } from '../../../src/catalog/mirrors.ts';
import type { SnapshotRecord } from '../../../src/catalog/snapshots.ts';
import { createMirror } from '../../../src/site/mirrors.ts';
import { addPeer } from '../../../src/site/peers.ts';
import type { Site } from '../../../src/site/site.ts';
import { createSnapshot } from '../../../src/site/snapshots.ts';
import { createVolume } from '../../../src/site/volumes.ts';
import { withLocalSite } from '../local-site.ts';

/** Where a FakeReceiver fails: the call named throws `error` (once, unless `times` says more). */
export interface Fault {
  at: 'hello' | 'missing' | 'put' | 'commit';
  error: ErrorCode;
  times?: number;
}

export class FakeReceiver implements Receiver {
  readonly objects = new Set<string>();
  snapshots: Array<{ id: string; name: string | null; time: number }> = [];
  applied: string | null = null;
  delta = false;
  /** commits answer applied: false (writes found in the replica) */
  refuse = false;
  faults: Fault[] = [];
  readonly calls: string[] = [];
  readonly commits: CommitRequest[] = [];
  readonly hellos: HelloRequest[] = [];
  /** the destination's step timings each commit answers */
  phases: Record<string, unknown> | undefined;

  #fault(at: Fault['at']): void {
    this.calls.push(at);
    const f = this.faults.find((x) => x.at === at && (x.times ?? 1) > 0);
    if (!f) return;
    f.times = (f.times ?? 1) - 1;
    throw new FerryError(f.error, `fake ${at} failed`);
  }

  async hello(req: HelloRequest): Promise<HelloResponse> {
    this.#fault('hello');
    this.hellos.push(req);
    return { protocol: PROTOCOL_VERSION, volume: req.volume, snapshots: this.snapshots.map((s) => ({ ...s })), applied: this.applied, applying: false, replicas: [], ...(this.delta ? { delta: true } : {}) };
  }

  async missing(_volume: string, ids: ObjectId[]): Promise<boolean[]> {
    this.#fault('missing');
    return ids.map((id) => !this.objects.has(id));
  }

  async put(_volume: string, objects: AsyncIterable<WireObject>): Promise<PutResult> {
    this.#fault('put');
    let n = 0;
    for await (const o of objects) {
      this.objects.add(o.id);
      n++;
    }
    return { received: n, stored: n, bytes: 0 };
  }

  async commit(_volume: string, req: CommitRequest): Promise<CommitResponse> {
    this.#fault('commit');
    this.commits.push(req);
    if (!this.objects.has(req.manifest)) throw new FerryError('PROTOCOL', `commit of ${req.snapshot} before its manifest arrived`);
    // As a real destination: the snapshot is committed there either way, only its apply may be refused.
    this.snapshots.push({ id: req.snapshot, name: null, time: 0 });
    if (this.refuse && !req.force) return { snapshot: req.snapshot, applied: false, refused: 'the replica was written', writesSnapshot: 'W' };
    this.applied = req.snapshot;
    return { snapshot: req.snapshot, applied: true, ...(this.phases ? { phases: this.phases as Record<string, number> } : {}) };
  }
}

/** A source over a real site's catalog and store; its captures are real snapshots, and may be made to fail. */
export interface FakeSource extends UpdateSource {
  captures: number;
  failCapture?: ErrorCode;
}

export function fakeSource(site: Site, pool: ChunkPool): FakeSource {
  const src: FakeSource = {
    catalog: site.catalog,
    store: site.store,
    get writers() {
      return site.writers;
    },
    captures: 0,
    capture: async (volume, o) => {
      src.captures++;
      if (src.failCapture) throw new FerryError(src.failCapture, 'fake capture failed');
      return createSnapshot(site, volume, { pool, signal: o.signal, onWarning: o.onWarning });
    },
  };
  return src;
}

export const SITE_B = 'B'.repeat(51) + 'A';
export const SITE_C = 'C'.repeat(51) + 'Q';

export interface Fixture {
  dir: string;
  site: Site;
  pool: ChunkPool;
  source: FakeSource;
  /** write `text` into the volume's one file */
  write(text: string): void;
  /** a snapshot of the volume, taken now */
  snap(): Promise<SnapshotRecord>;
  mirror(peer?: string): Mirror;
}

/** A site with volume `app` (one small tree), paired with `b` and `c`, and a mirror of `app` to `b` (uninitialized). */
export function withDriverSite(fn: (f: Fixture) => Promise<void>, o: { siblings?: boolean; scheduleS?: number } = {}): Promise<void> {
  return withLocalSite('a', async ({ dir, site, pool }) => {
    const data = join(dir, 'data');
    mkdirSync(data);
    const write = (text: string) => writeFileSync(join(data, 'f'), text);
    write('one');
    createVolume(site, 'app', { members: [{ path: data }] });
    addPeer(site, 'b', 'https://127.0.0.1:9', SITE_B);
    addPeer(site, 'c', 'https://127.0.0.1:9', SITE_C);
    createMirror(site, { volume: 'app', to: 'b', scheduleS: o.scheduleS ?? null });
    if (o.siblings) createMirror(site, { volume: 'app', to: 'c' });
    await fn({ dir, site, pool, source: fakeSource(site, pool), write, snap: async () => (await createSnapshot(site, 'app', { pool })).snapshot, mirror: (peer = 'b') => getMirror(site.catalog, 'app', peer) });
  });
}

export const eventsOf = (site: Site, kind: string) =>
  site.catalog.db.all<{ outcome: string; detail: string }>('SELECT outcome, detail FROM events WHERE kind = ? ORDER BY id', kind).map((r) => ({ outcome: r.outcome, ...JSON.parse(r.detail) }));
