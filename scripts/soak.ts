// `npm run soak -- --minutes N --seed S [--sites 3]`: real daemons on loopback, every link through a
// fault proxy, a seeded generator of weighted actions and faults, and a checker after every step
// (docs/soak.md). Prints each step, then a summary; its last line is
// `soak: N steps, M faults, K violations`, and the exit status is 1 when K > 0. A failure leaves its
// action log, a reproduction script and (shrunk) a smaller one in --out.
//
//   --steps N            stop after N steps (instead of, or before, --minutes)
//   --replay FILE        run the actions of a saved log (log.json, shrunk.json) instead of generating them
//   --keep-going         do not stop at the first violation
//   --check-every N      steps between checkpoints (default 10)
//   --shrink-minutes M   time to spend shrinking a failure (default 10; 0: none)
//   --out DIR            where failures go (default soak-failures/)
//   --quiet              the summary only
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { RSS_BUDGET } from '../test/soak/checker.ts';
import { lastLine, runSoak, type SoakResult } from '../test/soak/run.ts';
import { saveFailure, shrink, type LogFile } from '../test/soak/repro.ts';
import { KNOWN } from '../test/soak/known.ts';
import { SITE_FS_MIB } from '../test/soak/world.ts';

interface Options {
  /** undefined: --steps alone bounds the run */
  minutes?: number;
  seed: number;
  sites: number;
  steps?: number;
  replay?: string;
  keepGoing: boolean;
  checkEvery: number;
  shrinkMinutes: number;
  out: string;
  quiet: boolean;
}

function usage(msg: string): never {
  process.stderr.write(`soak: ${msg}\nusage: node scripts/soak.ts --minutes N [--seed S] [--sites 2|3] [--steps N] [--replay FILE] [--keep-going] [--check-every N] [--shrink-minutes M] [--out DIR] [--quiet]\n`);
  process.exit(2);
}

function parseArgs(argv: string[]): Options {
  const o: Options = { minutes: 5, seed: (Date.now() ^ process.pid) >>> 0, sites: 2, keepGoing: false, checkEvery: 10, shrinkMinutes: 10, out: resolve('soak-failures'), quiet: false };
  let timed = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) usage(`${a} needs a value`);
      return v;
    };
    const count = (min = 0): number => {
      const v = Number(value());
      if (!Number.isFinite(v) || v < min) usage(`${a} takes a number of at least ${min}`);
      return v;
    };
    switch (a) {
      case '--minutes': o.minutes = count(0); timed = true; break;
      case '--seed': o.seed = Math.floor(count(0)) >>> 0; break;
      case '--sites': o.sites = count(2); if (o.sites !== 2 && o.sites !== 3) usage('--sites is 2 or 3'); break;
      case '--steps': o.steps = Math.floor(count(1)); break;
      case '--replay': o.replay = resolve(value()); break;
      case '--keep-going': o.keepGoing = true; break;
      case '--check-every': o.checkEvery = Math.floor(count(1)); break;
      case '--shrink-minutes': o.shrinkMinutes = count(0); break;
      case '--out': o.out = resolve(value()); break;
      case '--quiet': o.quiet = true; break;
      default: usage(`unknown argument ${a}`);
    }
  }
  return { ...o, minutes: o.steps !== undefined && !timed ? undefined : o.minutes };
}

const MiB = (n: number) => `${Math.round(n / 2 ** 20)} MiB`;

function summary(r: SoakResult): string {
  const lines = [
    '',
    `soak summary: seed ${r.seed}, ${r.sites} sites${r.smallFs ? '' : ' (no small filesystems: no full disks)'}, ${r.steps} steps in ${Math.round(r.seconds)} s`,
    `faults: ${Object.entries(r.faults).map(([k, n]) => `${k} ${n}`).join(', ')}`,
    `checker: ${r.checker.checkpoints} checkpoints, ${r.checker.restores} restores, ${r.checker.keptWrites} overwritten writes found kept, ${r.checker.ackedRestored} acknowledged snapshots restored, ${r.checker.unverifiableWrites} writes unverifiable (written during an apply), ${r.checker.settleTimeouts} settle timeouts, ${r.checker.replicasRaced} replicas not judged (an apply began while they were read); ${r.skipped} actions had nothing to act on`,
    `memory: largest daemon RSS ${Object.entries(r.rssMax).map(([s, b]) => `${s} ${MiB(b)}`).join(', ')} (budget ${MiB(RSS_BUDGET)})`,
    ...(r.smallFs ? [`disk: most in use at a checkpoint ${Object.entries(r.usedMax).map(([s, b]) => `${s} ${MiB(b)}`).join(', ')} (of ${SITE_FS_MIB} MiB each, without full-disk ballast)`] : []),
  ];
  if (r.known.length) {
    lines.push(`known open defects met (test/soak/known.ts), not counted below:`);
    for (const v of r.known) lines.push(`  ${v.known} [${v.check}] step ${v.step}: ${v.message.split('\n')[0].slice(0, 300)}`);
    const met = new Map(KNOWN.filter((k) => r.known.some((v) => v.known === k.name)).map((k) => [k.name, k]));
    for (const k of met.values()) lines.push(`  ${k.name}: reproduction: ${k.reproduction}`);
  }
  for (const v of r.violations) lines.push(`VIOLATION [${v.check}] step ${v.step}${v.site ? ` at ${v.site}` : ''}: ${v.message}`);
  return lines.join('\n');
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  let seed = o.seed;
  let sites = o.sites;
  let replay: LogFile['ops'] | undefined;
  if (o.replay) {
    const f = JSON.parse(readFileSync(o.replay, 'utf8')) as LogFile;
    ({ seed, sites } = f);
    replay = f.ops;
  }
  const print = o.quiet ? undefined : (s: string) => process.stdout.write(`${s}\n`);
  const r = await runSoak({ seed, sites, minutes: o.minutes, maxSteps: o.steps, replay, keepGoing: o.keepGoing, checkEvery: o.checkEvery, print });
  const report = summary(r);
  process.stdout.write(`${report}\n`);
  if (r.violations.length) {
    const v = r.violations[0];
    const dir = join(o.out, `seed-${seed}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
    let shrunk: LogFile['ops'] | undefined;
    if (o.shrinkMinutes > 0 && v.step > 1) {
      process.stdout.write(`shrinking the ${v.step} actions up to the violation (at most ${o.shrinkMinutes} min)\n`);
      const s = await shrink({ seed, sites, ops: r.ops, violation: v, budgetMs: o.shrinkMinutes * 60_000, checkEvery: o.checkEvery, print });
      if (s.ops.length < v.step) shrunk = s.ops;
      process.stdout.write(`shrunk to ${s.ops.length} actions in ${s.replays} replays\n`);
    }
    const files = saveFailure(dir, { seed, sites, ops: r.ops, log: r.log, violation: v, shrunk, report });
    process.stdout.write(`failure saved in ${dir}:\n  replay:  npm run soak -- --replay ${files.log}\n  script:  ${files.script}\n`);
    if (files.shrunkLog) process.stdout.write(`  shrunk:  npm run soak -- --replay ${files.shrunkLog}\n  script:  ${files.shrunkScript}\n`);
    process.stdout.write(`  seed:    npm run soak -- --seed ${seed} --sites ${sites} --steps ${v.step}\n`);
  }
  process.stdout.write(`${lastLine(r)}\n`);
  process.exitCode = r.violations.length ? 1 : 0;
}

// Interrupted, the soak still stops its daemons and unmounts its small filesystems (exit handlers).
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));
await main();
