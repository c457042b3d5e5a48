// The intake of replication at a site: a peer's hello (binding or making
// the secondary it replicates into), the negotiation's question (which
// objects are missing here), and put: a stream of objects, each verified
// against its id before it is stored, in batches on the site's verify
// workers (verify-pool.ts) a little ahead of storing. A baseline's trees are
// handed to the staging (stage.ts) as they are stored.
//
// A peer may only write into volumes this site holds as its secondary
// (secondaryFor); replicas live where this site's operator put them (a
// pre-created secondary) or under the site's replica root, never at a path
// the peer chose.
//
// Owns: the intake pipeline and its ordering invariant (see put). Must
// never: store an object that was not verified, or store anything of a
// request after its first failure.
import { memory } from '../../core/memory.ts';
import { existsSync, lstatSync, mkdirSync, readdirSync, rmdirSync, rmSync, writeFileSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { crashPoint } from '../../core/crash.ts';
import { FerryError } from '../../core/errors.ts';
import type { ObjectId } from '../../core/ids.ts';
import type { MemberKind } from '../../snapshot/model.ts';
import type { PreparedObject } from '../../store/types.ts';
import { decodeTreeObject, nodeEntries } from '../../snapshot/dir-pages.ts';
import { addSecondary, getSecondary, noteSourceSettings } from '../../catalog/secondaries.ts';
import { listSnapshots } from '../../catalog/snapshots.ts';
import { listMirrors } from '../../catalog/mirrors.ts';
import { findPeerById } from '../../catalog/peers.ts';
import { findVolume, getVolume, type Member } from '../../catalog/volumes.ts';
import { cachedRefs, deltaDictionary, rebuildDelta } from '../delta.ts';
import { isDelta, parseHelloRequest, type DeltaObject, type WireObject } from '../protocol.ts';
import { PROTOCOL_VERSION, type HelloRequest, type HelloResponse, type PutResult } from '../types.ts';
import { type VerifyPool, verifyObject } from '../verify-pool.ts';
import { secondaryFor, stagerFor, type ReceiveHost, type Receiving } from './host.ts';

/** Objects verified together on a worker (a batch closes at either bound), and batches verified ahead of storing. */
const VERIFY_BATCH_OBJECTS = 64;
const VERIFY_BATCH_BYTES = 4 * 1024 * 1024;
const VERIFY_UNITS = 2;
/**
 * Most units (batches) ahead of storing when they are small: an update of many small changed
 * files interleaves deltas and whole objects, each run closing the other's batch, and two small
 * batches ahead left the stream waiting on one worker round trip per file.
 */
const MAX_UNITS = 16;

/** A batch's results from the verify pool's workers, or from `here` should the pool fail (a worker died). */
async function onWorkers<R>(pool: VerifyPool, run: (pool: VerifyPool) => Promise<R>, here: () => R): Promise<R> {
  try {
    return await run(pool);
  } catch {
    return here();
  }
}

type DeltaWithDictionary = { o: DeltaObject; dictionary: Buffer };

/**
 * Deltas rebuilt against their dictionaries (delta.ts, rebuildDelta) on the verify pool's workers,
 * or here should the pool fail: the objects up to the first refused, ready to store, and that refusal.
 */
async function rebuildBatch(pool: VerifyPool, items: DeltaWithDictionary[]): Promise<{ good: PreparedObject[]; error?: unknown }> {
  const jobs = items.map(({ o, dictionary }) => ({ id: o.id, rawLength: o.rawLength, frame: o.stored, dictionary }));
  const results = await onWorkers(pool, (pool) => pool.rebuild(jobs), () => jobs.map((j) => rebuildDelta(j, j.dictionary)));
  const good: PreparedObject[] = [];
  for (let i = 0; i < items.length; i++) {
    const r = results[i];
    if (!r.ok) return { good, error: new FerryError(r.code, r.message) };
    const { o } = items[i];
    good.push({ kind: o.kind, id: o.id, rawLength: o.rawLength, codec: r.codec, stored: Buffer.from(r.stored.buffer, r.stored.byteOffset, r.stored.byteLength) } as PreparedObject);
  }
  return { good };
}

/**
 * The objects of a batch up to the first that fails verification, and that failure. Checked on the
 * verify pool's workers; should the pool fail (a worker died), checked here instead.
 */
async function verifyBatch(pool: VerifyPool, items: PreparedObject[]): Promise<{ good: PreparedObject[]; error?: unknown }> {
  const results = await onWorkers(pool, (pool) => pool.verify(items), () => items.map((x) => verifyObject(x)));
  const good: PreparedObject[] = [];
  for (let i = 0; i < items.length; i++) {
    if (results[i] !== null) return { good, error: new FerryError('OBJECT_CORRUPT', results[i]!) };
    good.push(items[i]);
  }
  return { good };
}

/** Whether site `peer` took `volume` over from this site: this site's mirror of it to that peer is broken off. */
function tookOver(host: ReceiveHost, volume: string, peer: string): boolean {
  const name = findPeerById(host.catalog, peer)?.name;
  return name !== undefined && listMirrors(host.catalog, volume).some((m) => m.peer === name && m.state === 'broken-off');
}

/**
 * What to do about a replica `site` cannot make (REPLICA_PATH_INVALID), for the sender's operator:
 * the commands in this site's real paths and names, and the sender's (req.to: what it calls this
 * site; an older sender does not say, SITE then). `rerun`: once done, the same mirror goes through
 * (the sender then names the command that runs it again, as its state accepts). Ferry deletes
 * nothing there: a directory in the way is the operator's to move away, or to bind as it stands.
 */
function replicaAdvice(site: string, req: HelloRequest, o: { kind: 'setting'; members: Member[] } | { kind: 'taken' } | { kind: 'left'; base: string; members: Member[] }): { text: string; rerun: boolean } {
  const to = req.to ?? 'SITE';
  if (o.kind === 'taken') {
    return { text: `a replica of ${req.sourceVolume} cannot be made there under that name: mirror it into another volume name at ${site}: at your site \`ferry mirror remove ${req.sourceVolume} --to ${to}\`, then \`ferry mirror create ${req.sourceVolume} --to ${to}:NAME\``, rerun: false };
  }
  const bind = (paths: string[]) => `\`ferry volume create ${req.volume} --member ${o.members.map((m, i) => `${m.name}=${paths[i]}`).join(' --member ')} --secondary\``;
  if (o.kind === 'setting') {
    return { text: `this is site ${site}'s setting to fix there (site.replicaRoot in its site file, applied with \`ferry config apply\`), or make the secondary there by hand where it belongs: ${bind(o.members.map(() => 'PATH'))}`, rerun: true };
  }
  // Bound as it stands, only where every member is there already, of its kind (never a symlink).
  const bindable = o.members.every((m) => {
    const st = lstatOrNull(m.path);
    return st !== null && (m.kind === 'tree' ? st.isDirectory() : st.isFile() || st.isBlockDevice());
  });
  return {
    text:
      `ferry makes a replica only in a directory of its own and deletes nothing there: at ${site}, move ${o.base} away (or delete it if nothing in it is needed)` +
      (bindable ? `, or make it the secondary as it stands: ${bind(o.members.map((m) => m.path))} (what no apply wrote in it is kept in a replica-writes snapshot there, and replaced only by a forced run)` : ''),
    rerun: true,
  };
}

/**
 * Whether the replica directory `base`, there already, is as #createSecondary's mkdirs make it and
 * holds no data: a real directory (not a symlink) with nothing in it but some of `members`, each of
 * its kind and empty (a directory with no entry, an empty file). A crash before the catalog row
 * leaves it so.
 */
function asMadeAndEmpty(base: string, members: ReadonlyArray<{ name: string; kind: MemberKind }>): boolean {
  if (!lstatOrNull(base)?.isDirectory()) return false;
  return readdirSync(base).every((e) => {
    const m = members.find((x) => x.name === e);
    const st = m ? lstatOrNull(join(base, e)) : null;
    if (!m || !st) return false;
    return m.kind === 'tree' ? st.isDirectory() && readdirSync(join(base, e)).length === 0 : st.isFile() && st.size === 0;
  });
}

/** Remove a member this call made, only while it holds nothing (rmdir refuses a directory with an entry). */
function removeIfEmpty(path: string, kind: MemberKind): void {
  try {
    if (kind === 'tree') rmdirSync(path);
    else if (lstatOrNull(path)?.size === 0) rmSync(path);
  } catch {
    // something came in: it stays
  }
}

function lstatOrNull(path: string): Stats | null {
  try {
    return lstatSync(path);
  } catch {
    return null;
  }
}

/** The site ids of the siblings a source named with its hellos (secondaries.siblings, as noted). */
function siblingIds(raw: string | null): string[] {
  if (!raw) return [];
  try {
    const v = JSON.parse(raw) as unknown;
    return Array.isArray(v) ? v.map((x) => (x as { site?: unknown })?.site).filter((x): x is string => typeof x === 'string') : [];
  } catch {
    return [];
  }
}

/** hello, missing and put for one peer's requests. */
export class Intake {
  readonly #rx: Receiving;
  readonly #host: ReceiveHost;

  constructor(rx: Receiving) {
    this.#rx = rx;
    this.#host = rx.host;
  }

  async hello(raw: HelloRequest): Promise<HelloResponse> {
    const req = parseHelloRequest(raw);
    const host = this.#host;
    const vol = findVolume(host.catalog, req.volume);
    // What the sender calls this site, for the commands its operator is told to run at its site (an older sender does not say).
    const to = req.to ?? 'SITE';
    if (vol) {
      this.#secondaryIfBound(req.volume);
      if (vol.role !== 'secondary') {
        if (vol.role === 'primary' && tookOver(host, req.volume, this.#rx.peer)) {
          // The sender took this volume over from here and mirrors it back by hand: the way back is a
          // failback here (it makes that mirror itself), not a replica in another volume name.
          throw new FerryError('NOT_AUTHORIZED', `volume ${req.volume} at site ${host.name} is primary: your site took it over from ${host.name} (failover), and ${host.name}'s mirror of it to you is broken off. For ${host.name} to follow you, run \`ferry failback ${req.volume}\` at ${host.name} (what was written there is kept in a snapshot first; the failback makes the mirror back to it itself), once this mirror is removed at your site: \`ferry mirror remove ${req.sourceVolume} --to ${to}\``);
        }
        throw new FerryError('NOT_AUTHORIZED', `volume ${req.volume} at site ${host.name} is ${vol.role}, not a secondary: a peer cannot replicate into it (a volume becomes a secondary only when created as one); mirror into another volume name there: at your site \`ferry mirror remove ${req.sourceVolume} --to ${to}\`, then \`ferry mirror create ${req.sourceVolume} --to ${to}:NAME\``);
      }
      const row = getSecondary(host.catalog, req.volume);
      if (row && row.source_site !== this.#rx.peer) {
        const name = findPeerById(host.catalog, row.source_site)?.name;
        const other = name ? `${name} (${row.source_site})` : row.source_site;
        const sibling = siblingIds(row.siblings).includes(this.#rx.peer);
        // A site its source named as a secondary of the same volume, that mirrors here by hand: it took
        // the volume over (failover) and this site was not re-pointed. details.follows: the sender
        // names the site this one follows as it calls it, if it mirrors there too (driver/run.ts).
        const advice = sibling
          ? `your site is a secondary of ${other} too, as ${other} told this site: if your site took ${req.sourceVolume} over (failover), make this site follow it by a re-point, not a mirror made by hand: at your site \`ferry mirror remove ${req.sourceVolume} --to ${to}\`, then \`ferry mirror repoint ${req.sourceVolume} --to ${to}\``
          : `mirror into another volume name there: at your site \`ferry mirror remove ${req.sourceVolume} --to ${to}\`, then \`ferry mirror create ${req.sourceVolume} --to ${to}:NAME\``;
        throw new FerryError('NOT_AUTHORIZED', `volume ${req.volume} at site ${host.name} is already the secondary of site ${other}: ${advice}`, { details: { follows: row.source_site } });
      }
      const want = req.members.map((m) => `${m.name}:${m.kind}`).join(',');
      const have = vol.members.map((m) => `${m.name}:${m.kind}`).join(',');
      if (want !== have) {
        throw new FerryError('MIRROR_STATE', `volume ${req.volume} at site ${host.name} has members ${have}, the source has ${want}; they must match by name and kind`);
      }
      if (!row) {
        host.catalog.tx(() => {
          addSecondary(host.catalog, req.volume, this.#rx.peer, req.sourceVolume);
          host.event({ kind: 'secondary.bind', volume: req.volume, outcome: 'ok', detail: { source: this.#rx.peer, sourceVolume: req.sourceVolume } });
        });
      }
    } else {
      this.#createSecondary(req);
    }
    const described = this.#describe(req.volume);
    // What the source says with every hello: how many replication snapshots to keep here, and its other
    // secondaries (a failover here re-points them: src/dr/repoint.ts).
    noteSourceSettings(host.catalog, req.volume, this.#rx.peer, req.keep ?? null, req.siblings ?? null);
    return described;
  }

  /**
   * A new secondary under the replica root: the path is this site's choice, never the peer's.
   * Everything is checked before anything is made (the replica root against this site's members,
   * home and links; the replica's directory is new, or as a crash before the catalog row left it
   * (asMadeAndEmpty: no data, used again), no member or link inside it; the new members
   * against every member), and a failure is this site's configuration problem: REPLICA_PATH_INVALID,
   * recorded here as a failed `secondary.create` event and answered to the peer, with what to do at
   * this site, in real paths and names (replicaAdvice). What a failure after the checks made
   * (directories, empty image files) is removed again; nothing that was there before is touched.
   */
  #createSecondary(req: HelloRequest): void {
    const host = this.#host;
    const place = host.replicaPlace(req.volume, req.members);
    const { base, members } = place;
    const refuse = (why: string, advice: { text: string; rerun: boolean }): never => {
      host.event({ kind: 'secondary.create', volume: req.volume, outcome: 'failed', detail: { source: this.#rx.peer, sourceVolume: req.sourceVolume, path: base, error: why } });
      throw new FerryError('REPLICA_PATH_INVALID', `site ${host.name} cannot make a replica of volume ${req.volume}: ${why}. Nothing was created; ${advice.text}`, { details: { path: base, rerun: advice.rerun } });
    };
    if (place.problem) refuse(place.problem, replicaAdvice(host.name, req, { kind: 'setting', members }));
    const left = () => refuse(`its replica directory ${base} exists already and holds something, and no volume ${req.volume} is there (left from a replica removed there earlier?)`, replicaAdvice(host.name, req, { kind: 'left', base, members }));
    // What a crash between the mkdir below and the catalog row left (nothing, or only members as made, empty) holds no data: used again.
    let reused = false;
    if (existsSync(base)) {
      if (place.occupant) refuse(`its replica directory ${base} exists already and holds ${place.occupant}`, replicaAdvice(host.name, req, { kind: 'taken' }));
      if (!asMadeAndEmpty(base, req.members)) left();
      reused = true;
    }
    const memberProblem = host.memberPathProblem(members);
    if (memberProblem) refuse(memberProblem, replicaAdvice(host.name, req, { kind: 'taken' }));
    let made: string | undefined;
    const madeMembers: Array<{ path: string; kind: MemberKind }> = [];
    try {
      made = mkdirSync(base, { recursive: true, mode: 0o700 });
      crashPoint('secondary-create:after-mkdir');
      for (const m of req.members) {
        const p = join(base, m.name);
        // exclusive: a member a crash left is used again only as checked above
        if (reused && lstatOrNull(p)) continue;
        if (m.kind === 'tree') mkdirSync(p, { mode: 0o755 });
        else writeFileSync(p, '', { mode: 0o600, flag: 'wx' });
        madeMembers.push({ path: p, kind: m.kind });
      }
      crashPoint('secondary-create:after-members');
      // Checked again with every member there, just before the row that names it (the rest runs with no
      // await between): what came in since is not ferry's to take. Written in after the row, it is kept
      // by the first apply's writes check, as in a directory made here.
      if (reused && !asMadeAndEmpty(base, req.members)) left();
      host.catalog.tx(() => {
        host.createSecondaryVolume(req.volume, req.members.map((m) => ({ name: m.name, kind: m.kind, path: join(base, m.name) })));
        addSecondary(host.catalog, req.volume, this.#rx.peer, req.sourceVolume);
        const again = reused ? { reused: 'the empty replica directory an interrupted create left there' } : {};
        host.event({ kind: 'secondary.create', volume: req.volume, outcome: 'ok', detail: { source: this.#rx.peer, sourceVolume: req.sourceVolume, path: base, ...again } });
      });
    } catch (err) {
      // only what this call made: `made` is the first directory it created (base, or an ancestor), else
      // the members it made in a directory used again (only while still empty: rmdir, an empty file)
      if (made) rmSync(made, { recursive: true, force: true });
      else for (const m of madeMembers) removeIfEmpty(m.path, m.kind);
      throw err;
    }
  }

  /** Refuse early (with the failover explanation) when this peer's secondary was taken over. */
  #secondaryIfBound(volume: string): void {
    const row = getSecondary(this.#host.catalog, volume);
    if (row?.source_site === this.#rx.peer) secondaryFor(this.#rx, volume);
  }

  #describe(volume: string): HelloResponse {
    const row = secondaryFor(this.#rx, volume);
    const vol = getVolume(this.#host.catalog, volume);
    return {
      protocol: PROTOCOL_VERSION,
      volume,
      snapshots: listSnapshots(this.#host.catalog, volume).map((s) => ({ id: s.id, name: s.name, time: s.time })),
      applied: row.applied,
      applying: row.applying !== null,
      replicas: vol.members.map((m) => ({ name: m.name, kind: m.kind, path: m.path })),
      delta: true,
    };
  }

  /**
   * Which of `ids` this site lacks. Only what is durable counts as held (PackStore.durable): an
   * object pending in the open pack may still be discarded by a failed write, and one whose pack
   * file is gone (marked lost there and then) is sent again. And while any lost object is still
   * indexed, a tree, image or block list held here may stand above lost objects, and a sender
   * skips everything below what is held: such metadata objects are answered as lacking too, so
   * the sender walks down through them and finds what was lost (resending them costs little: the
   * store keeps its copy). Chunks are still answered exactly.
   */
  async missing(volume: string, ids: ObjectId[]): Promise<boolean[]> {
    secondaryFor(this.#rx, volume);
    const store = this.#host.store;
    const held = store.durable(ids);
    const healing = store.lostObjectCount() > 0;
    return ids.map((id, i) => !held[i] || (healing && store.info(id)?.kind !== 'chunk'));
  }

  /**
   * Store a stream of objects, each verified against its id first. Whole objects are verified in
   * batches on worker threads (verify-pool.ts) a little ahead of storing, so that receiving,
   * checking and storing overlap; deltas likewise, against dictionaries made here from this site's
   * copies of their references (rebuildBatch). `hold(bytes)`: asks to hold that many bytes of
   * taken, not yet stored objects (the daemon's stream budget); when refused, what is in flight is
   * stored before more is taken.
   *
   * The intake keeps the invariant the negotiation trusts (a tree held here has everything below
   * it): objects are stored in the order they came, and after the first failure of any kind (an
   * object refused, a batch that could not be checked, a failed write) nothing more of this
   * request is stored: a tree after it may stand above what failed. A failed write discards every
   * object pending in the open pack, this request's and any other writer's it skipped as already
   * here; so once that happens, by this request or by another writer, the request stores nothing
   * more and fails (PackStore's WriteSession), and what it stored before is durable in a pack
   * indexed earlier or gone with the open one. A stream cut or refused by the budget is not a
   * failure of what was taken: that is still stored, in order, and kept.
   */
  async put(volume: string, objects: AsyncIterable<WireObject>, _signal?: AbortSignal, o: { hold?: (bytes: number) => boolean } = {}): Promise<PutResult> {
    secondaryFor(this.#rx, volume);
    const r: PutResult = { received: 0, stored: 0, bytes: 0 };
    const host = this.#host;
    const store = host.store;
    // objects received are named by no snapshot until the commit: GC waits (ReplicaState.transferring)
    host.replicas.of(volume).transferring(() => host.beginWrite());
    // stores nothing once a failed write has discarded pending objects (ours, or others' we skipped as here)
    const session = store.session();
    // A delta's references are read by their record's CRC, not hashed: what the delta rebuilds is hashed.
    const refStore = { has: (id: ObjectId) => store.has(id), get: cachedRefs((id: ObjectId) => store.getUnhashed(id)) };
    type Unit = { bytes: number; ready: Promise<{ good: PreparedObject[]; error?: unknown }> };
    const units: Unit[] = [];
    // The open batch: whole objects, or deltas with their dictionaries (never both: each closes the other).
    let batch: WireObject[] = [];
    let deltas: DeltaWithDictionary[] = [];
    let batchBytes = 0;
    let inFlight = 0;
    // the first failure of what was taken: nothing is stored after it
    let failed: { error: unknown } | undefined;
    const hold = o.hold ?? (() => true);
    // What is in flight also counts in the memory budget's receive share (over every stream), and
    // stays within it: before an object is taken, what this stream has is stored until it fits, or,
    // holding nothing itself, it waits for the others to store theirs.
    const share = memory.share('receive');
    const room = async (bytes: number): Promise<void> => {
      while (!share.fits(bytes)) {
        if (units.length > 0) await storeNext();
        else if (batch.length + deltas.length > 0) flushBatch();
        else {
          await share.acquire(bytes);
          share.release(bytes);
          return;
        }
      }
    };
    const take = async (bytes: number): Promise<void> => {
      await room(bytes);
      share.hold(bytes);
      inFlight += bytes;
    };
    // trees stored by this request: staged once they are durable (#stage)
    const trees: ObjectId[] = [];
    const flushBatch = () => {
      if (batch.length > 0) units.push({ bytes: batchBytes, ready: verifyBatch(host.replicas.verifyPool, batch as PreparedObject[]) });
      else if (deltas.length > 0) units.push({ bytes: batchBytes, ready: rebuildBatch(host.replicas.verifyPool, deltas) });
      else return;
      batch = [];
      deltas = [];
      batchBytes = 0;
    };
    const storeNext = async () => {
      const u = units.shift()!;
      try {
        const { good, error } = await u.ready;
        for (const g of good) {
          if (!session.putPrepared(g, { trusted: true })) continue;
          r.stored++;
          if (g.kind === 'tree') trees.push(g.id);
        }
        if (error) throw error;
      } catch (error) {
        failed ??= { error };
        throw error;
      } finally {
        inFlight -= u.bytes;
        share.release(u.bytes);
        hold(inFlight);
      }
    };
    let cut: { error: unknown } | undefined;
    try {
      for await (const w of objects) {
        r.received++;
        r.bytes += w.stored.byteLength;
        if (store.has(w.id)) continue;
        // inFlight: taken and not yet stored (the open batch and the units)
        await take(w.stored.byteLength);
        if (isDelta(w)) {
          if (batch.length > 0) flushBatch();
          let dictionary: Buffer | undefined;
          try {
            dictionary = deltaDictionary(refStore, w);
          } catch (error) {
            // refused in its place: what came before is still stored, nothing after
            flushBatch();
            units.push({ bytes: w.stored.byteLength, ready: Promise.resolve({ good: [], error }) });
          }
          if (dictionary) {
            // the dictionary is held too until the delta is rebuilt
            await take(dictionary.length);
            deltas.push({ o: w, dictionary });
            batchBytes += w.stored.byteLength + dictionary.length;
          }
        } else {
          if (deltas.length > 0) flushBatch();
          batch.push(w);
          batchBytes += w.stored.byteLength;
        }
        if (batch.length + deltas.length >= VERIFY_BATCH_OBJECTS || batchBytes >= VERIFY_BATCH_BYTES) flushBatch();
        // At most VERIFY_UNITS batches ahead of what is stored (MAX_UNITS when they are small), and only within the budget.
        // (what the units hold is what is in flight but the open batch)
        while ((units.length > VERIFY_UNITS && inFlight - batchBytes >= VERIFY_UNITS * VERIFY_BATCH_BYTES) || units.length > MAX_UNITS || (units.length > 0 && !hold(inFlight))) await storeNext();
        if (units.length === 0 && batch.length + deltas.length > 0 && !hold(inFlight)) {
          flushBatch(); // the budget will not let the open batch grow: verify and store it now
          await storeNext();
        }
      }
    } catch (error) {
      // the stream was cut or refused (or storing failed: then `failed` says so)
      cut = { error };
    }
    // What arrived and verifies is still stored, in order, up to the first failure.
    if (!failed) {
      flushBatch();
      while (!failed && units.length > 0) await storeNext().catch(() => {});
    }
    // (what is left after a failure is dropped: its checks still settle, unawaited)
    for (const u of units.splice(0)) u.ready.catch(() => {});
    share.release(inFlight);
    refStore.get.clear();
    hold(0);
    // Durable now, even when the stream was cut: the next attempt won't resend it. (A failed flush
    // discards what is pending and throws: nothing of this request's open pack is kept.)
    store.flush();
    // Discarded by another writer's failed write after our last store: what we stored is not all here.
    if (!failed) {
      try {
        session.check();
      } catch (error) {
        failed = { error };
      }
    }
    if (trees.length > 0) this.#stage(volume, trees);
    if (failed) throw failed.error;
    if (cut) throw cut.error;
    return r;
  }

  /**
   * A baseline's trees, once stored, are written into the replica's staging area as they arrive
   * (stage.ts), so that the apply after the commit moves them into place. Only for a replica never
   * applied, with one tree member (the staging area must be on the member's filesystem).
   */
  #stage(volume: string, trees: ObjectId[]): void {
    const host = this.#host;
    const row = getSecondary(host.catalog, volume);
    if (!row || row.applied !== null || row.applying !== null) return;
    const stager = stagerFor(host, getVolume(host.catalog, volume));
    if (!stager) return;
    const stored = { get: (id: ObjectId) => host.store.getUnhashed(id) };
    for (const id of trees) {
      try {
        const node = decodeTreeObject(stored.get(id));
        if (node.page) continue; // a page of a large directory (dir-pages.ts): staged with its index
        stager.add(id, nodeEntries(stored, node));
      } catch {
        // unreadable now: the apply writes it
      }
    }
  }
}
