// Durations, rates, sizes and counts: one parser each with the bounds of the
// setting, exact at every bound; the spec formatters read back to the same
// numbers; a file `config export` writes always passes `config check`, even
// from settings an older catalog stored out of bounds; the wire accepts
// exactly what the CLI accepts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { isFerryError } from '../../../src/core/errors.ts';
import {
  checkCount, checkDuration, checkRate, clampStored, COUNT, DURATION, formatDurationSpec, formatRateSpec, formatSizeSpec, humanBytes, humanDuration, humanPercent, humanRate,
  MAX_DURATION_S, parseCount, parseDuration, parseRate, parseSize, RATE, SIZE, storedScheduleSettings, type Bounds,
} from '../../../src/core/units.ts';
import { loadConfig, formatIssues } from '../../../src/config/load.ts';
import { linkEntry, mirrorEntry } from '../../../src/config/export.ts';
import { parseHelloRequest, parseMirrorSettings } from '../../../src/replication/protocol.ts';
import { PROTOCOL_VERSION } from '../../../src/replication/types.ts';

function refused(fn: () => unknown, re: RegExp, code = 'USAGE'): void {
  assert.throws(fn, (err) => isFerryError(err) && err.code === code && re.test(err.message), `expected ${code} matching ${re}`);
}

test('durations: exact at every bound, whole seconds, units and fractions, huge values refused (not rounded)', () => {
  const s = DURATION.schedule;
  assert.equal(parseDuration('1s', s, '--schedule'), 1);
  assert.equal(parseDuration('1', s, '--schedule'), 1, 'a bare number is seconds');
  refused(() => parseDuration('0s', s, '--schedule'), /--schedule must be at least 1s, got "0s"/);
  assert.equal(parseDuration('3650d', s, '--schedule'), MAX_DURATION_S);
  assert.equal(parseDuration(`${MAX_DURATION_S}`, s, '--schedule'), MAX_DURATION_S);
  refused(() => parseDuration(`${MAX_DURATION_S + 1}s`, s, '--schedule'), /at most 3650d \(10 years\)/);
  refused(() => parseDuration('100000000w', s, '--schedule'), /at most 3650d/);
  refused(() => parseDuration('9'.repeat(40) + 'w', s, '--schedule'), /at most/);
  refused(() => parseDuration('9'.repeat(80) + 'w', s, '--schedule'), /takes a duration/);
  refused(() => parseDuration('600w', DURATION.maxDelay, '--max-delay'), /--max-delay must be at most/);
  assert.equal(parseDuration('521w', DURATION.maxDelay, '--max-delay'), 521 * 604_800);
  // Exact decimals: no floating-point error, and no fraction of a second slips through.
  assert.equal(parseDuration('1.1h', s, 'x'), 3960);
  assert.equal(parseDuration('1.5h', s, 'x'), 5400);
  assert.equal(parseDuration('0.1m', s, 'x'), 6);
  assert.equal(parseDuration('2000ms', s, 'x'), 2);
  assert.equal(parseDuration('1h30m', s, 'x'), 5400);
  assert.equal(parseDuration(' 15m ', s, 'x'), 900);
  refused(() => parseDuration('0.5s', DURATION.minDelay, '--min-delay'), /--min-delay must be whole seconds, got "0.5s" \(use 0s for none\)/);
  refused(() => parseDuration('1500ms', s, 'x'), /whole seconds/);
  refused(() => parseDuration('0.0000000001s', s, 'x'), /takes a duration/);
  assert.equal(parseDuration('0s', DURATION.minDelay, '--min-delay'), 0);
  assert.equal(parseDuration('0', DURATION.minDelay, '--min-delay'), 0);
  for (const bad of ['', ' ', '15min', '1h30', '-5s', '1e3s', '5 m', 'h', '1.s', '.5s', '0x10', 'Infinity', 'NaN']) refused(() => parseDuration(bad, s, '--schedule'), /--schedule takes a duration like/);
  assert.equal(parseDuration('1d', DURATION.hookTimeout, 'x'), 86_400);
  refused(() => parseDuration('1d1s', DURATION.hookTimeout, 'x'), /at most 1d/);
  // As numbers (JSON, YAML, the catalog, the wire): the same bounds.
  assert.equal(checkDuration(1, s, 'x'), 1);
  assert.equal(checkDuration(MAX_DURATION_S, s, 'x'), MAX_DURATION_S);
  for (const bad of [0, -1, 0.5, MAX_DURATION_S + 1, 60_480_000_000_000, Number.NaN, Infinity, '15m', null]) refused(() => checkDuration(bad, s, 'x', 'PROTOCOL'), /x must/, 'PROTOCOL');
});

test('rates and sizes: whole bytes, bounds at 1 KiB/s and 1 TiB/s, fractions of a byte rounded before the bounds', () => {
  const b = RATE.bandwidth;
  assert.equal(parseRate('1KiB/s', b, '--bandwidth'), 1024);
  assert.equal(parseRate('1024', b, '--bandwidth'), 1024);
  refused(() => parseRate('1023', b, '--bandwidth'), /--bandwidth must be at least 1KiB\/s, got "1023"$/);
  refused(() => parseRate('0.4', b, '--bandwidth'), /--bandwidth must be at least 1KiB\/s, got "0.4" \(0 bytes per second\)/);
  refused(() => parseRate('1.0001k', b, '--bandwidth'), /at least/);
  assert.equal(parseRate('1.5KiB/s', b, 'x'), 1536);
  assert.equal(parseRate('0.1MiB/s', b, 'x'), 104_858, 'rounded to a whole byte');
  assert.equal(parseRate('50MiB/s', b, 'x'), 50 * 1024 ** 2);
  assert.equal(parseRate('10MB/s', b, 'x'), 10_000_000);
  assert.equal(parseRate('500k', b, 'x'), 500_000);
  assert.equal(parseRate('1TiB/s', b, 'x'), 1024 ** 4);
  refused(() => parseRate('1.0000001TiB/s', b, 'x'), /at most 1TiB\/s/);
  refused(() => parseRate('2TB/s', b, 'x'), /at most 1TiB\/s/);
  refused(() => parseRate('9'.repeat(60), b, 'x'), /at most/);
  for (const bad of ['', 'fast', '50 MiB/ s', '-1k', '1e6', '5MiBps', '/s', '1.k']) refused(() => parseRate(bad, b, '--bandwidth'), /--bandwidth takes a rate like/);
  assert.equal(checkRate(1024, b, 'x'), 1024);
  for (const bad of [0, 1023, 1536.5, 1024 ** 4 + 1, Number.MAX_SAFE_INTEGER, -1024]) refused(() => checkRate(bad, b, 'x'), /x must/);
  assert.equal(parseSize('64MiB', SIZE.logMaxSize, 'x'), 64 * 1024 ** 2);
  refused(() => parseSize('64MiB/s', SIZE.logMaxSize, '--log-max-size'), /--log-max-size takes a size like/);
  refused(() => parseSize('1000', SIZE.logMaxSize, '--log-max-size'), /at least 1KiB/);
});

test('counts: digits only, within bounds', () => {
  assert.equal(parseCount('1', COUNT.keep, '--keep'), 1);
  assert.equal(parseCount('64', COUNT.keep, '--keep'), 64);
  for (const bad of ['0', '65', '1.5', '-1', '', '1e1', '0x10', '9'.repeat(30)]) refused(() => parseCount(bad, COUNT.keep, '--keep'), /--keep (takes|must be) a whole number from 1 to 64/);
  assert.equal(checkCount(0, COUNT.logKeep, 'x'), 0);
  for (const bad of [1.5, -1, 1001, '5', null]) refused(() => checkCount(bad, COUNT.logKeep, 'x'), /x must be a whole number from 0 to 1000/);
  refused(() => parseCount('5', COUNT.tickMs, '--tick'), /--tick/);
});

const arbDurationIn = (b: Bounds) => fc.integer({ min: b.min, max: b.max });

test('property: every value within bounds formats to a spec that parses back to it', () => {
  fc.assert(fc.property(arbDurationIn(DURATION.schedule), (s) => parseDuration(formatDurationSpec(s), DURATION.schedule, 'x') === s), { numRuns: 2000 });
  fc.assert(fc.property(arbDurationIn(DURATION.minDelay), (s) => parseDuration(formatDurationSpec(s), DURATION.minDelay, 'x') === s), { numRuns: 500 });
  fc.assert(fc.property(fc.integer({ min: RATE.bandwidth.min, max: RATE.bandwidth.max }), (r) => parseRate(formatRateSpec(r), RATE.bandwidth, 'x') === r), { numRuns: 2000 });
  fc.assert(fc.property(fc.integer({ min: SIZE.logMaxSize.min, max: SIZE.logMaxSize.max }), (n) => parseSize(formatSizeSpec(n), SIZE.logMaxSize, 'x') === n), { numRuns: 500 });
  // Round multiples too, where the formatter picks a unit.
  fc.assert(fc.property(fc.integer({ min: 1, max: 1024 }), fc.constantFrom(1, 1000, 1024, 1e6, 1024 ** 2, 1e9, 1024 ** 3), (k, u) => {
    const r = Math.min(RATE.bandwidth.max, Math.max(RATE.bandwidth.min, k * u));
    return parseRate(formatRateSpec(r), RATE.bandwidth, 'x') === r;
  }));
});

/** What a catalog column may hold: any number an older ferry (or a hand) wrote, as node:sqlite reads it back (safe integers). */
const arbStored = fc.oneof(
  fc.integer({ min: -Number.MAX_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER }),
  fc.double({ min: -1e16, max: 1e16, noNaN: true, noDefaultInfinity: true }),
  fc.constantFrom(0, 0.4, 0.5, 1023, 60_480_000_000_000, MAX_DURATION_S + 1, Number.MAX_SAFE_INTEGER),
);

function checkFile(doc: unknown): ReturnType<typeof loadConfig> {
  const r = loadConfig(stringify(doc, { lineWidth: 0 }), '/tmp/exported.yaml');
  assert.deepEqual(r.issues, [], formatIssues('/tmp/exported.yaml', r.issues));
  return r;
}

test('property: config export of any stored mirror or link settings writes a file config check accepts, with the values in force', () => {
  fc.assert(
    fc.property(fc.option(arbStored, { nil: null }), arbStored, arbStored, fc.option(arbStored, { nil: null }), (scheduleS, minDelayS, maxDelayS, bandwidth) => {
      const { settings } = storedScheduleSettings({ scheduleS, minDelayS, maxDelayS, bandwidth });
      const mirror = { volume: 'app', peer: 'london', remoteVolume: 'app', ...settings, bandwidth: settings.bandwidth ?? null };
      const link = { path: '/srv/test', volume: 'app', member: 'app', snapshotRef: 'latest', ...settings };
      const { config } = checkFile({ version: 1, volumes: { app: { members: ['/srv/app'] } }, mirrors: [mirrorEntry(mirror)], links: [linkEntry(link)] });
      const m = config.mirrors[0];
      assert.deepEqual([m.scheduleS, m.minDelayS, m.maxDelayS, m.bandwidth], [mirror.scheduleS, mirror.minDelayS, mirror.maxDelayS, mirror.bandwidth]);
      const l = config.links[0];
      assert.deepEqual([l.scheduleS, l.minDelayS, l.maxDelayS], [link.scheduleS, link.minDelayS, link.maxDelayS]);
      // And a peer's protocol parser takes them as they are (a sibling in a hello).
      assert.deepEqual(parseMirrorSettings(mirror, 'sibling'), { scheduleS: mirror.scheduleS, minDelayS: mirror.minDelayS, maxDelayS: mirror.maxDelayS, bandwidth: mirror.bandwidth });
    }),
    { numRuns: 300 },
  );
});

test('stored values out of bounds: the nearest value within them, and what was wrong', () => {
  assert.deepEqual(clampStored(0.5, DURATION.minDelay), { value: 1, problem: 'is not a whole number' });
  assert.deepEqual(clampStored(60_480_000_000_000, DURATION.schedule), { value: MAX_DURATION_S, problem: 'is beyond the most allowed' });
  assert.deepEqual(clampStored(0, RATE.bandwidth), { value: 1024, problem: 'is below the least allowed' });
  assert.deepEqual(clampStored(900, DURATION.schedule), { value: 900, problem: null });
  const r = storedScheduleSettings({ scheduleS: 60_480_000_000_000, minDelayS: 0.5, maxDelayS: 600 * 604_800, bandwidth: 0 });
  assert.deepEqual(r.settings, { scheduleS: MAX_DURATION_S, minDelayS: 1, maxDelayS: MAX_DURATION_S, bandwidth: 1024 });
  assert.equal(r.problems.length, 4);
  assert.match(r.problems[0], /^stored schedule 60480000000000 s is beyond the most allowed \(1s to 3650d\): 3650d in force$/);
});

test('the wire takes exactly what the CLI takes: bounds of sibling settings in a hello', () => {
  const hello = (sibling: Record<string, unknown>) => ({ protocol: PROTOCOL_VERSION, sourceVolume: 'app', volume: 'app', members: [{ name: 'm', kind: 'tree' }], siblings: [{ site: 'A'.repeat(52), volume: 'app', ...sibling }] });
  const ok = parseHelloRequest(hello({ scheduleS: MAX_DURATION_S, minDelayS: 0, maxDelayS: 1, bandwidth: 1024, keep: 64 }));
  assert.deepEqual(ok.siblings![0], { site: 'A'.repeat(52), volume: 'app', scheduleS: MAX_DURATION_S, minDelayS: 0, maxDelayS: 1, bandwidth: 1024, keep: 64 });
  assert.equal(parseHelloRequest(hello({})).siblings![0].maxDelayS, 3600, 'an older source sends no delays: the defaults');
  for (const bad of [{ minDelayS: 0.5 }, { maxDelayS: 600 * 604_800 }, { scheduleS: 0 }, { scheduleS: 60_480_000_000_000 }, { bandwidth: 0 }, { bandwidth: 1023 }, { keep: 65 }, { keep: 0 }, { maxDelayS: '1h' }]) {
    assert.throws(() => parseHelloRequest(hello(bad)), (err) => isFerryError(err, 'PROTOCOL'), JSON.stringify(bad));
  }
});

test('numbers for people: bytes, rates, durations and percentages rounded', () => {
  assert.equal(humanRate(516.4632595982707), '516 B/s');
  assert.equal(humanBytes(0), '0 B');
  assert.equal(humanBytes(1023.6), '1.0 KiB');
  assert.equal(humanBytes(1536), '1.5 KiB');
  assert.equal(humanBytes(1024 * 1023.97), '1.0 MiB', 'never "1024.0 KiB"');
  assert.equal(humanBytes(150 * 1024 ** 2), '150 MiB');
  assert.equal(humanDuration(0.4), '0 ms');
  assert.equal(humanDuration(999.6), '1.0 s', 'never "1000 ms"');
  assert.equal(humanDuration(12_345), '12.3 s');
  assert.equal(humanDuration(3 * 3_600_000), '3.0 h');
  assert.equal(humanDuration(3 * 86_400_000), '3.0 d');
  assert.equal(humanPercent(1, 3), '33%');
  assert.equal(humanPercent(999, 1000), '99%', 'only done is 100%');
  assert.equal(humanPercent(5, 0), '0%');
  fc.assert(fc.property(fc.double({ min: 0, max: 1e18, noNaN: true }), (n) => /^\d+(\.\d)? (B|KiB|MiB|GiB|TiB|PiB)$/.test(humanBytes(n)) && !/^1024(\.0)? /.test(humanBytes(n))));
  fc.assert(fc.property(fc.double({ min: 0, max: 1e12, noNaN: true }), (ms) => /^\d+(\.\d)? (ms|s|min|h|d)$/.test(humanDuration(ms))));
});
