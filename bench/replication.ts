// The replication benchmark: ferry replicating between two daemons on
// loopback, side by side with rsync pushing to an rsync daemon, in one run,
// on the same generated data (bench/gen.ts) and change (bench/change.ts).
//
//   node bench/replication.ts [--scale 1] [--seed 1] [--work DIR] [--out bench/out]
//                             [--rsync default,whole-file] [--no-image] [--direct]
//                             [--ferry BIN] [--settle 3] [--timeout 3600]
//
// Sequence (every destination fresh, the data generated once, nothing deleted):
//   generate tree and image -> read the tree once (warm cache)
//   -> ferry: two sites, two daemons, paired through counting proxies
//   -> ferry mirror initialize data --wait; rsync -a --delete TREE/ (each variant)   "tree: initial"
//   -> standard change (change.ts)
//   -> ferry mirror update data --wait; rsync again (each variant)                   "tree: update"
//   -> ferry volume of the image: initialize; rsync --inplace --no-whole-file        "image: initial"
//   -> image change (1,000 x 64 KiB at scale 1)
//   -> ferry mirror update img --wait; rsync --inplace --no-whole-file again         "image: update"
// After every run the replica is compared with the source (diff -r and a
// metadata walk for trees, cmp for the image). Per run: wall time of the
// command (the ferry CLI with --wait returns once the replica is applied; rsync
// when it exits), CPU time and peak RSS of every process involved (the command,
// and each daemon), bytes on the wire (counting proxies on loopback) and the
// tools' own byte counts. Results: Markdown on stdout and in
// bench/out/replication-<timestamp>.md, every number in ...json.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { changeImage, type ChangeStats, changeTree, type ImageChangeStats } from './change.ts';
import { ensureFresh, generateImage, generateTree, type GenStats, type ImageStats, parseScale, parseSeed } from './gen.ts';
import { countDelta, CountingProxies, type ProxyCount } from './proxy.ts';
import { humanBytes, lastLines, round2, syncDisks, timestamp, warmCache } from './common.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
let FERRY = join(ROOT, 'bin', 'ferry');
const GNU_TIME = '/usr/bin/time';
const MiB = 1024 * 1024;

type CaseName = 'tree: initial' | 'tree: update' | 'image: initial' | 'image: update';

/** Targets (the issue): ferry wall / rsync wall, and wire bytes / changed bytes. */
const WALL_TARGETS: Partial<Record<CaseName, number>> = { 'tree: initial': 0.9, 'tree: update': 0.5, 'image: update': 0.5 };
const WIRE_TARGETS: Partial<Record<CaseName, number>> = { 'tree: update': 1.1, 'image: update': 1.5 };

/** rsync variants for the tree cases, each with its own destination (module). */
const RSYNC_VARIANTS: Record<string, { label: string; flags: string[]; module: string }> = {
  default: { label: 'rsync', flags: ['-a', '--delete'], module: 'tree' },
  'no-whole-file': { label: 'rsync --no-whole-file', flags: ['-a', '--delete', '--no-whole-file'], module: 'tree-nwf' },
  'whole-file': { label: 'rsync --whole-file', flags: ['-a', '--delete', '--whole-file'], module: 'tree-wf' },
};
const RSYNC_IMAGE = { label: 'rsync --inplace', flags: ['-a', '--inplace', '--no-whole-file'], module: 'image' };

// ---------------------------------------------------------------- processes

/** Every process this run started and has not seen exit, for emergency stops. */
const live = new Map<number, string>();

function emergencyStop(): void {
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

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return existsSync(`/proc/${pid}/stat`) && !/^\d+ \(.*\) [ZX]/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));

let CLK_TCK = 100;

/** CPU seconds (user + system, own and reaped children) of a running process. */
function cpuOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state): utime 14, stime 15, cutime 16, cstime 17.
  const ticks = Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
  return ticks / CLK_TCK;
}

/** VmHWM of a running process, in KiB. */
function peakKiBOf(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** Resets a process's VmHWM to its current RSS (Linux >= 4.0); false if not allowed. */
function resetPeak(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
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
async function waitQuiet(pids: number[], ms = 60_000): Promise<number> {
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

function freePort(): Promise<number> {
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

async function waitForFile(path: string, ms: number): Promise<boolean> {
  const started = performance.now();
  while (!existsSync(path)) {
    if (performance.now() - started > ms) return false;
    await sleep(50);
  }
  return true;
}

// ---------------------------------------------------------------- commands

interface Timed {
  ok: boolean;
  error?: string;
  wallSeconds: number;
  cpuSeconds: number;
  peakRssKiB: number;
  stdout: string;
}

/** Runs a command through GNU time (wall, user+sys CPU of it and its reaped children, max RSS). */
async function timed(argv: string[], env: Record<string, string>, log: string, timeoutS: number): Promise<Timed> {
  const timeFile = `${log}.time`;
  const out = openSync(`${log}.out`, 'w');
  const err = openSync(`${log}.err`, 'w');
  let child: ChildProcess;
  try {
    child = spawn(GNU_TIME, ['-f', '%e %U %S %M', '-o', timeFile, ...argv], { env: { ...process.env, ...env }, stdio: ['ignore', out, err] });
  } finally {
    closeSync(out);
    closeSync(err);
  }
  const failed = (error: string): Timed => ({ ok: false, error, wallSeconds: NaN, cpuSeconds: NaN, peakRssKiB: NaN, stdout: '' });
  const spawnError = new Promise<Error>((done) => child.once('error', done));
  if (child.pid) live.set(child.pid, `GNU time (${argv.slice(0, 3).join(' ').replaceAll(FERRY, 'ferry')})`);
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((done) => {
    timer = setTimeout(() => done('timeout'), timeoutS * 1000);
  });
  const outcome = await Promise.race([exited, spawnError, timeout]);
  clearTimeout(timer);
  if (child.pid) live.delete(child.pid);
  if (outcome === 'timeout') {
    for (const pid of childrenOf(child.pid!)) process.kill(pid, 'SIGTERM');
    await waitExit(child, 10_000);
    return failed(`timed out after ${timeoutS} s`);
  }
  if (outcome instanceof Error) return failed(outcome.message);
  if (outcome !== 0) return failed(`exit ${outcome}: ${lastLines(`${log}.err`)}`);
  const [wall, user, sys, rssKiB] = readFileSync(timeFile, 'utf8').trim().split('\n').at(-1)!.split(' ').map(Number);
  return { ok: true, wallSeconds: wall, cpuSeconds: round2(user + sys), peakRssKiB: rssKiB, stdout: readFileSync(`${log}.out`, 'utf8') };
}

/** Runs a setup command; throws with its error output if it fails. */
function must(argv: string[], log: string, env: Record<string, string> = {}): string {
  const r = spawnSync(argv[0], argv.slice(1), { env: { ...process.env, ...env }, encoding: 'utf8', maxBuffer: 256 * MiB });
  writeFileSync(`${log}.out`, r.stdout ?? '');
  writeFileSync(`${log}.err`, r.stderr ?? '');
  if (r.error) throw new Error(`${argv.slice(0, 4).join(' ')}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`\`${argv.slice(0, 5).join(' ').replaceAll(FERRY, 'ferry')}\` failed (exit ${r.status}): ${lastLines(`${log}.err`)}`);
  return r.stdout;
}

function firstLine(argv: string[]): string {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' });
  return r.status === 0 ? (r.stdout.split('\n').find((l) => l.trim()) ?? '').trim() : 'not found';
}

// ---------------------------------------------------------------- daemons

/** A `ferry serve` daemon on 127.0.0.1, its port and pid from <home>/daemon.json. */
class FerryDaemon {
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
      this.child = spawn(FERRY, ['serve', '--home', this.home, '--listen', '127.0.0.1:0'], { stdio: ['ignore', fd, fd], env: { ...process.env, FERRY_NO_PROGRESS: '1' } });
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
class RsyncDaemon {
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

// ---------------------------------------------------------------- verification

interface Verification {
  ok: boolean; // content identical
  detail: string;
  metadataDiffs: number;
  metadataExamples: string[];
  seconds: number;
}

/** diff -r for content, then a walk comparing type, mode, size, mtime (ms) and symlink targets. */
export function verifyTree(src: string, dst: string, log: string): Verification {
  const started = performance.now();
  const out = openSync(`${log}.diff`, 'w');
  let r;
  try {
    r = spawnSync('diff', ['-r', '--no-dereference', src, dst], { stdio: ['ignore', out, out] });
  } finally {
    closeSync(out);
  }
  const ok = r.status === 0;
  const detail = ok ? 'diff -r: identical' : `diff -r exit ${r.status}: ${readFileSync(`${log}.diff`, 'utf8').split('\n').slice(0, 3).join(' | ').slice(0, 300)}`;
  const examples: string[] = [];
  let diffs = 0;
  const note = (what: string): void => {
    diffs++;
    if (examples.length < 5) examples.push(what);
  };
  const visit = (rel: string): void => {
    for (const name of readdirSync(join(src, rel)).sort()) {
      const path = rel ? `${rel}/${name}` : name;
      const a = lstatSync(join(src, path));
      let b;
      try {
        b = lstatSync(join(dst, path));
      } catch {
        continue; // missing: diff -r says so
      }
      const type = (s: typeof a): string => (s.isDirectory() ? 'dir' : s.isSymbolicLink() ? 'symlink' : s.isFile() ? 'file' : 'other');
      if (type(a) !== type(b)) {
        note(`${path}: ${type(a)} vs ${type(b)}`);
        continue;
      }
      if ((a.mode & 0o7777) !== (b.mode & 0o7777)) note(`${path}: mode ${(a.mode & 0o7777).toString(8)} vs ${(b.mode & 0o7777).toString(8)}`);
      if (!a.isSymbolicLink() && Math.floor(a.mtimeMs) !== Math.floor(b.mtimeMs)) note(`${path}: mtime ${a.mtime.toISOString()} vs ${b.mtime.toISOString()}`);
      if (a.isFile() && a.size !== b.size) note(`${path}: size ${a.size} vs ${b.size}`);
      if (a.isSymbolicLink() && readlinkSync(join(src, path)) !== readlinkSync(join(dst, path))) note(`${path}: symlink target differs`);
      if (a.isDirectory()) visit(path);
    }
  };
  visit('');
  return { ok, detail, metadataDiffs: diffs, metadataExamples: examples, seconds: (performance.now() - started) / 1000 };
}

export function verifyImage(src: string, dst: string): Verification {
  const started = performance.now();
  const r = spawnSync('cmp', [src, dst], { encoding: 'utf8' });
  const ok = r.status === 0;
  let diffs = 0;
  const examples: string[] = [];
  if (existsSync(dst)) {
    const a = statSync(src);
    const b = statSync(dst);
    if (Math.floor(a.mtimeMs) !== Math.floor(b.mtimeMs)) {
      diffs++;
      examples.push(`mtime ${a.mtime.toISOString()} vs ${b.mtime.toISOString()}`);
    }
  }
  return { ok, detail: ok ? 'cmp: identical' : `cmp exit ${r.status}: ${(r.stdout + r.stderr).trim().slice(0, 300)}`, metadataDiffs: diffs, metadataExamples: examples, seconds: (performance.now() - started) / 1000 };
}

// ---------------------------------------------------------------- measurements

interface ProcessUsage {
  role: string;
  cpuSeconds: number;
  peakRssMiB: number;
  /** Over what the peak RSS is taken. */
  peakScope: string;
  /** ferry daemons: CPU used after the command returned, until the daemon was quiet (not in cpuSeconds). */
  cpuAfterExitSeconds?: number;
}

interface Row {
  tool: string;
  case: CaseName;
  command: string;
  ok: boolean;
  error?: string;
  wallSeconds?: number;
  cpuSeconds?: number;
  processes?: ProcessUsage[];
  /** Counted by the proxies: both directions, TCP payload. */
  wire?: ProxyCount & { total: number };
  /** The tool's own count: ferry's lastTransfer.bytes, rsync's total bytes sent + received. */
  toolBytes?: number;
  changedBytes: number;
  verify?: Verification;
  ferryTransfer?: { result: unknown; statusLastTransfer: unknown };
  rsyncStats?: RsyncStats;
  quietSeconds?: number;
}

interface RsyncStats {
  sent: number;
  received: number;
  literal: number;
  matched: number;
  transferredFileSize: number;
  filesTransferred: number;
  /** delta: matched data > 0; whole: changed files sent as literal data only. */
  mode: string;
}

export function parseRsyncStats(text: string): RsyncStats | undefined {
  const num = (label: string): number => {
    const m = new RegExp(`^${label}: ([\\d,]+)`, 'm').exec(text);
    return m ? Number(m[1].replaceAll(',', '')) : NaN;
  };
  const s = {
    sent: num('Total bytes sent'),
    received: num('Total bytes received'),
    literal: num('Literal data'),
    matched: num('Matched data'),
    transferredFileSize: num('Total transferred file size'),
    filesTransferred: num('Number of regular files transferred'),
    mode: '',
  };
  if (Number.isNaN(s.sent)) return undefined;
  s.mode = s.matched > 0 ? 'delta' : s.literal === 0 ? 'nothing sent' : 'literal only (whole files, or only new files)';
  return s;
}

const MiBOf = (kib: number): number => Math.round((kib / 1024) * 10) / 10;

interface Context {
  work: string;
  logs: string;
  timeoutS: number;
  proxies: CountingProxies | null;
  peakScope: string; // ferry daemons
  canResetPeak: boolean;
}

interface FerrySites {
  a: FerryDaemon;
  b: FerryDaemon;
  proxySlots: number[]; // a->b, b->a
}

function proxyTotal(ctx: Context, slots: number[]): ProxyCount {
  const sum = { up: 0, down: 0, connections: 0 };
  if (!ctx.proxies) return sum;
  for (const slot of slots) {
    const c = ctx.proxies.read(slot);
    sum.up += c.up;
    sum.down += c.down;
    sum.connections += c.connections;
  }
  return sum;
}

async function measureFerry(ctx: Context, sites: FerrySites, caseName: CaseName, args: string[], changedBytes: number,
  replica: () => string, source: string, kind: 'tree' | 'image'): Promise<Row> {
  const argv = [FERRY, ...args, '--home', sites.a.home, '--json'];
  const command = ['ferry', ...args].join(' ');
  const slug = `ferry-${caseName.replace(/[^a-z]+/g, '-')}`;
  syncDisks();
  const daemons = [sites.a, sites.b];
  for (const d of daemons) if (ctx.canResetPeak) resetPeak(d.pid);
  const cpuBefore = daemons.map((d) => cpuOf(d.pid));
  const wireBefore = proxyTotal(ctx, sites.proxySlots);
  const t = await timed(argv, { FERRY_NO_PROGRESS: '1' }, join(ctx.logs, slug), ctx.timeoutS);
  const wire = countDelta(proxyTotal(ctx, sites.proxySlots), wireBefore);
  const cpuAfter = daemons.map((d) => cpuOf(d.pid));
  const peaks = daemons.map((d) => peakKiBOf(d.pid));
  if (!t.ok) {
    await waitQuiet(daemons.map((d) => d.pid).filter(alive));
    return { tool: 'ferry', case: caseName, command, ok: false, error: t.error, changedBytes };
  }
  let result: { applied?: boolean; transfer?: { bytes: number } } = {};
  try {
    result = JSON.parse(t.stdout);
  } catch {
    return { tool: 'ferry', case: caseName, command, ok: false, error: `output is not JSON: ${t.stdout.slice(0, 200)}`, changedBytes };
  }
  if (result.applied !== true) return { tool: 'ferry', case: caseName, command, ok: false, error: `the replica was not applied: ${t.stdout.slice(0, 300)}`, changedBytes };
  // What `ferry status` reports for the mirror's last transfer.
  const volume = args[2];
  const status = JSON.parse(must([FERRY, 'status', '--json', '--home', sites.a.home], join(ctx.logs, `${slug}-status`))) as {
    volumes: Array<{ name: string; mirrors: Array<{ lastTransfer: { bytes: number } | null }> }>;
  };
  const lastTransfer = status.volumes.find((v) => v.name === volume)?.mirrors[0]?.lastTransfer ?? null;
  const processes: ProcessUsage[] = [
    { role: 'cli', cpuSeconds: t.cpuSeconds, peakRssMiB: MiBOf(t.peakRssKiB), peakScope: 'process' },
    { role: 'source daemon', cpuSeconds: round2(cpuAfter[0] - cpuBefore[0]), peakRssMiB: MiBOf(peaks[0]), peakScope: ctx.peakScope },
    { role: 'destination daemon', cpuSeconds: round2(cpuAfter[1] - cpuBefore[1]), peakRssMiB: MiBOf(peaks[1]), peakScope: ctx.peakScope },
  ];
  const row: Row = {
    tool: 'ferry',
    case: caseName,
    command,
    ok: true,
    wallSeconds: t.wallSeconds,
    cpuSeconds: round2(processes.reduce((s, p) => s + p.cpuSeconds, 0)),
    processes,
    wire: ctx.proxies ? { ...wire, total: wire.up + wire.down } : undefined,
    toolBytes: lastTransfer?.bytes ?? result.transfer?.bytes,
    changedBytes,
    ferryTransfer: { result, statusLastTransfer: lastTransfer },
  };
  row.verify = kind === 'tree' ? verifyTree(source, replica(), join(ctx.logs, slug)) : verifyImage(source, replica());
  // Background work the daemons finish after answering (releasing old
  // snapshots, collecting) must not land in the next tool's run.
  row.quietSeconds = round2(await waitQuiet(daemons.map((d) => d.pid)));
  daemons.forEach((d, i) => {
    processes[i + 1].cpuAfterExitSeconds = round2(cpuOf(d.pid) - cpuAfter[i]);
  });
  return row;
}

interface RsyncSetup {
  config: string;
  pidDir: string;
  proxySlot: number | null;
  starts: number;
}

async function measureRsync(ctx: Context, rs: RsyncSetup, caseName: CaseName, label: string, flags: string[], source: string, module: string,
  changedBytes: number, replica: string, kind: 'tree' | 'image'): Promise<Row> {
  const slug = `rsync-${label.replace(/[^a-z]+/g, '-')}-${caseName.replace(/[^a-z]+/g, '-')}`.replace(/-+/g, '-');
  rs.starts++;
  const daemon = new RsyncDaemon();
  const pidFile = join(rs.pidDir, `rsyncd-${rs.starts}.pid`);
  const config = readFileSync(rs.config, 'utf8').replace(/^pid file = .*$/m, `pid file = ${pidFile}`);
  const confPath = join(rs.pidDir, `rsyncd-${rs.starts}.conf`);
  writeFileSync(confPath, config);
  const commandFor = (port: number): string[] => ['rsync', ...flags, '--stats', source, `rsync://127.0.0.1:${port}/${module}/`];
  const command = commandFor(0).join(' ').replace(':0/', ':PORT/').replace(source, kind === 'tree' ? 'TREE/' : 'IMAGE');
  let row: Row;
  try {
    await daemon.start(confPath, pidFile, join(ctx.logs, `${slug}-daemon`));
    let port = daemon.port;
    if (ctx.proxies && rs.proxySlot !== null) {
      ctx.proxies.retarget(rs.proxySlot, daemon.port);
      port = proxyPorts.get(rs.proxySlot)!;
    }
    syncDisks();
    const wireBefore = ctx.proxies && rs.proxySlot !== null ? ctx.proxies.read(rs.proxySlot) : null;
    const t = await timed(commandFor(port), {}, join(ctx.logs, slug), ctx.timeoutS);
    const wire = wireBefore && ctx.proxies ? countDelta(ctx.proxies.read(rs.proxySlot!), wireBefore) : null;
    const usage = await daemon.stop();
    if (!t.ok) return { tool: label, case: caseName, command, ok: false, error: t.error, changedBytes };
    const stats = parseRsyncStats(t.stdout);
    const processes: ProcessUsage[] = [
      { role: 'client', cpuSeconds: t.cpuSeconds, peakRssMiB: MiBOf(t.peakRssKiB), peakScope: 'process' },
    ];
    if (usage) processes.push({ role: 'daemon', cpuSeconds: usage.cpuSeconds, peakRssMiB: MiBOf(usage.peakRssKiB), peakScope: 'this run: daemon restarted per run; the max over it and its forked receiver processes' });
    row = {
      tool: label,
      case: caseName,
      command,
      ok: true,
      wallSeconds: t.wallSeconds,
      cpuSeconds: round2(processes.reduce((s, p) => s + p.cpuSeconds, 0)),
      processes,
      wire: wire ? { ...wire, total: wire.up + wire.down } : undefined,
      toolBytes: stats ? stats.sent + stats.received : undefined,
      changedBytes,
      rsyncStats: stats,
    };
  } finally {
    await daemon.stop();
  }
  row.verify = kind === 'tree' ? verifyTree(source.replace(/\/$/, ''), replica, join(ctx.logs, slug)) : verifyImage(source, replica);
  return row;
}

/** Proxy slot -> listening port. */
const proxyPorts = new Map<number, number>();

// ---------------------------------------------------------------- report

interface Report {
  started: string;
  finished: string;
  totalSeconds: number;
  scale: number;
  seed: number;
  work: string;
  machine: { cpu: string; cores: number; memoryGiB: number; kernel: string; node: string };
  versions: Record<string, string>;
  notes: string[];
  data: { tree?: GenStats; image?: ImageStats };
  change: { tree?: ChangeStats; image?: ImageChangeStats; treeWrittenBytes?: number };
  phases: Record<string, number>;
  rows: Row[];
  mismatches: string[];
}

function formatReport(r: Report): string {
  const lines: string[] = [];
  lines.push(`# ferry replication benchmark, ${r.started}`, '');
  lines.push(`scale ${r.scale}, seed ${r.seed}; ${r.machine.cores} cores (${r.machine.cpu}), ${r.machine.memoryGiB} GiB, Linux ${r.machine.kernel}, Node ${r.machine.node}`);
  lines.push(`tools: ${Object.entries(r.versions).map(([k, v]) => `${k}: ${v}`).join('; ')}`, '');
  if (r.data.tree) {
    const t = r.data.tree;
    lines.push(`tree: ${t.files} files in ${t.directories} directories, ${humanBytes(t.bytes)} (${humanBytes(t.randomBytes)} random, ${humanBytes(t.textBytes)} text)`);
  }
  if (r.change.tree) {
    const c = r.change.tree;
    lines.push(`tree change: ${c.modified.files} files modified, ${c.appended.files} appended, ${c.largeRegions.regions} regions in ${c.largeRegions.files} large files, ` +
      `${c.added.files} added, ${c.deleted.files} deleted: ${humanBytes(r.change.treeWrittenBytes!)} written (the "changed bytes" below), ${humanBytes(c.deleted.bytes)} deleted`);
  }
  if (r.data.image) {
    const i = r.data.image;
    lines.push(`image: ${humanBytes(i.size)} (${humanBytes(i.randomBytes)} random, ${humanBytes(i.textBytes)} text, ${humanBytes(i.zeroBytes)} written zeros, ${humanBytes(i.holeBytes)} holes)` +
      (r.change.image ? `; change: ${r.change.image.writes} writes of 64 KiB (${humanBytes(r.change.image.bytes)})` : ''));
  }
  lines.push('');
  if (r.mismatches.length) {
    lines.push('**REPLICA MISMATCH: the following replicas do not match their source; their numbers are not valid:**', '');
    for (const m of r.mismatches) lines.push(`- **${m}**`);
    lines.push('');
  }
  lines.push('| tool | case | wall s | CPU s | CPU s per process | peak RSS MiB per process | bytes on the wire | tool\'s count | changed bytes | wire / changed | replica |');
  lines.push('|---|---|---:|---:|---|---|---:|---:|---:|---:|---|');
  for (const m of r.rows) {
    if (!m.ok) {
      lines.push(`| ${m.tool} | ${m.case} | n/a | n/a | n/a | n/a | n/a | n/a | ${humanBytes(m.changedBytes)} | n/a | not measured |`);
      continue;
    }
    const per = (f: (p: ProcessUsage) => string): string => m.processes!.map((p) => `${p.role} ${f(p)}`).join(', ');
    const cpuPer = (p: ProcessUsage): string => p.cpuSeconds.toFixed(2) + (p.cpuAfterExitSeconds && p.cpuAfterExitSeconds >= 0.05 ? ` (+${p.cpuAfterExitSeconds.toFixed(2)} after)` : '');
    const wire = m.wire ? m.wire.total : undefined;
    const verify = !m.verify ? '?' : !m.verify.ok ? '**MISMATCH**' : m.verify.metadataDiffs ? `matches (${m.verify.metadataDiffs} metadata diffs)` : 'matches';
    lines.push(`| ${m.tool} | ${m.case} | ${m.wallSeconds!.toFixed(2)} | ${m.cpuSeconds!.toFixed(2)} | ${per(cpuPer)} | ${per((p) => p.peakRssMiB.toFixed(0))} | ` +
      `${wire === undefined ? 'n/a' : humanBytes(wire)} | ${m.toolBytes === undefined ? 'n/a' : humanBytes(m.toolBytes)} | ${humanBytes(m.changedBytes)} | ` +
      `${wire === undefined ? 'n/a' : (wire / m.changedBytes).toFixed(2)} | ${verify} |`);
  }
  lines.push('');
  const failures = r.rows.filter((m) => !m.ok);
  if (failures.length) lines.push('Not measured:', ...[...new Set(failures.map((m) => `- ${m.tool}, ${m.case}: ${m.error}`))], '');

  // ferry against rsync, per case.
  const find = (tool: string, c: CaseName): Row | undefined => r.rows.find((m) => m.tool === tool && m.case === c && m.ok);
  const cases = [...new Set(r.rows.map((m) => m.case))];
  lines.push('| case | ferry / rsync wall | target | met | ferry wire / changed bytes | target | met | ferry / other rsync variants (wall) |');
  lines.push('|---|---:|---:|:---:|---:|---:|:---:|---|');
  for (const c of cases) {
    const ferry = find('ferry', c);
    const baseline = c.startsWith('image') ? find(RSYNC_IMAGE.label, c) : find(RSYNC_VARIANTS.default.label, c) ?? r.rows.find((m) => m.case === c && m.ok && m.tool !== 'ferry');
    const vs = ferry && baseline ? ferry.wallSeconds! / baseline.wallSeconds! : undefined;
    const target = WALL_TARGETS[c];
    const wireRatio = ferry?.wire ? ferry.wire.total / ferry.changedBytes : undefined;
    const wireTarget = WIRE_TARGETS[c];
    const others = r.rows.filter((m) => m.case === c && m.ok && m.tool !== 'ferry' && m !== baseline && ferry)
      .map((m) => `${m.tool}: ${(ferry!.wallSeconds! / m.wallSeconds!).toFixed(2)}`).join('; ');
    const yes = (x: number | undefined, t: number | undefined): string => (x === undefined || t === undefined ? '—' : x <= t ? 'yes' : 'NO');
    lines.push(`| ${c} | ${vs === undefined ? 'n/a' : vs.toFixed(2)}${baseline ? ` (vs ${baseline.tool})` : ''} | ${target === undefined ? '—' : `<= ${target}`} | ${yes(vs, target)} | ` +
      `${wireRatio === undefined ? 'n/a' : wireRatio.toFixed(2)} | ${wireTarget === undefined ? '—' : `<= ${wireTarget}`} | ${yes(wireRatio, wireTarget)} | ${others || '—'} |`);
  }
  lines.push('');
  const steps = r.rows.filter((m) => stepsOf(m)).map((m) => `- ${m.case}: ${stepsOf(m)}`);
  if (steps.length) lines.push('ferry\'s steps (s), from `status --json` lastTransfer.phases (the destination\'s steps run inside "commit"):', ...steps, '');
  const modes = r.rows.filter((m) => m.rsyncStats && m.case.endsWith('update'))
    .map((m) => `${m.tool}, ${m.case}: ${m.rsyncStats!.mode} (literal ${humanBytes(m.rsyncStats!.literal)}, matched ${humanBytes(m.rsyncStats!.matched)}, ${m.rsyncStats!.filesTransferred} files)`);
  if (modes.length) lines.push('rsync\'s transfer mode, from its --stats:', ...modes.map((x) => `- ${x}`), '');
  const meta = r.rows.filter((m) => m.verify && m.verify.metadataDiffs > 0).map((m) => `- ${m.tool}, ${m.case}: ${m.verify!.metadataDiffs} (${m.verify!.metadataExamples.join('; ')})`);
  if (meta.length) lines.push('Metadata differences (content identical):', ...meta, '');
  lines.push('Notes:', ...r.notes.map((n) => `- ${n}`), '');
  lines.push('Commands:', ...r.rows.filter((m, i, all) => all.findIndex((x) => x.tool === m.tool && x.command === m.command) === i).map((m) => `- ${m.tool}: \`${m.command}\``), '');
  lines.push(`Phases (s): ${Object.entries(r.phases).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')}; total ${r.totalSeconds.toFixed(0)} s. Work directory: ${r.work}`);
  return lines.join('\n') + '\n';
}

/** ferry's own step timings for a row (snapshot, send, commit and the destination's steps), as one line. */
function stepsOf(row: Row): string | undefined {
  const t = row.ferryTransfer?.statusLastTransfer as { phases?: Record<string, number> } | null | undefined;
  if (!t?.phases) return undefined;
  return Object.entries(t.phases).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ');
}

// ---------------------------------------------------------------- main

function volumeMemberPath(home: string, volume: string, log: string): string {
  const v = JSON.parse(must([FERRY, 'volume', 'show', volume, '--json', '--home', home], log)) as { members: Array<{ path: string }> };
  return v.members[0].path;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      scale: { type: 'string' },
      seed: { type: 'string' },
      work: { type: 'string' },
      out: { type: 'string' },
      rsync: { type: 'string' },
      'no-image': { type: 'boolean' },
      direct: { type: 'boolean' },
      ferry: { type: 'string' },
      settle: { type: 'string' },
      timeout: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log('usage: node bench/replication.ts [--scale 1] [--seed 1] [--work DIR] [--out bench/out] [--rsync default,whole-file] [--no-image] [--direct] [--ferry BIN] [--settle 3] [--timeout 3600]');
    return;
  }
  if (values.ferry) FERRY = resolve(values.ferry);
  const scale = parseScale(values.scale);
  const seed = parseSeed(values.seed);
  const settleSeconds = Number(values.settle ?? '3');
  if (!(settleSeconds >= 0)) throw new Error(`--settle must be a number of seconds, got ${values.settle}`);
  const timeoutS = Number(values.timeout ?? '3600');
  if (!(timeoutS > 0)) throw new Error(`--timeout must be a positive number of seconds, got ${values.timeout}`);
  const variants = (values.rsync ?? 'default,whole-file').split(',').map((s) => s.trim()).filter(Boolean);
  for (const v of variants) if (!RSYNC_VARIANTS[v]) throw new Error(`unknown rsync variant ${v}; choose from ${Object.keys(RSYNC_VARIANTS).join(', ')}`);
  for (const bin of [GNU_TIME, '/usr/bin/rsync']) if (!existsSync(bin)) throw new Error(`${bin} not found: apt-get install -y rsync time`);
  const settle = (): Promise<void> => sleep(settleSeconds * 1000);
  CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

  const startedAt = new Date();
  const stamp = timestamp(startedAt);
  const work = resolve(values.work ?? join(tmpdir(), `ferry-repl-bench-${stamp}`));
  const outDir = resolve(values.out ?? join(ROOT, 'bench', 'out'));
  ensureFresh(work);
  const logs = join(work, 'logs');
  mkdirSync(logs, { recursive: true });
  mkdirSync(outDir, { recursive: true });
  const log = (s: string): void => console.error(s);
  const onSignal = (sig: NodeJS.Signals): void => {
    console.error(`\n${sig}: stopping the daemons`);
    emergencyStop();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const phases: Record<string, number> = {};
  const tick = (name: string, since: number): void => {
    phases[name] = (performance.now() - since) / 1000;
  };
  const rows: Row[] = [];
  const data: Report['data'] = {};
  const change: Report['change'] = {};
  const notes: string[] = [];
  const versions = { ferry: firstLine([FERRY, '--version']), rsync: firstLine(['rsync', '--version']) };
  const noImage = Boolean(values['no-image']);

  const dataDir = join(work, 'data');
  const treeDir = join(dataDir, 'tree');
  const imagePath = join(dataDir, 'image.img');
  const homeA = join(work, 'ferry', 'site-a');
  const homeB = join(work, 'ferry', 'site-b');
  const rsyncRoot = join(work, 'rsync');
  const proxies = values.direct ? null : CountingProxies.start();
  const ctx: Context = { work, logs, timeoutS, proxies, peakScope: '', canResetPeak: false };
  const a = new FerryDaemon('site-a', homeA);
  const b = new FerryDaemon('site-b', homeB);
  const rs: RsyncSetup = { config: join(rsyncRoot, 'run', 'rsyncd.conf'), pidDir: join(rsyncRoot, 'run'), proxySlot: null, starts: 0 };

  log(`work directory ${work}; scale ${scale}, seed ${seed}; rsync variants ${variants.join(', ')}${proxies ? '' : '; no proxies (--direct)'}`);
  try {
    let t = performance.now();
    log('generating the tree ...');
    data.tree = await generateTree(treeDir, seed, scale);
    if (!noImage) {
      log('generating the image ...');
      data.image = await generateImage(imagePath, seed, scale);
    }
    await settle();
    tick('generate', t);
    t = performance.now();
    warmCache(treeDir);
    tick('warm tree', t);

    // ferry: two sites, paired through the proxies (a -> proxy -> b, b -> proxy -> a).
    t = performance.now();
    let ferryReady: string | null = null;
    const sites: FerrySites = { a, b, proxySlots: [] };
    try {
      must([FERRY, 'init', '--home', homeA, '--name', 'site-a'], join(logs, 'ferry-init-a'));
      must([FERRY, 'init', '--home', homeB, '--name', 'site-b'], join(logs, 'ferry-init-b'));
      const idA = (JSON.parse(must([FERRY, 'info', '--json', '--home', homeA], join(logs, 'ferry-info-a'))) as { id: string }).id;
      const idB = (JSON.parse(must([FERRY, 'info', '--json', '--home', homeB], join(logs, 'ferry-info-b'))) as { id: string }).id;
      await a.start(join(logs, 'ferry-daemon-a.log'));
      await b.start(join(logs, 'ferry-daemon-b.log'));
      let urlB = b.port;
      let urlA = a.port;
      if (proxies) {
        const ab = await proxies.add('ferry a->b', b.port);
        const ba = await proxies.add('ferry b->a', a.port);
        sites.proxySlots = [ab.slot, ba.slot];
        urlB = ab.port;
        urlA = ba.port;
      }
      must([FERRY, 'site', 'add', 'site-b', `https://127.0.0.1:${urlB}`, '--id', idB, '--home', homeA], join(logs, 'ferry-site-add-a'));
      must([FERRY, 'site', 'add', 'site-a', `https://127.0.0.1:${urlA}`, '--id', idA, '--home', homeB], join(logs, 'ferry-site-add-b'));
      must([FERRY, 'volume', 'create', 'data', '--member', treeDir, '--home', homeA], join(logs, 'ferry-volume-data'));
      must([FERRY, 'mirror', 'create', 'data', '--to', 'site-b', '--home', homeA], join(logs, 'ferry-mirror-data'));
      ctx.canResetPeak = resetPeak(a.pid) && resetPeak(b.pid);
      ctx.peakScope = ctx.canResetPeak ? 'this run: VmHWM reset (clear_refs 5) before the run' : 'since the daemon started (VmHWM; reset not permitted)';
    } catch (err) {
      ferryReady = err instanceof Error ? err.message : String(err);
      log(`ferry setup failed: ${ferryReady}`);
    }

    // rsync: one daemon configuration, a module per destination; a fresh daemon per run.
    mkdirSync(rs.pidDir, { recursive: true });
    const modules = [...variants.map((v) => RSYNC_VARIANTS[v].module), ...(noImage ? [] : [RSYNC_IMAGE.module])];
    const conf = ['use chroot = no', 'numeric ids = yes', `log file = ${join(logs, 'rsyncd.log')}`, 'pid file = PLACEHOLDER', ''];
    for (const m of modules) {
      mkdirSync(join(rsyncRoot, m));
      conf.push(`[${m}]`, `    path = ${join(rsyncRoot, m)}`, '    read only = no', '    uid = root', '    gid = root', '');
    }
    writeFileSync(rs.config, conf.join('\n'));
    if (proxies) {
      const p = await proxies.add('rsync', 1);
      rs.proxySlot = p.slot;
      proxyPorts.set(p.slot, p.port);
    }
    tick('setup', t);

    const treeBytes = data.tree.bytes;
    const ferryFailed = (c: CaseName, changedBytes: number, why: string): void => {
      rows.push({ tool: 'ferry', case: c, command: '', ok: false, error: why, changedBytes });
    };
    const report = (row: Row): void => {
      rows.push(row);
      if (!row.ok) log(`  ${row.case} ${row.tool}: FAILED ${row.error}`);
      else {
        log(`  ${row.case} ${row.tool}: ${row.wallSeconds} s wall, ${row.cpuSeconds} s CPU, wire ${row.wire ? humanBytes(row.wire.total) : 'n/a'}, ` +
          `replica ${row.verify?.ok ? 'matches' : 'DOES NOT MATCH'}`);
        const steps = stepsOf(row);
        if (steps) log(`    ferry steps (s): ${steps}`);
        if (row.verify && !row.verify.ok) log(`  !!! ${row.tool}, ${row.case}: REPLICA MISMATCH: ${row.verify.detail}`);
      }
    };

    // ---- tree: initial
    t = performance.now();
    const ferryReplica = (volume: string) => () => volumeMemberPath(homeB, volume, join(logs, `ferry-volume-show-${volume}`));
    if (ferryReady === null) {
      const row = await measureFerry(ctx, sites, 'tree: initial', ['mirror', 'initialize', 'data', '--to', 'site-b', '--wait'], treeBytes, ferryReplica('data'), treeDir, 'tree');
      report(row);
      if (!row.ok) ferryReady = `the initial replication failed (${row.error})`;
    } else ferryFailed('tree: initial', treeBytes, ferryReady);
    for (const v of variants) {
      const { label, flags, module } = RSYNC_VARIANTS[v];
      report(await measureRsync(ctx, rs, 'tree: initial', label, flags, `${treeDir}/`, module, treeBytes, join(rsyncRoot, module), 'tree'));
    }
    tick('tree initial', t);

    // ---- tree: update
    t = performance.now();
    log('applying the standard change ...');
    change.tree = await changeTree(treeDir, seed, scale);
    const written = change.tree.changedBytes - change.tree.deleted.bytes;
    change.treeWrittenBytes = written;
    await settle();
    warmCache(treeDir);
    if (ferryReady === null) {
      report(await measureFerry(ctx, sites, 'tree: update', ['mirror', 'update', 'data', '--to', 'site-b', '--wait'], written, ferryReplica('data'), treeDir, 'tree'));
    } else ferryFailed('tree: update', written, ferryReady);
    for (const v of variants) {
      const { label, flags, module } = RSYNC_VARIANTS[v];
      report(await measureRsync(ctx, rs, 'tree: update', label, flags, `${treeDir}/`, module, written, join(rsyncRoot, module), 'tree'));
    }
    tick('tree update', t);

    // ---- image
    if (!noImage && data.image) {
      t = performance.now();
      warmCache(imagePath);
      let imageReady = ferryReady;
      if (imageReady === null) {
        try {
          must([FERRY, 'volume', 'create', 'img', '--member', `image:${imagePath}`, '--home', homeA], join(logs, 'ferry-volume-img'));
          must([FERRY, 'mirror', 'create', 'img', '--to', 'site-b', '--home', homeA], join(logs, 'ferry-mirror-img'));
        } catch (err) {
          imageReady = err instanceof Error ? err.message : String(err);
        }
      }
      const size = data.image.size;
      if (imageReady === null) {
        const row = await measureFerry(ctx, sites, 'image: initial', ['mirror', 'initialize', 'img', '--to', 'site-b', '--wait'], size, ferryReplica('img'), imagePath, 'image');
        report(row);
        if (!row.ok) imageReady = `the initial replication failed (${row.error})`;
      } else ferryFailed('image: initial', size, imageReady);
      const rsyncImage = join(rsyncRoot, RSYNC_IMAGE.module, 'image.img');
      report(await measureRsync(ctx, rs, 'image: initial', RSYNC_IMAGE.label, RSYNC_IMAGE.flags, imagePath, RSYNC_IMAGE.module, size, rsyncImage, 'image'));
      change.image = changeImage(imagePath, seed, scale);
      await settle();
      warmCache(imagePath);
      if (imageReady === null) {
        report(await measureFerry(ctx, sites, 'image: update', ['mirror', 'update', 'img', '--to', 'site-b', '--wait'], change.image.bytes, ferryReplica('img'), imagePath, 'image'));
      } else ferryFailed('image: update', change.image.bytes, imageReady);
      report(await measureRsync(ctx, rs, 'image: update', RSYNC_IMAGE.label, RSYNC_IMAGE.flags, imagePath, RSYNC_IMAGE.module, change.image.bytes, rsyncImage, 'image'));
      tick('image', t);
    }
  } finally {
    await a.stop();
    await b.stop();
    if (proxies) await proxies.close();
    emergencyStop(); // anything left (should be nothing)
  }

  notes.push(
    'wall: from the command to its exit; `ferry mirror initialize|update --wait` returns after the destination applied and verified the replica; rsync when the client exits.',
    `CPU: user + system. ferry: the CLI (GNU time), and each daemon's /proc/PID/stat utime+stime (+ reaped children) when the CLI returned minus before the run; work a daemon does after the CLI returned (releasing older replication snapshots, collecting) is shown as "(+x after)" and not counted. rsync: the client (GNU time), and the daemon with the per-connection processes it forked (GNU time around a daemon started for this run only).`,
    `peak RSS: the CLI and the rsync client: GNU time's max RSS. ferry daemons: VmHWM from /proc/PID/status, ${ctx.peakScope || 'n/a'}. rsync daemon: GNU time's max RSS over the daemon and its forked processes (the largest single process, not a sum; rsync's receiving side is two processes).`,
    proxies
      ? 'bytes on the wire: TCP payload counted by a proxy on loopback, both directions, every connection of the run: for ferry, proxies between the daemons (site-a reaches site-b through one, site-b reaches site-a through another), so TLS, HTTP/2 and protocol messages are included; for rsync, a proxy in front of the rsync daemon. The tool\'s count: ferry `status --json` mirrors[].lastTransfer.bytes (objects as stored, zstd where it paid); rsync --stats total bytes sent + received.'
      : 'bytes on the wire: not counted (--direct: no proxies); the tool\'s count is ferry\'s lastTransfer.bytes and rsync\'s --stats sent + received.',
    'changed bytes: initial cases: the data set (tree bytes; the image\'s logical size, holes included); tree update: the bytes the change wrote (modified, appended, large-file regions, added files), deleted files not counted; image update: the bytes written (writes x 64 KiB).',
    'replica check after every run: trees with `diff -r --no-dereference` (content, names, symlinks) plus a walk comparing type, permissions, size and mtime (ms; not the root); the image with `cmp`. A content difference is reported as MISMATCH and the run exits with status 1.',
    'rsync over a daemon is not a local copy, so rsync uses its delta algorithm by default (whole-file is the default only when both ends are local paths); `--stats` shows it: matched data > 0 means delta. The `--whole-file` variant (if run) shows what a local `rsync -a` does.',
    `settle: ${settleSeconds} s pause (untimed) after generating and after each change, then the source is read once more (page cache). Each daemon pair is quiet (no CPU for 1 s) before the next tool runs; \`sync\` before every timed run.`,
  );

  const finishedAt = new Date();
  const mismatches = rows.filter((m) => m.ok && m.verify && !m.verify.ok).map((m) => `${m.tool}, ${m.case}: ${m.verify!.detail}`);
  const rep: Report = {
    started: startedAt.toISOString(),
    finished: finishedAt.toISOString(),
    totalSeconds: (finishedAt.getTime() - startedAt.getTime()) / 1000,
    scale,
    seed,
    work,
    machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, memoryGiB: Math.round(totalmem() / 2 ** 30), kernel: release(), node: process.version },
    versions,
    notes,
    data,
    change,
    phases,
    rows,
    mismatches,
  };
  const markdown = formatReport(rep);
  process.stdout.write(markdown);
  const base = join(outDir, `replication-${stamp}`);
  writeFileSync(`${base}.md`, markdown);
  writeFileSync(`${base}.json`, JSON.stringify(rep, null, 2) + '\n');
  log(`\nwrote ${base}.md and ${base}.json; data, sites and replicas stay in ${work} (delete them when done, not right before another run)`);
  if (mismatches.length) {
    log(`\n!!! ${mismatches.length} REPLICA MISMATCH(ES):\n${mismatches.map((m) => `!!!   ${m}`).join('\n')}`);
    process.exitCode = 1;
  }
}

if (import.meta.main) {
  main().catch((err: unknown) => {
    console.error(`replication bench: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
    emergencyStop();
    process.exit(1);
  });
}
