// The engine: what a running site does besides answering requests. It owns
// the worker pool, the clients to paired sites, the mirror jobs (one at a
// time per mirror), their progress, and the scheduler. The daemon runs one;
// a CLI command without a daemon runs one in-process for its own duration.
import { testKnobs } from '../core/test-knobs.ts';
import { GC_RETRY, LINK_RETRY, MIRROR_RETRY, NOTICE_RETRY, RetryGate, WORKFLOW_RETRY, type Random } from '../core/backoff.ts';
import { FerryError, isFerryError } from '../core/errors.ts';
import { ChunkPool } from '../snapshot/chunk-pool.ts';
import type { TransferProgress } from '../replication/sender.ts';
import type { Receiver } from '../replication/types.ts';
import { PeerClient } from '../transport/client.ts';
import { drPeerOver } from '../transport/dr-client.ts';
import { Http2Connection } from '../transport/http2-connection.ts';
import { composeConnection } from '../transport/compose.ts';
import type { FaultPlan } from '../transport/faults.ts';
import type { DrPeer, PeerDeleteAnswer } from '../replication/dr-peer.ts';
import { loadIdentity, type SiteIdentity } from '../transport/identity.ts';
import { runMirrorUpdate, settleFutureSuccess } from '../replication/driver/run.ts';
import type { ConnectOptions, UpdateOptions, UpdateResult } from '../replication/driver/types.ts';
import { mirrorStatus, releaseOrphanHolds, setMirrorState, updateSource, type Mirror, type MirrorStatus } from './mirrors.ts';
import { stopJournal } from './journal-service.ts';
import { type Peer } from './peers.ts';
import { SiteReceiver } from './receiver.ts';
import { deliverPeerDeletions, finishOrphanPeerDeletes, type PeerDeleteOutcome, type PeerDeleteTarget } from './peer-snapshots.ts';
import { collectionDue, noteStoreNoSpace } from './auto-collect.ts';
import { collectGarbage } from './snapshots.ts';
import type { Site } from './site.ts';
import { listMirrors } from '../catalog/mirrors.ts';
import { releaseInFlight } from '../catalog/holds.ts';
import { countDeletionsOwed, mirrorsWithDueDeletions, pendingPeerSnapshots, resetTransferring } from '../catalog/peer-snapshots.ts';
import { anyFailoverNoticePending, secondariesApplying } from '../catalog/secondaries.ts';
import { runningWorkflow, workflowsLeft } from '../catalog/workflows.ts';
import { getPeer } from '../catalog/peers.ts';
import { listLinks } from '../catalog/links.ts';

interface Job {
  promise: Promise<UpdateResult>;
  abort: AbortController;
  progress?: TransferProgress;
  started: number;
  bytesAt: Array<[number, number]>;
}

/** An old primary not told of a failover here yet is told again this often (deliverFailoverNotices). */

export interface EngineOptions {
  /** connect to a peer: the HTTP/2 client by default (see #client); tests may substitute */
  connect?: (peer: Peer, o?: ConnectOptions) => Receiver;
  stallTimeoutMs?: number;
  /** faults injected into every connection this engine makes, replication and DR (tests); FERRY_TEST_FAULTS's by default */
  faults?: FaultPlan;
  /** randomness for the jitter of every retry (Math.random by default; tests fix it) */
  random?: Random;
  /** the DR calls to a peer: DrPeer over a composed connection by default (see #client); tests may substitute a fake peer */
  drPeer?: (peer: Peer, o: { stallTimeoutMs?: number }) => DrPeer;
  /** bytes per put request of a mirror update's transfer (its resume granularity); the test knob FERRY_TEST_PUT_BATCH_BYTES by default */
  putBatchBytes?: number;
  /**
   * The DR workflows the engine runs by itself (scheduled link refreshes, resuming workflows a crash
   * cut, telling an old primary of a forced failover), handed in by the composition root
   * (app/workflows.ts) because they live in a layer above the engine. Without them the engine runs
   * none of the three (an in-process engine of a test that needs no DR).
   */
  workflows?: EngineWorkflows;
}

/** The DR workflows an engine runs by itself (app/workflows.ts binds them to src/dr/). */
export interface EngineWorkflows {
  refreshLink(site: Site, pool: ChunkPool, path: string, o: { scheduled: boolean }): Promise<unknown>;
  resumeWorkflows(engine: Engine): Promise<void>;
  deliverFailoverNotices(engine: Engine): Promise<void>;
}

export class Engine {
  readonly site: Site;
  readonly pool: ChunkPool;
  readonly identity: SiteIdentity;
  /** the HTTP/2 connection to each peer that replication shares (a DR call has its own) */
  readonly #links = new Map<string, Http2Connection>();
  readonly #jobs = new Map<string, Job>();
  readonly #connect: (peer: Peer, o?: ConnectOptions) => Receiver;
  readonly #faults: FaultPlan | undefined;
  #timer: NodeJS.Timeout | undefined;
  readonly #linkBusy = new Set<string>();
  #closing = false;
  readonly #random: Random;
  readonly #workflows: EngineWorkflows | undefined;
  readonly #putBatchBytes: number | undefined;
  readonly #drPeer: (peer: Peer, o: { stallTimeoutMs?: number }) => DrPeer;
  /** scheduled link refreshes that failed, by path (the catalog records no failures for links) */
  readonly #linkRetry: RetryGate;
  /** scheduled mirror attempts refused before the job could record anything (a mirror in a state that cannot update) */
  readonly #mirrorRetry: RetryGate;
  /** resuming the DR workflows left in progress */
  readonly #workflowRetry: RetryGate;
  readonly #noticeRetry: RetryGate;
  /** automatic collections that failed (tickCollect) */
  readonly #gcRetry: RetryGate;

  constructor(site: Site, options: EngineOptions = {}) {
    this.site = site;
    this.#random = options.random ?? Math.random;
    this.#workflows = options.workflows;
    this.#putBatchBytes = options.putBatchBytes ?? testKnobs().putBatchBytes;
    this.#linkRetry = new RetryGate(LINK_RETRY, site.clock, this.#random);
    this.#mirrorRetry = new RetryGate(MIRROR_RETRY, site.clock, this.#random);
    this.#workflowRetry = new RetryGate(WORKFLOW_RETRY, site.clock, this.#random);
    this.#noticeRetry = new RetryGate(NOTICE_RETRY, site.clock, this.#random);
    this.#gcRetry = new RetryGate(GC_RETRY, site.clock, this.#random);
    // A store write that fails for lack of space makes the next idle point collect (tickCollect).
    if (!site.readOnly) site.store.onNoSpace = () => noteStoreNoSpace(site);
    this.pool = new ChunkPool();
    this.identity = loadIdentity(site.paths.identity);
    this.#faults = options.faults;
    this.#connect =
      options.connect ??
      ((peer, o) => {
        let link = this.#links.get(peer.id);
        if (!link || link.peer.url !== peer.url) {
          link?.close();
          link = new Http2Connection(this.identity, peer);
          this.#links.set(peer.id, link);
        }
        return this.#client(link, { stallTimeoutMs: options.stallTimeoutMs, bandwidth: o?.bandwidth });
      });
    this.#drPeer = options.drPeer ?? ((peer, o) => drPeerOver(this.#client(new Http2Connection(this.identity, peer), { stallTimeoutMs: o.stallTimeoutMs })));
    this.recoverMirrorStates();
    releaseOrphanHolds(site);
    finishOrphanPeerDeletes(site);
  }

  /**
   * A sender killed mid-update leaves `updating` or `baselining` in the catalog. This engine holds
   * the site lock, so no such job can be running: put those mirrors back in their stable state.
   */
  recoverMirrorStates(): void {
    if (this.site.readOnly) return;
    for (const m of listMirrors(this.site.catalog)) {
      if (m.state !== 'updating' && m.state !== 'baselining' && m.state !== 'resyncing') continue;
      setMirrorState(this.site, m, m.base ? 'idle' : 'uninitialized', 'the previous transfer was interrupted (process stopped); the next update resumes it');
      releaseInFlight(this.site.catalog, m.id);
      resetTransferring(this.site.catalog, m.id);
    }
  }

  /**
   * A client over `link`, its wrappers composed (transport/compose.ts: faults, stall watch,
   * busy-retry, rate limit): the one way this engine reaches a peer, replication and DR alike.
   */
  #client(link: Http2Connection, o: { stallTimeoutMs?: number; bandwidth?: number | null }): PeerClient {
    return new PeerClient(composeConnection(link, { ...o, ...(this.#faults ? { faults: this.#faults } : {}) }));
  }

  /**
   * The DR calls to `peer` (the caller closes it): the one place they are built, each connection
   * with the stall timeout its workflow allows (a resync may be silent for long, a notice not).
   */
  drPeer(peer: Peer, o: { stallTimeoutMs?: number } = {}): DrPeer {
    return this.#drPeer(peer, o);
  }

  receiverFor(peerId: string): SiteReceiver {
    return new SiteReceiver(this.site, peerId, this.pool);
  }

  /** Start (or join) the update job of a mirror. */
  update(volume: string, peer: string | undefined, opts: UpdateOptions = {}, onProgress?: (p: TransferProgress) => void): Promise<UpdateResult> {
    if (this.#closing) return Promise.reject(new FerryError('SITE_LOCKED', 'the daemon is shutting down'));
    const mirror = listMirrors(this.site.catalog, volume).find((m) => (peer ? m.peer === peer : true));
    const key = mirror ? mirror.id : `${volume}@${peer ?? '?'}`;
    const running = this.#jobs.get(key);
    if (running) {
      if (opts.scheduled) return running.promise;
      throw new FerryError('MIRROR_STATE', `mirror ${key} is already transferring; wait for it (\`ferry status\`)`);
    }
    const abort = new AbortController();
    const job: Job = { abort, started: Date.now(), bytesAt: [], promise: undefined as never };
    const progress = (p: TransferProgress) => {
      job.progress = p;
      job.bytesAt.push([Date.now(), p.bytesSent]);
      if (job.bytesAt.length > 50) job.bytesAt.shift();
      onProgress?.(p);
    };
    job.promise = runMirrorUpdate({ source: updateSource(this.site, this.pool), connect: this.#connect, random: this.#random, putBatchBytes: this.#putBatchBytes }, volume, peer, { ...opts, signal: abort.signal, onProgress: progress })
      .then(async (r) => {
        // The update may have moved the base off a peer snapshot whose deletion that secondary could not do yet.
        if (countDeletionsOwed(this.site.catalog, r.mirror) > 0) await this.deliverPeerDeletions({ mirror: r.mirror }).catch(() => {});
        return r;
      })
      .finally(() => {
        this.#jobs.delete(key);
      });
    this.#jobs.set(key, job);
    return job.promise;
  }

  /**
   * End the update job of a mirror, if one runs: cancelled (what arrived at the destination stays),
   * and waited for, so that nothing it does afterwards touches a mirror being removed.
   */
  async stopJob(mirrorId: string, reason: string): Promise<void> {
    for (let j = this.#jobs.get(mirrorId); j; j = this.#jobs.get(mirrorId)) {
      j.abort.abort(new FerryError('TRANSFER_INTERRUPTED', reason));
      await j.promise.catch(() => {});
    }
  }

  /** Wait until none of these mirrors has an update job running (ones that start meanwhile are waited for too). */
  async waitJobs(mirrorIds: string[]): Promise<void> {
    for (let j = mirrorIds.map((id) => this.#jobs.get(id)).find((x) => x); j; j = mirrorIds.map((id) => this.#jobs.get(id)).find((x) => x)) await j.promise.catch(() => {});
  }

  #deleting: Promise<unknown> = Promise.resolve();
  #deletionTick: Promise<void> | undefined;

  /** Deliver recorded peer-snapshot deletions (peer-snapshots.ts), one delivery at a time. */
  deliverPeerDeletions(filter: { snapshot?: string; mirror?: string; due?: boolean } = {}): Promise<PeerDeleteOutcome[]> {
    const run = () => deliverPeerDeletions(this.site, (t, snapshot) => this.#askPeerDelete(t, snapshot), filter);
    const p = this.#deleting.then(run, run);
    this.#deleting = p.catch(() => {});
    return p;
  }

  async #askPeerDelete(t: PeerDeleteTarget, snapshot: string): Promise<PeerDeleteAnswer> {
    const client = this.drPeer(getPeer(this.site.catalog, t.peerName));
    try {
      return await client.peerDelete({ volume: t.remoteVolume, snapshot });
    } finally {
      client.close();
    }
  }

  /** Retry the peer-snapshot deletions that are due, for mirrors not updating now (an update ends with its own). */
  tickPeerDeletions(): Promise<void> {
    if (this.#deletionTick || this.#closing) return this.#deletionTick ?? Promise.resolve();
    const mirrors = mirrorsWithDueDeletions(this.site.catalog, this.site.clock.now()).filter((m) => !this.#jobs.has(m));
    if (mirrors.length === 0) return Promise.resolve();
    this.#deletionTick = (async () => {
      for (const m of mirrors) await this.deliverPeerDeletions({ mirror: m, due: true });
    })()
      .catch((err) => this.site.event({ kind: 'snapshot.peer-delete', outcome: 'failed', detail: { error: String((err as Error)?.message ?? err) } }))
      .finally(() => {
        this.#deletionTick = undefined;
      });
    return this.#deletionTick;
  }

  progressOf(mirrorId: string): MirrorStatus['progress'] | undefined {
    const j = this.#jobs.get(mirrorId);
    if (!j?.progress) return undefined;
    const first = j.bytesAt[0];
    const last = j.bytesAt[j.bytesAt.length - 1];
    const rate = first && last && last[0] > first[0] ? ((last[1] - first[1]) * 1000) / (last[0] - first[0]) : 0;
    const left = j.progress.bytesTotal - j.progress.bytesSent;
    return { ...j.progress, rate, etaSeconds: rate > 0 ? left / rate : null };
  }

  status(): MirrorStatus[] {
    return listMirrors(this.site.catalog).map((m) => mirrorStatus(this.site, m, this.progressOf(m.id)));
  }

  /**
   * Run scheduled updates that are due. Returns the jobs started (tests await them). A failed job
   * has recorded its failure and when to try again (mirrors.ts); one refused before it could (the
   * mirror cannot update in its state) waits here, with the same backoff, so nothing is tried every tick.
   */
  tick(): Array<Promise<UpdateResult | undefined>> {
    const now = this.site.clock.now();
    const started: Array<Promise<UpdateResult | undefined>> = [];
    const mirrors = listMirrors(this.site.catalog);
    this.#mirrorRetry.retain(mirrors.map((m) => m.id));
    for (const listed of mirrors) {
      const m = settleFutureSuccess(this.site.catalog, listed, now);
      if (m.paused || this.#jobs.has(m.id) || !this.#mirrorRetry.due(m.id)) continue;
      // A failover, failback or migrate of the volume is in progress: it decides what the mirror does.
      if (this.#workflowRunning(m.volume)) continue;
      // Only a mirror in step can update: no baseline yet, no common base, or broken off, it waits for a command.
      if (!m.base || m.state === 'broken-off' || m.state === 'needs-full-sync') continue;
      // Peer snapshots still pending (a secondary was down) go as soon as a retry is due, schedule or not.
      const pending = pendingPeerSnapshots(this.site.catalog, m.id);
      if (pending.length > 0 && (m.nextRunAt ?? 0) <= now) {
        // the newest this site took (one another site took is not sent: the update drops it, planSteps)
        started.push(this.#scheduled(m, pending.filter((p) => p.origin === this.site.id).at(-1)?.id));
        continue;
      }
      if (!m.scheduleS) continue;
      // --min-delay holds for scheduled updates too: none within it of the last success (a retry after
      // a failure, or a schedule shorter than the min delay, waits for it).
      const due = Math.max(m.nextRunAt ?? (m.lastSuccessAt ?? 0) + m.scheduleS * 1000, (m.lastSuccessAt ?? 0) + m.minDelayS * 1000);
      if (due > now) continue;
      started.push(this.#scheduled(m));
    }
    return started;
  }

  #scheduled(m: Mirror, snapshot?: string): Promise<UpdateResult | undefined> {
    return this.update(m.volume, m.peer, { scheduled: true, ...(snapshot ? { snapshot } : {}) }).then(
      (r) => {
        this.#mirrorRetry.succeeded(m.id);
        return r;
      },
      (err) => {
        // The job records its own failures and next run; one refused before it started has not.
        const next = listMirrors(this.site.catalog, m.volume).find((x) => x.id === m.id)?.nextRunAt ?? null;
        if (next === null || next <= this.site.clock.now()) {
          const { failures, retryInMs } = this.#mirrorRetry.failed(m.id, { transient: isFerryError(err) && err.kind === 'transient', periodMs: m.scheduleS ? m.scheduleS * 1000 : null });
          this.site.event({ kind: 'scheduler', volume: m.volume, outcome: 'failed', detail: { mirror: m.id, error: isFerryError(err) ? err.toJSON() : String(err), failures, retryInMs } });
        } else this.#mirrorRetry.succeeded(m.id);
        return undefined;
      },
    );
  }

  /** Finish replica applies that a crash interrupted; failures are left for the next update to retry. */
  async resumeApplies(): Promise<void> {
    const sources = new Set(secondariesApplying(this.site.catalog).map((s) => s.source_site));
    for (const source of sources) {
      try {
        const done = await this.receiverFor(source).resumeInterrupted();
        for (const v of done) this.site.event({ kind: 'replica.resume', volume: v, outcome: 'ok' });
      } catch (err) {
        this.site.event({ kind: 'replica.resume', outcome: 'failed', detail: { error: (err as Error).message } });
      }
    }
  }

  /**
   * Refresh scheduled links that are due (one at a time per link). A failed refresh is counted and
   * waits (backoff, at least a period when retrying cannot cure it) instead of running every tick.
   */
  async tickLinks(): Promise<void> {
    const refreshLink = this.#workflows?.refreshLink;
    if (!refreshLink) return;
    const now = this.site.clock.now();
    const links = listLinks(this.site.catalog);
    this.#linkRetry.retain(links.map((l) => l.path));
    for (const l of links) {
      if (!l.scheduleS || l.refreshedAt + l.scheduleS * 1000 > now || this.#linkBusy.has(l.path) || !this.#linkRetry.due(l.path)) continue;
      this.#linkBusy.add(l.path);
      try {
        await refreshLink(this.site, this.pool, l.path, { scheduled: true });
        this.#linkRetry.succeeded(l.path);
      } catch (err) {
        const { failures, retryInMs } = this.#linkRetry.failed(l.path, { transient: isFerryError(err) && err.kind === 'transient', periodMs: l.scheduleS * 1000 });
        this.site.event({ kind: 'link.refresh', volume: l.volume, outcome: 'failed', detail: { path: l.path, error: (err as Error).message, failures, retryInMs } });
      } finally {
        this.#linkBusy.delete(l.path);
      }
    }
  }


  #workflowRunning(volume: string): boolean {
    try {
      return runningWorkflow(this.site.catalog, volume) !== undefined;
    } catch {
      return false; // a catalog opened read-only from before the journal
    }
  }

  /** A workflow in progress, or a migrate closed by `failover --force` whose target has not answered yet. */
  #resuming: Promise<void> | undefined;

  /**
   * Carry on the DR workflows a crash or a cut left in progress (src/dr/resume.ts): at start, then,
   * while any is left (a peer that was unreachable may be back), again after a backoff that grows
   * with each pass that leaves one unfinished (30 s, 1 min, ... up to 10 min, with jitter).
   */
  resumeWorkflows(): Promise<void> {
    const wf = this.#workflows;
    if (this.#resuming || this.#closing || this.site.readOnly || !wf) return this.#resuming ?? Promise.resolve();
    this.#resuming = Promise.resolve()
      .then(() => wf.resumeWorkflows(this))
      .catch((err) => this.site.event({ kind: 'workflow.resume', outcome: 'failed', detail: { error: String((err as Error)?.message ?? err) } }))
      .finally(() => {
        this.#resuming = undefined;
        if (this.#workflowsLeft()) this.#workflowRetry.failed('workflows');
        else this.#workflowRetry.succeeded('workflows');
      });
    return this.#resuming;
  }

  /** Whether a resumption pass is due: a workflow is left in progress and its wait is over. */
  workflowsDue(): boolean {
    return this.#workflowRetry.due('workflows') && this.#workflowsLeft();
  }

  /** A workflow is left in progress, or a forced migrate rollback still owes its target an answer. */
  #workflowsLeft(): boolean {
    try {
      return workflowsLeft(this.site.catalog);
    } catch {
      return false; // closed, or a catalog from before the journal
    }
  }

  #noticing: Promise<void> | undefined;

  /**
   * Tell every old primary that was unreachable when this site took its volume over (failover
   * --force) that it did (src/dr/failover.ts): at start, then, while one has not acknowledged,
   * again after a backoff (15 s, 30 s, ... up to 5 min, with jitter), so that it stops updating
   * and shows its mirror broken off.
   */
  deliverFailoverNotices(): Promise<void> {
    const wf = this.#workflows;
    if (this.#noticing || this.#closing || this.site.readOnly || !wf) return this.#noticing ?? Promise.resolve();
    this.#noticing = Promise.resolve()
      .then(() => wf.deliverFailoverNotices(this))
      .catch((err) => this.site.event({ kind: 'failover.notice', outcome: 'failed', detail: { error: String((err as Error)?.message ?? err) } }))
      .finally(() => {
        this.#noticing = undefined;
        if (this.#noticePending()) this.#noticeRetry.failed('notices', { transient: true, periodMs: null });
        else this.#noticeRetry.succeeded('notices');
      });
    return this.#noticing;
  }

  #noticePending(): boolean {
    try {
      return anyFailoverNoticePending(this.site.catalog);
    } catch {
      return false; // closed, or a catalog opened read-only from before the column
    }
  }

  /**
   * An automatic collection due whatever was released last (site/auto-collect.ts): a store write
   * failed for lack of space, or the last collection is a day old while something is releasable.
   * Run at an idle point (no capture or incoming transfer writing); one that fails waits (backoff).
   */
  tickCollect(): void {
    if (this.#closing || this.site.readOnly || this.site.writers > 0 || !this.#gcRetry.due('gc')) return;
    let reason: string | undefined;
    try {
      reason = collectionDue(this.site);
      if (!reason) return;
      collectGarbage(this.site, { reason });
      this.#gcRetry.succeeded('gc');
    } catch (err) {
      const { failures, retryInMs } = this.#gcRetry.failed('gc', { transient: true });
      this.site.event({ kind: 'gc', outcome: 'failed', detail: { reason: reason ?? null, error: String((err as Error)?.message ?? err), failures, retryInMs } });
    }
  }

  startScheduler(intervalMs = 1000): void {
    void this.resumeWorkflows();
    void this.deliverFailoverNotices();
    this.#timer = setInterval(() => {
      if (this.workflowsDue()) void this.resumeWorkflows();
      if (this.#noticeRetry.due('notices') && this.#noticePending()) void this.deliverFailoverNotices();
      void this.tick();
      void this.tickLinks();
      void this.tickPeerDeletions();
      this.tickCollect();
    }, intervalMs);
  }

  /** Stop scheduling, cancel transfers in flight (what arrived stays: they resume), close clients. */
  async close(): Promise<void> {
    this.#closing = true;
    if (this.#timer) clearInterval(this.#timer);
    for (const j of this.#jobs.values()) j.abort.abort(new FerryError('TRANSFER_INTERRUPTED', 'the daemon is shutting down'));
    await Promise.allSettled([...this.#jobs.values()].map((j) => j.promise));
    // Every job has ended: none may be left showing `updating` (a job that ended without settling it).
    if (this.#jobs.size === 0) this.recoverMirrorStates();
    for (const c of this.#links.values()) c.close();
    await stopJournal(this.site);
    await this.pool.close();
  }
}
