// Helpers for the CLI integration tests: a fresh site in a temp dir, the CLI
// run with that home (optionally under a wrapper such as setpriv), random
// files, and a fingerprint of a site's visible state to check that a refused
// command changed nothing.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, statSync, writeSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { FERRY_BIN, runFerry, tempDir, type CliResult } from '../helpers.ts';
import { assertRefused, indexedPacks } from './index.ts';

export { indexedPacks };

export { FERRY_BIN };

/** Drop the capabilities that let root read any file: files with mode 000 become unreadable. */
export const NO_DAC = ['setpriv', '--inh-caps=-dac_override,-dac_read_search', '--bounding-set=-dac_override,-dac_read_search'];

export interface TestSite {
  dir: string;
  home: string;
  ferry(args: string[], opts?: { env?: Record<string, string>; timeoutMs?: number; prefix?: string[] }): Promise<CliResult>;
  /** ferry with --json, asserting the exit status; returns the parsed document */
  json(args: string[], expectCode?: number): Promise<any>;
  cleanup(): void;
}

export async function makeSite(name = 't', opts: { home?: string } = {}): Promise<TestSite> {
  const tmp = tempDir('ferry-it-');
  const home = opts.home ?? join(tmp.path, 'home');
  const ferry: TestSite['ferry'] = (args, o = {}) => (o.prefix ? runWrapped(o.prefix, args, home, o.env) : runFerry(args, { home, env: o.env, timeoutMs: o.timeoutMs }));
  const site: TestSite = {
    dir: tmp.path,
    home,
    ferry,
    async json(args, expectCode = 0) {
      const r = await ferry([...args, '--json']);
      assert.equal(r.code, expectCode, `ferry ${args.join(' ')} exited ${r.code}, expected ${expectCode}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
      assert.ok(r.json !== undefined, `ferry ${args.join(' ')} --json printed no JSON: ${r.stdout}`);
      return r.json;
    },
    cleanup: tmp.cleanup,
  };
  const r = await ferry(['init', '--name', name]);
  assert.equal(r.code, 0, `init failed: ${r.stderr}`);
  return site;
}

/** Run the CLI under a wrapper command (e.g. setpriv ...). */
export function runWrapped(prefix: string[], args: string[], home: string, env: Record<string, string> = {}): Promise<CliResult> {
  return runFerry(args, { home, env, prefix });
}

/** Spawn the CLI without waiting (for kill tests). */
export function spawnFerry(args: string[], home: string): ChildProcess {
  return spawn(FERRY_BIN, [...args, '--home', home], { env: { ...process.env, FERRY_NO_PROGRESS: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
}

export { writeRandomFile } from '../helpers.ts';

/** Many small files in `dir` (created), each a few hundred random bytes. */
export function writeSmallFiles(dir: string, count: number, prefix = 'f'): void {
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < count; i++) {
    const fd = openSync(join(dir, `${prefix}${String(i).padStart(4, '0')}`), 'w');
    writeSync(fd, randomBytes(100 + (i % 7) * 50));
    closeSync(fd);
  }
}

/**
 * What a refused command must not change: volumes, members, snapshots, holds,
 * the object index and the pack files. Read straight from the catalog (fast;
 * the event log is left out: refusals are recorded there).
 */
export function siteState(site: TestSite): unknown {
  const db = new DatabaseSync(join(site.home, 'catalog.db'), { readOnly: true });
  try {
    const q = (sql: string) => db.prepare(sql).all();
    return {
      volumes: q('SELECT * FROM volumes ORDER BY name'),
      members: q('SELECT * FROM members ORDER BY volume, position'),
      snapshots: q('SELECT id, volume, name, manifest FROM snapshots ORDER BY id'),
      holds: q('SELECT * FROM holds ORDER BY snapshot, holder'),
      objects: q('SELECT count(*) AS n, sum(raw_length) AS raw FROM objects'),
      packs: q('SELECT name, size, state FROM packs ORDER BY name'),
      packFiles: listPackFiles(site.home).map((p) => `${p}:${statSync(p).size}`),
    };
  } finally {
    db.close();
  }
}

/** Every file under <home>/store/packs. */
export function listPackFiles(home: string): string[] {
  const dir = join(home, 'store', 'packs');
  const out: string[] = [];
  if (!existsSync(dir)) return out;
  for (const d of readdirSync(dir).sort()) for (const f of readdirSync(join(dir, d)).sort()) out.push(join(dir, d, f));
  return out;
}

/** Assert an error result: exit status, error code (from --json or stderr), and that the message matches. */
export const assertError = assertRefused;

/** Poll until `path` exists or `done` settles; resolves with whether it appeared first. */
async function waitForFile(path: string, done: Promise<unknown>): Promise<boolean> {
  let finished = false;
  void done.then(() => (finished = true));
  while (!finished) {
    if (existsSync(path)) return true;
    await sleep(2);
  }
  return false;
}

export interface KillOutcome {
  killed: boolean;
  code: number | null;
}

/**
 * Spawn `ferry args` and SIGKILL it (if still running) `delayMs` after it
 * started, or with `afterLock`, `delayMs` after it took the site lock (so the
 * kill lands in the command's work, not in Node's start-up).
 */
export async function killAfter(site: TestSite, args: string[], delayMs: number, opts: { afterLock?: boolean } = {}): Promise<KillOutcome> {
  const child = spawnFerry(args, site.home);
  child.stdout!.resume();
  child.stderr!.resume();
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  if (opts.afterLock && !(await waitForFile(join(site.home, 'lock'), exited))) return { killed: false, code: (await exited).code };
  const race = await Promise.race([exited, sleep(delayMs).then(() => null)]);
  if (race) return { killed: false, code: race.code };
  child.kill('SIGKILL');
  const end = await exited;
  return { killed: end.signal === 'SIGKILL', code: end.code };
}

/** Run `ferry args` to the end; how long it took in all, and from taking the site lock to exiting. */
export async function timeCommand(site: TestSite, args: string[]): Promise<{ code: number | null; totalMs: number; lockedMs: number }> {
  const started = Date.now();
  const child = spawnFerry(args, site.home);
  child.stdout!.resume();
  child.stderr!.resume();
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const sawLock = await waitForFile(join(site.home, 'lock'), exited);
  const lockAt = Date.now();
  const code = await exited;
  const end = Date.now();
  return { code, totalMs: end - started, lockedMs: sawLock ? end - lockAt : 0 };
}

/**
 * What must hold after a kill, with no manual cleanup: a write command takes
 * the dead process's lock over (verify opens the site for writing and runs
 * recovery), verify passes, the catalog lists the volume's snapshots, and no
 * pack file is left that the index does not know. Returns the snapshot ids.
 */
export async function assertSiteSound(site: TestSite, volume: string): Promise<string[]> {
  const v = await site.ferry(['verify']);
  assert.equal(v.code, 0, `verify after a kill: ${v.stdout}${v.stderr}`);
  const list = await site.json(['snapshot', 'list', volume]);
  const files = listPackFiles(site.home);
  assert.equal(files.length, indexedPacks(site.home), `pack files on disk (${files.join(', ')}) do not match the live packs in the index`);
  assert.equal(existsSync(join(site.home, 'lock')), false, 'the site lock was left behind');
  return list.map((s: { id: string }) => s.id);
}
