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
//
// A plain failover asks first (`dr/took-over`, before it tells the old primary anything): "did one
// of you take S's V over already?" The old primary refuses a plain failover when a sibling took
// over before (failover.ts), but it knows only once that sibling's notice reached it: a sibling
// forced over while S was down, and S back up before the notice's retry, would let a plain failover
// make a second primary (recorded as a split brain after the promotion, not refused). A site that
// took it over answers its volume; the plain failover is refused, saying to follow it or force.
// The question records nothing; a site that cannot be asked (down, or a ferry from before the
// question) is passed over: the question after the promotion still finds it once it answers.
import { FerryError, isFerryError } from '../core/errors.ts';
import type { BesideAnswer, BesideRequest, DrPeer, TookOverAnswer, TookOverRequest } from '../replication/dr-peer.ts';
import type { Engine } from '../site/engine.ts';
import { listMirrors } from '../catalog/mirrors.ts';
import { findPeerById, listPeers, type Peer } from '../catalog/peers.ts';
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
    ...tookOverHere(engine, from, fromVolume),
    ...(fromPeer ? listMirrors(cat).filter((m) => m.peer === fromPeer.name && m.remoteVolume === fromVolume && m.state === 'broken-off' && m.lastError?.code === 'FAILED_OVER').map((m) => m.volume) : []),
    ...listSplitBrains(cat).filter((b) => b.site === from && b.remoteVolume === fromVolume).map((b) => b.volume),
  ];
  return candidates.find((v) => primary(v)) ?? null;
}

/** The volumes here that took `from`'s `fromVolume` over (their relation with it broken off by a failover here). */
function tookOverHere(engine: Engine, from: string, fromVolume: string): string[] {
  return listSecondaries(engine.site.catalog)
    .filter((r) => r.source_site === from && r.source_volume === fromVolume && r.state === 'broken-off')
    .map((r) => r.volume);
}

/** At a paired site, a secondary's question before its plain failover (`dr/took-over`): the volume here that took the old primary's volume over and is primary, if any. Records nothing. */
export function answerTookOver(engine: Engine, peerId: string, req: TookOverRequest): TookOverAnswer {
  const cat = engine.site.catalog;
  if (!findPeerById(cat, peerId)) throw new FerryError('NOT_AUTHORIZED', 'unpaired site');
  return { volume: tookOverHere(engine, req.from, req.fromVolume).find((v) => findVolume(cat, v)?.role === 'primary') ?? null };
}

/**
 * Before a plain failover of `volume` (a secondary of `fromVolume` at site `from`): ask every other
 * paired site, at most `timeoutMs` each, whether it took that volume over already, and refuse when
 * one did (see the header). A site not reached or not answering the question is passed over.
 */
export async function refuseIfSiblingTookOver(engine: Engine, o: { volume: string; from: string; fromVolume: string; oldPrimary: string; timeoutMs?: number }): Promise<void> {
  const site = engine.site;
  // not reached, or a ferry from before the question: passed over (the question after the promotion asks it again)
  const { answers } = await askOthers(engine, { from: o.from, timeoutMs: o.timeoutMs ?? 5_000 }, (c, signal) => c.tookOver({ from: o.from, fromVolume: o.fromVolume }, signal));
  const found = answers.filter((a) => a.answer.volume !== null).map((a) => ({ name: a.peer.name, volume: a.answer.volume! }));
  if (found.length === 0) return;
  found.sort((x, y) => x.name.localeCompare(y.name));
  const first = found[0];
  throw new FerryError(
    'MIRROR_STATE',
    `${first.name} already took ${o.fromVolume} over from ${o.oldPrimary} (failover; it is primary of ${first.volume} there, though ${o.oldPrimary} may not know it yet): failing over here too would make a second primary. ` +
      `Make this site follow ${first.name} instead (at ${first.name}: \`ferry mirror repoint ${first.volume} --to ${site.name}\`), or, if ${first.name} is lost, run \`ferry failover ${o.volume} --force\``,
  );
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
  const { answers, failed } = await askOthers(engine, o, (c, signal) => c.beside({ volume: o.volume, from: o.from, fromVolume: o.fromVolume }, signal));
  const found = answers.filter((a) => a.answer.volume !== null).map((a) => ({ site: a.peer.id, volume: a.answer.volume!, name: a.peer.name }));
  const unasked = failed.filter((f) => !isFerryError(f.err, 'PROTOCOL') && !isFerryError(f.err, 'NOT_AUTHORIZED')).map((f) => f.peer.id);
  found.sort((x, y) => x.name.localeCompare(y.name));
  return { found, unasked: unasked.sort() };
}

/** Ask every paired site but the old primary (`o.from`) and this one (or only those in `o.only`), in parallel, at most `o.timeoutMs` each (10 s): the answers, and the sites that failed to give one. */
async function askOthers<A>(engine: Engine, o: { from: string; only?: string[]; timeoutMs?: number }, ask: (c: DrPeer, signal: AbortSignal) => Promise<A>): Promise<{ answers: Array<{ peer: Peer; answer: A }>; failed: Array<{ peer: Peer; err: unknown }> }> {
  const site = engine.site;
  const timeoutMs = o.timeoutMs ?? 10_000;
  const peers = listPeers(site.catalog).filter((p) => p.id !== o.from && p.id !== site.id && (!o.only || o.only.includes(p.id)));
  const answers: Array<{ peer: Peer; answer: A }> = [];
  const failed: Array<{ peer: Peer; err: unknown }> = [];
  await Promise.all(
    peers.map(async (peer) => {
      const client = engine.drPeer(peer, { stallTimeoutMs: timeoutMs });
      try {
        answers.push({ peer, answer: await ask(client, AbortSignal.timeout(timeoutMs)) });
      } catch (err) {
        failed.push({ peer, err });
      } finally {
        client.close();
      }
    }),
  );
  return { answers, failed };
}
