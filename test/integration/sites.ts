// Real sites for the replication integration tests: each in its own temp
// home, driven by the real CLI, with real `ferry serve` daemons on loopback
// (port 0: the kernel picks one). Every daemon started here is tracked:
// `cleanupAll(sites)` (call it from an after hook) kills them and removes
// the homes, and a process 'exit' handler SIGKILLs any a crashed test left.
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { DatabaseSync } from 'node:sqlite';
import assert from 'node:assert/strict';
import { runFerry, tempDir, type CliResult } from '../helpers.ts';
import { startDaemon, stopDaemon, withCatalog, type DaemonJson } from './daemons.ts';
import { Site } from '../../src/site/site.ts';
import { createVolume, parseMemberSpec } from '../../src/site/volumes.ts';

export type { DaemonJson } from './daemons.ts';
export { waitFor } from './daemons.ts';

export interface RealSite {
  name: string;
  /** temp directory holding the home and the test's data */
  dir: string;
  home: string;
  id: string;
  /** set while a daemon runs (and kept after stop, so a restart can reuse the port) */
  port?: number;
  url?: string;
  proc?: ChildProcess;
  /** stdout + stderr of the current daemon */
  log: string;
  ferry(args: string[], opts?: { timeoutMs?: number }): Promise<CliResult>;
  /** ferry with --json, asserting the exit status; returns the parsed document */
  json(args: string[], expectCode?: number): Promise<any>;
  /** define a volume (members as for `ferry volume create --member`), in this process: the daemon must not run */
  volume(name: string, members: string[]): void;
  /** env: added to the daemon's environment; args: added to `ferry serve`; bin: run instead of ./bin/ferry (a wrapper that execs it) */
  start(opts?: { tick?: number; port?: number; env?: Record<string, string>; args?: string[]; bin?: string }): Promise<DaemonJson>;
  /** signal the daemon and wait for it to exit; returns its exit code and signal */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  status(): Promise<any>;
  /**
   * A mirror's row read straight from the catalog (read-only, beside the daemon): cheap enough to
   * poll. Progress of a transfer in flight lives in the daemon only: ask status() for it.
   */
  mirrorRow(volume: string, peer: string): MirrorRow;
  /** This site's secondary record of `volume`, from the catalog (undefined if it has none). */
  secondaryRow(volume: string): { applied: string | null; applying: string | null; consistent: boolean } | undefined;
  /** the status of this site's mirror of `volume` to `peer` */
  mirror(volume: string, peer: string): Promise<any>;
  cleanup(): Promise<void>;
}

export interface MirrorRow {
  state: string;
  paused: boolean;
  base: string | null;
  baseTime: number | null;
  lastSuccessAt: number | null;
  nextRunAt: number | null;
  failures: number;
  lastError: { code: string; message: string } | null;
}

export async function createSite(name: string): Promise<RealSite> {
  const tmp = tempDir(`ferry-rep-${name}-`);
  const home = join(tmp.path, 'home');
  const ferry: RealSite['ferry'] = (args, o = {}) => runFerry(args, { home, timeoutMs: o.timeoutMs ?? 60_000 });
  const json: RealSite['json'] = async (args, expectCode = 0) => {
    const r = await ferry([...args, '--json']);
    assert.equal(r.code, expectCode, `[${name}] ferry ${args.join(' ')} exited ${r.code}, expected ${expectCode}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    assert.ok(r.json !== undefined, `[${name}] ferry ${args.join(' ')} --json printed no JSON: ${r.stdout}`);
    return r.json;
  };
  // Setup runs in this process (each CLI process costs about half a second of CPU); what is under
  // test (serve, site, mirror, status) runs through the real CLI.
  const created = Site.init(home, name);
  const id = created.id;
  created.close();
  const site: RealSite = {
    name,
    dir: tmp.path,
    home,
    id,
    log: '',
    ferry,
    json,
    volume(vol, members) {
      assert.ok(!site.proc, 'stop the daemon before defining volumes in-process');
      const s = Site.open(home, { command: 'test setup' });
      try {
        createVolume(s, vol, { members: members.map(parseMemberSpec) });
      } finally {
        s.close();
      }
    },
    async start(o = {}) {
      assert.ok(!site.proc, `[${name}] daemon already running`);
      site.log = '';
      const d = await startDaemon(home, { name, port: o.port, tick: o.tick, env: o.env, args: o.args, bin: o.bin, timeoutMs: 30_000, onOutput: (t) => (site.log += t), output: () => site.log });
      site.proc = d.proc;
      site.port = d.info.port;
      site.url = `https://127.0.0.1:${d.info.port}`;
      return d.info;
    },
    async stop(signal = 'SIGTERM') {
      const p = site.proc;
      if (!p) return { code: 0, signal: null };
      try {
        return await stopDaemon(p, signal, 20_000);
      } finally {
        site.proc = undefined;
      }
    },
    async status() {
      return json(['status']);
    },
    mirrorRow(volume, peer) {
      const r = withCatalog(home, (db) =>
        db.prepare('SELECT m.*, s.time AS base_time FROM mirrors m LEFT JOIN snapshots s ON s.id = m.base WHERE m.volume = ? AND m.peer = ?').get(volume, peer),
      ) as any;
      assert.ok(r, `[${name}] no mirror of ${volume} to ${peer} in the catalog`);
      return {
        state: r.state, paused: r.paused === 1, base: r.base, baseTime: r.base_time ?? null, lastSuccessAt: r.last_success_at, nextRunAt: r.next_run_at,
        failures: r.failures, lastError: r.last_error ? JSON.parse(r.last_error) : null,
      };
    },
    secondaryRow(volume) {
      const r = withCatalog(home, (db) => db.prepare('SELECT applied, applying, consistent FROM secondaries WHERE volume = ?').get(volume)) as any;
      return r ? { applied: r.applied, applying: r.applying, consistent: r.consistent === 1 } : undefined;
    },
    async mirror(volume, peer) {
      const s = await json(['status']);
      const v = s.volumes.find((x: any) => x.name === volume);
      assert.ok(v, `[${name}] no volume ${volume} in status`);
      const m = v.mirrors.find((x: any) => x.peer === peer);
      assert.ok(m, `[${name}] no mirror of ${volume} to ${peer}`);
      return m;
    },
    async cleanup() {
      if (site.proc) await site.stop('SIGKILL');
      tmp.cleanup();
    },
  };
  return site;
}

/** Pair two running sites, each pinning the other's id and URL. */
export async function pair(a: RealSite, b: RealSite): Promise<void> {
  assert.ok(a.url && b.url, 'both daemons must run before pairing');
  await Promise.all([a.json(['site', 'add', b.name, b.url!, '--id', b.id]), b.json(['site', 'add', a.name, a.url!, '--id', a.id])]);
}

/** Stop every daemon and remove every temp dir (for after hooks). */
export async function cleanupAll(sites: RealSite[]): Promise<void> {
  await Promise.all(sites.map((s) => s.cleanup().catch(() => {})));
}

/** The error code of a failed --json command (from the JSON document or stderr). */
export function errorCode(r: CliResult): string | undefined {
  if (r.json?.error?.code) return r.json.error.code;
  return /\[([A-Z_]+)\]/.exec(r.stderr)?.[1];
}

export function assertRefused(r: CliResult, exit: number, code: string, message?: RegExp): void {
  assert.equal(r.code, exit, `expected exit ${exit} (${code}), got ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  assert.equal(errorCode(r), code, `expected ${code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  if (message) assert.match(r.json?.error?.message ?? r.stderr, message);
}
