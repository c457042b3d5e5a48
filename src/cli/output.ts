// How the CLI speaks: human text on a terminal, one JSON document with
// --json, errors on stderr with a stable code and an exit status that means
// something (docs/errors.md).
import { asFerryError } from '../core/errors.ts';
import { humanBytes, humanDuration, humanPercent, humanRate } from '../core/units.ts';

export const EXIT_WARNINGS = 8;

export interface GlobalOptions {
  home?: string;
  json?: boolean;
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n');
}

// Numbers for people: one formatter per kind, each rounded (core/units.ts, shared with the daemon's messages).
/** Bytes: 516 B, 1.5 KiB, 120 MiB. */
export const formatBytes = humanBytes;
/** Bytes per second: 516 B/s, 1.5 MiB/s. */
export const formatRate = humanRate;
/** A share: 0% to 100%, whole, 100% only when all is done. */
export const formatPercent = humanPercent;

export function formatTime(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

/** A length of time, from milliseconds: 850 ms, 12.5 s, 3.2 min, 5.0 h, 2.5 d. */
export const formatDuration = humanDuration;

/** A plain aligned table. */
export function table(headers: string[], rows: Array<Array<string | number>>): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ')).join('\n');
}

export function reportError(err: unknown, json: boolean): number {
  const fe = asFerryError(err);
  if (json) process.stdout.write(JSON.stringify({ error: fe.toJSON() }) + '\n');
  process.stderr.write(`ferry: ${fe.message} [${fe.code}]\n`);
  if (process.env.FERRY_DEBUG && fe.cause) process.stderr.write(`${(fe.cause as Error)?.stack ?? String(fe.cause)}\n`);
  return fe.exitCode;
}

/** Progress on stderr when it is a terminal: one line, rewritten in place. */
export class ProgressLine {
  readonly #tty = Boolean(process.stderr.isTTY) && !process.env.FERRY_NO_PROGRESS;
  #last = 0;
  #shown = false;
  update(text: string, force = false): void {
    if (!this.#tty) return;
    const now = Date.now();
    if (!force && now - this.#last < 100) return;
    this.#last = now;
    this.#shown = true;
    process.stderr.write(`\r\x1b[2K${text.slice(0, (process.stderr.columns ?? 100) - 1)}`);
  }
  done(): void {
    if (this.#shown) process.stderr.write('\r\x1b[2K');
    this.#shown = false;
  }
}
