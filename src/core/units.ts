// Values people write and read: durations, rates, sizes and counts. One
// parser and one spec formatter for each kind, and the bounds of every
// setting, named here and used alike by the command line, the site file, the
// catalog's readers and the wire protocol: a value one of them accepts, the
// others accept too (a mirror setting the CLI stored is never refused by a
// peer's protocol parser, an exported file always passes `config check`).
// Settings are whole numbers (seconds, bytes per second, bytes) because that
// is how they are stored and sent; parsing is exact (decimal, not floating
// point), so `1.1h` is 3960 s and `100000000w` is refused, not rounded.
// The formatters for numbers shown to people (bytes, rates, durations,
// percentages) are here too, each rounded. This module imports nothing of
// ferry's but its errors.
import { FerryError, type ErrorCode } from './errors.ts';

/** Inclusive bounds of a setting, in its unit (seconds, bytes per second, bytes, or a count). */
export interface Bounds {
  readonly min: number;
  readonly max: number;
}

/** Ten years: the longest duration any setting takes. */
export const MAX_DURATION_S = 10 * 365 * 86_400;

/** Durations, in whole seconds. */
export const DURATION = {
  /** a mirror's or a link's schedule */
  schedule: { min: 1, max: MAX_DURATION_S },
  minDelay: { min: 0, max: MAX_DURATION_S },
  maxDelay: { min: 1, max: MAX_DURATION_S },
  hookTimeout: { min: 1, max: 86_400 },
  /** `ferry events --since` */
  since: { min: 1, max: MAX_DURATION_S },
  /** `ferry status --watch` */
  watch: { min: 1, max: 86_400 },
} as const satisfies Record<string, Bounds>;

/** Rates, in whole bytes per second. */
export const RATE = {
  bandwidth: { min: 1024, max: 1024 ** 4 },
} as const satisfies Record<string, Bounds>;

/** Sizes, in whole bytes. */
export const SIZE = {
  logMaxSize: { min: 1024, max: 1024 ** 4 },
  /** the daemon's memory budget (core/memory.ts) */
  memoryBudget: { min: 96 * 1024 ** 2, max: 1024 ** 4 },
  /** releasable bytes after which an automatic collection runs (site/auto-collect.ts); 0: after every release */
  gcThreshold: { min: 0, max: 1024 ** 4 },
} as const satisfies Record<string, Bounds>;

/** Counts. */
/** How a mirror sends changed chunks (replication/link-fit.ts): `auto` by the measured link, or always or never as deltas. */
export const DELTA_MODES = ['auto', 'always', 'never'] as const;
export type DeltaMode = (typeof DELTA_MODES)[number];

export const COUNT = {
  /** replication snapshots a destination keeps */
  keep: { min: 1, max: 64 },
  logKeep: { min: 0, max: 1000 },
  retention: { min: 0, max: 1_000_000 },
  /** `ferry serve --tick`, in milliseconds */
  tickMs: { min: 10, max: 60_000 },
} as const satisfies Record<string, Bounds>;

/** The longest value text any parser looks at (beyond it, nothing valid fits). */
const MAX_TEXT = 64;

function fail(code: ErrorCode, message: string): FerryError {
  return new FerryError(code, message);
}

// ---------------------------------------------------------------- exact decimals

/** Fractions are read to this many decimals (scaled integers), which is exact for every unit below. */
const SCALE_DIGITS = 9;
const SCALE = 10n ** BigInt(SCALE_DIGITS);

/** "12.5" -> 12.5 * 10^9 as a bigint; undefined when it is not digits[.digits] or has too many decimals. */
function scaled(int: string, frac: string | undefined): bigint | undefined {
  if (frac !== undefined && frac.length > SCALE_DIGITS) return undefined;
  return BigInt(int) * SCALE + (frac ? BigInt(frac.padEnd(SCALE_DIGITS, '0')) : 0n);
}

function within(v: bigint, b: Bounds): 'low' | 'high' | 'ok' {
  return v < BigInt(b.min) ? 'low' : v > BigInt(b.max) ? 'high' : 'ok';
}

// ---------------------------------------------------------------- durations

const DURATION_UNITS_MS: Record<string, bigint> = { ms: 1n, s: 1000n, m: 60_000n, h: 3_600_000n, d: 86_400_000n, w: 604_800_000n };
const DURATION_HINT = 'a duration like 30s, 5m, 1h30m, 1d or 2w (units ms, s, m, h, d, w; a bare number is seconds)';

/** The exact length of a duration spec, in 10^-9 ms; undefined when it is not one. */
function durationScaledMs(text: string): bigint | undefined {
  if (text.length === 0 || text.length > MAX_TEXT) return undefined;
  // A bare number is seconds ("90"); otherwise every number has its unit ("1h30m").
  const bare = /^(\d+)(?:\.(\d+))?$/.exec(text);
  if (bare) {
    const v = scaled(bare[1], bare[2]);
    return v === undefined ? undefined : v * 1000n;
  }
  const re = /(\d+)(?:\.(\d+))?(ms|s|m|h|d|w)/gy;
  let total = 0n;
  let at = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) {
    const v = scaled(m[1], m[2]);
    if (v === undefined) return undefined;
    total += v * DURATION_UNITS_MS[m[3]];
    at = re.lastIndex;
  }
  return at === text.length ? total : undefined;
}

/**
 * A duration spec ("90", "90s", "15m", "1h30m", "1.5h", "2w") -> whole seconds within `bounds`,
 * or a FerryError (USAGE unless told) that says what is wrong and what is accepted.
 */
export function parseDuration(text: string, bounds: Bounds, what: string, code: ErrorCode = 'USAGE'): number {
  const t = text.trim();
  const ms = durationScaledMs(t);
  if (ms === undefined) throw fail(code, `${what} takes ${DURATION_HINT}, got ${JSON.stringify(text)}`);
  const perSecond = 1000n * SCALE;
  if (ms % perSecond !== 0n) throw fail(code, `${what} must be whole seconds, got ${JSON.stringify(text)}${bounds.min === 0 ? ' (use 0s for none)' : ` (the least is ${formatDurationSpec(bounds.min)})`}`);
  return boundedDuration(ms / perSecond, bounds, what, JSON.stringify(text), code);
}

function boundedDuration(seconds: bigint, bounds: Bounds, what: string, shown: string, code: ErrorCode): number {
  const w = within(seconds, bounds);
  if (w === 'low') throw fail(code, `${what} must be at least ${formatDurationSpec(bounds.min)}, got ${shown}`);
  if (w === 'high') throw fail(code, `${what} must be at most ${formatDurationSpec(bounds.max)}${bounds.max === MAX_DURATION_S ? ' (10 years)' : ''}, got ${shown}`);
  return Number(seconds);
}

/** A duration given as a number of seconds (JSON, YAML, the catalog, the wire): whole, within bounds. */
export function checkDuration(v: unknown, bounds: Bounds, what: string, code: ErrorCode = 'USAGE'): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw fail(code, `${what} must be a number of seconds, got ${JSON.stringify(v) ?? String(v)}`);
  if (!Number.isInteger(v)) throw fail(code, `${what} must be whole seconds, got ${v}`);
  return boundedDuration(BigInt(v), bounds, what, `${v} s`, code);
}

/** Whole seconds as a spec that parseDuration reads back to the same number: 0s, 90s, 15m, 1h30m, 1d, 2w. */
export function formatDurationSpec(seconds: number): string {
  if (!Number.isInteger(seconds) || seconds < 0) throw new RangeError(`not a whole number of seconds: ${seconds}`);
  if (seconds === 0) return '0s';
  if (seconds % 604_800 === 0) return `${seconds / 604_800}w`;
  let left = seconds;
  let out = '';
  for (const [u, n] of [['d', 86_400], ['h', 3600], ['m', 60], ['s', 1]] as const) {
    if (left >= n) {
      out += `${Math.floor(left / n)}${u}`;
      left %= n;
    }
  }
  return out;
}

// ---------------------------------------------------------------- rates and sizes

const BYTE_UNITS: Record<string, bigint> = {
  '': 1n, b: 1n,
  k: 1000n, kb: 1000n, kib: 1024n,
  m: 1000n ** 2n, mb: 1000n ** 2n, mib: 1024n ** 2n,
  g: 1000n ** 3n, gb: 1000n ** 3n, gib: 1024n ** 3n,
  t: 1000n ** 4n, tb: 1000n ** 4n, tib: 1024n ** 4n,
};

/** "50MiB" -> bytes, rounded to a whole byte (half up); undefined when it is not a size. */
function bytesOf(text: string): bigint | undefined {
  if (text.length === 0 || text.length > MAX_TEXT) return undefined;
  const m = /^(\d+)(?:\.(\d+))?\s*([a-z]*)$/i.exec(text);
  const unit = m ? BYTE_UNITS[m[3].toLowerCase()] : undefined;
  if (!m || unit === undefined) return undefined;
  const v = scaled(m[1], m[2]);
  return v === undefined ? undefined : (v * unit + SCALE / 2n) / SCALE;
}

function boundedBytes(bytes: bigint, bounds: Bounds, what: string, shown: string, rate: boolean, code: ErrorCode): number {
  const fmt = rate ? formatRateSpec : formatSizeSpec;
  const w = within(bytes, bounds);
  const exact = `${bytes} byte${bytes === 1n ? '' : 's'}${rate ? ' per second' : ''}`;
  const plain = shown === JSON.stringify(String(bytes)) || shown === String(bytes);
  if (w === 'low') throw fail(code, `${what} must be at least ${fmt(bounds.min)}, got ${shown}${plain ? '' : ` (${exact})`}`);
  if (w === 'high') throw fail(code, `${what} must be at most ${fmt(bounds.max)}, got ${shown}`);
  return Number(bytes);
}

const RATE_HINT = 'a rate like 500KiB/s, 10MB/s, 50MiB/s or 1GiB/s (units k, KiB, MB, MiB, GB, GiB, TB, TiB; a bare number is bytes per second)';
const SIZE_HINT = 'a size like 500KiB, 64MB, 10MiB or 1GiB (units k, KiB, MB, MiB, GB, GiB, TB, TiB; a bare number is bytes)';

/** A rate spec ("50MiB/s", "10MB/s", "500k") -> whole bytes per second within `bounds`. */
export function parseRate(text: string, bounds: Bounds, what: string, code: ErrorCode = 'USAGE'): number {
  const t = text.trim();
  const bytes = bytesOf(t.endsWith('/s') ? t.slice(0, -2).trimEnd() : t);
  if (bytes === undefined) throw fail(code, `${what} takes ${RATE_HINT}, got ${JSON.stringify(text)}`);
  return boundedBytes(bytes, bounds, what, JSON.stringify(text), true, code);
}

/** A size spec ("64MiB", "1g", "500k") -> whole bytes within `bounds`. */
export function parseSize(text: string, bounds: Bounds, what: string, code: ErrorCode = 'USAGE'): number {
  const bytes = bytesOf(text.trim());
  if (bytes === undefined) throw fail(code, `${what} takes ${SIZE_HINT}, got ${JSON.stringify(text)}`);
  return boundedBytes(bytes, bounds, what, JSON.stringify(text), false, code);
}

function checkBytes(v: unknown, bounds: Bounds, what: string, rate: boolean, code: ErrorCode): number {
  const unit = rate ? 'bytes per second' : 'bytes';
  if (typeof v !== 'number' || !Number.isFinite(v)) throw fail(code, `${what} must be a number of ${unit}, got ${JSON.stringify(v) ?? String(v)}`);
  if (!Number.isInteger(v)) throw fail(code, `${what} must be whole ${unit}, got ${v}`);
  return boundedBytes(BigInt(v), bounds, what, `${v}`, rate, code);
}

/** A rate given as a number (JSON, the catalog, the wire): whole bytes per second, within bounds. */
export function checkRate(v: unknown, bounds: Bounds, what: string, code: ErrorCode = 'USAGE'): number {
  return checkBytes(v, bounds, what, true, code);
}

/** A size given as a number: whole bytes, within bounds. */
export function checkSize(v: unknown, bounds: Bounds, what: string, code: ErrorCode = 'USAGE'): number {
  return checkBytes(v, bounds, what, false, code);
}

/** Whole bytes per second as a spec parseRate reads back to the same number: 50MiB/s, 1GiB/s, 10MB/s, 1234/s. */
export function formatRateSpec(bytes: number): string {
  return `${formatSizeSpec(bytes)}/s`;
}

/** Whole bytes as a spec parseSize reads back to the same number: 64MiB, 1GiB, 10MB, 1234. */
export function formatSizeSpec(bytes: number): string {
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new RangeError(`not a whole number of bytes: ${bytes}`);
  if (bytes === 0) return '0';
  for (const [u, n] of [['TiB', 1024 ** 4], ['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024], ['TB', 1e12], ['GB', 1e9], ['MB', 1e6], ['kB', 1e3]] as const) {
    if (bytes % n === 0) return `${bytes / n}${u}`;
  }
  return String(bytes);
}

// ---------------------------------------------------------------- counts

/** A count written as text ("5"): digits only, within bounds. */
export function parseCount(text: string, bounds: Bounds, what: string, code: ErrorCode = 'USAGE'): number {
  const t = text.trim();
  if (!/^\d+$/.test(t) || t.length > MAX_TEXT) throw fail(code, `${what} takes a whole number from ${bounds.min} to ${bounds.max}, got ${JSON.stringify(text)}`);
  return boundedCount(BigInt(t), bounds, what, code);
}

/** A count given as a number: whole, within bounds. */
export function checkCount(v: unknown, bounds: Bounds, what: string, code: ErrorCode = 'USAGE'): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw fail(code, `${what} must be a whole number from ${bounds.min} to ${bounds.max}, got ${JSON.stringify(v) ?? String(v)}`);
  return boundedCount(BigInt(v), bounds, what, code);
}

function boundedCount(v: bigint, bounds: Bounds, what: string, code: ErrorCode): number {
  if (within(v, bounds) !== 'ok') throw fail(code, `${what} must be a whole number from ${bounds.min} to ${bounds.max}, got ${v}`);
  return Number(v);
}

// ---------------------------------------------------------------- stored values

/**
 * A stored setting as it may be found in an older catalog (written before these bounds, or by
 * hand): the nearest value within bounds, and what was wrong with the stored one. Readers use the
 * value (nothing downstream ever sees an out-of-bounds setting) and show the problem.
 */
export function clampStored(v: number, bounds: Bounds): { value: number; problem: string | null } {
  if (!Number.isFinite(v)) return { value: bounds.min, problem: 'is not a number' };
  const whole = Math.round(v);
  const value = Math.min(bounds.max, Math.max(bounds.min, whole));
  if (value !== v) return { value, problem: whole !== v && value === whole ? 'is not a whole number' : v < bounds.min ? 'is below the least allowed' : 'is beyond the most allowed' };
  return { value, problem: null };
}

// ---------------------------------------------------------------- a schedule's settings

/** How often something runs and how late it may be: a mirror's or a link's (a link has no bandwidth). */
export interface ScheduleSettings {
  scheduleS: number | null;
  minDelayS: number;
  maxDelayS: number;
  /** bytes per second; null: no limit */
  bandwidth?: number | null;
}

const SETTING_NAMES = { scheduleS: 'schedule', minDelayS: 'min delay', maxDelayS: 'max delay', bandwidth: 'bandwidth' } as const;

/** Check a schedule's settings given as numbers (an API call, a peer's message): each within its bounds. */
export function checkScheduleSettings<T extends ScheduleSettings>(s: T, what: string, code: ErrorCode = 'USAGE'): T {
  const name = (k: keyof typeof SETTING_NAMES) => `${what ? `${what} ` : ''}${SETTING_NAMES[k]}`;
  if (s.scheduleS !== null) checkDuration(s.scheduleS, DURATION.schedule, name('scheduleS'), code);
  checkDuration(s.minDelayS, DURATION.minDelay, name('minDelayS'), code);
  checkDuration(s.maxDelayS, DURATION.maxDelay, name('maxDelayS'), code);
  if (s.bandwidth !== undefined && s.bandwidth !== null) checkRate(s.bandwidth, RATE.bandwidth, name('bandwidth'), code);
  return s;
}

/**
 * A schedule's settings as read from the catalog: each within its bounds (clampStored), and one line
 * per value that was not, naming the stored value and the one in force.
 */
export function storedScheduleSettings<T extends ScheduleSettings>(s: T): { settings: T; problems: string[] } {
  const problems: string[] = [];
  const out = { ...s };
  const fix = (k: keyof typeof SETTING_NAMES, v: number, b: Bounds, spec: (n: number) => string, unit: string) => {
    const c = clampStored(v, b);
    if (c.problem) problems.push(`stored ${SETTING_NAMES[k]} ${v} ${unit} ${c.problem} (${spec(b.min)} to ${spec(b.max)}): ${spec(c.value)} in force`);
    return c.value;
  };
  if (s.scheduleS !== null) out.scheduleS = fix('scheduleS', s.scheduleS, DURATION.schedule, formatDurationSpec, 's');
  out.minDelayS = fix('minDelayS', s.minDelayS, DURATION.minDelay, formatDurationSpec, 's');
  out.maxDelayS = fix('maxDelayS', s.maxDelayS, DURATION.maxDelay, formatDurationSpec, 's');
  if (s.bandwidth !== undefined && s.bandwidth !== null) out.bandwidth = fix('bandwidth', s.bandwidth, RATE.bandwidth, formatRateSpec, 'bytes/s');
  return { settings: out, problems };
}

// ---------------------------------------------------------------- for people

const BYTE_NAMES = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** Bytes for people: 516 B, 1.5 KiB, 120 MiB (whole bytes; one decimal under 100 of a unit). */
export function humanBytes(n: number): string {
  if (!Number.isFinite(n)) return '-';
  let v = n;
  let u = 0;
  // A unit is used up to where rounding would show 1024 of it (never "1024 B" or "1024.0 KiB").
  const shown = (x: number, unit: number) => (unit === 0 ? Math.round(x) : Number(x.toFixed(Math.abs(x) >= 100 ? 0 : 1)));
  while (Math.abs(shown(v, u)) >= 1024 && u < BYTE_NAMES.length - 1) {
    v /= 1024;
    u++;
  }
  if (u === 0) return `${Math.round(v)} B`;
  return `${v.toFixed(Math.abs(v) >= 100 ? 0 : 1)} ${BYTE_NAMES[u]}`;
}

/** Bytes per second for people: 516 B/s, 1.5 MiB/s. */
export function humanRate(bytesPerSecond: number): string {
  return `${humanBytes(bytesPerSecond)}/s`;
}

/** A length of time for people, from milliseconds: 850 ms, 12.5 s, 3.2 min, 5.0 h, 2.5 d. */
export function humanDuration(ms: number): string {
  if (!Number.isFinite(ms)) return '-';
  if (Math.abs(Math.round(ms)) < 1000) return `${Math.round(ms)} ms`;
  // Each unit up to where the next takes over, judged after rounding (never "120.0 s" or "1000 ms").
  for (const [unit, per, upTo] of [['s', 1000, 120], ['min', 60_000, 120], ['h', 3_600_000, 48]] as const) {
    const v = (ms / per).toFixed(1);
    if (Math.abs(Number(v)) < upTo) return `${v} ${unit}`;
  }
  return `${(ms / 86_400_000).toFixed(1)} d`;
}

/** A share for people: 0 to 100 %, whole, rounded down (100 % only when all of it is done). */
export function humanPercent(part: number, whole: number): string {
  if (!(whole > 0) || !Number.isFinite(part)) return '0%';
  return `${Math.max(0, Math.min(100, Math.floor((part / whole) * 100)))}%`;
}
