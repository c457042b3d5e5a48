// How the CLI speaks: human text on a terminal, one JSON document with
// --json, errors on stderr with a stable code and an exit status that means
// something (docs/errors.md).
import { FerryError, isFerryError } from '../core/errors.ts';

export const EXIT_WARNINGS = 8;

export interface GlobalOptions {
  home?: string;
  json?: boolean;
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n');
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(v >= 100 ? 0 : 1)} ${units[u]}`;
}

export function formatTime(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 120) return `${s.toFixed(1)} s`;
  const m = s / 60;
  if (m < 120) return `${m.toFixed(1)} min`;
  return `${(m / 60).toFixed(1)} h`;
}

/** A plain aligned table. */
export function table(headers: string[], rows: Array<Array<string | number>>): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ')).join('\n');
}

export function reportError(err: unknown, json: boolean): number {
  const fe = isFerryError(err) ? err : new FerryError('INTERNAL', (err as Error)?.stack ?? String(err), { cause: err });
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
