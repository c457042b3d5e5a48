// When garbage is collected by itself (the `git gc --auto` idea; docs/store.md, "When garbage is
// collected"). A collection marks every snapshot of the store and scans its whole index: at a
// million files that is seconds of CPU, too much to pay after every mirror update. So a release
// ferry makes by itself (the destination's replication snapshots after an apply, retention, a
// peer snapshot deleted everywhere) only adds an estimate of what it frees (snapshot/releasable.ts:
// a walk of what differs from the snapshot kept next to it) to a running total kept in the
// catalog (catalog/collection.ts), and a collection runs once that total passes the threshold
// (site.gcThreshold, default max(64 MiB, 5 % of the store)), once a day while it is above 0, or
// after a store write failed for lack of space. Explicit collections (`ferry gc`, `ferry snapshot
// delete`, `ferry volume remove`) run at once, as before. Every collection resets the total.
//
// Deferring is always safe: the objects of released snapshots stay in the store a while longer.
import { humanBytes } from '../core/units.ts';
import type { Clock } from '../core/clock.ts';
import type { Catalog } from '../catalog/catalog.ts';
import { addReleasable, collectionState, gcThresholdSetting, noteNoSpace, type CollectionState } from '../catalog/collection.ts';
import { recordedNeighbour, snapshotById } from '../catalog/snapshots.ts';
import { releasableBytes } from '../snapshot/releasable.ts';
import type { PackStore } from '../store/pack-store.ts';
import type { Site } from './site.ts';

export const MiB = 1024 ** 2;
/** The default threshold: this many bytes, or 5 % of the store if that is more. */
export const DEFAULT_GC_THRESHOLD = 64 * MiB;
export const DEFAULT_GC_THRESHOLD_SHARE = 0.05;
/** A total above 0 is collected once the last collection is this old. */
export const GC_MAX_AGE_MS = 24 * 3600_000;

/** What the policy needs of a site (the receiving side's host has the same). */
export interface CollectingSite {
  readonly catalog: Catalog;
  readonly store: PackStore;
  readonly clock: Clock;
}

export interface GcThreshold {
  bytes: number;
  /** `gc_threshold`: the site setting (site.gcThreshold); default: max(64 MiB, 5 % of the store) */
  source: 'default' | 'gc_threshold';
}

export function gcThreshold(site: CollectingSite): GcThreshold {
  const set = gcThresholdSetting(site.catalog);
  if (set !== null) return { bytes: set, source: 'gc_threshold' };
  return { bytes: Math.max(DEFAULT_GC_THRESHOLD, Math.round(site.store.storedBytes() * DEFAULT_GC_THRESHOLD_SHARE)), source: 'default' };
}

/**
 * What releasing these snapshots of `volume` frees, estimated while their rows are still there:
 * each against the snapshot recorded just after it (or, for the newest, just before it). Cost:
 * what differs between the two, never the whole volume.
 */
export function estimateRelease(site: CollectingSite, volume: string, ids: string[]): number {
  let bytes = 0;
  for (const id of ids) {
    const rec = snapshotById(site.catalog, id);
    if (!rec) continue;
    bytes += releasableBytes(site.store, rec.manifest, recordedNeighbour(site.catalog, volume, id));
  }
  return bytes;
}

export interface CollectVerdict {
  /** collect now (or as soon as no writer is in progress) */
  collect: boolean;
  /** for the release's event: why, or why not yet */
  detail: string;
}

/**
 * Snapshots were released by ferry itself, freeing about `bytes`: counted (in the caller's
 * transaction, beside the deletion of their rows, so a crash loses neither without the other), and
 * whether a collection is due now. `onlyManifests`: the released snapshots had the kept one's
 * member roots (an update where nothing changed), which never triggers a collection by itself
 * (threshold 0 included, as before this policy).
 */
export function countRelease(site: CollectingSite, bytes: number, o: { onlyManifests?: boolean } = {}): CollectVerdict {
  const state = addReleasable(site.catalog, bytes, site.clock.now());
  if (o.onlyManifests) {
    const due = dueBeyondThreshold(site, state);
    return due ? { collect: true, detail: due } : { collect: false, detail: 'deferred: nothing but their manifests to free' };
  }
  const t = gcThreshold(site);
  if (t.bytes === 0) return { collect: true, detail: 'collecting: the threshold is 0 (site.gcThreshold)' };
  if (state.releasable > t.bytes) return { collect: true, detail: `collecting: ${mib(state.releasable)} releasable, over the threshold of ${mib(t.bytes)}` };
  const due = dueBeyondThreshold(site, state);
  if (due) return { collect: true, detail: due };
  return { collect: false, detail: `deferred: ${mib(state.releasable)} releasable of threshold ${mib(t.bytes)}` };
}

/** A collection due whatever the total: a write failed for lack of space, or the last collection is a day old while there is something to free. */
function dueBeyondThreshold(site: CollectingSite, s: CollectionState): string | undefined {
  if (s.noSpaceAt !== null || noSpaceSeen.has(site.store)) return 'collecting: a store write failed for lack of space since the last collection';
  const from = s.lastAt ?? s.since;
  if (s.releasable > 0 && from !== null && site.clock.now() - from > GC_MAX_AGE_MS) {
    return `collecting: ${mib(s.releasable)} releasable and the last collection ${s.lastAt === null ? 'never ran (counting since ' + new Date(from).toISOString() + ')' : 'ran at ' + new Date(from).toISOString()}, over a day ago`;
  }
  return undefined;
}

/**
 * Whether a collection is due at an idle point of the daemon (its scheduler's tick), whatever was
 * released last: a write failed for lack of space, or a day passed with something to free. Cheap:
 * a few catalog rows.
 */
export function collectionDue(site: CollectingSite): string | undefined {
  return dueBeyondThreshold(site, collectionState(site.catalog));
}

/** Stores of sites where a write failed for lack of space, when the catalog could not record it (the disk is full). */
const noSpaceSeen = new WeakSet<PackStore>();

/** A store write failed for lack of space: the next idle point collects (collection is how space comes back). */
export function noteStoreNoSpace(site: CollectingSite): void {
  noSpaceSeen.add(site.store);
  try {
    noteNoSpace(site.catalog, site.clock.now());
  } catch {
    // the catalog's disk is full too: the in-memory mark stands until the collection runs
  }
}

/** The collection ran: forget the in-memory mark of a failed write (the catalog's is reset by noteCollected). */
export function forgetNoSpace(site: CollectingSite): void {
  noSpaceSeen.delete(site.store);
}

/** For `ferry status --json` and /metrics. */
export function collectionReport(site: Site): { releasableBytes: number; thresholdBytes: number; threshold: GcThreshold['source']; countingSince: number | null; lastCollectionAt: number | null; noSpaceAt: number | null; due: string | null } {
  const s = collectionState(site.catalog);
  const t = gcThreshold(site);
  return {
    releasableBytes: s.releasable,
    thresholdBytes: t.bytes,
    threshold: t.source,
    countingSince: s.since,
    lastCollectionAt: s.lastAt,
    noSpaceAt: s.noSpaceAt ?? (noSpaceSeen.has(site.store) ? site.clock.now() : null),
    due: dueBeyondThreshold(site, s) ?? null,
  };
}

function mib(bytes: number): string {
  return bytes >= MiB ? `${(bytes / MiB).toFixed(1)} MiB` : humanBytes(bytes);
}
