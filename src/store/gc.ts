// Garbage collection of the pack store, plan then execute (restic's prune).
//
// planCollect reads the index only and decides, per live pack: keep it,
// delete it (nothing in it is live), or repack it (copy its live objects to
// a new pack, then drop it). The plan is plain data: print it for a dry run,
// or hand it to executeCollect, which runs it in an order a crash at any
// instant cannot hurt:
//
//   1. copy  live objects of repacked packs into new packs, which are sealed
//            (file and directory fsynced) but not yet indexed;
//      commit one transaction: index the new packs, point the moved rows at
//            them, delete the dead rows of every retired pack, and mark the
//            retired packs 'obsolete';
//   2. unlink the obsolete pack files and fsync their directories;
//   3. forget the obsolete packs' rows.
//
// Before the commit every row points at an old, durable pack (the new packs
// are orphans that recover() deletes); after it, at a new, durable one. An
// 'obsolete' row left by a crash in 2 or 3 is finished by recover().
//
// Liveness is the caller's: `isLive` must come from a mark over every
// retained snapshot and every held base, and the caller must hold the site
// lock from the mark through execute. A put that deduplicated against an
// object the plan thinks dead would otherwise lose that object. Writes between
// plan and execute through the same PackStore are detected and refused.
import { humanBytes } from '../core/units.ts';
import { FerryError, isFerryError } from '../core/errors.ts';
import type { ObjectId } from '../core/ids.ts';
import { PACK_HEADER_SIZE, recordLength } from './pack.ts';
import type { PackStore } from './pack-store.ts';

export type PackAction = 'keep' | 'delete' | 'repack';

export interface PackDecision {
  pack: string;
  packId: number;
  action: PackAction;
  /** pack file size */
  size: number;
  /** indexed objects in the pack */
  objects: number;
  liveObjects: number;
  deadObjects: number;
  /** bytes of the live objects' records */
  liveBytes: number;
  /** every other byte of the pack except its header (dead records, and any unindexed ones) */
  deadBytes: number;
  /** bytes this decision frees: the pack for delete, the pack less its copied records for repack */
  bytesFreed: number;
  /** repack: the live objects to copy */
  copy?: ObjectId[];
}

export interface GcPlan {
  format: 'ferry-gc-plan/1';
  repackThreshold: number;
  /** identifies the store instance and its write count at planning time */
  store: { token: string; epoch: number };
  packs: PackDecision[];
  totals: {
    packs: number;
    keep: number;
    delete: number;
    repack: number;
    liveObjects: number;
    deadObjects: number;
    deadBytes: number;
    bytesFreed: number;
    objectsCopied: number;
    bytesCopied: number;
    /** packs left obsolete by an interrupted GC, removed by this one too */
    obsoletePacks: number;
  };
}

export interface GcOptions {
  /** fraction of a pack's bytes that are dead above which it is repacked; default 0.25 */
  repackThreshold?: number;
}

export type GcCrashPoint = 'copy' | 'commit' | 'unlink';

export interface GcExecuteOptions {
  /** tests: throw InjectedCrash right after this step, skipping all cleanup, as SIGKILL would */
  crashAfter?: GcCrashPoint;
}

export interface GcResult {
  packsDeleted: string[];
  packsRepacked: string[];
  packsWritten: string[];
  objectsCopied: number;
  objectsDropped: number;
  /** live pack bytes before minus after */
  bytesFreed: number;
  /** repack packs left in place because a live object in them failed verification */
  skipped: Array<{ pack: string; reason: string; damaged: ObjectId[] }>;
}

/** What a crash hook throws; tests catch it and then reopen and recover. */
export class InjectedCrash extends Error {
  readonly point: GcCrashPoint;
  constructor(point: GcCrashPoint) {
    super(`injected crash after GC step '${point}'`);
    this.name = 'InjectedCrash';
    this.point = point;
  }
}

export const DEFAULT_REPACK_THRESHOLD = 0.25;

/** Decides what to do with every live pack. Reads the index only. */
export function planCollect(store: PackStore, isLive: (id: ObjectId) => boolean, opts: GcOptions = {}): GcPlan {
  if (store.pendingCount > 0) {
    throw new FerryError('INTERNAL', `GC planned with ${store.pendingCount} unflushed object(s): flush the store first, so nothing pending can be collected`);
  }
  const threshold = opts.repackThreshold ?? DEFAULT_REPACK_THRESHOLD;
  if (!(threshold >= 0 && threshold <= 1)) throw new FerryError('CONFIG_INVALID', `repackThreshold must be between 0 and 1, got ${threshold}`);
  const plan: GcPlan = {
    format: 'ferry-gc-plan/1',
    repackThreshold: threshold,
    store: { token: store.instanceToken, epoch: store.writeEpoch },
    packs: [],
    totals: { packs: 0, keep: 0, delete: 0, repack: 0, liveObjects: 0, deadObjects: 0, deadBytes: 0, bytesFreed: 0, objectsCopied: 0, bytesCopied: 0, obsoletePacks: 0 },
  };
  const t = plan.totals;
  for (const p of store.listPacks()) {
    if (p.state !== 'live') {
      t.obsoletePacks++;
      continue;
    }
    const rows = store.packObjects(p.id);
    const live: ObjectId[] = [];
    let liveBytes = 0;
    for (const r of rows) {
      if (isLive(r.id)) {
        live.push(r.id);
        liveBytes += recordLength(r.storedLength);
      }
    }
    const deadBytes = Math.max(0, p.size - PACK_HEADER_SIZE - liveBytes);
    const action: PackAction = live.length === 0 ? 'delete' : deadBytes / p.size > threshold ? 'repack' : 'keep';
    const d: PackDecision = {
      pack: p.name,
      packId: p.id,
      action,
      size: p.size,
      objects: rows.length,
      liveObjects: live.length,
      deadObjects: rows.length - live.length,
      liveBytes,
      deadBytes,
      bytesFreed: action === 'delete' ? p.size : action === 'repack' ? p.size - liveBytes : 0,
    };
    if (action === 'repack') {
      d.copy = live;
      t.objectsCopied += live.length;
      t.bytesCopied += liveBytes;
    }
    plan.packs.push(d);
    t.packs++;
    t[action]++;
    t.liveObjects += d.liveObjects;
    t.deadObjects += d.deadObjects;
    t.deadBytes += d.deadBytes;
    t.bytesFreed += d.bytesFreed;
  }
  return plan;
}

/** A few lines for a dry run. */
export function describePlan(plan: GcPlan): string {
  const t = plan.totals;
  const lines = [
    `${t.packs} packs: keep ${t.keep}, delete ${t.delete}, repack ${t.repack} (threshold ${plan.repackThreshold})`,
    `objects: ${t.liveObjects} live, ${t.deadObjects} dead; ${humanBytes(t.deadBytes)} dead`,
    `would copy ${t.objectsCopied} objects (${humanBytes(t.bytesCopied)}) and free ${humanBytes(t.bytesFreed)}`,
  ];
  if (t.obsoletePacks > 0) lines.push(`${t.obsoletePacks} pack(s) left obsolete by an interrupted GC will be removed`);
  return lines.join('\n');
}

/** Runs a plan in crash-safe order; see the module comment. Hold the site lock from planning through this. */
export function executeCollect(store: PackStore, plan: GcPlan, opts: GcExecuteOptions = {}): GcResult {
  if (plan.format !== 'ferry-gc-plan/1') throw new FerryError('FORMAT_VERSION', `unknown GC plan format ${JSON.stringify(plan.format)}`);
  if (store.pendingCount > 0) throw new FerryError('INTERNAL', 'GC executed with unflushed objects in the store: flush, and plan again');
  if (plan.store.token === store.instanceToken && plan.store.epoch !== store.writeEpoch) {
    throw new FerryError('INTERNAL', 'objects were written between planning and executing GC, so the plan may be stale: plan again while holding the site lock');
  }
  const crash = (point: GcCrashPoint) => {
    if (opts.crashAfter === point) throw new InjectedCrash(point);
  };
  const before = store.stats().storedBytes;
  checkPlanCurrent(store, plan);

  const result: GcResult = { packsDeleted: [], packsRepacked: [], packsWritten: [], objectsCopied: 0, objectsDropped: 0, bytesFreed: 0, skipped: [] };
  const retire: number[] = [];
  const relocation = store.openRelocation();
  try {
    for (const d of plan.packs) {
      if (d.action !== 'repack') continue;
      const damaged: ObjectId[] = [];
      for (const id of d.copy ?? []) {
        let s: ReturnType<PackStore['readStored']>;
        try {
          s = store.readStored(id);
        } catch (err) {
          if (isFerryError(err, 'OBJECT_CORRUPT')) {
            damaged.push(id);
            continue;
          }
          throw err;
        }
        // read-verified above, so copied as stored without another hash
        relocation.copy({ id, kindCode: s.kindCode, codec: s.codec, rawLength: s.rawLength, stored: s.stored, fromPack: d.packId });
      }
      if (damaged.length > 0) {
        // keep the pack: its damaged objects may still be salvaged by hand
        result.skipped.push({ pack: d.pack, reason: `${damaged.length} live object(s) failed verification`, damaged });
      } else {
        retire.push(d.packId);
        result.packsRepacked.push(d.pack);
      }
    }
    for (const d of plan.packs) {
      if (d.action === 'delete') {
        retire.push(d.packId);
        result.packsDeleted.push(d.pack);
      }
    }
    relocation.finish();
    crash('copy');
    const c = store.commitRelocation(relocation, retire);
    result.packsWritten = c.packsWritten;
    result.objectsCopied = c.moved;
    result.objectsDropped = c.dropped;
  } catch (err) {
    if (err instanceof InjectedCrash) relocation.drop();
    else relocation.abandon();
    throw err;
  }
  crash('commit');
  store.unlinkObsoletePacks();
  crash('unlink');
  store.forgetObsoletePacks();
  result.bytesFreed = before - store.stats().storedBytes;
  return result;
}

/** Refuses a plan whose packs changed since it was made. */
function checkPlanCurrent(store: PackStore, plan: GcPlan): void {
  const packs = new Map(store.listPacks().map((p) => [p.id, p]));
  for (const d of plan.packs) {
    if (d.action === 'keep') continue;
    const p = packs.get(d.packId);
    const stale = (why: string) => new FerryError('INTERNAL', `GC plan is stale: pack ${d.pack} ${why}; plan again while holding the site lock`);
    if (!p || p.name !== d.pack) throw stale('is gone');
    if (p.state !== 'live') throw stale('is no longer live');
    const rows = store.packObjects(d.packId);
    if (rows.length !== d.objects) throw stale(`holds ${rows.length} objects, the plan saw ${d.objects}`);
    if (d.action === 'repack') {
      const ids = new Set(rows.map((r) => r.id));
      for (const id of d.copy ?? []) if (!ids.has(id)) throw stale(`no longer holds object ${id}`);
    }
  }
}
