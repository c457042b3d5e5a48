// Parsers for command-line values. Every duration, rate, size and count goes
// through core/units.ts with the bounds of its setting (the same as in the
// site file and on the wire); this file adds only what is the command line's
// own: `none`, where a setting can be cleared, and path arguments.
import { readFileSync } from 'node:fs';
import { parseDuration, parseRate, type Bounds } from '../core/units.ts';
import { pathToText } from '../snapshot/path-text.ts';

export { parseCount, parseDuration, parseRate, parseSize } from '../core/units.ts';

/** A duration option that `none` clears (e.g. `mirror set --schedule none`: manual updates only). */
export function parseDurationOrNone(text: string, bounds: Bounds, what: string): number | null {
  return text.trim().toLowerCase() === 'none' ? null : parseDuration(text, bounds, what);
}

/** A rate option that `none` clears (e.g. `mirror set --bandwidth none`: no limit). */
export function parseRateOrNone(text: string, bounds: Bounds, what: string): number | null {
  return text.trim().toLowerCase() === 'none' ? null : parseRate(text, bounds, what);
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
