// `npm run fuzz -- --seconds N [--target NAME[,NAME]] [--seed S] [--guided | --no-coverage]`:
// fuzz every decoder that reads bytes from disk or the network (docs/fuzzing.md).
// Each target runs in its own worker thread for N seconds: mutations of the
// seeds and of fresh structure-aware samples, with V8 block coverage measured
// per batch for the figures (--guided: inputs that reach new code join the
// corpus; --no-coverage: neither, fastest). Prints per target the executions,
// the corpus, the coverage reached and the crashes; a crash's input is saved
// to a file with a one-line reproduction, and the exit status is 1.
//
//   --repro FILE --target NAME   run one saved input and say how it ends
//   --execs N                    stop each target after N executions instead
//   --out DIR                    where crash inputs go (default fuzz-crashes/)
//   --list                       the targets, one line each
//   --json                       the figures as JSON on stdout
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import { describeOutcome, execute, type Crash, type FuzzStats } from '../test/fuzz/engine.ts';
import type { WorkerInput } from '../test/fuzz/worker.ts';

const ROOT = resolve(new URL('..', import.meta.url).pathname);
const WORKER = new URL('../test/fuzz/worker.ts', import.meta.url);

interface Options {
  seconds: number;
  execs?: number;
  targets: string[];
  seed: number;
  guided: boolean;
  /** measure coverage (always when guided) */
  measure: boolean;
  out: string;
  repro?: string;
  list: boolean;
  json: boolean;
}

function usage(msg: string): never {
  process.stderr.write(`fuzz: ${msg}\nusage: node scripts/fuzz.ts --seconds N [--target NAME[,NAME]] [--seed S] [--guided | --no-coverage] [--execs N] [--out DIR] [--json] | --repro FILE --target NAME | --list\n`);
  process.exit(2);
}

function parseArgs(argv: string[]): Options {
  const o: Options = { seconds: 10, targets: [], seed: (Date.now() ^ process.pid) >>> 0, guided: false, measure: true, out: join(ROOT, 'fuzz-crashes'), list: false, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) usage(`${a} needs a value`);
      return v;
    };
    const count = (): number => {
      const v = Number(value());
      if (!Number.isSafeInteger(v) || v < 0) usage(`${a} takes a whole number`);
      return v;
    };
    switch (a) {
      case '--seconds': o.seconds = count(); break;
      case '--execs': o.execs = count(); break;
      case '--target': o.targets.push(...value().split(',').filter(Boolean)); break;
      case '--seed': o.seed = count() >>> 0; break;
      case '--guided': o.guided = true; break;
      case '--no-coverage': o.measure = false; break;
      case '--out': o.out = resolve(value()); break;
      case '--repro': o.repro = resolve(value()); break;
      case '--list': o.list = true; break;
      case '--json': o.json = true; break;
      default: usage(`unknown argument ${a}`);
    }
  }
  return o;
}

function saveCrash(out: string, c: Pick<Crash, 'target' | 'kind' | 'message' | 'stack' | 'input'>): string {
  mkdirSync(out, { recursive: true });
  const name = `${c.target}-${c.kind}-${createHash('sha256').update(c.input).digest('hex').slice(0, 12)}`;
  const file = join(out, `${name}.bin`);
  writeFileSync(file, c.input);
  writeFileSync(join(out, `${name}.txt`), `${c.kind}: ${c.message}\n${c.stack}\n`);
  return file;
}

function reproLine(target: string, file: string): string {
  return `node scripts/fuzz.ts --target ${target} --repro ${relative(process.cwd(), file) || file}`;
}

interface TargetRun {
  stats?: FuzzStats;
  crashes: Array<{ kind: string; message: string; file: string }>;
  error?: string;
}

/** One target in a worker, watched for hangs and memory; crashes are saved as they come. */
function runTarget(name: string, o: Options, maxLength: number, timeoutMs: number): Promise<TargetRun> {
  const current = new SharedArrayBuffer(maxLength + 4);
  const heartbeat = new SharedArrayBuffer(4);
  const data: WorkerInput = { target: name, ms: o.execs === undefined ? o.seconds * 1000 : undefined, execs: o.execs, seed: o.seed, guided: o.guided, measure: o.measure, current, heartbeat };
  const worker = new Worker(WORKER, { workerData: data, resourceLimits: { maxOldGenerationSizeMb: 2048 } });
  const run: TargetRun = { crashes: [] };
  const lastInput = (): Buffer => Buffer.from(new Uint8Array(current, 4, new DataView(current).getUint32(0, true)));
  const report = (c: Pick<Crash, 'target' | 'kind' | 'message' | 'stack' | 'input'>) => {
    const file = saveCrash(o.out, c);
    run.crashes.push({ kind: c.kind, message: c.message, file });
    process.stderr.write(`  CRASH ${name} (${c.kind}): ${c.message.split('\n')[0]}\n    input: ${file}\n    reproduce: ${reproLine(name, file)}\n`);
  };
  return new Promise((resolveRun) => {
    let beats = -1;
    let stopping = false;
    let still = 0;
    const hangMs = Math.max(30_000, timeoutMs * 3);
    const watch = setInterval(() => {
      const now = Atomics.load(new Int32Array(heartbeat), 0);
      still = now === beats ? still + 500 : 0;
      beats = now;
      const rss = process.memoryUsage.rss();
      if (!stopping && (still >= hangMs || rss > 6 * 1024 ** 3)) {
        stopping = true;
        const kind = still >= hangMs ? 'timeout' : 'memory';
        report({ target: name, kind, message: kind === 'timeout' ? `no progress for ${hangMs / 1000} s (the input never returned)` : `the process grew to ${Math.round(rss / 1024 ** 2)} MiB`, stack: '', input: lastInput() });
        void worker.terminate();
      }
    }, 500);
    worker.on('message', (m: { type: 'crash'; crash: Crash } | { type: 'done'; stats: FuzzStats }) => {
      if (m.type === 'crash') report({ ...m.crash, input: Buffer.from(m.crash.input) });
      else run.stats = m.stats;
    });
    worker.on('error', (err: Error & { code?: string }) => {
      if (err.code === 'ERR_WORKER_OUT_OF_MEMORY') report({ target: name, kind: 'memory', message: 'the heap ran out while this input ran', stack: String(err.stack), input: lastInput() });
      else run.error = String(err.stack ?? err);
    });
    worker.on('exit', () => {
      clearInterval(watch);
      resolveRun(run);
    });
  });
}

function table(runs: Array<[string, TargetRun]>): string {
  const head = ['target', 'execs', 'execs/s', 'corpus', 'functions', 'positions', 'accepted', 'refused', 'crashes'];
  const rows = runs.map(([name, r]) => {
    const s = r.stats;
    const refused = s ? Object.values(s.refused).reduce((a, b) => a + b, 0) : 0;
    return [
      name, String(s?.execs ?? '-'), String(s?.execsPerSecond ?? '-'), s ? `${s.seeds}->${s.corpus}` : '-', String(s?.coverage?.functions ?? '-'),
      String(s?.coverage?.positions ?? '-'), String(s?.accepted ?? '-'), String(refused), String(r.crashes.length) + (r.error ? ' (worker failed)' : ''),
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  return [head, ...rows].map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ')).join('\n');
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const { TARGETS } = await import('../test/fuzz/targets/index.ts');
  if (o.list) {
    for (const t of TARGETS) process.stdout.write(`${t.name.padEnd(14)} ${t.about}\n`);
    return;
  }
  if (o.guided && !o.measure) usage('--guided needs coverage: drop --no-coverage');
  for (const n of o.targets) if (!TARGETS.some((t) => t.name === n)) usage(`no target ${n}; --list shows them`);
  if (o.repro) {
    if (o.targets.length !== 1) usage('--repro needs one --target');
    const t = TARGETS.find((x) => x.name === o.targets[0])!;
    await t.setup?.();
    try {
      const outcome = await execute(t, readFileSync(o.repro));
      process.stdout.write(`${t.name}: ${describeOutcome(outcome)}\n`);
      process.exitCode = outcome.ok ? 0 : 1;
    } finally {
      await t.teardown?.();
    }
    return;
  }
  const chosen = o.targets.length ? TARGETS.filter((t) => o.targets.includes(t.name)) : TARGETS;
  process.stderr.write(`fuzzing ${chosen.length} target(s), ${o.execs === undefined ? `${o.seconds} s` : `${o.execs} executions`} each, seed ${o.seed}, ${o.guided ? 'coverage-guided' : o.measure ? 'unguided, coverage measured' : 'unguided, no coverage'}\n`);
  const runs: Array<[string, TargetRun]> = [];
  for (const t of chosen) {
    process.stderr.write(`- ${t.name}: ${t.about}\n`);
    const r = await runTarget(t.name, o, t.maxLength, t.timeoutMs ?? 5000);
    if (r.error) process.stderr.write(`  worker failed: ${r.error}\n`);
    if (r.stats) {
      const g = r.stats.growth.map((p) => `${p.seconds}s:${p.positions}`).join(' ');
      process.stderr.write(`  ${r.stats.execs} execs (${r.stats.execsPerSecond}/s), corpus ${r.stats.seeds} -> ${r.stats.corpus}, slowest ${Math.round(r.stats.slowestMs)} ms, most memory one input added ${(r.stats.largestMemory / 2 ** 20).toFixed(1)} MiB${r.stats.coverage ? `, ${r.stats.coverage.takes} coverage takes (${r.stats.coverage.takeMs} ms), coverage growth ${g}` : ''}\n`);
    }
    runs.push([t.name, r]);
  }
  const crashes = runs.reduce((n, [, r]) => n + r.crashes.length + (r.error ? 1 : 0), 0);
  if (o.json) process.stdout.write(JSON.stringify(runs.map(([name, r]) => ({ name, ...r })), null, 2) + '\n');
  else process.stdout.write(`${table(runs)}\n`);
  if (crashes) {
    // with --json, stdout is the JSON alone
    const out = o.json ? process.stderr : process.stdout;
    out.write(`\n${crashes} crash(es):\n`);
    for (const [name, r] of runs) {
      for (const c of r.crashes) out.write(`  ${name} ${c.kind}: ${c.message.split('\n')[0]}\n    ${reproLine(name, c.file)}\n`);
      if (r.error) out.write(`  ${name}: the worker failed: ${r.error.split('\n')[0]}\n`);
    }
  }
  process.exitCode = crashes ? 1 : 0;
}

await main();
