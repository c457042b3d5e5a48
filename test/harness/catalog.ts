// Peeks at a site's catalog beside its daemon (node:sqlite, read-only unless
// asked): cheap enough to poll, no CLI process. For what the CLI does not
// print, or to wait on a state without spawning a process per poll. The
// layout read here is the catalog's (src/catalog/): a test that peeks is
// tied to it on purpose.
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';

/** Run `fn` on a site's catalog, opened beside its daemon (read-only unless `write`). */
export function withCatalog<T>(home: string, fn: (db: DatabaseSync) => T, o: { write?: boolean } = {}): T {
  const db = new DatabaseSync(join(home, 'catalog.db'), { readOnly: !o.write });
  try {
    db.exec('PRAGMA busy_timeout = 10000');
    return fn(db);
  } finally {
    db.close();
  }
}

/** A site, for the peeks: anything with a home. */
export interface HasHome {
  home: string;
}

/** A mirror's row, typed (see mirrorRow for the raw one). */
export interface MirrorState {
  state: string;
  paused: boolean;
  base: string | null;
  baseTime: number | null;
  lastSuccessAt: number | null;
  nextRunAt: number | null;
  failures: number;
  lastError: { code: string; message: string } | null;
}

/** The mirror of `volume` to `peer`, typed; undefined when there is none. */
export function mirrorState(site: HasHome, volume: string, peer: string): MirrorState | undefined {
  const r = mirrorWithBase(site, volume, peer) as any;
  if (!r) return undefined;
  return {
    state: r.state, paused: r.paused === 1, base: r.base, baseTime: r.base_time ?? null, lastSuccessAt: r.last_success_at, nextRunAt: r.next_run_at,
    failures: r.failures, lastError: r.last_error ? JSON.parse(r.last_error) : null,
  };
}

/** The catalog's mirror row as stored (snake_case columns). */
export function mirrorRow(site: HasHome, volume: string, peer: string): any {
  return withCatalog(site.home, (db) => db.prepare('SELECT * FROM mirrors WHERE volume = ? AND peer = ?').get(volume, peer));
}

/** The mirror's row with its base snapshot's capture time (`base_time`). */
export function mirrorWithBase(site: HasHome, volume: string, peer: string): { state: string; paused: number; base: string | null; base_time: number | null; schedule_s: number | null; last_success_at: number | null } | undefined {
  return withCatalog(site.home, (db) => db.prepare('SELECT m.*, s.time AS base_time FROM mirrors m LEFT JOIN snapshots s ON s.id = m.base WHERE m.volume = ? AND m.peer = ?').get(volume, peer)) as any;
}

export interface SecondaryState {
  applied: string | null;
  applying: string | null;
  consistent: boolean;
}

/** This site's secondary record of `volume` (undefined if it has none). */
export function secondaryState(site: HasHome, volume = 'vol'): SecondaryState | undefined {
  const r = withCatalog(site.home, (db) => db.prepare('SELECT applied, applying, consistent FROM secondaries WHERE volume = ?').get(volume)) as any;
  return r ? { applied: r.applied, applying: r.applying, consistent: r.consistent === 1 } : undefined;
}

/** The snapshots of a volume, oldest first. */
export function snapshotRows(site: HasHome, volume: string): Array<{ id: string; name: string | null; time: number }> {
  return withCatalog(site.home, (db) => db.prepare('SELECT id, name, time FROM snapshots WHERE volume = ? ORDER BY time, id').all(volume)) as any;
}

/** The member paths of a volume, in order (for a secondary: its replicas). */
export function memberPaths(site: HasHome, volume: string): string[] {
  return withCatalog(site.home, (db) => db.prepare('SELECT path FROM members WHERE volume = ? ORDER BY position').all(volume) as Array<{ path: string }>).map((r) => r.path);
}

/** Updates of `volume` that completed at `site` (the source) since `since` (ms): the snapshot each sent and its bytes on the wire. */
export function transfersSince(site: HasHome, volume: string, since: number): Array<{ snapshot: string; bytes: number; at: number }> {
  const rows = withCatalog(site.home, (db) => db.prepare("SELECT at, detail FROM events WHERE kind = 'replication.update' AND volume = ? AND outcome IN ('ok', 'warning') AND at >= ? ORDER BY id").all(volume, since)) as Array<{ at: number; detail: string }>;
  return rows.map((r) => {
    const d = JSON.parse(r.detail);
    return { snapshot: d.snapshot, bytes: d.bytes, at: r.at };
  });
}

/** Objects indexed in a site's store (durable: a pack is indexed only once fsynced). */
export function storeTotals(home: string): { objects: number; bytes: number } {
  return withCatalog(home, (db) => {
    const r = db.prepare('SELECT count(*) AS n, coalesce(sum(stored_length), 0) AS b FROM objects').get() as { n: number; b: number };
    return { objects: Number(r.n), bytes: Number(r.b) };
  });
}

/** Live packs in the index. */
export function indexedPacks(home: string): number {
  return withCatalog(home, (db) => (db.prepare("SELECT count(*) AS n FROM packs WHERE state = 'live'").get() as { n: number }).n);
}
