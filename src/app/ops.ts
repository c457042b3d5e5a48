// The operations a site performs on request: one registry used both by the
// daemon's local socket and by CLI commands run without a daemon, so the
// two paths cannot drift. Each operation validates its arguments, runs
// against the engine, and returns plain JSON.
import { memoryReport } from '../core/memory.ts';
import { FerryError, isFerryError } from '../core/errors.ts';
import { parseName } from '../core/ids.ts';
import { MAX_SIBLINGS, parseMirrorSettings } from '../replication/protocol.ts';
import type { TransferProgress } from '../replication/sender.ts';
import type { Engine } from '../site/engine.ts';
import { formatSiteId } from '../transport/identity.ts';
import { linkStatus } from '../dr/links.ts';
import { rerunOf, workflowSummary } from '../dr/journal.ts';
import { runningWorkflow } from '../catalog/workflows.ts';
import { createMirror, mirrorStatus, pauseMirror, removeMirror, setMirrorSettings, type MirrorSettingsChange } from '../site/mirrors.ts';
import { addPeer, removePeer } from '../site/peers.ts';
import { replicaRoot } from '../site/paths.ts';
import { applyInFlight } from '../site/receiver.ts';
import { collectionReport } from '../site/auto-collect.ts';
import { collectGarbage, collectGarbageSoon, createSnapshot, executeDeleteSnapshots, planDeleteSnapshots, summarizeGc } from '../site/snapshots.ts';
import { createVolume, parseMemberSpec, removeVolume, updateVolumeSettings, type Hooks, type Volume } from '../site/volumes.ts';
import { journalOf } from '../site/journal-service.ts';
import type { RetentionPolicy } from '../snapshot/retention.ts';
import { readManifest } from '../snapshot/graph.ts';
import { findPath, prepareTarget, restoreImage, restoreTree } from '../snapshot/restore.ts';
import { verifySnapshots } from '../snapshot/verify.ts';
import type { Site } from '../site/site.ts';
import { join, resolve } from 'node:path';
import { listLinks } from '../catalog/links.ts';
import { getMirror, listMirrors, type DeltaMode, type Mirror } from '../catalog/mirrors.ts';
import { mirrorsDelivering } from '../catalog/peer-snapshots.ts';
import { listPeers } from '../catalog/peers.ts';
import { listSecondaries } from '../catalog/secondaries.ts';
import { listSplitBrains } from '../catalog/split-brains.ts';
import { latestSnapshot, listSnapshots, resolveSnapshot } from '../catalog/snapshots.ts';
import { getVolume, listVolumes } from '../catalog/volumes.ts';

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

function strings(a: Args, k: string): string[] | undefined {
  const v = a[k];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new FerryError('USAGE', `${k} must be a list of strings`);
  return v;
}

function object<T>(a: Args, k: string): T | undefined {
  const v = a[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) throw new FerryError('USAGE', `${k} must be an object`);
  return v as T;
}

function bool(a: Args, k: string): boolean | undefined {
  const v = a[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw new FerryError('USAGE', `${k} must be true or false`);
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
  const secondaries = listSecondaries(site.catalog);
  const peers = listPeers(site.catalog);
  const peerName = (id: string) => peers.find((p) => p.id === id)?.name ?? id;
  return {
    site: { name: site.name, id: site.id, idFormatted: formatSiteId(site.id), home: site.paths.home, replicaRoot: replicaRoot(site), now: site.clock.now() },
    peers,
    links: listLinks(site.catalog).map((l) => linkStatus(site, l)),
    // The automatic collection (site/auto-collect.ts): what released snapshots left to free, the
    // threshold that triggers a collection, the last collection, and whether one is due at the next idle point.
    store: { storedBytes: site.store.storedBytes(), collection: collectionReport(site) },
    volumes: listVolumes(site.catalog).map((v) => {
      const newest = latestSnapshot(site.catalog, v.name);
      const sec = secondaries.find((s) => s.volume === v.name);
      return {
        name: v.name,
        role: v.role,
        members: v.members,
        newestSnapshot: newest ? { id: newest.id, name: newest.name, time: newest.time } : null,
        // per tree member: whether snapshots read only what changed (live), walk in full next (audit-due), or always (off: the volume's journal is turned off); null: no journal here
        journal: journalOf(site)?.status(v) ?? null,
        mirrors: mirrors.filter((m) => m.volume === v.name),
        // A failover, failback or migrate in progress (src/dr/journal.ts), and its last completed step.
        workflow: workflowSummary(site, v.name),
        // Other sites primary of this volume beside this one, as this site learned (catalog/split-brains.ts): kept until resolved.
        splitBrains: listSplitBrains(site.catalog, v.name).map((b) => ({ site: b.site, name: peerName(b.site), volume: b.remoteVolume, oldPrimary: b.oldPrimary === null ? null : peerName(b.oldPrimary), since: b.foundAt })),
        ...(sec
          ? {
              secondary: {
                source: peerName(sec.source_site),
                sourceId: sec.source_site,
                state: sec.state,
                sourceVolume: sec.source_volume,
                applied: sec.applied,
                applying: sec.applying,
                consistent: sec.consistent === 1,
                // why the apply in `applying` did not complete (null while it runs, or when a crash cut it)
                applyError: sec.applying && sec.apply_error ? (JSON.parse(sec.apply_error) as { code: string; message: string; at: number }) : null,
                // after a failover here: whether the old primary knows (pending: the daemon keeps telling it)
                notice: sec.state === 'broken-off' && sec.failover_notice ? JSON.parse(sec.failover_notice) : null,
                updatedAt: sec.updated_at,
              },
            }
          : {}),
      };
    }),
  };
}

/** A mirror's settings as a peer sends them in a DR call: numbers (null where allowed), checked before anything is stored. */
/** Mirror settings a peer hands over (failback, migrate-accept): the same bounds as every other path (core/units.ts). */
function peerSchedule(v: unknown, what: string): { scheduleS: number | null; minDelayS: number; maxDelayS: number; bandwidth: number | null } {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new FerryError('PROTOCOL', `${what} must be a JSON object of mirror settings`);
  return parseMirrorSettings(v, what);
}

/** The split brains a yielding site hands over with its failback (absent from an older ferry: none). */
function peerSplitBrains(v: unknown): Array<{ site: string; volume: string }> {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.length > 64) throw new FerryError('PROTOCOL', 'failback.splitBrains must be an array of at most 64 entries');
  return v.map((x, i) => {
    const what = `failback.splitBrains[${i}]`;
    if (x === null || typeof x !== 'object' || Array.isArray(x)) throw new FerryError('PROTOCOL', `${what} must be an object`);
    const o = x as Args;
    const site = peerStr(o, 'site', what);
    const volume = peerStr(o, 'volume', what);
    if (!/^[A-Z2-7]{52}$/.test(site)) throw new FerryError('PROTOCOL', `${what}.site must be a site id`);
    try {
      parseName(volume, 'volume');
    } catch (err) {
      throw new FerryError('PROTOCOL', `${what}.volume: ${(err as Error).message}`);
    }
    return { site, volume };
  });
}

/** A string field of a peer's DR call. */
function peerStr(a: Args, k: string, what: string): string {
  const v = a[k];
  if (typeof v !== 'string') throw new FerryError('PROTOCOL', `${what}.${k} must be a string`);
  return v;
}

/** Peer-to-peer DR calls (the daemon routes /v1/dr/<op> here, with the authenticated peer id). */
export async function serveDr(engine: Engine, peerId: string, op: string, a: Args): Promise<unknown> {
  if (a === null || typeof a !== 'object' || Array.isArray(a)) throw new FerryError('PROTOCOL', `the ${op} call must be a JSON object`);
  const { acceptFailoverNotice } = await import('../dr/failover.ts');
  const { describeForPeer, serveFailback } = await import('../dr/failback.ts');
  switch (op) {
    case 'failover-notice':
      return acceptFailoverNotice(engine, peerId, str(a, 'volume')!, { late: a.late === true, force: a.force === true, ...(typeof a.at === 'string' ? { at: parseName(a.at, 'volume') } : {}) });
    case 'state':
      return describeForPeer(engine, peerId, str(a, 'volume')!, str(a, 'base', false) ?? null);
    case 'role': {
      const { describeRole } = await import('../dr/split-brain.ts');
      return describeRole(engine, peerId, str(a, 'volume')!);
    }
    case 'beside': {
      const { acceptBeside } = await import('../dr/beside.ts');
      const from = str(a, 'from')!;
      if (from.length > 256) throw new FerryError('PROTOCOL', 'beside.from must be a site id');
      return acceptBeside(engine, peerId, { volume: parseName(str(a, 'volume')!, 'volume'), from, fromVolume: parseName(str(a, 'fromVolume')!, 'volume') });
    }
    case 'took-over': {
      const { answerTookOver } = await import('../dr/beside.ts');
      const from = str(a, 'from')!;
      if (from.length > 256) throw new FerryError('PROTOCOL', 'took-over.from must be a site id');
      return answerTookOver(engine, peerId, { from, fromVolume: parseName(str(a, 'fromVolume')!, 'volume') });
    }
    case 'changes': {
      const { describeChanges } = await import('../dr/split-brain.ts');
      const lineage = a.lineage;
      if (lineage !== undefined && (!Array.isArray(lineage) || lineage.length > 4096 || lineage.some((x) => typeof x !== 'string' || x.length !== 26))) throw new FerryError('PROTOCOL', 'changes.lineage must be a list of at most 4096 snapshot ids');
      return describeChanges(engine, peerId, str(a, 'volume')!, str(a, 'base')!, lineage as string[] | undefined);
    }
    case 'peer-delete': {
      const { acceptPeerDelete } = await import('../site/peer-snapshots.ts');
      const volume = str(a, 'volume')!;
      return acceptPeerDelete(engine.site, peerId, volume, str(a, 'snapshot')!, applyInFlight(engine.site, volume));
    }
    case 'repoint': {
      const { acceptRepoint } = await import('../dr/migrate-accept.ts');
      return acceptRepoint(engine, peerId, { volume: str(a, 'volume')!, newSource: str(a, 'newSource')!, newSourceVolume: str(a, 'newSourceVolume')! });
    }
    case 'takeover': {
      const { acceptTakeover } = await import('../dr/repoint.ts');
      const snapshots = a.snapshots;
      if (!Array.isArray(snapshots) || snapshots.length > 4096 || snapshots.some((x) => typeof x !== 'string' || x.length !== 26)) throw new FerryError('PROTOCOL', 'takeover.snapshots must be a list of at most 4096 snapshot ids');
      return acceptTakeover(engine, peerId, { volume: str(a, 'volume')!, newSourceVolume: str(a, 'newSourceVolume')!, snapshots: snapshots as string[], oldSource: str(a, 'oldSource', false) ?? null, oldSourceVolume: str(a, 'oldSourceVolume', false) ?? null });
    }
    case 'takeover-notice': {
      const { acceptTakeoverNotice } = await import('../dr/repoint.ts');
      return acceptTakeoverNotice(engine, peerId, { volume: str(a, 'volume')!, by: str(a, 'by')! });
    }
    case 'migrate-accept': {
      const { acceptMigrate } = await import('../dr/migrate-accept.ts');
      if (!Array.isArray(a.others) || a.others.length > MAX_SIBLINGS) throw new FerryError('PROTOCOL', `migrate-accept.others must be a list of at most ${MAX_SIBLINGS} mirrors`);
      const others = a.others.map((x: unknown, i: number) => {
        const what = `migrate-accept.others[${i}]`;
        const o = (x !== null && typeof x === 'object' && !Array.isArray(x) ? x : {}) as Args;
        return { id: peerStr(o, 'id', what), volume: peerStr(o, 'volume', what), ...peerSchedule(x, what) };
      });
      const req = { volume: peerStr(a, 'volume', 'migrate-accept'), final: peerStr(a, 'final', 'migrate-accept'), backTo: peerStr(a, 'backTo', 'migrate-accept'), schedule: peerSchedule(a.schedule, 'migrate-accept.schedule'), others };
      return acceptMigrate(engine, peerId, req);
    }
    case 'failback':
      return serveFailback(engine, peerId, {
        volume: str(a, 'volume')!,
        to: str(a, 'to')!,
        base: str(a, 'base', false) ?? null,
        full: a.full === true,
        schedule: a.schedule == null ? null : peerSchedule(a.schedule, 'failback.schedule'),
        splitBrains: peerSplitBrains(a.splitBrains),
      });
    default:
      throw new FerryError('PROTOCOL', `no DR operation ${op}`);
  }
}

export function describeVolume(site: Site, v: Volume): Volume & { snapshots: number; newest: { id: string; name: string | null; time: number } | null } {
  const snaps = listSnapshots(site.catalog, v.name);
  const n = latestSnapshot(site.catalog, v.name);
  return { ...v, snapshots: snaps.length, newest: n ? { id: n.id, name: n.name, time: n.time } : null };
}

export const OPS: Record<string, (ctx: OpContext, args: Args) => Promise<unknown>> = {
  async 'volume.create'(ctx, a) {
    const site = ctx.engine.site;
    const v = createVolume(site, str(a, 'name')!, {
      members: (strings(a, 'members') ?? []).map(parseMemberSpec),
      hooks: object<Hooks>(a, 'hooks') ?? {},
      retention: object<RetentionPolicy>(a, 'retention') ?? {},
      role: a.secondary === true ? 'secondary' : undefined,
      journal: bool(a, 'journal'),
    });
    return describeVolume(site, v);
  },
  async 'volume.set'(ctx, a) {
    const site = ctx.engine.site;
    const v = updateVolumeSettings(site, str(a, 'name')!, { hooks: object<Hooks>(a, 'hooks'), retention: object<RetentionPolicy>(a, 'retention'), journal: bool(a, 'journal') });
    // The daemon's watches follow at once: turned off, they are released now; turned on, they start
    // now; a member backing off after it ran out of watches is tried again at the next capture.
    await journalOf(site)?.refresh(v, { retry: true });
    return describeVolume(site, v);
  },
  async 'volume.remove'(ctx, a) {
    const site = ctx.engine.site;
    const name = str(a, 'name')!;
    const wf = runningWorkflow(site.catalog, name);
    if (wf) throw new FerryError('VOLUME_IN_USE', `a ${wf.kind} of ${name} is in progress (step ${wf.step}); ${rerunOf(wf)} to finish it before removing the volume`);
    if (applyInFlight(site, name)) throw new FerryError('VOLUME_IN_USE', `an update of ${name} from its primary is being applied here; wait for it (\`ferry status\`), or remove the mirror at the primary first`);
    const r = removeVolume(site, name, { force: a.force === true });
    await journalOf(site)?.forget(name);
    const gc = r.snapshotsRemoved > 0 ? collectGarbageSoon(site) : undefined;
    return { removed: name, ...r, gc: gc ? summarizeGc(gc.plan) : null };
  },
  async 'snapshot.delete'(ctx, a) {
    const site = ctx.engine.site;
    const plan = planDeleteSnapshots(site, str(a, 'volume')!, strings(a, 'snapshots') ?? []);
    if (a.dryRun === true) return { plan };
    const r = executeDeleteSnapshots(site, plan);
    return { deleted: r.deleted, gc: r.gc ? summarizeGc(r.gc.plan) : null, freed: r.gc?.plan.totals.bytesFreed ?? 0, collected: r.gc?.plan.totals.deadObjects ?? 0 };
  },
  async gc(ctx, a) {
    const r = collectGarbage(ctx.engine.site, { dryRun: a.dryRun === true });
    return { executed: r.executed, plan: summarizeGc(r.plan), freed: r.plan.totals.bytesFreed, collected: r.plan.totals.deadObjects };
  },
  async verify(ctx, a) {
    const site = ctx.engine.site;
    const volume = str(a, 'volume', false);
    const vols = volume ? [getVolume(site.catalog, volume).name] : listVolumes(site.catalog).map((v) => v.name);
    const snaps = vols.flatMap((v) => listSnapshots(site.catalog, v));
    const started = Date.now();
    const report = verifySnapshots(site.store, snaps);
    site.event({ kind: 'verify', volume: volume ?? null, outcome: report.damaged.length ? 'failed' : 'ok', detail: { objects: report.objectsChecked, damaged: report.damaged.length } });
    return { ...report, seconds: (Date.now() - started) / 1000, names: Object.fromEntries(snaps.map((s) => [s.id, `${s.volume}@${s.name ?? s.id}`])) };
  },
  async restore(ctx, a) {
    const site = ctx.engine.site;
    const volume = str(a, 'volume')!;
    const s = resolveSnapshot(site.catalog, volume, str(a, 'snapshot')!);
    const manifest = readManifest(site.store, s.manifest);
    const member = str(a, 'member', false);
    const path = str(a, 'path', false);
    let members = manifest.members;
    if (member) {
      members = members.filter((m) => m.name === member);
      if (members.length === 0) throw new FerryError('USAGE', `snapshot ${s.id} has no member ${member}; members: ${manifest.members.map((m) => m.name).join(', ')}`);
    } else if (path && members.length > 1) {
      throw new FerryError('USAGE', `volume ${volume} has several members; say which with --member (${manifest.members.map((m) => m.name).join(', ')})`);
    }
    const target = resolve(str(a, 'target')!);
    const warnings: Array<{ path: string; message: string }> = [];
    const started = Date.now();
    const results = [];
    const targetOf = (m: { name: string }) => (members.length > 1 || (manifest.members.length > 1 && !member) ? join(target, m.name) : target);
    // Every member's target is checked before any is written: a refusal never leaves a volume half restored.
    for (const m of members) {
      if (m.kind === 'image' && path) throw new FerryError('USAGE', `--path does not apply to image member ${m.name}`);
      const isDir = m.kind === 'tree' && ['root', 'dir'].includes(findPath(site.store, m.root, path ?? '').entry.type);
      prepareTarget(targetOf(m), a.force === true, isDir);
    }
    for (const m of members) {
      const t = targetOf(m);
      const opts = { store: site.store, force: a.force === true, noOwner: a.noOwner === true, onWarning: (w: { path: string; message: string }) => warnings.push(w) };
      if (m.kind === 'image') results.push({ member: m.name, target: t, ...restoreImage(m.root, t, opts) });
      else results.push({ member: m.name, target: t, ...restoreTree(m.root, path ?? '', t, opts) });
    }
    site.event({ kind: 'restore', volume, outcome: warnings.length ? 'warning' : 'ok', detail: { snapshot: s.id, target, path: path ?? null } });
    return { snapshot: s.id, results, warnings, seconds: (Date.now() - started) / 1000 };
  },
  async 'site.add'(ctx, a) {
    return addPeer(ctx.engine.site, str(a, 'name')!, str(a, 'url')!, str(a, 'id')!);
  },
  async 'site.list'(ctx) {
    return { self: { name: ctx.engine.site.name, id: ctx.engine.site.id }, peers: listPeers(ctx.engine.site.catalog) };
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
      keepSnapshots: num(a, 'keep') ?? null,
      deltas: str(a, 'deltas', false) as DeltaMode | undefined,
    });
  },
  async 'mirror.set'(ctx, a) {
    const site = ctx.engine.site;
    const change: MirrorSettingsChange = {};
    // Only the settings given change; null clears the schedule, the bandwidth limit and keep.
    if ('scheduleS' in a) change.scheduleS = num(a, 'scheduleS') ?? null;
    if ('minDelayS' in a) change.minDelayS = num(a, 'minDelayS');
    if ('maxDelayS' in a) change.maxDelayS = num(a, 'maxDelayS');
    if ('bandwidth' in a) change.bandwidth = num(a, 'bandwidth') ?? null;
    if ('keep' in a) change.keepSnapshots = num(a, 'keep') ?? null;
    if ('deltas' in a) change.deltas = str(a, 'deltas') as DeltaMode;
    const m = setMirrorSettings(site, str(a, 'volume')!, str(a, 'to', false), change);
    return mirrorStatus(site, m, ctx.engine.progressOf(m.id));
  },
  async 'mirror.repoint'(ctx, a) {
    const { repointSibling, siblingsToRepoint } = await import('../dr/repoint.ts');
    const volume = str(a, 'volume')!;
    const to = str(a, 'to')!;
    const [peer, remote] = to.includes(':') ? [to.slice(0, to.indexOf(':')), to.slice(to.indexOf(':') + 1)] : [to, undefined];
    const known = siblingsToRepoint(ctx.engine, volume).find((t) => t.peer === peer);
    return repointSibling(ctx.engine, volume, peer, remote ?? known?.volume ?? volume, { full: a.full === true, info: known?.info ?? null });
  },
  async 'mirror.list'(ctx, a) {
    return listMirrors(ctx.engine.site.catalog, str(a, 'volume', false)).map((m) => mirrorStatus(ctx.engine.site, m, ctx.engine.progressOf(m.id)));
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
    const site = ctx.engine.site;
    const volume = str(a, 'volume')!;
    const m = getMirror(site.catalog, volume, str(a, 'to', false));
    const wf = workflowSummary(site, volume);
    if (wf) throw new FerryError('MIRROR_STATE', `a ${wf.kind} of ${volume} is in progress (step ${wf.step}): it decides what becomes of its mirrors; let it finish (rerun it) before removing the mirror to ${m.peer}`);
    // An update of this mirror in flight is cancelled and waited for: it must not take holds for a mirror that is gone.
    await ctx.engine.stopJob(m.id, `the mirror ${m.id} is being removed`);
    // A mirror broken off by its destination's failover: that primary beside this one stays known.
    const { keepTakenOver } = await import('../dr/failover.ts');
    await keepTakenOver(ctx.engine, m);
    removeMirror(site, volume, m.peer);
    return { removed: m.id };
  },
  async failover(ctx, a) {
    const { runFailover } = await import('../dr/failover.ts');
    const { siblingsToRepoint, repointSiblings } = await import('../dr/repoint.ts');
    const volume = str(a, 'volume')!;
    // The old primary's other secondaries follow this site from now on (VVR takeover), unless told not
    // to. Run again, failover re-points those still left (each re-point is idempotent).
    const siblings = a.repoint === false ? [] : siblingsToRepoint(ctx.engine, volume);
    const r = await runFailover(ctx.engine, volume, { force: a.force === true, dryRun: a.dryRun === true });
    const plan = { ...r.plan, steps: [...r.plan.steps, ...siblings.map((t) => `re-point ${t.peer ?? t.site}:${t.volume} to follow this site, from the newest snapshot both hold`)] };
    if (!('snapshot' in r)) return { ...r, plan };
    return { ...r, plan, repointed: await repointSiblings(ctx.engine, volume, siblings) };
  },
  async migrate(ctx, a) {
    const { runMigrate } = await import('../dr/migrate.ts');
    return runMigrate(ctx.engine, str(a, 'volume')!, str(a, 'to')!, { dryRun: a.dryRun === true });
  },
  async failback(ctx, a) {
    const { runFailback } = await import('../dr/failback.ts');
    const r = await runFailback(ctx.engine, str(a, 'volume')!, { full: a.full === true, to: str(a, 'to', false), dryRun: a.dryRun === true });
    if (!('update' in r)) return r;
    const plan = r.plan;
    // A secondary now: its mirrors to the other secondaries are the new primary's to run (re-point).
    const { dropSupersededMirrors } = await import('../dr/repoint.ts');
    return { ...r, droppedMirrors: dropSupersededMirrors(ctx.engine, plan.volume) };
  },
  async 'link.create'(ctx, a) {
    const { createLink, linkStatus } = await import('../dr/links.ts');
    const site = ctx.engine.site;
    return linkStatus(site, createLink(site, str(a, 'path')!, { volume: str(a, 'volume')!, member: str(a, 'member', false), snapshot: str(a, 'snapshot', false), scheduleS: num(a, 'scheduleS') ?? null, minDelayS: num(a, 'minDelayS'), maxDelayS: num(a, 'maxDelayS') }));
  },
  async 'link.refresh'(ctx, a) {
    const { refreshLink } = await import('../dr/links.ts');
    return refreshLink(ctx.engine.site, ctx.engine.pool, str(a, 'path')!, { force: a.force === true, snapshot: str(a, 'snapshot', false) });
  },
  async 'link.list'(ctx) {
    const { linkStatus } = await import('../dr/links.ts');
    return listLinks(ctx.engine.site.catalog).map((l) => linkStatus(ctx.engine.site, l));
  },
  async 'link.remove'(ctx, a) {
    const { removeLink } = await import('../dr/links.ts');
    removeLink(ctx.engine.site, str(a, 'path')!, { keepData: a.keepData === true });
    return { removed: a.path };
  },
  async status(ctx) {
    const report = statusReport(ctx.engine);
    // Where both sites may hold the primary role: what each changed since the base, and split brain.
    const { addDivergence } = await import('../dr/split-brain.ts');
    await addDivergence(ctx.engine, report as never);
    // The daemon's own figures: its memory budget, each share's limit, use and peak (core/memory.ts).
    if (ctx.daemon) report.daemon = { pid: process.pid, memory: await memoryReport() };
    return report;
  },
  async 'snapshot.create'(ctx, a) {
    const site = ctx.engine.site;
    const volume = str(a, 'volume')!;
    const r = await createSnapshot(site, volume, { name: str(a, 'name', false), pool: ctx.engine.pool, fullWalk: a.fullWalk === true });
    if (a.peer !== true) return r;
    const { registerPeerSnapshot, peerSnapshotStatus } = await import('../site/peer-snapshots.ts');
    const mirrors = registerPeerSnapshot(site, volume, r.snapshot.id);
    // Deliver now to every secondary, in order with the replication stream; a secondary that
    // cannot be reached keeps it pending and gets it on reconnect.
    const deliveries = mirrors.map((id) => {
      const m = listMirrors(site.catalog, volume).find((x) => x.id === id)!;
      return ctx.engine.update(volume, m.peer, { snapshot: r.snapshot.id, scheduled: true }).then(
        () => ({ mirror: id, ok: true }),
        (err: Error) => ({ mirror: id, ok: false, error: err.message }),
      );
    });
    if (ctx.daemon && a.wait !== true) return { ...r, peer: { queued: mirrors } };
    const results = await Promise.all(deliveries);
    return { ...r, peer: { deliveries: results, status: peerSnapshotStatus(site, volume).find((p) => p.id === r.snapshot.id) } };
  },
  async 'snapshot.peer-delete'(ctx, a) {
    const { requestPeerDelete } = await import('../site/peer-snapshots.ts');
    const site = ctx.engine.site;
    const volume = str(a, 'volume')!;
    const ref = str(a, 'snapshot')!;
    const plan = requestPeerDelete(site, volume, ref, { dryRun: true });
    if (a.dryRun === true) return { snapshot: plan.snapshot, removedAt: [], dryRun: true, wouldRemoveAt: plan.targets.map((t) => t.peerName) };
    // An update delivering it to a secondary must end first: a deletion asked before its commit lands
    // there would find nothing, and the snapshot would arrive after it, held for ever.
    const delivering = mirrorsDelivering(site.catalog, plan.snapshot);
    await ctx.engine.waitJobs(delivering);
    const req = requestPeerDelete(site, volume, ref);
    const [o] = await ctx.engine.deliverPeerDeletions({ snapshot: req.snapshot });
    return o;
  },
  async 'config.apply'(ctx, a) {
    const { applyConfigText } = await import('../config/apply.ts');
    return applyConfigText({ site: ctx.engine.site, run: (op, args) => runOp(ctx, op, args) }, { text: str(a, 'text')!, file: str(a, 'file')!, dryRun: a.dryRun === true, prune: a.prune === true });
  },
  async 'snapshot.peers'(ctx, a) {
    const { peerSnapshotStatus } = await import('../site/peer-snapshots.ts');
    return peerSnapshotStatus(ctx.engine.site, str(a, 'volume')!);
  },
};

/**
 * The mirror an update or initialize runs. None to a site that its old primary named as another
 * secondary of the volume this site took over (failover), which was not re-pointed (down then, or
 * --no-repoint): the way is the re-point, not a mirror made by hand (its destination follows the
 * old primary and would refuse it).
 */
async function mirrorToUpdate(ctx: OpContext, volume: string, to: string | undefined): Promise<Mirror> {
  const site = ctx.engine.site;
  try {
    return getMirror(site.catalog, volume, to);
  } catch (err) {
    if (!isFerryError(err, 'MIRROR_NOT_FOUND') || !to || getVolume(site.catalog, volume).role !== 'primary') throw err;
    const { siblingsToRepoint } = await import('../dr/repoint.ts');
    if (!siblingsToRepoint(ctx.engine, volume).some((t) => t.peer === to)) throw err;
    throw new FerryError('MIRROR_NOT_FOUND', `no mirror of ${volume} to ${to}: ${to} is another secondary of ${volume}'s primary before this site took it over, and was not re-pointed (it still follows that primary); make it follow this site: \`ferry mirror repoint ${volume} --to ${to}\``);
  }
}

async function runUpdate(ctx: OpContext, a: Args, initialize: boolean): Promise<unknown> {
  const volume = str(a, 'volume')!;
  const to = str(a, 'to', false);
  const m = await mirrorToUpdate(ctx, volume, to);
  if (m.state === 'broken-off') {
    // Its destination may follow this site again although it took over once (its home restored from a
    // backup): the mirror rejoins, idle from its base or needing a full sync (then the initialize runs).
    const { rejoinBrokenOff } = await import('../dr/failback.ts');
    await rejoinBrokenOff(ctx.engine, m);
  }
  const force = a.force === true;
  if (ctx.daemon && a.wait !== true) {
    // Queued, the job's refusal would reach only the mirror's events: the state's is said here, now.
    const { checkUpdate } = await import('../replication/driver/plan.ts');
    const { settleFutureSuccess } = await import('../replication/driver/run.ts');
    const cat = ctx.engine.site.catalog;
    checkUpdate(settleFutureSuccess(cat, getMirror(cat, volume, m.peer)), { initialize, force }, cat.clock.now(), getVolume(cat, volume).role);
  }
  const job = ctx.engine.update(volume, m.peer, { initialize, snapshot: str(a, 'snapshot', false), force }, ctx.progress);
  if (ctx.daemon && a.wait !== true) {
    job.catch(() => {}); // its outcome is in the mirror's state and the events
    return { queued: true, mirror: m.id };
  }
  return job;
}

export async function runOp(ctx: OpContext, name: string, args: Args): Promise<unknown> {
  const op = OPS[name];
  if (!op) throw new FerryError('USAGE', `unknown operation ${name}`);
  // Every operation reads named arguments: anything but an object (a string, a list) is refused here, once.
  if (args !== undefined && args !== null && (typeof args !== 'object' || Array.isArray(args))) throw new FerryError('USAGE', `the arguments of ${name} must be a JSON object`);
  return op(ctx, args ?? {});
}
