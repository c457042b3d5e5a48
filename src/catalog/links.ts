// Links (`links`): a snapshot presented as a writable copy at a stable path.
// One row per link, read as a Link (settings within bounds), and the changes
// that keep its hold (holds.ts, `link`) on the snapshot it shows. Making and
// refreshing the copy is dr/links.ts's.
import { safeIntColumn } from '../core/sqlite.ts';
import { storedScheduleSettings } from '../core/units.ts';
import type { Catalog } from './catalog.ts';
import { linkHolder, moveHold, release } from './holds.ts';

export interface Link {
  path: string;
  volume: string;
  member: string;
  snapshotRef: string;
  snapshot: string;
  refreshedAt: number;
  scheduleS: number | null;
  minDelayS: number;
  maxDelayS: number;
  createdAt: number;
}

/** A row of `links`. */
interface LinkRow {
  path: string;
  volume: string;
  member: string;
  snapshot_ref: string;
  snapshot: string;
  refreshed_at: number;
  schedule_s: number | null;
  min_delay_s: number;
  max_delay_s: number;
  created_at: number;
}

// Settings stored out of bounds by an older ferry are read as the nearest value within them (the
// link's next `config apply` or re-creation writes sound ones); numbers are read within JavaScript's
// safe integers, which node:sqlite requires.
const toLink = (r: LinkRow): Link => {
  const { settings } = storedScheduleSettings({ scheduleS: r.schedule_s, minDelayS: r.min_delay_s, maxDelayS: r.max_delay_s });
  return {
    path: r.path, volume: r.volume, member: r.member, snapshotRef: r.snapshot_ref, snapshot: r.snapshot, refreshedAt: r.refreshed_at,
    scheduleS: settings.scheduleS, minDelayS: settings.minDelayS, maxDelayS: settings.maxDelayS, createdAt: r.created_at,
  };
};
const LINK_COLUMNS = ['path', 'volume', 'member', 'snapshot_ref', 'snapshot', ...['refreshed_at', 'schedule_s', 'min_delay_s', 'max_delay_s', 'created_at'].map(safeIntColumn)].join(', ');

/** Every link (of one volume, when given), by path. */
export function listLinks(cat: Catalog, volume?: string): Link[] {
  const rows = volume === undefined
    ? cat.db.all<LinkRow>(`SELECT ${LINK_COLUMNS} FROM links ORDER BY path`)
    : cat.db.all<LinkRow>(`SELECT ${LINK_COLUMNS} FROM links WHERE volume = ? ORDER BY path`, volume);
  return rows.map(toLink);
}

export function findLink(cat: Catalog, path: string): Link | undefined {
  const r = cat.db.get<LinkRow>(`SELECT ${LINK_COLUMNS} FROM links WHERE path = ?`, path);
  return r ? toLink(r) : undefined;
}

/** Whether a link lies below `path`, or `path` below a link (not the link at `path` itself). */
export function linkNests(cat: Catalog, path: string): boolean {
  return cat.db.get("SELECT 1 FROM links WHERE ? LIKE path || '/%' OR path LIKE ? || '/%'", path, path) !== undefined;
}

/** A new link showing `snapshot`, which it holds from now on (in the caller's transaction, if any). */
export function insertLink(cat: Catalog, l: Omit<Link, 'refreshedAt' | 'createdAt'>): void {
  const now = cat.now();
  cat.tx(() => {
    cat.db.run(
      'INSERT INTO links (path, volume, member, snapshot_ref, snapshot, refreshed_at, schedule_s, min_delay_s, max_delay_s, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      l.path, l.volume, l.member, l.snapshotRef, l.snapshot, now, l.scheduleS, l.minDelayS, l.maxDelayS, now,
    );
    // The snapshot a link shows is held: retention must not take it from under the copy.
    moveHold(cat, linkHolder(l.path), l.snapshot);
  });
}

/** The link shows `snapshot` now (named by `ref`), refreshed at `at`: its hold moves with it. */
export function setLinkSnapshot(cat: Catalog, path: string, snapshot: string, ref: string, at: number): void {
  cat.tx(() => {
    cat.db.run('UPDATE links SET snapshot = ?, snapshot_ref = ?, refreshed_at = ? WHERE path = ?', snapshot, ref, at, path);
    moveHold(cat, linkHolder(path), snapshot);
  });
}

export function setLinkSettings(cat: Catalog, path: string, s: { snapshotRef: string; scheduleS: number | null; minDelayS: number; maxDelayS: number }): void {
  cat.db.run('UPDATE links SET snapshot_ref = ?, schedule_s = ?, min_delay_s = ?, max_delay_s = ? WHERE path = ?', s.snapshotRef, s.scheduleS, s.minDelayS, s.maxDelayS, path);
}

/** The link goes, and the hold on what it showed. */
export function deleteLink(cat: Catalog, path: string): void {
  cat.tx(() => {
    release(cat, linkHolder(path));
    cat.db.run('DELETE FROM links WHERE path = ?', path);
  });
}
