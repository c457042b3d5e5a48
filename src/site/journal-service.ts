// The site's change journal (docs/design.md, "The change journal"): the daemon watches every tree
// member of the volumes it captures (primary and standalone volumes), so a snapshot reads only
// what changed since the snapshot the watch counts from (its base), not the whole tree.
//
// What a member's journal may be used for is decided here, per capture:
// - it counts from the parent snapshot (the base): every capture through the journal, full walk
//   or journaled, moves the base to the snapshot it made; a capture that failed puts its set back;
// - nothing was lost (a queue error, a watch that could not be added, more directories than
//   watches allowed, the root replaced): otherwise the capture is a full walk and the watch starts
//   again, except after it ran out of watches (ENOSPC: fs.inotify.max_user_watches, or
//   `maxWatches`): its watches are released and it is not tried again before a back-off
//   (JOURNAL_WATCH_RETRY: 10 min doubling up to a day; reset by a success, by `volume set`, or by
//   the file's reload changing the volume), said once in a `journal.unavailable` event and in status;
// - the volume's journal is on (`volume create/set --no-journal`, `journal: false` in the site
//   file): a volume with it off has none of its members or replicas watched, and turning it on
//   starts them with nothing known (the next capture is an audit);
// - an audit is not due: the first capture after the daemon starts (nothing is known of what
//   changed while it was down), one a day per volume (`auditEveryMs`), and any asked for with
//   `snapshot create --full-walk`. An audit also makes the journaled capture from the same set and
//   compares: a tree that differs means the journal missed a change (mmap writes, another host on
//   a network filesystem); the event `journal.missed` says so and the audit's tree is the one kept.
//
// The set is kept in memory, not in the catalog: a journal cannot see what changes while the
// daemon is down, so every start begins with a full walk whatever was recorded (design notes).
import { join } from 'node:path';
import type { ObjectId } from '../core/ids.ts';
import { captureTree, emptyStats, type CaptureOptions, type CaptureStats } from '../snapshot/capture.ts';
import { decodeSnapshot } from '../snapshot/format.ts';
import { dirEntries } from '../snapshot/dir-pages.ts';
import { sameTreeContent } from '../snapshot/diff.ts';
import { ChangeJournal, type DirtySet, type WatchInfo } from '../snapshot/journal.ts';
import { STAGE_DIR } from '../replication/stage.ts';
import { JOURNAL_WATCH_RETRY, RetryGate } from '../core/backoff.ts';
import type { Site } from './site.ts';
import type { Volume } from './volumes.ts';
import { findVolume, listVolumes } from '../catalog/volumes.ts';

export const DAY_MS = 24 * 3600 * 1000;

export interface JournalServiceOptions {
  /** a full walk at least this often per member (default: a day) */
  auditEveryMs?: number;
  /** run the watches on the calling thread (tests); a worker thread otherwise */
  inThread?: boolean;
  /** more directories than this per member: the member is walked in full (status says why) */
  maxWatches?: number;
}

interface MemberState {
  volume: string;
  member: string;
  path: string;
  /** a secondary's replica (written by the apply; the journal serves its writes check), not a member this site captures */
  replica: boolean;
  /** the snapshot the watch counts from; null: not known (start, something lost): walk in full */
  base: string | null;
  /** why the journal cannot be used now (null: it can) */
  reason: string | null;
  watches: number;
  lastAudit: number | null;
  /** how many audits found the journal had missed a change, since the daemon started */
  missed: number;
  lastMissed: number | null;
  /** it ran out of watches: no watch is held, and none is tried before this (JOURNAL_WATCH_RETRY); null: not backing off */
  retryAt: number | null;
}

/** What one capture takes from the journal for a member (createSnapshot). */
export interface MemberTake {
  volume: string;
  member: string;
  set: DirtySet;
  /** the set counts from the capture's parent and is complete: the capture may read only it */
  usable: boolean;
  /** this capture is an audit (a full walk), and `usable` says the journaled one is compared with it */
  audit: boolean;
  /** why it walks in full (null when it does not) */
  why: string | null;
}

export interface JournalStatus {
  /**
   * live: captures (a replica: writes checks) read only what changed; audit-due: the next walks in
   * full; off: the volume's journal is turned off (every capture walks in full)
   */
  state: 'live' | 'audit-due' | 'off';
  reason: string | null;
  /** a secondary's replica (the journal serves its writes check), not a member this site captures */
  replica: boolean;
  watches: number;
  lastAudit: number | null;
  missed: number;
  lastMissed: number | null;
  /** the member ran out of inotify watches: its watch is not tried again before this (null: not backing off) */
  retryAt: number | null;
}

const keyOf = (volume: string, member: string) => JSON.stringify([volume, member]);

export class JournalService {
  readonly #site: Site;
  readonly #journal: ChangeJournal;
  readonly #members = new Map<string, MemberState>();
  readonly #auditEvery: number;
  readonly #maxWatches: number | undefined;
  /** members that ran out of watches: when each may be watched again */
  readonly #watchRetry: RetryGate;
  /** reconciles run one at a time (a take and a `volume set` may ask at once) */
  #reconciling: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(site: Site, o: JournalServiceOptions = {}) {
    this.#site = site;
    this.#auditEvery = o.auditEveryMs ?? DAY_MS;
    this.#maxWatches = o.maxWatches;
    this.#watchRetry = new RetryGate(JOURNAL_WATCH_RETRY, site.clock, Math.random);
    this.#journal = new ChangeJournal({ barrierDir: join(site.paths.home, 'journal-barrier'), inThread: o.inThread });
  }

  /** Watch the tree members of every volume this site captures. */
  async start(): Promise<void> {
    for (const v of listVolumes(this.#site.catalog)) await this.refresh(v);
  }

  /** Volumes this site captures: a secondary's members are replicas written by the apply (watched as replicas). */
  static watches(v: Volume): boolean {
    return v.role !== 'secondary';
  }

  /**
   * Bring the watches of a volume in line with its members and settings (members added or removed,
   * role changed, journal turned off or on). `retry`: its settings changed (`volume set`, a reload
   * of the site file): a member backing off after it ran out of watches is tried again at the next
   * take (the limit may have been raised meanwhile).
   */
  refresh(v: Volume, o: { retry?: boolean } = {}): Promise<void> {
    const run = this.#reconciling.then(() => this.#reconcile(v, o.retry === true));
    this.#reconciling = run.catch(() => {});
    return run;
  }

  async #reconcile(v: Volume, retry: boolean): Promise<void> {
    if (this.#closed) return;
    const replica = !JournalService.watches(v);
    const want = new Map<string, { member: string; path: string }>();
    if (v.journal) for (const m of v.members) if (m.kind === 'tree') want.set(keyOf(v.name, m.name), { member: m.name, path: m.path });
    for (const [k, s] of this.#members) {
      if (s.volume !== v.name) continue;
      const w = want.get(k);
      if (w && w.path === s.path && s.replica === replica) {
        want.delete(k);
        if (retry) this.#watchRetry.succeeded(k);
        continue;
      }
      await this.#drop(k);
    }
    for (const [k, w] of want) {
      const s: MemberState = { volume: v.name, member: w.member, path: w.path, replica, base: null, reason: null, watches: 0, lastAudit: null, missed: 0, lastMissed: null, retryAt: null };
      this.#members.set(k, s);
      await this.#watch(k, s);
    }
  }

  /** Stop watching a member (its watches are released) and forget all about it. */
  async #drop(k: string): Promise<void> {
    this.#members.delete(k);
    this.#watchRetry.succeeded(k);
    await this.#journal.unwatch(k);
  }

  async #watch(k: string, s: MemberState): Promise<void> {
    try {
      const info: WatchInfo = await this.#journal.watch(k, s.path, { maxWatches: this.#maxWatches, ...(s.replica ? { skipAtRoot: STAGE_DIR } : {}) });
      s.watches = info.watches;
      if (info.lost) s.reason = info.lost;
      if (info.exhausted) return await this.#outOfWatches(k, s);
      this.#watchRetry.succeeded(k);
      s.retryAt = null;
    } catch (err) {
      s.reason = `cannot watch ${s.path}: ${(err as Error).message}`;
    }
  }

  /**
   * The member's tree needs more watches than there are (its watches are already released): it is
   * walked in full, and not watched again before the back-off (adding the watches of a large tree
   * costs minutes, for nothing while the limit stands). Said once per run of failures.
   */
  async #outOfWatches(k: string, s: MemberState): Promise<void> {
    await this.#journal.unwatch(k).catch(() => {});
    s.watches = 0;
    const { failures, retryInMs } = this.#watchRetry.failed(k);
    s.retryAt = this.#site.clock.now() + retryInMs;
    if (failures > 1) return;
    const what = s.replica ? 'writes check of the replica' : 'snapshot';
    this.#site.event({
      kind: 'journal.unavailable',
      volume: s.volume,
      outcome: 'warning',
      detail: {
        member: s.member,
        replica: s.replica,
        reason: s.reason,
        retryInMs,
        effect: `every ${what} of this member walks it in full; the watch is tried again after ${Math.round(retryInMs / 60_000)} min, then less and less often (up to once a day)`,
        fix: `raise fs.inotify.max_user_watches (sysctl; then \`ferry volume set ${s.volume} --journal\` tries again at once), or turn the journal off for this volume: \`ferry volume set ${s.volume} --no-journal\``,
      },
    });
  }

  /** Forget a volume's watches (the volume was removed). */
  async forget(volume: string): Promise<void> {
    for (const [k, s] of this.#members) if (s.volume === volume) await this.#drop(k);
  }

  /**
   * Take what changed in each tree member of `v` since its base, for a capture whose parent is
   * `parent`. Every member's set is taken (a full walk covers it, and the next set counts from
   * here). `fullWalk`: the caller asks for an audit.
   */
  async take(v: Volume, parent: string | undefined, fullWalk: boolean): Promise<Map<string, MemberTake>> {
    const out = new Map<string, MemberTake>();
    if (this.#closed) return out;
    await this.refresh(v);
    const now = this.#site.clock.now();
    for (const [k, s] of this.#members) {
      if (s.volume !== v.name || s.replica) continue;
      const { set, lost } = await this.#takeSet(k, s);
      const why =
        lost ??
        (parent === undefined ? 'first snapshot' : s.base === null ? 'first snapshot since the watch began (the daemon started, or the journal was turned on)' : s.base !== parent ? 'the journal counts from another snapshot' : fullWalk ? 'asked for (--full-walk)' : s.lastAudit === null || now - s.lastAudit >= this.#auditEvery ? 'audit due' : null);
      const usable = lost === null && parent !== undefined && s.base === parent;
      out.set(s.member, { volume: v.name, member: s.member, set, usable, audit: why !== null, why });
    }
    return out;
  }

  /**
   * Take a member's set. When the watch lost anything (`lost`), it is started
   * again before the caller walks in full: that walk is then a base the new watch counts from (a
   * change made during the walk is in the new watch's first set). A member backing off after it ran
   * out of watches holds none: it is walked in full, and watched again only once the back-off is over.
   */
  async #takeSet(k: string, s: MemberState): Promise<{ set: DirtySet; lost: string | null }> {
    let set: DirtySet;
    if (s.retryAt !== null) set = { dirs: [], lost: s.reason ?? 'out of inotify watches' };
    else {
      try {
        set = await this.#journal.take(k);
      } catch (err) {
        set = { dirs: [], lost: `cannot read the journal: ${(err as Error).message}` };
      }
    }
    const lost = set.lost ?? s.reason;
    if (lost !== null && (s.retryAt === null || this.#watchRetry.due(k))) {
      await this.#journal.unwatch(k).catch(() => {});
      s.reason = null;
      await this.#watch(k, s);
    }
    return { set, lost };
  }

  /**
   * A replica's writes check (receiver.ts): take what changed in member `member` of secondary
   * volume `v` since the last take, and forget the base (only a verification that reads the
   * replica exactly sets it again: replicaSettle). `base`: the snapshot the replica was found to be
   * at the previous take, if known. The watch is started again first if it lost anything, so a full
   * walk made after this take is exact at the take. Undefined: not watched.
   */
  async replicaTake(v: Volume, member: string): Promise<{ set: DirtySet; base: string | null } | undefined> {
    if (this.#closed) return undefined;
    await this.refresh(v);
    const k = keyOf(v.name, member);
    const s = this.#members.get(k);
    if (!s?.replica) return undefined;
    const { set, lost } = await this.#takeSet(k, s);
    if (lost !== null && s.reason !== null) return undefined; // cannot be watched again: no take is exact
    const base = s.base;
    s.base = null;
    return { set: { dirs: set.dirs, lost }, base };
  }

  /** A verification found the replica exactly at snapshot `base` as of the last replicaTake. */
  replicaSettle(volume: string, member: string, base: string): void {
    const s = this.#members.get(keyOf(volume, member));
    if (s?.replica) s.base = base;
  }

  /** Whether nothing changed in a member since its set was taken (the set is left in place). */
  async quiet(volume: string, member: string): Promise<boolean> {
    const k = keyOf(volume, member);
    if (!this.#members.has(k)) return false;
    const set = await this.#journal.take(k);
    await this.#journal.putBack(k, set);
    return set.lost === null && set.dirs.length === 0;
  }

  /** A capture that failed: its sets are changes still to be captured. */
  async putBack(volume: string, taken: Map<string, MemberTake>): Promise<void> {
    for (const t of taken.values()) {
      const k = keyOf(volume, t.member);
      if (!this.#members.has(k)) continue;
      await this.#journal.putBack(k, t.set).catch(() => {});
    }
  }

  /**
   * The capture made snapshot `id`: each member's journal now counts from it (a member whose
   * watch was started again at the take counts from this full walk).
   */
  async settle(volume: string, id: string, taken: Map<string, MemberTake>, missed: Map<string, number>): Promise<void> {
    const now = this.#site.clock.now();
    for (const t of taken.values()) {
      const k = keyOf(volume, t.member);
      const s = this.#members.get(k);
      if (!s) continue;
      if (s.reason !== null) {
        s.base = null; // the watch could not be started again: the next capture walks in full too
        continue;
      }
      s.base = id;
      if (t.audit) s.lastAudit = now;
      const m = missed.get(t.member) ?? 0;
      if (m > 0) {
        s.missed += m;
        s.lastMissed = now;
      }
    }
  }

  /** Per tree member of the volume (a name: read from the catalog), its journal; a volume with the journal off: `off` for each. */
  status(volume: string | Volume): Record<string, JournalStatus> {
    const out: Record<string, JournalStatus> = {};
    const v = typeof volume === 'string' ? findVolume(this.#site.catalog, volume) : volume;
    if (!v) return out;
    const replica = !JournalService.watches(v);
    if (!v.journal) {
      const reason = `the change journal is off for volume ${v.name}: every ${replica ? 'writes check' : 'snapshot'} walks in full (\`ferry volume set ${v.name} --journal\` turns it on)`;
      for (const m of v.members) if (m.kind === 'tree') out[m.name] = { state: 'off', reason, replica, watches: 0, lastAudit: null, missed: 0, lastMissed: null, retryAt: null };
      return out;
    }
    const now = this.#site.clock.now();
    for (const s of this.#members.values()) {
      if (s.volume !== v.name) continue;
      // A replica's journal is live once a verification set its base; a member's also needs its audit.
      const due = s.reason !== null || s.base === null || (!s.replica && (s.lastAudit === null || now - s.lastAudit >= this.#auditEvery));
      const why = s.reason ?? (s.base === null ? (s.replica ? 'no verification of the replica since the watch began' : 'no full walk since the watch began') : null);
      out[s.member] = { state: due ? 'audit-due' : 'live', reason: why, replica: s.replica, watches: s.watches, lastAudit: s.lastAudit, missed: s.missed, lastMissed: s.lastMissed, retryAt: s.retryAt };
    }
    return out;
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#journal.close();
  }
}


// ---------------------------------------------------------------- the daemon's journal, and captures through it

const services = new WeakMap<Site, JournalService>();

/** The daemon attaches its journal to its site; a site opened by a command has none (full walks). */
export function attachJournal(site: Site, j: JournalService | undefined): void {
  if (j) services.set(site, j);
  else services.delete(site);
}

export function journalOf(site: Site): JournalService | undefined {
  return services.get(site);
}

/** The counters a snapshot's stats keep per member, so the next journaled capture can add to them. */
export const TOTALS = ['dirs', 'files', 'bytes', 'symlinks', 'hardlinks', 'specials'] as const;
export type MemberTotals = Record<(typeof TOTALS)[number], number>;

export const totalsOf = (s: CaptureStats): MemberTotals => Object.fromEntries(TOTALS.map((k) => [k, s[k]])) as MemberTotals;

function parentTotals(stats: Record<string, unknown> | undefined, member: string): MemberTotals | undefined {
  const t = (stats?.members as Record<string, unknown> | undefined)?.[member] as Record<string, unknown> | undefined;
  if (!t || typeof t !== 'object') return undefined;
  for (const k of TOTALS) if (typeof t[k] !== 'number' || !Number.isSafeInteger(t[k])) return undefined;
  return t as MemberTotals;
}

export interface MemberCapture {
  root: ObjectId;
  /** this capture's work (filesRead, bytesRead, objects...) with the member's totals in place of what a journaled capture counted */
  stats: CaptureStats;
  totals: MemberTotals;
  /** read only what the journal named */
  journaled: boolean;
  /** an audit found the journal missed a change */
  missed: boolean;
}

/**
 * Capture a tree member, through the journal where `take` allows it: a journaled capture counts
 * from the parent snapshot's tree of the member; an audit (a full walk) with a usable set also
 * makes the journaled capture and compares the two.
 */
export async function captureTreeMember(
  site: Site,
  member: string,
  path: string,
  parent: { manifest: ObjectId; stats: Record<string, unknown> } | undefined,
  take: MemberTake | undefined,
  o: CaptureOptions,
): Promise<MemberCapture> {
  const before = parent && take?.usable ? parentTotals(parent.stats, member) : undefined;
  const parentRoot = before && parent ? decodeSnapshot(site.store.get(parent.manifest)).members.find((m) => m.name === member && m.kind === 'tree')?.root : undefined;
  const journal = parentRoot && take ? { parent: parentRoot, dirs: take.set.dirs, tree: (id: ObjectId) => ({ entries: dirEntries(site.store, id) }), store: site.store } : undefined;
  const full = async (): Promise<MemberCapture> => {
    const r = await captureTree(path, o);
    return { root: r.root, stats: r.stats, totals: totalsOf(r.stats), journaled: false, missed: false };
  };
  if (!journal || !before) return full();
  if (take!.audit) {
    // The audit: the full walk is what is kept; the journaled capture beside it (the stat cache
    // read, not written) says whether the journal missed anything.
    const walked = await full();
    const j = await captureTree(path, { ...o, cache: o.cache && { load: o.cache.load, save: () => {} }, journal, onWarning: undefined });
    // A change made after the take may be seen by one capture and not the other: only a quiet
    // member (nothing changed since the take) tells a missed change apart.
    // (a directory kept from the parent may be stored another way than the walk stores it: dir-pages.ts)
    const differ = j.journaled !== false && j.root !== walked.root && !sameTreeContent(site.store, walked.root, j.root);
    return { ...walked, missed: differ && (await journalOf(site)?.quiet(take!.volume, member)) === true };
  }
  const r = await captureTree(path, { ...o, journal });
  if (!r.journaled || !r.removed) return { root: r.root, stats: r.stats, totals: totalsOf(r.stats), journaled: false, missed: false };
  const totals = { ...before };
  for (const k of TOTALS) totals[k] += r.stats[k] - r.removed[k];
  const stats: CaptureStats = { ...emptyStats(), ...r.stats, ...totals };
  return { root: r.root, stats, totals, journaled: true, missed: false };
}

/** Start the daemon's journal over its site (serve). Watches that cannot be made are in status, not errors. */
export async function startJournal(site: Site, o: JournalServiceOptions = {}): Promise<JournalService> {
  const j = new JournalService(site, o);
  await j.start();
  attachJournal(site, j);
  return j;
}

/** Stop the daemon's journal (the engine closes). */
export async function stopJournal(site: Site): Promise<void> {
  const j = journalOf(site);
  attachJournal(site, undefined);
  await j?.close();
}
