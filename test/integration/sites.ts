// Real sites for the replication integration tests: each in its own temp
// home, driven by the real CLI, with real `ferry serve` daemons on loopback
// (port 0: the kernel picks one). Every daemon started here is tracked:
// `cleanupAll(sites)` (call it from an after hook) kills them and removes
// the homes, and a process 'exit' handler SIGKILLs any a crashed test left.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import assert from 'node:assert/strict';
import { FERRY_BIN, runFerry, tempDir, type CliResult } from '../helpers.ts';
import { Site } from '../../src/site/site.ts';
import { createVolume, parseMemberSpec } from '../../src/site/volumes.ts';

export interface DaemonJson {
  pid: number;
  socket: string;
  listen: string;
  port: number;
}

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
  start(opts?: { tick?: number; port?: number }): Promise<DaemonJson>;
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

function readCatalog<T>(home: string, fn: (db: DatabaseSync) => T): T {
  const db = new DatabaseSync(join(home, 'catalog.db'), { readOnly: true });
  try {
    db.exec('PRAGMA busy_timeout = 5000');
    return fn(db);
  } finally {
    db.close();
  }
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of running) {
    try {
      p.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
});

/** Poll `fn` until it returns a value (not undefined/false); an error thrown by `fn` fails at once. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 20_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

function exited(p: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve({ code: p.exitCode, signal: p.signalCode });
  return new Promise((resolve) => p.once('exit', (code, signal) => resolve({ code, signal })));
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
      const port = o.port ?? 0;
      const p = spawn(FERRY_BIN, ['serve', '--home', home, '--listen', `127.0.0.1:${port}`, '--tick', String(o.tick ?? 1000)], {
        env: { ...process.env, FERRY_NO_PROGRESS: '1' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      running.add(p);
      site.proc = p;
      site.log = '';
      p.stdout!.on('data', (d) => (site.log += d));
      p.stderr!.on('data', (d) => (site.log += d));
      p.once('exit', () => running.delete(p));
      const infoPath = join(home, 'daemon.json');
      const info = await waitFor<DaemonJson>(`[${name}] daemon.json`, () => {
        if (p.exitCode !== null || p.signalCode !== null) throw new Error(`daemon exited (${p.exitCode ?? p.signalCode}): ${site.log}`);
        let d: DaemonJson;
        try {
          d = JSON.parse(readFileSync(infoPath, 'utf8')) as DaemonJson; // absent, or half written: not yet
        } catch {
          return undefined;
        }
        return d.pid === p.pid && existsSync(d.socket) && /listening on https:/.test(site.log) ? d : undefined;
      }, 30_000, 50).catch((err) => {
        p.kill('SIGKILL');
        site.proc = undefined;
        throw err;
      });
      site.port = info.port;
      site.url = `https://127.0.0.1:${info.port}`;
      return info;
    },
    async stop(signal = 'SIGTERM') {
      const p = site.proc;
      if (!p) return { code: 0, signal: null };
      const done = exited(p);
      p.kill(signal);
      const timer = setTimeout(() => p.kill('SIGKILL'), 20_000);
      try {
        return await done;
      } finally {
        clearTimeout(timer);
        site.proc = undefined;
      }
    },
    async status() {
      return json(['status']);
    },
    mirrorRow(volume, peer) {
      const r = readCatalog(home, (db) =>
        db.prepare('SELECT m.*, s.time AS base_time FROM mirrors m LEFT JOIN snapshots s ON s.id = m.base WHERE m.volume = ? AND m.peer = ?').get(volume, peer),
      ) as any;
      assert.ok(r, `[${name}] no mirror of ${volume} to ${peer} in the catalog`);
      return {
        state: r.state, paused: r.paused === 1, base: r.base, baseTime: r.base_time ?? null, lastSuccessAt: r.last_success_at, nextRunAt: r.next_run_at,
        failures: r.failures, lastError: r.last_error ? JSON.parse(r.last_error) : null,
      };
    },
    secondaryRow(volume) {
      const r = readCatalog(home, (db) => db.prepare('SELECT applied, applying, consistent FROM secondaries WHERE volume = ?').get(volume)) as any;
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
