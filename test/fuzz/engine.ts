// The fuzzing loop: one target at a time, for a time or a number of
// executions, from a seed.
//
// Every input ends one of three ways: accepted (the target returned; it
// checks the decoder's own promises about what it accepts and throws a
// FuzzViolation when one is broken), refused (a FerryError with one of the
// target's codes), or a crash: any other exception, an unexpected code, a
// violation, an input slower than the target's time limit, or memory grown
// past its allowance while the input ran. Crashes are shrunk and reported
// with their input; the loop goes on (one report per distinct crash).
//
// Guided runs (a Coverage given) keep an input in the corpus when it reaches
// source positions no earlier input reached. Coverage is taken once per
// batch of inputs, since a take costs about as much as a few hundred
// decodes; only a batch that found something new is replayed input by input
// to tell which of them did. Unguided runs mutate the seeds and the
// structure-aware samples only.
import v8 from 'node:v8';
import { isFerryError, type ErrorCode } from '../../src/core/errors.ts';
import { havoc, mutateBytesOnce, mutateJsonOnce, mutateTextOnce, type MutationContext, type Mutator } from './mutate.ts';
import { Rng } from './rng.ts';
import type { Coverage, Take } from './coverage.ts';

export interface FuzzTarget {
  name: string;
  /** one line: what is fuzzed */
  about: string;
  /** codes a refusal may carry; any other outcome than these or acceptance is a crash */
  codes: readonly ErrorCode[];
  /** which mutations fit the input */
  kind: 'bytes' | 'text' | 'json';
  /** longest input tried */
  maxLength: number;
  /** tokens worth inserting (magics, keys) */
  dictionary?: readonly Buffer[];
  /** the seed corpus: golden fixtures and outputs of the real encoders */
  seeds(): Buffer[] | Promise<Buffer[]>;
  /** structure-aware inputs: `n` valid ones made from fast-check arbitraries by the real encoders */
  generate?(seed: number, n: number): Buffer[];
  /** state the target needs (a temporary site), made once per run */
  setup?(): void | Promise<void>;
  teardown?(): void | Promise<void>;
  /** Run one input. Returns when it was accepted, throws a FerryError when refused. */
  run(input: Buffer): unknown;
  /** memory one input may add beyond 16 MiB + 64 bytes per input byte (e.g. a declared object size the format allows) */
  memoryAllowance?: number;
  /** time limit per input, ms (default 5000) */
  timeoutMs?: number;
  /** other scripts whose coverage guides this target (e.g. the YAML parser) */
  coverAlso?: (url: string) => boolean;
}

/** A decoder broke a promise about what it accepts (e.g. accepted a non-canonical encoding). */
export class FuzzViolation extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FuzzViolation';
  }
}

export type CrashKind = 'exception' | 'unexpected-code' | 'violation' | 'timeout' | 'memory';

export interface Crash {
  target: string;
  kind: CrashKind;
  message: string;
  stack: string;
  /** the same crash (kind, error, first frame) is reported once */
  signature: string;
  input: Buffer;
}

export interface GrowthPoint {
  seconds: number;
  execs: number;
  corpus: number;
  positions: number;
}

export interface FuzzStats {
  target: string;
  guided: boolean;
  seed: number;
  execs: number;
  seconds: number;
  execsPerSecond: number;
  accepted: number;
  refused: Record<string, number>;
  corpus: number;
  seeds: number;
  coverage?: { positions: number; functions: number; scripts: number; takes: number; takeMs: number };
  growth: GrowthPoint[];
  crashes: Crash[];
  /** the slowest input, ms */
  slowestMs: number;
  /** the largest memory one input added, bytes */
  largestMemory: number;
}

export interface FuzzOptions {
  seed: number;
  /** stop after this long (ms), or after `execs` executions, whichever first */
  ms?: number;
  execs?: number;
  coverage?: Coverage;
  /** keep inputs that reach new code (default); false: coverage is only measured, for comparing with guided runs */
  guide?: boolean;
  /** inputs per coverage take (default: sized so that takes cost about a fifth of the run) */
  batch?: number;
  /** called before each execution (the runner records the input, so a hang or an abort can be reported) */
  onExec?: (input: Buffer) => void;
  onCrash?: (c: Crash) => void;
  /** most distinct crashes reported before the run stops */
  maxCrashes?: number;
  /** shrink crashing inputs (default true) */
  minimize?: boolean;
}

export type Outcome = { ok: true; code?: ErrorCode; message?: string; ms: number; memory: number } | { ok: false; crash: Omit<Crash, 'target' | 'input'>; ms: number; memory: number };

const MUTATORS: Record<FuzzTarget['kind'], Mutator> = {
  bytes: mutateBytesOnce,
  text: (b, ctx) => (ctx.rng.chance(0.8) ? mutateTextOnce(b, ctx) : mutateBytesOnce(b, ctx)),
  json: (b, ctx) => (ctx.rng.chance(0.85) ? mutateJsonOnce(b, ctx) : mutateBytesOnce(b, ctx)),
};

function isPromise(v: unknown): v is Promise<unknown> {
  return v !== null && typeof v === 'object' && typeof (v as { then?: unknown }).then === 'function';
}

function firstFrame(stack: string): string {
  const lines = stack.split('\n').slice(1).map((l) => l.trim());
  const mine = lines.find((l) => l.includes('/src/')) ?? lines[0] ?? '';
  // file and line (not column): one place, one crash
  return mine.replace(/:\d+\)?$/, '').replace(/^at /, '');
}

/** Runs one input and says how it ended. Exported for reproductions (scripts/fuzz.ts --repro). */
export async function execute(target: FuzzTarget, input: Buffer): Promise<Outcome> {
  const timeoutMs = target.timeoutMs ?? 5000;
  const before = v8.getHeapStatistics();
  const t0 = performance.now();
  let error: unknown;
  let failed = false;
  let result: unknown;
  try {
    result = target.run(input);
    if (isPromise(result)) {
      let timer: NodeJS.Timeout | undefined;
      const limit = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new HangError(`no answer within ${timeoutMs} ms`)), timeoutMs);
      });
      try {
        result = await Promise.race([result, limit]);
      } finally {
        clearTimeout(timer);
      }
    }
  } catch (err) {
    failed = true;
    error = err;
  }
  const ms = performance.now() - t0;
  const after = v8.getHeapStatistics();
  // GC only lowers these, so the growth seen is at most what the input allocated: a sound lower bound.
  const memory = after.external_memory - before.external_memory + (after.used_heap_size - before.used_heap_size);
  void result;
  const allowance = 16 * 1024 * 1024 + 64 * input.length + (target.memoryAllowance ?? 0);
  const crash = (kind: CrashKind, message: string, stack: string, sig: string): Outcome => ({ ok: false, ms, memory, crash: { kind, message, stack, signature: `${kind}: ${sig}` } });
  if (memory > allowance) return crash('memory', `one input of ${input.length} bytes grew memory by ${memory} bytes (allowed ${allowance})`, '', 'memory');
  if (error instanceof HangError || ms > timeoutMs) return crash('timeout', `input took ${Math.round(ms)} ms (limit ${timeoutMs} ms)`, '', 'timeout');
  if (!failed) return { ok: true, ms, memory };
  if (error instanceof FuzzViolation) return crash('violation', error.message, error.stack ?? '', firstFrame(error.stack ?? ''));
  if (isFerryError(error)) {
    if (target.codes.includes(error.code)) return { ok: true, code: error.code, message: error.message, ms, memory };
    return crash('unexpected-code', `${error.code}: ${error.message}`, error.stack ?? '', `${error.code} ${firstFrame(error.stack ?? '')}`);
  }
  const e = error as Error;
  const name = e?.constructor?.name ?? typeof error;
  return crash('exception', `${name}: ${e?.message ?? String(error)}`, e?.stack ?? String(error), `${name} ${firstFrame(e?.stack ?? '')}`);
}

class HangError extends Error {}

/** Shrink a crashing input while it keeps crashing the same way (at most `budget` tries). */
async function shrink(target: FuzzTarget, input: Buffer, signature: string, budget = 400): Promise<Buffer> {
  let best = input;
  let tries = 0;
  for (let chunk = Math.max(1, best.length >> 1); chunk >= 1 && tries < budget; chunk >>= 1) {
    for (let at = 0; at < best.length && tries < budget; ) {
      const cand = Buffer.concat([best.subarray(0, at), best.subarray(at + chunk)]);
      tries++;
      const o = await execute(target, cand);
      if (!o.ok && o.crash.signature === signature) best = cand;
      else at += chunk;
    }
  }
  return best;
}

const GROWTH_AT = [1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 180, 240, 300, 450, 600, 900, 1200, 1800, 3600];

export async function fuzz(target: FuzzTarget, options: FuzzOptions): Promise<FuzzStats> {
  const rng = new Rng(options.seed);
  const cov = options.coverage;
  const maxCrashes = options.maxCrashes ?? 10;
  const started = performance.now();
  const deadline = options.ms === undefined ? Infinity : started + options.ms;
  const maxExecs = options.execs ?? Infinity;
  const stats: FuzzStats = {
    target: target.name, guided: !!cov, seed: options.seed, execs: 0, seconds: 0, execsPerSecond: 0, accepted: 0, refused: {},
    corpus: 0, seeds: 0, growth: [], crashes: [], slowestMs: 0, largestMemory: 0,
  };
  stats.guided = !!cov && options.guide !== false;
  const signatures = new Set<string>();
  const seeds = (await target.seeds()).map((b) => b.subarray(0, target.maxLength));
  const corpus: Buffer[] = [...seeds];
  stats.seeds = seeds.length;
  let samples: Buffer[] = [];
  const refreshSamples = () => {
    if (target.generate) samples = target.generate(rng.u32(), 32);
  };
  refreshSamples();
  const ctx: MutationContext = {
    rng,
    other: () => (samples.length && rng.chance(0.3) ? rng.pick(samples) : rng.pick(corpus)),
    dictionary: target.dictionary ?? [],
    maxLength: target.maxLength,
  };
  const mutator = MUTATORS[target.kind];
  // The shorter of two corpus entries: short inputs run faster and mutate more to the point.
  const pickEntry = (): Buffer => {
    const a = rng.pick(corpus);
    const b = rng.pick(corpus);
    return a.length <= b.length ? a : b;
  };

  const record = async (input: Buffer, o: Outcome): Promise<void> => {
    stats.execs++;
    if (o.ms > stats.slowestMs) stats.slowestMs = o.ms;
    if (o.memory > stats.largestMemory) stats.largestMemory = o.memory;
    if (o.ok) {
      if (o.code) stats.refused[o.code] = (stats.refused[o.code] ?? 0) + 1;
      else stats.accepted++;
      return;
    }
    if (signatures.has(o.crash.signature)) return;
    signatures.add(o.crash.signature);
    const small = options.minimize === false || o.crash.kind === 'timeout' || o.crash.kind === 'memory' ? input : await shrink(target, input, o.crash.signature);
    const c: Crash = { target: target.name, ...o.crash, input: small };
    stats.crashes.push(c);
    options.onCrash?.(c);
  };
  const run = async (input: Buffer): Promise<Outcome> => {
    options.onExec?.(input);
    return execute(target, input);
  };
  let nextGrowth = 0;
  const growth = (force = false) => {
    const s = (performance.now() - started) / 1000;
    if (!force && (nextGrowth >= GROWTH_AT.length || s < GROWTH_AT[nextGrowth])) return;
    while (nextGrowth < GROWTH_AT.length && s >= GROWTH_AT[nextGrowth]) nextGrowth++;
    stats.growth.push({ seconds: Math.round(s * 10) / 10, execs: stats.execs, corpus: corpus.length, positions: cov?.summary().positions ?? 0 });
  };
  const done = () => stats.execs >= maxExecs || performance.now() >= deadline || stats.crashes.length >= maxCrashes;

  // The seeds first, one take each when guided: what they reach is the baseline.
  cov?.take();
  for (const s of [...seeds, ...samples]) {
    await record(s, await run(s));
    if (cov) cov.merge(cov.take());
  }
  growth(true);

  // Which inputs of a batch reached something new: halves replayed, each with its own take,
  // down to single inputs (a few takes per new input instead of one take per input).
  const attribute = async (inputs: Buffer[]): Promise<void> => {
    const mid = inputs.length >> 1;
    for (const half of [inputs.slice(0, mid), inputs.slice(mid)]) {
      if (half.length === 0) continue;
      for (const input of half) await run(input);
      const t = cov!.take();
      if (cov!.novelty(t) === 0) continue;
      if (half.length > 1) await attribute(half);
      else {
        cov!.merge(t);
        corpus.push(half[0]);
      }
    }
  };

  let batchSize = options.batch ?? 64;
  while (!done()) {
    const batch: Buffer[] = [];
    const t0 = performance.now();
    for (let i = 0; i < batchSize && !done(); i++) {
      const fresh = samples.length > 0 && rng.chance(0.1);
      const base = fresh ? rng.pick(samples) : pickEntry();
      const input = fresh && rng.chance(0.3) ? base : havoc(base, ctx, mutator);
      batch.push(input);
      await record(input, await run(input));
    }
    const runMs = performance.now() - t0;
    // Let the event loop turn between batches, as a real process does between requests: Node
    // releases what failed synchronous zlib/zstd calls hold only then (see verify-pool.ts).
    await new Promise((resolve) => setImmediate(resolve));
    if (target.generate && stats.execs % 2048 < batch.length) refreshSamples();
    if (cov) {
      const t1 = performance.now();
      const whole: Take = cov.take();
      if (options.guide !== false && cov.novelty(whole) > 0) await attribute(batch);
      cov.merge(whole);
      const guideMs = performance.now() - t1;
      // A take costs milliseconds (it reports every function loaded: 2 ms for a decoder alone, 25-40
      // ms with most of ferry loaded), and a batch that reached new code is replayed to find which
      // inputs did: batches are sized so that this costs about a fifth of the time spent fuzzing.
      if (options.batch === undefined && batch.length === batchSize) {
        const want = (batchSize * 4 * guideMs) / Math.max(runMs, 0.1);
        batchSize = Math.min(4096, Math.max(8, Math.round(Math.sqrt(batchSize * want))));
      }
    }
    growth();
  }
  growth(true);
  const seconds = (performance.now() - started) / 1000;
  stats.seconds = Math.round(seconds * 10) / 10;
  stats.execsPerSecond = Math.round(stats.execs / seconds);
  stats.corpus = corpus.length;
  if (cov) stats.coverage = { ...cov.summary(), takes: cov.takes, takeMs: Math.round(cov.takeMs) };
  return stats;
}

/** The outcome of one input, in words (for reproductions). */
export function describeOutcome(o: Outcome): string {
  if (o.ok) return o.code ? `refused with ${o.code}: ${o.message}` : 'accepted';
  return `CRASH (${o.crash.kind}): ${o.crash.message}\n${o.crash.stack}`;
}

