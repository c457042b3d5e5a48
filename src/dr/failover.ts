// Failover: at a secondary, promote the replica to primary. Plan, then
// execute. The order is chosen so that a crash at any step is finished by
// running failover again:
//   1. tell the old primary (if reachable) so it stops updating: idempotent;
//      without --force an unreachable old primary refuses the failover, since
//      a primary that keeps running and writing is a split brain in the making;
//   2. if an apply was cut (the replica is inconsistent), roll the replica
//      back to the newest complete snapshot (only with --force);
//   3. one transaction: the volume becomes primary, the secondary relation
//      becomes `broken-off` (the base stays held: failback starts from it);
//   4. the new primary snapshots itself, so failback has a known start.
import { FerryError, isFerryError } from '../core/errors.ts';
import type { ObjectId } from '../core/ids.ts';
import { applyTree, applyImage } from '../replication/apply.ts';
import { captureTree } from '../snapshot/capture.ts';
import { readManifest } from '../snapshot/graph.ts';
import type { Engine } from '../site/engine.ts';
import { ROUTES } from '../site/http.ts';
import { findPeerById } from '../site/peers.ts';
import { createSnapshot, resolveSnapshot } from '../site/snapshots.ts';
import { getVolume } from '../site/volumes.ts';
import { PeerClient } from '../site/client.ts';

export interface FailoverPlan {
  volume: string;
  /** the old primary (a paired site name, or its id if unpaired) */
  oldPrimary: string;
  sourceVolume: string;
  /** the newest complete snapshot: what the replica shows (or is rolled back to) */
  snapshot: string | null;
  consistent: boolean;
  rollback: boolean;
  alreadyPrimary: boolean;
  force: boolean;
  steps: string[];
}

interface SecRow {
  volume: string;
  source_site: string;
  source_volume: string;
  applied: string | null;
  applying: string | null;
  consistent: number;
  state: string;
}

export function planFailover(engine: Engine, volume: string, opts: { force?: boolean } = {}): FailoverPlan {
  const site = engine.site;
  const vol = getVolume(site, volume);
  const row = site.db.get<SecRow>('SELECT * FROM secondaries WHERE volume = ?', volume);
  if (!row) throw new FerryError('MIRROR_STATE', `volume ${volume} is not a secondary here (role ${vol.role}); failover runs at a secondary`);
  const alreadyPrimary = vol.role === 'primary' && row.state === 'broken-off';
  const consistent = row.consistent === 1 && row.applying === null;
  if (!row.applied) throw new FerryError('MIRROR_STATE', `the replica of ${volume} was never completely applied: there is nothing consistent to promote`);
  if (!consistent && !opts.force) {
    throw new FerryError('MIRROR_STATE', `the replica of ${volume} is inconsistent (an apply of ${row.applying} was cut); run \`ferry failover ${volume} --force\` to roll it back to ${row.applied} and promote it`);
  }
  const peer = findPeerById(site, row.source_site);
  const steps = [
    `tell ${peer?.name ?? row.source_site} to stop updating ${row.source_volume}${opts.force ? ' (if reachable)' : ''}`,
    ...(consistent ? [] : [`roll the replica back to ${row.applied}`]),
    `make ${volume} primary here; keep base ${row.applied} for failback`,
    `take snapshot failover-<time> of ${volume}`,
  ];
  return { volume, oldPrimary: peer?.name ?? row.source_site, sourceVolume: row.source_volume, snapshot: row.applied, consistent, rollback: !consistent, alreadyPrimary, force: opts.force ?? false, steps };
}

export interface FailoverResult {
  plan: FailoverPlan;
  notified: boolean;
  notifyError?: string;
  snapshot: string;
}

export async function executeFailover(engine: Engine, plan: FailoverPlan): Promise<FailoverResult> {
  const site = engine.site;
  const row = site.db.get<SecRow>('SELECT * FROM secondaries WHERE volume = ?', plan.volume)!;
  const peer = findPeerById(site, row.source_site);
  // 1. tell the old primary
  let notified = false;
  let notifyError: string | undefined;
  if (peer) {
    const client = new PeerClient(engine.identity, peer, { stallTimeoutMs: 15_000 });
    try {
      await client.call(ROUTES.dr('failover-notice'), { volume: row.source_volume, at: plan.volume });
      notified = true;
    } catch (err) {
      notifyError = (err as Error).message;
    } finally {
      client.close();
    }
  } else notifyError = `site ${row.source_site} is not paired`;
  if (!notified && !plan.force) {
    throw new FerryError('PEER_UNREACHABLE', `cannot tell the old primary ${plan.oldPrimary} (${notifyError}); if it is down, run \`ferry failover ${plan.volume} --force\` (make sure it stays down or stops writing)`);
  }
  // 2. roll back an interrupted apply
  if (row.applying !== null || row.consistent !== 1) {
    const target = readManifest(site.store, resolveSnapshot(site, plan.volume, row.applied!).manifest as ObjectId);
    const vol = getVolume(site, plan.volume);
    for (const m of vol.members) {
      const want = target.members.find((x) => x.name === m.name)!;
      if (m.kind === 'tree') {
        const now = await captureTree(m.path, { store: site.store, pool: engine.pool, startedAt: site.clock.now() });
        applyTree(m.path, now.root, want.root, { store: site.store });
      } else applyImage(m.path, null, want.root, { store: site.store });
    }
    site.store.flush();
    site.db.run('UPDATE secondaries SET applying = NULL, applying_from = NULL, consistent = 1 WHERE volume = ?', plan.volume);
    site.event({ kind: 'failover.rollback', volume: plan.volume, outcome: 'ok', detail: { to: row.applied } });
  }
  // 3. promote
  site.db.tx(() => {
    site.db.run("UPDATE volumes SET role = 'primary' WHERE name = ?", plan.volume);
    site.db.run("UPDATE secondaries SET state = 'broken-off', updated_at = ? WHERE volume = ?", site.clock.now(), plan.volume);
    site.event({ kind: 'failover', volume: plan.volume, outcome: 'ok', detail: { transition: 'secondary => primary', oldPrimary: plan.oldPrimary, base: row.applied, notified, notifyError: notifyError ?? null } });
  });
  // 4. a known starting point for failback
  const name = `failover-${new Date(site.clock.now()).toISOString().replace(/[:.]/g, '-')}`;
  const snap = await createSnapshot(site, plan.volume, { name, pool: engine.pool });
  return { plan, notified, ...(notifyError ? { notifyError } : {}), snapshot: snap.snapshot.id };
}

/** At the old primary: a secondary took over `volume`; stop updating that mirror (it becomes broken-off). */
export function acceptFailoverNotice(engine: Engine, peerId: string, volume: string): { mirror: string; state: string } {
  const site = engine.site;
  const peer = findPeerById(site, peerId)!;
  const m = site.db.get<{ id: string; state: string }>('SELECT id, state FROM mirrors WHERE volume = ? AND peer = ?', volume, peer.name);
  if (!m) throw new FerryError('MIRROR_NOT_FOUND', `site ${site.name} has no mirror of ${volume} to ${peer.name}`);
  if (m.state !== 'broken-off') {
    site.db.tx(() => {
      site.db.run("UPDATE mirrors SET state = 'broken-off', last_error = ? WHERE id = ?", JSON.stringify({ code: 'FAILED_OVER', message: `${peer.name} took over ${volume}` }), m.id);
      site.event({ kind: 'mirror.state', volume, outcome: 'info', detail: { mirror: m.id, transition: `${m.state} => broken-off`, reason: `${peer.name} failed over` } });
    });
  }
  return { mirror: m.id, state: 'broken-off' };
}

export function isFailedOver(err: unknown): boolean {
  return isFerryError(err, 'FAILED_OVER');
}
