// The event log (`events`): every state change records one, and nothing ever
// changes or deletes one. Owns the row and the queries over the log (the CLI's
// and peers' event history, the dashboard's recent events and lag history; the
// metrics' totals are counters.ts's, kept as events are recorded). Formatting a
// log line is the daemon's (site/log.ts).
import type { Sqlite } from '../core/sqlite.ts';
import type { Catalog } from './catalog.ts';
import { countEvent } from './counters.ts';

export interface EventRecord {
  kind: string;
  volume?: string | null;
  outcome: 'ok' | 'failed' | 'warning' | 'info';
  detail?: Record<string, unknown>;
}

/** One row of `events`, its detail as stored (JSON text). */
export interface StoredEvent {
  id: number;
  at: number;
  kind: string;
  volume: string | null;
  outcome: EventRecord['outcome'];
  detail: string;
}

/**
 * Record an event and what it adds to the metrics' totals (counters.ts), in one transaction (a
 * savepoint of the caller's, if any); returns its id.
 */
export function insertEvent(db: Sqlite, at: number, e: EventRecord): number {
  return db.tx(() => {
    const id = Number(db.run('INSERT INTO events (at, kind, volume, outcome, detail) VALUES (?, ?, ?, ?, ?)', at, e.kind, e.volume ?? null, e.outcome, JSON.stringify(e.detail ?? {})).lastInsertRowid);
    countEvent(db, id, e);
    return id;
  });
}

/**
 * Events in id order (the order they were recorded) after id `after` and at or after `since`, of one
 * volume and of kinds starting with `kind` when given; at most `limit`.
 */
export function eventsAfter(cat: Catalog, q: { after: number; since: number; volume: string | null; kind: string | null; limit: number }): StoredEvent[] {
  return cat.db.all<StoredEvent>(
    'SELECT id, at, kind, volume, outcome, detail FROM events WHERE id > ? AND at >= ? AND (? IS NULL OR volume = ?) AND (? IS NULL OR substr(kind, 1, length(?)) = ?) ORDER BY id LIMIT ?',
    q.after, q.since, q.volume, q.volume, q.kind, q.kind, q.kind, q.limit,
  );
}

/** The newest `limit` events (of one volume, when given), newest first. */
export function recentEvents(cat: Catalog, limit: number, volume: string | null): StoredEvent[] {
  return cat.db.all<StoredEvent>('SELECT id, at, kind, volume, outcome, detail FROM events WHERE (? IS NULL OR volume = ?) ORDER BY id DESC LIMIT ?', volume, volume, limit);
}

/**
 * The events that moved a mirror's base in [from, to] (`replication.update` ok or warning,
 * `mirror.base`), the newest `limit` of them, oldest first.
 */
export function baseMoves(cat: Catalog, mirror: string, from: number, to: number, limit: number): Array<Pick<StoredEvent, 'at' | 'kind' | 'detail'>> {
  return cat.db
    .all<Pick<StoredEvent, 'at' | 'kind' | 'detail'>>(
      `SELECT at, kind, detail FROM events
       WHERE at >= ? AND at <= ? AND kind IN ('replication.update', 'mirror.base') AND outcome IN ('ok', 'warning', 'info')
         AND json_extract(detail, '$.mirror') = ?
       ORDER BY at DESC, id DESC LIMIT ?`,
      from, to, mirror, limit,
    )
    .reverse();
}

// ---- The event history as a page of rows (site/log.ts queries it for the CLI and for paired peers).

export interface EventRow {
  id: number;
  at: number;
  kind: string;
  volume: string | null;
  outcome: EventRecord['outcome'];
  detail: Record<string, unknown>;
}

export interface EventQuery {
  volume?: string | null;
  /** only kinds starting with this */
  kind?: string | null;
  /** only events of the last this many seconds, by the answering site's clock */
  sinceSeconds?: number | null;
  /** only events after this id (a cursor: the last id seen) */
  after?: number;
  limit?: number;
}

export interface EventsPage {
  events: EventRow[];
  /** more events match after the last one returned: ask again with `after` */
  more: boolean;
}

/** The answer of a peer's events route. */
export interface PeerEventsAnswer extends EventsPage {
  site: string;
  id: string;
}
