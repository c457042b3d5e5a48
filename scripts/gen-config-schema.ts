// Writes packaging/schema/ferry.schema.json, a JSON Schema (draft-07, which
// yaml-language-server and most editors read) for the site file, from the
// loader's own tables: the keys each object takes (src/config/schema.ts),
// the bounds of every setting (src/core/units.ts), the name rule
// (src/core/ids.ts) and the format version. A key the loader takes without a
// line here fails this script, and a test checks the file is current and
// that the schema never refuses a file the loader accepts (fast-check, with
// an independent validator), so the two cannot drift apart.
//
// The schema is the loader's shape and value syntax; what needs the whole
// document or the site (names that must exist, paths that must not overlap,
// bounds of values written with units, a listen port above 65535) is left
// to `ferry config check`, which reports it with its line.
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CONFIG_VERSION, DEFAULTS, HOOK_KEYS, HOOKS_KEYS, LINK_KEYS, LOG_KEYS, MEMBER_KEYS, MIRROR_KEYS, RETENTION_KEYS, SITE_KEYS, TOP_KEYS, VOLUME_KEYS } from '../src/config/schema.ts';
import { COUNT, DELTA_MODES, DURATION, RATE, SIZE, formatDurationSpec, formatRateSpec, formatSizeSpec, type Bounds } from '../src/core/units.ts';

type Schema = Record<string, unknown>;

// Value syntax, as core/units.ts parses it (text is trimmed first; at most 9 decimals).
const WS = '\\s*';
const NUMBER = '[0-9]+(\\.[0-9]{1,9})?';
const DURATION_RE = `^${WS}(${NUMBER}|(${NUMBER}(ms|s|m|h|d|w))+)${WS}$`;
const BYTES_UNIT = '([bB]|[kKmMgGtT]([iI]?[bB])?)?';
const SIZE_RE = `^${WS}${NUMBER}${WS}${BYTES_UNIT}${WS}$`;
const RATE_RE = `^${WS}${NUMBER}${WS}${BYTES_UNIT}${WS}(/s)?${WS}$`;
/** core/ids.ts's NAME_RE */
const NAME_RE = '^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$';
/** app/daemon.ts's splitHostPort (the port's upper bound is left to the loader) */
const LISTEN_RE = '^(\\[[^\\]]+\\]|[^:]+):[0-9]{1,5}$';

function text(description: string): Schema {
  return { type: 'string', pattern: '\\S', description };
}

function path(description: string): Schema {
  return { type: 'string', pattern: '^[^\\u0000]*\\S[^\\u0000]*$', description: `${description} (relative paths are taken from the file's directory)` };
}

function name(description: string): Schema {
  // The loader reads a name from any scalar (a YAML number or true/false is read as its text).
  return { type: ['string', 'number', 'boolean'], pattern: NAME_RE, description: `${description}: 1-128 letters, digits, '.', '_', '-', '@', '+', starting with a letter or digit` };
}

function count(b: Bounds, description: string): Schema {
  return { type: 'integer', minimum: b.min, maximum: b.max, description: `${description} (${b.min} to ${b.max})` };
}

function duration(b: Bounds, description: string): Schema {
  return {
    description: `${description}: a duration such as 30s, 5m, 1h30m, 1d, 2w, or a whole number of seconds (${formatDurationSpec(b.min)} to ${formatDurationSpec(b.max)})`,
    anyOf: [{ type: 'integer', minimum: b.min, maximum: b.max }, { type: 'string', pattern: DURATION_RE }],
  };
}

function rate(b: Bounds, description: string): Schema {
  return {
    description: `${description}: a rate such as 500KiB/s, 10MB/s, 50MiB/s, 1GiB/s, or a whole number of bytes per second (${formatRateSpec(b.min)} to ${formatRateSpec(b.max)})`,
    anyOf: [{ type: 'integer', minimum: b.min, maximum: b.max }, { type: 'string', pattern: RATE_RE }],
  };
}

function size(b: Bounds, description: string): Schema {
  return {
    description: `${description}: a size such as 64MiB or 1GiB, or a whole number of bytes (${formatSizeSpec(b.min)} to ${formatSizeSpec(b.max)})`,
    anyOf: [{ type: 'integer', minimum: b.min, maximum: b.max }, { type: 'string', pattern: SIZE_RE }],
  };
}

/** An object of exactly `keys`, each given a schema by `props` (which must cover them all, and nothing else). */
function object(what: string, keys: readonly string[], props: Record<string, Schema>, extra: Schema = {}): Schema {
  const missing = keys.filter((k) => !(k in props));
  const unknown = Object.keys(props).filter((k) => !keys.includes(k));
  if (missing.length || unknown.length) throw new Error(`the schema of ${what} is out of step with src/config/schema.ts: ${missing.length ? `no schema for ${missing.join(', ')}` : ''}${unknown.length ? ` keys the loader does not take: ${unknown.join(', ')}` : ''}`);
  return { type: 'object', properties: Object.fromEntries(keys.map((k) => [k, props[k]])), additionalProperties: false, ...extra };
}

export function renderConfigSchema(): Schema {
  const hook = (phase: string) => ({
    description: `the ${phase} hook: a command, or {command, timeout} (timeout default ${formatDurationSpec(DEFAULTS.hookTimeoutS)})`,
    anyOf: [
      text(`${phase} hook command`),
      object(`${phase} hook`, HOOK_KEYS, { command: text('the command, run by /bin/sh'), timeout: duration(DURATION.hookTimeout, 'time limit') }, { required: ['command'] }),
    ],
  });
  const definitions: Record<string, Schema> = {
    site: object('site', SITE_KEYS, {
      name: name('this site\'s name: apply refuses a file written for another site'),
      listen: { type: 'string', pattern: LISTEN_RE, description: `peer address for \`ferry serve\`, HOST:PORT (default ${DEFAULTS.listen}; --listen wins)` },
      replicaRoot: path('where new secondaries are made (default <home>/replicas)'),
      log: object('log', LOG_KEYS, {
        file: path('the log file: JSON lines, rotated by size'),
        maxSize: size(SIZE.logMaxSize, 'rotate before this size (default 64MiB)'),
        keep: count(COUNT.logKeep, 'rotated files kept (default 5)'),
      }, { required: ['file'], description: 'also write the daemon\'s log to a file (read at start)' }),
      memoryBudget: size(SIZE.memoryBudget, 'the daemon\'s memory budget: its buffers, caches and worker heaps (default 256MiB; read at start; --memory-budget wins; docs/memory.md)'),
      gcThreshold: size(SIZE.gcThreshold, 'releasable bytes after which garbage is collected by itself (default: 64MiB or 5% of the store, whichever is more; 0: after every release; docs/store.md)'),
    }, { description: 'this site\'s own settings' }),
    member: {
      description: 'a member: [NAME=][tree:|image:]PATH, or {path, name, kind}',
      anyOf: [
        text('[NAME=][tree:|image:]PATH, as `volume create --member` takes it'),
        object('member', MEMBER_KEYS, {
          path: path('a directory (tree), or a regular file or block device (image)'),
          name: name('the member\'s name (default: the path\'s last component)'),
          kind: { type: 'string', enum: ['tree', 'image'], description: 'tree (a directory) or image (a file or block device); default: from the path' },
        }, { required: ['path'] }),
      ],
    },
    volume: object('volume', VOLUME_KEYS, {
      secondary: { type: 'boolean', description: 'true: this volume receives a replica (used when it is created)' },
      journal: { type: 'boolean', description: 'false: the daemon\'s change journal does not watch this volume, and every snapshot (at a secondary, every writes check) walks its trees in full (default true)' },
      members: { type: 'array', minItems: 1, items: { $ref: '#/definitions/member' }, description: 'one or more; several are one consistency group, captured at one instant' },
      hooks: object('hooks', HOOKS_KEYS, { pre: hook('pre'), post: hook('post') }, { description: 'commands run around each snapshot: pre quiesces (a failure aborts the snapshot), post resumes' }),
      retention: object('retention', RETENTION_KEYS, Object.fromEntries(RETENTION_KEYS.map((k) => [k, count(COUNT.retention, k === 'last' ? 'keep the newest n snapshots' : `keep the newest snapshot of each of the last n ${k.replace(/ly$/, '').replace(/^dai$/, 'day')}s`)])), { description: 'which snapshots to keep (held ones always are)' }),
    }, { required: ['members'] }),
    mirror: object('mirror', MIRROR_KEYS, {
      volume: name('a volume declared under volumes:, not a secondary'),
      to: name('a site paired with `ferry site add`'),
      remoteVolume: name('the volume\'s name at the destination (default: the same)'),
      schedule: duration(DURATION.schedule, 'update every (default: manual updates only)'),
      minDelay: duration(DURATION.minDelay, `updates closer together are refused unless forced (default ${formatDurationSpec(DEFAULTS.mirror.minDelayS)})`),
      maxDelay: duration(DURATION.maxDelay, `health warns when the replica is older (default ${formatDurationSpec(DEFAULTS.mirror.maxDelayS)})`),
      bandwidth: rate(RATE.bandwidth, 'limit this mirror to a rate (default: unlimited)'),
      deltas: { type: 'string', enum: [...DELTA_MODES], description: 'how changed chunks go: auto (default: as deltas when the link measured by earlier transfers is slower than making them), always, or never' },
    }, { required: ['volume', 'to'] }),
    link: object('link', LINK_KEYS, {
      path: path('where the writable copy appears (new, or an empty directory)'),
      volume: name('a volume declared under volumes:'),
      member: name('the member to show (required when the volume has several)'),
      snapshot: text(`an id, a name, or latest (default ${DEFAULTS.link.snapshot}, followed at each refresh)`),
      schedule: duration(DURATION.schedule, 'refresh every (default: by hand only)'),
      minDelay: duration(DURATION.minDelay, `refreshes closer together are refused unless forced (default ${formatDurationSpec(DEFAULTS.link.minDelayS)})`),
      maxDelay: duration(DURATION.maxDelay, `status warns when the copy is older (default ${formatDurationSpec(DEFAULTS.link.maxDelayS)})`),
    }, { required: ['path', 'volume'] }),
  };
  const top = object('the file', TOP_KEYS, {
    version: { const: CONFIG_VERSION, description: `the format version; this ferry reads ${CONFIG_VERSION}` },
    site: { $ref: '#/definitions/site' },
    volumes: { type: ['object', 'null'], propertyNames: { pattern: NAME_RE }, additionalProperties: { $ref: '#/definitions/volume' }, description: 'volumes by name' },
    mirrors: { type: ['array', 'null'], items: { $ref: '#/definitions/mirror' }, description: 'mirrors of the volumes above to paired sites' },
    links: { type: ['array', 'null'], items: { $ref: '#/definitions/link' }, description: 'writable copies of a volume\'s snapshot at stable paths' },
  }, { required: ['version'] });
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'ferry site file (ferry.yaml)',
    description: `A ferry site: its volumes, mirrors, links and settings (docs/config.md). Generated from the loader by scripts/gen-config-schema.ts; \`ferry config check\` also checks what needs the whole file or the site.`,
    ...top,
    // Top-level keys starting with x- are the file's own (anchors for aliases): ignored.
    patternProperties: { '^x-': {} },
    definitions,
  };
}

export const SCHEMA_FILE = join('packaging', 'schema', 'ferry.schema.json');

export function renderConfigSchemaText(): string {
  return `${JSON.stringify(renderConfigSchema(), null, 2)}\n`;
}

if (import.meta.main) {
  const root = dirname(dirname(fileURLToPath(import.meta.url)));
  writeFileSync(join(root, SCHEMA_FILE), renderConfigSchemaText());
}
