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
