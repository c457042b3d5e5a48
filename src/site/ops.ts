// The operations a site performs on request: one registry used both by the
// daemon's local socket and by CLI commands run without a daemon, so the
// two paths cannot drift. Each operation validates its arguments, runs
// against the engine, and returns plain JSON.
import { FerryError } from '../core/errors.ts';
import type { TransferProgress } from '../replication/sender.ts';
import type { Engine } from './engine.ts';
import { formatSiteId } from './identity.ts';
import { createMirror, getMirror, listMirrors, mirrorStatus, pauseMirror, removeMirror } from './mirrors.ts';
import { addPeer, listPeers, removePeer } from './peers.ts';
import { replicaRoot } from './receiver.ts';
import { createSnapshot, newestSnapshot } from './snapshots.ts';
import { listVolumes } from './volumes.ts';

export interface OpContext {
  engine: Engine;
  /** true inside the daemon: long work may be queued instead of awaited */
  daemon: boolean;
  progress?: (p: TransferProgress) => void;
}

type Args = Record<string, unknown>;

function str(a: Args, k: string, required = true): string | undefined {
  const v = a[k];
  if (v === undefined || v === null) {
    if (required) throw new FerryError('USAGE', `missing ${k}`);
    return undefined;
  }
  if (typeof v !== 'string') throw new FerryError('USAGE', `${k} must be a string`);
  return v;
}

function num(a: Args, k: string): number | undefined {
  const v = a[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new FerryError('USAGE', `${k} must be a non-negative number`);
  return v;
}

export function statusReport(engine: Engine): Record<string, unknown> {
  const site = engine.site;
  const mirrors = engine.status();
  const secondaries = site.db.all<{ volume: string; source_site: string; source_volume: string; applied: string | null; applying: string | null; consistent: number; updated_at: number }>('SELECT * FROM secondaries ORDER BY volume');
  const peers = listPeers(site);
  const peerName = (id: string) => peers.find((p) => p.id === id)?.name ?? id;
  return {
    site: { name: site.name, id: site.id, idFormatted: formatSiteId(site.id), home: site.paths.home, replicaRoot: replicaRoot(site), now: site.clock.now() },
    peers,
    volumes: listVolumes(site).map((v) => {
      const newest = newestSnapshot(site, v.name);
      const sec = secondaries.find((s) => s.volume === v.name);
      return {
        name: v.name,
        role: v.role,
        members: v.members,
        newestSnapshot: newest ? { id: newest.id, name: newest.name, time: newest.time } : null,
        mirrors: mirrors.filter((m) => m.volume === v.name),
        ...(sec
          ? {
              secondary: {
                source: peerName(sec.source_site),
                sourceVolume: sec.source_volume,
                applied: sec.applied,
                applying: sec.applying,
                consistent: sec.consistent === 1,
                updatedAt: sec.updated_at,
              },
            }
          : {}),
      };
    }),
  };
}

export const OPS: Record<string, (ctx: OpContext, args: Args) => Promise<unknown>> = {
  async 'site.add'(ctx, a) {
    return addPeer(ctx.engine.site, str(a, 'name')!, str(a, 'url')!, str(a, 'id')!);
  },
  async 'site.list'(ctx) {
    return { self: { name: ctx.engine.site.name, id: ctx.engine.site.id }, peers: listPeers(ctx.engine.site) };
  },
  async 'site.remove'(ctx, a) {
    removePeer(ctx.engine.site, str(a, 'name')!);
    return { removed: a.name };
  },
  async 'mirror.create'(ctx, a) {
    return createMirror(ctx.engine.site, {
      volume: str(a, 'volume')!,
      to: str(a, 'to')!,
      scheduleS: num(a, 'scheduleS') ?? null,
      minDelayS: num(a, 'minDelayS'),
      maxDelayS: num(a, 'maxDelayS'),
      bandwidth: num(a, 'bandwidth') ?? null,
    });
  },
  async 'mirror.list'(ctx, a) {
    return listMirrors(ctx.engine.site, str(a, 'volume', false)).map((m) => mirrorStatus(ctx.engine.site, m, ctx.engine.progressOf(m.id)));
  },
  async 'mirror.initialize'(ctx, a) {
    return runUpdate(ctx, a, true);
  },
  async 'mirror.update'(ctx, a) {
    return runUpdate(ctx, a, false);
  },
  async 'mirror.pause'(ctx, a) {
    return pauseMirror(ctx.engine.site, str(a, 'volume')!, str(a, 'to', false), true);
  },
  async 'mirror.resume'(ctx, a) {
    return pauseMirror(ctx.engine.site, str(a, 'volume')!, str(a, 'to', false), false);
  },
  async 'mirror.remove'(ctx, a) {
    removeMirror(ctx.engine.site, str(a, 'volume')!, str(a, 'to', false));
    return { removed: `${a.volume}@${a.to ?? ''}` };
  },
  async status(ctx) {
    return statusReport(ctx.engine);
  },
  async 'snapshot.create'(ctx, a) {
    return createSnapshot(ctx.engine.site, str(a, 'volume')!, { name: str(a, 'name', false), pool: ctx.engine.pool });
  },
};

async function runUpdate(ctx: OpContext, a: Args, initialize: boolean): Promise<unknown> {
  const volume = str(a, 'volume')!;
  const to = str(a, 'to', false);
  const m = getMirror(ctx.engine.site, volume, to);
  const job = ctx.engine.update(volume, m.peer, { initialize, snapshot: str(a, 'snapshot', false), force: a.force === true }, ctx.progress);
  if (ctx.daemon && a.wait !== true) {
    job.catch(() => {}); // its outcome is in the mirror's state and the events
    return { queued: true, mirror: m.id };
  }
  return job;
}

export async function runOp(ctx: OpContext, name: string, args: Args): Promise<unknown> {
  const op = OPS[name];
  if (!op) throw new FerryError('USAGE', `unknown operation ${name}`);
  return op(ctx, args ?? {});
}
