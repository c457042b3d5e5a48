// One attempt at a mirror update (or its initial baseline): the driver's run.
// It checks and plans (plan.ts), takes or picks the target (a capture with
// its early stream when there is no delta base), holds it while in flight,
// says hello, runs the steps (step.ts), and records the attempt: its phases
// and their timing, the transfer, the state (`from => to` with the reason),
// and on failure the error's class and the backoff before the next attempt.
//
// Every failure is counted and waits before the next scheduled attempt
// (backoff with jitter; an error that is not transient waits at least for the
// next period); after repeated transient failures the mirror shows
// `disconnected` while snapshots keep being taken, one per period. It sees
// the site only through UpdateDeps (types.ts): the catalog, the store, a
// capture, and a Receiver.
import { ERRORS, FerryError, isFerryError, type ErrorCode } from '../../core/errors.ts';
import { MIRROR_RETRY, retryDelayMs } from '../../core/backoff.ts';
import type { Catalog } from '../../catalog/catalog.ts';
import { holdInFlight, releaseInFlight } from '../../catalog/holds.ts';
import { getMirror, hasMirror, mirrorState, recordAttempt, recordFailure, recordSuccess, resetLastSuccess, setMirrorBase, setMirrorError, writeMirrorState, type LastTransfer, type Mirror, type MirrorState, dropMirrorBase } from '../../catalog/mirrors.ts';
import { dropPeerRow, dropStalePeerClaims, markPeer, resetTransferring } from '../../catalog/peer-snapshots.ts';
import { findPeerById, getPeer } from '../../catalog/peers.ts';
import type { SnapshotRecord } from '../../catalog/snapshots.ts';
import { getVolume } from '../../catalog/volumes.ts';
import { EarlySender, type EarlySendOptions, type EarlyStats } from '../early-send.ts';
import { chooseDeltas, measureLink, sendMeasure } from '../link-fit.ts';
import type { TransferProgress } from '../sender.ts';
import { captureWarnings, checkTarget, checkUpdate, helloRequest, planSteps, planTarget } from './plan.ts';
import { refused, runStep, type StepContext } from './step.ts';
import type { UpdateDeps, UpdateOptions, UpdateResult, UpdateSource, UpdateWarning } from './types.ts';

const PHASE_KEYS = ['check', 'stageWait', 'writesCheck', 'apply', 'verify'];

/** The destination's step timings, as far as they are sane numbers (they come from the network). */
function remotePhases(p: unknown): Record<string, number> {
  const out: Record<string, number> = {};
  if (!p || typeof p !== 'object') return out;
  for (const k of PHASE_KEYS) {
    const v = (p as Record<string, unknown>)[k];
    if (typeof v === 'number' && Number.isFinite(v) && v >= 0 && v < 1e7) out[k] = v;
  }
  return out;
}

const secondsSince = (t: number) => Math.round(performance.now() - t) / 1000;

/** Warnings listed in an update's result; its event lists this many paths at most. */
const MAX_WARNINGS_LISTED = 100;
const MAX_WARNING_PATHS = 20;

/** Consecutive transient failures after which a mirror shows `disconnected`. */
const DISCONNECTED_AFTER = 3;

/** Move a mirror to state `to`, in one transaction with a `mirror.state` event (`from => to`, the reason) when it changes. */
export function setMirrorState(cat: Catalog, m: Mirror, to: MirrorState, reason: string, extra: Record<string, unknown> = {}): void {
  const from = mirrorState(cat, m.id) ?? m.state;
  cat.tx(() => {
    writeMirrorState(cat, m.id, to);
    if (from !== to) cat.event({ kind: 'mirror.state', volume: m.volume, outcome: 'info', detail: { mirror: m.id, transition: `${from} => ${to}`, reason, ...extra } });
  });
  m.state = to;
}

/**
 * A site whose clock was set back finds its mirrors' last success in the future: min delay and the
 * schedule would then hold every update until the clock passes that time again (an hour for a clock
 * that was an hour ahead). Such a time is not believed: it becomes now (the min delay then counts
 * from now, once), and the change is an event. Returns the mirror as it now stands.
 */
export function settleFutureSuccess(cat: Catalog, m: Mirror, now = cat.clock.now()): Mirror {
  if (m.lastSuccessAt === null || m.lastSuccessAt <= now + 1000) return m;
  const next = m.scheduleS ? now + m.scheduleS * 1000 : null;
  cat.tx(() => {
    resetLastSuccess(cat, m.id, now, next ?? now);
    cat.event({ kind: 'mirror.clock', volume: m.volume, outcome: 'warning', detail: { mirror: m.id, lastSuccessAt: m.lastSuccessAt, now, reason: "the mirror's last success is later than this site's clock (the clock was set back): counted from now" } });
  });
  return { ...m, lastSuccessAt: now, nextRunAt: m.nextRunAt === null ? null : Math.min(m.nextRunAt, next ?? now) };
}

/** Plan and run one update (or the initial baseline) of a mirror. */
export async function runMirrorUpdate(deps: UpdateDeps, volume: string, peerName: string | undefined, o: UpdateOptions = {}): Promise<UpdateResult> {
  const { source } = deps;
  const cat = source.catalog;
  const now = cat.clock.now();
  const m = settleFutureSuccess(cat, getMirror(cat, volume, peerName), now);
  checkUpdate(m, o, now, getVolume(cat, volume).role);
  const stable: MirrorState = m.base ? 'idle' : m.state === 'needs-full-sync' ? 'needs-full-sync' : 'uninitialized';
  // A failover notice that arrives while this job runs breaks the mirror off: the job's end keeps that.
  const settle = (to: MirrorState, reason: string) => {
    if (mirrorState(cat, m.id) !== 'broken-off') setMirrorState(cat, m, to, reason);
  };
  setMirrorState(cat, m, o.initialize ? 'baselining' : 'updating', o.scheduled ? 'schedule' : 'requested');
  recordAttempt(cat, m.id, now);
  const started = performance.now();
  // CPU of this process while the update runs (its capture, compression, deltas and sends; other work of the daemon meanwhile too).
  const cpuAtStart = process.cpuUsage();
  const phases: Record<string, number> = {};
  let committed = false;
  // What the capture this job takes reports (none when it sends a snapshot taken earlier).
  const captured: UpdateWarning[] = [];
  // The snapshot this attempt took (or took up again): should the attempt fail, a retry sends it.
  let taken: string | undefined;
  try {
    const peer = getPeer(cat, m.peer);
    const vol = getVolume(cat, volume);
    // Deltas or whole objects, by the link the mirror's transfers measured (link-fit.ts).
    const fit = chooseDeltas(m.deltas, m.lastTransfer?.link, m.bandwidth, now);
    let target: SnapshotRecord;
    let early: EarlyStats | undefined;
    const plan = planTarget(cat, m, { ...o, deltas: fit.deltas }, now);
    if (plan.kind === 'named') target = plan.snapshot;
    else if (plan.kind === 'queued') taken = (target = plan.snapshot).id;
    else {
      const capture = () => source.capture(volume, { signal: o.signal, onWarning: (w) => captured.push(w) });
      if (plan.early) {
        const open = async (signal: AbortSignal) => {
          const rx = deps.connect(peer, { bandwidth: m.bandwidth });
          await rx.hello(helloRequest(cat, m, vol), signal);
          return rx;
        };
        const r = await captureSendingEarly(source, capture, { open, volume: m.remoteVolume, signal: o.signal, onProgress: o.onProgress });
        target = r.result.snapshot;
        taken = target.id;
        early = r.early;
      } else taken = (target = (await capture()).snapshot).id;
      phases.snapshot = secondsSince(started);
      if (early && early.objectsSent > 0) phases['snapshot.early'] = Math.round(early.seconds * 1000) / 1000;
    }
    checkTarget(cat, m, target);
    // Hold the target while it is in flight so retention cannot take it.
    holdInFlight(cat, m.id, target.id);
    const rx = deps.connect(peer, { bandwidth: m.bandwidth });
    const hello = await rx.hello(helloRequest(cat, m, vol), o.signal);
    // What this mirror claimed there and the destination no longer holds (its volume removed and made
    // again) is not believed: those peer snapshots are pending again, and a base it lacks is lost below.
    dropStalePeerClaims(cat, m, new Set(hello.snapshots.map((s) => s.id)));
    const steps = planSteps(cat, m, target, hello, { ...o, deltas: fit.deltas });
    if (steps.adopt) {
      const common = steps.adopt;
      cat.tx(() => {
        setMirrorBase(cat, m.id, common.id);
        cat.event({ kind: 'mirror.base', volume: m.volume, outcome: 'info', detail: { mirror: m.id, from: m.base, to: common.id, reason: `${m.peer} committed ${common.id} but its answer was lost` } });
      });
      m.base = common.id;
    }
    if (steps.baseLost) {
      cat.tx(() => {
        setMirrorState(cat, m, 'needs-full-sync', `the destination no longer has base ${m.base}`, { droppedBase: m.base });
        dropMirrorBase(cat, m.id);
      });
      throw new FerryError('MIRROR_STATE', `${m.peer} no longer has the base snapshot ${m.base}: the mirror needs a full sync (\`ferry mirror initialize ${volume} --to ${m.peer}\`)`);
    }
    for (const p of steps.found) {
      markPeer(cat, p.id, m.id, 'present');
      cat.event({ kind: 'snapshot.peer', volume, outcome: 'ok', detail: { snapshot: p.id, name: p.name, presentAt: m.peer, found: true } });
    }
    for (const p of steps.undeliverable ?? []) {
      cat.tx(() => {
        dropPeerRow(cat, p.id, m.id);
        cat.event({ kind: 'snapshot.peer', volume, outcome: 'warning', detail: { snapshot: p.id, name: p.name, notDeliveredTo: m.peer, reason: `taken at another site (${p.origin}), which this site took the volume over from: a site sends only the snapshots it took` } });
      });
    }
    const ctx: StepContext = { catalog: cat, store: source.store, rx, mirror: m, force: o.force, baseline: m.base === null, signal: o.signal, onProgress: o.onProgress };
    let siblingBytes = 0;
    let result: UpdateResult | undefined;
    // Round trips of this update: the hello, each step's questions and puts and its commit, and the early stream's.
    let trips = 1 + (early?.roundTrips ?? 0);
    for (const step of steps.steps) {
      if (step.kind === 'peer') trips += (await runStep(ctx, step)).sent.roundTrips + 1;
      else if (step.kind === 'sibling' || step.kind === 'lineage') {
        const r = await runStep(ctx, step);
        siblingBytes += r.sent.bytesSent;
        trips += r.sent.roundTrips + 1;
      }
      else {
        // What went early counts as sent: the progress goes on from there.
        const eo = early?.objectsSent ?? 0;
        const eb = early?.bytesSent ?? 0;
        const onProgress = o.onProgress && eo > 0 ? (p: TransferProgress) => o.onProgress!({ ...p, objectsTotal: p.objectsTotal + eo, bytesTotal: p.bytesTotal + eb, objectsSent: p.objectsSent + eo, bytesSent: p.bytesSent + eb }) : o.onProgress;
        let transfer: LastTransfer | undefined;
        let warnings: UpdateWarning[] = [];
        const r = await runStep(ctx, step, {
          onProgress,
          batchBytes: deps.putBatchBytes,
          // Committed at the destination: only now does the base move here (with the apply's refusal, if any).
          move: ({ sent: stats, commit, sendSeconds, commitSeconds }) => {
            phases.send = sendSeconds;
            phases.commit = commitSeconds;
            for (const [k, v] of Object.entries(remotePhases(commit.phases))) phases[`destination.${k}`] = v;
            const seconds = (performance.now() - started) / 1000;
            // The capture's warnings: paths the replica may lack. Recorded with the transfer and its event;
            // status keeps the mirror in warn while the base has any (mirrorStatus).
            const warned = Math.max(captured.length, captureWarnings(target));
            warnings = captured.length
              ? captured.slice(0, MAX_WARNINGS_LISTED)
              : warned ? [{ path: '', message: `snapshot ${target.name ?? target.id} was captured with ${warned} warning(s) (\`ferry events --kind snapshot.create\` names them): the replica may lack those paths` }] : [];
            const cpu = process.cpuUsage(cpuAtStart);
            transfer = {
              snapshot: target.id, bytes: stats.bytesSent + eb + siblingBytes, rawBytes: stats.rawBytesSent + (early?.rawBytesSent ?? 0), objects: stats.objectsSent + eo, seconds,
              throughput: seconds > 0 ? (stats.bytesSent + eb) / seconds : 0, at: cat.clock.now(), phases,
              roundTrips: trips + stats.roundTrips + 1,
              deltas: stats.deltas,
              cpuSeconds: Math.round((cpu.user + cpu.system) / 1000) / 1000,
              link: measureLink(m.lastTransfer?.link, sendMeasure(stats, Boolean(step.deltaBase), early ? { bytes: early.bytesSent, seconds: early.seconds } : undefined), cat.clock.now()),
              fit,
              ...(early ? { early: { objects: eo, bytes: eb, seconds: Math.round(early.seconds * 1000) / 1000, ...(early.objectsLeft ? { left: early.objectsLeft } : {}), ...(early.error ? { error: early.error } : {}) } } : {}),
              ...(warned ? { warnings: warned } : {}),
            };
            const error = commit.applied ? null : { code: 'REPLICA_WRITTEN', message: commit.refused ?? 'apply refused' };
            const at = cat.clock.now();
            recordSuccess(cat, m.id, { base: target.id, at, error, transfer, nextRunAt: m.scheduleS ? at + m.scheduleS * 1000 : null });
            const paths = captured.length ? { warningPaths: captured.slice(0, MAX_WARNING_PATHS).map((w) => w.path) } : {};
            cat.event({ kind: 'replication.update', volume, outcome: commit.applied && !warned ? 'ok' : 'warning', detail: { mirror: m.id, base: m.base, ...transfer, ...paths, applied: commit.applied, writesSnapshot: commit.writesSnapshot } });
          },
        });
        const { commit } = r;
        settle('idle', commit.applied ? `updated to ${target.id}` : `transferred ${target.id}; apply refused at ${m.peer}`);
        committed = true;
        if (!commit.applied) throw refused(m, commit, target.id);
        result = { mirror: m.id, snapshot: target.id, base: m.base, transfer: transfer!, applied: commit.applied, ...(commit.writesSnapshot ? { writesSnapshot: commit.writesSnapshot } : {}), warnings };
      }
    }
    if (!result) throw new FerryError('INTERNAL', `the plan of ${m.id}'s update had no target step`);
    return result;
  } catch (err) {
    const fe = isFerryError(err) ? err : new FerryError('INTERNAL', String((err as Error)?.stack ?? err), { cause: err });
    // A peer snapshot cut in flight is pending again.
    resetTransferring(cat, m.id);
    // Transferred and committed, its apply refused (writes in the replica): recorded above as a
    // transfer, the next run planned a period on.
    if (committed) throw withRerunAdvice(cat, m, fe);
    if (fe.code === 'FAILED_OVER') {
      // The destination took over: stop updating, keep the base for failback.
      cat.tx(() => {
        setMirrorError(cat, m.id, { code: fe.code, message: fe.message });
        releaseInFlight(cat, m.id);
      });
      setMirrorState(cat, m, 'broken-off', `${m.peer} failed over`);
      throw fe;
    }
    recordFailedAttempt(deps, m, fe, stable, taken, settle);
    throw withRerunAdvice(cat, m, fe);
  }
}

/**
 * The command that runs mirror `m` again as its state accepts it now (checkUpdate): an update when
 * it has a base, an initialize when it has none; undefined when neither runs (broken off, paused).
 */
function rerunCommand(cat: Catalog, m: Mirror, force: boolean): string | undefined {
  const cur = getMirror(cat, m.volume, m.peer);
  const role = getVolume(cat, m.volume).role;
  const accepts = (initialize: boolean): boolean => {
    try {
      checkUpdate(cur, { initialize, force }, cat.clock.now(), role);
      return true;
    } catch {
      return false;
    }
  };
  const flag = force ? ' --force' : '';
  return accepts(false) ? `ferry mirror update ${m.volume} --to ${m.peer}${flag}` : accepts(true) ? `ferry mirror initialize ${m.volume} --to ${m.peer}${flag}` : undefined;
}

/**
 * A failure's advice completed here, once the attempt is recorded; the mirror's recorded error says
 * the same. A refused apply (REPLICA_WRITTEN) ends with the forced command that overwrites the
 * writes: an update when the refused snapshot became the base, an initialize when the refusal came
 * before the mirror had one (a peer snapshot sent first, say). A replica the destination could not
 * make (REPLICA_PATH_INVALID: a directory in the way there, say) ends, after what to do there, with
 * the command that runs this mirror again, when that is all it takes (the destination says so:
 * details.rerun). A destination that follows another site this site mirrors the volume to
 * (NOT_AUTHORIZED, details.follows: that site took it over and re-pointed it) ends with the failback
 * to that site. Other errors pass unchanged.
 */
function withRerunAdvice(cat: Catalog, m: Mirror, fe: FerryError): FerryError {
  let advised: FerryError | undefined;
  if (fe.code === 'REPLICA_WRITTEN') {
    const command = rerunCommand(cat, m, true);
    // broken off meanwhile (a failover): no forced run overwrites anything now
    if (command) advised = new FerryError('REPLICA_WRITTEN', `${fe.message}: \`${command}\``, { details: fe.details });
  } else if (fe.code === 'REPLICA_PATH_INVALID' && fe.details?.rerun === true) {
    const command = rerunCommand(cat, m, false);
    if (command) advised = new FerryError('REPLICA_PATH_INVALID', `${fe.message}; once that is done, at this site: \`${command}\``, { details: fe.details });
  } else if (fe.code === 'NOT_AUTHORIZED' && typeof fe.details?.follows === 'string') {
    // The destination follows another site this site mirrors the volume to: that one took it over
    // (failover) and re-pointed the destination. The way on for this site is to follow it too.
    const other = findPeerById(cat, fe.details.follows);
    if (other && other.name !== m.peer && hasMirror(cat, m.volume, other.name)) {
      advised = new FerryError('NOT_AUTHORIZED', `${fe.message}. ${m.peer} follows ${other.name}, to which this site mirrors ${m.volume} too: ${other.name} took ${m.volume} over (failover) and re-pointed ${m.peer} to itself, so this site's mirror to ${m.peer} is stale (a failback drops it). For this site to follow ${other.name} (what was written here is kept in a snapshot first): \`ferry failback ${m.volume} --to ${other.name}\``, { details: fe.details });
    }
  }
  if (!advised) return fe;
  if (getMirror(cat, m.volume, m.peer).lastError?.code === fe.code) setMirrorError(cat, m.id, { code: advised.code, message: advised.message });
  return advised;
}

/**
 * Every failure is counted and waits before the next attempt (core/backoff.ts): a transient one
 * with backoff, any other at least until the next period, so a failing hook or a refusing peer
 * is not retried every tick (each retry a snapshot, the application quiesced each time).
 */
function recordFailedAttempt(deps: UpdateDeps, m: Mirror, fe: FerryError, stable: MirrorState, taken: string | undefined, settle: (to: MirrorState, reason: string) => void): void {
  const cat = deps.source.catalog;
  const cur = getMirror(cat, m.volume, m.peer);
  const transient = fe.kind === 'transient';
  const failures = cur.failures + 1;
  const retryInMs = retryDelayMs({ failures, transient, periodMs: cur.scheduleS ? cur.scheduleS * 1000 : null }, MIRROR_RETRY, deps.random ?? Math.random);
  cat.tx(() => {
    recordFailure(cat, m.id, { failures, error: { code: fe.code, message: fe.message }, nextRunAt: cat.clock.now() + retryInMs, queued: taken ?? null });
    cat.event({ kind: 'replication.update', volume: m.volume, outcome: 'failed', detail: { mirror: m.id, error: fe.toJSON(), failures, retryInMs } });
  });
  let to: MirrorState = cur.state === 'needs-full-sync' ? 'needs-full-sync' : stable;
  // Disconnected: transient failures in a row (a refusal before them does not count towards it).
  const lastWasTransient = cur.lastError !== null && cur.lastError.code in ERRORS && ERRORS[cur.lastError.code as ErrorCode].kind === 'transient';
  if (transient && (cur.state === 'disconnected' || (failures >= DISCONNECTED_AFTER && lastWasTransient))) to = 'disconnected';
  settle(to, `${fe.code}: ${fe.message}`);
}

/**
 * Run `capture` while an early stream (early-send.ts) sends the chunks it stores. The stream is an
 * optimisation: whatever becomes of it, the capture's outcome is the result, and the stream has
 * stopped (its puts in flight ended) before this returns or throws.
 */
async function captureSendingEarly<T>(source: UpdateSource, capture: () => Promise<T>, o: EarlySendOptions): Promise<{ result: T; early: EarlyStats }> {
  const sender = new EarlySender(source.store, o);
  // Only while this capture is the site's only writer: another capture, or a transfer coming in,
  // stores chunks that are not this snapshot's (the negotiation would never have sent them).
  const off = source.store.onAdded((id, kind, storedLength) => {
    if (source.writers <= 1) sender.added(id, kind, storedLength);
  });
  let result: T;
  try {
    result = await capture();
  } catch (err) {
    off();
    await sender.stop();
    throw err;
  }
  off();
  return { result, early: await sender.finish() };
}
