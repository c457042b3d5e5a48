// Planning a site file against a site: what `config apply` would create,
// change and remove, in the order it would do it, and every reason it would
// refuse (each with the file's line). Reads the catalog and the member paths;
// never writes. Removals are safe by construction: what holds snapshots or a
// mirror base is only removed with --prune, member data and link copies are
// never deleted, and roles are left to the DR workflows.
import { existsSync, lstatSync, readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { isFerryError } from '../core/errors.ts';
import type { DeltaMode } from '../core/units.ts';
import { readMeta } from '../catalog/meta.ts';
import { type Link } from '../dr/links.ts';
import { type Mirror } from '../site/mirrors.ts';
import type { Site } from '../site/site.ts';
import { inspectMemberPath, type Hooks, type Volume } from '../site/volumes.ts';
import { canonicalPath, overlaps, replicaRootProblem, within, type PathOwner } from '../site/paths.ts';
import { parseRetention, type RetentionPolicy } from '../snapshot/retention.ts';
import { suggest } from './load.ts';
import { META_KEYS, type ConfigIssue, type LinkConfig, type Lines, type MirrorConfig, type SiteConfig, type VolumeConfig } from './schema.ts';
import { listLinks } from '../catalog/links.ts';
import { listMirrors } from '../catalog/mirrors.ts';
import { listPeers } from '../catalog/peers.ts';
import { baseHolder, linkHolder, encodeHolder, volumeHolders } from '../catalog/holds.ts';
import { countSnapshots, resolveSnapshot } from '../catalog/snapshots.ts';
import { listVolumes } from '../catalog/volumes.ts';

export type PlanVerb = 'create' | 'change' | 'remove' | 'keep' | 'wait' | 'note';

/** What a step runs: a registered site operation (the CLI's own path), or a setting no command sets yet. */
export type PlanStep =
  | { op: string; args: Record<string, unknown> }
  | { meta: Record<string, string | null> }
  | { mirror: string; settings: { scheduleS: number | null; minDelayS: number; maxDelayS: number; bandwidth: number | null; deltas: DeltaMode } }
  | { link: string; settings: { snapshotRef: string; scheduleS: number | null; minDelayS: number; maxDelayS: number } };

export interface PlanChange {
  key: string;
  from: unknown;
  to: unknown;
}

export interface PlanAction {
  /** create / change / remove are done; keep is a removal held back; wait is a creation that cannot happen yet; note says why something is left as it is */
  verb: PlanVerb;
  kind: 'setting' | 'volume' | 'mirror' | 'link';
  name: string;
  /** the line in the file that asks for it (0 for removals: the file no longer names them) */
  line: number;
  changes?: PlanChange[];
  reason?: string;
  step?: PlanStep;
}

export interface Plan {
  file: string;
  site: string;
  actions: PlanAction[];
  /** refusals: the plan is not applied while there are any */
  issues: ConfigIssue[];
}

export interface PlanSummary {
  create: number;
  change: number;
  remove: number;
  keep: number;
  wait: number;
}

export function summarize(plan: Plan): PlanSummary {
  const n = (v: PlanVerb) => plan.actions.filter((a) => a.verb === v).length;
  return { create: n('create'), change: n('change'), remove: n('remove'), keep: n('keep'), wait: n('wait') };
}

export function hasChanges(plan: Plan): boolean {
  return plan.actions.some((a) => a.verb === 'create' || a.verb === 'change' || a.verb === 'remove');
}

/** Objects compared by value, whatever the order of their keys. */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : 1))) : x));
}

function sameHooks(a: Hooks, b: Hooks): boolean {
  return canonical(a) === canonical(b);
}

function sameRetention(a: RetentionPolicy, b: RetentionPolicy): boolean {
  return canonical(parseRetention(a)) === canonical(parseRetention(b));
}

class Planner {
  readonly actions: PlanAction[] = [];
  readonly issues: ConfigIssue[] = [];
  readonly site: Site;
  readonly cfg: SiteConfig;
  readonly prune: boolean;
  /** where new secondaries are made once the file is applied (canonical) */
  readonly replicaRoot: string;
  constructor(site: Site, cfg: SiteConfig, prune: boolean) {
    this.site = site;
    this.cfg = cfg;
    this.prune = prune;
    this.replicaRoot = canonicalPath(cfg.site.replicaRoot ?? site.paths.replicas);
  }

  issue(lines: Lines, key: string, path: string, message: string, hint?: string): void {
    this.issues.push({ line: lines[key] ?? lines._ ?? 0, col: 1, path, message, ...(hint ? { hint } : {}) });
  }

  add(a: PlanAction): void {
    this.actions.push(a);
  }

  // ---------------------------------------------------------------- site settings

  settings(): void {
    const { site, cfg } = this;
    const s = cfg.site;
    if (s.name !== null && s.name !== site.name) {
      this.issue(s.lines, 'name', 'site.name', `this file is for site ${s.name}, and this is site ${site.name}`, 'apply it at the site it names, or correct site.name');
    }
    const meta = (k: string) => readMeta(site.catalog, k) ?? null;
    const want: Record<string, string | null> = {
      [META_KEYS.listen]: s.listen,
      [META_KEYS.replicaRoot]: s.replicaRoot,
      [META_KEYS.logFile]: s.log?.file ?? null,
      [META_KEYS.logMaxBytes]: s.log?.maxBytes === null || s.log?.maxBytes === undefined ? null : String(s.log.maxBytes),
      [META_KEYS.logKeep]: s.log?.keep === null || s.log?.keep === undefined ? null : String(s.log.keep),
      [META_KEYS.memoryBudget]: s.memoryBudget === null ? null : String(s.memoryBudget),
      [META_KEYS.gcThreshold]: s.gcThreshold === null ? null : String(s.gcThreshold),
    };
    const line: Record<string, number> = {
      [META_KEYS.listen]: s.lines.listen ?? s.lines._,
      [META_KEYS.replicaRoot]: s.lines.replicaRoot ?? s.lines._,
    };
    const groups: Array<{ name: string; keys: string[]; reason?: string }> = [
      { name: 'listen', keys: [META_KEYS.listen], reason: 'takes effect when `ferry serve` next starts (a --listen option wins over it)' },
      { name: 'replicaRoot', keys: [META_KEYS.replicaRoot], reason: 'new secondaries are made under it; existing replicas stay where they are' },
      { name: 'log', keys: [META_KEYS.logFile, META_KEYS.logMaxBytes, META_KEYS.logKeep], reason: 'read by `ferry serve` when it starts' },
      { name: 'memoryBudget', keys: [META_KEYS.memoryBudget], reason: 'read by `ferry serve` when it starts (a --memory-budget option wins over it)' },
      { name: 'gcThreshold', keys: [META_KEYS.gcThreshold], reason: 'the next automatic collection goes by it (docs/store.md, "When garbage is collected")' },
    ];
    for (const g of groups) {
      const changes = g.keys.filter((k) => meta(k) !== want[k]).map((k) => ({ key: k, from: meta(k), to: want[k] }));
      if (changes.length === 0) continue;
      const creating = changes.every((c) => c.from === null);
      this.add({
        verb: creating ? 'create' : 'change',
        kind: 'setting',
        name: g.name,
        line: line[g.keys[0]] ?? s.lines.log ?? s.lines._ ?? 0,
        changes,
        reason: g.reason,
        step: { meta: Object.fromEntries(changes.map((c) => [c.key, c.to])) },
      });
    }
  }

  /**
   * The replica root the file sets, against what will be there once it is applied: the members of
   * the volumes that stay and of those the file declares, and the file's links (the others go).
   */
  replicaRootFits(staying: Volume[]): void {
    const s = this.cfg.site;
    if (s.replicaRoot === null) return;
    const members: PathOwner[] = [
      ...staying.flatMap((v) => v.members.map((m) => ({ what: `member ${m.name} of volume ${v.name}`, path: m.path }))),
      ...this.cfg.volumes.flatMap((v) => v.members.map((m, i) => ({ what: `member ${m.name ?? i + 1} of volume ${v.name}`, path: canonicalPath(m.path) }))),
    ];
    const links = this.cfg.links.map((l) => ({ what: `link ${l.path}`, path: canonicalPath(l.path) }));
    const why = replicaRootProblem(this.site, s.replicaRoot, { members, links });
    if (why) this.issue(s.lines, 'replicaRoot', 'site.replicaRoot', why);
  }

  // ---------------------------------------------------------------- removals (links, then mirrors, then volumes)

  removals(current: { volumes: Volume[]; mirrors: Mirror[]; links: Link[] }): Set<string> {
    const { site, cfg } = this;
    const wantVolumes = new Set(cfg.volumes.map((v) => v.name));
    const wantMirrors = new Set(cfg.mirrors.map((m) => `${m.volume}@${m.to}`));
    const wantLinks = new Set(cfg.links.flatMap((l) => [resolve(l.path), canonicalPath(l.path)]));
    const removedVolumes = new Set<string>();
    const keptVolumes = new Set<string>();

    // Decide the volumes first: their mirrors go or stay with them.
    const volumeDecisions: PlanAction[] = [];
    for (const v of current.volumes) {
      if (wantVolumes.has(v.name)) continue;
      const snapshots = countSnapshots(site.catalog, v.name);
      const mirrors = current.mirrors.filter((m) => m.volume === v.name);
      const links = current.links.filter((l) => l.volume === v.name);
      const what = [snapshots ? `${snapshots} snapshot(s)` : '', mirrors.length ? `${mirrors.length} mirror(s) (${mirrors.map((m) => m.peer).join(', ')})` : ''].filter(Boolean).join(' and ');
      if (!what) {
        volumeDecisions.push({ verb: 'remove', kind: 'volume', name: v.name, line: 0, reason: 'no snapshots, no mirrors; the member data is not touched', step: { op: 'volume.remove', args: { name: v.name, force: false } } });
        removedVolumes.add(v.name);
        continue;
      }
      if (!this.prune) {
        volumeDecisions.push({ verb: 'keep', kind: 'volume', name: v.name, line: 0, reason: `not in the file, but it has ${what}: pass --prune to remove it (its snapshots are deleted; the member data is never touched)` });
        keptVolumes.add(v.name);
        continue;
      }
      // Holds that removing its mirrors and links will not release (a peer snapshot, a secondary's base) keep it.
      const releasable = new Set([...mirrors.map((m) => encodeHolder(baseHolder(m.id))), ...links.map((l) => encodeHolder(linkHolder(l.path)))]);
      const holders = volumeHolders(site.catalog, v.name).filter((h) => !releasable.has(h));
      if (holders.length > 0) {
        volumeDecisions.push({ verb: 'keep', kind: 'volume', name: v.name, line: 0, reason: `not in the file, but snapshots of it are held (${holders.join(', ')}): a replica's base or a peer snapshot; remove those first (\`ferry snapshot list ${v.name}\`)` });
        keptVolumes.add(v.name);
        continue;
      }
      volumeDecisions.push({ verb: 'remove', kind: 'volume', name: v.name, line: 0, reason: `--prune: its ${what} go with it; the member data is not touched`, step: { op: 'volume.remove', args: { name: v.name, force: true } } });
      removedVolumes.add(v.name);
    }

    for (const l of current.links) {
      if (wantLinks.has(l.path)) continue;
      this.add({ verb: 'remove', kind: 'link', name: l.path, line: 0, reason: 'the definition goes; the files at the path are kept', step: { op: 'link.remove', args: { path: l.path, keepData: true } } });
    }
    for (const m of current.mirrors) {
      if (wantMirrors.has(m.id) && wantVolumes.has(m.volume)) continue;
      if (keptVolumes.has(m.volume)) {
        this.add({ verb: 'keep', kind: 'mirror', name: m.id, line: 0, reason: `its volume ${m.volume} is kept` });
        continue;
      }
      const fresh = m.base === null && m.state === 'uninitialized';
      if (fresh || this.prune) {
        this.add({ verb: 'remove', kind: 'mirror', name: m.id, line: 0, reason: fresh ? 'never initialized' : `--prune: its base hold is released; the replica at ${m.peer} is kept, and a new mirror there needs a full baseline`, step: { op: 'mirror.remove', args: { volume: m.volume, to: m.peer } } });
      } else {
        this.add({ verb: 'keep', kind: 'mirror', name: m.id, line: 0, reason: `not in the file, but it is ${m.state} with a base snapshot: pass --prune to remove it (the base hold is released, and re-creating it needs a full baseline)` });
      }
    }
    for (const a of volumeDecisions) this.add(a);
    return new Set([...current.volumes.map((v) => v.name)].filter((n) => !removedVolumes.has(n)));
  }

  // ---------------------------------------------------------------- volumes

  volume(v: VolumeConfig, cur: Volume | undefined, staying: Volume[]): void {
    const path = `volumes.${v.name}`;
    if (!cur) {
      // Every check createVolume makes, here, so that a file is refused whole instead of half applied.
      let ok = true;
      const members = v.members.map((m, i) => {
        try {
          const r = inspectMemberPath({ path: m.path, kind: m.kind ?? undefined });
          return { ...m, path: r.path, kind: r.kind };
        } catch (err) {
          if (!isFerryError(err)) throw err;
          ok = false;
          this.issue(m.lines, 'path', `${path}.members[${i}].path`, err.message, 'create the path first, or correct it');
          return undefined;
        }
      });
      if (!ok) return;
      members.forEach((m, i) => {
        const underReplicas = within(m!.path, this.site.paths.replicas) && m!.path !== this.site.paths.replicas;
        if (within(this.site.paths.home, m!.path) || (within(m!.path, this.site.paths.home) && !underReplicas)) {
          this.issue(v.members[i].lines, 'path', `${path}.members[${i}].path`, `member ${m!.path} overlaps the site home ${this.site.paths.home}`, 'a site cannot protect its own store: choose a path outside the home');
        }
        if (within(this.replicaRoot, m!.path)) {
          this.issue(v.members[i].lines, 'path', `${path}.members[${i}].path`, `member ${m!.path} contains the replica root ${this.replicaRoot}, where replicas from peers are made: they would be captured with this member`,
            'choose a member path that does not contain it, or set site.replicaRoot to a directory outside every member');
        }
        for (const o of staying) {
          for (const om of o.members) {
            if (overlaps(m!.path, om.path)) {
              this.issue(v.members[i].lines, 'path', `${path}.members[${i}].path`, `member ${m!.path} overlaps ${om.path}, member ${om.name} of volume ${o.name} at this site`, `a path belongs to one volume only; if volume ${o.name} is to go, it must be removable (see --prune)`);
            }
          }
        }
      });
      this.add({
        verb: 'create',
        kind: 'volume',
        name: v.name,
        line: v.lines._,
        reason: `${v.members.length} member(s)${v.secondary ? ', secondary' : ''}`,
        step: {
          op: 'volume.create',
          args: { name: v.name, members: v.members.map((m) => `${m.name ? `${m.name}=` : ''}${m.kind ? `${m.kind}:` : ''}${m.path}`), hooks: v.hooks, retention: v.retention, secondary: v.secondary, journal: v.journal },
        },
      });
      return;
    }
    // Members are what the volume's snapshots are made of: ferry never changes them under it.
    const have = cur.members.map((m) => `${m.name}:${m.kind}:${m.path}`);
    const fits = v.members.length === cur.members.length && v.members.every((m) => cur.members.some((c) => c.path === canonicalPath(m.path) && (m.name === null || m.name === c.name) && (m.kind === null || m.kind === c.kind)));
    if (!fits) {
      this.issue(v.lines, 'members', `${path}.members`, `volume ${v.name} exists here with members ${have.join(', ')}; the file gives ${v.members.map((m) => m.path).join(', ')}`,
        'ferry does not change the members of an existing volume (its snapshots are made of them): restore the list (`ferry config export` shows it), or declare a new volume under another name');
    }
    if (v.secondary !== (cur.role === 'secondary')) {
      this.add({ verb: 'note', kind: 'volume', name: v.name, line: v.lines.secondary ?? v.lines._, reason: `its role here is ${cur.role}; roles change only through mirrors and the DR workflows (failover, failback, migrate), so \`secondary:\` counts only when the volume is created` });
    }
    const changes: PlanChange[] = [];
    if (!sameHooks(v.hooks, cur.hooks)) changes.push({ key: 'hooks', from: cur.hooks, to: v.hooks });
    if (!sameRetention(v.retention, cur.retention)) changes.push({ key: 'retention', from: cur.retention, to: v.retention });
    if (v.journal !== cur.journal) changes.push({ key: 'journal', from: cur.journal, to: v.journal });
    if (changes.length) this.add({ verb: 'change', kind: 'volume', name: v.name, line: v.lines._, changes, step: { op: 'volume.set', args: { name: v.name, hooks: v.hooks, retention: v.retention, journal: v.journal } } });
  }

  // ---------------------------------------------------------------- mirrors

  mirror(mc: MirrorConfig, i: number, cur: Mirror | undefined, curVolume: Volume | undefined, peers: string[]): void {
    const path = `mirrors[${i}]`;
    const id = `${mc.volume}@${mc.to}`;
    const want = { scheduleS: mc.scheduleS, minDelayS: mc.minDelayS, maxDelayS: mc.maxDelayS, bandwidth: mc.bandwidth, deltas: mc.deltas };
    if (!cur) {
      if (!peers.includes(mc.to)) {
        this.issue(mc.lines, 'to', `${path}.to`, `site ${mc.to} is not paired with this site`, `${suggest(mc.to, peers, 'paired sites')}; pair a site with \`ferry site add ${mc.to} https://HOST:PORT --id ID\` (on both sides)`);
      }
      if (curVolume?.role === 'secondary') {
        this.issue(mc.lines, 'volume', `${path}.volume`, `volume ${mc.volume} is a secondary here; it cannot be the source of a mirror`, 'mirror it from its primary site (after a failover it is primary here and can be mirrored)');
      }
      this.add({ verb: 'create', kind: 'mirror', name: id, line: mc.lines._, reason: `to ${mc.to}:${mc.remoteVolume}`, step: { op: 'mirror.create', args: { volume: mc.volume, to: `${mc.to}:${mc.remoteVolume}`, ...want } } });
      return;
    }
    if (cur.remoteVolume !== mc.remoteVolume) {
      this.issue(mc.lines, 'remoteVolume', `${path}.remoteVolume`, `mirror ${id} replicates into ${mc.to}:${cur.remoteVolume}; the file says ${mc.to}:${mc.remoteVolume}`,
        'a mirror cannot be re-pointed in place (its base lives in the old replica): remove it from the file and apply with --prune, then add the new one, which baselines in full');
    }
    const have = { scheduleS: cur.scheduleS, minDelayS: cur.minDelayS, maxDelayS: cur.maxDelayS, bandwidth: cur.bandwidth, deltas: cur.deltas };
    const changes = (Object.keys(want) as Array<keyof typeof want>).filter((k) => want[k] !== have[k]).map((k) => ({ key: k, from: have[k], to: want[k] }));
    // Settings an older ferry stored out of bounds are written again even where the file asks for the values in force.
    const repair = cur.settingsProblems ? `repairs settings stored out of bounds: ${cur.settingsProblems.join('; ')}` : undefined;
    if (changes.length || repair) this.add({ verb: 'change', kind: 'mirror', name: id, line: mc.lines._, changes, ...(repair ? { reason: repair } : {}), step: { mirror: id, settings: want } });
  }

  // ---------------------------------------------------------------- links

  link(l: LinkConfig, i: number, cur: Link | undefined, volumeExists: boolean, staying: Volume[]): void {
    const path = `links[${i}]`;
    if (!cur) {
      const p = l.path;
      // What createLink refuses, here, so that the file is refused whole (members in the file: load.ts).
      const cp = canonicalPath(p);
      const inTheWay = [
        ...(overlaps(cp, canonicalPath(this.site.paths.home)) ? [`the site home ${this.site.paths.home}`] : []),
        ...(overlaps(cp, this.replicaRoot) ? [`the replica root ${this.replicaRoot}, where replicas from peers are made`] : []),
        ...staying.flatMap((v) => v.members.filter((m) => overlaps(cp, m.path)).map((m) => `${m.path}, member ${m.name} of volume ${v.name}`)),
      ];
      if (inTheWay.length > 0) {
        this.issue(l.lines, 'path', `${path}.path`, `link path ${p} overlaps ${inTheWay[0]}`, 'a link is a writable copy of its own: give it a path apart from every member, the replica root and the site home');
        return;
      }
      if (existsSync(p)) {
        const st = lstatSync(p);
        if (st.isSymbolicLink() || !st.isDirectory() || readdirSync(p).length > 0) {
          this.issue(l.lines, 'path', `${path}.path`, `link path ${p} exists and is not an empty directory`,
            'a link is made at a new or empty path: choose another, or move what is there away (an apply cut off while making this link leaves it partly written: remove it and apply again)');
          return;
        }
      }
      const create: PlanAction = {
        verb: 'create', kind: 'link', name: p, line: l.lines._, reason: `${l.volume}${l.member ? `:${l.member}` : ''} at ${l.snapshot}`,
        step: { op: 'link.create', args: { path: p, volume: l.volume, member: l.member ?? undefined, snapshot: l.snapshot, scheduleS: l.scheduleS, minDelayS: l.minDelayS, maxDelayS: l.maxDelayS } },
      };
      if (!volumeExists) {
        this.add({ ...create, verb: 'wait', reason: `volume ${l.volume} is new and has no snapshot yet; apply again once it has one`, step: undefined });
        return;
      }
      try {
        resolveSnapshot(this.site.catalog, l.volume, l.snapshot);
      } catch (err) {
        if (!isFerryError(err, 'SNAPSHOT_NOT_FOUND')) throw err;
        this.add({ ...create, verb: 'wait', reason: `volume ${l.volume} has no snapshot ${l.snapshot === 'latest' ? 'yet' : JSON.stringify(l.snapshot)}; apply again once it has (the daemon does on its next reload)`, step: undefined });
        return;
      }
      this.add(create);
      return;
    }
    if (cur.volume !== l.volume || (l.member !== null && cur.member !== l.member)) {
      this.issue(l.lines, cur.volume !== l.volume ? 'volume' : 'member', `${path}.${cur.volume !== l.volume ? 'volume' : 'member'}`, `link ${cur.path} shows ${cur.volume}:${cur.member}; the file says ${l.volume}${l.member ? `:${l.member}` : ''}`,
        'a link cannot change its volume or member in place: give the new one another path, or remove this one from the file first');
    }
    const want = { snapshotRef: l.snapshot, scheduleS: l.scheduleS, minDelayS: l.minDelayS, maxDelayS: l.maxDelayS };
    const have = { snapshotRef: cur.snapshotRef, scheduleS: cur.scheduleS, minDelayS: cur.minDelayS, maxDelayS: cur.maxDelayS };
    const changes = (Object.keys(want) as Array<keyof typeof want>).filter((k) => want[k] !== have[k]).map((k) => ({ key: k, from: have[k], to: want[k] }));
    if (changes.length) {
      this.add({
        verb: 'change', kind: 'link', name: cur.path, line: l.lines._, changes, step: { link: cur.path, settings: want },
        ...(want.snapshotRef !== have.snapshotRef ? { reason: 'the copy keeps its snapshot until its next refresh' } : {}),
      });
    }
  }
}

/** Plan `cfg` against `site` (read-only). The file must already be valid (loadConfig found no issue). */
export function planConfig(site: Site, cfg: SiteConfig, opts: { prune?: boolean } = {}): Plan {
  const p = new Planner(site, cfg, opts.prune === true);
  const current = { volumes: listVolumes(site.catalog), mirrors: listMirrors(site.catalog), links: listLinks(site.catalog) };
  p.settings();
  const stayingNames = p.removals(current);
  const byName = new Map(current.volumes.map((v) => [v.name, v]));
  const staying = current.volumes.filter((v) => stayingNames.has(v.name) && !cfg.volumes.some((c) => c.name === v.name));
  p.replicaRootFits(staying);
  for (const v of cfg.volumes) p.volume(v, byName.get(v.name), [...staying, ...cfg.volumes.filter((c) => c !== v).map((c) => byName.get(c.name)).filter((x): x is Volume => x !== undefined)]);
  const peers = listPeers(site.catalog).map((x) => x.name);
  cfg.mirrors.forEach((mc, i) => p.mirror(mc, i, current.mirrors.find((m) => m.volume === mc.volume && m.peer === mc.to), byName.get(mc.volume), peers));
  cfg.links.forEach((l, i) => {
    const cur = current.links.find((x) => x.path === resolve(l.path) || x.path === canonicalPath(l.path));
    p.link(l, i, cur, byName.has(l.volume), staying);
  });
  p.issues.sort((a, b) => a.line - b.line);
  return { file: cfg.file, site: site.name, actions: p.actions, issues: p.issues };
}
