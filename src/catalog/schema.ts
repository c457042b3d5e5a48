// The catalog's schema: one SQLite database (WAL) holding volumes, members,
// snapshots, holds, the stat cache, the event log, and (through the store's
// schema) the object index. This module owns the tables, their format
// version, and the columns and tables added in place since; the queries are
// in one module per table beside it (catalog.ts opens and creates).
import { existsSync } from 'node:fs';
import { FerryError } from '../core/errors.ts';
import { Sqlite } from '../core/sqlite.ts';
import { LOST_PACKS_SQL, STORE_SCHEMA_SQL } from '../store/schema.ts';
import { catchUpCounters } from './counters.ts';

export const CATALOG_FORMAT = 1;

const SCHEMA_SQL = `
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE volumes (
  name       TEXT PRIMARY KEY,
  role       TEXT NOT NULL DEFAULT 'standalone' CHECK (role IN ('primary', 'secondary', 'standalone')),
  created_at INTEGER NOT NULL,
  hooks      TEXT NOT NULL DEFAULT '{}',
  retention  TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE members (
  volume   TEXT NOT NULL REFERENCES volumes(name) ON DELETE CASCADE,
  position INTEGER NOT NULL,
  name     TEXT NOT NULL,
  kind     TEXT NOT NULL CHECK (kind IN ('tree', 'image')),
  path     TEXT NOT NULL UNIQUE,
  PRIMARY KEY (volume, name)
);
CREATE TABLE snapshots (
  id         TEXT PRIMARY KEY,
  volume     TEXT NOT NULL REFERENCES volumes(name),
  name       TEXT,
  time       INTEGER NOT NULL,
  origin     TEXT NOT NULL,
  parent     TEXT,
  manifest   TEXT NOT NULL,
  stats      TEXT NOT NULL DEFAULT '{}',
  created_at INTEGER NOT NULL,
  relation   TEXT,
  origin_seq INTEGER,
  UNIQUE (volume, name)
);
CREATE INDEX snapshots_by_volume ON snapshots(volume, id);
CREATE TABLE holds (
  snapshot   TEXT NOT NULL REFERENCES snapshots(id),
  holder     TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (snapshot, holder)
);
CREATE TABLE stat_cache (
  volume   TEXT NOT NULL,
  member   TEXT NOT NULL,
  snapshot TEXT NOT NULL,
  dir      BLOB NOT NULL,
  data     BLOB NOT NULL,
  PRIMARY KEY (volume, member, snapshot, dir)
) WITHOUT ROWID;
CREATE TABLE peers (
  name       TEXT PRIMARY KEY,
  id         TEXT NOT NULL UNIQUE,
  url        TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
-- Source side: one row per mirror (a volume may have several).
CREATE TABLE mirrors (
  id            TEXT PRIMARY KEY,
  volume        TEXT NOT NULL REFERENCES volumes(name),
  peer          TEXT NOT NULL REFERENCES peers(name),
  remote_volume TEXT NOT NULL,
  schedule_s    INTEGER,
  min_delay_s   INTEGER NOT NULL DEFAULT 0,
  max_delay_s   INTEGER NOT NULL DEFAULT 3600,
  bandwidth     INTEGER,
  state         TEXT NOT NULL DEFAULT 'uninitialized',
  paused        INTEGER NOT NULL DEFAULT 0,
  base          TEXT,
  last_success_at INTEGER,
  last_attempt_at INTEGER,
  next_run_at   INTEGER,
  failures      INTEGER NOT NULL DEFAULT 0,
  last_error    TEXT,
  last_transfer TEXT,
  created_at    INTEGER NOT NULL,
  keep_snapshots INTEGER,
  UNIQUE (volume, peer)
);
-- Destination side: which peer feeds a secondary volume, and the replica's state.
CREATE TABLE secondaries (
  volume        TEXT PRIMARY KEY REFERENCES volumes(name),
  source_site   TEXT NOT NULL,
  source_volume TEXT NOT NULL,
  applied       TEXT,
  applying      TEXT,
  applying_from TEXT,
  consistent    INTEGER NOT NULL DEFAULT 1,
  state         TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'broken-off')),
  image_stats   TEXT NOT NULL DEFAULT '{}',
  updated_at    INTEGER NOT NULL,
  keep_snapshots INTEGER,
  siblings      TEXT,
  apply_error   TEXT,
  failover_notice TEXT,
  relation      TEXT
);
-- Links: writable copies of a snapshot at a stable path (test / pre-production copies).
CREATE TABLE links (
  path         TEXT PRIMARY KEY,
  volume       TEXT NOT NULL REFERENCES volumes(name),
  member       TEXT NOT NULL,
  snapshot_ref TEXT NOT NULL DEFAULT 'latest',
  snapshot     TEXT NOT NULL,
  refreshed_at INTEGER NOT NULL,
  schedule_s   INTEGER,
  min_delay_s  INTEGER NOT NULL DEFAULT 0,
  max_delay_s  INTEGER NOT NULL DEFAULT 86400,
  created_at   INTEGER NOT NULL
);
-- Peer snapshots at the primary: per mirror, where each stands (pending, transferring, present).
CREATE TABLE peer_snapshots (
  snapshot   TEXT NOT NULL REFERENCES snapshots(id),
  mirror     TEXT NOT NULL,
  state      TEXT NOT NULL CHECK (state IN ('pending', 'transferring', 'present')),
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (snapshot, mirror)
);
CREATE TABLE events (
  id      INTEGER PRIMARY KEY,
  at      INTEGER NOT NULL,
  kind    TEXT NOT NULL,
  volume  TEXT,
  outcome TEXT NOT NULL,
  detail  TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_by_time ON events(at);
`;

/** Create a new catalog database at `path` (which must not exist). */
export function createDatabase(path: string, site: { id: string; name: string; createdAt: number }): Sqlite {
  if (existsSync(path)) throw new FerryError('HOME_EXISTS', `a catalog already exists at ${path}`);
  const db = new Sqlite(path);
  try {
    configure(db);
    db.tx(() => {
      db.exec(SCHEMA_SQL);
      db.exec(STORE_SCHEMA_SQL);
      addInPlace(db);
      catchUpCounters(db);
      const put = (k: string, v: string) => db.run('INSERT INTO meta (key, value) VALUES (?, ?)', k, v);
      put('format', String(CATALOG_FORMAT));
      put('site_id', site.id);
      put('site_name', site.name);
      put('created_at', String(site.createdAt));
    });
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/** Open an existing catalog database, refusing one that is newer than this ferry or unreadable. */
export function openDatabase(path: string, options: { readOnly?: boolean } = {}): Sqlite {
  if (!existsSync(path)) throw new FerryError('HOME_MISSING', `no catalog at ${path}: run \`ferry init\` or pass --home`);
  let db: Sqlite;
  try {
    db = new Sqlite(path, options);
  } catch (err) {
    throw new FerryError('CATALOG_CORRUPT', `cannot open catalog ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    // Check what the file is before configuring (which would write to it): a
    // file that is not a ferry catalog, or a newer one, is left untouched.
    let row: { value: string } | undefined;
    try {
      row = db.get<{ value: string }>("SELECT value FROM meta WHERE key = 'format'");
    } catch (err) {
      throw new FerryError('CATALOG_CORRUPT', `catalog ${path} is not a ferry catalog or is damaged (${(err as Error).message}); restore it from a backup or re-create the site`, { cause: err });
    }
    const version = Number(row?.value);
    if (!Number.isInteger(version) || version < 1) throw new FerryError('CATALOG_CORRUPT', `catalog ${path} has no valid format version`);
    if (version > CATALOG_FORMAT) {
      throw new FerryError('FORMAT_VERSION', `catalog ${path} is format ${version}, this ferry reads up to ${CATALOG_FORMAT}: upgrade ferry`);
    }
    if (!options.readOnly) {
      configure(db);
      addColumns(db);
      db.exec(LOST_PACKS_SQL);
      addInPlace(db);
      // The metrics' running totals (counters.ts): created, and the history counted once, on the
      // first open after an upgrade; events an older ferry recorded since are counted now.
      catchUpCounters(db);
    }
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/**
 * Columns added after format 1 shipped: nullable, so a catalog without them reads the same (NULL)
 * and an older ferry reading a catalog with them ignores them. Added in place when a site is opened
 * for writing; readers of these columns treat a missing one as NULL.
 *   mirrors.keep_snapshots       how many replication snapshots the destination keeps (NULL: 3 with several secondaries, else 1)
 *   secondaries.keep_snapshots   the same, as the source last said it (hello)
 *   secondaries.siblings         the source's other secondaries of the volume, as it last said (JSON)
 *   secondaries.apply_error      why the apply in `applying` did not complete (JSON: code, message, at); NULL
 *                                while it runs or when it was cut by a crash
 *   secondaries.failover_notice  after a failover here, whether the old primary knows (dr/failover.ts,
 *                                FailoverNotice: pending until it acknowledged); NULL: nothing recorded
 *   secondaries.previous_source  the site (and its volume) this one followed before a migrate handed it
 *   secondaries.previous_source_volume   to the new primary: that site may ask for it back when the
 *                                migrate is rolled back (src/dr/migrate-accept.ts, acceptRepoint)
 *   mirrors.queued               the snapshot a failed attempt of this mirror took and did not deliver:
 *                                a scheduled retry within the period sends it instead of taking another
 *   mirrors.deltas               how the mirror sends changed chunks: 'always' or 'never' as deltas; NULL: auto, by
 *                                the link its transfers measured (replication/link-fit.ts)
 *   secondaries.relation         the relation this secondary is in with its source: a new id each time it starts
 *                                following one (bound by a hello, made a secondary by a failback or a migrate,
 *                                re-pointed, handed over, or sent a full sync); NULL for one that began before
 *                                the column (replication/receive/commit.ts, the replay check)
 *   snapshots.relation           at a secondary, the relation (secondaries.relation) whose commit recorded the
 *                                snapshot; NULL for every other snapshot and for those recorded before the column
 *   snapshots.origin_seq         at a secondary, the order in which the snapshot's origin took it, as the origin
 *                                said with its commit (its recorded order there: a rowid never reused); NULL
 *                                elsewhere and when the origin did not say (replication/receive/commit.ts)
 *   volumes.journal              0: the daemon's change journal does not watch the volume's members
 *                                (every capture and writes check walks in full); NULL or 1: it does
 */
const ADDED_COLUMNS: Array<[table: string, column: string, type: string]> = [
  ['mirrors', 'keep_snapshots', 'INTEGER'],
  ['secondaries', 'keep_snapshots', 'INTEGER'],
  ['secondaries', 'siblings', 'TEXT'],
  ['secondaries', 'apply_error', 'TEXT'],
  ['secondaries', 'failover_notice', 'TEXT'],
  ['secondaries', 'previous_source', 'TEXT'],
  ['secondaries', 'previous_source_volume', 'TEXT'],
  ['mirrors', 'queued', 'TEXT'],
  ['volumes', 'journal', 'INTEGER'],
  ['mirrors', 'deltas', 'TEXT'],
  ['secondaries', 'relation', 'TEXT'],
  ['snapshots', 'relation', 'TEXT'],
  ['snapshots', 'origin_seq', 'INTEGER'],
];

/**
 * Tables added after format 1 shipped, created in place when a site is opened for writing (an older
 * ferry ignores them; readers treat a missing one as empty).
 *   workflows       the DR workflow journal (src/dr/journal.ts): one row per failover, failback or
 *                   migrate, its plan and last completed step, so a rerun or the daemon at start
 *                   finishes or undoes it
 *   snapshot_gone   a snapshot no longer held here that a snapshot here names as its parent: its place
 *                   in the lineage, pointing to its nearest ancestor held here (catalog/snapshots.ts,
 *                   descendsFrom). Written when a snapshot is deleted, and at a secondary for a parent
 *                   it never received, as the source said (replication/receive/commit.ts); a row no
 *                   snapshot names goes an hour after it was written
 *   peer_deletions  at a primary, a peer snapshot deleted with --peer that a secondary has not yet
 *                   confirmed deleting (it was unreachable, or holds it as its base): one row per
 *                   (snapshot, mirror), retried until confirmed (src/site/peer-snapshots.ts); the
 *                   snapshot stays here, held `peer-delete`, until its last row goes
 *   stat_cache_rows, stat_cache_owner
 *                   the stat cache (catalog/stat-cache.ts): a row per (volume, member, directory or
 *                   page) with its encoded entries, committed (pending '') or written by a capture
 *                   not yet committed (pending: its key); the owner names the snapshot the committed
 *                   rows describe. They replace stat_cache_dirs and stat_cache_data (rows keyed by
 *                   snapshot, which every capture re-keyed), and those format 1's stat_cache: the
 *                   older tables stay, emptied at open (a cache: each file is read once more), so an
 *                   older ferry finds them and its lost-pack trigger still empties the new ones
 *   apply_in_place  at a secondary, the files the running apply patches in place, each journaled
 *                   before its first write (replication/in-place.ts, catalog/secondaries.ts): a cut
 *                   apply's half-patched file is then known as its own work, not someone's write
 *   apply_written   at a secondary, the files the running apply wrote (their stat and chunks, one
 *                   encoded row per directory and batch), put out of memory past a bound so that the
 *                   verification after an apply of a million files holds none of them in memory
 *                   (replication/receive/written-files.ts, catalog/secondaries.ts); emptied when an
 *                   apply starts or ends
 *   stage_written   at a secondary, the files the staging of a baseline wrote (stage.ts), one
 *                   encoded row per staged tree and directory, until the apply takes the tree into
 *                   place and hands them to its own record (apply_written): held out of memory for
 *                   the same reason; emptied when a staging starts or is cleared
 *   counters        the metrics' running totals, kept as events are recorded (counters.ts, which
 *                   creates it and counts the history it did not see)
 *   split_brains    another site primary of the same volume beside this one, as this site learned
 *                   it (catalog/split-brains.ts): one row per (volume, site), kept until the split is
 *                   resolved between the two, whatever becomes of the relation it was found through;
 *                   created from the failover notices that recorded one (secondaries.failover_notice
 *                   splitBrainWith) on the first open that creates it
 */
const ADDED_TABLES_SQL = `
CREATE TABLE IF NOT EXISTS workflows (
  id         TEXT PRIMARY KEY,
  kind       TEXT NOT NULL,
  volume     TEXT NOT NULL,
  step       TEXT NOT NULL,
  state      TEXT NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done', 'rolled-back')),
  plan       TEXT NOT NULL DEFAULT '{}',
  error      TEXT,
  started_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS workflows_running ON workflows(volume) WHERE state = 'running';
CREATE TABLE IF NOT EXISTS snapshot_gone (
  id      TEXT PRIMARY KEY,
  volume  TEXT NOT NULL,
  parent  TEXT,
  gone_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshot_gone_by_parent ON snapshot_gone(parent);
CREATE INDEX IF NOT EXISTS snapshots_by_parent ON snapshots(parent);
CREATE TABLE IF NOT EXISTS peer_deletions (
  snapshot   TEXT NOT NULL,
  mirror     TEXT NOT NULL,
  volume     TEXT NOT NULL,
  failures   INTEGER NOT NULL DEFAULT 0,
  next_at    INTEGER NOT NULL DEFAULT 0,
  last_error TEXT,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (snapshot, mirror)
);
CREATE TABLE IF NOT EXISTS stat_cache_data (
  id   INTEGER PRIMARY KEY AUTOINCREMENT,
  data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS stat_cache_dirs (
  volume   TEXT NOT NULL,
  member   TEXT NOT NULL,
  snapshot TEXT NOT NULL,
  dir      BLOB NOT NULL,
  blob     INTEGER NOT NULL,
  PRIMARY KEY (volume, member, snapshot, dir)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS stat_cache_dirs_by_blob ON stat_cache_dirs(blob);
CREATE TABLE IF NOT EXISTS stat_cache_rows (
  id      INTEGER PRIMARY KEY,
  volume  TEXT NOT NULL,
  pending TEXT NOT NULL,
  member  TEXT NOT NULL,
  dir     BLOB NOT NULL,
  data    BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS stat_cache_rows_key ON stat_cache_rows(volume, pending, member, dir);
CREATE TABLE IF NOT EXISTS stat_cache_owner (
  volume   TEXT PRIMARY KEY,
  snapshot TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS split_brains (
  volume        TEXT NOT NULL,
  site          TEXT NOT NULL,
  remote_volume TEXT NOT NULL,
  old_primary   TEXT,
  found_at      INTEGER NOT NULL,
  PRIMARY KEY (volume, site)
);
CREATE TABLE IF NOT EXISTS apply_written (
  id     INTEGER PRIMARY KEY,
  volume TEXT NOT NULL,
  member TEXT NOT NULL,
  dir    BLOB NOT NULL,
  data   BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS apply_written_dir ON apply_written(volume, member, dir);
CREATE TABLE IF NOT EXISTS stage_written (
  id     INTEGER PRIMARY KEY,
  volume TEXT NOT NULL,
  tree   TEXT NOT NULL,
  dir    BLOB NOT NULL,
  data   BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS stage_written_tree ON stage_written(volume, tree);
CREATE TABLE IF NOT EXISTS apply_in_place (
  volume TEXT NOT NULL,
  member TEXT NOT NULL,
  path   BLOB NOT NULL,
  record TEXT NOT NULL,
  PRIMARY KEY (volume, member, path)
) WITHOUT ROWID;
`;

/**
 * A pack found lost (store/schema.ts lost_packs) makes every stat-cache entry suspect: a file
 * the cache says is unchanged would reuse chunk ids without reading the file, and those chunks
 * may be the lost ones. So the whole cache goes, and the next capture of every volume reads its
 * files again, which stores the lost chunks anew (the store counts them as absent). Added after
 * format 1 shipped, in place, like the tables above.
 */
const LOST_PACK_TRIGGER_SQL = `
CREATE TRIGGER lost_pack_drops_stat_cache AFTER INSERT ON lost_packs BEGIN DELETE FROM stat_cache; DELETE FROM stat_cache_dirs; DELETE FROM stat_cache_data; DELETE FROM stat_cache_rows; DELETE FROM stat_cache_owner; END;
`;

/**
 * The in-place additions that are more than CREATE ... IF NOT EXISTS: each is a write only when it
 * has something to do, so opening a site that has them (every CLI command) takes no write lock.
 */
function addInPlace(db: Sqlite): void {
  const hadSplitBrains = db.get("SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = 'split_brains'") !== undefined;
  db.exec(ADDED_TABLES_SQL);
  // A split brain recorded before the table (in a failover notice) is carried into it once.
  if (!hadSplitBrains) {
    db.exec(`INSERT OR IGNORE INTO split_brains (volume, site, remote_volume, old_primary, found_at)
      SELECT volume, json_extract(failover_notice, '$.splitBrainWith.site'), json_extract(failover_notice, '$.splitBrainWith.volume'), source_site, updated_at
      FROM secondaries WHERE json_extract(failover_notice, '$.splitBrainWith.site') IS NOT NULL AND json_extract(failover_notice, '$.splitBrainWith.volume') IS NOT NULL`);
  }
  // The trigger gained each layout's tables (it is re-created once per layout).
  const trigger = db.get<{ sql: string }>("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'lost_pack_drops_stat_cache'");
  if (!trigger?.sql.includes('stat_cache_owner')) {
    db.tx(() => {
      db.exec('DROP TRIGGER IF EXISTS lost_pack_drops_stat_cache');
      db.exec(LOST_PACK_TRIGGER_SQL);
    });
  }
  // Format 1's stat_cache, then stat_cache_dirs and stat_cache_data (rows keyed by snapshot), are
  // replaced by stat_cache_rows and stat_cache_owner: their rows go.
  if (db.get('SELECT 1 AS x FROM stat_cache LIMIT 1')) db.exec('DELETE FROM stat_cache');
  if (db.get('SELECT 1 AS x FROM stat_cache_dirs LIMIT 1') || db.get('SELECT 1 AS x FROM stat_cache_data LIMIT 1')) db.tx(() => db.exec('DELETE FROM stat_cache_dirs; DELETE FROM stat_cache_data'));
}

function addColumns(db: Sqlite): void {
  for (const [table, column, type] of ADDED_COLUMNS) {
    const cols = db.all<{ name: string }>(`PRAGMA table_info(${table})`);
    if (!cols.some((c) => c.name === column)) db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`);
  }
}

function configure(db: Sqlite): void {
  db.exec('PRAGMA journal_mode = WAL');
  // NORMAL in WAL mode is durable across process crashes; FULL also across power loss.
  db.exec('PRAGMA synchronous = FULL');
  db.exec('PRAGMA foreign_keys = ON');
}
