// The site file's reader: every error at once, each at its line with a hint;
// values read with the same parsers and bounds as the CLI's (core/units.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig, formatIssues, didYouMean } from '../../src/config/load.ts';
import { formatDurationSpec, formatRateSpec, parseDuration, parseRate, DURATION, RATE, type Bounds } from '../../src/core/units.ts';

const FILE = '/etc/ferry/site.yaml';

test('a file with many mistakes: every one reported at once, at its line, with a hint', () => {
  const text = [
    'version: 1', //                                   1
    'site:', //                                        2
    '  listen: 0.0.0.0:99999', //                      3  bad port
    '  lgo: /var/log/ferry.log', //                    4  unknown key, transposed
    'volumes:', //                                     5
    '  app:', //                                       6
    '    members:', //                                 7
    '      - path: /srv/app', //                       8
    '      - /srv/app/logs', //                        9  overlaps line 8
    '    hooks:', //                                   10
    '      pre: { command: freeze, timeout: 5x }', //  11 bad duration
    '    retention: { dialy: 7 }', //                  12 did you mean daily
    '  db:', //                                        13
    '    members: [ /srv/db ]', //                     14
    '    secondary: yes', //                           15 not a boolean
    '  db:', //                                        16 declared twice
    '    members: [ /srv/db2 ]', //                    17
    'mirrors:', //                                     18
    '  - volume: ap', //                               19 unknown volume (did you mean app)
    '    to: london', //                               20
    '    schedule: 15min', //                          21 bad duration
    '    bandwidth: fast', //                          22 bad rate
    '  - volume: app', //                              23
    '    to: london', //                               24
    '    retention: { last: 3 }', //                   25 misplaced key
    '  - volume: app', //                              26
    '    to: london', //                               27 same mirror twice
    'links:', //                                       28
    '  - path: /srv/test', //                          29
    '    volume: app', //                              30
    '    member: lgos', //                             31 unknown member
  ].join('\n');
  const { issues } = loadConfig(text, FILE);
  const at = (line: number, re: RegExp) => {
    const found = issues.find((i) => i.line === line && re.test(i.message + ' ' + (i.hint ?? '')));
    assert.ok(found, `no issue at line ${line} matching ${re}:\n${formatIssues(FILE, issues)}`);
    return found;
  };
  at(3, /listen takes HOST:PORT/);
  assert.equal(at(4, /unknown key "lgo"/).hint, 'did you mean "log"?');
  at(9, /overlaps \/srv\/app/);
  assert.match(at(11, /pre hook timeout/).hint!, /durations are a number and a unit/);
  assert.equal(at(11, /5x/).col, '      pre: { command: freeze, timeout: '.length + 1, 'the column points at the value');
  assert.equal(at(12, /dialy/).hint, 'did you mean "daily"?');
  assert.match(at(15, /secondary must be true or false/).hint!, /YAML 1\.2/);
  at(16, /db is given twice.*first at line 13/);
  assert.equal(at(19, /volume ap, which the file does not declare/).hint, 'did you mean "app"?');
  at(21, /schedule takes a duration/);
  at(22, /bandwidth takes a rate/);
  assert.match(at(25, /unknown key "retention" in mirror/).hint!, /destination side is the secondary volume's `retention`/);
  at(27, /two mirrors to london \(first at line 23\)/);
  assert.match(at(31, /no member lgos/).hint!, /did you mean "logs"/);
  assert.equal(issues.length, 13, formatIssues(FILE, issues));
  // Sorted by line, and the printed form names file, line and column.
  assert.deepEqual(issues.map((i) => i.line), [...issues.map((i) => i.line)].sort((a, b) => a - b));
  assert.match(formatIssues(FILE, issues), /^\/etc\/ferry\/site\.yaml:3:11: site\.listen: /);
});

test('a valid file: values parsed as the CLI parses them, defaults filled, relative paths from the file\'s directory', () => {
  const text = `
version: 1
site:
  name: paris
  replicaRoot: replicas
  log: { file: /var/log/ferry.log, maxSize: 10MiB, keep: 4 }
volumes:
  app:
    members:
      - data=tree:app/data
      - { path: /dev/vg0/lv1, name: disk, kind: image }
    hooks:
      pre: /usr/bin/freeze
      post: { command: /usr/bin/thaw, timeout: 90s }
    retention: { last: 5, daily: 0, weekly: 4 }
mirrors:
  - volume: app
    to: london
    remoteVolume: app-copy
    schedule: 1h30m
    minDelay: 0
    bandwidth: 50MiB/s
    deltas: never
links:
  - path: /srv/test/app
    volume: app
    member: data
`;
  const { config, issues } = loadConfig(text, FILE);
  assert.deepEqual(issues, []);
  assert.equal(config.site.name, 'paris');
  assert.equal(config.site.replicaRoot, '/etc/ferry/replicas');
  assert.deepEqual(config.site.log, { file: '/var/log/ferry.log', maxBytes: 10 * 1024 * 1024, keep: 4 });
  const v = config.volumes[0];
  assert.deepEqual(v.members.map((m) => [m.name, m.kind, m.path]), [['data', 'tree', '/etc/ferry/app/data'], ['disk', 'image', '/dev/vg0/lv1']]);
  assert.deepEqual(v.hooks, { pre: { command: '/usr/bin/freeze', timeout: 60 }, post: { command: '/usr/bin/thaw', timeout: 90 } });
  assert.deepEqual(v.retention, { last: 5, weekly: 4 });
  const m = config.mirrors[0];
  assert.deepEqual({ ...m, lines: undefined }, { volume: 'app', to: 'london', remoteVolume: 'app-copy', scheduleS: 5400, minDelayS: 0, maxDelayS: 3600, bandwidth: parseRate('50MiB/s', RATE.bandwidth, 'x'), deltas: 'never', lines: undefined });
  assert.equal(m.lines.schedule, 20);
  const l = config.links[0];
  assert.deepEqual([l.path, l.snapshot, l.scheduleS, l.minDelayS, l.maxDelayS], ['/srv/test/app', 'latest', null, 0, 86_400]);
});

test('broken YAML, a missing version, an empty file: refused with the place and a hint', () => {
  const bad = loadConfig('version: 1\nvolumes:\n  app:\n    members: [ /a\n', FILE).issues;
  assert.ok(bad.length >= 1 && bad[0].line >= 4 && /^YAML: /.test(bad[0].message), JSON.stringify(bad));
  const tabs = loadConfig('version: 1\nvolumes:\n\tapp: {}\n', FILE).issues;
  assert.ok(tabs.length >= 1 && tabs[0].line === 3, JSON.stringify(tabs));
  const noVersion = loadConfig('volumes: {}\n', FILE).issues;
  assert.equal(noVersion.length, 1);
  assert.match(noVersion[0].hint!, /version: 1/);
  const newer = loadConfig('version: 2\n', FILE).issues;
  assert.match(newer[0].message, /format version 2/);
  assert.match(newer[0].hint!, /upgrade ferry/);
  assert.match(loadConfig('', FILE).issues[0].message, /empty/);
  assert.match(loadConfig('- a\n- b\n', FILE).issues[0].message, /must be a map/);
  const peers = loadConfig('version: 1\npeers:\n  london: { url: https://x:1 }\n', FILE).issues;
  assert.match(peers[0].hint!, /ferry site add/);
});

test('anchors under x-* keys and aliases: shared hooks', () => {
  const text = 'version: 1\nx-quiesce: &q\n  pre: /usr/bin/freeze\n  post: { command: /usr/bin/thaw, timeout: 2m }\nvolumes:\n  a: { members: [/srv/a], hooks: *q }\n  b: { members: [/srv/b], hooks: *q }\n';
  const { config, issues } = loadConfig(text, FILE);
  assert.deepEqual(issues, []);
  for (const v of config.volumes) assert.deepEqual(v.hooks, { pre: { command: '/usr/bin/freeze', timeout: 60 }, post: { command: '/usr/bin/thaw', timeout: 120 } });
  assert.match(loadConfig('version: 1\ny-other: 1\n', FILE).issues[0].message, /unknown key "y-other"/);
});

test('did you mean: close words only', () => {
  assert.equal(didYouMean('scedule', ['schedule', 'minDelay']), 'schedule');
  assert.equal(didYouMean('maxdelay', ['schedule', 'maxDelay']), 'maxDelay');
  assert.equal(didYouMean('zzz', ['schedule', 'maxDelay']), undefined);
});

test('export writes durations and rates that read back to the same numbers', () => {
  for (const s of [1, 59, 60, 90, 300, 3600, 5400, 86_400, 93_784, 604_800, 1_209_600]) {
    const spec = formatDurationSpec(s);
    assert.equal(parseDuration(spec, DURATION.schedule, 'x'), s, `${s} -> ${spec}`);
  }
  assert.equal(formatDurationSpec(0), '0s');
  assert.equal(formatDurationSpec(900), '15m');
  assert.equal(formatDurationSpec(5400), '1h30m');
  const any: Bounds = { min: 0, max: Number.MAX_SAFE_INTEGER };
  for (const b of [1, 1000, 1024, 10_000_000, 50 * 1024 * 1024, 3 * 1024 ** 3, 123_457]) {
    const spec = formatRateSpec(b);
    assert.equal(parseRate(spec, any, 'x'), b, `${b} -> ${spec}`);
  }
  assert.equal(formatRateSpec(50 * 1024 * 1024), '50MiB/s');
});

test('a mirror\'s deltas: auto when left out; anything but auto, always or never is refused with the choices named', () => {
  const file = (deltas: string | null) => ['version: 1', 'site: { name: paris }', 'volumes:', '  app:', '    members: [ /srv/app ]', 'mirrors:', '  - volume: app', '    to: london', ...(deltas === null ? [] : [`    deltas: ${deltas}`])].join('\n') + '\n';
  assert.equal(loadConfig(file(null), FILE).config.mirrors[0].deltas, 'auto');
  assert.equal(loadConfig(file('always'), FILE).config.mirrors[0].deltas, 'always');
  const bad = loadConfig(file('sometimes'), FILE).issues;
  assert.equal(bad.length, 1, JSON.stringify(bad));
  assert.match(bad[0].message, /deltas must be one of auto, always, never, got "sometimes"/);
  assert.equal(bad[0].line, 9);
});

test('site.memoryBudget: a size read as --memory-budget reads it; below 96 MiB refused at its line', () => {
  const ok = loadConfig('version: 1\nsite:\n  memoryBudget: 192MiB\n', FILE);
  assert.deepEqual(ok.issues, []);
  assert.equal(ok.config.site.memoryBudget, 192 * 1024 * 1024);
  assert.equal(loadConfig('version: 1\nsite:\n  name: x\n', FILE).config.site.memoryBudget, null);
  const low = loadConfig('version: 1\nsite:\n  memoryBudget: 32MiB\n', FILE);
  assert.equal(low.issues.length, 1);
  assert.equal(low.issues[0].path, 'site.memoryBudget');
  assert.equal(low.issues[0].line, 3);
});
