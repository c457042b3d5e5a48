// Snapshots at a site: take one (hooks around a capture of every member),
// list, resolve, delete (plan, then execute, then collect garbage), and
// apply retention. The catalog rows and the stat cache are written here;
// the capture itself is the snapshot layer's.
import { FerryError, isFerryError } from '../core/errors.ts';
import { pausePoint } from '../core/crash.ts';
import { newSnapshotId, parseName, isSnapshotId, type ObjectId, type SnapshotId } from '../core/ids.ts';
import { captureImage, captureTree, emptyStats, addStats, type CaptureStats, type CaptureWarning, type StatCacheIO } from '../snapshot/capture.ts';
import { ChunkPool } from '../snapshot/chunk-pool.ts';
import { encodeSnapshot } from '../snapshot/format.ts';
import { markLive } from '../snapshot/graph.ts';
import { decodeDirCache, type CachedFile } from '../snapshot/stat-cache.ts';
import type { SnapshotManifest, SnapshotMember } from '../snapshot/model.ts';
import { applyRetention, type RetentionDecision } from '../snapshot/retention.ts';
import { planCollect, executeCollect, type GcPlan } from '../store/gc.ts';
import { runHook, hookSucceeded, hookError, type HookResult } from './hooks.ts';
import { captureTreeMember, journalOf, type MemberTake, type MemberTotals } from './journal-service.ts';
import type { Site } from './site.ts';
import { getVolume, type Volume } from './volumes.ts';

export interface SnapshotRecord {
  id: SnapshotId;
  volume: string;
  name: string | null;
  time: number;
  origin: string;
  parent: SnapshotId | null;
  manifest: ObjectId;
  stats: Record<string, unknown>;
  holds: string[];
}

interface SnapshotRow {
  id: string;
  volume: string;
  name: string | null;
  time: number;
  origin: string;
  parent: string | null;
  manifest: string;
  stats: string;
  holds: string | null;
}

const SELECT_SNAPSHOTS = `SELECT s.*, (SELECT group_concat(holder, char(10)) FROM holds h WHERE h.snapshot = s.id) AS holds FROM snapshots s`;

function toRecord(r: SnapshotRow): SnapshotRecord {
  return {
    id: r.id as SnapshotId,
    volume: r.volume,
    name: r.name,
    time: r.time,
    origin: r.origin,
    parent: r.parent as SnapshotId | null,
    manifest: r.manifest as ObjectId,
    stats: JSON.parse(r.stats) as Record<string, unknown>,
    holds: r.holds ? r.holds.split('\n') : [],
  };
}

export function listSnapshots(site: Site, volume: string): SnapshotRecord[] {
  getVolume(site, volume);
  return site.db.all<SnapshotRow>(`${SELECT_SNAPSHOTS} WHERE s.volume = ? ORDER BY s.time, s.id`, volume).map(toRecord);
}

/** A snapshot of the volume by exact id, if this site holds it. */
export function findSnapshot(site: Site, volume: string, id: string): SnapshotRecord | undefined {
  const r = site.db.get<SnapshotRow>(`${SELECT_SNAPSHOTS} WHERE s.volume = ? AND s.id = ?`, volume, id);
  return r ? toRecord(r) : undefined;
}

// ---------------------------------------------------------------- order (docs/dr.md, "Snapshot order")
//
// Two sites' clocks need not agree, so a snapshot's time is compared only with the times of
// snapshots the same site took. Across sites the order comes from lineage (each snapshot names its
// parent: the snapshot the volume's data was at, at the site that took it) and from the order in
// which this site recorded its snapshots (taken here, or received): the data of a volume at one site
// goes through its snapshots one after the other, whatever the clocks say.

/**
 * Snapshots that keep writes something overwrote: `replica-writes-*` (writes into a replica, kept
 * before an apply) and `failback-kept-*` (an old primary's writes, kept before a failback). They
 * are never `latest`, nor a parent; they are restored by name.
 */
export const KEPT_WRITES_PREFIXES = ['replica-writes-', 'failback-kept-'] as const;
const NOT_KEPT_SQL = `NOT (s.name IS NOT NULL AND (${KEPT_WRITES_PREFIXES.map((p) => `s.name GLOB '${p}*'`).join(' OR ')}))`;

export function isKeptWrites(s: { name: string | null }): boolean {
  return s.name !== null && KEPT_WRITES_PREFIXES.some((p) => s.name!.startsWith(p));
}

/** Order on one site's clock: time, then id (ids one site makes increase: core/ids.ts). Only for snapshots of one origin. */
export function compareOnOneClock(a: { id: string; time: number }, b: { id: string; time: number }): number {
  return a.time - b.time || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/** How far parents are followed (a chain longer than this, or a loop a peer made, is cut here). */
const LINEAGE_DEPTH = 65_536;

/**
 * Whether `ancestor` is in the lineage of `id`: reached by following parents through the snapshots
 * this site holds (the last parent followed may itself be gone, retention having taken it).
 */
export function descendsFrom(site: Site, id: string, ancestor: string): boolean {
  if (id === ancestor) return false;
  return site.db.get(
    `WITH RECURSIVE up(id, depth) AS (
       SELECT parent, 1 FROM snapshots WHERE id = ? AND parent IS NOT NULL
       UNION ALL
       SELECT s.parent, up.depth + 1 FROM snapshots s JOIN up ON s.id = up.id WHERE s.parent IS NOT NULL AND up.depth < ?
     ) SELECT 1 FROM up WHERE id = ? LIMIT 1`,
    id, LINEAGE_DEPTH, ancestor,
  ) !== undefined;
}

/**
 * The lineage of a snapshot as far as this site holds it: the snapshot, its parent, the parent's
 * parent, ... newest first, while the snapshots are here (at most `limit`).
 */
export function lineage(site: Site, volume: string, id: string, limit = 1024): string[] {
  return site.db.all<{ id: string }>(
    `WITH RECURSIVE up(id, parent, depth) AS (
       SELECT id, parent, 0 FROM snapshots WHERE id = ? AND volume = ?
       UNION ALL
       SELECT s.id, s.parent, up.depth + 1 FROM up JOIN snapshots s ON s.id = up.parent WHERE s.volume = ? AND up.depth + 1 < ?
     ) SELECT id FROM up ORDER BY depth`,
    id, volume, volume, limit,
  ).map((r) => r.id);
}

/** The order in which this site recorded its snapshots (taken here or received), whatever their times. */
function recordedOrder(site: Site, id: string): number {
  return site.db.get<{ seq: number }>('SELECT rowid AS seq FROM snapshots WHERE id = ?', id)?.seq ?? 0;
}

/**
 * The order of two snapshots of one volume at this site (negative: `a` is older), never by
 * comparing two sites' clocks: by lineage where this site sees it (one descends from the other);
 * otherwise, taken by one site, by that site's clock (time, then id); otherwise by the order in
 * which this site recorded them. Lineage comes first so that a site whose clock was set back (a
 * skew corrected) still orders what it took since after what it took before.
 */
export function compareSnapshots(site: Site, a: { id: string; time: number; origin: string }, b: { id: string; time: number; origin: string }): number {
  if (a.id === b.id) return 0;
  if (descendsFrom(site, a.id, b.id)) return 1;
  if (descendsFrom(site, b.id, a.id)) return -1;
  if (a.origin === b.origin) return compareOnOneClock(a, b);
  return recordedOrder(site, a.id) - recordedOrder(site, b.id);
}

/** The newest of some snapshots of one volume here, by compareSnapshots. */
export function newestOf<T extends { id: string; time: number; origin: string }>(site: Site, snaps: T[]): T | undefined {
  return snaps.reduce<T | undefined>((best, s) => (best === undefined || compareSnapshots(site, s, best) > 0 ? s : best), undefined);
}

/**
 * The volume's latest snapshot at this site: the one its data is at (what `latest` names, and the
 * parent of the next snapshot taken here).
 * - At a secondary: the snapshot the replica shows (applied and verified), what a failover would
 *   promote; none while nothing is applied yet, or while a failback still shows the writes it kept.
 * - At a primary or standalone volume: its newest own snapshot (the last it took), or, if this
 *   site took over (a failover or a migrate) since it took that one, the snapshot it took over at.
 * Kept writes (`replica-writes-*`, `failback-kept-*`) are never the latest.
 */
export function latestSnapshot(site: Site, volume: string): SnapshotRecord | undefined {
  const vol = site.db.get<{ role: string }>('SELECT role FROM volumes WHERE name = ?', volume);
  if (!vol) return undefined;
  const applied = site.db.get<{ applied: string | null }>('SELECT applied FROM secondaries WHERE volume = ?', volume)?.applied ?? null;
  const shown = applied ? findSnapshot(site, volume, applied) : undefined;
  if (vol.role === 'secondary') return shown && !isKeptWrites(shown) ? shown : undefined;
  // Its own newest as this site recorded them (not by time: its clock may have been set back since).
  const own = site.db.get<SnapshotRow>(`${SELECT_SNAPSHOTS} WHERE s.volume = ? AND s.origin = ? AND ${NOT_KEPT_SQL} ORDER BY s.rowid DESC LIMIT 1`, volume, site.id);
  // What this site took over at: the replica it promoted (a failover keeps the relation, broken
  // off), or else the last snapshot it received (a migrate's final snapshot, the last one applied).
  const takenOver = shown
    ? shown
    : (() => {
        const r = site.db.get<SnapshotRow>(`${SELECT_SNAPSHOTS} WHERE s.volume = ? AND s.origin <> ? AND ${NOT_KEPT_SQL} ORDER BY s.rowid DESC LIMIT 1`, volume, site.id);
        return r ? toRecord(r) : undefined;
      })();
  const candidates = [own ? toRecord(own) : undefined, takenOver && !isKeptWrites(takenOver) ? takenOver : undefined].filter((x): x is SnapshotRecord => x !== undefined);
  return newestOf(site, candidates);
}

/** Find a snapshot by id (or unique id prefix of 6+ chars), by name, or 'latest' (see latestSnapshot). */
export function resolveSnapshot(site: Site, volume: string, ref: string): SnapshotRecord {
  const vol = getVolume(site, volume);
  let r: SnapshotRow | undefined;
  if (ref === 'latest') {
    const n = latestSnapshot(site, volume);
    if (n) return n;
    if (vol.role === 'secondary') {
      const applied = site.db.get<{ applied: string | null }>('SELECT applied FROM secondaries WHERE volume = ?', volume)?.applied ?? null;
      const why = applied === null ? 'nothing is applied to its replica yet (initialize the mirror at its primary)' : `its replica still shows the writes a failback kept (${applied}) until the new primary's data is applied`;
      throw new FerryError('SNAPSHOT_NOT_FOUND', `volume ${volume} is a secondary here and has no latest snapshot: ${why}; name a snapshot instead (\`ferry snapshot list ${volume}\`)`);
    }
  } else {
    r = site.db.get<SnapshotRow>(`${SELECT_SNAPSHOTS} WHERE s.volume = ? AND s.name = ?`, volume, ref);
    if (!r && isSnapshotId(ref)) r = site.db.get<SnapshotRow>(`${SELECT_SNAPSHOTS} WHERE s.volume = ? AND s.id = ?`, volume, ref.toUpperCase());
    if (!r && /^[0-9A-Za-z]{6,25}$/.test(ref)) {
      const rows = site.db.all<SnapshotRow>(`${SELECT_SNAPSHOTS} WHERE s.volume = ? AND s.id LIKE ?`, volume, ref.toUpperCase() + '%');
      if (rows.length > 1) throw new FerryError('USAGE', `snapshot prefix ${ref} matches ${rows.length} snapshots; give more characters`);
      r = rows[0];
    }
    if (r) return toRecord(r);
  }
  throw new FerryError('SNAPSHOT_NOT_FOUND', `volume ${volume} has no snapshot ${JSON.stringify(ref)}; \`ferry snapshot list ${volume}\` shows them`);
}

/** The catalog row that names a complete snapshot (callers run it inside their transaction). */
export function insertSnapshotRow(
  site: Site,
  r: { id: string; volume: string; name: string | null; time: number; origin: string; parent: string | null; manifest: string; stats: Record<string, unknown> },
): void {
  site.db.run(
    'INSERT INTO snapshots (id, volume, name, time, origin, parent, manifest, stats, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
    r.id, r.volume, r.name, r.time, r.origin, r.parent, r.manifest, JSON.stringify(r.stats), site.clock.now(),
  );
}

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
  const declared = getVolume(site, volumeName);
  const vol = opts.skipHooks ? { ...declared, hooks: {} } : declared;
  if (opts.name !== undefined) {
    parseName(opts.name, 'snapshot');
    if (isSnapshotId(opts.name)) throw new FerryError('USAGE', `snapshot name ${opts.name} looks like a snapshot id; choose a name that does not`);
    if (opts.name === 'latest') throw new FerryError('USAGE', `"latest" is reserved; choose another snapshot name`);
    if (isKeptWrites({ name: opts.name }) && !opts.keptWrites) {
      throw new FerryError('USAGE', `snapshot names starting with ${KEPT_WRITES_PREFIXES.join(' or ')} are ferry's own (writes it kept); choose another name`);
    }
    if (site.db.get('SELECT 1 FROM snapshots WHERE volume = ? AND name = ?', vol.name, opts.name)) {
      throw new FerryError('SNAPSHOT_EXISTS', `volume ${vol.name} already has a snapshot named ${opts.name}; choose another name or delete it first`);
    }
  }
  const id = newSnapshotId(site.clock);
  // The parent is what the volume's data is at here (its lineage: see latestSnapshot), not the newest by time.
  const parent = latestSnapshot(site, vol.name);
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
      const cacheRows = new StatCacheWriter(site, vol.name, id);
      const captured = await Promise.all(
        vol.members.map(async (m): Promise<SnapshotMember> => {
          const common = { store: session, pool, onWarning: (w: CaptureWarning) => warn({ ...w, path: `${m.name}:${w.path}` }), startedAt: time, signal: opts.signal };
          if (m.kind === 'tree') {
            const r = await captureTreeMember(site, m.name, m.path, parent, taken.get(m.name), { ...common, cache: statCacheFor(site, vol.name, m.name, parent?.id, cacheRows) });
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
      // Test hook (FERRY_PAUSE_AT): every member captured, the manifest not yet written.
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
    site.db.tx(() => {
      insertSnapshotRow(site, { id, volume: vol.name, name: opts.name ?? null, time, origin: site.id, parent: parent?.id ?? null, manifest: manifestId, stats: statsJson });
      // A journaled capture wrote stat cache rows only for the directories it looked at: the
      // parent's rows of the others carry over (a row is only ever a hint: see capture.ts).
      for (const m of journaled) site.db.run('UPDATE OR IGNORE stat_cache SET snapshot = ? WHERE volume = ? AND member = ? AND snapshot = ?', id, vol.name, m, parent!.id);
      // Only the newest snapshot's stat cache is kept (and rows of captures that never committed go too).
      site.db.run('DELETE FROM stat_cache WHERE volume = ? AND snapshot <> ?', vol.name, id);
      site.event({ kind: 'snapshot.create', volume: vol.name, outcome: warnings.length ? 'warning' : 'ok', detail: { snapshot: id, name: opts.name ?? null, ...statsJson } });
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
  const snapshot = resolveSnapshot(site, vol.name, id);
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

/** Stat cache rows of the new snapshot, written in batches so memory stays flat. */
export class StatCacheWriter {
  #rows: Array<[string, Buffer, Buffer]> = [];
  readonly #site: Site;
  readonly #volume: string;
  readonly #snapshot: string;
  constructor(site: Site, volume: string, snapshot: string) {
    this.#site = site;
    this.#volume = volume;
    this.#snapshot = snapshot;
  }
  add(member: string, dir: Buffer, data: Buffer): void {
    this.#rows.push([member, dir, data]);
    if (this.#rows.length >= 512) this.flush();
  }
  flush(): void {
    if (this.#rows.length === 0) return;
    const rows = this.#rows;
    this.#rows = [];
    this.#site.db.tx(() => {
      for (const [member, dir, data] of rows) {
        this.#site.db.run('INSERT OR REPLACE INTO stat_cache (volume, member, snapshot, dir, data) VALUES (?, ?, ?, ?, ?)', this.#volume, member, this.#snapshot, dir, data);
      }
    });
  }
}

export function statCacheFor(site: Site, volume: string, member: string, parent: string | undefined, writer: StatCacheWriter): StatCacheIO {
  // The walk asks for directories in nearly the rows' key order (depth
  // first, names sorted), so rows are read ahead in key-ordered runs: one
  // range query per run instead of a lookup per directory (the data blobs
  // overflow their pages, and single lookups cost ~100 us each).
  const ahead = new Map<string, Uint8Array>();
  const AHEAD = 256;
  return {
    load(dir: Buffer): Map<string, CachedFile> | undefined {
      if (!parent) return undefined;
      const key = dir.toString('latin1');
      let data = ahead.get(key);
      if (data === undefined) {
        if (ahead.size > 16 * AHEAD) ahead.clear(); // rows of directories that are gone
        const rows = site.db.all<{ dir: Uint8Array; data: Uint8Array }>(
          'SELECT dir, data FROM stat_cache WHERE volume = ? AND member = ? AND snapshot = ? AND dir >= ? ORDER BY dir LIMIT ?',
          volume, member, parent, dir, AHEAD,
        );
        for (const r of rows) ahead.set(Buffer.from(r.dir).toString('latin1'), r.data);
        data = ahead.get(key);
        if (data === undefined) return undefined;
      }
      ahead.delete(key);
      try {
        return decodeDirCache(data);
      } catch {
        return undefined; // a damaged cache only costs a re-read
      }
    },
    save(dir: Buffer, data: Buffer): void {
      writer.add(member, dir, data);
    },
  };
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
    const s = resolveSnapshot(site, volume, ref);
    if (seen.has(s.id)) continue;
    seen.add(s.id);
    const blocking = s.holds.filter((h) => !(opts.allowHeld ?? []).includes(h));
    if (blocking.includes('peer')) plan.refused.push({ id: s.id, name: s.name, reason: 'a peer snapshot: delete it everywhere with `ferry snapshot delete --peer`' });
    else if (blocking.includes('peer-delete')) plan.refused.push({ id: s.id, name: s.name, reason: 'a peer snapshot being deleted: it goes once every secondary has confirmed (`ferry snapshot peers`)' });
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
export function collectGarbageSoon(site: Site): GcSummary | undefined {
  if (site.writers === 0) return collectGarbage(site);
  site.whenIdle(() => {
    try {
      collectGarbageSoon(site);
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

/** Delete the planned snapshots (one transaction), then collect what no snapshot references any more. */
export function executeDeleteSnapshots(site: Site, plan: DeletePlan, opts: { gc?: boolean } = {}): { deleted: string[]; gc?: GcSummary } {
  if (plan.refused.length > 0) {
    const r = plan.refused[0];
    throw new FerryError('SNAPSHOT_HELD', `snapshot ${r.name ?? r.id} is ${r.reason}; it cannot be deleted while the hold exists`);
  }
  if (plan.delete.length === 0) return { deleted: [] };
  site.db.tx(() => {
    for (const d of plan.delete) {
      // Re-check inside the transaction: a hold may have appeared since planning.
      if (site.db.get('SELECT 1 FROM holds WHERE snapshot = ?', d.id)) throw new FerryError('SNAPSHOT_HELD', `snapshot ${d.name ?? d.id} became held; nothing was deleted`);
      site.db.run('DELETE FROM stat_cache WHERE volume = ? AND snapshot = ?', plan.volume, d.id);
      site.db.run('DELETE FROM snapshots WHERE id = ?', d.id);
    }
    site.event({ kind: 'snapshot.delete', volume: plan.volume, outcome: 'ok', detail: { snapshots: plan.delete.map((d) => d.id) } });
  });
  const deleted = plan.delete.map((d) => d.id);
  if (opts.gc === false) return { deleted };
  try {
    return { deleted, gc: collectGarbageSoon(site) };
  } catch (err) {
    // The deletion is committed: say so, or the caller would think nothing happened.
    if (!isFerryError(err)) throw err;
    throw new FerryError(err.code, `deleted ${deleted.length} snapshot(s) (${deleted.join(', ')}), but collecting their data failed: ${err.message}`, { cause: err.cause ?? err, details: { ...err.details, deleted } });
  }
}

/** Mark from every snapshot in the catalog, then delete or repack what nothing references. */
export function collectGarbage(site: Site, opts: { dryRun?: boolean } = {}): GcSummary {
  if (site.writers > 0) {
    throw new FerryError('STORE_BUSY', `${site.writers} capture(s) or incoming transfer(s) are writing objects no snapshot names yet, and collecting now would take them; run gc again once they finish (ferry status shows them)`);
  }
  site.store.flush();
  const manifests = site.db.all<{ manifest: string }>('SELECT manifest FROM snapshots').map((r) => r.manifest as ObjectId);
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
  site.event({ kind: 'gc', outcome: 'ok', detail: { plan: summarizeGc(plan) } });
  return { plan, executed: true };
}

export function summarizeGc(plan: GcPlan): Record<string, unknown> {
  return JSON.parse(JSON.stringify(plan, (k, v) => (k === 'copy' && Array.isArray(v) ? v.length : v))) as Record<string, unknown>;
}

/** Apply the volume's retention policy now; returns what it removed. */
export function applyVolumeRetention(site: Site, volume: string, opts: { dryRun?: boolean } = {}): { decision: RetentionDecision; removed: string[]; gc?: GcSummary } {
  const vol = getVolume(site, volume);
  const snaps = listSnapshots(site, volume);
  // Newest by the order this site recorded them (taken or received), not by time: snapshots taken at
  // another site carry its clock's times (docs/dr.md, "Snapshot order").
  const decision = applyRetention(
    snaps.map((s) => ({ id: s.id, time: s.time, name: s.name, held: s.holds.length > 0, order: recordedOrder(site, s.id) })),
    vol.retention,
  );
  if (opts.dryRun || decision.remove.length === 0) return { decision, removed: [] };
  const plan = planDeleteSnapshots(site, volume, decision.remove);
  const r = executeDeleteSnapshots(site, plan);
  site.event({ kind: 'retention', volume, outcome: 'ok', detail: { removed: r.deleted } });
  return { decision, removed: r.deleted, gc: r.gc };
}
