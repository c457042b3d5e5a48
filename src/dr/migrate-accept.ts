// Migrate (migrate.ts), at the sites other than the one that runs it: a
// secondary told to follow another site (acceptRepoint: the migrate's step 4,
// or its rollback), and the chosen secondary taking the volume over
// (acceptMigrate: step 6), with the daemon's finishing of a takeover a crash
// cut short (resumeMigrateAccept).
import { FerryError, isFerryError } from '../core/errors.ts';
import { checkpoint } from '../core/crash.ts';
import { finishWorkflow, startWorkflow, type Workflow } from './journal.ts';
import type { HookResult } from '../replication/dr-peer.ts';
import type { Engine } from '../site/engine.ts';
import { DR_CALL_TIMEOUT_MS } from './failback.ts';
import { runHook } from '../site/hooks.ts';
import { createMirror, dropMirror, setMirrorState } from '../site/mirrors.ts';
import { handOverReplica } from '../catalog/holds.ts';
import { listMirrors, setMirrorBase, setMirrorError } from '../catalog/mirrors.ts';
import { endSecondary, getSecondary, handOverSecondary } from '../catalog/secondaries.ts';
import { findPeerById } from '../catalog/peers.ts';
import { getVolume, setVolumeRole } from '../catalog/volumes.ts';

/**
 * At a secondary: follow another site. Two sites may ask:
 *   - the site it follows, handing it to a new primary (a migrate's step 4); the asking site is
 *     remembered as the previous source;
 *   - that previous source, asking for it back (the migrate was rolled back, or `ferry mirror
 *     repoint` there): granted unless the site it follows now says it is the volume's primary (the
 *     migrate completed: the previous source is its secondary now). Unreachable, it cannot object:
 *     the previous source handed the volume over and is the one that knows the migrate did not end.
 * Asked to follow the site it already follows, it changes nothing (a step run again).
 */
export async function acceptRepoint(engine: Engine, peerId: string, req: { volume: string; newSource: string; newSourceVolume: string }): Promise<{ volume: string; source: string; already?: boolean; returned?: boolean }> {
  const site = engine.site;
  const row = getSecondary(site.catalog, req.volume);
  if (!row || (row.source_site !== peerId && row.previous_source !== peerId)) throw new FerryError('NOT_AUTHORIZED', `volume ${req.volume} here does not follow the asking site`);
  if (row.state !== 'active') throw new FerryError('MIRROR_STATE', `volume ${req.volume} at ${site.name} was taken over here (failover): it follows nobody`);
  const newPeer = findPeerById(site.catalog, req.newSource);
  if (!newPeer) throw new FerryError('PEER_NOT_FOUND', `site ${site.name} is not paired with ${req.newSource}; pair it before migrating`);
  if (row.source_site === req.newSource && row.source_volume === req.newSourceVolume) return { volume: req.volume, source: newPeer.name, already: true };
  const current = findPeerById(site.catalog, row.source_site);
  const currentName = current?.name ?? row.source_site;
  const handOver = row.source_site === peerId;
  if (!handOver) {
    // The previous source asks for it back: only itself, for the volume it had, and only if the site followed now is not primary.
    if (req.newSource !== peerId || row.previous_source_volume !== req.newSourceVolume) throw new FerryError('NOT_AUTHORIZED', `volume ${req.volume} here follows ${currentName}, not the asking site`);
    if (current) {
      const c = engine.drPeer(current, { stallTimeoutMs: 15_000 });
      try {
        const st = await c.state({ volume: row.source_volume, base: null });
        if (st.role === 'primary') throw new FerryError('MIRROR_STATE', `${currentName} is the primary of ${row.source_volume} now (the migrate completed): ${req.volume} at ${site.name} keeps following it; migrate back from ${currentName} instead`);
      } catch (err) {
        // Unreachable, or it will not describe the volume to this site (it runs no mirror here): it does not claim it.
        if (isFerryError(err, 'MIRROR_STATE')) throw err;
      } finally {
        c.close();
      }
    }
  }
  site.catalog.tx(() => {
    handOverSecondary(site.catalog, req.volume, req.newSource, req.newSourceVolume, handOver ? { site: peerId, volume: row.source_volume } : null);
    handOverReplica(site.catalog, req.volume, row.source_site, req.newSource);
    site.event({ kind: 'secondary.repoint', volume: req.volume, outcome: 'ok', detail: { from: currentName, to: newPeer.name, ...(handOver ? {} : { reason: `${newPeer.name} asked for it back: it handed it to ${currentName} for a migrate that did not complete` }) } });
  });
  return { volume: req.volume, source: newPeer.name, ...(handOver ? {} : { returned: true }) };
}

/** At the chosen secondary: become primary, mirror back to the old primary and to the others. */
export async function acceptMigrate(
  engine: Engine,
  peerId: string,
  req: {
    volume: string;
    final: string;
    backTo: string;
    schedule: { scheduleS: number | null; minDelayS: number; maxDelayS: number; bandwidth: number | null };
    others: Array<{ id: string; volume: string; scheduleS: number | null; minDelayS: number; maxDelayS: number; bandwidth: number | null }>;
  },
): Promise<{ post: HookResult | null }> {
  const site = engine.site;
  const row = getSecondary(site.catalog, req.volume);
  if (!row || row.source_site !== peerId) throw new FerryError('NOT_AUTHORIZED', `volume ${req.volume} here is not the asking site's secondary`);
  if (row.applied !== req.final) throw new FerryError('MIRROR_STATE', `the replica of ${req.volume} shows ${row.applied}, not the final snapshot ${req.final}: migrate would lose data; update first`);
  const back = findPeerById(site.catalog, peerId)!;
  let wf: Workflow<{ from: string; final: string; backTo: string; post?: HookResult | null }> | undefined;
  site.catalog.tx(() => {
    setVolumeRole(site.catalog, req.volume, 'primary');
    endSecondary(site.catalog, req.volume);
    const targets = [{ peer: back, volume: req.backTo, s: req.schedule }, ...req.others.map((o) => ({ peer: findPeerById(site.catalog, o.id), volume: o.volume, s: o }))];
    for (const t of targets) {
      if (!t.peer) throw new FerryError('PEER_NOT_FOUND', `site ${site.name} is not paired with a secondary of ${req.volume}; pair it before migrating`);
      // A row from when this site was primary before: it goes with what it held (the new row holds the final snapshot).
      const existing = listMirrors(site.catalog, req.volume).find((x) => x.peer === t.peer!.name);
      if (existing) dropMirror(site, existing, 'replaced by the mirror of a migrate');
      const m = createMirror(site, { volume: req.volume, to: `${t.peer.name}:${t.volume}`, scheduleS: t.s.scheduleS, minDelayS: t.s.minDelayS, maxDelayS: t.s.maxDelayS, bandwidth: t.s.bandwidth, peerSnapshots: false });
      setMirrorBase(site.catalog, m.id, req.final, { state: 'idle', lastSuccessAt: site.clock.now(), nextRunAt: m.scheduleS ? site.clock.now() + m.scheduleS * 1000 : null });
    }
    site.event({ kind: 'migrate', volume: req.volume, outcome: 'ok', detail: { transition: 'secondary => primary', from: back.name, final: req.final } });
    // Journaled with the promotion: a crash before the post hook ran is finished by the daemon at start.
    wf = startWorkflow(site, 'migrate-accept', req.volume, { from: back.id, final: req.final, backTo: req.backTo }, 'promoted');
  });
  await checkpoint('migrate:accept-after-promote');
  const vol = getVolume(site.catalog, req.volume);
  let post: HookResult | null = null;
  if (vol.hooks.post) post = await runHook('post', vol.hooks.post, { FERRY_SITE: site.name, FERRY_VOLUME: req.volume, FERRY_REASON: 'migrate' });
  finishWorkflow(site, wf!, 'done', { post });
  return { post };
}

/**
 * At the new primary, the daemon at start: a takeover whose post hook did not run yet (a crash) runs
 * it now, unless the old primary says it is primary (it was made primary again by `failover --force`
 * while this site was down, its migrate stranded): then the application does not start here too, the
 * mirror to it is broken off, and both sites show the split brain until a failback at one of them.
 */
export async function resumeMigrateAccept(engine: Engine, wf: Workflow<{ from: string; final: string; backTo?: string; post?: HookResult | null }>): Promise<void> {
  const site = engine.site;
  const vol = getVolume(site.catalog, wf.volume);
  const from = findPeerById(site.catalog, wf.plan.from);
  if (from) {
    let role: string | undefined;
    try {
      const c = engine.drPeer(from, { stallTimeoutMs: DR_CALL_TIMEOUT_MS });
      try {
        role = (await c.state({ volume: wf.plan.backTo ?? wf.volume, base: null })).role;
      } finally {
        c.close();
      }
    } catch {
      // Unreachable: it demoted itself before asking this site to take over; the takeover stands.
    }
    if (role === 'primary') {
      const m = listMirrors(site.catalog, wf.volume).find((x) => x.peer === from.name);
      const why = `${from.name} was made primary again (failover --force) while this site's takeover was unknown to it`;
      site.catalog.tx(() => {
        if (m) {
          setMirrorError(site.catalog, m.id, { code: 'FAILED_OVER', message: `${why}: both sites are primary; \`ferry failback ${wf.volume}\` at the site that should yield` });
          setMirrorState(site, m, 'broken-off', why);
        }
        site.event({ kind: 'migrate', volume: wf.volume, outcome: 'warning', detail: { notStarted: `${why}: the post hook does not run here (split brain if both write)`, from: from.name } });
        finishWorkflow(site, wf, 'done', { post: null });
      });
      return;
    }
  }
  let post: HookResult | null = null;
  if (vol.hooks.post) post = await runHook('post', vol.hooks.post, { FERRY_SITE: site.name, FERRY_VOLUME: wf.volume, FERRY_REASON: 'migrate' });
  finishWorkflow(site, wf, 'done', { post });
}
