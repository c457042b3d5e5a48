// A real site for the integration tests: a home in its own temp directory,
// set up in this process (Site.init, volumes: each CLI process costs a second
// or two of CPU on a loaded machine), with what is under test (serve, site,
// mirror, status, restore...) run through the real CLI and a real `ferry
// serve` daemon on loopback (daemon.ts). `cleanupSites(sites)` (from an after
// hook) kills the daemons and removes the homes.
import type { ChildProcess } from 'node:child_process';
import type { DatabaseSync } from 'node:sqlite';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { runFerry, tempDir, type CliResult } from '../helpers.ts';
import { startDaemon, stopDaemon, type DaemonJson } from './daemon.ts';
import { assertRefused } from './errors.ts';
import { memberPaths, mirrorState, secondaryState, snapshotRows, withCatalog, type MirrorState, type SecondaryState } from './catalog.ts';
import { Site } from '../../src/site/site.ts';
import { createVolume, parseMemberSpec, type Hooks } from '../../src/site/volumes.ts';

export interface TestSite {
  name: string;
  /** the site's temp directory: its home, its data, and the test's scratch space */
  dir: string;
  home: string;
  id: string;
  /** the daemon's port (kept after stop, so a restart reuses it: peers pinned the URL) */
  port?: number;
  url?: string;
  proc?: ChildProcess;
  /** stdout + stderr of the current daemon */
  log: string;
  /** run the CLI with this site's home; never throws */
  ferry(args: string[], opts?: { timeoutMs?: number; env?: Record<string, string> }): Promise<CliResult>;
  /** run with --json, assert the exit status, return the parsed document */
  json(args: string[], expectCode?: number): Promise<any>;
  /** run with --json and assert it failed with this exit status and error code (see assertRefused) */
  refused(args: string[], exit: number, code: string, message?: RegExp): Promise<CliResult>;
  /** define a volume in this process (members as for `ferry volume create --member`); the daemon must not run */
  defineVolume(volume: string, members: string[], hooks?: Hooks): void;
  /**
   * Start the daemon and wait until it answers. `port`: by default the earlier one, if any (0: any
   * port); `env`: added to this daemon's environment (test hooks); `args`: added to `ferry serve`;
   * `bin`: run instead of ./bin/ferry (a wrapper that execs it).
   */
  start(opts?: { tick?: number; port?: number; env?: Record<string, string>; args?: string[]; bin?: string }): Promise<DaemonJson>;
  /** signal the daemon and wait for it to exit; returns its exit code and signal */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  status(): Promise<any>;
  /** the status entry of a volume */
  volumeStatus(volume: string): Promise<any>;
  /** the status entry of this site's mirror of `volume` to `peer` (progress in flight lives here only) */
  mirror(volume: string, peer: string): Promise<any>;
  /** the mirror's catalog row, typed (cheap to poll); asserts there is one */
  mirrorRow(volume: string, peer: string): MirrorState;
  /** this site's secondary record of `volume`, from the catalog (undefined if it has none) */
  secondaryRow(volume: string): SecondaryState | undefined;
  /** the path of a volume's (single) member at this site: for a secondary, the replica */
  memberPath(volume: string): Promise<string>;
  /** `ferry snapshot list` */
  snapshots(volume: string): Promise<any[]>;
  /** the snapshots of a volume from the catalog, oldest first (cheap: no CLI process) */
  snapshotRows(volume: string): Array<{ id: string; name: string | null; time: number }>;
  /** restore a snapshot into a new directory under the site's dir and return it */
  restore(volume: string, snapshot: string, label: string): Promise<string>;
  /** the catalog, beside the daemon (read-only unless `write`) */
  catalog<T>(fn: (db: DatabaseSync) => T, opts?: { write?: boolean }): T;
  cleanup(): Promise<void>;
}

let counter = 0;

/** A new site named `name`. `prefix`: of its temp directory; `cliTimeoutMs`: for each CLI run (default 180 s). */
export async function createSite(name: string, o: { prefix?: string; cliTimeoutMs?: number } = {}): Promise<TestSite> {
  const tmp = tempDir(o.prefix ?? `ferry-it-${name}-`);
  const home = join(tmp.path, 'home');
  const ferry: TestSite['ferry'] = (args, f = {}) => runFerry(args, { home, env: f.env, timeoutMs: f.timeoutMs ?? o.cliTimeoutMs ?? 180_000 });
  const json: TestSite['json'] = async (args, expectCode = 0) => {
    const r = await ferry([...args, '--json']);
    assert.equal(r.code, expectCode, `[${name}] ferry ${args.join(' ')} exited ${r.code}, expected ${expectCode}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    assert.ok(r.json !== undefined, `[${name}] ferry ${args.join(' ')} --json printed no JSON: ${r.stdout}\nstderr: ${r.stderr}`);
    return r.json;
  };
  const created = Site.init(home, name);
  const id = created.id;
  created.close();
  const site: TestSite = {
    name,
    dir: tmp.path,
    home,
    id,
    log: '',
    ferry,
    json,
    async refused(args, exit, code, message) {
      const r = await ferry([...args, '--json']);
      assertRefused(r, exit, code, message, `[${name}] ferry ${args.join(' ')}`);
      return r;
    },
    defineVolume(volume, members, hooks) {
      assert.ok(!site.proc, 'stop the daemon before defining volumes in-process');
      const s = Site.open(home, { command: 'test setup' });
      try {
        createVolume(s, volume, { members: members.map(parseMemberSpec), hooks: hooks ?? {} });
      } finally {
        s.close();
      }
    },
    async start(s = {}) {
      assert.ok(!site.proc, `[${name}] daemon already running`);
      site.log = '';
      const d = await startDaemon(home, { name, port: s.port ?? site.port, tick: s.tick, env: s.env, args: s.args, bin: s.bin, onOutput: (t) => (site.log += t), output: () => site.log });
      site.proc = d.proc;
      site.port = d.info.port;
      site.url = `https://127.0.0.1:${d.info.port}`;
      return d.info;
    },
    async stop(signal = 'SIGTERM') {
      const p = site.proc;
      if (!p) return { code: 0, signal: null };
      try {
        return await stopDaemon(p, signal);
      } finally {
        site.proc = undefined;
      }
    },
    status: () => json(['status']),
    async volumeStatus(volume) {
      const s = await json(['status']);
      const v = s.volumes.find((x: any) => x.name === volume);
      assert.ok(v, `[${name}] no volume ${volume} in status`);
      return v;
    },
    async mirror(volume, peer) {
      const v = await site.volumeStatus(volume);
      const m = v.mirrors.find((x: any) => x.peer === peer);
      assert.ok(m, `[${name}] no mirror of ${volume} to ${peer}: ${JSON.stringify(v.mirrors)}`);
      return m;
    },
    mirrorRow(volume, peer) {
      const m = mirrorState(site, volume, peer);
      assert.ok(m, `[${name}] no mirror of ${volume} to ${peer} in the catalog`);
      return m;
    },
    secondaryRow: (volume) => secondaryState(site, volume),
    async memberPath(volume) {
      const paths = memberPaths(site, volume);
      assert.equal(paths.length, 1, `[${name}] volume ${volume} has ${paths.length} members`);
      return paths[0];
    },
    snapshots: (volume) => json(['snapshot', 'list', volume]),
    snapshotRows: (volume) => snapshotRows(site, volume),
    async restore(volume, snapshot, label) {
      const target = join(tmp.path, `restore-${label}-${++counter}`);
      await json(['restore', volume, '--snapshot', snapshot, '--target', target]);
      return target;
    },
    catalog: (fn, c = {}) => withCatalog(home, fn, c),
    async cleanup() {
      await site.stop('SIGKILL').catch(() => {});
      tmp.cleanup();
    },
  };
  return site;
}

/** Stop every daemon and remove every temp dir (for after hooks). */
export async function cleanupSites(sites: Array<{ cleanup(): Promise<void> }>): Promise<void> {
  await Promise.all(sites.map((s) => s.cleanup().catch(() => {})));
}

/**
 * Change settings of the file's `site:` section (e.g. `{ gcThreshold: '1MiB' }`; null removes one)
 * as an operator would: `config export` the site as it is, edit, `config apply` (a no-op for
 * everything else). Works with the daemon running or not. `dir`: where the edited file is written.
 */
export async function setSiteSettings(site: { dir: string; json(args: string[]): Promise<any> }, settings: Record<string, unknown>): Promise<void> {
  const doc = await site.json(['config', 'export']);
  for (const [k, v] of Object.entries(settings)) {
    if (v === null) delete doc.site[k];
    else doc.site[k] = v;
  }
  const file = join(site.dir, `site-settings-${++counter}.yaml`);
  writeFileSync(file, JSON.stringify(doc));
  await site.json(['config', 'apply', file]);
}
