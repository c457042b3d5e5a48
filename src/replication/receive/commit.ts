// The commit of a received snapshot: the request is the snapshot the peer
// sent, whose every object must now be here and valid (checkSnapshotGraph,
// graph.ts, from the snapshot the replica shows as its base), taken by that
// peer of the volume this secondary mirrors, and not older than what the
// replica shows or already received in this relation with the peer (a
// replay is refused). Then it is
// recorded, held for the peer, and applied (apply-job.ts).
//
// Owns: the commit request's checks. Must never: record a snapshot with an
// object missing, or one the peer did not take of its own volume.
import { FerryError } from '../../core/errors.ts';
import { readManifest } from '../../snapshot/graph.ts';
import type { SnapshotManifest } from '../../snapshot/model.ts';
import { holdPeer, holdReplica } from '../../catalog/holds.ts';
import { newRelation, type SecondaryRow } from '../../catalog/secondaries.ts';
import { compareOnOneClock, descendsFrom, findSnapshot, hasSnapshotNamed, insertSnapshotRow, lastRecordedFrom, lastTakenFrom, newestFrom, originSeq, recordedOrder, recordLineageLink, snapshotById } from '../../catalog/snapshots.ts';
import { getVolume } from '../../catalog/volumes.ts';
import { parseCommitRequest } from '../protocol.ts';
import type { CommitRequest, CommitResponse } from '../types.ts';
import type { ApplyJob } from './apply-job.ts';
import { checkSnapshotGraph, type CompleteBase } from './graph.ts';
import { round3, secondaryFor, type ReceiveHost, type Receiving } from './host.ts';

/** What a commit hands the snapshot to (ApplyJob.apply), under the volume's apply lock. */
export type Applier = Pick<ApplyJob, 'apply'>;

/** commit for one peer's requests. */
export class Commit {
  readonly #rx: Receiving;
  readonly #host: ReceiveHost;
  readonly #job: Applier;

  constructor(rx: Receiving, job: Applier) {
    this.#rx = rx;
    this.#host = rx.host;
    this.#job = job;
  }

  /** Check and record the snapshot, then apply it (under the volume's apply lock); GC waits meanwhile. */
  async commit(volume: string, raw: CommitRequest): Promise<CommitResponse> {
    const state = this.#host.replicas.of(volume);
    state.transferring(() => this.#host.beginWrite());
    try {
      return await this.#commit(volume, raw);
    } finally {
      state.transferDone();
    }
  }

  async #commit(volume: string, raw: CommitRequest): Promise<CommitResponse> {
    const req = parseCommitRequest(raw);
    const row = secondaryFor(this.#rx, volume);
    const host = this.#host;
    // Objects of an unfinished put may still be pending in the open pack: make them durable
    // before a snapshot that needs them is recorded.
    host.store.flush();
    const existing = snapshotById(host.catalog, req.snapshot);
    let manifest: SnapshotManifest;
    let checkS = 0;
    // hard links in the snapshot, as the check counted them (the next check may take it as its base when 0)
    let links: number | undefined;
    if (existing) {
      // Only a snapshot of this very volume, and it passes the same checks as a new one: a
      // snapshot of another volume here (a primary's, another peer's) is not the peer's to apply.
      if (existing.volume !== volume) throw new FerryError('NOT_AUTHORIZED', `snapshot ${req.snapshot} is not a snapshot of volume ${volume} here`);
      if (existing.manifest !== req.manifest) throw new FerryError('PROTOCOL', `snapshot ${req.snapshot} is already here with different content`);
      manifest = readManifest(host.store, req.manifest);
      this.#checkManifest(req, row, manifest);
    } else {
      const t0 = performance.now();
      const checked = this.#checkComplete(req, row);
      manifest = checked.manifest;
      links = checked.links;
      checkS = (performance.now() - t0) / 1000;
    }
    // the order the sender took it in, as it said (kept with the snapshot, and its replay check's)
    const seq = takenOrder(req, manifest, this.#rx.peer);
    const ancestor = req.ancestor !== undefined && manifest.parent !== null && snapshotById(host.catalog, req.ancestor)?.volume === volume ? req.ancestor : undefined;
    // The source's word on the order it took its own snapshots (its clock may have been set back
    // between): a snapshot it took before this one, held here. Taken for the order only.
    const before = req.after !== undefined ? snapshotById(host.catalog, req.after) : undefined;
    const takenAfter = before?.volume === volume && before.origin === manifest.origin ? before.id : undefined;
    if (row.applied && req.snapshot !== row.applied) {
      // Also for a snapshot still here (a named one is kept after newer ones are applied): replaying it would roll the replica back.
      // Times (and the time in a ULID) are compared only between snapshots of one origin, taken on
      // one clock: the replica may show a snapshot taken here or at an earlier primary (after a
      // failback or a migrate), and the sites' clocks need not agree. The references are the
      // snapshots here that the sending peer took: the newest in the one order a site's snapshots
      // have (time, then id), and the one this site recorded last (after a step of the peer's clock
      // the newest by time is one from before it). A snapshot older on that clock than a reference
      // is refused unless it comes after it (docs/dr.md, "Snapshot order"): its parent is the
      // reference, or descends from it (lineage, through the snapshots here: a snapshot that
      // descends from the one the replica shows is newer whatever its time), or is a snapshot this
      // site recorded after it (this site's own record: its data went through the reference, then
      // through that parent, whichever site took it). The last one matters where a link of the
      // lineage is gone: a failback's replica shows the kept writes, which nothing sent descends
      // from, and the resync names the base, a snapshot this site took itself after it took over at
      // a snapshot that retention or a release has deleted since.
      // The references are only what the peer sent in this relation (secondaries.relation): a
      // failback, a migrate, a re-point or a full sync starts a new one, and what the same site sent
      // in an earlier one came from another history, maybe before its clock was set back, which
      // nothing it sends now may descend from here (soak seed 5, step 1807). A full sync's first
      // snapshot (`baseline`) is that start: only the lineage check above applies to it.
      if (descendsFrom(host.catalog, row.applied, req.snapshot)) {
        throw new FerryError('PROTOCOL', `snapshot ${req.snapshot} is older than ${row.applied}, which this replica shows (it descends from it): a replayed or out-of-order snapshot is refused`);
      }
      // A parent the source deleted since (it never came here) is followed through the ancestor the
      // source names for it, a snapshot held here: the source's word on its own lineage, no more
      // than the content it sends (an old request replayed names an old ancestor, which comes before
      // what was received since).
      const parent = manifest.parent;
      const follows = (p: string, id: string) => p === id || descendsFrom(host.catalog, p, id) || recordedOrder(host.catalog, p) > recordedOrder(host.catalog, id);
      const after = (id: string) => (parent !== null && (follows(parent, id) || (ancestor !== undefined && follows(ancestor, id)))) || (takenAfter !== undefined && follows(takenAfter, id));
      // Where the source said the order it took both in (seq, kept as origin_seq), that order decides,
      // not its clock: a clock set back makes a later snapshot look older.
      const refs = req.baseline ? [] : [newestFrom(host.catalog, volume, manifest.origin, req.snapshot, row.relation), lastRecordedFrom(host.catalog, volume, manifest.origin, req.snapshot, row.relation), lastTakenFrom(host.catalog, volume, manifest.origin, req.snapshot, row.relation)];
      for (const ref of refs) {
        if (!ref) continue;
        const refSeq = originSeq(host.catalog, ref.id);
        const older = seq !== undefined && refSeq !== undefined ? seq < refSeq : compareOnOneClock({ id: req.snapshot, time: manifest.time }, ref) < 0;
        if (older && !after(row.applied) && !after(ref.id)) {
          throw new FerryError('PROTOCOL', `snapshot ${req.snapshot} is older than ${ref.id}, which this replica already received from that site in this relation: a replayed or out-of-order snapshot is refused`);
        }
      }
    }
    if (existing && req.baseline) newRelation(host.catalog, volume);
    if (!existing) {
      host.catalog.tx(() => {
        let name = manifest.name;
        if (name && hasSnapshotNamed(host.catalog, volume, name)) name = null;
        const relation = req.baseline ? newRelation(host.catalog, volume) : row.relation;
        if (ancestor !== undefined) recordLineageLink(host.catalog, volume, manifest.parent!, ancestor);
        insertSnapshotRow(host.catalog, { id: manifest.id, volume, name, time: manifest.time, origin: manifest.origin, parent: manifest.parent, manifest: req.manifest, stats: { replicated: true, ...(links !== undefined ? { links } : {}) }, relation, ...(seq !== undefined ? { originSeq: seq } : {}) });
        // Held beside what the replica shows (still held: the apply may be refused or fail); the apply moves the hold once it is done.
        holdReplica(host.catalog, volume, this.#rx.peer, manifest.id, { keep: [row.applied, row.applying] });
        if (req.peer) holdPeer(host.catalog, manifest.id);
        host.event({ kind: 'replication.commit', volume, outcome: 'ok', detail: { snapshot: manifest.id, source: this.#rx.peer } });
      });
    }
    const r = await host.replicas.of(volume).exclusive(() => this.#job.apply(volume, manifest, req.force ?? false));
    return { ...r, phases: { check: round3(checkS), ...r.phases } };
  }

  /**
   * Every object of the snapshot is here and is what its parent says it is (see
   * checkSnapshotGraph); returns the manifest.
   */
  #checkComplete(req: CommitRequest, row: SecondaryRow): { manifest: SnapshotManifest; links: number } {
    const host = this.#host;
    const known = host.replicas.known.for(host.store);
    const epoch = host.store.removalEpoch;
    const r = checkSnapshotGraph(host.store, req.manifest, `snapshot ${req.snapshot}`, known, this.#completeBase(row));
    if (r.missing > 0) {
      throw new FerryError('TRANSFER_INTERRUPTED', `snapshot ${req.snapshot} is incomplete here: ${r.missing} object(s) missing (${r.firstMissing}); the next attempt sends them`);
    }
    const manifest = readManifest(host.store, req.manifest);
    this.#checkManifest(req, row, manifest);
    if (known && host.store.removalEpoch === epoch) known.add(r.complete);
    return { manifest, links: r.links };
  }

  /**
   * The snapshot the replica shows, as the base of a commit check (CompleteBase): it was checked
   * complete when it was committed, it is held while it is shown, and its check recorded that it
   * has no hard links. None while the store has lost objects.
   */
  #completeBase(row: SecondaryRow): CompleteBase | undefined {
    const host = this.#host;
    if (!row.applied || host.store.lostObjectCount() > 0) return undefined;
    try {
      const r = findSnapshot(host.catalog, row.volume, row.applied);
      if (!r || r.stats.links !== 0) return undefined;
      return { roots: new Map(readManifest(host.store, r.manifest).members.filter((m) => m.kind === 'tree').map((m) => [m.name, m.root])) };
    } catch {
      return undefined;
    }
  }

  /** The manifest is the snapshot asked for, of the volume this secondary mirrors, taken by the peer, with the secondary's members. */
  #checkManifest(req: CommitRequest, row: SecondaryRow, manifest: SnapshotManifest): void {
    const host = this.#host;
    if (manifest.id !== req.snapshot) throw new FerryError('PROTOCOL', `manifest ${req.manifest} is snapshot ${manifest.id}, not ${req.snapshot}`);
    if (manifest.volume !== row.source_volume) throw new FerryError('NOT_AUTHORIZED', `snapshot ${manifest.id} is of volume ${manifest.volume}, but this secondary mirrors ${row.source_volume}`);
    if (manifest.origin !== this.#rx.peer) {
      // Snapshots are relayed only by their origin in this version (cascades come later).
      throw new FerryError('NOT_AUTHORIZED', `snapshot ${manifest.id} was taken at site ${manifest.origin}, not by the sending peer`);
    }
    const vol = getVolume(host.catalog, row.volume);
    const want = vol.members.map((m) => `${m.name}:${m.kind}`).join(',');
    const got = manifest.members.map((m) => `${m.name}:${m.kind}`).join(',');
    if (want !== got) throw new FerryError('PROTOCOL', `snapshot ${manifest.id} has members ${got}, the secondary ${want}`);
  }
}

/** The order the sending site took the snapshot in, as it said: only for a snapshot it took. */
function takenOrder(req: CommitRequest, manifest: { origin: string }, sender: string): number | undefined {
  return req.seq !== undefined && manifest.origin === sender ? req.seq : undefined;
}
