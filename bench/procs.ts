// Processes for the benchmarks: commands timed through GNU time, the ferry
// and rsync daemons, /proc readings (CPU, peak RSS), and a registry of what
// must be undone however the run ends (processes stopped, mounts and loop
// devices released), on an exception, SIGINT or SIGTERM alike.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { lastLines, round2 } from './common.ts';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const GNU_TIME = '/usr/bin/time';
const MiB = 1024 * 1024;

/** The ferry launcher the benchmark measures (--ferry changes it). */
export const bins = { ferry: join(ROOT, 'bin', 'ferry') };

/** Every process this run started and has not seen exit, for emergency stops. */
const live = new Map<number, string>();

export function emergencyStop(): void {
  // GNU time does not pass SIGTERM on: stop what runs under it first.
  for (const [pid, what] of live) {
    if (what.startsWith('GNU time')) {
      for (const child of childrenOf(pid)) if (!live.has(child)) live.set(child, `the command under ${what}`);
    }
  }
  for (const [pid, what] of [...live].reverse()) {
    try {
      process.kill(pid, 'SIGTERM');
      console.error(`stopped ${what} (pid ${pid})`);
    } catch {
      // already gone
    }
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return existsSync(`/proc/${pid}/stat`) && !/^\d+ \(.*\) [ZX]/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));

let CLK_TCK = 0;

function clockTicks(): number {
  if (!CLK_TCK) CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim()) || 100;
  return CLK_TCK;
}

/** CPU seconds (user + system, own and reaped children) of a running process. */
export function cpuOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state): utime 14, stime 15, cutime 16, cstime 17.
  const ticks = Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
  return ticks / clockTicks();
}

/** VmHWM of a running process, in KiB. */
export function peakKiBOf(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** Resets a process's VmHWM to its current RSS (Linux >= 4.0); false if not allowed. */
export function resetPeak(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

export function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

export function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((done) => {
    const timer = setTimeout(() => done(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      done(true);
    });
  });
}

/** Waits until the processes use (almost) no CPU: two quiet 0.5 s samples in a row, at most `ms`. */
export async function waitQuiet(pids: number[], ms = 60_000): Promise<number> {
  const started = performance.now();
  let quiet = 0;
  let last = pids.map((p) => (alive(p) ? cpuOf(p) : 0));
  while (performance.now() - started < ms && quiet < 2) {
    await sleep(500);
    const now = pids.map((p) => (alive(p) ? cpuOf(p) : 0));
    quiet = now.every((v, i) => v - last[i] <= 0.02) ? quiet + 1 : 0;
    last = now;
  }
  return (performance.now() - started) / 1000;
}

export function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.on('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => done(port));
    });
  });
}

export async function waitForFile(path: string, ms: number): Promise<boolean> {
  const started = performance.now();
  while (!existsSync(path)) {
    if (performance.now() - started > ms) return false;
    await sleep(50);
  }
  return true;
}

// ---------------------------------------------------------------- commands

export interface Timed {
  ok: boolean;
  error?: string;
  wallSeconds: number;
  cpuSeconds: number;
  peakRssKiB: number;
  stdout: string;
}

/** Runs a command through GNU time (wall, user+sys CPU of it and its reaped children, max RSS). */
export async function timed(argv: string[], env: Record<string, string>, log: string, timeoutS: number): Promise<Timed> {
  return startTimed(argv, env, log, timeoutS).result;
}

/** A command started under GNU time; stdin and stdout may be pipes the caller connects (then stdout is not logged). */
export interface TimedProcess {
  child: ChildProcess;
  result: Promise<Timed>;
}

export function startTimed(argv: string[], env: Record<string, string>, log: string, timeoutS: number,
  pipes: { stdin?: boolean; stdout?: boolean } = {}): TimedProcess {
  const timeFile = `${log}.time`;
  const out = openSync(`${log}.out`, 'w');
  const err = openSync(`${log}.err`, 'w');
  let child: ChildProcess;
  try {
    child = spawn(GNU_TIME, ['-f', '%e %U %S %M', '-o', timeFile, ...argv], {
      env: { ...process.env, ...env },
      stdio: [pipes.stdin ? 'pipe' : 'ignore', pipes.stdout ? 'pipe' : out, err],
    });
  } finally {
    closeSync(out);
    closeSync(err);
  }
  const failed = (error: string): Timed => ({ ok: false, error, wallSeconds: NaN, cpuSeconds: NaN, peakRssKiB: NaN, stdout: '' });
  const spawnError = new Promise<Error>((done) => child.once('error', done));
  if (child.pid) live.set(child.pid, `GNU time (${argv.slice(0, 3).join(' ').replaceAll(bins.ferry, 'ferry')})`);
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  const result = (async (): Promise<Timed> => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((done) => {
      timer = setTimeout(() => done('timeout'), timeoutS * 1000);
    });
    const outcome = await Promise.race([exited, spawnError, timeout]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      for (const pid of childrenOf(child.pid!)) {
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          // gone
        }
      }
      await waitExit(child, 10_000);
      if (child.pid) live.delete(child.pid);
      return failed(`timed out after ${timeoutS} s`);
    }
    if (child.pid) live.delete(child.pid);
    if (outcome instanceof Error) return failed(outcome.message);
    if (outcome !== 0) return failed(`exit ${outcome}: ${lastLines(`${log}.err`)}`);
    const [wall, user, sys, rssKiB] = readFileSync(timeFile, 'utf8').trim().split('\n').at(-1)!.split(' ').map(Number);
    return { ok: true, wallSeconds: wall, cpuSeconds: round2(user + sys), peakRssKiB: rssKiB, stdout: pipes.stdout ? '' : readFileSync(`${log}.out`, 'utf8') };
  })();
  return { child, result };
}

/** Runs a setup command; throws with its error output if it fails. */
export function must(argv: string[], log: string, env: Record<string, string> = {}): string {
  const r = spawnSync(argv[0], argv.slice(1), { env: { ...process.env, ...env }, encoding: 'utf8', maxBuffer: 256 * MiB });
  writeFileSync(`${log}.out`, r.stdout ?? '');
  writeFileSync(`${log}.err`, r.stderr ?? '');
  if (r.error) throw new Error(`${argv.slice(0, 4).join(' ')}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`\`${argv.slice(0, 5).join(' ').replaceAll(bins.ferry, 'ferry')}\` failed (exit ${r.status}): ${lastLines(`${log}.err`)}`);
  return r.stdout;
}

export function firstLine(argv: string[]): string {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' });
  return r.status === 0 ? (r.stdout.split('\n').find((l) => l.trim()) ?? '').trim() : 'not found';
}

// ---------------------------------------------------------------- daemons

/** A `ferry serve` daemon on 127.0.0.1, its port and pid from <home>/daemon.json. */
export class FerryDaemon {
  readonly name: string;
  readonly home: string;
  private child: ChildProcess | null = null;
  pid = 0;
  port = 0;

  constructor(name: string, home: string) {
    this.name = name;
    this.home = home;
  }

  async start(log: string): Promise<void> {
    const fd = openSync(log, 'a');
    try {
      this.child = spawn(bins.ferry, ['serve', '--home', this.home, '--listen', '127.0.0.1:0'], { stdio: ['ignore', fd, fd], env: { ...process.env, FERRY_NO_PROGRESS: '1' } });
    } finally {
      closeSync(fd);
    }
    if (this.child.pid) live.set(this.child.pid, `ferry daemon ${this.name}`);
    const info = join(this.home, 'daemon.json');
    const started = performance.now();
    while (performance.now() - started < 60_000) {
      if (this.child.exitCode !== null) throw new Error(`ferry daemon ${this.name} exited (${this.child.exitCode}): ${lastLines(log)}`);
      if (existsSync(info)) {
        try {
          const d = JSON.parse(readFileSync(info, 'utf8')) as { pid: number; port: number };
          if (d.pid && d.port) {
            this.pid = d.pid;
            this.port = d.port;
            if (this.pid !== this.child.pid) live.set(this.pid, `ferry daemon ${this.name}`);
            return;
          }
        } catch {
          // being written
        }
      }
      await sleep(100);
    }
    throw new Error(`ferry daemon ${this.name} did not write ${info} within 60 s: ${lastLines(log)}`);
  }

  async stop(): Promise<void> {
    if (!this.child) return;
    const child = this.child;
    this.child = null;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      if (!(await waitExit(child, 30_000))) {
        console.error(`ferry daemon ${this.name} did not stop on SIGTERM within 30 s: SIGKILL`);
        child.kill('SIGKILL');
        await waitExit(child, 5_000);
      }
    }
    live.delete(child.pid!);
    live.delete(this.pid);
  }
}

/**
 * An `rsync --daemon --no-detach` run under GNU time, started fresh for each
 * run: GNU time's figures then cover the daemon and the per-connection
 * processes it forked (and reaped) for that run only.
 */
export class RsyncDaemon {
  private child: ChildProcess | null = null;
  private timeFile = '';
  rsyncPid = 0;
  port = 0;

  async start(config: string, pidFile: string, log: string): Promise<void> {
    this.port = await freePort();
    this.timeFile = `${log}.time`;
    const fd = openSync(`${log}.out`, 'a');
    try {
      this.child = spawn(GNU_TIME, ['-f', '%e %U %S %M', '-o', this.timeFile, 'rsync', '--daemon', '--no-detach', '--address', '127.0.0.1', '--port', String(this.port), '--config', config],
        { stdio: ['ignore', fd, fd] });
    } finally {
      closeSync(fd);
    }
    if (this.child.pid) live.set(this.child.pid, 'GNU time (rsync daemon)');
    if (!(await waitForFile(pidFile, 30_000))) throw new Error(`rsync daemon did not write ${pidFile}: ${lastLines(`${log}.out`)}`);
    let pid = NaN;
    for (let i = 0; i < 100 && !(pid > 0); i++) {
      pid = Number(readFileSync(pidFile, 'utf8').trim());
      if (!(pid > 0)) await sleep(20);
    }
    this.rsyncPid = pid;
    live.set(pid, 'rsync daemon');
    // Listening once a connection succeeds.
    for (let i = 0; ; i++) {
      const ok = await new Promise<boolean>((done) => {
        const socket = connect(this.port, '127.0.0.1');
        socket.once('connect', () => {
          socket.destroy();
          done(true);
        });
        socket.once('error', () => done(false));
      });
      if (ok) break;
      if (i > 300) throw new Error(`rsync daemon does not accept connections on ${this.port}`);
      await sleep(50);
    }
  }

  /** Stops the daemon once its per-connection processes are gone; returns its CPU and max RSS. */
  async stop(): Promise<{ cpuSeconds: number; peakRssKiB: number } | null> {
    if (!this.child) return null;
    const child = this.child;
    this.child = null;
    for (let i = 0; i < 600 && childrenOf(this.rsyncPid).length > 0; i++) await sleep(50);
    try {
      process.kill(this.rsyncPid, 'SIGTERM');
    } catch {
      // gone
    }
    if (!(await waitExit(child, 30_000))) {
      process.kill(this.rsyncPid, 'SIGKILL');
      await waitExit(child, 5_000);
    }
    live.delete(this.rsyncPid);
    live.delete(child.pid!);
    if (!existsSync(this.timeFile)) return null;
    const last = readFileSync(this.timeFile, 'utf8').trim().split('\n').at(-1)!.split(' ').map(Number);
    if (last.length < 4 || last.some((x) => Number.isNaN(x))) return null;
    return { cpuSeconds: round2(last[1] + last[2]), peakRssKiB: last[3] };
  }
}


// ---------------------------------------------------------------- cleanup

/** What must be undone however the run ends, newest first (synchronous: it also runs from a signal handler). */
const cleanups: Array<{ what: string; undo: () => void }> = [];

/** Registers an undo step (unmount, detach a loop device); returns a function that runs it now, once. */
export function onCleanup(what: string, undo: () => void): () => void {
  const entry = { what, undo };
  cleanups.push(entry);
  return () => {
    const i = cleanups.indexOf(entry);
    if (i < 0) return;
    cleanups.splice(i, 1);
    entry.undo();
  };
}

/** Stops every process this run started, then undoes every registered step; never throws. */
export function cleanupAll(): void {
  emergencyStop();
  while (cleanups.length > 0) {
    const { what, undo } = cleanups.pop()!;
    try {
      undo();
    } catch (err) {
      console.error(`cleanup: ${what} failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
}

/** SIGINT, SIGTERM and SIGHUP stop the run: processes stopped, mounts and loop devices released, exit 130. */
export function trapSignals(): void {
  const onSignal = (sig: NodeJS.Signals): void => {
    console.error(`\n${sig}: stopping what this run started and releasing its mounts`);
    cleanupAll();
    process.exit(130);
  };
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(sig, onSignal);
}
