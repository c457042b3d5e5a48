// The receiving end of replication at a site: the local endpoint that
// implements Receiver over this site's catalog and store, for one
// authenticated peer. A peer may only write into volumes this site holds as
// its secondary; replicas live where this site's operator put them (a
// pre-created secondary) or under the site's replica root, never at a path
// the peer chose.
//
// Commit records a snapshot whose every object is present and verified, and
// moves this side's hold to it. Apply then brings the replica to it: the
// replica is captured first (cheap with the stat cache); if that capture
// differs from what was last applied, somebody wrote into the replica, and
// the capture is kept as a snapshot of its own before anything is
// overwritten (and without --force nothing is). After the apply the replica
// is captured again and must equal the snapshot exactly. An apply that did
// not complete is finished before anything else, and its replica is checked
// the same way: what it holds besides that apply's own work is kept first
// (mid-apply.ts); a forced failover's rollback (rollBack) too.
import { existsSync, mkdirSync, rmSync, writeFileSync, lstatSync } from 'node:fs';
import { join } from 'node:path';
import { FerryError, isFerryError, wrapIoError } from '../core/errors.ts';
import { pausePoint } from '../core/crash.ts';
import { newSnapshotId, sameIds, type ObjectId, type SnapshotId } from '../core/ids.ts';
import type { ObjectReader, PreparedObject } from '../store/types.ts';
import { VerifyPool, verifyObject } from '../replication/verify-pool.ts';
import { ApplyPool } from './apply-pool.ts';
import { captureImage, captureTree, type CaptureJournal, type StatCacheIO } from '../snapshot/capture.ts';
import type { DirtySet } from '../snapshot/journal.ts';
import type { CachedFile } from '../snapshot/stat-cache.ts';
import type { ChunkPool } from '../snapshot/chunk-pool.ts';
import { decodeBlockList, decodeImage, decodeSnapshot, decodeTree, encodeSnapshot } from '../snapshot/format.ts';
import { readManifest } from '../snapshot/graph.ts';
import { diffTrees } from '../snapshot/diff.ts';
import { BLOCKS_PER_LIST, type SnapshotManifest, type SnapshotMember, type Tree, type TreeEntry } from '../snapshot/model.ts';
import { applyImage, applyTree } from '../replication/apply.ts';
import { foreignImageBlocks, foreignTreePaths } from '../replication/mid-apply.ts';
import { STAGE_DIR, Stager } from '../replication/stage.ts';
import { isDelta, parseCommitRequest, parseHelloRequest, type DeltaObject, type WireObject } from '../replication/protocol.ts';
import { cachedRefs, deltaDictionary, rebuildDelta } from '../replication/delta.ts';
import { PROTOCOL_VERSION, type CommitRequest, type CommitResponse, type HelloRequest, type HelloResponse, type PutResult, type Receiver } from '../replication/types.ts';
import type { Site } from './site.ts';
import { collectGarbageSoon } from './snapshots.ts';
import { createVolume, memberPathProblem } from './volumes.ts';
import { journalOf } from './journal-service.ts';
import { canonicalPath, replicaRoot, replicaRootProblem, sitePathOwners } from './paths.ts';
import { holdPeer, holdReplica } from '../catalog/holds.ts';
import {
  addSecondary, finishApply, getSecondary, keepSnapshotsOf, noteApplyError, noteSourceSettings, secondariesApplying, startApply, type SecondaryRow,
} from '../catalog/secondaries.ts';
import {
  compareOnOneClock, deleteSnapshotRow, descendsFrom, findSnapshot, hasSnapshotNamed, insertSnapshotRow, listSnapshots, newestFrom, newestReplicaWrites, replicationSnapshotsBefore, snapshotById,
} from '../catalog/snapshots.ts';
import { carryStatCache, keepStatCacheOf, renameStatCache, StatCacheWriter, statCacheFor } from '../catalog/stat-cache.ts';
import { findVolume, getVolume, type Volume } from '../catalog/volumes.ts';

const round3 = (x: number) => Math.round(x * 1000) / 1000;

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

let verifyPool: VerifyPool | undefined;

const APPLY_POOLS = new WeakMap<Site, ApplyPool>();

/** The site's workers for new subtrees of an apply (apply-pool.ts). */
function applyPoolFor(site: Site): ApplyPool {
  let p = APPLY_POOLS.get(site);
  if (!p) APPLY_POOLS.set(site, (p = new ApplyPool(site.paths.home)));
  return p;
}

/** A batch's results from the verify pool's workers, or from `here` should the pool fail (a worker died). */
async function onWorkers<R>(run: (pool: VerifyPool) => Promise<R>, here: () => R): Promise<R> {
  verifyPool ??= new VerifyPool();
  try {
    return await run(verifyPool);
  } catch {
    return here();
  }
}

type DeltaWithDictionary = { o: DeltaObject; dictionary: Buffer };

/**
 * Deltas rebuilt against their dictionaries (delta.ts, rebuildDelta) on the verify pool's workers,
 * or here should the pool fail: the objects up to the first refused, ready to store, and that refusal.
 */
async function rebuildBatch(items: DeltaWithDictionary[]): Promise<{ good: PreparedObject[]; error?: unknown }> {
  const jobs = items.map(({ o, dictionary }) => ({ id: o.id, rawLength: o.rawLength, frame: o.stored, dictionary }));
  const results = await onWorkers((pool) => pool.rebuild(jobs), () => jobs.map((j) => rebuildDelta(j, j.dictionary)));
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
async function verifyBatch(items: PreparedObject[]): Promise<{ good: PreparedObject[]; error?: unknown }> {
  const results = await onWorkers((pool) => pool.verify(items), () => items.map((x) => verifyObject(x)));
  const good: PreparedObject[] = [];
  for (let i = 0; i < items.length; i++) {
    if (results[i] !== null) return { good, error: new FerryError('OBJECT_CORRUPT', results[i]!) };
    good.push(items[i]);
  }
  return { good };
}

/** An apply left part way: the member roots it started from, and its snapshot (null when that is gone). */
interface Unfinished {
  from: Record<string, ObjectId | null>;
  to: SnapshotManifest | null;
}

/** Files an apply wrote into one member: directory -> name -> what lstat saw (latin1 keys, '' for the root). */
type WrittenFiles = Map<string, Map<string, CachedFile>>;

/** A stat cache with the apply's written files laid over the parent snapshot's entries. */
function withWritten(base: StatCacheIO, files: WrittenFiles): StatCacheIO {
  return {
    load(dir: Buffer) {
      const extra = files.get(dir.toString('latin1'));
      const cached = base.load(dir);
      if (!extra) return cached;
      const out = new Map(cached ?? []);
      for (const [name, f] of extra) out.set(name, f);
      return out;
    },
    save: (dir, data) => base.save(dir, data),
  };
}

interface ImageStat {
  size: number;
  mtimeNs: string;
  ctimeNs: string;
  ino: string;
}

function statOf(path: string): ImageStat {
  const st = lstatSync(path, { bigint: true });
  return { size: Number(st.size), mtimeNs: String(st.mtimeNs), ctimeNs: String(st.ctimeNs), ino: String(st.ino) };
}

/** Serializes applies per volume within this process. */
const applyLocks = new Map<string, Promise<unknown>>();
async function exclusive<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const prev = applyLocks.get(key) ?? Promise.resolve();
  const run = prev.then(fn, fn);
  const tail = run.catch(() => {});
  applyLocks.set(key, tail);
  try {
    return await run;
  } finally {
    if (applyLocks.get(key) === tail) applyLocks.delete(key);
  }
}

function replicaKey(site: Site, volume: string): string {
  return `${site.paths.home}\0${volume}`;
}

/** Per volume being baselined: the staging of its new subtrees while the transfer runs (stage.ts). */
const STAGERS = new Map<string, Stager>();

/** Cancellations asked for by a forced failover, per volume: applies in flight stop at their next check. */
const applyCancels = new Map<string, string>();

/** An apply of the volume is running or queued in this process. */
export function applyInFlight(site: Site, volume: string): boolean {
  return applyLocks.has(replicaKey(site, volume));
}

/** Ask the apply in flight (and those queued behind it) to stop at its next check; the replica stays marked inconsistent. */
export function cancelApply(site: Site, volume: string, reason: string): void {
  if (applyInFlight(site, volume)) applyCancels.set(replicaKey(site, volume), reason);
}

/**
 * Run `fn` holding the volume's replica lock, the one every apply holds: a failover takes it so it
 * never promotes a replica while an apply writes into it. A cancellation asked for before ends with it.
 */
export function withReplicaLock<T>(site: Site, volume: string, fn: () => Promise<T>): Promise<T> {
  const key = replicaKey(site, volume);
  return exclusive(key, async () => {
    try {
      return await fn();
    } finally {
      applyCancels.delete(key);
    }
  });
}

/**
 * Check a snapshot a peer sent, before anything is applied: every object is
 * present (counted, not thrown: the next attempt sends what is missing); every
 * metadata object decodes (so entry names, targets and limits are valid:
 * format.ts); every file's chunks add up to its size and every image block to
 * its length (apply would fail half-way otherwise); and every hard link points
 * at a file of its member reached through directories only (link(2) follows
 * symlinks in the target's path: `s -> /etc` and a link to `s/passwd` would
 * bring a file from outside into the replica). Anything invalid throws
 * OBJECT_CORRUPT (FORMAT_VERSION for a newer format): resending cannot fix it.
 *
 * Metadata objects are visited once each (trees may share subtrees: a few
 * dozen objects can describe 2^40 paths), iteratively (no recursion depth).
 */
export function checkSnapshotGraph(store: ObjectReader, manifestId: ObjectId, what: string, known?: Complete, base?: CompleteBase): { missing: number; firstMissing?: string; complete: Complete; links: number } {
  let missing = 0;
  let linksFound = 0;
  // Trees and block lists checked here that can be skipped next time (see KnownComplete).
  const complete: Complete = { trees: new Set(), lists: new Map() };
  let firstMissing: string | undefined;
  const refuse = (msg: string, err?: unknown): never => {
    const code = isFerryError(err) && err.code === 'FORMAT_VERSION' ? 'FORMAT_VERSION' : 'OBJECT_CORRUPT';
    throw new FerryError(code, `${what} is refused: ${msg}${err ? `: ${(err as Error).message}` : ''}`, err ? { cause: err } : undefined);
  };
  const lost = (kind: string, id: ObjectId) => {
    missing++;
    firstMissing ??= `${kind} ${id}`;
  };
  /** The decoded object, or undefined when it is missing. */
  const load = <T>(kind: string, id: ObjectId, decode: (b: Buffer) => T): T | undefined => {
    let raw: Buffer;
    try {
      raw = store.get(id);
    } catch (err) {
      if (isFerryError(err) && err.code === 'OBJECT_NOT_FOUND') {
        lost(kind, id);
        return undefined;
      }
      return refuse(`${kind} ${id}`, err);
    }
    try {
      return decode(raw);
    } catch (err) {
      return refuse(`${kind} ${id}`, err);
    }
  };
  /** Raw length of a data object, or undefined when it is missing. */
  const dataLength = (id: ObjectId, where: string): number | undefined => {
    const info = store.info(id);
    if (!info) lost(`chunk of ${where}`, id);
    return info?.rawLength;
  };

  const manifest = load('snapshot', manifestId, decodeSnapshot);
  if (!manifest) return { missing, firstMissing, complete, links: 0 };
  const seen = new Set<string>();
  for (const m of manifest.members) {
    if (m.kind === 'image') {
      const img = load('image', m.root, decodeImage);
      if (!img) continue;
      img.lists.forEach((lid, li) => {
        // a list is checked against its place in the image: the same list elsewhere needs its own check
        const place = `${li}/${img.size}/${img.blockSize}`;
        const prevId = known?.lists.get(place);
        if (prevId === lid) return;
        const before = missing;
        const list = load('blocklist', lid, decodeBlockList);
        if (!list) return;
        // A list found complete at this place before (the base's, in an update): its blocks were
        // there with the right lengths, so only the blocks that differ from it are looked up.
        let prev: Array<ObjectId | null> | undefined;
        if (prevId) {
          try {
            prev = decodeBlockList(store.get(prevId)).blocks;
          } catch {
            prev = undefined; // gone or unreadable: check every block
          }
        }
        const blocks = Math.ceil(img.size / img.blockSize);
        const want = li < img.lists.length - 1 ? BLOCKS_PER_LIST : blocks - li * BLOCKS_PER_LIST;
        if (list.blocks.length !== want) refuse(`member ${m.name}: blocklist ${li} has ${list.blocks.length} blocks, the image needs ${want} there`);
        list.blocks.forEach((b, k) => {
          if (!b || (prev && prev[k] === b)) return;
          const off = (li * BLOCKS_PER_LIST + k) * img.blockSize;
          const want = Math.min(img.blockSize, img.size - off);
          const got = dataLength(b, `member ${m.name} block ${li * BLOCKS_PER_LIST + k}`);
          if (got !== undefined && got !== want) refuse(`member ${m.name}: block ${li * BLOCKS_PER_LIST + k} is ${got} bytes, the image needs ${want}`);
        });
        if (missing === before) complete.lists.set(place, lid);
      });
      continue;
    }
    const walked: string[] = [];
    const missingBefore = missing;
    const links = new Set<string>();
    // Beside each tree, the base's tree at the same path (CompleteBase): the same id is complete
    // (nothing below it is looked at), and a file the same as the base's there has its chunks.
    const stack: Array<[ObjectId, ObjectId | undefined]> = [[m.root, base?.roots.get(m.name)]];
    while (stack.length > 0) {
      const [id, baseId] = stack.pop()!;
      if (id === baseId || seen.has(id) || known?.trees.has(id)) continue;
      seen.add(id);
      walked.push(id);
      const tree = load('tree', id, decodeTree);
      if (!tree) continue;
      let before: Map<string, TreeEntry> | undefined;
      if (baseId) {
        try {
          before = new Map(decodeTree(store.get(baseId)).entries.map((e) => [e.name.toString('latin1'), e]));
        } catch {
          before = undefined; // unreadable here: everything below is checked
        }
      }
      for (const e of tree.entries) {
        const was = before?.get(e.name.toString('latin1'));
        if (e.type === 'dir') stack.push([e.tree!, was?.type === 'dir' ? was.tree : undefined]);
        else if (e.type === 'hardlink') links.add(e.target!.toString('latin1'));
        else if (e.type === 'file') {
          if (was?.type === 'file' && was.size === e.size && sameIds(was.chunks, e.chunks)) continue;
          let sum = 0;
          let complete = true;
          for (const c of e.chunks!) {
            const n = dataLength(c, `${m.name} file ${e.name.toString()}`);
            if (n === undefined) complete = false;
            else sum += n;
          }
          if (complete && sum !== e.size) refuse(`member ${m.name}: file ${e.name.toString()} in tree ${id} has ${sum} bytes of chunks, its size is ${e.size}`);
        }
      }
    }
    linksFound += links.size;
    if (links.size > 0 && missing === 0) checkLinkTargets(store, m.name, m.root, links, refuse);
    // Only a member without hard links (their targets are checked from the member's root, so a
    // subtree's links are only good where it stands), and only when nothing below was missing.
    if (links.size === 0 && missing === missingBefore) for (const id of walked) complete.trees.add(id);
  }
  return { missing, firstMissing, complete, links: linksFound };
}

/**
 * A snapshot held here whose graph a commit found complete, as the base of the next check: its
 * member roots. Only a snapshot without hard links (a link in a subtree skipped as the base's
 * would not have its target checked again in the new snapshot), and only while the store has lost
 * nothing (the base's objects are then all here: GC keeps what a snapshot row reaches).
 */
export interface CompleteBase {
  roots: Map<string, ObjectId>;
}

function sameMembers(a: SnapshotMember[], b: SnapshotMember[]): boolean {
  return a.length === b.length && a.every((x, i) => x.name === b[i].name && x.kind === b[i].kind && x.root === b[i].root);
}

/** Whether the store holds image `id` and every block list of it (readable: not in a lost pack). */
function imageListsHeld(store: ObjectReader, id: ObjectId): boolean {
  if (!store.has(id)) return false;
  try {
    return decodeImage(store.get(id)).lists.every((l) => store.has(l));
  } catch {
    return false;
  }
}

/**
 * What a commit check found complete: trees (with everything below them), and the last block list
 * found complete at each place in an image (`index/size/blockSize`: a list is only good where it stands).
 */
interface Complete {
  trees: Set<string>;
  lists: Map<string, ObjectId>;
}

/**
 * What commits here found complete: the next commit does not walk those trees or lists again (an
 * update's snapshot shares most of its trees with the base), and checks a changed list only where
 * it differs from the one before at its place. Forgotten when the store loses objects (GC, a lost
 * pack: its removalEpoch changes) and while lost objects are indexed; per store instance, bounded.
 */
class KnownComplete implements Complete {
  static readonly MAX = 1_000_000;
  static readonly #bySite = new WeakMap<object, KnownComplete>();
  #epoch = -1;
  readonly trees = new Set<string>();
  readonly lists = new Map<string, ObjectId>();

  static for(store: { removalEpoch: number; lostObjectCount(): number }): KnownComplete | undefined {
    let k = KnownComplete.#bySite.get(store);
    if (!k) KnownComplete.#bySite.set(store, (k = new KnownComplete()));
    const healing = store.lostObjectCount() > 0;
    if (k.#epoch !== store.removalEpoch || healing) k.#clear(store.removalEpoch);
    return healing ? undefined : k;
  }

  add(c: Complete): void {
    if (this.trees.size + c.trees.size + this.lists.size + c.lists.size > KnownComplete.MAX) this.#clear(this.#epoch);
    for (const id of c.trees) this.trees.add(id);
    for (const [place, id] of c.lists) this.lists.set(place, id);
  }

  #clear(epoch: number): void {
    this.trees.clear();
    this.lists.clear();
    this.#epoch = epoch;
  }
}

/** Each member-relative target names a file of the member, through directories only. */
function checkLinkTargets(store: ObjectReader, member: string, root: ObjectId, targets: Set<string>, refuse: (msg: string) => never): void {
  // The directories on the targets' paths, decoded once each: targets share their upper levels. Bounded:
  // at most 256 small trees, and only the last large one.
  const cache = new Map<ObjectId, Tree>();
  let large: { id: ObjectId; tree: Tree } | undefined;
  const tree = (id: ObjectId): Tree => {
    const hit = cache.get(id) ?? (large?.id === id ? large.tree : undefined);
    if (hit) return hit;
    const t = decodeTree(store.get(id));
    if (t.entries.length > 4096) large = { id, tree: t };
    else {
      if (cache.size >= 256) cache.clear();
      cache.set(id, t);
    }
    return t;
  };
  for (const t of targets) {
    const parts = t.split('/').map((c) => Buffer.from(c, 'latin1'));
    let dir = root;
    parts.forEach((name, i) => {
      const entries = tree(dir).entries;
      let lo = 0;
      let hi = entries.length - 1;
      let found: (typeof entries)[number] | undefined;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        const c = Buffer.compare(entries[mid].name, name);
        if (c === 0) {
          found = entries[mid];
          break;
        }
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
      }
      const last = i === parts.length - 1;
      const shown = Buffer.from(t, 'latin1').toString();
      if (!found) refuse(`member ${member}: a hard link points at ${shown}, which is not in the snapshot`);
      if (!last && found.type !== 'dir') refuse(`member ${member}: a hard link points at ${shown}, through ${parts.slice(0, i + 1).map((p) => p.toString()).join('/')}, which is a ${found.type}, not a directory`);
      if (last && found.type !== 'file') refuse(`member ${member}: a hard link points at ${shown}, which is a ${found.type}, not a file`);
      if (!last) dir = found.tree!;
    });
  }
}

/** A sender silent this long has given up its transfer (see SiteReceiver#writing). */
const TRANSFER_IDLE_MS = 15 * 60_000;
/** Per site, the volumes with a transfer in progress (receivers are made per request; the site is shared). */
const TRANSFERS = new WeakMap<Site, Map<string, { done: () => void; timer: NodeJS.Timeout }>>();

export class SiteReceiver implements Receiver {
  readonly #site: Site;
  readonly #peer: string;
  readonly #pool: ChunkPool;

  /** `peer` is the authenticated site id of the sender. */
  constructor(site: Site, peer: string, pool: ChunkPool) {
    this.#site = site;
    this.#peer = peer;
    this.#pool = pool;
  }

  #secondary(volume: string): SecondaryRow {
    const row = getSecondary(this.#site.catalog, volume);
    const vol = findVolume(this.#site.catalog, volume);
    if (row && row.source_site === this.#peer && row.state === 'broken-off') {
      throw new FerryError('FAILED_OVER', `site ${this.#site.name} took over volume ${volume} (failover): it no longer accepts updates from you; run \`ferry failback\` at your site to resync from ${this.#site.name}`);
    }
    if (!row || !vol || vol.role !== 'secondary' || row.source_site !== this.#peer) {
      throw new FerryError('NOT_AUTHORIZED', `site ${this.#peer} may not write into volume ${volume} here: it is not this site's secondary of that peer`);
    }
    return row;
  }

  async hello(raw: HelloRequest): Promise<HelloResponse> {
    const req = parseHelloRequest(raw);
    const site = this.#site;
    const vol = findVolume(site.catalog, req.volume);
    if (vol) {
      this.#secondaryIfBound(req.volume);
      if (vol.role !== 'secondary') {
        throw new FerryError('NOT_AUTHORIZED', `volume ${req.volume} at site ${site.name} is ${vol.role}, not a secondary: a peer cannot replicate into it (create the mirror to another volume name, or make it a secondary with \`ferry volume create ${req.volume} --secondary\`)`);
      }
      const row = getSecondary(site.catalog, req.volume);
      if (row && row.source_site !== this.#peer) {
        throw new FerryError('NOT_AUTHORIZED', `volume ${req.volume} at site ${site.name} is already the secondary of site ${row.source_site}`);
      }
      const want = req.members.map((m) => `${m.name}:${m.kind}`).join(',');
      const have = vol.members.map((m) => `${m.name}:${m.kind}`).join(',');
      if (want !== have) {
        throw new FerryError('MIRROR_STATE', `volume ${req.volume} at site ${site.name} has members ${have}, the source has ${want}; they must match by name and kind`);
      }
      if (!row) {
        site.catalog.tx(() => {
          addSecondary(site.catalog, req.volume, this.#peer, req.sourceVolume);
          site.event({ kind: 'secondary.bind', volume: req.volume, outcome: 'ok', detail: { source: this.#peer, sourceVolume: req.sourceVolume } });
        });
      }
    } else {
      this.#createSecondary(req);
    }
    const described = this.#describe(req.volume);
    // What the source says with every hello: how many replication snapshots to keep here, and its other
    // secondaries (a failover here re-points them: src/dr/repoint.ts).
    noteSourceSettings(site.catalog, req.volume, this.#peer, req.keep ?? null, req.siblings ?? null);
    return described;
  }

  /**
   * A new secondary under the replica root: the path is this site's choice, never the peer's.
   * Everything is checked before anything is made (the replica root against this site's members,
   * home and links; the new members against every member), and a failure is this site's
   * configuration problem: REPLICA_PATH_INVALID, recorded here as a failed `secondary.create`
   * event and answered to the peer, with what to do at this site. What a failure after the checks
   * made (directories, empty image files) is removed again.
   */
  #createSecondary(req: HelloRequest): void {
    const site = this.#site;
    const root = replicaRoot(site);
    const base = join(root, req.volume);
    const members = req.members.map((m) => ({ name: m.name, kind: m.kind, path: canonicalPath(join(base, m.name)) }));
    const refuse = (why: string): never => {
      site.event({ kind: 'secondary.create', volume: req.volume, outcome: 'failed', detail: { source: this.#peer, sourceVolume: req.sourceVolume, path: base, error: why } });
      throw new FerryError('REPLICA_PATH_INVALID', `site ${site.name} cannot make a replica of volume ${req.volume}: ${why}. Nothing was created; this is site ${site.name}'s setting to fix there (or create the secondary there by hand: \`ferry volume create ${req.volume} --member PATH --secondary\`)`);
    };
    const rootProblem = replicaRootProblem(site, root, sitePathOwners(site));
    if (rootProblem) refuse(rootProblem);
    if (existsSync(base)) refuse(`its replica directory ${base} already exists but no volume ${req.volume} does; move it away`);
    const memberProblem = memberPathProblem(site, members);
    if (memberProblem) refuse(memberProblem);
    let made: string | undefined;
    try {
      made = mkdirSync(base, { recursive: true, mode: 0o700 });
      for (const m of req.members) {
        const p = join(base, m.name);
        if (m.kind === 'tree') mkdirSync(p, { mode: 0o755 });
        else writeFileSync(p, '', { mode: 0o600, flag: 'wx' });
      }
      site.catalog.tx(() => {
        createVolume(site, req.volume, { role: 'secondary', members: req.members.map((m) => ({ name: m.name, kind: m.kind, path: join(base, m.name) })) });
        addSecondary(site.catalog, req.volume, this.#peer, req.sourceVolume);
        site.event({ kind: 'secondary.create', volume: req.volume, outcome: 'ok', detail: { source: this.#peer, sourceVolume: req.sourceVolume, path: base } });
      });
    } catch (err) {
      // only what this call made: `made` is the first directory it created (base, or an ancestor)
      if (made) rmSync(made, { recursive: true, force: true });
      throw err;
    }
  }

  /** Refuse early (with the failover explanation) when this peer's secondary was taken over. */
  #secondaryIfBound(volume: string): void {
    const row = getSecondary(this.#site.catalog, volume);
    if (row?.source_site === this.#peer) this.#secondary(volume);
  }

  #describe(volume: string): HelloResponse {
    const row = this.#secondary(volume);
    const vol = getVolume(this.#site.catalog, volume);
    return {
      protocol: PROTOCOL_VERSION,
      volume,
      snapshots: listSnapshots(this.#site.catalog, volume).map((s) => ({ id: s.id, name: s.name, time: s.time })),
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
    this.#secondary(volume);
    const store = this.#site.store;
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
    this.#secondary(volume);
    const r: PutResult = { received: 0, stored: 0, bytes: 0 };
    const store = this.#site.store;
    this.#writing(volume);
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
    // trees stored by this request: staged once they are durable (#stage)
    const trees: ObjectId[] = [];
    const flushBatch = () => {
      if (batch.length > 0) units.push({ bytes: batchBytes, ready: verifyBatch(batch as PreparedObject[]) });
      else if (deltas.length > 0) units.push({ bytes: batchBytes, ready: rebuildBatch(deltas) });
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
        inFlight += w.stored.byteLength;
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
            inFlight += dictionary.length;
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
    const site = this.#site;
    const row = getSecondary(site.catalog, volume);
    if (!row || row.applied !== null || row.applying !== null) return;
    const stager = this.#stager(getVolume(site.catalog, volume));
    if (!stager) return;
    for (const id of trees) {
      try {
        stager.add(id, decodeTree(site.store.getUnhashed(id)).entries);
      } catch {
        // unreadable now: the apply writes it
      }
    }
  }

  /** The staging of the volume's one tree member (made on first use); none for a volume with several (or none). */
  #stager(vol: Volume): Stager | undefined {
    const members = vol.members.filter((m) => m.kind === 'tree');
    if (members.length !== 1) return undefined;
    const key = replicaKey(this.#site, vol.name);
    let stager = STAGERS.get(key);
    if (!stager) STAGERS.set(key, (stager = new Stager(members[0].path, applyPoolFor(this.#site).stage, this.#site.store)));
    return stager;
  }

  /**
   * Objects received for `volume` are named by no snapshot until its commit:
   * GC waits (Site.beginWrite) from the first put until the commit is done, or
   * until the sender has been silent for TRANSFER_IDLE_MS (it gave up; what
   * arrived may then be collected, and is sent again if needed).
   */
  #writing(volume: string): void {
    let open = TRANSFERS.get(this.#site);
    if (!open) TRANSFERS.set(this.#site, (open = new Map()));
    const cur = open.get(volume);
    if (cur) {
      cur.timer.refresh();
      return;
    }
    const done = this.#site.beginWrite();
    const timer = setTimeout(() => this.#transferDone(volume), TRANSFER_IDLE_MS).unref();
    open.set(volume, { done, timer });
  }

  #transferDone(volume: string): void {
    const open = TRANSFERS.get(this.#site);
    const cur = open?.get(volume);
    if (!cur) return;
    open!.delete(volume);
    clearTimeout(cur.timer);
    cur.done();
  }

  async commit(volume: string, raw: CommitRequest): Promise<CommitResponse> {
    this.#writing(volume);
    try {
      return await this.#commit(volume, raw);
    } finally {
      this.#transferDone(volume);
    }
  }

  async #commit(volume: string, raw: CommitRequest): Promise<CommitResponse> {
    const req = parseCommitRequest(raw);
    const row = this.#secondary(volume);
    const site = this.#site;
    // Objects of an unfinished put may still be pending in the open pack: make them durable
    // before a snapshot that needs them is recorded.
    site.store.flush();
    const existing = snapshotById(site.catalog, req.snapshot);
    let manifest: SnapshotManifest;
    let checkS = 0;
    // hard links in the snapshot, as the check counted them (the next check may take it as its base when 0)
    let links: number | undefined;
    if (existing) {
      // Only a snapshot of this very volume, and it passes the same checks as a new one: a
      // snapshot of another volume here (a primary's, another peer's) is not the peer's to apply.
      if (existing.volume !== volume) throw new FerryError('NOT_AUTHORIZED', `snapshot ${req.snapshot} is not a snapshot of volume ${volume} here`);
      if (existing.manifest !== req.manifest) throw new FerryError('PROTOCOL', `snapshot ${req.snapshot} is already here with different content`);
      manifest = readManifest(site.store, req.manifest);
      this.#checkManifest(req, row, manifest);
    } else {
      const t0 = performance.now();
      const checked = this.#checkComplete(req, row);
      manifest = checked.manifest;
      links = checked.links;
      checkS = (performance.now() - t0) / 1000;
    }
    if (row.applied && req.snapshot !== row.applied) {
      // Also for a snapshot still here (a named one is kept after newer ones are applied): replaying it would roll the replica back.
      // Times (and the time in a ULID) are compared only between snapshots of one origin, taken on
      // one clock: the replica may show a snapshot taken here or at an earlier primary (after a
      // failback or a migrate), and the sites' clocks need not agree. The reference is the newest
      // snapshot here that the sending peer took, in the one order a site's snapshots have (time,
      // then id). Lineage first: a snapshot that descends from the one the replica shows is newer
      // whatever its time (its site's clock may have been set back since), and one the replica's
      // own descends from is older, whichever site took them.
      if (descendsFrom(site.catalog, row.applied, req.snapshot)) {
        throw new FerryError('PROTOCOL', `snapshot ${req.snapshot} is older than ${row.applied}, which this replica shows (it descends from it): a replayed or out-of-order snapshot is refused`);
      }
      const afterShown = manifest.parent !== null && (manifest.parent === row.applied || descendsFrom(site.catalog, manifest.parent, row.applied));
      const received = newestFrom(site.catalog, volume, manifest.origin, req.snapshot);
      if (received && !afterShown && compareOnOneClock({ id: req.snapshot, time: manifest.time }, received) < 0) {
        throw new FerryError('PROTOCOL', `snapshot ${req.snapshot} is older than ${received.id}, which this replica already received from that site: a replayed or out-of-order snapshot is refused`);
      }
    }
    if (!existing) {
      site.catalog.tx(() => {
        let name = manifest.name;
        if (name && hasSnapshotNamed(site.catalog, volume, name)) name = null;
        insertSnapshotRow(site.catalog, { id: manifest.id, volume, name, time: manifest.time, origin: manifest.origin, parent: manifest.parent, manifest: req.manifest, stats: { replicated: true, ...(links !== undefined ? { links } : {}) } });
        holdReplica(site.catalog, volume, this.#peer, manifest.id, { only: true });
        if (req.peer) holdPeer(site.catalog, manifest.id);
        site.event({ kind: 'replication.commit', volume, outcome: 'ok', detail: { snapshot: manifest.id, source: this.#peer } });
      });
    }
    const r = await exclusive(`${site.paths.home}\0${volume}`, () => this.#apply(volume, manifest, req.force ?? false));
    return { ...r, phases: { check: round3(checkS), ...r.phases } };
  }

  /**
   * Every object of the snapshot is here and is what its parent says it is (see
   * checkSnapshotGraph); returns the manifest.
   */
  #checkComplete(req: CommitRequest, row: SecondaryRow): { manifest: SnapshotManifest; links: number } {
    const site = this.#site;
    const known = KnownComplete.for(site.store);
    const epoch = site.store.removalEpoch;
    const r = checkSnapshotGraph(site.store, req.manifest, `snapshot ${req.snapshot}`, known, this.#completeBase(row));
    if (r.missing > 0) {
      throw new FerryError('TRANSFER_INTERRUPTED', `snapshot ${req.snapshot} is incomplete here: ${r.missing} object(s) missing (${r.firstMissing}); the next attempt sends them`);
    }
    const manifest = readManifest(site.store, req.manifest);
    this.#checkManifest(req, row, manifest);
    if (known && site.store.removalEpoch === epoch) known.add(r.complete);
    return { manifest, links: r.links };
  }

  /**
   * The snapshot the replica shows, as the base of a commit check (CompleteBase): it was checked
   * complete when it was committed, it is held while it is shown, and its check recorded that it
   * has no hard links. None while the store has lost objects.
   */
  #completeBase(row: SecondaryRow): CompleteBase | undefined {
    const site = this.#site;
    if (!row.applied || site.store.lostObjectCount() > 0) return undefined;
    try {
      const r = findSnapshot(site.catalog, row.volume, row.applied);
      if (!r || r.stats.links !== 0) return undefined;
      return { roots: new Map(readManifest(site.store, r.manifest).members.filter((m) => m.kind === 'tree').map((m) => [m.name, m.root])) };
    } catch {
      return undefined;
    }
  }

  /** The manifest is the snapshot asked for, of the volume this secondary mirrors, taken by the peer, with the secondary's members. */
  #checkManifest(req: CommitRequest, row: SecondaryRow, manifest: SnapshotManifest): void {
    const site = this.#site;
    if (manifest.id !== req.snapshot) throw new FerryError('PROTOCOL', `manifest ${req.manifest} is snapshot ${manifest.id}, not ${req.snapshot}`);
    if (manifest.volume !== row.source_volume) throw new FerryError('NOT_AUTHORIZED', `snapshot ${manifest.id} is of volume ${manifest.volume}, but this secondary mirrors ${row.source_volume}`);
    if (manifest.origin !== this.#peer) {
      // Snapshots are relayed only by their origin in this version (cascades come later).
      throw new FerryError('NOT_AUTHORIZED', `snapshot ${manifest.id} was taken at site ${manifest.origin}, not by the sending peer`);
    }
    const vol = getVolume(site.catalog, row.volume);
    const want = vol.members.map((m) => `${m.name}:${m.kind}`).join(',');
    const got = manifest.members.map((m) => `${m.name}:${m.kind}`).join(',');
    if (want !== got) throw new FerryError('PROTOCOL', `snapshot ${manifest.id} has members ${got}, the secondary ${want}`);
  }

  async #apply(volume: string, target: SnapshotManifest, force: boolean): Promise<CommitResponse> {
    const site = this.#site;
    const row = this.#secondary(volume);
    const vol = getVolume(site.catalog, volume);
    if (row.applied === target.id && row.applying === null) return { snapshot: target.id, applied: true };
    // An apply left unfinished (a crash, a cancellation, a failed verification, an I/O error) left the
    // replica part way between where it started and its snapshot, maybe with someone's writes besides:
    // that apply is finished first, whatever was asked now, so that the replica is exactly a snapshot
    // before the next diff is taken from it.
    let unfinished: Unfinished | undefined;
    if (row.applying) {
      const from = JSON.parse(row.applying_from ?? '{}') as Record<string, ObjectId | null>;
      if (row.applying !== target.id) {
        const manifestId = snapshotById(site.catalog, row.applying)?.manifest;
        if (manifestId) {
          const first = await this.#apply(volume, readManifest(site.store, manifestId), true);
          const next = await this.#apply(volume, target, force);
          return first.writesSnapshot && !next.writesSnapshot ? { ...next, writesSnapshot: first.writesSnapshot } : next;
        }
        unfinished = { from, to: null }; // its snapshot is gone: only where it started is known
      } else unfinished = { from, to: target };
    }
    const phases: Record<string, number> = {};
    const stager = await this.#stagedFor(vol, row, target, phases);
    const t0 = performance.now();
    const check = await this.#captureReplica(vol, row, stager ? STAGE_DIR : undefined, unfinished);
    phases.writesCheck = round3((performance.now() - t0) / 1000);
    // Writes found are kept (check.snapshot). Into a replica that shows a complete snapshot, they also
    // refuse the apply unless forced: the replica stays usable as it is. An unfinished apply goes on
    // all the same: its replica is inconsistent, of use to nobody, and refusing would leave it so.
    if (check.changed && !force && !unfinished) {
      site.event({ kind: 'replica.writes', volume, outcome: 'failed', detail: { kept: check.snapshot, refused: target.id } });
      return {
        snapshot: target.id,
        applied: false,
        writesSnapshot: check.snapshot,
        refused: `someone wrote into the replica of ${volume} since the last apply${row.applied ? '' : ' (or it was bound over files no apply wrote)'}; the writes are kept in snapshot ${check.snapshot}; ${row.applied ? 'update' : 'initialize (or update)'} with --force to overwrite them`,
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
    const site = this.#site;
    const row = getSecondary(site.catalog, volume);
    if (!row?.applied) throw new FerryError('MIRROR_STATE', `the replica of ${volume} never showed a complete snapshot: there is nothing to roll it back to`);
    const vol = getVolume(site.catalog, volume);
    const manifestOf = (id: string) => snapshotById(site.catalog, id)?.manifest;
    const back = manifestOf(row.applied);
    if (!back) throw new FerryError('SNAPSHOT_NOT_FOUND', `snapshot ${row.applied}, which the replica of ${volume} last showed complete, is gone: there is nothing to roll it back to`);
    let unfinished: Unfinished | undefined;
    if (row.applying) {
      const to = manifestOf(row.applying);
      unfinished = { from: JSON.parse(row.applying_from ?? '{}') as Record<string, ObjectId | null>, to: to ? readManifest(site.store, to) : null };
    }
    const phases: Record<string, number> = {};
    // A forced failover's rollback walks the replica in full (not from the journal): it is rare, and it
    // is where an operator most needs every write kept.
    const check = await this.#captureReplica(vol, row, undefined, unfinished, true);
    await this.#bringTo(vol, row, readManifest(site.store, back), check.roots, { phases, writesSnapshot: check.snapshot, rollback: true, exact: check.exact });
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
    const site = this.#site;
    const volume = vol.name;
    const { phases, stager, writesSnapshot } = o;
    if (!o.rollback) this.#checkCancelled(volume, target, row);
    site.catalog.tx(() => {
      startApply(site.catalog, volume, target.id, from);
      site.event({ kind: 'replica.apply', volume, outcome: 'info', detail: { from: row.applied, to: target.id, transition: 'consistent => inconsistent', ...(o.rollback ? { rollback: true } : {}) } });
    });
    try {
      const warnings: string[] = [];
      const imageStats: Record<string, ImageStat> = {};
      const applied = { created: 0, updated: 0, removed: 0, metadata: 0, bytesWritten: 0 };
      // Objects were verified by hash when they arrived, and the replica is captured and compared with the
      // snapshot after the apply: reading them back, the record's CRC is check enough (no second hash).
      const store = {
        has: (id: ObjectId) => site.store.has(id),
        info: (id: ObjectId) => site.store.info(id),
        // the same chunk in several files (copies, templates) is decoded once while it stays recent
        get: cachedRefs((id: ObjectId) => site.store.getUnhashed(id), 32 * 1024 * 1024),
      };
      // What the apply wrote, as lstat saw each file in place: the verification below trusts these (see #captureTrees).
      const written = new Map<string, WrittenFiles>();
      // Subtrees the apply left alone, as the writes check found them: not walked again.
      const unchanged = new Map<string, Map<string, ObjectId>>();
      const applyStarted = performance.now();
      for (const m of vol.members) {
        const to = target.members.find((x) => x.name === m.name)!;
        const files: WrittenFiles = new Map();
        written.set(m.name, files);
        const same = new Map<string, ObjectId>();
        unchanged.set(m.name, same);
        const opts = {
          subtrees: applyPoolFor(site).run,
          staged: m.kind === 'tree' ? stager?.take : undefined,
          stagedEntry: m.kind === 'tree' ? stager?.takeEntry : undefined,
          onDirUnchanged: (rel: string, tree: ObjectId) => same.set(rel, tree),
          store,
          onWarning: (p: string, msg: string) => warnings.push(`${p}: ${msg}`),
          onFileWritten: (dir: string, name: string, f: CachedFile) => {
            let d = files.get(dir);
            if (!d) files.set(dir, (d = new Map()));
            d.set(name, f);
          },
        };
        const st = m.kind === 'tree' ? await applyTree(m.path, from[m.name] ?? null, to.root, opts) : applyImage(m.path, from[m.name] ?? null, to.root, opts);
        if (m.kind === 'image') imageStats[m.name] = statOf(m.path);
        for (const k of Object.keys(applied) as Array<keyof typeof applied>) applied[k] += st[k];
      }
      if (stager) {
        // what was staged and not taken (a tree that occurs twice, the member root's own files) goes
        stager.clear();
        STAGERS.delete(replicaKey(site, volume));
      }
      phases.apply = round3((performance.now() - applyStarted) / 1000);
      if (!o.rollback) {
        // Test hook (FERRY_PAUSE_AT=apply:after-write): hold a written, not yet verified replica still.
        await pausePoint('apply:after-write', () => applyCancels.has(replicaKey(site, volume)));
        this.#checkCancelled(volume, target, row);
      }
      // The replica must now be exactly the snapshot: capture it and compare.
      const verifyKey = target.id;
      const verifyStarted = performance.now();
      const verified = { filesRead: 0, filesReused: 0, bytesRead: 0 };
      // With an exact writes check (the replica as of its take was `from`), the replica journal's
      // set since then names everything the apply, or anyone, changed: the verification reads
      // that, from `from`, and is exact in turn (the next writes check may then go from it).
      const again = o.exact ? await this.#replicaTakes(vol, (member, t) => (t.set.lost === null ? (from[member] ?? null) : null)) : undefined;
      const journaled = again !== undefined && again.exact && again.journals.size === vol.members.filter((x) => x.kind === 'tree').length;
      const after = await this.#captureTrees(vol, row.applied ?? undefined, verifyKey, written, verified, journaled ? undefined : unchanged, undefined, journaled ? again.journals : undefined);
      phases.verify = round3((performance.now() - verifyStarted) / 1000);
      for (const m of vol.members.filter((x) => x.kind === 'tree')) {
        const want = target.members.find((x) => x.name === m.name)!.root;
        if (after[m.name] !== want) {
          // Which paths differ (the first few), for the operator and the event history.
          const differ: string[] = [];
          try {
            diffTrees(site.store, want, after[m.name], (c) => {
              if (differ.length < 5) differ.push(`${c.path} (${c.change}${c.what?.length ? `: ${c.what.join(', ')}` : ''})`);
            });
          } catch {
            // the capture's objects are in the store; if not, the ids say enough
          }
          site.event({ kind: 'replica.apply', volume, outcome: 'failed', detail: { to: target.id, member: m.name, error: 'mismatch after apply', differ } });
          throw new FerryError(
            'REPLICA_MISMATCH',
            `after applying ${target.id}, replica member ${m.name} of ${volume} does not match the snapshot (found ${after[m.name]}, want ${want}${differ.length ? `; differs at ${differ.join('; ')}` : ''}): someone wrote into it during the apply; ` +
              `it stays marked inconsistent, and the next update (plain or --force) keeps what differs in a replica-writes-* snapshot at ${site.name} and finishes the apply`,
          );
        }
      }
      if (journaled) for (const m of vol.members.filter((x) => x.kind === 'tree')) journalOf(site)?.replicaSettle(volume, m.name, target.id);
      site.catalog.tx(() => {
        finishApply(site.catalog, volume, target.id, imageStats);
        keepStatCacheOf(site.catalog, volume, verifyKey);
        site.event({ kind: 'replica.apply', volume, outcome: warnings.length ? 'warning' : 'ok', detail: { to: target.id, transition: 'inconsistent => consistent', ...applied, warnings, seconds: phases, verified, journal: { writesCheck: o.journaled === true, verify: journaled }, ...(stager ? { staging: stager.counts } : {}), ...(o.rollback ? { rollback: true } : {}), ...(writesSnapshot ? { kept: writesSnapshot } : {}) } });
      });
      if (!o.rollback) this.#release(volume, target);
      return { snapshot: target.id, applied: true, ...(writesSnapshot ? { writesSnapshot } : {}), phases };
    } catch (err) {
      // Why the replica stays inconsistent: `ferry failover` and `ferry status` say what happened.
      // A system error not wrapped where it happened still says which operation on which path failed.
      const fe = isFerryError(err) ? err : (err as NodeJS.ErrnoException)?.syscall ? wrapIoError(err, `applying ${target.id} to the replica of ${volume}`) : new FerryError('INTERNAL', String((err as Error)?.message ?? err), { cause: err });
      noteApplyError(site.catalog, volume, target.id, { code: fe.code, message: fe.message, at: site.clock.now() });
      throw fe;
    }
  }

  /**
   * The staging of a baseline's subtrees (stage.ts), once what is under way is done: for a replica
   * never applied, with one tree member. A snapshot holding an entry by the staging area's name at
   * that member's root gets none (the area is removed first: that name is the snapshot's).
   */
  async #stagedFor(vol: Volume, row: SecondaryRow, target: SnapshotManifest, phases: Record<string, number>): Promise<Stager | undefined> {
    const site = this.#site;
    const stager = row.applied === null ? this.#stager(vol) : undefined;
    if (!stager) return undefined;
    const t0 = performance.now();
    await stager.drain();
    phases.stageWait = round3((performance.now() - t0) / 1000);
    const member = vol.members.find((m) => m.kind === 'tree')!.name;
    const root = target.members.find((m) => m.name === member)!.root;
    if (decodeTree(site.store.get(root)).entries.some((e) => e.name.toString('latin1') === STAGE_DIR)) {
      stager.clear();
      STAGERS.delete(replicaKey(site, vol.name));
      return undefined;
    }
    return stager;
  }

  /** A forced failover asked applies of this volume to stop: stop here (the replica stays marked as it is). */
  #checkCancelled(volume: string, target: SnapshotManifest, row: SecondaryRow): void {
    const reason = applyCancels.get(replicaKey(this.#site, volume));
    if (reason === undefined) return;
    this.#site.event({ kind: 'replica.apply', volume, outcome: 'failed', detail: { to: target.id, cancelled: reason } });
    throw new FerryError('FAILED_OVER', `site ${this.#site.name} is taking over volume ${volume} (${reason}): the apply of ${target.id} was cancelled and the replica goes back to ${row.applied ?? 'its last complete snapshot'}; run \`ferry failback\` at your site to resync from ${this.#site.name}`);
  }

  /** Finish applies a crash interrupted (the daemon calls this at start, for this peer's secondaries). */
  async resumeInterrupted(): Promise<string[]> {
    const site = this.#site;
    const rows = secondariesApplying(site.catalog, this.#peer);
    const done: string[] = [];
    for (const row of rows) {
      const manifestId = snapshotById(site.catalog, row.applying!)?.manifest;
      if (!manifestId) continue;
      await exclusive(`${site.paths.home}\0${row.volume}`, () => this.#apply(row.volume, readManifest(site.store, manifestId), true));
      done.push(row.volume);
    }
    return done;
  }

  /**
   * Capture the tree members of the replica with the stat cache; returns member -> root.
   * `written`: files the apply just wrote from verified chunks, with what lstat saw of each once in
   * place; a file that still shows exactly that (size, mtime, ctime, inode) is taken as those chunks
   * without being read again, like a stat-cache hit. A write into it since (even one that put the
   * mtime back) changes its ctime, and the file is read.
   */
  async #captureTrees(
    vol: Volume, parentKey: string | undefined, newKey: string, written?: Map<string, WrittenFiles>,
    stats?: { filesRead: number; filesReused: number; bytesRead: number }, unchanged?: Map<string, Map<string, ObjectId>>, skipAtRoot?: string,
    journals?: Map<string, CaptureJournal>,
  ): Promise<Record<string, ObjectId>> {
    const site = this.#site;
    const rows = new StatCacheWriter(site.catalog, vol.name, newKey);
    const out: Record<string, ObjectId> = {};
    // a failed write that discards what this capture stored (or skipped as pending) fails it (WriteSession)
    const session = site.store.session();
    for (const m of vol.members.filter((x) => x.kind === 'tree')) {
      const base = statCacheFor(site.catalog, vol.name, m.name, parentKey, rows);
      const files = written?.get(m.name);
      const cache = files?.size ? withWritten(base, files) : base;
      const same = unchanged?.get(m.name);
      const reuse = same?.size ? (rel: Buffer) => same.get(rel.toString('latin1')) : undefined;
      // From the replica's change journal (journal-service.ts), where the caller has an exact set:
      // only what changed is looked at, and nothing is taken on trust from an earlier capture.
      const journal = journals?.get(m.name);
      const r = await captureTree(m.path, { store: session, pool: this.#pool, cache, startedAt: site.clock.now(), reuse: journal ? undefined : reuse, skipAtRoot, journal });
      out[m.name] = r.root;
      if (stats) {
        stats.filesRead += r.stats.filesRead;
        stats.filesReused += r.stats.filesReused;
        stats.bytesRead += r.stats.bytesRead;
      }
    }
    rows.flush();
    // The stat cache of subtrees not walked carries over from the parent's rows (the writes check's).
    if (parentKey && ([...(unchanged?.values() ?? [])].some((x) => x.size > 0) || (journals?.size ?? 0) > 0)) {
      carryStatCache(site.catalog, vol.name, parentKey, newKey);
    }
    site.store.flush();
    session.check();
    return out;
  }

  /**
   * Take the replica journal's set of every tree member (journal-service.ts, replicaTake). `parentOf`
   * says, per member, which tree the set counts from (null: the capture walks in full). `exact`:
   * every tree member's set was taken from a live watch, so a capture made now is the replica as of
   * the take; false without a journal (a capture made without a daemon, a watch that cannot be made).
   */
  async #replicaTakes(vol: Volume, parentOf: (member: string, t: { set: DirtySet; base: string | null }) => ObjectId | null): Promise<{ journals: Map<string, CaptureJournal>; exact: boolean }> {
    const site = this.#site;
    const j = journalOf(site);
    const journals = new Map<string, CaptureJournal>();
    let exact = j !== undefined;
    for (const m of vol.members.filter((x) => x.kind === 'tree')) {
      const t = await j?.replicaTake(vol, m.name);
      if (!t) {
        exact = false;
        continue;
      }
      const parent = parentOf(m.name, t);
      if (parent) journals.set(m.name, { parent, dirs: t.set.dirs, tree: (id) => decodeTree(site.store.get(id)) });
    }
    return { journals, exact };
  }

  /**
   * Did anyone write into the replica since the last apply? If so, keep what is there as a snapshot.
   * `unfinished`: an apply left part way (from its start to its snapshot, if that is still here):
   * then the replica may differ from the last apply by that apply's own work, and only what is
   * neither (mid-apply.ts) counts as written.
   */
  async #captureReplica(vol: Volume, row: SecondaryRow, skipAtRoot?: string, unfinished?: Unfinished, full = false): Promise<{ roots: Record<string, ObjectId | null>; changed: boolean; snapshot?: string; exact: boolean; journaled: boolean }> {
    const site = this.#site;
    const applied = row.applied ? readManifest(site.store, snapshotById(site.catalog, row.applied)!.manifest) : null;
    const key = newSnapshotId(site.clock);
    const session = site.store.session();
    // The replica's change journal: what changed since the last take. When the last verification
    // found the replica exactly at the snapshot it shows, only that is looked at; either way this
    // capture is then exact as of the take, and the verification after the apply may go from it.
    const { journals, exact } = await this.#replicaTakes(vol, (member, t) =>
      !full && !unfinished && applied !== null && t.set.lost === null && t.base === row.applied ? (applied.members.find((x) => x.name === member && x.kind === 'tree')?.root ?? null) : null,
    );
    const trees = await this.#captureTrees(vol, row.applied ?? undefined, key, undefined, undefined, undefined, skipAtRoot, journals);
    const imageStats = JSON.parse(row.image_stats) as Record<string, ImageStat>;
    const roots: Record<string, ObjectId | null> = {};
    const members: SnapshotMember[] = [];
    // what was written (the first few paths or blocks), for the event
    const written: string[] = [];
    const sides = (name: string) => [unfinished!.from[name] ?? null, unfinished!.to?.members.find((x) => x.name === name)?.root ?? null] as const;
    for (const m of vol.members) {
      const base = applied?.members.find((x) => x.name === m.name)?.root ?? null;
      if (m.kind === 'tree') {
        const now = trees[m.name];
        roots[m.name] = now;
        members.push({ name: m.name, kind: 'tree', root: now });
        if (unfinished) {
          if (now !== base) written.push(...foreignTreePaths(site.store, now, ...sides(m.name)).map((p) => `${m.name}/${p}`));
        } else if (base ? now !== base : !this.#isEmptyTree(now)) written.push(m.name);
        continue;
      }
      const now = statOf(m.path);
      const kind = lstatSync(m.path);
      if (!kind.isFile() && !kind.isBlockDevice()) {
        // Never read through a symlink (or anything else) put in place of the image: that would copy what it points at.
        throw new FerryError('MEMBER_INVALID', `image replica ${m.path} of ${vol.name} is neither a regular file nor a block device (a symlink?); move it away`);
      }
      const was = imageStats[m.name];
      // An untouched replica is the applied image, but the apply diffs from that image's block lists:
      // if this store lost any of them (a lost pack), capture the replica instead, which also stores them again.
      const untouched = base ? was && was.size === now.size && was.mtimeNs === now.mtimeNs && was.ctimeNs === now.ctimeNs && was.ino === now.ino && imageListsHeld(site.store, base) : now.size === 0;
      if (untouched) {
        roots[m.name] = base;
        if (base) members.push({ name: m.name, kind: 'image', root: base });
        continue;
      }
      const img = await captureImage(m.path, { store: session, pool: this.#pool, startedAt: site.clock.now() });
      roots[m.name] = img.root;
      members.push({ name: m.name, kind: 'image', root: img.root });
      if (img.root === base) continue;
      if (!unfinished) written.push(m.name);
      else written.push(...foreignImageBlocks(site.store, img.root, ...sides(m.name)).map((b) => (b < 0 ? `${m.name} (size)` : `${m.name} block ${b}`)));
    }
    const changed = written.length > 0;
    if (!changed) {
      // Nothing new: the cache rows just written describe the applied state.
      site.catalog.tx(() => {
        keepStatCacheOf(site.catalog, vol.name, key);
        if (row.applied) renameStatCache(site.catalog, vol.name, key, row.applied);
      });
      return { roots, changed, exact, journaled: journals.size > 0 };
    }
    // Kept already: the newest replica-writes-* snapshot holds exactly this (the refused update before
    // a forced one, an apply that keeps failing): no second copy.
    const last = newestReplicaWrites(site.catalog, vol.name, site.id);
    if (last && sameMembers(readManifest(site.store, last.manifest).members, members)) {
      site.event({ kind: 'replica.writes', volume: vol.name, outcome: 'warning', detail: { name: last.name, written, keptAlready: true, ...(unfinished ? { during: unfinished.to?.id ?? row.applying } : {}) } });
      return { roots, changed, snapshot: last.name, exact, journaled: journals.size > 0 };
    }
    // Keep the writes: a named snapshot of the replica as it is (invariant: nothing is lost silently).
    const time = site.clock.now();
    const name = `replica-writes-${new Date(time).toISOString().replace(/[:.]/g, '-')}`;
    const manifest: SnapshotManifest = { id: key as SnapshotId, volume: vol.name, name, time, origin: site.id, parent: (row.applied as SnapshotId | null) ?? null, members };
    const { id: manifestId } = session.put('snapshot', encodeSnapshot(manifest));
    site.store.flush();
    session.check();
    site.catalog.tx(() => {
      insertSnapshotRow(site.catalog, { id: key, volume: vol.name, name, time, origin: site.id, parent: row.applied, manifest: manifestId, stats: { replicaWrites: true } });
      site.event({ kind: 'replica.writes', volume: vol.name, outcome: 'warning', detail: { snapshot: key, name, written, ...(unfinished ? { during: unfinished.to?.id ?? row.applying } : {}) } });
    });
    return { roots, changed, snapshot: name, exact, journaled: journals.size > 0 };
  }

  #isEmptyTree(id: ObjectId): boolean {
    return decodeTree(this.#site.store.get(id)).entries.length === 0;
  }

  /**
   * Older replication snapshots are no longer needed here: release them, except the newest K (the
   * source's `keep`: 3 when it has several secondaries, else 1) counting the one just applied. The K are the candidates for a
   * common base with a sibling secondary if a sibling takes over (docs/dr.md, "Several secondaries").
   * Named ones and held ones stay, and so does this site's own history (from when it was primary);
   * replication snapshots from an earlier source (before a re-point) are released like the rest.
   */
  #release(volume: string, target: SnapshotManifest): void {
    const site = this.#site;
    // A source that does not say (an older ferry) gets what it always got: the newest one only.
    const keep = keepSnapshotsOf(site.catalog, volume);
    // Older: received here before it (this site's own order: the sources' clocks need not agree,
    // and after a re-point the snapshots here come from two of them).
    const older = replicationSnapshotsBefore(site.catalog, volume, target.id, site.id);
    const old = older.slice(Math.max(0, keep - 1)).filter((o) => !o.held);
    if (old.length === 0) return;
    site.catalog.tx(() => {
      for (const o of old) deleteSnapshotRow(site.catalog, volume, o.id);
      site.event({ kind: 'replication.release', volume, outcome: 'ok', detail: { released: old.map((o) => o.id) } });
    });
    collectGarbageSoon(site);
  }
}
