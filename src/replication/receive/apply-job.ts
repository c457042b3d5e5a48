// The apply job: bring a replica to a committed snapshot. The replica is
// captured first (cheap with the stat cache and the replica journal); if
// that capture differs from what was last applied, somebody wrote into the
// replica, and the capture is kept as a snapshot of its own before anything
// is overwritten (and without --force nothing is). After the apply the
// replica is captured again and must equal the snapshot exactly. An apply
// that did not complete is finished before anything else, and its replica
// is checked the same way: what it holds besides that apply's own work is
// kept first (mid-apply.ts); a forced failover's rollback (rollBack) too.
// After an apply, older replication snapshots are released (the source's
// `keep`).
//
// Owns: the `applying` journal of a replica (startApply .. finishApply) and
// its verification. Must never: overwrite writes not kept first, or mark a
// replica consistent that was not found exactly at its snapshot.
import { FerryError, isFerryError, wrapIoError } from '../../core/errors.ts';
import { pausePoint } from '../../core/crash.ts';
import type { ObjectId } from '../../core/ids.ts';
import type { CachedFile } from '../../snapshot/stat-cache.ts';
import { dirEntries } from '../../snapshot/dir-pages.ts';
import { readManifest } from '../../snapshot/graph.ts';
import { diffTrees, sameTreeContent } from '../../snapshot/diff.ts';
import type { SnapshotManifest } from '../../snapshot/model.ts';
import { finishApply, getSecondary, keepSnapshotsOf, noteApplyError, recordInPlace, secondariesApplying, startApply, type SecondaryRow } from '../../catalog/secondaries.ts';
import type { InPlaceRecord } from '../in-place.ts';
import { deleteSnapshotRow, replicationSnapshotsBefore, snapshotById } from '../../catalog/snapshots.ts';
import { holdReplica } from '../../catalog/holds.ts';
import { commitStatCache } from '../../catalog/stat-cache.ts';
import { getVolume, type Volume } from '../../catalog/volumes.ts';
import { applyTree } from '../apply.ts';
import { applyImage } from '../apply-image.ts';
import { cachedRefs } from '../delta.ts';
import { STAGE_DIR, type Stager } from '../stage.ts';
import type { CommitResponse } from '../types.ts';
import { round3, secondaryFor, stagerFor, type ReceiveHost, type Receiving } from './host.ts';
import { ReplicaCapture, statOf, type ImageStat, type Unfinished } from './replica-capture.ts';
import { WrittenFiles } from './written-files.ts';

/** Applies, rollbacks and resumptions for one peer's secondaries. */
export class ApplyJob {
  readonly #rx: Receiving;
  readonly #host: ReceiveHost;
  readonly #capture: ReplicaCapture;

  constructor(rx: Receiving) {
    this.#rx = rx;
    this.#host = rx.host;
    this.#capture = new ReplicaCapture(rx);
  }

  /**
   * Bring the replica of `volume` to `target`, the caller holding the volume's apply lock
   * (ReplicaState.exclusive): an unfinished apply is finished first; writes found in the replica
   * are kept, and refuse the apply unless `force`.
   */
  async apply(volume: string, target: SnapshotManifest, force: boolean): Promise<CommitResponse> {
    const host = this.#host;
    const row = secondaryFor(this.#rx, volume);
    const vol = getVolume(host.catalog, volume);
    if (row.applied === target.id && row.applying === null) return { snapshot: target.id, applied: true };
    // An apply left unfinished (a crash, a cancellation, a failed verification, an I/O error) left the
    // replica part way between where it started and its snapshot, maybe with someone's writes besides:
    // that apply is finished first, whatever was asked now, so that the replica is exactly a snapshot
    // before the next diff is taken from it.
    let unfinished: Unfinished | undefined;
    if (row.applying) {
      const from = JSON.parse(row.applying_from ?? '{}') as Record<string, ObjectId | null>;
      if (row.applying !== target.id) {
        const manifestId = snapshotById(host.catalog, row.applying)?.manifest;
        if (manifestId) {
          const first = await this.apply(volume, readManifest(host.store, manifestId), true);
          const next = await this.apply(volume, target, force);
          return first.writesSnapshot && !next.writesSnapshot ? { ...next, writesSnapshot: first.writesSnapshot } : next;
        }
        unfinished = { from, to: null }; // its snapshot is gone: only where it started is known
      } else unfinished = { from, to: target };
    }
    const phases: Record<string, number> = {};
    const stager = await this.#stagedFor(vol, row, target, phases);
    const t0 = performance.now();
    const check = await this.#capture.captureReplica(vol, row, stager ? STAGE_DIR : undefined, unfinished);
    phases.writesCheck = round3((performance.now() - t0) / 1000);
    // Writes found are kept (check.snapshot). Into a replica that shows a complete snapshot, they also
    // refuse the apply unless forced: the replica stays usable as it is. An unfinished apply goes on
    // all the same: its replica is inconsistent, of use to nobody, and refusing would leave it so.
    if (check.changed && !force && !unfinished) {
      host.event({ kind: 'replica.writes', volume, outcome: 'failed', detail: { kept: check.snapshot, refused: target.id } });
      return {
        snapshot: target.id,
        applied: false,
        writesSnapshot: check.snapshot,
        refused: `someone wrote into the replica of ${volume} since the last apply${row.applied ? '' : ' (or it was bound over files no apply wrote)'}; the writes are kept in snapshot ${check.snapshot}; the source overwrites them only when forced`,
      };
    }
    return this.#bringTo(vol, row, target, check.roots, { phases, stager, writesSnapshot: check.snapshot, exact: check.exact, journaled: check.journaled });
  }

  /**
   * Roll the replica back to the snapshot it last showed complete (a forced failover; the caller holds
   * the replica lock: withReplicaLock). Like every apply, it first keeps in a replica-writes-* snapshot
   * what the replica holds besides an unfinished apply's own work, and verifies the replica after.
   */
  async rollBack(volume: string): Promise<{ to: string; kept?: string }> {
    const host = this.#host;
    const row = getSecondary(host.catalog, volume);
    if (!row?.applied) throw new FerryError('MIRROR_STATE', `the replica of ${volume} never showed a complete snapshot: there is nothing to roll it back to`);
    const vol = getVolume(host.catalog, volume);
    const manifestOf = (id: string) => snapshotById(host.catalog, id)?.manifest;
    const back = manifestOf(row.applied);
    if (!back) throw new FerryError('SNAPSHOT_NOT_FOUND', `snapshot ${row.applied}, which the replica of ${volume} last showed complete, is gone: there is nothing to roll it back to`);
    let unfinished: Unfinished | undefined;
    if (row.applying) {
      const to = manifestOf(row.applying);
      unfinished = { from: JSON.parse(row.applying_from ?? '{}') as Record<string, ObjectId | null>, to: to ? readManifest(host.store, to) : null };
    }
    const phases: Record<string, number> = {};
    // A forced failover's rollback walks the replica in full (not from the journal): it is rare, and it
    // is where an operator most needs every write kept.
    const check = await this.#capture.captureReplica(vol, row, undefined, unfinished, true);
    await this.#bringTo(vol, row, readManifest(host.store, back), check.roots, { phases, writesSnapshot: check.snapshot, rollback: true, exact: check.exact });
    return { to: row.applied, ...(check.snapshot ? { kept: check.snapshot } : {}) };
  }

  /**
   * Bring the replica from what it holds (`from`: its member roots, as just captured) to `target`,
   * journaled (`applying`: a crash is finished by the next apply), then verify it: it must be exactly
   * the snapshot. A failure leaves the replica marked inconsistent and records why (`apply_error`:
   * failover and status say what happened). `rollback`: a forced failover's own work, which is not
   * cancelled by it and releases nothing.
   */
  async #bringTo(vol: Volume, row: SecondaryRow, target: SnapshotManifest, from: Record<string, ObjectId | null>, o: { phases: Record<string, number>; stager?: Stager; writesSnapshot?: string; rollback?: boolean; exact?: boolean; journaled?: boolean }): Promise<CommitResponse> {
    const host = this.#host;
    const volume = vol.name;
    const { phases, stager, writesSnapshot } = o;
    if (!o.rollback) this.#checkCancelled(volume, target, row);
    host.catalog.tx(() => {
      startApply(host.catalog, volume, target.id, from);
      host.event({ kind: 'replica.apply', volume, outcome: 'info', detail: { from: row.applied, to: target.id, transition: 'consistent => inconsistent', ...(o.rollback ? { rollback: true } : {}) } });
    });
    try {
      const warnings: string[] = [];
      const imageStats: Record<string, ImageStat> = {};
      const applied = { created: 0, updated: 0, removed: 0, metadata: 0, bytesWritten: 0 };
      // Objects were verified by hash when they arrived, and the replica is captured and compared with the
      // snapshot after the apply: reading them back, the record's CRC is check enough (no second hash).
      const store = {
        has: (id: ObjectId) => host.store.has(id),
        info: (id: ObjectId) => host.store.info(id),
        // the same chunk in several files (copies, templates) is decoded once while it stays recent
        get: cachedRefs((id: ObjectId) => host.store.getUnhashed(id)),
      };
      // What the apply wrote, as lstat saw each file in place: the verification below trusts these (see ReplicaCapture.captureTrees).
      // (bounded in memory: written-files.ts)
      const written = new WrittenFiles(host.catalog, volume);
      // Subtrees the apply left alone, as the writes check found them: not walked again.
      const unchanged = new Map<string, Map<string, ObjectId>>();
      const applyStarted = performance.now();
      for (const m of vol.members) {
        const to = target.members.find((x) => x.name === m.name)!;
        const same = new Map<string, ObjectId>();
        unchanged.set(m.name, same);
        const opts = {
          subtrees: host.replicas.applyPool.run,
          staged: m.kind === 'tree' ? stager?.take : undefined,
          stagedEntry: m.kind === 'tree' ? stager?.takeEntry : undefined,
          onDirUnchanged: (rel: string, tree: ObjectId) => same.set(rel, tree),
          // large files changed in a few places are patched in place, each journaled first (in-place.ts)
          inPlace: m.kind === 'tree' ? (rel: string, r: InPlaceRecord) => recordInPlace(host.catalog, volume, m.name, Buffer.from(rel, 'latin1'), JSON.stringify(r)) : undefined,
          store,
          onWarning: (p: string, msg: string) => warnings.push(`${p}: ${msg}`),
          onFileWritten: (dir: string, name: string, f: CachedFile) => written.add(m.name, dir, name, f),
        };
        const st = m.kind === 'tree' ? await applyTree(m.path, from[m.name] ?? null, to.root, opts) : applyImage(m.path, from[m.name] ?? null, to.root, opts);
        if (m.kind === 'image') imageStats[m.name] = statOf(m.path);
        for (const k of Object.keys(applied) as Array<keyof typeof applied>) applied[k] += st[k];
      }
      if (stager) {
        // what was staged and not taken (a tree that occurs twice, the member root's own files) goes
        stager.clear();
        host.replicas.of(volume).dropStager();
      }
      phases.apply = round3((performance.now() - applyStarted) / 1000);
      if (!o.rollback) {
        // Test hook (FERRY_TEST_PAUSE_AT=apply:after-write): hold a written, not yet verified replica still.
        await pausePoint('apply:after-write', () => host.replicas.of(volume).cancelled !== undefined);
        this.#checkCancelled(volume, target, row);
      }
      // The replica must now be exactly the snapshot: capture it and compare.
      const verifyKey = target.id;
      const verifyStarted = performance.now();
      const verified = { filesRead: 0, filesReused: 0, bytesRead: 0 };
      // With an exact writes check (the replica as of its take was `from`), the replica journal's
      // set since then names everything the apply, or anyone, changed: the verification reads
      // that, from `from`, and is exact in turn (the next writes check may then go from it).
      const again = o.exact ? await this.#capture.replicaTakes(vol, (member, t) => (t.set.lost === null ? (from[member] ?? null) : null)) : undefined;
      const journaled = again !== undefined && again.exact && again.journals.size === vol.members.filter((x) => x.kind === 'tree').length;
      // the record's rows go once the verification is done with them, whether it passed or not
      const { roots: after, whole } = await this.#capture
        .captureTrees(vol, row.applied ?? undefined, verifyKey, written, verified, journaled ? undefined : unchanged, undefined, journaled ? again.journals : undefined)
        .finally(() => written.drop());
      phases.verify = round3((performance.now() - verifyStarted) / 1000);
      for (const m of vol.members.filter((x) => x.kind === 'tree')) {
        const want = target.members.find((x) => x.name === m.name)!.root;
        // (the same entries stored another way, paged or not, are the same: dir-pages.ts)
        if (after[m.name] !== want && !sameTreeContent(host.store, want, after[m.name])) {
          // Which paths differ (the first few), for the operator and the event history.
          const differ: string[] = [];
          try {
            diffTrees(host.store, want, after[m.name], (c) => {
              if (differ.length < 5) differ.push(`${c.path} (${c.change}${c.what?.length ? `: ${c.what.join(', ')}` : ''})`);
            });
          } catch {
            // the capture's objects are in the store; if not, the ids say enough
          }
          host.event({ kind: 'replica.apply', volume, outcome: 'failed', detail: { to: target.id, member: m.name, error: 'mismatch after apply', differ } });
          throw new FerryError(
            'REPLICA_MISMATCH',
            `after applying ${target.id}, replica member ${m.name} of ${volume} does not match the snapshot (found ${after[m.name]}, want ${want}${differ.length ? `; differs at ${differ.join('; ')}` : ''}): someone wrote into it during the apply; ` +
              `it stays marked inconsistent, and the next update (plain or --force) keeps what differs in a replica-writes-* snapshot at ${host.name} and finishes the apply`,
          );
        }
      }
      if (journaled) for (const m of vol.members.filter((x) => x.kind === 'tree')) host.journal()?.replicaSettle(volume, m.name, target.id);
      host.catalog.tx(() => {
        finishApply(host.catalog, volume, target.id, imageStats);
        // What the replica shows now is what stays held for its source (a refused or failed commit left the one before held).
        holdReplica(host.catalog, volume, this.#rx.peer, target.id, { only: true });
        commitStatCache(host.catalog, volume, verifyKey, { parent: row.applied ?? undefined, whole });
        host.event({ kind: 'replica.apply', volume, outcome: warnings.length ? 'warning' : 'ok', detail: { to: target.id, transition: 'inconsistent => consistent', ...applied, warnings, seconds: phases, verified, journal: { writesCheck: o.journaled === true, verify: journaled }, ...(stager ? { staging: stager.counts } : {}), ...(o.rollback ? { rollback: true } : {}), ...(writesSnapshot ? { kept: writesSnapshot } : {}) } });
      });
      if (!o.rollback) this.#release(volume, target);
      return { snapshot: target.id, applied: true, ...(writesSnapshot ? { writesSnapshot } : {}), phases };
    } catch (err) {
      // Why the replica stays inconsistent: `ferry failover` and `ferry status` say what happened.
      // A system error not wrapped where it happened still says which operation on which path failed.
      const fe = isFerryError(err) ? err : (err as NodeJS.ErrnoException)?.syscall ? wrapIoError(err, `applying ${target.id} to the replica of ${volume}`) : new FerryError('INTERNAL', String((err as Error)?.message ?? err), { cause: err });
      noteApplyError(host.catalog, volume, target.id, { code: fe.code, message: fe.message, at: host.clock.now() });
      throw fe;
    }
  }

  /**
   * The staging of a baseline's subtrees (stage.ts), once what is under way is done: for a replica
   * never applied, with one tree member. A snapshot holding an entry by the staging area's name at
   * that member's root gets none (the area is removed first: that name is the snapshot's).
   */
  async #stagedFor(vol: Volume, row: SecondaryRow, target: SnapshotManifest, phases: Record<string, number>): Promise<Stager | undefined> {
    const host = this.#host;
    const stager = row.applied === null ? stagerFor(host, vol) : undefined;
    if (!stager) return undefined;
    const t0 = performance.now();
    await stager.drain();
    phases.stageWait = round3((performance.now() - t0) / 1000);
    const member = vol.members.find((m) => m.kind === 'tree')!.name;
    const root = target.members.find((m) => m.name === member)!.root;
    if (dirEntries(host.store, root).some((e) => e.name.toString('latin1') === STAGE_DIR)) {
      stager.clear();
      host.replicas.of(vol.name).dropStager();
      return undefined;
    }
    return stager;
  }

  /** A forced failover asked applies of this volume to stop: stop here (the replica stays marked as it is). */
  #checkCancelled(volume: string, target: SnapshotManifest, row: SecondaryRow): void {
    const reason = this.#host.replicas.of(volume).cancelled;
    if (reason === undefined) return;
    this.#host.event({ kind: 'replica.apply', volume, outcome: 'failed', detail: { to: target.id, cancelled: reason } });
    throw new FerryError('FAILED_OVER', `site ${this.#host.name} is taking over volume ${volume} (${reason}): the apply of ${target.id} was cancelled and the replica goes back to ${row.applied ?? 'its last complete snapshot'}; run \`ferry failback\` at your site to resync from ${this.#host.name}`);
  }

  /** Finish applies a crash interrupted (the daemon calls this at start, for this peer's secondaries). */
  async resumeInterrupted(): Promise<string[]> {
    const host = this.#host;
    const rows = secondariesApplying(host.catalog, this.#rx.peer);
    const done: string[] = [];
    for (const row of rows) {
      const manifestId = snapshotById(host.catalog, row.applying!)?.manifest;
      if (!manifestId) continue;
      await host.replicas.of(row.volume).exclusive(() => this.apply(row.volume, readManifest(host.store, manifestId), true));
      done.push(row.volume);
    }
    return done;
  }

  /**
   * Older replication snapshots are no longer needed here: release them, except the newest K (the
   * source's `keep`: 3 when it has several secondaries, else 1) counting the one just applied. The K are the candidates for a
   * common base with a sibling secondary if a sibling takes over (docs/dr.md, "Several secondaries").
   * Named ones and held ones stay, and so does this site's own history (from when it was primary);
   * replication snapshots from an earlier source (before a re-point) are released like the rest.
   */
  #release(volume: string, target: SnapshotManifest): void {
    const host = this.#host;
    // A source that does not say (an older ferry) gets what it always got: the newest one only.
    const keep = keepSnapshotsOf(host.catalog, volume);
    // Older: received here before it (this site's own order: the sources' clocks need not agree,
    // and after a re-point the snapshots here come from two of them).
    const older = replicationSnapshotsBefore(host.catalog, volume, target.id, host.id);
    const old = older.slice(Math.max(0, keep - 1)).filter((o) => !o.held);
    if (old.length === 0) return;
    // Released snapshots with the same member roots as the one applied (an update where nothing
    // changed) leave nothing but their manifests for a collection to free, a few hundred bytes each,
    // and a collection marks the whole store (13 s of CPU after such an update at a million files).
    // Any release only adds what it frees (estimated from what differs: cost is what changed) to the
    // site's running total; a collection runs once that is due (site/auto-collect.ts).
    const onlyManifests = old.every((o) => this.#sameMembers(o.id, target));
    const releasable = host.estimateRelease(volume, old.map((o) => o.id));
    const verdict = host.catalog.tx(() => {
      for (const o of old) deleteSnapshotRow(host.catalog, volume, o.id);
      const v = host.countRelease(releasable, { onlyManifests });
      host.event({ kind: 'replication.release', volume, outcome: 'ok', detail: { released: old.map((o) => o.id), releasable, collect: v.detail } });
      return v;
    });
    if (verdict.collect) host.collectGarbageSoon(verdict.detail);
  }

  /** Whether snapshot `id` here holds exactly `target`'s members (same names, kinds and roots); false when it cannot be read. */
  #sameMembers(id: string, target: SnapshotManifest): boolean {
    const host = this.#host;
    try {
      const rec = snapshotById(host.catalog, id);
      if (!rec) return false;
      const m = readManifest(host.store, rec.manifest as ObjectId).members;
      return m.length === target.members.length && m.every((x, i) => x.name === target.members[i].name && x.kind === target.members[i].kind && x.root === target.members[i].root);
    } catch {
      return false; // unreadable: collect as before (the collection reports damage)
    }
  }
}
