// Fuzz target for the site file (src/config/load.ts): YAML text in, a config
// or a list of issues out, each with a line and a message. loadConfig never
// throws: every problem, YAML or ferry's, is an issue. Coverage guidance
// counts the YAML parser's code too.
import { readdirSync, readFileSync } from 'node:fs';
import fc from 'fast-check';
import YAML from 'yaml';
import { loadConfig } from '../../../src/config/load.ts';
import { HOOK_KEYS, LINK_KEYS, LOG_KEYS, MEMBER_KEYS, MIRROR_KEYS, RETENTION_KEYS, SITE_KEYS, TOP_KEYS, VOLUME_KEYS } from '../../../src/config/schema.ts';
import { ferryNameArb } from '../arbitraries.ts';
import { FuzzViolation, type FuzzTarget } from '../engine.ts';

const EXAMPLES = new URL('../../../docs/examples/', import.meta.url);

const pathArb = fc.array(fc.constantFrom('srv', 'data', 'db', 'img', 'x y', 'é'), { minLength: 1, maxLength: 3 }).map((p) => `/${p.join('/')}`);
const durationArb = fc.oneof(fc.constantFrom('15m', '1h30m', '90s', '1d', '0s', '2w'), fc.integer({ min: 1, max: 100000 }));
const rateArb = fc.constantFrom('50MiB/s', '10MB/s', '500k', '1GiB/s');
const hookArb = fc.oneof(fc.constantFrom('/bin/true', 'sync'), fc.record({ command: fc.constantFrom('/bin/true', 'echo hi'), timeout: durationArb }, { requiredKeys: ['command'] }));

const volumeArb = fc.record(
  {
    secondary: fc.boolean(),
    members: fc.array(fc.oneof(pathArb, fc.record({ path: pathArb, name: ferryNameArb, kind: fc.constantFrom('tree', 'image') }, { requiredKeys: ['path'] })), { minLength: 1, maxLength: 3 }),
    hooks: fc.record({ pre: hookArb, post: hookArb }, { requiredKeys: [] }),
    retention: fc.record({ last: fc.nat(50), daily: fc.nat(30), weekly: fc.nat(10), hourly: fc.nat(48) }, { requiredKeys: [] }),
  },
  { requiredKeys: ['members'] },
);

const configArb = fc
  .record(
    {
      site: fc.record({ name: ferryNameArb, listen: fc.constantFrom('127.0.0.1:7420', '[::1]:0'), replicaRoot: pathArb, log: fc.record({ file: pathArb, maxSize: fc.constantFrom('10MiB', '1GiB'), keep: fc.nat(20) }, { requiredKeys: [] }) }, { requiredKeys: [] }),
      volumes: fc.dictionary(ferryNameArb, volumeArb, { maxKeys: 3 }),
      mirrors: fc.array(fc.record({ volume: ferryNameArb, to: ferryNameArb, remoteVolume: ferryNameArb, schedule: durationArb, minDelay: durationArb, maxDelay: durationArb, bandwidth: rateArb }, { requiredKeys: ['volume', 'to'] }), { maxLength: 3 }),
      links: fc.array(fc.record({ path: pathArb, volume: ferryNameArb, member: ferryNameArb, snapshot: fc.constantFrom('newest', 'nightly'), schedule: durationArb }, { requiredKeys: ['path', 'volume'] }), { maxLength: 2 }),
    },
    { requiredKeys: [] },
  )
  .map((c) => YAML.stringify({ version: 1, ...c }));

/** A file with anchors and aliases (x- keys hold anchors), which the reader must follow. */
const ALIASES = `version: 1
x-hooks: &hooks
  pre: { command: /bin/true, timeout: 30s }
x-retention: &keep
  last: 5
volumes:
  app:
    members: [/srv/app]
    hooks: *hooks
    retention: *keep
  db:
    members:
      - { path: /srv/db, name: data }
    hooks: *hooks
mirrors:
  - { volume: app, to: dr, schedule: 15m }
`;

const DICTIONARY = [...TOP_KEYS, ...SITE_KEYS, ...LOG_KEYS, ...VOLUME_KEYS, ...MEMBER_KEYS, ...HOOK_KEYS, ...RETENTION_KEYS, ...MIRROR_KEYS, ...LINK_KEYS, 'x-a', '<<', 'hooks', 'pre', 'post'].map((k) => Buffer.from(k));

export const configTarget: FuzzTarget = {
  name: 'config',
  about: 'loadConfig: a site file (YAML) to a config or every issue with its line',
  codes: [],
  kind: 'text',
  maxLength: 16 * 1024,
  dictionary: DICTIONARY,
  coverAlso: (url) => url.includes('/node_modules/yaml/'),
  seeds: () => [
    ...readdirSync(EXAMPLES).filter((f) => f.endsWith('.yaml')).map((f) => readFileSync(new URL(f, EXAMPLES))),
    Buffer.from(ALIASES),
    ...fc.sample(configArb, { seed: 1, numRuns: 8 }).map((t) => Buffer.from(t)),
  ],
  generate: (seed, n) => fc.sample(configArb, { seed, numRuns: n }).map((t) => Buffer.from(t)),
  run(input) {
    const { config, issues } = loadConfig(input.toString('utf8'), '/fuzz/site.yaml');
    if (!Array.isArray(issues) || !config) throw new FuzzViolation('loadConfig returned no issue list or no config');
    for (const i of issues) {
      if (!Number.isInteger(i.line) || !Number.isInteger(i.col) || typeof i.message !== 'string' || !i.message) throw new FuzzViolation(`an issue without a line or a message: ${JSON.stringify(i)}`);
    }
    return issues.length;
  },
};
