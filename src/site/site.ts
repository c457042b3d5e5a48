// A site: its home directory, catalog, object store and identity. Opening a
// site for changes takes the site lock and runs store recovery first, so
// every command starts from a consistent catalog and store. The catalog
// (catalog/) holds every table of the site; code below site/ works with it
// and a store alone.
import { mkdirSync, existsSync, readdirSync, fsyncSync, openSync, closeSync } from 'node:fs';
import { FerryError, wrapIoError } from '../core/errors.ts';
import { systemClock, type Clock } from '../core/clock.ts';
import { PackStore } from '../store/pack-store.ts';
import type { PackFileIo } from '../store/pack.ts';
import { Catalog, CATALOG_FORMAT } from '../catalog/catalog.ts';
import type { EventRecord } from '../catalog/events.ts';
import { Replicas } from '../replication/receive/replicas.ts';
import { acquireSiteLock, type SiteLock } from './lock.ts';
import { createIdentity, saveIdentity, formatSiteId } from '../transport/identity.ts';
import { formatLogLine, formatNotice, type LevelName, type LogSink } from './log.ts';

export { FERRY_VERSION, defaultHome, sitePaths, type SitePaths } from './home.ts';
import { FERRY_VERSION, sitePaths, type SitePaths } from './home.ts';

export interface SiteOptions {
  clock?: Clock;
  /** open read-only: no lock, no recovery, no writes */
  readOnly?: boolean;
  /** the command taking the lock, shown to anyone who finds the site busy */
  command?: string;
  /** the pack files' writes and fsyncs (tests inject failures: a full disk, an fsync error) */
  storeIo?: PackFileIo;
}

export class Site {
  readonly paths: SitePaths;
  /** the site's tables: every module of catalog/ takes it */
  readonly catalog: Catalog;
  readonly store: PackStore;
  readonly id: string;
  readonly name: string;
  readonly clock: Clock;
  readonly readOnly: boolean;
  /** the receiving side's state: one per secondary volume, and the workers (replication/receive/replicas.ts) */
  readonly replicas: Replicas;
  #lock: SiteLock | undefined;

  private constructor(paths: SitePaths, catalog: Catalog, store: PackStore, lock: SiteLock | undefined) {
    this.paths = paths;
    this.catalog = catalog;
    this.store = store;
    this.#lock = lock;
    this.clock = catalog.clock;
    this.readOnly = catalog.readOnly;
    this.id = catalog.siteId;
    this.name = catalog.siteName;
    this.replicas = new Replicas(paths);
  }

  /** Create a new site at `home`: directories, identity, catalog. */
  static init(home: string, name: string, options: SiteOptions = {}): Site {
    const paths = sitePaths(home);
    const clock = options.clock ?? systemClock;
    if (existsSync(paths.catalog)) {
      throw new FerryError('HOME_EXISTS', `a site already exists at ${paths.home}; use it, or choose another --home`);
    }
    try {
      mkdirSync(paths.home, { recursive: true, mode: 0o700 });
      for (const d of [paths.store, paths.replicas]) mkdirSync(d, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw wrapIoError(err, `creating site home ${paths.home}`);
    }
    if (existsSync(paths.identity) && readdirSync(paths.identity).length > 0) {
      throw new FerryError('HOME_EXISTS', `${paths.identity} already holds an identity but there is no catalog; move it away or choose another --home`);
    }
    const ident = createIdentity(name);
    saveIdentity(paths.identity, ident);
    const catalog = Catalog.create(paths.catalog, { id: ident.id, name }, clock);
    fsyncDir(paths.home);
    catalog.event({ kind: 'site.init', outcome: 'ok', detail: { name, id: ident.id } });
    catalog.close();
    return Site.open(home, { ...options, command: 'init' });
  }

  static open(home: string, options: SiteOptions = {}): Site {
    const paths = sitePaths(home);
    if (!existsSync(paths.catalog)) {
      throw new FerryError('HOME_MISSING', `no ferry site at ${paths.home}: run \`ferry init --home ${paths.home}\`, or pass --home / set FERRY_HOME`);
    }
    const readOnly = options.readOnly ?? false;
    const lock = readOnly ? undefined : acquireSiteLock(paths.lock, options.command ?? 'ferry');
    let catalog: Catalog | undefined;
    try {
      catalog = Catalog.open(paths.catalog, { readOnly, clock: options.clock ?? systemClock });
      const store = new PackStore({ db: catalog.db, dir: paths.store, io: options.storeIo });
      if (!readOnly) store.recover();
      return new Site(paths, catalog, store, lock);
    } catch (err) {
      catalog?.close();
      lock?.release();
      throw err;
    }
  }

  #logSink: LogSink | undefined;

  /** Where event log lines go (the daemon sets its stdout); none by default. */
  get logSink(): LogSink | undefined {
    return this.#logSink;
  }

  set logSink(sink: LogSink | undefined) {
    this.#logSink = sink;
    this.catalog.onEvent = sink ? (at, e, id) => sink.write(formatLogLine(this.name, at, e, Boolean(sink.isTTY), id) + '\n') : undefined;
  }

  /**
   * A line of the daemon's own in the log (listening, stopping): not an event of the catalog, so
   * `ferry events` does not show it. JSON like the events' lines; a terminal gets `msg` alone.
   */
  notice(level: LevelName, notice: string, msg: string, details: Record<string, unknown> = {}): void {
    const sink = this.#logSink;
    if (!sink) return;
    sink.write(sink.isTTY ? `${msg}\n` : formatNotice(this.name, this.clock.now(), level, notice, msg, details) + '\n');
  }

  /** Record an event in the catalog (and the log, when the daemon set one). */
  event(e: EventRecord): void {
    this.catalog.event(e);
  }

  info() {
    const stats = this.store.stats();
    return {
      name: this.name,
      id: this.id,
      idFormatted: formatSiteId(this.id),
      home: this.paths.home,
      versions: { ferry: FERRY_VERSION, catalogFormat: CATALOG_FORMAT, node: process.versions.node },
      store: stats,
    };
  }

  #writers = 0;
  #whenIdle: Array<() => void> = [];
  #closed = false;

  /**
   * A capture or an incoming transfer is about to write objects that no
   * snapshot names yet; garbage collection waits until every such writer has
   * called the returned function (idempotent), or it would collect them.
   */
  beginWrite(): () => void {
    this.#writers++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (--this.#writers > 0 || this.#whenIdle.length === 0) return;
      const fns = this.#whenIdle.splice(0);
      setImmediate(() => {
        if (this.#closed) return;
        for (const fn of fns) fn();
      });
    };
  }

  /** How many writers (see beginWrite) are in progress. */
  get writers(): number {
    return this.#writers;
  }

  /** Run `fn` once no writer is in progress (soon after the last one ends); not at all if the site closes first. */
  whenIdle(fn: () => void): void {
    this.#whenIdle.push(fn);
  }

  close(): void {
    this.#closed = true;
    try {
      this.catalog.close();
    } finally {
      this.#lock?.release();
      this.#lock = undefined;
    }
  }
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
