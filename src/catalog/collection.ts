// What the automatic collection keeps between runs (site/auto-collect.ts): the running estimate
// of bytes that released snapshots left to free, since when it has been counting, when the last
// collection ran, and a write that failed for lack of space. Rows of `meta` (meta.ts), so a
// restart forgets none of it; these keys are ferry's own, not settings of the site file.
import type { Catalog } from './catalog.ts';
import { readMeta, writeMeta } from './meta.ts';

const KEYS = {
  releasable: 'gc_releasable',
  since: 'gc_releasable_since',
  last: 'gc_last_at',
  noSpace: 'gc_no_space_at',
} as const;

/** The site setting (site.gcThreshold in the site file; config/schema.ts META_KEYS): releasable bytes after which a collection runs. */
export const GC_THRESHOLD_KEY = 'gc_threshold';

/** The threshold the site file set, in bytes (0: after every release), or null: the default. */
export function gcThresholdSetting(cat: Catalog): number | null {
  const n = num(cat, GC_THRESHOLD_KEY);
  return n !== null && Number.isSafeInteger(n) ? n : null;
}

export interface CollectionState {
  /** estimated bytes released snapshots left for a collection to free */
  releasable: number;
  /** when the estimate last went from 0 to more (null: it is 0) */
  since: number | null;
  /** when the last collection ran (null: none recorded) */
  lastAt: number | null;
  /** when a store write last failed for lack of space, if no collection ran since (null: none) */
  noSpaceAt: number | null;
}

function num(cat: Catalog, key: string): number | null {
  const v = readMeta(cat, key);
  if (v === undefined) return null;
  const n = Number(v);
  return Number.isFinite(n) && n >= 0 ? n : null;
}

export function collectionState(cat: Catalog): CollectionState {
  return { releasable: num(cat, KEYS.releasable) ?? 0, since: num(cat, KEYS.since), lastAt: num(cat, KEYS.last), noSpaceAt: num(cat, KEYS.noSpace) };
}

/** Adds released bytes to the estimate (in the caller's transaction, beside the deletion of their rows); returns the new state. */
export function addReleasable(cat: Catalog, bytes: number, now: number): CollectionState {
  const s = collectionState(cat);
  const releasable = s.releasable + Math.max(0, Math.round(bytes));
  const since = s.since ?? (releasable > 0 ? now : null);
  writeMeta(cat, { [KEYS.releasable]: String(releasable), [KEYS.since]: since === null ? null : String(since) });
  return { ...s, releasable, since };
}

/** A collection ran (its mark took every snapshot released before it): the estimate starts again from 0. */
export function noteCollected(cat: Catalog, at: number): void {
  writeMeta(cat, { [KEYS.releasable]: null, [KEYS.since]: null, [KEYS.last]: String(at), [KEYS.noSpace]: null });
}

/** A store write failed for lack of space: the next idle point collects. */
export function noteNoSpace(cat: Catalog, at: number): void {
  writeMeta(cat, { [KEYS.noSpace]: String(at) });
}
