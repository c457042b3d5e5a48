// One step of a mirror update, written once for every snapshot an update
// delivers (a peer snapshot, a sibling's base, the target): send what the
// destination lacks, commit it there, and only then move the base here, in
// one transaction. A step that fails at the send or at the commit, or whose
// apply the destination refused, moves nothing: the base stays where it was,
// held. (The target is the exception its caller records: a commit whose apply
// was refused still moves the base, since the destination holds the snapshot
// complete; run.ts then reports the refusal.)
import { FerryError } from '../../core/errors.ts';
import type { Catalog } from '../../catalog/catalog.ts';
import { setMirrorBase, type Mirror } from '../../catalog/mirrors.ts';
import { isPeerSnapshotFor, markPeer } from '../../catalog/peer-snapshots.ts';
import { recordedOrder, snapshotById } from '../../catalog/snapshots.ts';
import { sendSnapshot, type SenderStore, type TransferProgress, type TransferStats } from '../sender.ts';
import type { CommitResponse, Receiver } from '../types.ts';
import type { Step } from './plan.ts';

/** What every step of one update shares. */
export interface StepContext {
  catalog: Catalog;
  store: SenderStore;
  rx: Receiver;
  mirror: Pick<Mirror, 'id' | 'volume' | 'peer' | 'remoteVolume' | 'base'>;
  force?: boolean;
  /**
   * The next commit is a full sync's first (the mirror has no base): the destination starts the
   * relation again with it. Cleared once a step is committed.
   */
  baseline?: boolean;
  signal?: AbortSignal;
  onProgress?: (p: TransferProgress) => void;
}

export interface StepOutcome {
  sent: TransferStats;
  commit: CommitResponse;
  /** committed as a peer snapshot (the destination holds it until the primary deletes it everywhere) */
  peer: boolean;
  /** seconds sending, and waiting for the commit */
  sendSeconds: number;
  commitSeconds: number;
}

export interface StepOptions {
  /** progress of this step's send (the context's otherwise) */
  onProgress?: (p: TransferProgress) => void;
  /** bytes per put request (sender.ts) */
  batchBytes?: number;
  /**
   * Move the base to the step's snapshot and record it (inside the step's transaction). The
   * target's is its caller's (it records the whole transfer); peer snapshots and sibling bases
   * have their own (moveBase).
   */
  move?: (r: StepOutcome) => void;
}

const secondsSince = (t: number) => Math.round(performance.now() - t) / 1000;

/**
 * The error of a commit whose apply the destination refused (writes found in its replica). The
 * command that overwrites them depends on the state the attempt leaves the mirror in: the driver
 * adds it once that is recorded (run.ts, withRerunAdvice).
 */
export function refused(m: { peer: string }, commit: CommitResponse, transferred: string): FerryError {
  return new FerryError('REPLICA_WRITTEN', `${m.peer}: ${commit.refused ?? 'apply refused'}`, { details: { writesSnapshot: commit.writesSnapshot, transferred } });
}

/** Send → commit → move the base, for one step. */
export async function runStep(ctx: StepContext, step: Step, o: StepOptions = {}): Promise<StepOutcome> {
  const { catalog: cat, mirror: m } = ctx;
  const s = step.snapshot;
  const isPeer = () => step.kind === 'peer' || (step.kind === 'target' && isPeerSnapshotFor(cat, s.id, m.id));
  if (isPeer()) markPeer(cat, s.id, m.id, 'transferring');
  const onProgress = o.onProgress ?? ctx.onProgress;
  const sendStarted = performance.now();
  const sent = await sendSnapshot(ctx.store, ctx.rx, m.remoteVolume, s.manifest, { signal: ctx.signal, onProgress, deltaBase: step.deltaBase, batchBytes: o.batchBytes });
  if (step.kind === 'target') onProgress?.({ phase: 'committing', objectsTotal: sent.objectsSent, bytesTotal: sent.bytesSent, objectsSent: sent.objectsSent, bytesSent: sent.bytesSent });
  const sendSeconds = secondsSince(sendStarted);
  const peer = isPeer();
  const commitStarted = performance.now();
  // The order this site took it in, when it took it (the receiver orders what one source sent by it, not by the clock).
  const own = snapshotById(cat, s.id);
  const seq = own && own.origin === cat.siteId ? recordedOrder(cat, s.id) : 0;
  const commit = await ctx.rx.commit(m.remoteVolume, { snapshot: s.id, manifest: s.manifest, force: ctx.force, peer, ...(ctx.baseline ? { baseline: true } : {}), ...(step.ancestor ? { ancestor: step.ancestor } : {}), ...(step.after ? { after: step.after } : {}), ...(seq > 0 ? { seq } : {}) }, ctx.signal);
  ctx.baseline = false;
  const outcome: StepOutcome = { sent, commit, peer, sendSeconds, commitSeconds: secondsSince(commitStarted) };
  if (!commit.applied && step.kind !== 'target') throw refused(m, commit, s.id);
  // Committed at the destination: only now does the base move here.
  cat.tx(() => {
    if (peer) markPeer(cat, s.id, m.id, 'present');
    if (o.move) o.move(outcome);
    else moveBase(ctx, step, outcome);
  });
  return outcome;
}

/** A peer snapshot or a sibling's base, committed and applied: the mirror's base now. */
function moveBase(ctx: StepContext, step: Step, r: StepOutcome): void {
  const { catalog: cat, mirror: m } = ctx;
  const s = step.snapshot;
  if (step.kind === 'target') throw new FerryError('INTERNAL', 'the target step records its transfer itself (StepOptions.move)');
  setMirrorBase(cat, m.id, s.id);
  if (step.kind === 'peer') cat.event({ kind: 'snapshot.peer', volume: m.volume, outcome: 'ok', detail: { snapshot: s.id, name: s.name, presentAt: m.peer } });
  else if (step.kind === 'lineage') cat.event({ kind: 'mirror.base', volume: m.volume, outcome: 'info', detail: { mirror: m.id, from: m.base, to: s.id, reason: 'it lies between the base and a target taken after this site\'s clock was set back: the destination sees the target descend from it', bytes: r.sent.bytesSent } });
  else cat.event({ kind: 'mirror.base', volume: m.volume, outcome: 'info', detail: { mirror: m.id, from: m.base, to: s.id, reason: 'a sibling secondary holds it: a common base for a later failover', bytes: r.sent.bytesSent } });
}
