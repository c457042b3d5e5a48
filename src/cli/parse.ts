// Parsers for command-line values: durations and sizes.
import { FerryError } from '../core/errors.ts';

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
