// One measured run per tool and case, for the replication benchmarks
// (bench/replication.ts: the standard data set; bench/million.ts: a million
// small files): ferry between two daemons, rsync to a daemon, rsync between
// two local paths, a ferry snapshot without a daemon; each with wall time,
// CPU and peak RSS per process, bytes on the wire, the tool's own counts and
// a check that the replica equals the source. And the report's tables.

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

import { humanBytes, round2, syncDisks } from './common.ts';
import { countDelta, type LinkProxies, type ProxyCount } from './proxy.ts';
import { alive, bins, cpuOf, FerryDaemon, must, peakKiBOf, resetPeak, RsyncDaemon, timed, waitQuiet } from './procs.ts';
import { type Verification, verifyImage, verifyTree } from './verify.ts';

export interface ProcessUsage {
  role: string;
  cpuSeconds: number;
  peakRssMiB: number;
  /** Over what the peak RSS is taken. */
  peakScope: string;
  /** ferry daemons: CPU used after the command returned, until the daemon was quiet (not in cpuSeconds). */
  cpuAfterExitSeconds?: number;
}

export interface Row {
  tool: string;
  case: string;
  command: string;
  ok: boolean;
  error?: string;
  wallSeconds?: number;
  cpuSeconds?: number;
  processes?: ProcessUsage[];
  /** Counted by the proxies: both directions, TCP payload. */
  wire?: ProxyCount & { total: number };
  /** The tool's own count: ferry's lastTransfer.bytes, rsync's total bytes sent + received, btrfs's stream. */
  toolBytes?: number;
  changedBytes: number;
  verify?: Verification;
  ferryTransfer?: { result: unknown; statusLastTransfer: unknown };
  rsyncStats?: RsyncStats;
  /** Steps of a run the runner times itself (btrfs: snapshot, send | receive), seconds. */
  steps?: Record<string, number>;
  quietSeconds?: number;
}

export interface RsyncStats {
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

export const MiBOf = (kib: number): number => Math.round((kib / 1024) * 10) / 10;

/** A measured row: CPU summed over its processes, the wire count both ways. */
export function measuredRow(tool: string, caseName: string, command: string, wallSeconds: number, processes: ProcessUsage[],
  wire: ProxyCount | null, changedBytes: number, more: Partial<Row> = {}): Row {
  return {
    tool,
    case: caseName,
    command,
    ok: true,
    wallSeconds,
    cpuSeconds: round2(processes.reduce((s, p) => s + p.cpuSeconds, 0)),
    processes,
    wire: wire ? { ...wire, total: wire.up + wire.down } : undefined,
    changedBytes,
    ...more,
  };
}

export interface Context {
  logs: string;
  timeoutS: number;
  /** The proxies every connection crosses (null with --direct). */
  proxies: LinkProxies | null;
}

export function slugOf(...parts: string[]): string {
  return parts.join('-').replace(/[^a-z0-9]+/gi, '-').replace(/-+/g, '-').replace(/^-|-$/g, '').toLowerCase();
}

/** Runs the replica check of a row, by kind. */
function check(kind: 'tree' | 'image', source: string, replica: string, log: string): Verification {
  return kind === 'tree' ? verifyTree(source, replica, log) : verifyImage(source, replica);
}

// ---------------------------------------------------------------- ferry

/** Two ferry sites, each with a daemon, paired through the proxies (a -> proxy -> b, b -> proxy -> a). */
export class FerryPair {
  readonly a: FerryDaemon;
  readonly b: FerryDaemon;
  proxySlots: number[] = [];
  /** Over what the daemons' peak RSS is taken. */
  peakScope = '';
  canResetPeak = false;

  private constructor(a: FerryDaemon, b: FerryDaemon) {
    this.a = a;
    this.b = b;
  }

  /** ferry init both homes, start the daemons, add each as the other's site (through the proxies). */
  static async start(ctx: Context, root: string): Promise<FerryPair> {
    const pair = new FerryPair(new FerryDaemon('site-a', join(root, 'site-a')), new FerryDaemon('site-b', join(root, 'site-b')));
    const { a, b } = pair;
    const logs = ctx.logs;
    const ferry = bins.ferry;
    must([ferry, 'init', '--home', a.home, '--name', 'site-a'], join(logs, 'ferry-init-a'));
    must([ferry, 'init', '--home', b.home, '--name', 'site-b'], join(logs, 'ferry-init-b'));
    const idA = (JSON.parse(must([ferry, 'info', '--json', '--home', a.home], join(logs, 'ferry-info-a'))) as { id: string }).id;
    const idB = (JSON.parse(must([ferry, 'info', '--json', '--home', b.home], join(logs, 'ferry-info-b'))) as { id: string }).id;
    await a.start(join(logs, 'ferry-daemon-a.log'));
    await b.start(join(logs, 'ferry-daemon-b.log'));
    let portB = b.port;
    let portA = a.port;
    if (ctx.proxies) {
      const ab = await ctx.proxies.add('ferry a->b', b.port, 'a');
      const ba = await ctx.proxies.add('ferry b->a', a.port, 'b');
      pair.proxySlots = [ab.slot, ba.slot];
      portB = ab.port;
      portA = ba.port;
    }
    must([ferry, 'site', 'add', 'site-b', `https://127.0.0.1:${portB}`, '--id', idB, '--home', a.home], join(logs, 'ferry-site-add-a'));
    must([ferry, 'site', 'add', 'site-a', `https://127.0.0.1:${portA}`, '--id', idA, '--home', b.home], join(logs, 'ferry-site-add-b'));
    pair.canResetPeak = resetPeak(a.pid) && resetPeak(b.pid);
    pair.peakScope = pair.canResetPeak ? 'this run: VmHWM reset (clear_refs 5) before the run' : 'since the daemon started (VmHWM; reset not permitted)';
    return pair;
  }

  /** start() and addMirror(); on failure the reason instead (the run goes on without ferry). */
  static async tryStart(ctx: Context, root: string, volume: string, member: string, log: (s: string) => void): Promise<FerryPair | string> {
    try {
      const pair = await FerryPair.start(ctx, root);
      pair.addMirror(ctx, volume, member);
      return pair;
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      log(`ferry setup failed: ${why}`);
      return why;
    }
  }

  /** A volume at site a with one member, mirrored to site b. */
  addMirror(ctx: Context, volume: string, member: string): void {
    must([bins.ferry, 'volume', 'create', volume, '--member', member, '--home', this.a.home], join(ctx.logs, `ferry-volume-${volume}`));
    must([bins.ferry, 'mirror', 'create', volume, '--to', 'site-b', '--home', this.a.home], join(ctx.logs, `ferry-mirror-${volume}`));
  }

  /** Where site b keeps the replica of a volume. */
  replicaPath(ctx: Context, volume: string): string {
    const v = JSON.parse(must([bins.ferry, 'volume', 'show', volume, '--json', '--home', this.b.home], join(ctx.logs, `ferry-volume-show-${volume}`))) as {
      members: Array<{ path: string }>;
    };
    return v.members[0].path;
  }

  async stop(): Promise<void> {
    await this.a.stop();
    await this.b.stop();
  }
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

/** A timed `ferry mirror initialize|update VOLUME --to site-b --wait` at site a, and the replica's check. */
export async function measureFerry(ctx: Context, pair: FerryPair, caseName: string, args: string[], changedBytes: number,
  source: string, kind: 'tree' | 'image'): Promise<Row> {
  const argv = [bins.ferry, ...args, '--home', pair.a.home, '--json'];
  const command = ['ferry', ...args].join(' ');
  const slug = slugOf('ferry', caseName);
  syncDisks();
  const daemons = [pair.a, pair.b];
  for (const d of daemons) if (pair.canResetPeak) resetPeak(d.pid);
  const cpuBefore = daemons.map((d) => cpuOf(d.pid));
  const wireBefore = proxyTotal(ctx, pair.proxySlots);
  const t = await timed(argv, { FERRY_NO_PROGRESS: '1' }, join(ctx.logs, slug), ctx.timeoutS);
  const wire = countDelta(proxyTotal(ctx, pair.proxySlots), wireBefore);
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
  const status = JSON.parse(must([bins.ferry, 'status', '--json', '--home', pair.a.home], join(ctx.logs, `${slug}-status`))) as {
    volumes: Array<{ name: string; mirrors: Array<{ lastTransfer: { bytes: number } | null }> }>;
  };
  const lastTransfer = status.volumes.find((v) => v.name === volume)?.mirrors[0]?.lastTransfer ?? null;
  const processes: ProcessUsage[] = [
    { role: 'cli', cpuSeconds: t.cpuSeconds, peakRssMiB: MiBOf(t.peakRssKiB), peakScope: 'process' },
    { role: 'source daemon', cpuSeconds: round2(cpuAfter[0] - cpuBefore[0]), peakRssMiB: MiBOf(peaks[0]), peakScope: pair.peakScope },
    { role: 'destination daemon', cpuSeconds: round2(cpuAfter[1] - cpuBefore[1]), peakRssMiB: MiBOf(peaks[1]), peakScope: pair.peakScope },
  ];
  const row = measuredRow('ferry', caseName, command, t.wallSeconds, processes, ctx.proxies ? wire : null, changedBytes, {
    toolBytes: lastTransfer?.bytes ?? result.transfer?.bytes,
    ferryTransfer: { result, statusLastTransfer: lastTransfer },
  });
  row.verify = check(kind, source, pair.replicaPath(ctx, volume), join(ctx.logs, slug));
  // Background work the daemons finish after answering (releasing old
  // snapshots, collecting) must not land in the next tool's run.
  row.quietSeconds = round2(await waitQuiet(daemons.map((d) => d.pid)));
  daemons.forEach((d, i) => {
    processes[i + 1].cpuAfterExitSeconds = round2(cpuOf(d.pid) - cpuAfter[i]);
  });
  return row;
}

/** A timed local `ferry snapshot create VOLUME --json` (no daemon at that home). */
export async function measureFerrySnapshot(ctx: Context, home: string, caseName: string, volume: string, changedBytes: number): Promise<Row> {
  const args = ['snapshot', 'create', volume];
  const command = ['ferry', ...args].join(' ');
  const slug = slugOf('ferry', caseName);
  syncDisks();
  const t = await timed([bins.ferry, ...args, '--home', home, '--json'], { FERRY_NO_PROGRESS: '1' }, join(ctx.logs, slug), ctx.timeoutS);
  if (!t.ok) return { tool: 'ferry', case: caseName, command, ok: false, error: t.error, changedBytes };
  let result: unknown;
  try {
    result = JSON.parse(t.stdout);
  } catch {
    result = undefined;
  }
  const processes = [{ role: 'cli', cpuSeconds: t.cpuSeconds, peakRssMiB: MiBOf(t.peakRssKiB), peakScope: 'process (and its reaped children)' }];
  return measuredRow('ferry', caseName, command, t.wallSeconds, processes, null, changedBytes, { ferryTransfer: { result, statusLastTransfer: null } });
}

// ---------------------------------------------------------------- rsync

/** rsync variants: each writes into its own destination (a daemon module, or a local directory). */
export interface RsyncVariant {
  label: string;
  flags: string[];
  module: string;
}

/** An rsync daemon configuration with a module per destination; a fresh daemon (under GNU time) per run. */
export class RsyncServer {
  readonly root: string;
  private readonly config: string;
  private readonly runDir: string;
  private proxySlot: number | null = null;
  private proxyPort = 0;
  private starts = 0;

  private constructor(root: string) {
    this.root = root;
    this.runDir = join(root, 'run');
    this.config = join(this.runDir, 'rsyncd.conf');
  }

  static async setup(ctx: Context, root: string, modules: string[]): Promise<RsyncServer> {
    const rs = new RsyncServer(root);
    mkdirSync(rs.runDir, { recursive: true });
    const conf = ['use chroot = no', 'numeric ids = yes', `log file = ${join(ctx.logs, 'rsyncd.log')}`, 'pid file = PLACEHOLDER', ''];
    for (const m of modules) {
      mkdirSync(join(root, m), { recursive: true });
      conf.push(`[${m}]`, `    path = ${join(root, m)}`, '    read only = no', '    uid = root', '    gid = root', '');
    }
    writeFileSync(rs.config, conf.join('\n'));
    if (ctx.proxies) {
      // The rsync client pushes from site a to the daemon at site b.
      const p = await ctx.proxies.add('rsync', 1, 'a');
      rs.proxySlot = p.slot;
      rs.proxyPort = p.port;
    }
    return rs;
  }

  /** A timed `rsync FLAGS --stats SOURCE rsync://127.0.0.1:PORT/MODULE/` and the replica's check. */
  async measure(ctx: Context, caseName: string, variant: RsyncVariant, source: string, changedBytes: number, kind: 'tree' | 'image',
    replica: string): Promise<Row> {
    const { label, flags, module } = variant;
    const slug = slugOf('rsync', label, caseName);
    this.starts++;
    const daemon = new RsyncDaemon();
    const pidFile = join(this.runDir, `rsyncd-${this.starts}.pid`);
    const confPath = join(this.runDir, `rsyncd-${this.starts}.conf`);
    writeFileSync(confPath, readFileSync(this.config, 'utf8').replace(/^pid file = .*$/m, `pid file = ${pidFile}`));
    const commandFor = (port: number): string[] => ['rsync', ...flags, '--stats', source, `rsync://127.0.0.1:${port}/${module}/`];
    const command = commandFor(0).join(' ').replace(':0/', ':PORT/').replace(source, kind === 'tree' ? 'TREE/' : 'IMAGE');
    let row: Row;
    try {
      await daemon.start(confPath, pidFile, join(ctx.logs, `${slug}-daemon`));
      let port = daemon.port;
      if (ctx.proxies && this.proxySlot !== null) {
        ctx.proxies.retarget(this.proxySlot, daemon.port);
        port = this.proxyPort;
      }
      syncDisks();
      const wireBefore = ctx.proxies && this.proxySlot !== null ? ctx.proxies.read(this.proxySlot) : null;
      const t = await timed(commandFor(port), {}, join(ctx.logs, slug), ctx.timeoutS);
      const wire = wireBefore && ctx.proxies ? countDelta(ctx.proxies.read(this.proxySlot!), wireBefore) : null;
      const usage = await daemon.stop();
      if (!t.ok) return { tool: label, case: caseName, command, ok: false, error: t.error, changedBytes };
      const stats = parseRsyncStats(t.stdout);
      const processes: ProcessUsage[] = [
        { role: 'client', cpuSeconds: t.cpuSeconds, peakRssMiB: MiBOf(t.peakRssKiB), peakScope: 'the largest of the process and its reaped children' },
      ];
      if (usage) processes.push({ role: 'daemon', cpuSeconds: usage.cpuSeconds, peakRssMiB: MiBOf(usage.peakRssKiB), peakScope: 'this run: daemon restarted per run; the max over it and its forked receiver processes' });
      row = measuredRow(label, caseName, command, t.wallSeconds, processes, wire, changedBytes, {
        toolBytes: stats ? stats.sent + stats.received : undefined,
        rsyncStats: stats,
      });
    } finally {
      await daemon.stop();
    }
    row.verify = check(kind, source.replace(/\/$/, ''), replica, join(ctx.logs, slug));
    return row;
  }
}

/** A timed `rsync FLAGS --stats SOURCE/ DEST/` between two local paths (rsync's whole-file default), and the check. */
export async function measureLocalRsync(ctx: Context, caseName: string, label: string, flags: string[], source: string, dest: string,
  changedBytes: number): Promise<Row> {
  const slug = slugOf('rsync-local', label, caseName);
  mkdirSync(dest, { recursive: true });
  const command = ['rsync', ...flags, '--stats', 'SOURCE/', 'DEST/'].join(' ');
  syncDisks();
  const t = await timed(['rsync', ...flags, '--stats', `${source}/`, `${dest}/`], {}, join(ctx.logs, slug), ctx.timeoutS);
  if (!t.ok) return { tool: label, case: caseName, command, ok: false, error: t.error, changedBytes };
  const stats = parseRsyncStats(t.stdout);
  const processes = [{ role: 'rsync (sender, generator, receiver)', cpuSeconds: t.cpuSeconds, peakRssMiB: MiBOf(t.peakRssKiB), peakScope: 'the largest of its three processes' }];
  const row = measuredRow(label, caseName, command, t.wallSeconds, processes, null, changedBytes, {
    toolBytes: stats ? stats.sent + stats.received : undefined,
    rsyncStats: stats,
  });
  row.verify = verifyTree(source, dest, join(ctx.logs, slug));
  return row;
}

// ---------------------------------------------------------------- report

/** ferry's own step timings for a row (snapshot, send, commit and the destination's steps), or a runner's steps, as one line. */
export function stepsOf(row: Row): string | undefined {
  const t = row.ferryTransfer?.statusLastTransfer as { phases?: Record<string, number> } | null | undefined;
  const steps = t?.phases ?? row.steps;
  if (!steps) return undefined;
  return Object.entries(steps).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ');
}

/** One line per row on stderr as the run goes. */
export function logRow(row: Row, log: (s: string) => void): void {
  if (!row.ok) {
    log(`  ${row.case} ${row.tool}: FAILED ${row.error}`);
    return;
  }
  log(`  ${row.case} ${row.tool}: ${row.wallSeconds} s wall, ${row.cpuSeconds} s CPU, wire ${row.wire ? humanBytes(row.wire.total) : 'n/a'}, ` +
    `peak RSS ${row.processes!.map((p) => `${p.role} ${p.peakRssMiB.toFixed(0)} MiB`).join(', ')}` +
    (row.verify ? `, replica ${row.verify.ok ? 'matches' : 'DOES NOT MATCH'}` : ''));
  const steps = stepsOf(row);
  if (steps) log(`    steps (s): ${steps}`);
  if (row.verify && !row.verify.ok) log(`  !!! ${row.tool}, ${row.case}: REPLICA MISMATCH: ${row.verify.detail}`);
}

/** The main table: one line per tool and case. */
export function rowsTable(rows: Row[]): string[] {
  const lines = [
    '| tool | case | wall s | CPU s | CPU s per process | peak RSS MiB per process | bytes on the wire | tool\'s count | changed bytes | wire / changed | replica |',
    '|---|---|---:|---:|---|---|---:|---:|---:|---:|---|',
  ];
  for (const m of rows) {
    if (!m.ok) {
      lines.push(`| ${m.tool} | ${m.case} | n/a | n/a | n/a | n/a | n/a | n/a | ${humanBytes(m.changedBytes)} | n/a | not measured |`);
      continue;
    }
    const per = (f: (p: ProcessUsage) => string): string => m.processes!.map((p) => `${p.role} ${f(p)}`).join(', ');
    const cpuPer = (p: ProcessUsage): string => p.cpuSeconds.toFixed(2) + (p.cpuAfterExitSeconds && p.cpuAfterExitSeconds >= 0.05 ? ` (+${p.cpuAfterExitSeconds.toFixed(2)} after)` : '');
    const wire = m.wire ? m.wire.total : undefined;
    const verify = !m.verify ? '—' : !m.verify.ok ? '**MISMATCH**' : m.verify.metadataDiffs ? `matches (${m.verify.metadataDiffs} metadata diffs)` : 'matches';
    const ratio = wire === undefined || m.changedBytes === 0 ? 'n/a' : (wire / m.changedBytes).toFixed(2);
    lines.push(`| ${m.tool} | ${m.case} | ${m.wallSeconds!.toFixed(2)} | ${m.cpuSeconds!.toFixed(2)} | ${per(cpuPer)} | ${per((p) => p.peakRssMiB.toFixed(0))} | ` +
      `${wire === undefined ? 'n/a' : humanBytes(wire)} | ${m.toolBytes === undefined ? 'n/a' : humanBytes(m.toolBytes)} | ${humanBytes(m.changedBytes)} | ` +
      `${ratio} | ${verify} |`);
  }
  return lines;
}

/** Replica mismatches, failures, steps, rsync's modes and metadata differences, after the table. */
export function rowsNotes(rows: Row[]): string[] {
  const lines: string[] = [];
  const failures = rows.filter((m) => !m.ok);
  if (failures.length) lines.push('Not measured:', ...[...new Set(failures.map((m) => `- ${m.tool}, ${m.case}: ${m.error}`))], '');
  const steps = rows.filter((m) => stepsOf(m)).map((m) => `- ${m.tool}, ${m.case}: ${stepsOf(m)}`);
  if (steps.length) lines.push('Steps (s): ferry\'s from `status --json` lastTransfer.phases (the destination\'s steps run inside "commit"); btrfs: as the runner timed them:', ...steps, '');
  const modes = rows.filter((m) => m.rsyncStats && m.rsyncStats.literal + m.rsyncStats.matched > 0 && !/initial|first/.test(m.case))
    .map((m) => `- ${m.tool}, ${m.case}: ${m.rsyncStats!.mode} (literal ${humanBytes(m.rsyncStats!.literal)}, matched ${humanBytes(m.rsyncStats!.matched)}, ${m.rsyncStats!.filesTransferred} files)`);
  if (modes.length) lines.push('rsync\'s transfer mode, from its --stats:', ...modes, '');
  const meta = rows.filter((m) => m.verify && m.verify.metadataDiffs > 0).map((m) => `- ${m.tool}, ${m.case}: ${m.verify!.metadataDiffs} (${m.verify!.metadataExamples.join('; ')})`);
  if (meta.length) lines.push('Metadata differences (content identical):', ...meta, '');
  return lines;
}

/** Rows whose replica does not match its source. */
export function mismatchesOf(rows: Row[]): string[] {
  return rows.filter((m) => m.ok && m.verify && !m.verify.ok).map((m) => `${m.tool}, ${m.case}: ${m.verify!.detail}`);
}

/** The CLI's fixed cost on its path to a daemon: `ferry status` against a running daemon, several times. */
export interface CliToDaemon {
  command: string;
  runs: number;
  medianMs: number;
  p90Ms: number;
  fastestMs: number;
}

/** Times `ferry status --home HOME` (a daemon runs there) `runs` times, one after the other; undefined if one fails. */
export function measureCliToDaemon(home: string, runs = 21): CliToDaemon | undefined {
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const r = spawnSync(bins.ferry, ['status', '--home', home], { stdio: 'ignore' });
    const t = performance.now() - t0;
    if (r.status !== 0) return undefined;
    ms.push(t);
  }
  ms.sort((a, b) => a - b);
  const at = (q: number) => Math.round(ms[Math.min(ms.length - 1, Math.floor(q * ms.length))]);
  return { command: 'ferry status --home SITE (a daemon runs there)', runs, medianMs: at(0.5), p90Ms: at(0.9), fastestMs: Math.round(ms[0]) };
}

/** Its line in a report. */
export function cliToDaemonLine(c: CliToDaemon | undefined): string {
  if (!c) return 'The CLI to a daemon: n/a (a `ferry status` failed).';
  return `The CLI to a daemon (\`${c.command}\`, ${c.runs} runs one after the other): median ${c.medianMs} ms, p90 ${c.p90Ms} ms, fastest ${c.fastestMs} ms (target under 100 ms: ${c.medianMs < 100 ? 'met' : 'missed'}).`;
}
