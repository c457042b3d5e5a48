// Reading a site file: YAML text -> a validated SiteConfig, or every problem
// in it at once, each with its line, column, place in the document and a
// hint. Pure: no site, no filesystem beyond path arithmetic (checks that need
// the site live in plan.ts). Values are parsed by core/units.ts with the
// bounds of their setting, as the CLI and the wire protocol parse them, so
// `15m` or `50MiB/s` mean the same in the file as on the command line, and a
// value one accepts the others accept.
import { dirname, isAbsolute, resolve, sep } from 'node:path';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node, type Scalar, type YAMLMap } from 'yaml';
import { FerryError, isFerryError } from '../core/errors.ts';
import { parseName } from '../core/ids.ts';
import { checkCount, checkDuration, checkRate, checkSize, COUNT, DELTA_MODES, DURATION, parseDuration, parseRate, parseSize, RATE, SIZE, type Bounds, type DeltaMode } from '../core/units.ts';
import { splitHostPort } from '../transport/http.ts';
import { parseMemberSpec, type HookSpec, type Hooks } from '../site/volumes.ts';
import { overlaps, within } from '../site/paths.ts';
import type { RetentionPolicy } from '../snapshot/retention.ts';
import {
  CONFIG_VERSION, DEFAULTS, HOOK_KEYS, HOOKS_KEYS, LINK_KEYS, LOG_KEYS, MEMBER_KEYS, MIRROR_KEYS, MISPLACED, RETENTION_KEYS, SITE_KEYS, TOP_KEYS, VOLUME_KEYS,
  type ConfigIssue, type LinkConfig, type Lines, type LogSettings, type MemberConfig, type MirrorConfig, type SiteConfig, type SiteSettings, type VolumeConfig,
} from './schema.ts';

/** Edit distance with transpositions (optimal string alignment), for "did you mean". */
function distance(a: string, b: string): number {
  a = a.toLowerCase();
  b = b.toLowerCase();
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** The closest of `choices` to `word`, if it is close enough to be what was meant. */
export function didYouMean(word: string, choices: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of choices) {
    const dd = distance(word, c);
    if (dd < bestD) {
      bestD = dd;
      best = c;
    }
  }
  return best !== undefined && bestD <= Math.max(1, Math.floor(best.length / 3)) ? best : undefined;
}

export function suggest(word: string, choices: readonly string[], what: string): string {
  const m = didYouMean(word, choices);
  if (m) return `did you mean ${JSON.stringify(m)}?`;
  return choices.length ? `${what}: ${choices.join(', ')}` : `there are no ${what.replace(/^known /, '')}`;
}

type Entry = { key: Scalar; value: Node | null };

class Reader {
  readonly issues: ConfigIssue[] = [];
  readonly #lc: LineCounter;
  readonly #doc: Document;
  readonly #dir: string;
  constructor(lc: LineCounter, doc: Document, file: string) {
    this.#lc = lc;
    this.#doc = doc;
    this.#dir = dirname(file);
  }

  pos(node: Node | null | undefined): { line: number; col: number } {
    const off = node?.range?.[0];
    return off === undefined ? { line: 0, col: 0 } : this.#lc.linePos(off);
  }

  line(node: Node | null | undefined): number {
    return this.pos(node).line;
  }

  issue(node: Node | null | undefined, path: string, message: string, hint?: string): undefined {
    this.issues.push({ ...this.pos(node), path, message, ...(hint ? { hint } : {}) });
    return undefined;
  }

  /** Aliases (*name) stand for their anchor's node. */
  deref(node: Node | null | undefined): Node | null {
    if (!node) return null;
    if (isAlias(node)) return (node.resolve(this.#doc) as Node | undefined) ?? null;
    return node;
  }

  isNull(node: Node | null): boolean {
    return node === null || (isScalar(node) && node.value === null);
  }

  /** A map with only `allowed` keys: its entries by key; unknown and repeated keys are reported. */
  map(raw: Node | null, path: string, allowed: readonly string[] | null, what: string): Map<string, Entry> | undefined {
    const node = this.deref(raw);
    if (!isMap(node)) return this.issue(node ?? raw, path, `${what} must be a map of keys and values`, this.isNull(node) ? 'it is empty: give its keys, or remove it' : `got ${describe(node)}`);
    const out = new Map<string, Entry>();
    for (const pair of (node as YAMLMap<unknown, unknown>).items) {
      const key = pair.key as Node;
      if (!isScalar(key) || typeof key.value !== 'string' && typeof key.value !== 'number') {
        this.issue(key, path, `keys of ${what} must be plain names`);
        continue;
      }
      const k = String(key.value);
      const at = path ? `${path}.${k}` : k;
      if (out.has(k)) {
        this.issue(key, at, `${k} is given twice in ${what} (first at line ${this.line(out.get(k)!.key)})`, 'keep one of them');
        continue;
      }
      // Top-level x-* keys are the file's own (anchors for aliases, as in compose files): ignored.
      if (path === '' && k.startsWith('x-')) continue;
      if (allowed && !allowed.includes(k)) {
        const m = didYouMean(k, allowed);
        const hint = m ? `did you mean ${JSON.stringify(m)}?` : MISPLACED[k] ?? `${what} takes: ${allowed.join(', ')}`;
        this.issue(key, at, `unknown key ${JSON.stringify(k)} in ${what}`, hint);
        continue;
      }
      out.set(k, { key, value: (pair.value as Node | null) ?? null });
    }
    return out;
  }

  list(raw: Node | null, path: string, what: string): Node[] | undefined {
    const node = this.deref(raw);
    if (this.isNull(node)) return [];
    if (!isSeq(node)) return this.issue(node, path, `${what} must be a list (items start with "- ")`, `got ${describe(node)}`);
    return node.items.map((n) => this.deref(n as Node) ?? (n as Node));
  }

  scalar(raw: Node | null, path: string, what: string): string | number | boolean | undefined {
    const node = this.deref(raw);
    if (this.isNull(node)) return this.issue(raw, path, `${what} has no value`, 'give a value, or remove the key to use the default');
    if (!isScalar(node)) return this.issue(node, path, `${what} must be a single value`, `got ${describe(node)}`);
    const v = node.value;
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return v;
    return this.issue(node, path, `${what} must be a string, a number or true/false`);
  }

  str(raw: Node | null, path: string, what: string): string | undefined {
    const v = this.scalar(raw, path, what);
    if (v === undefined) return undefined;
    if (typeof v !== 'string') return this.issue(raw, path, `${what} must be text, got ${JSON.stringify(v)}`, 'quote it if it is meant as text');
    if (!v.trim()) return this.issue(raw, path, `${what} is empty`);
    return v;
  }

  name(raw: Node | null, path: string, what: string): string | undefined {
    const v = this.scalar(raw, path, `${what} name`);
    if (v === undefined) return undefined;
    return this.parsed(raw, path, () => parseName(String(v), what));
  }

  bool(raw: Node | null, path: string, what: string): boolean | undefined {
    const v = this.scalar(raw, path, what);
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') return this.issue(raw, path, `${what} must be true or false, got ${JSON.stringify(v)}`, 'write true or false (yes/no/on/off are text in YAML 1.2)');
    return v;
  }

  /** A whole number within `bounds`. */
  int(raw: Node | null, path: string, what: string, bounds: Bounds): number | undefined {
    const v = this.scalar(raw, path, what);
    if (v === undefined) return undefined;
    return this.parsed(raw, path, () => checkCount(v, bounds, what));
  }

  /** A duration in whole seconds within `bounds`: "90s", "15m", "1h30m", "1d", or a number of seconds. */
  duration(raw: Node | null, path: string, what: string, bounds: Bounds): number | undefined {
    const v = this.scalar(raw, path, what);
    if (v === undefined) return undefined;
    const hint = bounds.min === 0 ? 'use 0s for none, or a duration like 30s, 5m, 1h30m, 1d' : 'durations are a number and a unit: s, m, h, d or w (e.g. 15m, 1h30m, 1d)';
    if (typeof v === 'number') return this.parsed(raw, path, () => checkDuration(v, bounds, what), hint);
    if (typeof v !== 'string') return this.issue(raw, path, `${what} must be a duration like 30s, 5m, 1h30m or 1d, got ${JSON.stringify(v)}`, hint);
    return this.parsed(raw, path, () => parseDuration(v, bounds, what), hint);
  }

  /** A rate in whole bytes per second within `bounds`: "50MiB/s", or a number of bytes per second. */
  rate(raw: Node | null, path: string, what: string, bounds: Bounds): number | undefined {
    const v = this.scalar(raw, path, what);
    if (v === undefined) return undefined;
    const hint = 'rates are a number and a unit per second: 500KiB/s, 10MB/s, 50MiB/s, 1GiB/s';
    if (typeof v === 'number') return this.parsed(raw, path, () => checkRate(v, bounds, what), hint);
    return this.parsed(raw, path, () => parseRate(String(v), bounds, what), hint);
  }

  /** A size in whole bytes within `bounds`: "10MiB", or a number of bytes. */
  size(raw: Node | null, path: string, what: string, bounds: Bounds): number | undefined {
    const v = this.scalar(raw, path, what);
    if (v === undefined) return undefined;
    const hint = 'sizes are a number and a unit: KiB, MB, MiB, GB, GiB';
    if (typeof v === 'number') return this.parsed(raw, path, () => checkSize(v, bounds, what), hint);
    return this.parsed(raw, path, () => parseSize(String(v), bounds, what), hint);
  }

  /** A path; relative ones are taken from the file's directory. */
  path(raw: Node | null, path: string, what: string): string | undefined {
    const v = this.str(raw, path, what);
    if (v === undefined) return undefined;
    if (v.includes('\0')) return this.issue(raw, path, `${what} contains a NUL byte`);
    return this.resolve(v);
  }

  resolve(p: string): string {
    return isAbsolute(p) ? resolve(p) : resolve(this.#dir, p);
  }

  /** Run a parser that throws FerryError; turn its message into an issue at `raw`. */
  parsed<T>(raw: Node | null, path: string, fn: () => T, hint?: string): T | undefined {
    try {
      return fn();
    } catch (err) {
      if (!isFerryError(err)) throw err;
      return this.issue(raw, path, err.message, hint);
    }
  }
}

function describe(node: Node | null): string {
  if (node === null) return 'nothing';
  if (isMap(node)) return 'a map';
  if (isSeq(node)) return 'a list';
  if (isScalar(node)) return node.value === null ? 'an empty value' : JSON.stringify(node.value);
  return 'something else';
}

function lines(r: Reader, node: Node | null, fields?: Map<string, Entry>): Lines {
  const out: Lines = { _: r.line(node) };
  for (const [k, e] of fields ?? []) out[k] = r.line(e.key);
  return out;
}

function readSite(r: Reader, raw: Node | null): SiteSettings {
  const out: SiteSettings = { name: null, listen: null, replicaRoot: null, log: null, memoryBudget: null, gcThreshold: null, lines: { _: r.line(raw) } };
  const m = r.map(raw, 'site', SITE_KEYS, 'site');
  if (!m) return out;
  out.lines = lines(r, raw, m);
  const get = (k: string) => m.get(k)?.value ?? null;
  if (m.has('name')) out.name = r.name(get('name'), 'site.name', 'site') ?? null;
  if (m.has('listen')) {
    const v = r.str(get('listen'), 'site.listen', 'listen');
    if (v !== undefined) {
      try {
        splitHostPort(v);
        out.listen = v;
      } catch {
        r.issue(get('listen'), 'site.listen', `listen takes HOST:PORT with a port from 0 to 65535, got ${JSON.stringify(v)}`, 'e.g. 0.0.0.0:7420, 127.0.0.1:7420 or [::]:7420');
      }
    }
  }
  if (m.has('replicaRoot')) out.replicaRoot = r.path(get('replicaRoot'), 'site.replicaRoot', 'replicaRoot') ?? null;
  if (m.has('memoryBudget')) out.memoryBudget = r.size(get('memoryBudget'), 'site.memoryBudget', 'memoryBudget', SIZE.memoryBudget) ?? null;
  if (m.has('gcThreshold')) out.gcThreshold = r.size(get('gcThreshold'), 'site.gcThreshold', 'gcThreshold', SIZE.gcThreshold) ?? null;
  if (m.has('log')) {
    const lm = r.map(get('log'), 'site.log', LOG_KEYS, 'log');
    if (lm) {
      const lget = (k: string) => lm.get(k)?.value ?? null;
      const file = lm.has('file') ? r.path(lget('file'), 'site.log.file', 'log file') : r.issue(get('log'), 'site.log.file', 'log has no file', 'give `file: /var/log/ferry/ferry.log` (maxSize and keep are optional)');
      const maxBytes = lm.has('maxSize') ? r.size(lget('maxSize'), 'site.log.maxSize', 'log maxSize', SIZE.logMaxSize) : null;
      const keep = lm.has('keep') ? r.int(lget('keep'), 'site.log.keep', 'log keep', COUNT.logKeep) : null;
      if (file !== undefined && maxBytes !== undefined && keep !== undefined) out.log = { file, maxBytes, keep } satisfies LogSettings;
    }
  }
  return out;
}

function readHooks(r: Reader, raw: Node | null, path: string): Hooks {
  const out: Hooks = {};
  const m = r.map(raw, path, HOOKS_KEYS, 'hooks');
  if (!m) return out;
  for (const phase of HOOKS_KEYS) {
    const e = m.get(phase);
    if (!e) continue;
    const p = `${path}.${phase}`;
    const node = r.deref(e.value);
    let spec: HookSpec | undefined;
    if (isMap(node)) {
      const hm = r.map(node, p, HOOK_KEYS, `${phase} hook`);
      if (!hm) continue;
      const command = hm.has('command') ? r.str(hm.get('command')!.value, `${p}.command`, `${phase} hook command`) : r.issue(node, `${p}.command`, `${phase} hook has no command`, 'give `command: "..."`');
      const timeout = hm.has('timeout') ? r.duration(hm.get('timeout')!.value, `${p}.timeout`, `${phase} hook timeout`, DURATION.hookTimeout) : DEFAULTS.hookTimeoutS;
      if (command !== undefined && timeout !== undefined) spec = { command, timeout };
    } else {
      const command = r.str(e.value, p, `${phase} hook`);
      if (command !== undefined) spec = { command, timeout: DEFAULTS.hookTimeoutS };
    }
    if (spec) out[phase] = spec;
  }
  return out;
}

function readRetention(r: Reader, raw: Node | null, path: string): RetentionPolicy {
  const out: RetentionPolicy = {};
  const m = r.map(raw, path, RETENTION_KEYS, 'retention');
  if (!m) return out;
  for (const [k, e] of m) {
    const n = r.int(e.value, `${path}.${k}`, `retention ${k}`, COUNT.retention);
    if (n) out[k as keyof RetentionPolicy] = n;
  }
  return out;
}

function readMember(r: Reader, raw: Node, path: string): MemberConfig | undefined {
  const node = r.deref(raw);
  if (isMap(node)) {
    const m = r.map(node, path, MEMBER_KEYS, 'member');
    if (!m) return undefined;
    const p = m.has('path') ? r.path(m.get('path')!.value, `${path}.path`, 'member path') : r.issue(node, `${path}.path`, 'member has no path', 'give `path: /srv/app/data`');
    const name = m.has('name') ? r.name(m.get('name')!.value, `${path}.name`, 'member') : null;
    let kind: 'tree' | 'image' | null | undefined = null;
    if (m.has('kind')) {
      const k = r.str(m.get('kind')!.value, `${path}.kind`, 'member kind');
      kind = k === 'tree' || k === 'image' ? k : k === undefined ? undefined : r.issue(m.get('kind')!.value, `${path}.kind`, `member kind must be tree or image, got ${JSON.stringify(k)}`, 'tree: a directory; image: a regular file or block device; leave it out to take it from the path');
    }
    if (p === undefined || name === undefined || kind === undefined) return undefined;
    return { name, kind, path: p, lines: lines(r, node, m) };
  }
  // The CLI's --member form: [NAME=][tree:|image:]PATH
  const s = r.str(node, path, 'member');
  if (s === undefined) return undefined;
  const spec = r.parsed(node, path, () => parseMemberSpec(s), 'write [NAME=][tree:|image:]PATH, or a map with path, name and kind');
  if (!spec) return undefined;
  return { name: spec.name ?? null, kind: spec.kind ?? null, path: r.resolve(spec.path), lines: { _: r.line(node) } };
}

function readVolume(r: Reader, name: string, raw: Node | null, path: string): VolumeConfig | undefined {
  const m = r.map(raw, path, VOLUME_KEYS, `volume ${name}`);
  if (!m) return undefined;
  const members: MemberConfig[] = [];
  if (!m.has('members')) r.issue(raw, `${path}.members`, `volume ${name} has no members`, 'give `members:` with at least one path (several make one consistency group)');
  else {
    const items = r.list(m.get('members')!.value, `${path}.members`, 'members');
    if (items?.length === 0) r.issue(m.get('members')!.key, `${path}.members`, `volume ${name} has no members`, 'a volume needs at least one member path');
    items?.forEach((n, i) => {
      const mc = readMember(r, n, `${path}.members[${i}]`);
      if (mc) members.push(mc);
    });
  }
  const secondary = m.has('secondary') ? r.bool(m.get('secondary')!.value, `${path}.secondary`, 'secondary') : false;
  const hooks = m.has('hooks') ? readHooks(r, m.get('hooks')!.value, `${path}.hooks`) : {};
  const retention = m.has('retention') ? readRetention(r, m.get('retention')!.value, `${path}.retention`) : {};
  const journal = m.has('journal') ? r.bool(m.get('journal')!.value, `${path}.journal`, 'journal') : true;
  return { name, secondary: secondary ?? false, members, hooks, retention, journal: journal ?? true, lines: lines(r, raw, m) };
}

function readMirror(r: Reader, raw: Node, path: string): MirrorConfig | undefined {
  const m = r.map(raw, path, MIRROR_KEYS, 'mirror');
  if (!m) return undefined;
  const get = (k: string) => m.get(k)?.value ?? null;
  const volume = m.has('volume') ? r.name(get('volume'), `${path}.volume`, 'volume') : r.issue(raw, `${path}.volume`, 'mirror has no volume', 'give `volume: NAME`, a volume declared under volumes:');
  const to = m.has('to') ? r.name(get('to'), `${path}.to`, 'site') : r.issue(raw, `${path}.to`, 'mirror has no destination', 'give `to: SITE`, a site paired with `ferry site add`');
  const remoteVolume = m.has('remoteVolume') ? r.name(get('remoteVolume'), `${path}.remoteVolume`, 'volume') : volume;
  const scheduleS = m.has('schedule') ? r.duration(get('schedule'), `${path}.schedule`, 'schedule', DURATION.schedule) : null;
  const minDelayS = m.has('minDelay') ? r.duration(get('minDelay'), `${path}.minDelay`, 'minDelay', DURATION.minDelay) : DEFAULTS.mirror.minDelayS;
  const maxDelayS = m.has('maxDelay') ? r.duration(get('maxDelay'), `${path}.maxDelay`, 'maxDelay', DURATION.maxDelay) : DEFAULTS.mirror.maxDelayS;
  const bandwidth = m.has('bandwidth') ? r.rate(get('bandwidth'), `${path}.bandwidth`, 'bandwidth', RATE.bandwidth) : null;
  let deltas: DeltaMode = 'auto';
  if (m.has('deltas')) {
    const d = r.str(get('deltas'), `${path}.deltas`, 'deltas');
    if (d !== undefined && (DELTA_MODES as readonly string[]).includes(d)) deltas = d as DeltaMode;
    else if (d !== undefined) r.issue(get('deltas'), `${path}.deltas`, `deltas must be one of ${DELTA_MODES.join(', ')}, got ${JSON.stringify(d)}`, 'auto: as deltas when the measured link is slower than making them; always; never');
  }
  if (volume === undefined || to === undefined) return undefined;
  // A mirror with a bad setting is kept (with the default in its place) so that the cross checks still see it;
  // the file is refused anyway.
  return {
    volume, to, remoteVolume: remoteVolume ?? volume, scheduleS: scheduleS ?? null, minDelayS: minDelayS ?? DEFAULTS.mirror.minDelayS, maxDelayS: maxDelayS ?? DEFAULTS.mirror.maxDelayS,
    bandwidth: bandwidth ?? null, deltas, lines: lines(r, raw, m),
  };
}

function readLink(r: Reader, raw: Node, path: string): LinkConfig | undefined {
  const m = r.map(raw, path, LINK_KEYS, 'link');
  if (!m) return undefined;
  const get = (k: string) => m.get(k)?.value ?? null;
  const p = m.has('path') ? r.path(get('path'), `${path}.path`, 'link path') : r.issue(raw, `${path}.path`, 'link has no path', 'give `path: /srv/test/app`, where the writable copy appears');
  const volume = m.has('volume') ? r.name(get('volume'), `${path}.volume`, 'volume') : r.issue(raw, `${path}.volume`, 'link has no volume', 'give `volume: NAME`, a volume declared under volumes:');
  const member = m.has('member') ? r.name(get('member'), `${path}.member`, 'member') : null;
  const snapshot = m.has('snapshot') ? r.str(get('snapshot'), `${path}.snapshot`, 'snapshot') : DEFAULTS.link.snapshot;
  const scheduleS = m.has('schedule') ? r.duration(get('schedule'), `${path}.schedule`, 'schedule', DURATION.schedule) : null;
  const minDelayS = m.has('minDelay') ? r.duration(get('minDelay'), `${path}.minDelay`, 'minDelay', DURATION.minDelay) : DEFAULTS.link.minDelayS;
  const maxDelayS = m.has('maxDelay') ? r.duration(get('maxDelay'), `${path}.maxDelay`, 'maxDelay', DURATION.maxDelay) : DEFAULTS.link.maxDelayS;
  if (p === undefined || volume === undefined) return undefined;
  return {
    path: p, volume, member: member ?? null, snapshot: snapshot ?? DEFAULTS.link.snapshot, scheduleS: scheduleS ?? null, minDelayS: minDelayS ?? DEFAULTS.link.minDelayS,
    maxDelayS: maxDelayS ?? DEFAULTS.link.maxDelayS, lines: lines(r, raw, m),
  };
}

/** The name createVolume gives a member declared without one. */
export function defaultMemberName(path: string): string {
  const base = path.split(sep).filter(Boolean).pop() ?? 'root';
  const cleaned = base.replace(/[^A-Za-z0-9._@+-]/g, '_').replace(/^[^A-Za-z0-9]+/, '');
  return (cleaned || 'member').slice(0, 128);
}

/** The member names a volume will have (createVolume's rule for unnamed ones). */
export function memberNames(v: VolumeConfig): string[] {
  const names: string[] = [];
  for (const m of v.members) {
    let n = m.name ?? defaultMemberName(m.path);
    if (!m.name) for (let i = 2; names.includes(n); i++) n = `${defaultMemberName(m.path)}-${i}`;
    names.push(n);
  }
  return names;
}

/** Checks across the document: names that must exist, things that must not repeat or overlap. */
function crossCheck(cfg: SiteConfig, issues: ConfigIssue[]): void {
  const at = (lines: Lines, key: string) => ({ line: lines[key] ?? lines._ ?? 0, col: 1 });
  const push = (lines: Lines, key: string, path: string, message: string, hint?: string) => issues.push({ ...at(lines, key), path, message, ...(hint ? { hint } : {}) });
  const vols = new Map(cfg.volumes.map((v) => [v.name, v]));
  const volNames = [...vols.keys()];

  const allMembers: Array<{ v: VolumeConfig; m: MemberConfig; i: number }> = cfg.volumes.flatMap((v) => v.members.map((m, i) => ({ v, m, i })));
  for (const v of cfg.volumes) {
    const names = new Map<string, MemberConfig>();
    v.members.forEach((m, i) => {
      if (!m.name) return;
      const first = names.get(m.name);
      if (first) push(m.lines, 'name', `volumes.${v.name}.members[${i}].name`, `two members of volume ${v.name} are named ${m.name} (first at line ${first.lines._})`, 'member names must differ within a volume');
      else names.set(m.name, m);
    });
  }
  for (let a = 0; a < allMembers.length; a++) {
    for (let b = a + 1; b < allMembers.length; b++) {
      const x = allMembers[a];
      const y = allMembers[b];
      if (within(y.m.path, x.m.path) || within(x.m.path, y.m.path)) {
        const same = x.m.path === y.m.path;
        push(y.m.lines, 'path', `volumes.${y.v.name}.members[${y.i}].path`,
          same ? `${y.m.path} is already member ${x.i + 1} of volume ${x.v.name} (line ${x.m.lines._})` : `member ${y.m.path} overlaps ${x.m.path} (volume ${x.v.name}, line ${x.m.lines._})`,
          same ? 'a path can belong to one volume only' : 'members must not contain one another: split the tree, or make one member of the parent');
      }
    }
  }

  const mirrorKeys = new Map<string, MirrorConfig>();
  cfg.mirrors.forEach((mc, i) => {
    const path = `mirrors[${i}]`;
    const v = vols.get(mc.volume);
    if (!v) push(mc.lines, 'volume', `${path}.volume`, `mirror names volume ${mc.volume}, which the file does not declare`, suggest(mc.volume, volNames, 'declared volumes'));
    else if (v.secondary) push(mc.lines, 'volume', `${path}.volume`, `volume ${mc.volume} is declared secondary: it receives a replica and cannot be the source of a mirror`, 'mirror it from its primary site, or drop `secondary: true`');
    const key = `${mc.volume}@${mc.to}`;
    const first = mirrorKeys.get(key);
    if (first) push(mc.lines, 'to', `${path}.to`, `volume ${mc.volume} has two mirrors to ${mc.to} (first at line ${first.lines._})`, 'one mirror per volume and site; merge them');
    else mirrorKeys.set(key, mc);
  });

  const linkPaths = new Map<string, LinkConfig>();
  cfg.links.forEach((l, i) => {
    const path = `links[${i}]`;
    const v = vols.get(l.volume);
    if (!v) push(l.lines, 'volume', `${path}.volume`, `link names volume ${l.volume}, which the file does not declare`, suggest(l.volume, volNames, 'declared volumes'));
    else {
      const names = memberNames(v);
      if (l.member !== null && !names.includes(l.member)) push(l.lines, 'member', `${path}.member`, `volume ${l.volume} has no member ${l.member}`, suggest(l.member, names, 'its members'));
      if (l.member === null && names.length > 1) push(l.lines, '_', `${path}.member`, `volume ${l.volume} has ${names.length} members; the link must say which`, `add \`member:\` with one of ${names.join(', ')}`);
    }
    for (const [p, other] of linkPaths) {
      if (within(l.path, p) || within(p, l.path)) {
        push(l.lines, 'path', `${path}.path`, l.path === p ? `two links at ${p} (first at line ${other.lines._})` : `link ${l.path} overlaps link ${p} (line ${other.lines._})`, 'each link needs a path of its own');
      }
    }
    linkPaths.set(l.path, l);
    for (const { v: mv, m } of allMembers) {
      if (overlaps(l.path, m.path)) push(l.lines, 'path', `${path}.path`, `link ${l.path} overlaps member ${m.path} of volume ${mv.name} (line ${m.lines._})`, 'a link must be a path of its own, outside every member');
    }
  });

  // The replica root against the file's own members and links (against the site's: plan.ts).
  const root = cfg.site.replicaRoot;
  if (root !== null) {
    const hint = 'new replicas are made under it: set replicaRoot to a directory outside every member and link, or leave it out for the default (<home>/replicas)';
    for (const { v, m } of allMembers) {
      if (within(root, m.path)) push(cfg.site.lines, 'replicaRoot', 'site.replicaRoot', `replicaRoot ${root} lies inside member ${m.path} of volume ${v.name} (line ${m.lines._})`, hint);
    }
    for (const l of cfg.links) {
      if (overlaps(root, l.path)) push(cfg.site.lines, 'replicaRoot', 'site.replicaRoot', `replicaRoot ${root} overlaps link ${l.path} (line ${l.lines._})`, hint);
    }
  }
}

/** Parse and validate a site file. Every problem comes back in `issues`; `config` is usable only when there are none. */
export function loadConfig(text: string, file: string): { config: SiteConfig; issues: ConfigIssue[] } {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: false, prettyErrors: false, merge: false });
  const cfg: SiteConfig = { version: CONFIG_VERSION, file, site: { name: null, listen: null, replicaRoot: null, log: null, memoryBudget: null, gcThreshold: null, lines: { _: 0 } }, volumes: [], mirrors: [], links: [] };
  if (doc.errors.length > 0) {
    const issues = doc.errors.map((e) => ({ ...lc.linePos(e.pos[0]), path: '', message: `YAML: ${e.message.split('\n')[0]}`, hint: yamlHint(e.code) }));
    return { config: cfg, issues };
  }
  const r = new Reader(lc, doc, file);
  const root = doc.contents as Node | null;
  if (r.isNull(root)) {
    r.issue(root, '', 'the file is empty', 'start it with `version: 1` (docs/config.md has the format, docs/examples/ has samples)');
    return { config: cfg, issues: r.issues };
  }
  const top = r.map(root, '', TOP_KEYS, 'the file');
  if (!top) return { config: cfg, issues: r.issues };
  if (!top.has('version')) r.issue(root, 'version', 'the file has no version', `start it with \`version: ${CONFIG_VERSION}\``);
  else {
    const v = r.int(top.get('version')!.value, 'version', 'version', { min: 1, max: 1_000 });
    if (v !== undefined && v !== CONFIG_VERSION) r.issue(top.get('version')!.value, 'version', `the file is format version ${v}; this ferry reads version ${CONFIG_VERSION}`, v > CONFIG_VERSION ? 'upgrade ferry' : `write version: ${CONFIG_VERSION}`);
  }
  if (top.has('site')) cfg.site = readSite(r, top.get('site')!.value);
  if (top.has('volumes')) {
    const raw = top.get('volumes')!.value;
    const vm = r.isNull(r.deref(raw)) ? new Map<string, Entry>() : r.map(raw, 'volumes', null, 'volumes');
    for (const [name, e] of vm ?? []) {
      const ok = r.parsed(e.key, `volumes.${name}`, () => parseName(name, 'volume'));
      const v = readVolume(r, name, e.value, `volumes.${name}`);
      if (ok && v) {
        v.lines._ = r.line(e.key);
        cfg.volumes.push(v);
      }
    }
  }
  if (top.has('mirrors')) {
    r.list(top.get('mirrors')!.value, 'mirrors', 'mirrors')?.forEach((n, i) => {
      const mc = readMirror(r, n, `mirrors[${i}]`);
      if (mc) cfg.mirrors.push(mc);
    });
  }
  if (top.has('links')) {
    r.list(top.get('links')!.value, 'links', 'links')?.forEach((n, i) => {
      const l = readLink(r, n, `links[${i}]`);
      if (l) cfg.links.push(l);
    });
  }
  crossCheck(cfg, r.issues);
  r.issues.sort((a, b) => a.line - b.line || a.col - b.col);
  return { config: cfg, issues: r.issues };
}

function yamlHint(code: string): string | undefined {
  switch (code) {
    case 'BAD_INDENT':
    case 'MISSING_CHAR':
      return 'check the indentation: nested keys are indented more than their parent, with spaces (not tabs)';
    case 'TAB_AS_INDENT':
      return 'indent with spaces, not tabs';
    case 'MULTIPLE_DOCS':
      return 'one site file holds one document: remove the extra `---`';
    case 'BLOCK_AS_IMPLICIT_KEY':
      return 'a key is missing its colon, or a value runs onto the next line';
    default:
      return undefined;
  }
}

/** One line per issue, as a compiler prints them: FILE:LINE:COL: PATH: message (hint). */
export function formatIssues(file: string, issues: ConfigIssue[]): string {
  return issues
    .map((i) => `${file}${i.line ? `:${i.line}:${i.col}` : ''}: ${i.path ? `${i.path}: ` : ''}${i.message}${i.hint ? `\n    hint: ${i.hint}` : ''}`)
    .join('\n');
}

/** The error that refuses a file: its message lists every issue; details carry them for --json and the daemon's events. */
export function invalidConfig(file: string, issues: ConfigIssue[], what = 'nothing was applied'): FerryError {
  return new FerryError('CONFIG_INVALID', `${file}: ${issues.length} error${issues.length === 1 ? '' : 's'}; ${what}:\n${formatIssues(file, issues)}`, { details: { file, issues } });
}
