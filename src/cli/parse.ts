// Parsers for command-line values. Every duration, rate, size and count goes
// through core/units.ts with the bounds of its setting (the same as in the
// site file and on the wire); this file adds only what is the command line's
// own: `none`, where a setting can be cleared.
import { parseDuration, parseRate, type Bounds } from '../core/units.ts';

export { parseCount, parseDuration, parseRate, parseSize } from '../core/units.ts';

/** A duration option that `none` clears (e.g. `mirror set --schedule none`: manual updates only). */
export function parseDurationOrNone(text: string, bounds: Bounds, what: string): number | null {
  return text.trim().toLowerCase() === 'none' ? null : parseDuration(text, bounds, what);
}

/** A rate option that `none` clears (e.g. `mirror set --bandwidth none`: no limit). */
export function parseRateOrNone(text: string, bounds: Bounds, what: string): number | null {
  return text.trim().toLowerCase() === 'none' ? null : parseRate(text, bounds, what);
}
