// The counters (`counters`): running totals the metrics show, kept as the
// events that count are recorded, in the same transaction (Catalog.event), so
// a scrape reads one small table whatever the age of the site, and never the
// event log. Owns the table, which events count towards what (countersOf), and
// the catch-up from the log: at the first open after an upgrade (the table is
// new) the whole history is counted once; after an older ferry wrote events
// without counting them, those (they follow the cursor `counted_through`).
// How the totals are exposed (help, types, exposition) is app/metrics.ts's.
import type { Sqlite } from '../core/sqlite.ts';
import type { Catalog } from './catalog.ts';
import type { EventRecord } from './events.ts';
import { setMetaRow } from './meta.ts';

/** Bucket bounds (seconds) of the duration histograms: a snapshot, a transfer or an apply takes from a fraction of a second to hours. */
export const DURATION_BUCKETS = [0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 10800, 43200] as const;

/** The histograms counted here, each with its bucket bounds (stored per bucket; the exposition adds them up). */
export const HISTOGRAMS: Record<string, readonly number[]> = {
  ferry_snapshot_duration_seconds: DURATION_BUCKETS,
  ferry_mirror_transfer_duration_seconds: DURATION_BUCKETS,
  ferry_replica_apply_duration_seconds: DURATION_BUCKETS,
};

/** The plain counters counted here (their help is in app/metrics.ts). */
export const COUNTERS = [
  'ferry_mirror_transferred_bytes_total',
  'ferry_mirror_transferred_objects_total',
  'ferry_mirror_update_failures_total',
  'ferry_snapshot_failures_total',
  'ferry_hook_failures_total',
] as const;

export type Labels = Record<string, string>;

/** One addition to one stored total: a counter's series, or a histogram's `_bucket` (with `le`), `_sum` or `_count`. */
export interface CounterAdd {
  name: string;
  labels: Labels;
  delta: number;
}

/** Meta key: the id of the last event counted (the catch-up at open starts after it). */
const CURSOR_KEY = 'counted_through';

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined;
}

/** The bucket bound an observation falls in: the smallest at or above it, else +Inf. */
export function bucketOf(bounds: readonly number[], v: number): string {
  for (const b of bounds) if (v <= b) return String(b);
  return '+Inf';
}

function observe(out: CounterAdd[], name: string, labels: Labels, v: number | undefined): void {
  if (v === undefined) return;
  out.push({ name: `${name}_bucket`, labels: { ...labels, le: bucketOf(HISTOGRAMS[name], v) }, delta: 1 });
  out.push({ name: `${name}_sum`, labels, delta: v });
  out.push({ name: `${name}_count`, labels, delta: 1 });
}

/** A mirror's labels, as its gauges have them: its id is VOLUME@PEER. */
function mirrorLabels(volume: string, mirror: unknown): Labels {
  const id = typeof mirror === 'string' ? mirror : '';
  return { volume, peer: id.startsWith(`${volume}@`) ? id.slice(volume.length + 1) : id };
}

/**
 * What one event adds to the totals (none for most kinds). Pure: the same function counts an event as
 * it is recorded and the history at the catch-up, so both agree.
 */
export function countersOf(e: EventRecord): CounterAdd[] {
  const d = e.detail ?? {};
  const volume = e.volume ?? '';
  const done = e.outcome === 'ok' || e.outcome === 'warning';
  const out: CounterAdd[] = [];
  if (e.kind === 'replication.update') {
    const l = mirrorLabels(volume, d.mirror);
    if (done) {
      out.push({ name: 'ferry_mirror_transferred_bytes_total', labels: l, delta: num(d.bytes) ?? 0 });
      out.push({ name: 'ferry_mirror_transferred_objects_total', labels: l, delta: num(d.objects) ?? 0 });
      observe(out, 'ferry_mirror_transfer_duration_seconds', l, num(d.seconds));
    } else if (e.outcome === 'failed') out.push({ name: 'ferry_mirror_update_failures_total', labels: l, delta: 1 });
  } else if (e.kind === 'snapshot.create') {
    if (done) observe(out, 'ferry_snapshot_duration_seconds', { volume }, num(d.seconds));
    else if (e.outcome === 'failed') out.push({ name: 'ferry_snapshot_failures_total', labels: { volume }, delta: 1 });
  } else if (e.kind === 'replica.apply') {
    // `seconds` holds the apply's phases (writes check, staging wait, apply, verify): its duration is their sum.
    const phases = d.seconds && typeof d.seconds === 'object' && !Array.isArray(d.seconds) ? Object.values(d.seconds as Record<string, unknown>).map(num) : [];
    if (done && phases.length && phases.every((p) => p !== undefined)) observe(out, 'ferry_replica_apply_duration_seconds', { volume }, (phases as number[]).reduce((a, b) => a + b, 0));
  } else if (e.kind.startsWith('hook.') && e.outcome === 'failed') {
    out.push({ name: 'ferry_hook_failures_total', labels: {}, delta: 1 });
  }
  return out;
}

/** Labels as stored: JSON with the keys sorted, so one series is one row. */
function labelKey(labels: Labels): string {
  return JSON.stringify(Object.fromEntries(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))));
}

function add(db: Sqlite, adds: CounterAdd[]): void {
  for (const a of adds) {
    db.run('INSERT INTO counters (name, labels, value) VALUES (?, ?, ?) ON CONFLICT (name, labels) DO UPDATE SET value = value + excluded.value', a.name, labelKey(a.labels), a.delta);
  }
}

function setCursor(db: Sqlite, id: number): void {
  setMetaRow(db, CURSOR_KEY, String(id));
}

/** Count one event just recorded with id `id` (Catalog.event, in the event's transaction). */
export function countEvent(db: Sqlite, id: number, e: EventRecord): void {
  add(db, countersOf(e));
  setCursor(db, id);
}

export const COUNTERS_TABLE_SQL = `
CREATE TABLE IF NOT EXISTS counters (
  name   TEXT NOT NULL,
  labels TEXT NOT NULL,
  value  REAL NOT NULL DEFAULT 0,
  PRIMARY KEY (name, labels)
) WITHOUT ROWID;
`;

/**
 * Create the table when it is missing and count the events it has not counted yet: all of them in a
 * catalog from before the table (an upgrade), those an older ferry recorded since otherwise. One
 * transaction: a crash leaves the catalog as it was, and the next open does it again. Returns how
 * many events were counted.
 */
export function catchUpCounters(db: Sqlite): number {
  return db.tx(() => {
    const had = db.get<{ n: number }>("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'counters'")!.n > 0;
    db.exec(COUNTERS_TABLE_SQL);
    const cursor = had ? Number(db.get<{ value: string }>('SELECT value FROM meta WHERE key = ?', CURSOR_KEY)?.value ?? 0) || 0 : 0;
    if (!had) setMetaRow(db, CURSOR_KEY, null);
    const last = db.get<{ id: number | null }>('SELECT max(id) AS id FROM events')!.id ?? 0;
    if (last <= cursor) return 0;
    let n = 0;
    // Read row by row (a site's log can hold millions of events), only the kinds that count.
    const rows = db.stmt("SELECT kind, volume, outcome, detail FROM events WHERE id > ? AND (kind IN ('replication.update', 'snapshot.create', 'replica.apply') OR kind LIKE 'hook.%') ORDER BY id").iterate(cursor);
    for (const r of rows as Iterable<{ kind: string; volume: string | null; outcome: EventRecord['outcome']; detail: string }>) {
      let detail: Record<string, unknown>;
      try {
        detail = JSON.parse(r.detail) as Record<string, unknown>;
      } catch {
        detail = {};
      }
      add(db, countersOf({ kind: r.kind, volume: r.volume, outcome: r.outcome, detail }));
      n++;
    }
    setCursor(db, last);
    return n;
  });
}

export interface CounterRow {
  name: string;
  labels: Labels;
  value: number;
}

/** Every stored total (one row per series: a few per mirror and volume, whatever the age of the site). */
export function listCounters(cat: Catalog): CounterRow[] {
  if (cat.readOnly && !cat.db.get("SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = 'counters'")) return [];
  return cat.db.all<{ name: string; labels: string; value: number }>('SELECT name, labels, value FROM counters ORDER BY name, labels').map((r) => ({ name: r.name, labels: JSON.parse(r.labels) as Labels, value: r.value }));
}
