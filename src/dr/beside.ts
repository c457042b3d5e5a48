// Primaries beside each other that no old primary can name. A failover learns of the other primaries
// of its volume from the old primary's answer to its notice (failover.ts). That answer is only as
// good as the old primary's memory: one that removed its mirrors, or removed the volume and made a
// new one of the same name, forgot which of its secondaries had taken the volume over, and a forced
// failover of another then made two primaries that knew nothing of each other (the soak, seed
// 1370182201, step 861: b removed its mirrors of v2 to a and c, a took v2 over, b removed v2; c,
// forced, took it over too).
//
// So after promoting, the new primary asks every other paired site (`dr/beside`): "I took over the
// volume V of site S as my volume W: are you primary of what came from S's V?" A site answers yes
// when it holds a primary volume related to S's V: it took it over from S (its secondary relation
// with S is broken off), or S took it over from it (its mirror to S broken off by that failover),
// or it knows S as a primary beside it (a recorded split brain). It then records the asker as a
// primary beside it, and the asker records it: both show the split brain. A site that is S's
// secondary still, or holds nothing of it, answers no and records nothing. A site that cannot be
// reached is asked again by the daemon (the failover notice's `besideUnasked`) until it answers.
import { FerryError, isFerryError } from '../core/errors.ts';
import type { BesideAnswer, BesideRequest } from '../replication/dr-peer.ts';
import type { Engine } from '../site/engine.ts';
import { listMirrors } from '../catalog/mirrors.ts';
import { findPeerById, listPeers } from '../catalog/peers.ts';
import { listSecondaries } from '../catalog/secondaries.ts';
import { listSplitBrains, recordSplitBrain } from '../catalog/split-brains.ts';
import { findVolume } from '../catalog/volumes.ts';

/** A primary beside this one, found by asking: its site id, its volume there, its name here. */
export interface BesideFound {
  site: string;
  volume: string;
  name: string;
}

/**
 * The volume here that is primary and came from `from`'s `fromVolume` (see the header), if any: the
 * answer to `dr/beside`.
 */
function primaryFrom(engine: Engine, from: string, fromVolume: string): string | null {
  const cat = engine.site.catalog;
  const primary = (v: string) => findVolume(cat, v)?.role === 'primary';
  const fromPeer = findPeerById(cat, from);
  const candidates = [
    ...listSecondaries(cat).filter((r) => r.source_site === from && r.source_volume === fromVolume && r.state === 'broken-off').map((r) => r.volume),
    ...(fromPeer ? listMirrors(cat).filter((m) => m.peer === fromPeer.name && m.remoteVolume === fromVolume && m.state === 'broken-off' && m.lastError?.code === 'FAILED_OVER').map((m) => m.volume) : []),
    ...listSplitBrains(cat).filter((b) => b.site === from && b.remoteVolume === fromVolume).map((b) => b.volume),
  ];
  return candidates.find((v) => primary(v)) ?? null;
}

/**
 * At a paired site, the asker's question (`dr/beside`): the asker took `req.fromVolume` of site
 * `req.from` over as its `req.volume`. When a volume here is primary of what came from there, the
 * asker is recorded as a primary beside it (with an event) and the answer names the volume.
 */
export function acceptBeside(engine: Engine, peerId: string, req: BesideRequest): BesideAnswer {
  const site = engine.site;
  const peer = findPeerById(site.catalog, peerId);
  if (!peer) throw new FerryError('NOT_AUTHORIZED', 'unpaired site');
  if (req.from === site.id) return { volume: null }; // this site is the old primary: the failover notice told it
  const volume = primaryFrom(engine, req.from, req.fromVolume);
  if (volume === null) return { volume: null };
  if (!listSplitBrains(site.catalog, volume).some((b) => b.site === peerId)) {
    const oldName = findPeerById(site.catalog, req.from)?.name ?? req.from;
    site.catalog.tx(() => {
      recordSplitBrain(site.catalog, volume, { site: peerId, remoteVolume: req.volume, oldPrimary: null });
      site.event({ kind: 'failover.split-brain', volume, outcome: 'info', detail: { sibling: peer.name, siblingVolume: req.volume, message: `${peer.name} took ${req.fromVolume} over from ${oldName} too: both are primary` } });
    });
  }
  return { volume };
}

/**
 * At the new primary, after the promotion: ask every paired site but the old primary (in parallel,
 * at most `timeoutMs` each) whether it is primary of what came from the old primary's volume.
 * Returns the sites that are (not yet recorded here: the caller records them) and those that could
 * not be asked (unreachable: asked again later). A ferry from before `dr/beside` (PROTOCOL) is not
 * asked again.
 */
export async function askBeside(engine: Engine, o: { volume: string; from: string; fromVolume: string; only?: string[]; timeoutMs?: number }): Promise<{ found: BesideFound[]; unasked: string[] }> {
  const site = engine.site;
  const peers = listPeers(site.catalog).filter((p) => p.id !== o.from && p.id !== site.id && (!o.only || o.only.includes(p.id)));
  const timeoutMs = o.timeoutMs ?? 10_000;
  const found: BesideFound[] = [];
  const unasked: string[] = [];
  await Promise.all(
    peers.map(async (p) => {
      const client = engine.drPeer(p, { stallTimeoutMs: timeoutMs });
      try {
        const a = await client.beside({ volume: o.volume, from: o.from, fromVolume: o.fromVolume }, AbortSignal.timeout(timeoutMs));
        if (a.volume !== null) found.push({ site: p.id, volume: a.volume, name: p.name });
      } catch (err) {
        if (!isFerryError(err, 'PROTOCOL') && !isFerryError(err, 'NOT_AUTHORIZED')) unasked.push(p.id);
      } finally {
        client.close();
      }
    }),
  );
  found.sort((x, y) => x.name.localeCompare(y.name));
  return { found, unasked: unasked.sort() };
}
