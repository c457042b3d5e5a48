// The one way the tests start a real `ferry serve`: for a home on loopback,
// resolved once it answers (daemon.json names this process, its socket exists,
// it printed that it listens), failing at once if it exits first; and stopped
// by a signal, resolved once it has exited. Every daemon started here is
// tracked, and a process 'exit' handler SIGKILLs any a crashed test left.
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FERRY_BIN } from '../helpers.ts';
import { giveUp, waitFor } from './wait.ts';

export interface DaemonJson {
  pid: number;
  socket: string;
  listen: string;
  port: number;
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

/** The daemons started here whose process has not exited yet. */
export function runningDaemons(): ChildProcess[] {
  return [...running];
}

export interface Daemon {
  proc: ChildProcess;
  info: DaemonJson;
}

/**
 * `ferry serve --home HOME --listen 127.0.0.1:PORT` (0: any port), resolved once
 * daemon.json names this process, its socket exists and it printed that it listens.
 * Its output goes to `onOutput`, its stdout alone also to `onStdout` when given. `bin`: another
 * ferry than ./bin/ferry (an installed package). `unref`: the daemon does not keep the test's
 * process alive (a test that times out is abandoned, not unwound; the 'exit' handler kills it).
 */
export async function startDaemon(
  home: string,
  o: { name: string; port?: number; tick?: number; env?: Record<string, string>; args?: string[]; timeoutMs?: number; onOutput: (s: string) => void; output: () => string; onStdout?: (s: string) => void; bin?: string; unref?: boolean },
): Promise<Daemon> {
  const p = spawn(o.bin ?? FERRY_BIN, ['serve', '--home', home, '--listen', `127.0.0.1:${o.port ?? 0}`, '--tick', String(o.tick ?? 1000), ...(o.args ?? [])], {
    env: { ...process.env, FERRY_NO_PROGRESS: '1', ...o.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(p);
  p.stdout!.on('data', (d) => {
    o.onStdout?.(String(d));
    o.onOutput(String(d));
  });
  p.stderr!.on('data', (d) => o.onOutput(String(d)));
  p.once('exit', () => running.delete(p));
  if (o.unref) {
    p.unref();
    for (const out of [p.stdout, p.stderr]) (out as unknown as { unref(): void }).unref();
  }
  const infoPath = join(home, 'daemon.json');
  try {
    const info = await waitFor<DaemonJson>(`[${o.name}] daemon.json`, () => {
      if (p.exitCode !== null || p.signalCode !== null) throw giveUp(`daemon exited (${p.exitCode ?? p.signalCode}): ${o.output()}`);
      let d: DaemonJson;
      try {
        d = JSON.parse(readFileSync(infoPath, 'utf8')) as DaemonJson; // absent, or half written: not yet
      } catch {
        return undefined;
      }
      return d.pid === p.pid && existsSync(d.socket) && /listening on https:/.test(o.output()) ? d : undefined;
    }, o.timeoutMs ?? 60_000, 50);
    return { proc: p, info };
  } catch (err) {
    // A start that failed (or never got ready) is over only once its process is gone: the next start
    // must not meet its lock, its port or its half-written daemon.json.
    const gone = exited(p);
    p.kill('SIGKILL');
    await gone;
    throw err;
  }
}

export function exited(p: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve({ code: p.exitCode, signal: p.signalCode });
  return new Promise((resolve) => p.once('exit', (code, signal) => resolve({ code, signal })));
}

/** Signal a daemon and wait for it to exit (SIGKILL after `graceMs`). */
export async function stopDaemon(p: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', graceMs = 30_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const done = exited(p);
  p.kill(signal);
  const timer = setTimeout(() => p.kill('SIGKILL'), graceMs);
  try {
    return await done;
  } finally {
    clearTimeout(timer);
  }
}

/** GET /metrics on the daemon's local socket in `home`. */
export function scrapeMetrics(home: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get({ socketPath: join(home, 'ferry.sock'), path: '/metrics' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

/** One sample of a scrape (`name{labels}`, labels in the order rendered); undefined when absent. */
export function metricValue(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) if (line.startsWith(series + ' ')) return Number(line.slice(series.length + 1));
  return undefined;
}
