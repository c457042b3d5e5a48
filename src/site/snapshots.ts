// Snapshots at a site: take one (hooks around a capture of every member),
// delete (plan, then execute, then collect garbage), and apply retention.
// Their rows, their order and the stat cache are the catalog's
// (catalog/snapshots.ts, catalog/stat-cache.ts); the capture itself is the
// snapshot layer's.
import { FerryError, isFerryError } from '../core/errors.ts';
import { pausePoint } from '../core/crash.ts';
import { newSnapshotId, parseName, isSnapshotId } from '../core/ids.ts';
import { captureTree, emptyStats, addStats, type CaptureStats, type CaptureWarning } from '../snapshot/capture.ts';
import { captureImage } from '../snapshot/capture-image.ts';
import { ChunkPool } from '../snapshot/chunk-pool.ts';
import { encodeSnapshot } from '../snapshot/format.ts';
import { markLive } from '../snapshot/graph.ts';
import type { SnapshotManifest, SnapshotMember } from '../snapshot/model.ts';
import { applyRetention, type RetentionDecision } from '../snapshot/retention.ts';
import { planCollect, executeCollect, type GcPlan } from '../store/gc.ts';
import type { HookResult } from '../replication/dr-peer.ts';
import { runHook, hookSucceeded, hookError } from './hooks.ts';
import { captureTreeMember, journalOf, type MemberTake, type MemberTotals } from './journal-service.ts';
import type { Site } from './site.ts';
import { countRelease, estimateRelease, forgetNoSpace, type CollectVerdict } from './auto-collect.ts';
import { noteCollected } from '../catalog/collection.ts';
import { parseHolder, isHeld } from '../catalog/holds.ts';
import {
  allManifests, deleteSnapshotRow, hasSnapshotNamed, insertSnapshotRow, isKeptWrites, KEPT_WRITES_PREFIXES, latestSnapshot, listSnapshots, recordedOrder, resolveSnapshot,
  type SnapshotRecord,
} from '../catalog/snapshots.ts';
import { commitStatCache, StatCacheWriter, statCacheFor } from '../catalog/stat-cache.ts';
export type { SnapshotRecord } from '../catalog/snapshots.ts';
import { getVolume, type Volume } from '../catalog/volumes.ts';

export interface CreateSnapshotOptions {
  name?: string;
  /** a pool to share across calls; one is made (and closed) otherwise */
  pool?: ChunkPool;
  onWarning?: (w: CaptureWarning) => void;
  signal?: AbortSignal;
  /** the caller runs the hooks itself (migrate stops the application around more than the capture) */
  skipHooks?: boolean;
  /** a `failback-kept-*` snapshot (its name is reserved: see KEPT_WRITES_PREFIXES) */
  keptWrites?: boolean;
  /** walk every tree member in full even where the change journal is live (an audit: journal-service.ts) */
  fullWalk?: boolean;
}

export interface CreateSnapshotResult {
  snapshot: SnapshotRecord;
  stats: CaptureStats;
  warnings: CaptureWarning[];
  hooks: HookResult[];
  retention?: { removed: string[]; gc?: GcSummary };
}

/** Take a snapshot of every member of a volume at one instant, between its pre and post hooks. */
export async function createSnapshot(site: Site, volumeName: string, opts: CreateSnapshotOptions = {}): Promise<CreateSnapshotResult> {
  const started = performance.now();
  const declared = getVolume(site.catalog, volumeName);
  const vol = opts.skipHooks ? { ...declared, hooks: {} } : declared;
  if (opts.name !== undefined) {
    parseName(opts.name, 'snapshot');
    if (isSnapshotId(opts.name)) throw new FerryError('USAGE', `snapshot name ${opts.name} looks like a snapshot id; choose a name that does not`);
    if (opts.name === 'latest') throw new FerryError('USAGE', `"latest" is reserved; choose another snapshot name`);
    if (isKeptWrites({ name: opts.name }) && !opts.keptWrites) {
      throw new FerryError('USAGE', `snapshot names starting with ${KEPT_WRITES_PREFIXES.join(' or ')} are ferry's own (writes it kept); choose another name`);
    }
    if (hasSnapshotNamed(site.catalog, vol.name, opts.name)) {
      throw new FerryError('SNAPSHOT_EXISTS', `volume ${vol.name} already has a snapshot named ${opts.name}; choose another name or delete it first`);
    }
  }
  const id = newSnapshotId(site.clock);
  // The parent is what the volume's data is at here (its lineage: see latestSnapshot), not the newest by time.
  const parent = latestSnapshot(site.catalog, vol.name);
  const env = {
    FERRY_SITE: site.name,
    FERRY_VOLUME: vol.name,
    FERRY_SNAPSHOT_ID: id,
    FERRY_SNAPSHOT_NAME: opts.name ?? '',
    FERRY_MEMBERS: vol.members.map((m) => m.path).join('\n'),
  };
  const hooks: HookResult[] = [];
  const warnings: CaptureWarning[] = [];
  const warn = (w: CaptureWarning) => {
    warnings.push(w);
    opts.onWarning?.(w);
  };
  const stats = emptyStats();
  let members: SnapshotMember[];
  let time: number;
  const journal = journalOf(site);
  let taken = new Map<string, MemberTake>();
  const memberTotals: Record<string, MemberTotals> = {};
  const journaled: string[] = [];
  const missed = new Map<string, number>();

  const pool = opts.pool ?? new ChunkPool();
  // From the first object written until the catalog names the snapshot, GC must wait.
  const written = site.beginWrite();
  // Writes that stop once a failed write (this capture's or another writer's) discarded pending
  // objects: the capture's trees stand above chunks it stored, or found pending and skipped.
  const session = site.store.session();
  try {
    if (vol.hooks.pre) {
      const r = await runHook('pre', vol.hooks.pre, env);
      hooks.push(r);
      site.event({ kind: 'hook.pre', volume: vol.name, outcome: hookSucceeded(r) ? 'ok' : 'failed', detail: { snapshot: id, ...r } });
      if (!hookSucceeded(r)) {
        await runPost(site, vol, env, hooks, id);
        site.event({ kind: 'snapshot.create', volume: vol.name, outcome: 'failed', detail: { snapshot: id, reason: 'pre hook failed' } });
        throw hookError(r);
      }
    }
    time = site.clock.now();
    try {
      // What changed since the parent, from the daemon's change journal (journal-service.ts): a
      // member it allows is captured by reading only that; the others are walked in full.
      taken = (await journal?.take(vol, parent?.id, opts.fullWalk ?? false)) ?? new Map<string, MemberTake>();
      const cacheRows = new StatCacheWriter(site.catalog, vol.name, id);
      const captured = await Promise.all(
        vol.members.map(async (m): Promise<SnapshotMember> => {
          const common = { store: session, pool, onWarning: (w: CaptureWarning) => warn({ ...w, path: `${m.name}:${w.path}` }), startedAt: time, signal: opts.signal };
          if (m.kind === 'tree') {
            const r = await captureTreeMember(site, m.name, m.path, parent, taken.get(m.name), { ...common, cache: statCacheFor(site.catalog, vol.name, m.name, parent?.id, cacheRows) });
            addStats(stats, r.stats);
            memberTotals[m.name] = r.totals;
            if (r.journaled) journaled.push(m.name);
            if (r.missed) missed.set(m.name, 1);
            return { name: m.name, kind: m.kind, root: r.root };
          }
          const r = await captureImage(m.path, common);
          addStats(stats, r.stats);
          return { name: m.name, kind: m.kind, root: r.root };
        }),
      );
      cacheRows.flush();
      members = captured;
      // Test hook (FERRY_TEST_PAUSE_AT): every member captured, the manifest not yet written.
      await pausePoint('snapshot:before-manifest', () => opts.signal?.aborted ?? false);
    } finally {
      await runPost(site, vol, env, hooks, id, warn);
    }
  } catch (err) {
    written();
    await journal?.putBack(vol.name, taken);
    if (!isFerryError(err, 'HOOK_FAILED')) {
      site.event({ kind: 'snapshot.create', volume: vol.name, outcome: 'failed', detail: { snapshot: id, error: String((err as Error).message) } });
    }
    throw err;
  } finally {
    if (!opts.pool) await pool.close();
  }

  const manifest: SnapshotManifest = { id, volume: vol.name, name: opts.name ?? null, time, origin: site.id, parent: parent?.id ?? null, members };
  try {
    const { id: manifestId } = session.put('snapshot', encodeSnapshot(manifest));
    // The store is made durable before the catalog names the snapshot: a crash
    // between the two leaves unreferenced objects (collected later), never a
    // snapshot whose objects are missing; nor does a failed write of another
    // writer that discarded some of them.
    site.store.flush();
    session.check();
    const statsJson = { ...stats, warnings: warnings.length, hooks: hooks.map((h) => ({ phase: h.phase, ok: hookSucceeded(h), ms: h.ms })), members: memberTotals, ...(journaled.length ? { journaled } : {}) };
    site.catalog.tx(() => {
      insertSnapshotRow(site.catalog, { id, volume: vol.name, name: opts.name ?? null, time, origin: site.id, parent: parent?.id ?? null, manifest: manifestId, stats: statsJson });
      // The capture's stat cache rows become the committed ones. A journaled member's capture wrote
      // rows only for the directories it looked at: the parent's rows of the others stand (they
      // describe this snapshot too); a member walked in full replaces its rows whole.
      commitStatCache(site.catalog, vol.name, id, { parent: parent?.id, whole: vol.members.filter((m) => m.kind === 'tree' && !journaled.includes(m.name)).map((m) => m.name) });
      // How long it took, hooks included (the metrics' ferry_snapshot_duration_seconds).
      const seconds = Math.round(performance.now() - started) / 1000;
      site.event({ kind: 'snapshot.create', volume: vol.name, outcome: warnings.length ? 'warning' : 'ok', detail: { snapshot: id, name: opts.name ?? null, ...statsJson, seconds } });
      for (const m of missed.keys()) {
        site.event({ kind: 'journal.missed', volume: vol.name, outcome: 'warning', detail: { snapshot: id, member: m, reason: 'the audit (a full walk) found a change the change journal did not report (writes through mmap, another host on a network filesystem, or a lost event); the snapshot holds what the walk found' } });
      }
    });
  } catch (err) {
    await journal?.putBack(vol.name, taken);
    throw err;
  } finally {
    written();
  }
  await journal?.settle(vol.name, id, taken, missed);
  const snapshot = resolveSnapshot(site.catalog, vol.name, id);
  const result: CreateSnapshotResult = { snapshot, stats, warnings, hooks };
  const retention = applyVolumeRetention(site, vol.name);
  if (retention.removed.length > 0) result.retention = retention;
  return result;
}

async function runPost(site: Site, vol: Volume, env: Record<string, string>, hooks: HookResult[], id: string, warn?: (w: CaptureWarning) => void): Promise<void> {
  if (!vol.hooks.post) return;
  const r = await runHook('post', vol.hooks.post, env);
  hooks.push(r);
  site.event({ kind: 'hook.post', volume: vol.name, outcome: hookSucceeded(r) ? 'ok' : 'failed', detail: { snapshot: id, ...r } });
  if (!hookSucceeded(r)) {
    warn?.({ path: vol.name, problem: 'skipped', message: `post hook failed (${hookError(r).message}); the application may still be quiesced: check it` });
  }
}

// ---------------------------------------------------------------- deletion

export interface DeletePlan {
  volume: string;
  delete: Array<{ id: string; name: string | null; time: number }>;
  refused: Array<{ id: string; name: string | null; reason: string }>;
}

export function planDeleteSnapshots(site: Site, volume: string, refs: string[], opts: { allowHeld?: string[] } = {}): DeletePlan {
  const plan: DeletePlan = { volume, delete: [], refused: [] };
  const seen = new Set<string>();
  for (const ref of refs) {
    const s = resolveSnapshot(site.catalog, volume, ref);
    if (seen.has(s.id)) continue;
    seen.add(s.id);
    const blocking = s.holds.filter((h) => !(opts.allowHeld ?? []).includes(h));
    const kinds = blocking.map((h) => parseHolder(h).kind);
    if (kinds.includes('peer')) plan.refused.push({ id: s.id, name: s.name, reason: 'a peer snapshot: delete it everywhere with `ferry snapshot delete --peer`' });
    else if (kinds.includes('peer-delete')) plan.refused.push({ id: s.id, name: s.name, reason: 'a peer snapshot being deleted: it goes once every secondary has confirmed (`ferry snapshot peers`)' });
    else if (blocking.length > 0) plan.refused.push({ id: s.id, name: s.name, reason: `held by ${blocking.join(', ')}` });
    else plan.delete.push({ id: s.id, name: s.name, time: s.time });
  }
  return plan;
}

/**
 * Collect now, or, while captures or incoming transfers are writing (see
 * Site.beginWrite), as soon as they are done: undefined then. A deferred
 * collection that fails is recorded as a failed gc event.
 */
export function collectGarbageSoon(site: Site, reason?: string): GcSummary | undefined {
  if (site.writers === 0) return collectGarbage(site, { reason });
  site.whenIdle(() => {
    try {
      collectGarbageSoon(site, reason);
    } catch (err) {
      site.event({ kind: 'gc', outcome: 'failed', detail: { error: (err as Error).message } });
    }
  });
  return undefined;
}

export interface GcSummary {
  plan: GcPlan;
  executed: boolean;
}

/**
 * Delete the planned snapshots (one transaction), then collect what no snapshot references any
 * more. `gc`: true (the default: an operator's delete) collects now; 'auto' (ferry's own releases:
 * retention, a peer snapshot deleted everywhere) adds what they free to the estimate and collects
 * only when that is due (auto-collect.ts); false collects nothing here (the caller decides).
 * Whichever, what they free is counted, so that an automatic collection accounts for it.
 */
export function executeDeleteSnapshots(site: Site, plan: DeletePlan, opts: { gc?: boolean | 'auto' } = {}): { deleted: string[]; gc?: GcSummary; verdict?: CollectVerdict } {
  if (plan.refused.length > 0) {
    const r = plan.refused[0];
    throw new FerryError('SNAPSHOT_HELD', `snapshot ${r.name ?? r.id} is ${r.reason}; it cannot be deleted while the hold exists`);
  }
  if (plan.delete.length === 0) return { deleted: [] };
  const gc = opts.gc ?? true;
  // Estimated while their rows are there (each is compared with the snapshot recorded next to it).
  const releasable = estimateRelease(site, plan.volume, plan.delete.map((d) => d.id));
  let verdict: CollectVerdict | undefined;
  site.catalog.tx(() => {
    for (const d of plan.delete) {
      // Re-check inside the transaction: a hold may have appeared since planning.
      if (isHeld(site.catalog, d.id)) throw new FerryError('SNAPSHOT_HELD', `snapshot ${d.name ?? d.id} became held; nothing was deleted`);
      deleteSnapshotRow(site.catalog, plan.volume, d.id);
    }
    verdict = countRelease(site, releasable);
    site.event({ kind: 'snapshot.delete', volume: plan.volume, outcome: 'ok', detail: { snapshots: plan.delete.map((d) => d.id), releasable, ...(gc === 'auto' ? { collect: verdict.detail } : {}) } });
  });
  const deleted = plan.delete.map((d) => d.id);
  if (gc === false || (gc === 'auto' && !verdict!.collect)) return { deleted, verdict };
  try {
    return { deleted, gc: collectGarbageSoon(site, gc === 'auto' ? verdict!.detail : undefined), verdict };
  } catch (err) {
    // The deletion is committed: say so, or the caller would think nothing happened.
    if (!isFerryError(err)) throw err;
    throw new FerryError(err.code, `deleted ${deleted.length} snapshot(s) (${deleted.join(', ')}), but collecting their data failed: ${err.message}`, { cause: err.cause ?? err, details: { ...err.details, deleted } });
  }
}

/** Mark from every snapshot in the catalog, then delete or repack what nothing references. */
export function collectGarbage(site: Site, opts: { dryRun?: boolean; reason?: string } = {}): GcSummary {
  if (site.writers > 0) {
    throw new FerryError('STORE_BUSY', `${site.writers} capture(s) or incoming transfer(s) are writing objects no snapshot names yet, and collecting now would take them; run gc again once they finish (ferry status shows them)`);
  }
  site.store.flush();
  const manifests = allManifests(site.catalog);
  let live: Set<string>;
  try {
    live = markLive(site.store, manifests);
  } catch (err) {
    const why = (err as Error).message;
    throw new FerryError('OBJECT_CORRUPT', `garbage collection refused: ${why}${why.includes('ferry verify') ? '' : '; run `ferry verify` to find the damaged snapshot'}`, { cause: err });
  }
  const plan = planCollect(site.store, (id) => live.has(id));
  if (opts.dryRun) return { plan, executed: false };
  executeCollect(site.store, plan);
  // Everything released before the mark is collected: the automatic collection counts again from 0.
  site.catalog.tx(() => {
    noteCollected(site.catalog, site.clock.now());
    site.event({ kind: 'gc', outcome: 'ok', detail: { plan: summarizeGc(plan), ...(opts.reason ? { reason: opts.reason } : {}) } });
  });
  forgetNoSpace(site);
  return { plan, executed: true };
}

export function summarizeGc(plan: GcPlan): Record<string, unknown> {
  return JSON.parse(JSON.stringify(plan, (k, v) => (k === 'copy' && Array.isArray(v) ? v.length : v))) as Record<string, unknown>;
}

/** Apply the volume's retention policy now; returns what it removed. */
export function applyVolumeRetention(site: Site, volume: string, opts: { dryRun?: boolean } = {}): { decision: RetentionDecision; removed: string[]; gc?: GcSummary } {
  const vol = getVolume(site.catalog, volume);
  const snaps = listSnapshots(site.catalog, volume);
  // Newest by the order this site recorded them (taken or received), not by time: snapshots taken at
  // another site carry its clock's times (docs/dr.md, "Snapshot order").
  const decision = applyRetention(
    snaps.map((s) => ({ id: s.id, time: s.time, name: s.name, held: s.holds.length > 0, order: recordedOrder(site.catalog, s.id) })),
    vol.retention,
  );
  if (opts.dryRun || decision.remove.length === 0) return { decision, removed: [] };
  const plan = planDeleteSnapshots(site, volume, decision.remove);
  // Retention is ferry's own release: collected when enough is releasable (auto-collect.ts).
  const r = executeDeleteSnapshots(site, plan, { gc: 'auto' });
  site.event({ kind: 'retention', volume, outcome: 'ok', detail: { removed: r.deleted, ...(r.verdict ? { collect: r.verdict.detail } : {}) } });
  return { decision, removed: r.deleted, gc: r.gc };
}
