// Helpers for the fault-injection tests: two real sites (source `a`,
// destination `b`), each a home in one temp dir; `ferry serve` daemons started
// as child processes (so they can be SIGKILLed) and restarted; a TcpProxy
// between the source and the destination's peer port (the source is paired
// with the proxy's URL, so every replication byte crosses it); random data;
// and direct reads of a site's catalog (node:sqlite, read-only) for what the
// CLI does not print: stored bytes, and the secondary's apply journal.
//
// Daemons, catalog peeks and waits come from the harness (test/harness/); the
// pair with its proxy is this file's own.
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { runFerry, tempDir, type CliResult } from '../helpers.ts';
import { exited, startDaemon as harnessStartDaemon, withCatalog } from './index.ts';
import { TcpProxy } from './tcp-proxy.ts';

export { storeTotals } from './index.ts';

export interface FaultSite {
  name: string;
  home: string;
  id: string;
  daemon?: ChildProcess;
  /** peer port of the running daemon */
  port?: number;
  /** stderr of the daemons started so far, for failure messages */
  log: string[];
}

export interface Pair {
  dir: string;
  a: FaultSite;
  b: FaultSite;
  /** between a and b's peer port */
  proxy: TcpProxy;
  /** a's data: the one member `data` of volume `vol` */
  data: string;
  env: Record<string, string>;
  ferry(site: FaultSite, args: string[], opts?: { env?: Record<string, string>; timeoutMs?: number }): Promise<CliResult>;
  /** ferry --json, asserting exit 0 */
  json(site: FaultSite, args: string[]): Promise<any>;
  /** b's replica of member `data` */
  replica(): string;
  cleanup(): Promise<void>;
}

export async function initSite(dir: string, name: string): Promise<FaultSite> {
  const home = join(dir, name);
  const r = await runFerry(['init', '--name', name, '--json'], { home });
  assert.equal(r.code, 0, `init ${name}: ${r.stderr}`);
  return { name, home, id: r.json.id, log: [] };
}

/**
 * Start `ferry serve` for a site (port 0, tick 200 ms) and wait until it answers. The daemon does not
 * keep this file's process alive: a test that times out is abandoned, not unwound.
 */
export async function startDaemon(site: FaultSite, env: Record<string, string> = {}): Promise<void> {
  let out = '';
  site.log.push('--- daemon');
  const d = await harnessStartDaemon(site.home, {
    name: site.name,
    tick: 200,
    env,
    unref: true,
    timeoutMs: 30_000,
    onOutput: (t) => {
      out += t;
      site.log.push(t);
    },
    output: () => out,
  });
  site.daemon = d.proc;
  site.port = d.info.port;
}

/** Kill the site's daemon with a signal and wait until it is gone. */
export async function killDaemon(site: FaultSite, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  const d = site.daemon;
  if (!d) return;
  site.daemon = undefined;
  const gone = exited(d);
  d.kill(signal);
  await gone;
}

/** Stop the site's daemon the polite way (SIGTERM); it must be gone within `ms`. */
export async function stopDaemon(site: FaultSite, ms = 20_000): Promise<void> {
  const d = site.daemon;
  if (!d) return;
  site.daemon = undefined;
  if (d.exitCode !== null || d.signalCode !== null) return;
  const gone = new Promise<boolean>((r) => {
    const t = setTimeout(() => r(false), ms);
    d.once('exit', () => {
      clearTimeout(t);
      r(true);
    });
  });
  d.kill('SIGTERM');
  if (!(await gone)) {
    d.kill('SIGKILL');
    throw new Error(`the daemon of ${site.name} did not stop within ${ms / 1000} s of SIGTERM`);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Two paired sites: b's daemon runs (its peer port behind `proxy`); a runs no
 * daemon unless a test starts one. Volume `vol` at a, mirror vol@b created.
 * `beforeStart` runs once b is initialised, before its daemon starts (to put
 * part of b's home on a small filesystem, say).
 */
export async function makePair(opts: { env?: Record<string, string>; mirrorArgs?: string[]; beforeStart?: (b: FaultSite) => void } = {}): Promise<Pair> {
  const tmp = tempDir('ferry-faults-');
  const env = { ...(opts.env ?? {}) };
  const a = await initSite(tmp.path, 'a');
  const b = await initSite(tmp.path, 'b');
  opts.beforeStart?.(b);
  await startDaemon(b, env);
  const proxy = await TcpProxy.start(b.port!);
  const data = join(tmp.path, 'data');
  mkdirSync(data);
  const ferry: Pair['ferry'] = (site, args, o = {}) => runFerry(args, { home: site.home, env: { ...env, ...o.env }, timeoutMs: o.timeoutMs ?? 120_000 });
  const json: Pair['json'] = async (site, args) => {
    const r = await ferry(site, [...args, '--json']);
    assert.equal(r.code, 0, `ferry ${args.join(' ')} at ${site.name} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}\n${site.log.join('').slice(-4000)}`);
    return r.json;
  };
  const pair: Pair = {
    dir: tmp.path,
    a,
    b,
    proxy,
    data,
    env,
    ferry,
    json,
    replica: () => join(b.home, 'replicas', 'vol', 'data'),
    async cleanup() {
      await killDaemon(a);
      await killDaemon(b);
      await proxy.close();
      tmp.cleanup();
    },
  };
  // a reaches b only through the proxy; b knows a's id (a's URL is unused: b never calls a).
  await json(a, ['site', 'add', 'b', proxy.url, '--id', b.id]);
  await json(b, ['site', 'add', 'a', 'https://127.0.0.1:9', '--id', a.id]);
  await json(a, ['volume', 'create', 'vol', '--member', `data=${data}`]);
  await json(a, ['mirror', 'create', 'vol', '--to', 'b', ...(opts.mirrorArgs ?? [])]);
  return pair;
}

export { writeRandomFile } from '../helpers.ts';

/** `count` small random files in `dir` (created). */
export function writeSmallFiles(dir: string, count: number, prefix = 'f'): void {
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < count; i++) {
    const fd = openSync(join(dir, `${prefix}${String(i).padStart(4, '0')}`), 'w');
    writeSync(fd, randomBytes(100 + ((i * 37) % 900)));
    closeSync(fd);
  }
}


export interface SecondaryJournal {
  applied: string | null;
  applying: string | null;
  consistent: number;
}

export function secondaryJournal(home: string, volume = 'vol'): SecondaryJournal | undefined {
  return withCatalog(home, (db) => db.prepare('SELECT applied, applying, consistent FROM secondaries WHERE volume = ?').get(volume) as SecondaryJournal | undefined);
}

/** The mirror vol@b as `ferry status --json` at a shows it. */
export async function mirrorStatus(pair: Pair): Promise<any> {
  const st = await pair.json(pair.a, ['status']);
  return st.volumes.find((v: any) => v.name === 'vol').mirrors[0];
}

/** `ferry verify` passes at a site (every object of every snapshot reads back and matches its hash). */
export async function assertVerifies(pair: Pair, site: FaultSite): Promise<void> {
  const r = await pair.ferry(site, ['verify', '--json']);
  assert.equal(r.code, 0, `verify at ${site.name} failed (${r.code}): ${r.stdout}\n${r.stderr}`);
  assert.equal(r.json.damaged.length, 0);
  assert.ok(r.json.snapshots >= 1);
}

export function removeTree(p: string): void {
  rmSync(p, { recursive: true, force: true });
}
