// Numbers printed for people: one formatter per kind (bytes, rates,
// durations, percentages), each rounded, whatever the value (a throughput
// under 1 KiB/s was printed as "516.4632595982707 B/s").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { formatBytes, formatDuration, formatPercent, formatRate } from '../../../src/cli/output.ts';
import { formatLogLine } from '../../../src/site/log.ts';

const ROUNDED = /^-?\d+(\.\d)? (B|KiB|MiB|GiB|TiB|PiB)$/;

test('bytes and rates under 1 KiB are whole bytes', () => {
  assert.equal(formatBytes(516.4632595982707), '516 B');
  assert.equal(formatRate(516.4632595982707), '516 B/s');
  assert.equal(formatRate(269.86687982264084), '270 B/s');
  assert.equal(formatRate(0), '0 B/s');
  assert.equal(formatBytes(1023.7), '1.0 KiB');
});

test('property: every byte count, rate, duration and percentage is printed rounded', () => {
  fc.assert(fc.property(fc.double({ min: 0, max: 2 ** 60, noNaN: true }), (n) => ROUNDED.test(formatBytes(n)) && ROUNDED.test(formatRate(n).replace(/\/s$/, ''))));
  fc.assert(fc.property(fc.double({ min: 0, max: 1e13, noNaN: true }), (ms) => /^\d+(\.\d)? (ms|s|min|h|d)$/.test(formatDuration(ms))));
  fc.assert(fc.property(fc.double({ min: 0, max: 1e15, noNaN: true }), fc.double({ min: 1, max: 1e15, noNaN: true }), (a, b) => /^(\d|[1-9]\d|100)%$/.test(formatPercent(Math.min(a, b), b))));
});

/** A function of the dashboard page's script (the browser cannot import core/units.ts), made callable here. */
function pageFunction(name: string): (x: number) => string {
  const html = readFileSync(new URL('../../../src/app/dashboard-page.html', import.meta.url), 'utf8');
  const m = new RegExp(`\\nfunction ${name}\\(([a-z]+)\\) \\{\\n([\\s\\S]*?)\\n\\}\\n`).exec(html);
  assert.ok(m, `no function ${name} in the dashboard page`);
  return new Function(m[1], m[2]) as (x: number) => string;
}

test('the dashboard page prints bytes and durations as the CLI does', () => {
  const fmtBytes = pageFunction('fmtBytes');
  const fmtDur = pageFunction('fmtDur');
  assert.equal(fmtBytes(516.4632595982707), '516 B');
  fc.assert(fc.property(fc.double({ min: 0, max: 2 ** 60, noNaN: true }), (n) => fmtBytes(n) === formatBytes(n)));
  fc.assert(fc.property(fc.double({ min: 0, max: 1e10, noNaN: true }), (s) => fmtDur(s) === formatDuration(s * 1000)));
});

test("an event's human form prints bytes, rates and durations with the same formatters, other fractions rounded", () => {
  const detail = { mirror: 'app@b', bytes: 1536, rawBytes: 100, throughput: 516.4632595982707, seconds: 0.7412345, retryInMs: 5000, failures: 3, phases: { send: 0.123456789 } };
  const line = formatLogLine('a', 1_700_000_000_000, { kind: 'replication.update', volume: 'app', outcome: 'ok', detail }, true);
  for (const part of ['bytes=1.5 KiB', 'rawBytes=100 B', 'throughput=516 B/s', 'seconds=741 ms', 'retryInMs=5.0 s', 'failures=3', 'phases={"send":0.123}']) assert.ok(line.includes(part), `${part} in ${line}`);
  assert.doesNotMatch(line, /\d\.\d{4,}/);
  // The JSON form keeps every value exact.
  assert.equal(JSON.parse(formatLogLine('a', 1_700_000_000_000, { kind: 'replication.update', volume: 'app', outcome: 'ok', detail }, false)).details.throughput, detail.throughput);
});
