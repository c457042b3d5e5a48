// Structured logs: every event the site records (state transitions, transfers,
// failovers, hook runs, errors) is also one log line. JSON lines by default
// (for collectors); human-readable when the sink is a terminal.
import type { EventRecord } from './catalog.ts';

export interface LogSink {
  write(line: string): void;
  isTTY?: boolean;
}

export function formatLogLine(site: string, at: number, e: EventRecord, human: boolean): string {
  const detail = e.detail ?? {};
  if (!human) return JSON.stringify({ time: new Date(at).toISOString(), site, kind: e.kind, volume: e.volume ?? null, outcome: e.outcome, ...detail });
  const transition = typeof detail.transition === 'string' ? ` ${detail.transition}` : '';
  const reason = typeof detail.reason === 'string' ? ` (${detail.reason})` : '';
  const rest = Object.entries(detail)
    .filter(([k]) => k !== 'transition' && k !== 'reason')
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  return `${new Date(at).toISOString()} ${site} ${e.outcome.toUpperCase().padEnd(7)} ${e.kind}${e.volume ? ` ${e.volume}` : ''}${transition}${reason}${rest ? ` ${rest.slice(0, 400)}` : ''}`;
}
