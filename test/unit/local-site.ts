// A site in a temporary directory with a one-worker chunk pool, for unit tests
// that take real snapshots in-process; closed and removed after `fn`.
import { join } from 'node:path';
import { mkdirSync, writeFileSync } from 'node:fs';
import { Site, type SiteOptions } from '../../src/site/site.ts';
import { sendSnapshot } from '../../src/replication/sender.ts';
import { PROTOCOL_VERSION, type CommitRequest, type CommitResponse } from '../../src/replication/types.ts';
import { SiteReceiver } from '../../src/site/receiver.ts';
import type { SnapshotRecord } from '../../src/site/snapshots.ts';
import { createVolume } from '../../src/site/volumes.ts';
import { ChunkPool } from '../../src/snapshot/chunk-pool.ts';
import { tempDir } from '../helpers.ts';

export async function withLocalSite<T>(name: string, fn: (c: { dir: string; site: Site; pool: ChunkPool }) => Promise<T>, options: SiteOptions = {}): Promise<T> {
  const tmp = tempDir();
  const site = Site.init(join(tmp.path, 'home'), name, options);
  const pool = new ChunkPool({ workers: 1 });
  try {
    return await fn({ dir: tmp.path, site, pool });
  } finally {
    await pool.close();
    site.close();
    tmp.cleanup();
  }
}

/** london, with a volume of one file, and tokyo following it (keeping `keep`); `send` sends a snapshot's objects and commits it with `extra`. */
export async function londonToTokyo(o: { keep: number; clock?: { now(): number } }, fn: (c: { london: Site; pool: ChunkPool; data: string; replica: string; send: (s: SnapshotRecord, extra?: Partial<CommitRequest>) => Promise<CommitResponse>; tokyo: Site }) => Promise<void>): Promise<void> {
  const tmp = tempDir();
  const london = Site.init(join(tmp.path, 'london'), 'london', o.clock ? { clock: o.clock } : {});
  const tokyo = Site.init(join(tmp.path, 'tokyo'), 'tokyo');
  const pool = new ChunkPool({ workers: 1 });
  try {
    const data = join(tmp.path, 'data');
    mkdirSync(data);
    writeFileSync(join(data, 'a.txt'), 'one\n');
    createVolume(london, 'vol', { members: [{ kind: 'tree', path: data }] });
    const rx = new SiteReceiver(tokyo, london.id, pool);
    const replica = (await rx.hello({ protocol: PROTOCOL_VERSION, sourceVolume: 'vol', volume: 'vol', members: [{ name: 'data', kind: 'tree' }], keep: o.keep })).replicas[0].path;
    const send = async (s: SnapshotRecord, extra: Partial<CommitRequest> = {}) => {
      await sendSnapshot(london.store, rx, 'vol', s.manifest);
      return rx.commit('vol', { snapshot: s.id, manifest: s.manifest, ...extra });
    };
    await fn({ london, tokyo, pool, data, replica, send });
  } finally {
    await pool.close();
    london.close();
    tokyo.close();
    tmp.cleanup();
  }
}
