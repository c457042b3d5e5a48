// Volumes and their members: validation of member paths (no symlinks, no
// overlaps, never the site's own home), and the catalog rows. A volume is a
// consistency group: all its members are captured at one instant.
import { lstatSync, realpathSync } from 'node:fs';
import { resolve, sep } from 'node:path';
import { checkDuration, DURATION } from '../core/units.ts';
import { FerryError } from '../core/errors.ts';
import { parseName } from '../core/ids.ts';
import type { MemberKind } from '../snapshot/model.ts';
import type { Site } from './site.ts';
import { canonicalPath, overlaps, replicaRoot, within } from './paths.ts';
import { parseRetention, type RetentionPolicy } from '../snapshot/retention.ts';

export type Role = 'primary' | 'secondary' | 'standalone';

export interface HookSpec {
  command: string;
  /** seconds */
  timeout: number;
}

export interface Hooks {
  pre?: HookSpec;
  post?: HookSpec;
}

export interface Member {
  name: string;
  kind: MemberKind;
  path: string;
}

export interface Volume {
  name: string;
  role: Role;
  createdAt: number;
  hooks: Hooks;
  retention: RetentionPolicy;
  members: Member[];
}

export interface MemberSpec {
  name?: string;
  kind?: MemberKind;
  path: string;
}

/** Parse `[NAME=][tree:|image:]PATH`. */
export function parseMemberSpec(spec: string): MemberSpec {
  let rest = spec;
  let name: string | undefined;
  const eq = rest.indexOf('=');
  const slash = rest.indexOf('/');
  if (eq > 0 && (slash < 0 || eq < slash)) {
    name = parseName(rest.slice(0, eq), 'member');
    rest = rest.slice(eq + 1);
  }
  let kind: MemberKind | undefined;
  if (rest.startsWith('tree:')) {
    kind = 'tree';
    rest = rest.slice(5);
  } else if (rest.startsWith('image:')) {
    kind = 'image';
    rest = rest.slice(6);
  }
  if (!rest) throw new FerryError('USAGE', `--member ${JSON.stringify(spec)} has no path; use [NAME=][tree:|image:]PATH`);
  return { name, kind, path: rest };
}

/** Resolve and check one member path; returns the canonical path and its kind. */
export function inspectMemberPath(spec: MemberSpec): { path: string; kind: MemberKind } {
  const abs = resolve(spec.path);
  let st;
  try {
    st = lstatSync(abs);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'is not accessible (permission denied)' : (err as Error).message;
    throw new FerryError('MEMBER_INVALID', `member path ${abs} ${why}; create it first or fix the path`, { cause: err });
  }
  if (st.isSymbolicLink()) {
    let real = '?';
    try {
      real = realpathSync(abs);
    } catch {
      // dangling
    }
    throw new FerryError('MEMBER_INVALID', `member path ${abs} is a symlink (to ${real}); ferry never follows symlinks: give the real path`);
  }
  // Ancestors may be symlinks (/home -> /data/home); store the canonical path so overlap checks compare like with like.
  const path = realpathSync(abs);
  let kind: MemberKind;
  if (st.isDirectory()) kind = 'tree';
  else if (st.isFile() || st.isBlockDevice()) kind = 'image';
  else throw new FerryError('MEMBER_INVALID', `member path ${abs} is neither a directory, a regular file nor a block device`);
  if (spec.kind && spec.kind !== kind) {
    throw new FerryError('MEMBER_INVALID', `member path ${abs} is ${kind === 'tree' ? 'a directory' : 'a file or device'}, not usable as ${spec.kind}:`);
  }
  return { path, kind };
}

function rowToVolume(site: Site, r: { name: string; role: Role; created_at: number; hooks: string; retention: string }): Volume {
  const members = site.db
    .all<{ name: string; kind: MemberKind; path: string }>('SELECT name, kind, path FROM members WHERE volume = ? ORDER BY position', r.name)
    .map((m) => ({ name: m.name, kind: m.kind, path: m.path }));
  return { name: r.name, role: r.role, createdAt: r.created_at, hooks: JSON.parse(r.hooks) as Hooks, retention: JSON.parse(r.retention) as RetentionPolicy, members };
}

export function listVolumes(site: Site): Volume[] {
  return site.db.all<{ name: string; role: Role; created_at: number; hooks: string; retention: string }>('SELECT * FROM volumes ORDER BY name').map((r) => rowToVolume(site, r));
}

export function findVolume(site: Site, name: string): Volume | undefined {
  const r = site.db.get<{ name: string; role: Role; created_at: number; hooks: string; retention: string }>('SELECT * FROM volumes WHERE name = ?', name);
  return r ? rowToVolume(site, r) : undefined;
}

export function getVolume(site: Site, name: string): Volume {
  const v = findVolume(site, name);
  if (!v) throw new FerryError('VOLUME_NOT_FOUND', `no volume ${JSON.stringify(name)} at site ${site.name}; \`ferry volume list\` shows the volumes`);
  return v;
}

export interface CreateVolumeOptions {
  members: MemberSpec[];
  role?: Role;
  hooks?: Hooks;
  retention?: RetentionPolicy;
}

export function createVolume(site: Site, name: string, opts: CreateVolumeOptions): Volume {
  parseName(name, 'volume');
  if (opts.members.length === 0) throw new FerryError('USAGE', 'a volume needs at least one --member PATH');
  if (findVolume(site, name)) throw new FerryError('VOLUME_EXISTS', `volume ${name} already exists; choose another name or \`ferry volume remove ${name}\` first`);
  const members: Member[] = [];
  const names = new Set<string>();
  for (const spec of opts.members) {
    const { path, kind } = inspectMemberPath(spec);
    let mname = spec.name ?? defaultMemberName(path);
    if (!spec.name) for (let i = 2; names.has(mname); i++) mname = `${defaultMemberName(path)}-${i}`;
    if (names.has(mname)) throw new FerryError('USAGE', `two members are named ${mname}; give distinct names with NAME=PATH`);
    names.add(mname);
    members.push({ name: mname, kind, path });
  }
  checkOverlaps(site, members);
  const hooks = opts.hooks ?? {};
  validateHooks(hooks);
  const retention = opts.retention ?? {};
  parseRetention(retention);
  site.db.tx(() => {
    site.db.run('INSERT INTO volumes (name, role, created_at, hooks, retention) VALUES (?, ?, ?, ?, ?)', name, opts.role ?? 'standalone', site.clock.now(), JSON.stringify(hooks), JSON.stringify(retention));
    members.forEach((m, i) => site.db.run('INSERT INTO members (volume, position, name, kind, path) VALUES (?, ?, ?, ?, ?)', name, i, m.name, m.kind, m.path));
    site.event({ kind: 'volume.create', volume: name, outcome: 'ok', detail: { members } });
  });
  return getVolume(site, name);
}

function defaultMemberName(path: string): string {
  const base = path.split(sep).filter(Boolean).pop() ?? 'root';
  const cleaned = base.replace(/[^A-Za-z0-9._@+-]/g, '_').replace(/^[^A-Za-z0-9]+/, '');
  return (cleaned || 'member').slice(0, 128);
}

function checkOverlaps(site: Site, members: Member[]): void {
  const why = memberPathProblem(site, members);
  if (why) throw new FerryError('MEMBER_INVALID', why);
}

/**
 * Why new members at these (canonical) paths cannot be made at this site, or undefined: a member
 * overlaps the site home (other than under the default replica root), contains the replica root
 * (where new secondaries are made), or overlaps another member, new or existing, or a link copy.
 */
export function memberPathProblem(site: Site, members: Member[]): string | undefined {
  const existing = site.db.all<{ volume: string; name: string; path: string }>('SELECT volume, name, path FROM members');
  const all = [...existing.map((e) => ({ ...e, isNew: false })), ...members.map((m) => ({ volume: '(new)', name: m.name, path: m.path, isNew: true }))];
  const root = canonicalPath(replicaRoot(site));
  const links = site.db.all<{ path: string; volume: string }>('SELECT path, volume FROM links');
  for (const m of members) {
    // Replicas may live under the site's replica root (inside the home); nothing else may overlap the home.
    const underReplicas = within(m.path, site.paths.replicas) && m.path !== site.paths.replicas;
    if (within(site.paths.home, m.path) || (within(m.path, site.paths.home) && !underReplicas)) {
      return `member ${m.path} overlaps the site home ${site.paths.home}; a site cannot protect its own store`;
    }
    if (within(root, m.path)) {
      return `member ${m.path} contains the replica root ${root}, where replicas from peers are made: they would be captured with this member; choose a path that does not contain it, or set the site's replicaRoot elsewhere (\`ferry config apply\`)`;
    }
    for (const o of all) {
      if (o.isNew && o.name === m.name) continue;
      if (m.path === o.path) return `${m.path} is already member ${o.name} of volume ${o.volume}; a path can belong to one volume only`;
      if (overlaps(m.path, o.path)) return `member ${m.path} overlaps ${o.path} (member ${o.name} of volume ${o.volume}); members must not contain one another`;
    }
    for (const l of links) {
      if (overlaps(m.path, l.path)) return `member ${m.path} overlaps the link ${l.path} (a writable copy of volume ${l.volume}, replaced whole at each refresh); choose a path apart from it, or remove the link first (\`ferry link remove ${l.path}\`)`;
    }
  }
  return undefined;
}

export function validateHooks(h: Hooks): void {
  for (const [phase, spec] of Object.entries(h) as Array<[string, HookSpec | undefined]>) {
    if (phase !== 'pre' && phase !== 'post') throw new FerryError('CONFIG_INVALID', `unknown hook ${phase}: use pre or post`);
    if (!spec) continue;
    if (typeof spec.command !== 'string' || !spec.command.trim()) throw new FerryError('CONFIG_INVALID', `${phase} hook has no command`);
    checkDuration(spec.timeout, DURATION.hookTimeout, `${phase} hook timeout`, 'CONFIG_INVALID');
  }
}

export function updateVolumeSettings(site: Site, name: string, changes: { hooks?: Hooks; retention?: RetentionPolicy }): Volume {
  const v = getVolume(site, name);
  const hooks = changes.hooks ?? v.hooks;
  const retention = changes.retention ?? v.retention;
  validateHooks(hooks);
  parseRetention(retention);
  site.db.tx(() => {
    site.db.run('UPDATE volumes SET hooks = ?, retention = ? WHERE name = ?', JSON.stringify(hooks), JSON.stringify(retention), name);
    site.event({ kind: 'volume.update', volume: name, outcome: 'ok', detail: { hooks, retention } });
  });
  return getVolume(site, name);
}

/**
 * Remove a volume's definition (never its files). Refused while the volume has mirrors here or
 * links (they would be left pointing at nothing: remove them first). Its snapshots go too only with
 * force; force also ends what only this volume's snapshots hold: the replication relation it is the
 * secondary (or the failed-over secondary) of, whose source then needs a full sync to replicate here
 * again, and its peer snapshots here. Holds of any other kind refuse.
 */
export function removeVolume(site: Site, name: string, opts: { force?: boolean } = {}): { snapshotsRemoved: number; released: string[] } {
  getVolume(site, name);
  const mirrors = site.db.all<{ peer: string }>('SELECT peer FROM mirrors WHERE volume = ? ORDER BY peer', name).map((m) => m.peer);
  if (mirrors.length > 0) {
    throw new FerryError('VOLUME_IN_USE', `volume ${name} has ${mirrors.length} mirror(s) (to ${mirrors.join(', ')}); remove them first: ${mirrors.map((p) => `\`ferry mirror remove ${name} --to ${p}\``).join(', ')}`);
  }
  const links = site.db.all<{ path: string }>('SELECT path FROM links WHERE volume = ? ORDER BY path', name).map((l) => l.path);
  if (links.length > 0) {
    throw new FerryError('VOLUME_IN_USE', `volume ${name} has ${links.length} link(s) (${links.join(', ')}); remove them first: ${links.map((p) => `\`ferry link remove ${p}\``).join(', ')}`);
  }
  const count = site.db.get<{ n: number }>('SELECT count(*) AS n FROM snapshots WHERE volume = ?', name)!.n;
  const sec = site.db.get<{ source_site: string; state: string }>('SELECT source_site, state FROM secondaries WHERE volume = ?', name);
  const source = sec ? site.db.get<{ name: string }>('SELECT name FROM peers WHERE id = ?', sec.source_site)?.name ?? sec.source_site : null;
  if (count > 0 && !opts.force) {
    const relation = sec ? ` It is the ${sec.state === 'broken-off' ? 'failed-over ' : ''}secondary of ${source}: --force also ends that relation (${source} would need a full sync to replicate here again).` : '';
    throw new FerryError('VOLUME_IN_USE', `volume ${name} has ${count} snapshot(s); delete them, or pass --force to remove the volume and its snapshots.${relation}`);
  }
  const holds = site.db.all<{ holder: string }>('SELECT DISTINCT h.holder FROM holds h JOIN snapshots s ON s.id = h.snapshot WHERE s.volume = ? ORDER BY h.holder', name).map((h) => h.holder);
  // What removing the volume ends: its secondary relation, its peer snapshots, what a mirror removed
  // earlier left (none of them exists without the volume). Anything else keeps it.
  const ends = (h: string) => h === 'peer' || h === 'peer-delete' || h.startsWith('mirror-from:') || (h.startsWith('mirror:') && !site.db.get('SELECT 1 FROM mirrors WHERE id = ?', h.slice('mirror:'.length).replace(/:inflight$/, '')));
  const blocking = holds.filter((h) => !ends(h));
  if (blocking.length > 0) throw new FerryError('VOLUME_IN_USE', `volume ${name} has snapshots held by ${blocking.join(', ')}; release those first`);
  site.db.tx(() => {
    site.db.run('DELETE FROM peer_snapshots WHERE snapshot IN (SELECT id FROM snapshots WHERE volume = ?)', name);
    site.db.run('DELETE FROM peer_deletions WHERE volume = ?', name);
    site.db.run('DELETE FROM holds WHERE snapshot IN (SELECT id FROM snapshots WHERE volume = ?)', name);
    site.db.run('DELETE FROM secondaries WHERE volume = ?', name);
    site.db.run('DELETE FROM stat_cache WHERE volume = ?', name);
    site.db.run('DELETE FROM snapshots WHERE volume = ?', name);
    site.db.run('DELETE FROM volumes WHERE name = ?', name);
    site.event({ kind: 'volume.remove', volume: name, outcome: 'ok', detail: { snapshotsRemoved: count, released: holds, ...(sec ? { endedSecondaryOf: source, relation: sec.state } : {}) } });
  });
  return { snapshotsRemoved: count, released: holds };
}
