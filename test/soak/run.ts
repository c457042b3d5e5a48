// One soak run: set the sites up, then step (heal what has run its course, pick an action, do it,
// check), checkpoint every few steps, and at the end heal every fault, finish what is left the way
// an operator would (rerun workflows, update every mirror) and check everything once more. The same
// run replays a list of actions instead of generating them (a log, or a shrunk part of one).
import { execFileSync } from 'node:child_process';
import { FERRY_BIN, tempDir } from './harness.ts';
import { Generator, VOLUMES, describeOutcome, execute, heal, volumeMembers, type Executed, type FaultKind, type Op } from './actions.ts';
import { Checker, type Violation } from './checker.ts';
import { knownDefect } from './known.ts';
import { readView } from './view.ts';
import { World, SITE_FS_MIB } from './world.ts';

export interface SoakOptions {
  seed: number;
  /** 2 or 3 */
  sites: number;
  /** how long to generate actions for, after the setup */
  minutes?: number;
  /** at most this many steps */
  maxSteps?: number;
  /** run these actions instead of generating them */
  replay?: Op[];
  /** go on after a new violation (default: stop at the first) */
  keepGoing?: boolean;
  /** steps between checkpoints */
  checkEvery?: number;
  /** progress lines */
  print?: (line: string) => void;
}

export interface LogEntry {
  step: number;
  op: Op;
  text: string;
  healed?: string[];
  violations?: string[];
}

export interface SoakResult {
  seed: number;
  sites: number;
  steps: number;
  faults: Record<FaultKind, number>;
  faultTotal: number;
  /** violations no known defect explains */
  violations: Violation[];
  /** violations of known open defects (known.ts) */
  known: Violation[];
  /** the setup, then every step */
  log: LogEntry[];
  /** the steps' actions (what --replay takes) */
  ops: Op[];
  seconds: number;
  rssMax: Record<string, number>;
  /** most of its filesystem each site used at a checkpoint, bytes (0: no filesystem of its own) */
  usedMax: Record<string, number>;
  checker: Checker['stats'];
  skipped: number;
  /** whether the sites had small filesystems of their own (full-disk faults need them) */
  smallFs: boolean;
}

export const SITE_NAMES = ['a', 'b', 'c'];

/** The setup: pair every site with every other through its proxy, create the volumes, mirror each to every other site. */
export function setupOps(seed: number, names: string[]): Op[] {
  const ops: Op[] = [];
  for (const x of names) for (const y of names) if (x !== y) ops.push({ kind: 'ferry', site: x, args: ['site', 'add', y, `{url:${y}}`, '--id', `{id:${y}}`] });
  for (const v of VOLUMES) {
    ops.push({ kind: 'seed-data', site: v.home, volume: v.name, seed: `${seed}-${v.name}` });
    // Retention from the start, so that the stores stay within the sites' small filesystems over hours.
    ops.push({ kind: 'ferry', site: v.home, args: ['volume', 'create', v.name, ...volumeMembers(v), '--keep-last', '30'] });
    for (const to of names.filter((n) => n !== v.home)) {
      ops.push({ kind: 'ferry', site: v.home, args: ['mirror', 'create', v.name, '--to', to] });
      ops.push({ kind: 'ferry', site: v.home, args: ['mirror', 'initialize', v.name, '--to', to, '--wait'] });
    }
  }
  return ops;
}

function initHome(home: string, name: string): string {
  const out = execFileSync(FERRY_BIN, ['init', '--name', name, '--home', home, '--json'], { env: { ...process.env, FERRY_NO_PROGRESS: '1' } });
  return (JSON.parse(String(out)) as { id: string }).id;
}

const FAULT_KINDS: FaultKind[] = ['kill-daemon', 'kill-cli', 'link-cut', 'link-stall', 'link-slow', 'link-delay', 'disk-full', 'clock-step'];

export async function runSoak(o: SoakOptions): Promise<SoakResult> {
  const started = Date.now();
  const print = o.print ?? (() => {});
  const names = SITE_NAMES.slice(0, o.sites);
  const tmp = tempDir('ferry-soak-');
  const world = new World(tmp.path);
  const checker = new Checker(o.seed);
  const faults = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>;
  const log: LogEntry[] = [];
  const ops: Op[] = [];
  const violations: Violation[] = [];
  const known: Violation[] = [];
  let skipped = 0;
  let step = 0;
  let smallFs = false;
  let seen = 0;
  /** the last DR command of each kind run per site and volume, to run again at the end if its workflow is left running */
  const lastWorkflow = new Map<string, string[]>();

  /** New violations since the last look: sorted into known and new, printed. */
  const collect = (): string[] => {
    const fresh = checker.violations.slice(seen);
    seen = checker.violations.length;
    const lines: string[] = [];
    for (const v of fresh) {
      const k = knownDefect(v);
      if (k) {
        v.known = k.name;
        known.push(v);
      } else violations.push(v);
      const line = `${k ? `KNOWN (${k.name})` : 'VIOLATION'} [${v.check}] step ${v.step}: ${v.message}`;
      lines.push(line);
      print(`  ${line}`);
    }
    return lines;
  };
  const stop = () => !o.keepGoing && violations.length > 0;

  /** Heal, turning a daemon that cannot start into a violation (it is tried again next step). */
  const healSafely = async (all = false): Promise<string[]> => {
    try {
      return await heal(world, all);
    } catch (err) {
      const full = world.sites.some((s) => s.diskFullSteps > 0);
      for (const s of world.sites) if (!s.proc) s.downSteps = 0;
      if (!full) checker.violations.push({ check: 'daemon', step, message: `a daemon did not start again: ${(err as Error).message.slice(0, 3000)}` });
      return [`a daemon did not start (${full ? 'a disk is full' : 'see violations'})`];
    }
  };

  const doStep = async (op: Op, setup: boolean): Promise<void> => {
    const healed = setup ? [] : await healSafely();
    const pre = checker.before(world, op);
    let ex: Executed;
    try {
      ex = await execute(world, op);
    } catch (err) {
      // A daemon that would not start again (a clock step) is ferry's to answer for; anything else is the soak's own failure.
      // Refused with NO_SPACE while the soak holds a disk full is the clear error it must give (it cannot
      // write its runtime file): healing starts it once the space is back, as after a kill (healSafely).
      const msg = (err as Error).message;
      if (!/daemon|ferry serve/.test(msg)) throw err;
      const full = world.sites.some((s) => s.diskFullSteps > 0);
      if (!(full && /\[NO_SPACE\]/.test(msg))) checker.violations.push({ check: 'daemon', step, message: msg.slice(0, 3000) });
      ex = { text: `${JSON.stringify(op)}: ${(err as Error).message.slice(0, 200)}`, faults: [] };
    }
    if (setup && ex.outcome && ex.outcome.code !== 0) {
      throw new Error(`soak setup failed: ${ex.text}\n${ex.outcome.stdout}\n${ex.outcome.stderr}`);
    }
    if (ex.skipped) skipped++;
    for (const f of ex.faults) faults[f]++;
    if (op.kind === 'ferry' && ['failover', 'failback', 'migrate'].includes(op.args[0])) lastWorkflow.set(`${op.site}/${op.args[1]}/${op.args[0]}`, op.args);
    checker.after(world, op, ex, pre, step);
    if (!setup) await checker.afterStep(world, readView(world), step);
    const entry: LogEntry = { step, op, text: ex.text, ...(healed.length ? { healed } : {}) };
    log.push(entry);
    for (const h of healed) print(`  (${h})`);
    print(`${setup ? 'setup' : String(step).padStart(4)} ${ex.text}`);
    const v = collect();
    if (v.length) entry.violations = v;
  };

  try {
    for (const n of names) await world.addSite(n, initHome);
    await world.addLinks();
    smallFs = world.sites.every((s) => s.mounted);
    for (const s of world.sites) await world.startDaemon(s);
    print(`soak: seed ${o.seed}, ${names.length} sites (${smallFs ? `each on a ${SITE_FS_MIB} MiB tmpfs` : 'no small filesystems here: no full-disk faults'}), ${o.replay ? `replaying ${o.replay.length} actions` : o.maxSteps ? `${o.maxSteps} steps` : `${o.minutes} min`}`);
    for (const op of setupOps(o.seed, names)) await doStep(op, true);

    const gen = new Generator(o.seed, names, VOLUMES, new Set(world.sites.filter((s) => s.mounted).map((s) => s.name)));
    // Minutes of actions, counted from the end of the setup (a loaded machine's slow setup takes none of them).
    const deadline = Date.now() + (o.minutes !== undefined ? o.minutes * 60_000 : o.maxSteps !== undefined ? Infinity : 0);
    const every = o.checkEvery ?? 10;
    while (!stop()) {
      if (o.replay ? step >= o.replay.length : (o.maxSteps !== undefined && step >= o.maxSteps) || Date.now() >= deadline) break;
      step++;
      const op = o.replay ? o.replay[step - 1] : gen.next(step, readView(world));
      ops.push(op);
      await doStep(op, false);
      if (step % every === 0 && !stop()) {
        await checker.checkpoint(world, step);
        const v = collect();
        const used = smallFs ? ` (in use: ${world.sites.map((s) => `${s.name} ${Math.round((world.used(s) ?? 0) / 1048576)}`).join(', ')} of ${SITE_FS_MIB} MiB)` : '';
        print(`     checkpoint: ${v.length ? `${v.length} violation(s)` : 'ok'}${used}`);
      }
    }

    if (!stop()) {
      // The end: every fault healed, what is unfinished finished as an operator would, then every check.
      print('     end: healing every fault, finishing workflows, updating every mirror');
      for (const h of await healSafely(true)) print(`  (${h})`);
      await checker.settle(world, 120_000);
      for (const s of readView(world).values()) {
        for (const w of s.workflows) {
          const site = world.site(s.name);
          if (w.kind === 'migrate-accept') {
            // nothing to run again there: its daemon finishes it at start
            await world.stopDaemon(site, 'SIGTERM');
            await world.startDaemon(site);
            print(`  (daemon ${s.name} started again to finish migrate-accept of ${w.volume})`);
            continue;
          }
          const args = lastWorkflow.get(`${s.name}/${w.volume}/${w.kind}`)?.filter((a) => a !== '--dry-run') ?? [w.kind, w.volume];
          const r = await world.cli(site, args);
          checker.after(world, { kind: 'ferry', site: s.name, args }, { text: '', outcome: r, faults: [] }, undefined, step);
          print(`     ${s.name}$ ferry ${args.join(' ')} (its ${w.kind} was left running) -> ${describeOutcome(r)}`);
          if (w.kind === 'failback' && r.code !== 0 && /no longer serves the failback/.test(String(r.json?.error?.message ?? ''))) {
            // The new primary serves it no more: the error names the way out (abandon it), an operator takes it.
            const out = ['failover', w.volume, '--force'];
            const r2 = await world.cli(site, out);
            checker.after(world, { kind: 'ferry', site: s.name, args: out }, { text: '', outcome: r2, faults: [] }, undefined, step);
            print(`     ${s.name}$ ferry ${out.join(' ')} (as the failback's error says) -> ${describeOutcome(r2)}`);
          }
        }
      }
      await checker.settle(world, 120_000);
      const updated = new Set<string>();
      for (const s of readView(world).values()) {
        for (const m of s.mirrors) {
          if (['broken-off', 'needs-full-sync', 'uninitialized'].includes(m.state)) continue;
          const args = ['mirror', 'update', m.volume, '--to', m.peer, '--wait', '--force'];
          const r = await world.cli(world.site(s.name), args);
          checker.after(world, { kind: 'ferry', site: s.name, args }, { text: '', outcome: r, faults: [] }, undefined, step);
          if (r.code === 0 || r.code === 8) updated.add(`${s.name}/${m.id}`);
          print(`     ${s.name}$ ferry ${args.join(' ')} -> ${describeOutcome(r)}`);
        }
      }
      // Peer deletions are retried after each update of their mirror: give them a moment to be confirmed.
      const until = Date.now() + 30_000;
      while (Date.now() < until && [...readView(world).values()].some((s) => s.peerDeletions.some((d) => updated.has(`${s.name}/${d.mirror}`)))) await new Promise((r) => setTimeout(r, 500));
      await checker.afterStep(world, readView(world), step);
      await checker.checkpoint(world, step, { final: true, updated });
      const v = collect();
      print(`     final check: ${v.length ? `${v.length} violation(s)` : 'ok'}`);
    }
  } finally {
    await world.close().catch(() => {});
    // FERRY_SOAK_KEEP=1 keeps the sites (their homes and catalogs) to look into after a failure.
    if (process.env.FERRY_SOAK_KEEP) print(`sites kept in ${tmp.path} (FERRY_SOAK_KEEP)`);
    else tmp.cleanup();
  }
  return {
    seed: o.seed,
    sites: names.length,
    steps: step,
    faults,
    faultTotal: Object.values(faults).reduce((a, b) => a + b, 0),
    violations,
    known,
    log,
    ops,
    seconds: (Date.now() - started) / 1000,
    rssMax: Object.fromEntries(world.sites.map((s) => [s.name, s.rssMax])),
    usedMax: Object.fromEntries(world.sites.map((s) => [s.name, s.usedMax])),
    checker: checker.stats,
    skipped,
    smallFs,
  };
}

/** The summary's last line. */
export function lastLine(r: Pick<SoakResult, 'steps' | 'faultTotal' | 'violations'>): string {
  return `soak: ${r.steps} steps, ${r.faultTotal} faults, ${r.violations.length} violations`;
}
