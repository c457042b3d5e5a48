// Parsers for command-line values: durations, sizes, and path arguments.
import { readFileSync } from 'node:fs';
import { FerryError } from '../core/errors.ts';
import { pathToText } from '../snapshot/path-text.ts';

const UNITS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/** "90", "90s", "5m", "1h30m", "1d" -> seconds */
export function parseDurationSeconds(s: string, what: string): number {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)?/gy;
  let total = 0;
  let matched = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s)) !== null && m[0] !== '') {
    total += Number(m[1]) * UNITS[m[2] ?? 's'];
    matched += m[0].length;
  }
  if (matched !== s.length || s.length === 0 || !(total > 0)) throw new FerryError('USAGE', `${what} takes a duration like 30s, 5m, 1h30m or 1d, got ${JSON.stringify(s)}`);
  return total;
}

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1e3, kb: 1e3, kib: 1024, m: 1e6, mb: 1e6, mib: 1024 ** 2, g: 1e9, gb: 1e9, gib: 1024 ** 3 };

/** "50MiB/s", "10MB/s", "1g", "500k" -> bytes per second */
export function parseRate(s: string, what: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)(?:\/s)?$/i.exec(s.trim());
  const unit = m ? SIZE_UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined || !(Number(m[1]) > 0)) throw new FerryError('USAGE', `${what} takes a rate like 50MiB/s, 10MB/s or 500k, got ${JSON.stringify(s)}`);
  return Math.round(Number(m[1]) * unit);
}

/**
 * The command line's arguments as the bytes the process was given (Linux:
 * /proc/self/cmdline), in the order of process.argv.slice(2), or undefined
 * when they cannot be matched up. Node decodes argv as UTF-8 and turns bytes
 * that are not UTF-8 into U+FFFD, which loses them.
 */
export function rawArguments(): Buffer[] | undefined {
  const args = process.argv.slice(2);
  let all: Buffer[];
  try {
    const cmdline = readFileSync('/proc/self/cmdline');
    all = [];
    for (let start = 0; start < cmdline.length; ) {
      const end = cmdline.indexOf(0, start);
      all.push(cmdline.subarray(start, end < 0 ? cmdline.length : end));
      start = end < 0 ? cmdline.length : end + 1;
    }
  } catch {
    return undefined;
  }
  if (all.length < args.length) return undefined;
  const raw = all.slice(all.length - args.length);
  return raw.every((b, i) => b.toString('utf8') === args[i]) ? raw : undefined;
}

/**
 * A member-relative path argument (restore --path) as text in path-text.ts's
 * spelling. Bytes that are not UTF-8 (a name typed or completed in a shell)
 * are taken from the raw arguments and written as \xHH; a backslash in such
 * an argument as \\.
 */
export function pathArgument(value: string, option: string): string {
  if (!value.includes('\uFFFD')) return value;
  const args = process.argv.slice(2);
  const raw = rawArguments();
  const prefix = Buffer.from(`${option}=`);
  for (let i = 0; raw && i < args.length; i++) {
    if (args[i] === value && args[i - 1] === option) return pathToText(raw[i]);
    if (args[i] === `${option}=${value}` && raw[i].subarray(0, prefix.length).equals(prefix)) return pathToText(raw[i].subarray(prefix.length));
  }
  return value;
}
