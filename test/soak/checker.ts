// What must hold, checked after every step (from the catalogs, which change only in transactions,
// so these hold at any instant) and at checkpoints once transfers have settled (across sites, and
// against the files): in the spirit of Jepsen's checkers, a model of what the soak did (what it
// wrote where, which snapshots acknowledged which content) tested against what ferry shows.
//
// After every step:
//   holds          every hold's holder exists (a mirror, a link, a replication source, a pending
//                  peer deletion): no hold outlives what it belongs to; no daemon had to release
//                  such a hold at start (a hold.release event)
//   rows           peer-snapshot rows and pending peer deletions belong to an existing mirror; a
//                  mirror's base exists and is held by it; a secondary's applied (and applying)
//                  snapshot exists; an active secondary relation means the secondary role (a
//                  secondary made by hand has none until bound); a secondary that had a complete
//                  snapshot never lacks one while the relation lasts
//   two-primaries  two sites primary for a volume only with a broken-off relation between them
//                  (the state split brain is reported from)
//   writes         content the soak wrote into a member that ferry then changed (an apply, a
//                  failback, a roll-back) is held by a snapshot: divergent writes are kept
//   outcome        no command ends in an internal error, a crash, damaged data or a hang
//   memory         every daemon stays under the memory budget; no daemon dies by itself
// At checkpoints, after transfers settle:
//   verify         `ferry verify` passes at every site
//   replica        an applied replica equals the snapshot it claims; no staging area is left
//   base           a mirror's base is held by its destination
//   peer-present   a peer snapshot `present` at a secondary exists there, same id and name
//   acknowledged   every snapshot `snapshot create` acknowledged exists somewhere, unless a
//                  deletion (retention, delete, volume remove) explains it, and restores to what
//                  was written
// At the end, after the faults are healed, workflows rerun and every mirror updated:
//   finished       no workflow still running, no hold of a transfer in flight, no peer snapshot
//                  pending or transferring and no peer deletion pending on a mirror that updated
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Rng } from './harness.ts';
import type { Executed, Op } from './actions.ts';
import { busy, readView, siteById, siteOfPeer, TRANSFERRING, type SecondaryRow, type SiteView, type View } from './view.ts';
import { STAGE_DIR, volumeDigest, type CliOutcome, type Member, type World } from './world.ts';

/** Two primaries that both took the volume over from one third site (two of its secondaries failed over): said in the message (known.ts). */
function siblingsTookOver(view: View, vol: string, p: SiteView, q: SiteView): string {
  const from = (x: SiteView) => new Set(x.secondaries.filter((r) => r.volume === vol && r.state === 'broken-off').map((r) => r.source_site));
  const fq = from(q);
  const common = [...from(p)].find((id) => fq.has(id));
  if (common === undefined) return '';
  const name = [...view.values()].find((s) => s.id === common)?.name ?? common.slice(0, 8);
  return ` (both failed over from ${name}: two of its secondaries took it over)`;
}

export interface Violation {
  check: string;
  step: number;
  site?: string;
  message: string;
  /** the known open defect it matches (known.ts), if any */
  known?: string;
}

/** The design's memory target per daemon (docs/design.md: 256 MiB). */
export const RSS_BUDGET = 256 * 1024 * 1024;

const CORRUPT = new Set(['OBJECT_CORRUPT', 'PACK_CORRUPT', 'VERIFY_FAILED', 'CATALOG_CORRUPT', 'OBJECT_NOT_FOUND', 'PROTOCOL', 'REPLICA_MISMATCH']);

interface Acked {
  volume: string;
  site: string;
  digest: string;
  step: number;
  /** the newest event id at the site when it was acknowledged */
  eventMark: number;
}

interface Pending {
  site: string;
  volume: string;
  digest: string;
  step: number;
  members: Member[];
  /** an apply or transfer was under way at that site when written: a mixed capture is possible */
  racy: boolean;
  /** the newest event id at the site when written */
  eventMark: number;
  suspectSince?: number;
}

export class Checker {
  readonly violations: Violation[] = [];
  readonly stats = { checkpoints: 0, restores: 0, unverifiableWrites: 0, keptWrites: 0, ackedRestored: 0, settleTimeouts: 0, replicasRaced: 0 };
  readonly acked = new Map<string, Acked>();
  readonly #digests = new Map<string, string>();
  readonly #pending = new Map<string, Pending>();
  readonly #everApplied = new Set<string>();
  readonly #goneOk = new Set<string>();
  readonly #reported = new Set<string>();
  readonly #rng: Rng;
  #restoreSeq = 0;
  #exitsSeen = 0;
  /** per site, the newest hold.release event already reported */
  readonly #releasesSeen = new Map<string, number>();
  /** step of the newest write into each site/volume (stray writes make REPLICA_MISMATCH legitimate) */
  readonly #lastWrite = new Map<string, number>();
  /** the step of the last `volume remove` that succeeded, per site/volume */
  readonly #volumeRemoved = new Map<string, number>();
  /** the first step each claim of a source was seen (a mirror's base, a peer snapshot present) */
  readonly #claimSince = new Map<string, number>();

  constructor(seed: number) {
    // The checker's own choices (which snapshots to restore) never touch the generator's sequence.
    this.#rng = new Rng((seed ^ 0x5a5a5a5a) >>> 0);
  }

  #add(v: Violation): void {
    // The same fault reported at every step after it is one violation.
    const key = `${v.check}|${v.site ?? ''}|${v.message.replace(/\d{2,}/g, '#').slice(0, 160)}`;
    if (this.#reported.has(key)) return;
    this.#reported.add(key);
    this.violations.push(v);
  }

  // -------------------------------------------------------------- around an action

  /** What to remember before an action runs: the volume's content before a snapshot is taken. */
  before(world: World, op: Op): string | undefined {
    if (op.kind === 'ferry' && op.args[0] === 'snapshot' && op.args[1] === 'create') return this.#digestAt(world, op.site, op.args[2]);
    return undefined;
  }

  after(world: World, op: Op, ex: Executed, pre: string | undefined, step: number): void {
    if (ex.wrote) this.#noteWrite(world, ex.wrote.site, ex.wrote.volume, step);
    const o = ex.outcome;
    if (op.kind !== 'ferry' || !o) return;
    const cmd = `ferry ${o.args.join(' ')} at ${o.site}`;
    if (o.args[0] === 'volume' && o.args[1] === 'remove' && o.code === 0 && !o.killed) this.#volumeRemoved.set(`${o.site}/${o.args[2]}`, step);
    if (o.hung) this.#add({ check: 'outcome', step, site: o.site, message: `${cmd} did not finish within ${Math.round(world.cliTimeoutMs / 1000)} s (killed)` });
    else if (!o.killed && o.signal) this.#add({ check: 'outcome', step, site: o.site, message: `${cmd} died of ${o.signal}: ${o.stderr.slice(-1500)}` });
    else if (!o.killed && o.code !== 0 && o.code !== 8) {
      const stack = /\b(TypeError|RangeError|ReferenceError|SyntaxError)\b/.test(o.stderr);
      if (o.errorCode === 'INTERNAL' || (o.errorCode === undefined && o.code !== 2) || stack) {
        this.#add({ check: 'outcome', step, site: o.site, message: `${cmd} failed with an internal error (exit ${o.code}${o.errorCode ? ` ${o.errorCode}` : ''}): ${(o.json?.error?.message ?? o.stderr).slice(0, 1500)}` });
      } else if (o.errorCode && CORRUPT.has(o.errorCode)) {
        const vol = o.args[2];
        const wroteRecently = [...this.#lastWrite].some(([k, s]) => k.endsWith(`/${vol}`) && step - s <= 3);
        if (!(o.errorCode === 'REPLICA_MISMATCH' && wroteRecently)) {
          this.#add({ check: 'outcome', step, site: o.site, message: `${cmd} reported ${o.errorCode}: ${(o.json?.error?.message ?? o.stderr).slice(0, 1500)}` });
        }
      } else if (o.errorCode === 'MIRROR_STATE' && o.args[0] === 'mirror' && !o.args.includes('--snapshot') && /is older than the mirror's base/.test(o.json?.error?.message ?? o.stderr)) {
        // A snapshot the update took itself is never older than the base (lineage comes before the
        // clock, docs/dr.md "Snapshot order"): the mirror would be stuck until the clock caught up.
        this.#add({ check: 'outcome', step, site: o.site, message: `${cmd} refused the snapshot it took as older than the base: ${(o.json?.error?.message ?? o.stderr).slice(0, 1500)}` });
      }
    }
    // An acknowledged snapshot: the content it must hold is what the volume held around the command.
    if (o.args[0] === 'snapshot' && o.args[1] === 'create' && (o.code === 0 || o.code === 8) && !o.killed) {
      const id = o.json?.snapshot?.id as string | undefined;
      const post = this.#digestAt(world, op.site, o.args[2]);
      if (id && pre && pre === post && o.code === 0) {
        this.acked.set(id, { volume: o.args[2], site: op.site, digest: pre, step, eventMark: newestEvent(world, op.site) });
        this.#digests.set(id, pre);
      }
    }
  }

  #digestAt(world: World, site: string, volume: string): string | undefined {
    try {
      const ms = world.members(world.site(site), volume);
      return ms.length ? volumeDigest(ms) : undefined;
    } catch {
      return undefined;
    }
  }

  #noteWrite(world: World, site: string, volume: string, step: number): void {
    this.#lastWrite.set(`${site}/${volume}`, step);
    const members = world.members(world.site(site), volume);
    const digest = members.length ? volumeDigest(members) : undefined;
    if (!digest) return;
    const view = readView(world);
    const racy = Boolean(view.get(site)?.secondaries.some((r) => r.volume === volume && r.applying)) || [...view.values()].some((s) => s.mirrors.some((m) => m.volume === volume && TRANSFERRING.includes(m.state)));
    const eventMark = newestEvent(world, site);
    this.#pending.set(`${site}/${volume}`, { site, volume, digest, step, members, racy, eventMark });
  }

  // -------------------------------------------------------------- after every step

  async afterStep(world: World, view: View, step: number): Promise<void> {
    for (const s of view.values()) this.#siteRows(view, s, step);
    for (const s of view.values()) {
      for (const m of s.mirrors) if (m.base && !this.#claimSince.has(`base|${s.name}|${m.id}|${m.base}`)) this.#claimSince.set(`base|${s.name}|${m.id}|${m.base}`, step);
      for (const ps of s.peerSnapshots) if (ps.state === 'present' && !this.#claimSince.has(`peer|${s.name}|${ps.mirror}|${ps.snapshot}`)) this.#claimSince.set(`peer|${s.name}|${ps.mirror}|${ps.snapshot}`, step);
    }
    this.#twoPrimaries(view, step);
    await this.#writesKept(world, view, step);
    for (const s of world.sites) {
      const rss = world.rss(s);
      if (rss === undefined) continue;
      s.rssMax = Math.max(s.rssMax, rss);
      if (rss > RSS_BUDGET) this.#add({ check: 'memory', step, site: s.name, message: `the daemon of ${s.name} holds ${Math.round(rss / 2 ** 20)} MiB, over the ${RSS_BUDGET / 2 ** 20} MiB budget` });
    }
    // A daemon at start releases holds whose holder is gone (mirrors.ts, releaseOrphanHolds): each
    // such release means a hold outlived what it belonged to, even if no step saw it in between.
    for (const s of world.sites) {
      const from = this.#releasesSeen.get(s.name) ?? 0;
      const rows = world.catalog(s, (db) => db.prepare("SELECT id, detail FROM events WHERE kind = 'hold.release' AND id > ? ORDER BY id").all(from)) as Array<{ id: number; detail: string }>;
      for (const e of rows) this.#add({ check: 'holds', step, site: s.name, message: `${s.name}: its daemon found and released holds whose holder was gone: ${e.detail.slice(0, 1500)}` });
      if (rows.length) this.#releasesSeen.set(s.name, rows[rows.length - 1].id);
    }
    for (const e of world.unexpectedExits.slice(this.#exitsSeen)) {
      this.#add({ check: 'daemon', step, site: e.site, message: `the daemon of ${e.site} exited by itself (${e.code ?? e.signal}): ${e.log.slice(-3000)}` });
    }
    this.#exitsSeen = world.unexpectedExits.length;
  }

  #siteRows(view: View, s: SiteView, step: number): void {
    const add = (check: string, message: string) => this.#add({ check, step, site: s.name, message: `${s.name}: ${message}` });
    const mirrorIds = new Set(s.mirrors.map((m) => m.id));
    const snaps = new Map(s.snapshots.map((x) => [x.id, x]));
    for (const h of s.holds) {
      const what = `hold ${h.holder} on ${h.snapshot} (${h.volume})`;
      if (h.holder.startsWith('mirror-from:')) {
        const src = h.holder.slice('mirror-from:'.length);
        if (!s.secondaries.some((r) => r.volume === h.volume && r.source_site === src)) add('holds', `${what}: this volume follows no such source`);
      } else if (h.holder.startsWith('mirror:')) {
        const id = h.holder.slice('mirror:'.length).replace(/:inflight$/, '');
        if (!mirrorIds.has(id)) add('holds', `${what}: no mirror ${id} exists`);
      } else if (h.holder.startsWith('link:')) {
        if (!s.links.some((l) => l.path === h.holder.slice('link:'.length))) add('holds', `${what}: no such link`);
      } else if (h.holder === 'peer-delete') {
        if (!s.peerDeletions.some((d) => d.snapshot === h.snapshot)) add('holds', `${what}: no peer deletion of it is pending`);
      } else if (h.holder !== 'peer') add('holds', `${what}: unknown kind of holder`);
    }
    for (const p of s.peerSnapshots) if (!mirrorIds.has(p.mirror)) add('rows', `peer-snapshot row of ${p.snapshot} (${p.state}) for mirror ${p.mirror}, which does not exist`);
    for (const d of s.peerDeletions) if (!mirrorIds.has(d.mirror)) add('rows', `pending peer deletion of ${d.snapshot} for mirror ${d.mirror}, which does not exist`);
    for (const m of s.mirrors) {
      if (!m.base) continue;
      if (!snaps.has(m.base)) add('rows', `mirror ${m.id} (${m.state}) has base ${m.base}, which is not here`);
      else if (!s.holds.some((h) => h.snapshot === m.base && h.holder === `mirror:${m.id}`)) add('rows', `mirror ${m.id} (${m.state}): its base ${m.base} is not held by it`);
    }
    for (const r of s.secondaries) {
      const role = s.volumes.find((v) => v.name === r.volume)?.role;
      if (r.state === 'active' && role !== 'secondary') add('rows', `volume ${r.volume} is ${role ?? 'missing'} but has an active secondary relation`);
      if (r.applied && !snaps.has(r.applied)) add('rows', `secondary ${r.volume} shows ${r.applied}, which is not here`);
      if (r.applying && !snaps.has(r.applying)) add('rows', `secondary ${r.volume} is applying ${r.applying}, which is not here`);
      const key = `${s.name}/${r.volume}/${r.source_site}`;
      if (r.applied) this.#everApplied.add(key);
      else if (this.#everApplied.has(key) && r.state === 'active') add('rows', `secondary ${r.volume} (of ${r.source_site.slice(0, 8)}) held a complete snapshot and now shows none`);
    }
    for (const key of [...this.#everApplied]) {
      const [site, volume, src] = key.split('/');
      if (site === s.name && !s.secondaries.some((r) => r.volume === volume && r.source_site === src)) this.#everApplied.delete(key);
    }
  }

  #twoPrimaries(view: View, step: number): void {
    const sites = [...view.values()];
    const vols = new Set(sites.flatMap((s) => s.volumes.map((v) => v.name)));
    for (const vol of vols) {
      const prim = sites.filter((s) => s.volumes.some((v) => v.name === vol && v.role === 'primary'));
      for (let i = 0; i < prim.length; i++) {
        for (let j = i + 1; j < prim.length; j++) {
          const [p, q] = [prim[i], prim[j]];
          // Two volumes of one name with no history in common (one removed and created anew) are two volumes.
          const mine = new Set(p.snapshots.filter((x) => x.volume === vol).map((x) => x.id));
          if (!q.snapshots.some((x) => x.volume === vol && mine.has(x.id))) continue;
          const knows = (x: SiteView, y: SiteView) =>
            x.mirrors.some((m) => m.volume === vol && m.state === 'broken-off' && siteOfPeer(view, x, m.peer) === y) ||
            x.secondaries.some((r) => r.volume === vol && r.state === 'broken-off' && r.source_site === y.id) ||
            x.splitBrains.some((b) => b.volume === vol && b.site === y.id);
          if (!knows(p, q) && !knows(q, p)) {
            this.#add({ check: 'two-primaries', step, message: `${vol} is primary at ${p.name} and at ${q.name}, and neither holds a broken-off relation to the other (split brain cannot be reported)${siblingsTookOver(view, vol, p, q)}` });
          }
        }
      }
    }
  }

  /** Content the soak wrote that is no longer there must be held by a snapshot (nothing lost silently). */
  async #writesKept(world: World, view: View, step: number): Promise<void> {
    for (const [key, p] of [...this.#pending]) {
      const now = volumeDigest(p.members);
      if (now === p.digest) continue;
      const where = view.get(p.site)!;
      const found = await this.#findSnapshotWith(world, view, [where, ...(p.suspectSince !== undefined ? [...view.values()].filter((s) => s !== where) : [])], p.volume, p.digest);
      if (found) {
        this.#pending.delete(key);
        this.stats.keptWrites++;
        continue;
      }
      if (p.suspectSince === undefined) {
        p.suspectSince = step; // a snapshot being committed, a restore that failed: look again next step, at every site
        continue;
      }
      this.#pending.delete(key);
      // Written while an apply ran there (its capture mixes both), or kept in a snapshot the soak has
      // deleted since (snapshot delete, retention, volume remove): not to be judged.
      if (p.racy || deletionsSince(world, p.site, p.eventMark)) {
        this.stats.unverifiableWrites++;
        continue;
      }
      this.#add({ check: 'writes', step, site: p.site, message: `what the soak wrote into ${p.volume} at ${p.site} at step ${p.step} (content ${p.digest}) was replaced (now ${now ?? 'missing'}) and no snapshot holds it: divergent writes were dropped` });
    }
  }

  async #findSnapshotWith(world: World, view: View, sites: SiteView[], volume: string, digest: string): Promise<string | undefined> {
    let restores = 0;
    for (const s of sites) {
      const ids = s.snapshots.filter((x) => x.volume === volume).map((x) => x.id).reverse();
      for (const id of ids) if (this.#digests.get(id) === digest) return id;
      for (const id of ids) {
        if (this.#digests.has(id)) continue;
        if (restores++ >= 8) return undefined;
        const d = await this.snapshotDigest(world, s.name, volume, id);
        if (d === digest) return id;
      }
    }
    return undefined;
  }

  /** A snapshot's content, restored at a site through the CLI (cached: snapshots never change). */
  async snapshotDigest(world: World, site: string, volume: string, id: string, step = -1): Promise<string | undefined> {
    const known = this.#digests.get(id);
    if (known) return known;
    const s = world.site(site);
    const members = world.members(s, volume);
    if (members.length === 0) return undefined;
    const target = join(world.root, 'restores', String(++this.#restoreSeq));
    this.stats.restores++;
    try {
      const r = await world.cli(s, ['restore', volume, '--snapshot', id, '--target', target]);
      if (r.code !== 0 && r.code !== 8) {
        if (r.errorCode !== 'SNAPSHOT_NOT_FOUND' && r.errorCode !== 'VOLUME_NOT_FOUND' && !r.killed && !noSpaceWhileFull(world, site, r)) {
          this.#add({ check: 'restore', step, site, message: `restore of ${volume} snapshot ${id} at ${site} failed (exit ${r.code} ${r.errorCode ?? ''}): ${(r.json?.error?.message ?? r.stderr).slice(0, 800)}` });
        }
        return undefined;
      }
      // Where each member went, as the command says (one member: the target itself).
      const to = new Map(((r.json?.results ?? []) as Array<{ member: string; target: string }>).map((x) => [x.member, x.target]));
      const restored = members.map((m) => ({ ...m, path: to.get(m.name) ?? (members.length > 1 ? join(target, m.name) : target) }));
      const d = volumeDigest(restored);
      if (d) this.#digests.set(id, d);
      return d;
    } finally {
      rmSync(target, { recursive: true, force: true });
    }
  }

  // -------------------------------------------------------------- checkpoints

  /** Wait until no transfer or apply is under way anywhere (catalog states); false at the time limit. */
  async settle(world: World, ms = 90_000): Promise<boolean> {
    const until = Date.now() + ms;
    for (;;) {
      if (busy(readView(world)).length === 0) return true;
      if (Date.now() > until) {
        this.stats.settleTimeouts++;
        return false;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  async checkpoint(world: World, step: number, o: { final?: boolean; updated?: Set<string> } = {}): Promise<void> {
    this.stats.checkpoints++;
    const settled = await this.settle(world, o.final ? 180_000 : 60_000);
    if (!settled && o.final) this.#add({ check: 'finished', step, message: `transfers still under way after the faults healed: ${busy(readView(world)).join('; ')}` });
    for (const s of world.sites) {
      const r = await world.cli(s, ['verify']);
      if (r.code !== 0 && !r.killed && !noSpaceWhileFull(world, s.name, r)) this.#add({ check: 'verify', step, site: s.name, message: `ferry verify at ${s.name} exited ${r.code} ${r.errorCode ?? ''}: ${(r.json?.error?.message ?? r.stderr).slice(0, 1500)}` });
    }
    if (!settled) return; // what follows compares sites and files: only at rest
    // Read once `verify` has run everywhere, not before: settling only says nothing was under way when
    // it looked, and a scheduled update (or the delivery of peer snapshots) may start at any moment.
    const view = readView(world);
    await this.#replicas(world, view, step);
    // Every destination read after every source: a source claims a snapshot only once its
    // destination committed it, so a claim can never be newer than what is read of the destination.
    this.claims(view, step, readView(world));
    await this.#acknowledged(world, view, step, o.final ? 12 : 2);
    if (o.final) {
      this.#finished(view, step, o.updated ?? new Set());
      await this.#splitBrainShown(world, view, step);
    }
  }

  async #replicas(world: World, view: View, step: number): Promise<void> {
    for (const s of view.values()) {
      for (const r of s.secondaries) {
        if (r.state !== 'active' || r.applying || r.consistent !== 1 || !r.applied) continue;
        const members = world.members(world.site(s.name), r.volume);
        for (const m of members) {
          if (m.kind === 'tree' && existsSync(join(m.path, STAGE_DIR))) this.#add({ check: 'replica', step, site: s.name, message: `${s.name}: the replica of ${r.volume} (member ${m.name}) still has a ${STAGE_DIR} area after its apply completed` });
        }
        const now = volumeDigest(members);
        // Judged only if nothing was applied there, nor began to be, while it was read (an update can
        // start at any moment): what the replica shows is then what it showed when it was read.
        if (!sameApplied(s.name, r, readView(world))) {
          this.stats.replicasRaced++;
          continue;
        }
        const p = this.#pending.get(`${s.name}/${r.volume}`);
        if (p && p.digest === now) continue; // the soak wrote into this replica: ferry finds that at the next update
        const want = await this.snapshotDigest(world, s.name, r.volume, r.applied, step);
        if (want === undefined) continue;
        if (now !== want) this.#add({ check: 'replica', step, site: s.name, message: `${s.name}: the replica of ${r.volume} (${now ?? 'missing'}) is not the snapshot it shows, ${r.applied} (${want})` });
      }
    }
  }

  /** What a source claims about its destinations (bases held, peer snapshots present) against what they hold. */
  claims(view: View, step: number, later: View = view): void {
    for (const p of view.values()) {
      for (const m of p.mirrors) {
        const d = siteOfPeer(view, p, m.peer);
        const dest = d && later.get(d.name);
        if (!dest) continue;
        const sec = dest.secondaries.find((r) => r.volume === m.remote_volume);
        // Only while the destination still follows this site: otherwise the mirror learns at its next update.
        if (!sec || sec.source_site !== p.id || sec.state !== 'active') continue;
        const has = (id: string) => dest.snapshots.some((x) => x.id === id && x.volume === m.remote_volume);
        // A claim the source made before the destination's volume was removed (and bound again since) is
        // said so in the violation: known.ts names that case.
        const removed = this.#volumeRemoved.get(`${dest.name}/${m.remote_volume}`);
        const stale = (key: string): string => {
          const since = this.#claimSince.get(key);
          return since !== undefined && removed !== undefined && since <= removed ? ` (claimed since step ${since}, before ${m.remote_volume} at ${dest.name} was removed at step ${removed})` : '';
        };
        // The window the driver recovers from (plan.ts, newerCommonBase): the destination committed a
        // newer snapshot of this source and released the base, and the answer never reached the
        // source (its daemon killed, the link cut). The next update adopts the newer one as its base.
        if (m.base && (m.state === 'idle' || m.state === 'paused') && !has(m.base) && !adoptable(p, m.volume, m.base, has)) {
          this.#add({ check: 'base', step, site: dest.name, message: `mirror ${m.id} at ${p.name} is ${m.state} with base ${m.base}, which ${dest.name} does not hold${stale(`base|${p.name}|${m.id}|${m.base}`)}` });
        }
        for (const ps of p.peerSnapshots) {
          if (ps.mirror !== m.id || ps.state !== 'present') continue;
          const mine = p.snapshots.find((x) => x.id === ps.snapshot);
          const there = dest.snapshots.find((x) => x.id === ps.snapshot && x.volume === m.remote_volume);
          if (!there) this.#add({ check: 'peer-present', step, site: dest.name, message: `${p.name} reports peer snapshot ${mine?.name ?? ''} ${ps.snapshot} present at ${dest.name} (mirror ${m.id}, ${m.state}), which does not hold it${stale(`peer|${p.name}|${m.id}|${ps.snapshot}`)}` });
          else if (mine && there.name !== mine.name) this.#add({ check: 'peer-present', step, site: dest.name, message: `peer snapshot ${ps.snapshot} is named ${mine.name} at ${p.name} but ${there.name} at ${dest.name}` });
        }
      }
    }
  }

  async #acknowledged(world: World, view: View, step: number, restoreSample: number): Promise<void> {
    const present: Array<[string, Acked, SiteView]> = [];
    for (const [id, a] of this.acked) {
      if (this.#goneOk.has(id)) continue;
      const at = [...view.values()].find((s) => s.snapshots.some((x) => x.id === id));
      if (at) {
        present.push([id, a, at]);
        continue;
      }
      if (this.#deletionExplains(world, id, a)) {
        this.#goneOk.add(id);
        continue;
      }
      this.#add({ check: 'acknowledged', step, site: a.site, message: `snapshot ${id} of ${a.volume}, acknowledged at ${a.site} at step ${a.step}, is at no site, and no deletion (retention, snapshot delete, volume remove) names it` });
      this.#goneOk.add(id);
    }
    // A sample restored, from a site that holds it, must be what was written.
    for (let i = 0; i < restoreSample && present.length; i++) {
      const [id, a, at] = present.splice(this.#rng.int(present.length), 1)[0];
      this.#digests.delete(id); // restore it for real
      const d = await this.snapshotDigest(world, at.name, a.volume, id, step);
      this.#digests.set(id, a.digest);
      if (d === undefined) continue;
      this.stats.ackedRestored++;
      if (d !== a.digest) this.#add({ check: 'acknowledged', step, site: at.name, message: `snapshot ${id} of ${a.volume} restored at ${at.name} is ${d}, not what was written when ${a.site} acknowledged it (${a.digest})` });
    }
  }

  #deletionExplains(world: World, id: string, a: Acked): boolean {
    for (const s of world.sites) {
      const rows = world.catalog(s, (db) =>
        db.prepare("SELECT id, kind, volume, detail FROM events WHERE kind IN ('snapshot.delete', 'retention', 'snapshot.peer-delete', 'volume.remove') ORDER BY id").all(),
      ) as Array<{ id: number; kind: string; volume: string | null; detail: string }>;
      for (const e of rows) {
        if (e.kind === 'volume.remove') {
          if (e.volume === a.volume && (s.name !== a.site || e.id > a.eventMark)) return true;
        } else if (e.detail.includes(id)) return true;
      }
    }
    return false;
  }

  /** Where two sites are primary of one volume, `ferry status` at one of them shows it (broken off, or split brain once both wrote). */
  async #splitBrainShown(world: World, view: View, step: number): Promise<void> {
    const sites = [...view.values()];
    for (const vol of new Set(sites.flatMap((s) => s.volumes.map((v) => v.name)))) {
      const prim = sites.filter((s) => s.volumes.some((v) => v.name === vol && v.role === 'primary'));
      for (let i = 0; i < prim.length; i++) {
        for (let j = i + 1; j < prim.length; j++) {
          const [p, q] = [prim[i], prim[j]];
          const mine = new Set(p.snapshots.filter((x) => x.volume === vol).map((x) => x.id));
          if (!q.snapshots.some((x) => x.volume === vol && mine.has(x.id))) continue;
          let shown = false;
          for (const [x, y] of [[p, q], [q, p]]) {
            const r = await world.cli(world.site(x.name), ['status']);
            const v = (r.json?.volumes ?? []).find((e: { name: string }) => e.name === vol);
            const flagged = (st: unknown) => st === 'broken-off' || st === 'split-brain';
            if (v?.mirrors?.some((m: { peer: string; state: string }) => siteOfPeer(view, x, m.peer) === y && flagged(m.state))) shown = true;
            if (v?.secondary && v.secondary.sourceId === y.id && flagged(v.secondary.state)) shown = true;
            if (v?.splitBrains?.some((b: { site: string }) => b.site === y.id)) shown = true;
          }
          if (!shown) this.#add({ check: 'two-primaries', step, message: `${vol} is primary at ${p.name} and ${q.name}, and \`ferry status\` at neither shows a broken-off relation or split brain${siblingsTookOver(view, vol, p, q)}` });
        }
      }
    }
  }

  #finished(view: View, step: number, updated: Set<string>): void {
    for (const s of view.values()) {
      const add = (message: string) => this.#add({ check: 'finished', step, site: s.name, message: `${s.name}: ${message}` });
      for (const w of s.workflows) add(`${w.kind} of ${w.volume} still running at step ${w.step} after it was run again`);
      for (const h of s.holds) if (h.holder.endsWith(':inflight')) add(`hold ${h.holder} on ${h.snapshot} left after every transfer ended`);
      for (const p of s.peerSnapshots) {
        if (p.state === 'transferring') add(`peer snapshot ${p.snapshot} still transferring to ${p.mirror} with no transfer under way`);
        else if (p.state === 'pending' && updated.has(`${s.name}/${p.mirror}`)) add(`peer snapshot ${p.snapshot} still pending for ${p.mirror} after an update of that mirror succeeded`);
      }
      for (const d of s.peerDeletions) if (updated.has(`${s.name}/${d.mirror}`)) add(`deletion of peer snapshot ${d.snapshot} still pending for ${d.mirror} after an update of that mirror succeeded`);
    }
  }
}

/** Whether a site's secondary row in a later view still shows the same applied snapshot, with no apply under way there nor a transfer into it from its source. */
function sameApplied(site: string, r: SecondaryRow, later: View): boolean {
  const s = later.get(site);
  const again = s?.secondaries.find((x) => x.volume === r.volume && x.source_site === r.source_site);
  if (!s || !again || again.applied !== r.applied || again.applying || again.consistent !== 1 || again.state !== 'active') return false;
  const src = siteById(later, r.source_site);
  return !src?.mirrors.some((m) => m.remote_volume === r.volume && siteOfPeer(later, src, m.peer) === s && TRANSFERRING.includes(m.state));
}

/** A command refused for want of space at a site the soak has filled on purpose: the fault, not a violation. */
function noSpaceWhileFull(world: World, site: string, r: CliOutcome): boolean {
  return world.site(site).diskFullSteps > 0 && (r.errorCode === 'NO_SPACE' || r.errorCode === 'IO');
}

const DELETIONS = "('snapshot.delete', 'retention', 'snapshot.peer-delete', 'volume.remove')";

function newestEvent(world: World, site: string): number {
  return world.catalog(world.site(site), (db) => (db.prepare('SELECT max(id) AS m FROM events').get() as { m: number | null }).m ?? 0);
}

/** Whether snapshots of the site were deleted since the event `mark` (by the commands the soak ran). */
function deletionsSince(world: World, site: string, mark: number): boolean {
  return world.catalog(world.site(site), (db) => db.prepare(`SELECT 1 FROM events WHERE id > ? AND kind IN ${DELETIONS} LIMIT 1`).get(mark) !== undefined);
}

/**
 * Whether the destination holds a snapshot the source `p` took itself after `base` (rows in the
 * order they were made there) and still holds: the next update adopts it as the base.
 */
export function adoptable(p: SiteView, volume: string, base: string, heldThere: (id: string) => boolean): boolean {
  const mine = p.snapshots.filter((x) => x.volume === volume);
  const at = mine.findIndex((x) => x.id === base);
  return at >= 0 && mine.slice(at + 1).some((x) => x.origin === p.id && heldThere(x.id));
}
