// The side-by-side benchmark: ferry's local snapshot engine, restic and borg
// on the same generated data, in one run.
//
//   npm run bench -- [--scale 1] [--seed 1] [--work DIR] [--tools ferry,restic,borg]
//                    [--no-image] [--out bench/out] [--ferry BIN] [--settle 3]
//
// Sequence (every repository fresh, the data generated once, nothing deleted
// between timed runs):
//   generate tree and image -> read the tree once (warm cache)
//   -> each tool: init, first snapshot of the tree            "tree: first"
//   -> standard change (change.ts)
//   -> each tool: snapshot                                    "tree: incremental"
//   -> each tool: snapshot again, nothing changed             "tree: unchanged"
//   -> read the image once -> each tool: first snapshot       "image: first"
//   -> image change -> each tool: snapshot                    "image: changed"
// Every timed run goes through GNU time (wall, user+sys CPU, peak RSS); the
// bytes a run added are the repository's file sizes after minus before.
// Results: a Markdown table on stdout and in bench/out/<timestamp>.md, with
// the raw numbers in bench/out/<timestamp>.json.

import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { changeImage, type ChangeStats, changeTree, type ImageChangeStats } from './change.ts';
import { ensureFresh, footprint, generateImage, generateTree, type GenStats, type ImageStats, parseScale, parseSeed } from './gen.ts';
import { humanBytes, lastLines, round2, syncDisks, timestamp, warmCache } from './common.ts';
import { checkFreeSpace, describeMachine, DiskEstimate, type DiskNeed, diskUsed, type Machine, machineOf } from './sysinfo.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
let FERRY = join(ROOT, 'bin', 'ferry');
const GNU_TIME = '/usr/bin/time';

type DataSet = 'tree' | 'image';
type CaseName = 'tree: first' | 'tree: incremental' | 'tree: unchanged' | 'image: first' | 'image: changed';

/** ferry/borg wall-time targets (docs/benchmark.md); image cases have none yet. */
const TARGETS: Partial<Record<CaseName, number>> = {
  'tree: first': 0.4,
  'tree: incremental': 0.25,
  'tree: unchanged': 0.15,
};
const RSS_TARGET_MIB = 256;

interface Command {
  argv: string[];
  env: Record<string, string>;
}

/** How to drive one tool: set up a fresh repository and take snapshot n of the target. */
interface Tool {
  name: string;
  version(): string;
  setup(repo: string, set: DataSet, target: string): Command[];
  snapshot(repo: string, set: DataSet, target: string, n: number): Command;
}

interface Measurement {
  tool: string;
  case: CaseName;
  ok: boolean;
  error?: string;
  wallSeconds?: number;
  cpuSeconds?: number;
  userSeconds?: number;
  sysSeconds?: number;
  peakRssMiB?: number;
  bytesAdded?: number;
  repoBytesAfter?: number;
  toolOutput?: unknown; // ferry --json result
  command: string;
}

function makeTools(work: string): Tool[] {
  const resticEnv = { RESTIC_PASSWORD: 'bench', RESTIC_CACHE_DIR: join(work, 'cache', 'restic') };
  const borgEnv = {
    BORG_PASSPHRASE: '',
    BORG_BASE_DIR: join(work, 'cache', 'borg'),
    BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes',
    BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes',
  };
  const volume = (set: DataSet): string => (set === 'tree' ? 'data' : 'img');
  return [
    {
      name: 'ferry',
      version: () => firstLine(run([FERRY, '--version'], {})) || 'unknown',
      setup: (home, set, target) => [
        { argv: [FERRY, 'init', '--home', home, '--name', 'bench'], env: {} },
        {
          argv: [FERRY, 'volume', 'create', volume(set), '--member', set === 'tree' ? target : `image:${target}`, '--home', home],
          env: {},
        },
      ],
      snapshot: (home, set) => ({ argv: [FERRY, 'snapshot', 'create', volume(set), '--home', home, '--json'], env: {} }),
    },
    {
      name: 'restic',
      version: () => firstLine(run(['restic', 'version'], {})),
      setup: (repo) => [{ argv: ['restic', 'init', '--repo', repo], env: resticEnv }],
      snapshot: (repo, _set, target) => ({ argv: ['restic', 'backup', '--repo', repo, target], env: resticEnv }),
    },
    {
      name: 'borg',
      version: () => firstLine(run(['borg', '--version'], {})),
      setup: (repo) => [{ argv: ['borg', 'init', '--encryption=none', repo], env: borgEnv }],
      snapshot: (repo, _set, target, n) => ({ argv: ['borg', 'create', `${repo}::snap${n}`, target], env: borgEnv }),
    },
  ];
}

function firstLine(text: string): string {
  return text.split('\n').find((l) => l.trim() !== '')?.trim() ?? '';
}

/** Runs a short command, returns stdout ('' on failure). */
function run(argv: string[], env: Record<string, string>): string {
  const r = spawnSync(argv[0], argv.slice(1), { env: { ...process.env, ...env }, encoding: 'utf8' });
  return r.status === 0 ? r.stdout : '';
}

/** Runs a setup command, logging its output; returns an error message or null. */
function runLogged(cmd: Command, log: string): string | null {
  const out = openSync(`${log}.out`, 'w');
  const err = openSync(`${log}.err`, 'w');
  try {
    const r = spawnSync(cmd.argv[0], cmd.argv.slice(1), { env: { ...process.env, ...cmd.env }, stdio: ['ignore', out, err] });
    if (r.error) return r.error.message;
    if (r.status !== 0) return `exit ${r.status}: ${lastLines(`${log}.err`)}`;
    return null;
  } finally {
    closeSync(out);
    closeSync(err);
  }
}

/** Sum of the sizes of all regular files under dir (like du -sb without directories). */
export function dirBytes(dir: string): number {
  if (!existsSync(dir)) return 0;
  let total = 0;
  const visit = (d: string): void => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const path = join(d, entry.name);
      if (entry.isDirectory()) visit(path);
      else if (entry.isFile()) total += lstatSync(path).size;
    }
  };
  visit(dir);
  return total;
}

/** One timed snapshot run through GNU time. */
function measure(tool: Tool, caseName: CaseName, cmd: Command, repo: string, log: string): Measurement {
  const before = dirBytes(repo);
  syncDisks();
  const timeFile = `${log}.time`;
  const out = openSync(`${log}.out`, 'w');
  const err = openSync(`${log}.err`, 'w');
  const command = cmd.argv.join(' ');
  let r;
  try {
    r = spawnSync(GNU_TIME, ['-f', '%e %U %S %M', '-o', timeFile, ...cmd.argv], {
      env: { ...process.env, ...cmd.env },
      stdio: ['ignore', out, err],
    });
  } finally {
    closeSync(out);
    closeSync(err);
  }
  if (r.error) return { tool: tool.name, case: caseName, ok: false, error: r.error.message, command };
  if (r.status !== 0) {
    return { tool: tool.name, case: caseName, ok: false, error: `exit ${r.status}: ${lastLines(`${log}.err`)}`, command };
  }
  const fields = readFileSync(timeFile, 'utf8').trim().split('\n').at(-1)!.split(' ').map(Number);
  const [wall, user, sys, rssKiB] = fields;
  const after = dirBytes(repo);
  const m: Measurement = {
    tool: tool.name,
    case: caseName,
    ok: true,
    wallSeconds: wall,
    cpuSeconds: round2(user + sys),
    userSeconds: user,
    sysSeconds: sys,
    peakRssMiB: Math.round((rssKiB / 1024) * 10) / 10,
    bytesAdded: after - before,
    repoBytesAfter: after,
    command,
  };
  if (tool.name === 'ferry') {
    try {
      m.toolOutput = JSON.parse(readFileSync(`${log}.out`, 'utf8'));
    } catch {
      // Not JSON: leave it in the log.
    }
  }
  return m;
}

interface ToolState {
  tool: Tool;
  repo: string;
  ready: boolean;
  reason?: string; // why it is not ready
  snapshots: number;
}

interface Phase {
  set: DataSet;
  target: string;
  states: ToolState[];
}

function setupPhase(tools: Tool[], set: DataSet, target: string, work: string, log: (s: string) => void): Phase {
  const states: ToolState[] = [];
  for (const tool of tools) {
    const repo = join(work, 'repos', `${tool.name}-${set}`);
    const state: ToolState = { tool, repo, ready: true, snapshots: 0 };
    mkdirSync(dirname(repo), { recursive: true });
    const commands = tool.setup(repo, set, target);
    for (const [i, cmd] of commands.entries()) {
      const error = runLogged(cmd, join(work, 'logs', `${tool.name}-${set}-setup${i}`));
      if (error) {
        state.ready = false;
        state.reason = `not available: \`${cmd.argv.slice(0, 4).map((a) => (a === FERRY ? './bin/ferry' : a)).join(' ')}\` failed (${error})`;
        log(`  ${tool.name}: setup failed: ${error}`);
        break;
      }
    }
    states.push(state);
  }
  return { set, target, states };
}

function runCase(phase: Phase, caseName: CaseName, work: string, results: Measurement[], log: (s: string) => void): void {
  for (const state of phase.states) {
    const slug = `${state.tool.name}-${caseName.replace(/[^a-z]+/g, '-')}`;
    if (!state.ready) {
      results.push({ tool: state.tool.name, case: caseName, ok: false, error: state.reason, command: '' });
      log(`  ${caseName} ${state.tool.name}: n/a`);
      continue;
    }
    state.snapshots++;
    const cmd = state.tool.snapshot(state.repo, phase.set, phase.target, state.snapshots);
    const m = measure(state.tool, caseName, cmd, state.repo, join(work, 'logs', slug));
    results.push(m);
    if (!m.ok) {
      // Later cases of this data set would compare against a missing parent.
      state.ready = false;
      state.reason = `not available: an earlier snapshot failed (${m.error})`;
      log(`  ${caseName} ${state.tool.name}: FAILED ${m.error}`);
    } else {
      log(`  ${caseName} ${state.tool.name}: ${m.wallSeconds} s wall, ${m.cpuSeconds} s CPU, ${m.peakRssMiB} MiB, +${humanBytes(m.bytesAdded!)}`);
    }
  }
}

interface Report {
  started: string;
  finished: string;
  totalSeconds: number;
  scale: number;
  seed: number;
  work: string;
  machine: Machine;
  disk: { estimatedBytes: number; usedBytes: number; freeBeforeBytes: number };
  versions: Record<string, string>;
  flags: Record<string, string>;
  data: { tree?: GenStats; image?: ImageStats };
  change: { tree?: ChangeStats; image?: ImageChangeStats };
  phases: Record<string, number>;
  results: Measurement[];
}

/** What a run writes: the data, and a repository per tool and data set (restic and ferry compress with zstd, borg with lz4). */
function diskNeed(seed: number, scale: number, tools: number, image: boolean): DiskNeed {
  const f = footprint(seed, scale);
  const repo = (random: number, text: number): number => (random + text / 2) * 1.2;
  const est = new DiskEstimate().add('data: tree', f.treeAllocated * 1.05, f.files + f.directories);
  est.add(`repositories of the tree (${tools})`, tools * repo(f.treeRandomBytes, f.treeTextBytes) * 1.05, tools * 2000);
  if (image) {
    est.add('data: image', f.imageAllocated, 1);
    est.add(`repositories of the image (${tools})`, tools * repo(f.imageRandomBytes, f.imageTextBytes) * 1.05, tools * 2000);
  }
  return est.need;
}

function formatReport(r: Report): string {
  const lines: string[] = [];
  lines.push(`# ferry benchmark, ${r.started}`, '');
  lines.push(`scale ${r.scale}, seed ${r.seed}; ${describeMachine(r.machine)}`);
  lines.push(`disk: estimated ${humanBytes(r.disk.estimatedBytes)} before the run (${humanBytes(r.disk.freeBeforeBytes)} free), used ${Number.isNaN(r.disk.usedBytes) ? 'n/a' : humanBytes(r.disk.usedBytes)} (du of the work directory after the run)`);
  lines.push(`tools: ${Object.entries(r.versions).map(([k, v]) => `${k}: ${v}`).join('; ')}`, '');
  if (r.data.tree) {
    const t = r.data.tree;
    lines.push(`tree: ${t.files} files in ${t.directories} directories, ${humanBytes(t.bytes)} (${humanBytes(t.randomBytes)} random, ${humanBytes(t.textBytes)} text), generated in ${t.seconds.toFixed(1)} s`);
  }
  if (r.change.tree) {
    const c = r.change.tree;
    lines.push(`change: ${c.modified.files} files modified, ${c.appended.files} appended, ${c.largeRegions.regions} regions in ${c.largeRegions.files} large files, ${c.added.files} added, ${c.deleted.files} deleted: ${humanBytes(c.changedBytes)} (${c.changedPercent} % of the tree)`);
  }
  if (r.data.image) {
    const i = r.data.image;
    lines.push(`image: ${humanBytes(i.size)} (${humanBytes(i.randomBytes)} random, ${humanBytes(i.textBytes)} text, ${humanBytes(i.zeroBytes)} written zeros, ${humanBytes(i.holeBytes)} holes)` +
      (r.change.image ? `; change: ${r.change.image.writes} writes of 64 KiB` : ''));
  }
  lines.push('');
  lines.push('| tool | case | wall s | CPU s | peak RSS MiB | bytes added |');
  lines.push('|---|---|---:|---:|---:|---:|');
  for (const m of r.results) {
    if (m.ok) {
      lines.push(`| ${m.tool} | ${m.case} | ${m.wallSeconds!.toFixed(2)} | ${m.cpuSeconds!.toFixed(2)} | ${m.peakRssMiB!.toFixed(1)} | ${humanBytes(m.bytesAdded!)} |`);
    } else {
      lines.push(`| ${m.tool} | ${m.case} | n/a | n/a | n/a | n/a |`);
    }
  }
  lines.push('');
  const failures = r.results.filter((m) => !m.ok);
  const reasons = [...new Set(failures.map((m) => `${m.tool}: ${m.error}`))];
  if (reasons.length) {
    lines.push('Not measured:', ...reasons.map((x) => `- ${x}`), '');
  }

  // ferry against the others, per case.
  const find = (tool: string, c: CaseName): Measurement | undefined => r.results.find((m) => m.tool === tool && m.case === c && m.ok);
  const cases = [...new Set(r.results.map((m) => m.case))];
  if (r.results.some((m) => m.tool === 'ferry')) {
    lines.push('| case | ferry/borg wall | target | met | ferry/restic wall | ferry peak RSS MiB | < 256 MiB |');
    lines.push('|---|---:|---:|:---:|---:|---:|:---:|');
    for (const c of cases) {
      const ferry = find('ferry', c);
      const borg = find('borg', c);
      const restic = find('restic', c);
      const target = TARGETS[c];
      const vsBorg = ferry && borg ? ferry.wallSeconds! / borg.wallSeconds! : undefined;
      const vsRestic = ferry && restic ? ferry.wallSeconds! / restic.wallSeconds! : undefined;
      lines.push(`| ${c} | ${vsBorg === undefined ? 'n/a' : vsBorg.toFixed(2)} | ${target === undefined ? '—' : `<= ${target}`} | ` +
        `${vsBorg === undefined || target === undefined ? '—' : vsBorg <= target ? 'yes' : 'NO'} | ` +
        `${vsRestic === undefined ? 'n/a' : vsRestic.toFixed(2)} | ${ferry ? ferry.peakRssMiB!.toFixed(1) : 'n/a'} | ` +
        `${ferry ? (ferry.peakRssMiB! < RSS_TARGET_MIB ? 'yes' : 'NO') : '—'} |`);
    }
    lines.push('');
    const reads = r.results.filter((m) => m.tool === 'ferry' && m.ok).map((m) => {
      const stats = (m.toolOutput as { stats?: { filesRead?: number; bytesRead?: number; filesReused?: number } } | undefined)?.stats;
      return stats ? `${m.case}: ${stats.filesRead} files read (${humanBytes(stats.bytesRead ?? 0)}), ${stats.filesReused} reused` : null;
    }).filter((x) => x !== null);
    if (reads.length) lines.push(`ferry's own counts: ${reads.join('; ')}`, '');
  }
  lines.push('Commands (repositories fresh per data set; ferry, restic and borg in that order per case unless --tools says otherwise):');
  for (const [k, v] of Object.entries(r.flags)) lines.push(`- ${k}: \`${v}\``);
  lines.push('');
  lines.push(`Phases (s): ${Object.entries(r.phases).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')}; total ${r.totalSeconds.toFixed(0)} s. Work directory: ${r.work}`);
  return lines.join('\n') + '\n';
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      scale: { type: 'string' },
      seed: { type: 'string' },
      work: { type: 'string' },
      tools: { type: 'string' },
      'no-image': { type: 'boolean' },
      out: { type: 'string' },
      ferry: { type: 'string' },
      settle: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log('usage: npm run bench -- [--scale 1] [--seed 1] [--work DIR] [--tools ferry,restic,borg] [--no-image] [--out bench/out] [--ferry BIN] [--settle 3]');
    return;
  }
  if (values.ferry) FERRY = resolve(values.ferry);
  const settleSeconds = Number(values.settle ?? '3');
  if (!(settleSeconds >= 0)) throw new Error(`--settle must be a number of seconds, got ${values.settle}`);
  // Writes older than a snapshot's start by less than a tool's timestamp
  // guard (ferry: 2 s) are not trusted from its cache, so the next run would
  // read them again. A quiet pause after writing, untimed, keeps every tool
  // out of that window, as when data changed a while before a snapshot.
  const settle = (): Promise<void> => new Promise((done) => setTimeout(done, settleSeconds * 1000));
  const scale = parseScale(values.scale);
  const seed = parseSeed(values.seed);
  const startedAt = new Date();
  const stamp = timestamp(startedAt);
  const work = resolve(values.work ?? join(tmpdir(), `ferry-bench-${stamp}`));
  const outDir = resolve(values.out ?? join(ROOT, 'bench', 'out'));
  const wanted = (values.tools ?? 'ferry,restic,borg').split(',').map((s) => s.trim()).filter(Boolean);
  const need = diskNeed(seed, scale, wanted.length, !values['no-image']);
  const space = checkFreeSpace(work, need);
  ensureFresh(work);
  mkdirSync(join(work, 'logs'), { recursive: true });
  mkdirSync(outDir, { recursive: true });
  const log = (s: string): void => console.error(s);

  const all = makeTools(work);
  const tools = wanted.map((name) => {
    const tool = all.find((t) => t.name === name);
    if (!tool) throw new Error(`unknown tool ${name}; choose from ${all.map((t) => t.name).join(', ')}`);
    return tool;
  });
  if (!existsSync(GNU_TIME)) throw new Error(`${GNU_TIME} not found: apt-get install time`);

  const versions: Record<string, string> = {};
  for (const tool of tools) versions[tool.name] = tool.version() || 'not found';
  const phases: Record<string, number> = {};
  const results: Measurement[] = [];
  const data: Report['data'] = {};
  const change: Report['change'] = {};
  const tick = (name: string, since: number): void => {
    phases[name] = (performance.now() - since) / 1000;
  };

  log(`work directory ${work}; scale ${scale}, seed ${seed}; tools ${tools.map((t) => t.name).join(', ')}`);
  const dataDir = join(work, 'data');
  const treeDir = join(dataDir, 'tree');
  const imagePath = join(dataDir, 'image.img');

  let t = performance.now();
  log('generating the tree ...');
  data.tree = await generateTree(treeDir, seed, scale);
  if (!values['no-image']) {
    log('generating the image ...');
    data.image = await generateImage(imagePath, seed, scale);
  }
  await settle();
  tick('generate', t);

  t = performance.now();
  log('reading the tree once (warm cache) ...');
  warmCache(treeDir);
  tick('warm tree', t);

  t = performance.now();
  const treePhase = setupPhase(tools, 'tree', treeDir, work, log);
  runCase(treePhase, 'tree: first', work, results, log);
  tick('tree first', t);

  t = performance.now();
  log('applying the standard change ...');
  change.tree = await changeTree(treeDir, seed, scale);
  await settle();
  tick('change', t);

  t = performance.now();
  runCase(treePhase, 'tree: incremental', work, results, log);
  runCase(treePhase, 'tree: unchanged', work, results, log);
  tick('tree incremental+unchanged', t);

  if (!values['no-image']) {
    t = performance.now();
    log('reading the image once (warm cache) ...');
    warmCache(imagePath);
    const imagePhase = setupPhase(tools, 'image', imagePath, work, log);
    runCase(imagePhase, 'image: first', work, results, log);
    change.image = changeImage(imagePath, seed, scale);
    await settle();
    runCase(imagePhase, 'image: changed', work, results, log);
    tick('image', t);
  }

  const finishedAt = new Date();
  const flags: Record<string, string> = {};
  const describe = (tool: Tool, set: DataSet, target: string): string => {
    const setup = tool.setup('REPO', set, target).map((c) => c.argv.join(' '));
    const snap = tool.snapshot('REPO', set, target, 1).argv.join(' ');
    return [...setup, snap].join(' ; ').replaceAll(FERRY, './bin/ferry').replaceAll(work, 'WORK');
  };
  for (const tool of tools) flags[`${tool.name} (tree)`] = describe(tool, 'tree', treeDir);
  flags.settle = `${settleSeconds} s pause (untimed) after generating and after each change`;
  flags.env = 'restic: RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=WORK/cache/restic; borg: BORG_PASSPHRASE= BORG_BASE_DIR=WORK/cache/borg';

  const report: Report = {
    started: startedAt.toISOString(),
    finished: finishedAt.toISOString(),
    totalSeconds: (finishedAt.getTime() - startedAt.getTime()) / 1000,
    scale,
    seed,
    work,
    machine: machineOf(work),
    disk: { estimatedBytes: need.bytes, usedBytes: diskUsed(work), freeBeforeBytes: space.freeBytes },
    versions,
    flags,
    data,
    change,
    phases,
    results,
  };
  const markdown = formatReport(report);
  process.stdout.write(markdown);
  const base = join(outDir, stamp);
  writeFileSync(`${base}.md`, markdown);
  writeFileSync(`${base}.json`, JSON.stringify(report, null, 2) + '\n');
  log(`\nwrote ${base}.md and ${base}.json; the data and repositories stay in ${work} (delete them when done, not right before another run)`);
}

main().catch((err: unknown) => {
  console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
