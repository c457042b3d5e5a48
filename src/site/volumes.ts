// Volumes and their members: validation of member paths (no symlinks, no
// overlaps, never the site's own home), creation, settings and removal. A
// volume is a consistency group: all its members are captured at one instant.
// Its rows are the catalog's (catalog/volumes.ts).
import { lstatSync, realpathSync } from 'node:fs';
import { resolve, sep } from 'node:path';
import { checkDuration, DURATION } from '../core/units.ts';
import { FerryError } from '../core/errors.ts';
import { parseName } from '../core/ids.ts';
import type { MemberKind } from '../snapshot/model.ts';
import type { Site } from './site.ts';
import { canonicalPath, overlaps, replicaRoot, within } from './paths.ts';
import { parseRetention, type RetentionPolicy } from '../snapshot/retention.ts';
import { holderGone, parseHolder, volumeHolders } from '../catalog/holds.ts';
import { listLinks } from '../catalog/links.ts';
import { listMirrors } from '../catalog/mirrors.ts';
import { findPeerById } from '../catalog/peers.ts';
import { getSecondary } from '../catalog/secondaries.ts';
import { countSnapshots } from '../catalog/snapshots.ts';
import { allMembers, findVolume, forgetVolume, getVolume, insertVolume, setVolumeSettings, type HookSpec, type Hooks, type Member, type Role, type Volume } from '../catalog/volumes.ts';

export type { HookSpec, Hooks, Member, Role, Volume } from '../catalog/volumes.ts';

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

export interface CreateVolumeOptions {
  members: MemberSpec[];
  role?: Role;
  hooks?: Hooks;
  retention?: RetentionPolicy;
  /** the daemon's change journal watches its tree members (default: true) */
  journal?: boolean;
}

export function createVolume(site: Site, name: string, opts: CreateVolumeOptions): Volume {
  parseName(name, 'volume');
  if (opts.members.length === 0) throw new FerryError('USAGE', 'a volume needs at least one --member PATH');
  if (findVolume(site.catalog, name)) throw new FerryError('VOLUME_EXISTS', `volume ${name} already exists; choose another name or \`ferry volume remove ${name}\` first`);
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
  site.catalog.tx(() => {
    insertVolume(site.catalog, { name, role: opts.role ?? 'standalone', hooks, retention, journal: opts.journal ?? true, members });
    site.event({ kind: 'volume.create', volume: name, outcome: 'ok', detail: { members, ...(opts.journal === false ? { journal: false } : {}) } });
  });
  return getVolume(site.catalog, name);
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
  const existing = allMembers(site.catalog);
  const all = [...existing.map((e) => ({ volume: e.volume, name: e.name, path: e.path, isNew: false })), ...members.map((m) => ({ volume: '(new)', name: m.name, path: m.path, isNew: true }))];
  const root = canonicalPath(replicaRoot(site));
  const links = listLinks(site.catalog);
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

export function updateVolumeSettings(site: Site, name: string, changes: { hooks?: Hooks; retention?: RetentionPolicy; journal?: boolean }): Volume {
  const v = getVolume(site.catalog, name);
  const hooks = changes.hooks ?? v.hooks;
  const retention = changes.retention ?? v.retention;
  const journal = changes.journal ?? v.journal;
  validateHooks(hooks);
  parseRetention(retention);
  site.catalog.tx(() => {
    setVolumeSettings(site.catalog, name, hooks, retention, journal);
    site.event({ kind: 'volume.update', volume: name, outcome: 'ok', detail: { hooks, retention, journal } });
  });
  return getVolume(site.catalog, name);
}

/**
 * Remove a volume's definition (never its files). Refused while the volume has mirrors here or
 * links (they would be left pointing at nothing: remove them first). Its snapshots go too only with
 * force; force also ends what only this volume's snapshots hold: the replication relation it is the
 * secondary (or the failed-over secondary) of, whose source then needs a full sync to replicate here
 * again, and its peer snapshots here. Holds of any other kind refuse.
 */
export function removeVolume(site: Site, name: string, opts: { force?: boolean } = {}): { snapshotsRemoved: number; released: string[] } {
  getVolume(site.catalog, name);
  const mirrors = listMirrors(site.catalog, name).map((m) => m.peer);
  if (mirrors.length > 0) {
    throw new FerryError('VOLUME_IN_USE', `volume ${name} has ${mirrors.length} mirror(s) (to ${mirrors.join(', ')}); remove them first: ${mirrors.map((p) => `\`ferry mirror remove ${name} --to ${p}\``).join(', ')}`);
  }
  const links = listLinks(site.catalog, name).map((l) => l.path);
  if (links.length > 0) {
    throw new FerryError('VOLUME_IN_USE', `volume ${name} has ${links.length} link(s) (${links.join(', ')}); remove them first: ${links.map((p) => `\`ferry link remove ${p}\``).join(', ')}`);
  }
  const count = countSnapshots(site.catalog, name);
  const sec = getSecondary(site.catalog, name);
  const source = sec ? findPeerById(site.catalog, sec.source_site)?.name ?? sec.source_site : null;
  if (count > 0 && !opts.force) {
    const relation = sec ? ` It is the ${sec.state === 'broken-off' ? 'failed-over ' : ''}secondary of ${source}: --force also ends that relation (${source} would need a full sync to replicate here again).` : '';
    throw new FerryError('VOLUME_IN_USE', `volume ${name} has ${count} snapshot(s); delete them, or pass --force to remove the volume and its snapshots.${relation}`);
  }
  const holds = volumeHolders(site.catalog, name);
  // What removing the volume ends: its secondary relation, its peer snapshots, what a mirror removed
  // earlier left (none of them exists without the volume). Anything else keeps it.
  const ends = (text: string) => {
    const h = parseHolder(text);
    return h.kind === 'peer' || h.kind === 'peer-delete' || h.kind === 'replica' || ((h.kind === 'base' || h.kind === 'in-flight') && holderGone(site.catalog, h, name));
  };
  const blocking = holds.filter((h) => !ends(h));
  if (blocking.length > 0) throw new FerryError('VOLUME_IN_USE', `volume ${name} has snapshots held by ${blocking.join(', ')}; release those first`);
  site.catalog.tx(() => {
    forgetVolume(site.catalog, name);
    site.event({ kind: 'volume.remove', volume: name, outcome: 'ok', detail: { snapshotsRemoved: count, released: holds, ...(sec ? { endedSecondaryOf: source, relation: sec.state } : {}) } });
  });
  return { snapshotsRemoved: count, released: holds };
}
