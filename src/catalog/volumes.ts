// Volumes and their members (`volumes`, `members`): one row type each, the
// domain shape they are read as, and the changes to them. A volume's removal
// (forgetVolume) takes every row that belongs to it, in every table, in one
// transaction. Checking member paths is the site's (site/volumes.ts).
import { FerryError } from '../core/errors.ts';
import type { MemberKind } from '../snapshot/model.ts';
import type { RetentionPolicy } from '../snapshot/retention.ts';
import type { Catalog } from './catalog.ts';
import { releaseVolumeHolds } from './holds.ts';
import { dropPeerRowsOfVolume } from './peer-snapshots.ts';
import { removeSecondaryRow } from './secondaries.ts';
import { clearSplitBrain } from './split-brains.ts';
import { deleteSnapshotRowsOf } from './snapshots.ts';

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
  /** the daemon's change journal watches its tree members (docs/design.md, "The change journal"); false: every capture and writes check walks in full */
  journal: boolean;
  members: Member[];
}

interface VolumeRow {
  name: string;
  role: Role;
  created_at: number;
  hooks: string;
  retention: string;
  /** 0: the change journal is off; NULL (a volume made before the column, or a catalog opened read-only without it): on */
  journal?: number | null;
}

interface MemberRow {
  volume: string;
  position: number;
  name: string;
  kind: MemberKind;
  path: string;
}

function toVolume(cat: Catalog, r: VolumeRow): Volume {
  const members = cat.db
    .all<MemberRow>('SELECT * FROM members WHERE volume = ? ORDER BY position', r.name)
    .map((m) => ({ name: m.name, kind: m.kind, path: m.path }));
  return { name: r.name, role: r.role, createdAt: r.created_at, hooks: JSON.parse(r.hooks) as Hooks, retention: JSON.parse(r.retention) as RetentionPolicy, journal: r.journal !== 0, members };
}

export function listVolumes(cat: Catalog): Volume[] {
  return cat.db.all<VolumeRow>('SELECT * FROM volumes ORDER BY name').map((r) => toVolume(cat, r));
}

export function findVolume(cat: Catalog, name: string): Volume | undefined {
  const r = cat.db.get<VolumeRow>('SELECT * FROM volumes WHERE name = ?', name);
  return r ? toVolume(cat, r) : undefined;
}

export function getVolume(cat: Catalog, name: string): Volume {
  const v = findVolume(cat, name);
  if (!v) throw new FerryError('VOLUME_NOT_FOUND', `no volume ${JSON.stringify(name)} at site ${cat.siteName}; \`ferry volume list\` shows the volumes`);
  return v;
}

/** The volume's role, without its members; undefined when there is no such volume. */
export function volumeRole(cat: Catalog, name: string): Role | undefined {
  return cat.db.get<{ role: Role }>('SELECT role FROM volumes WHERE name = ?', name)?.role;
}

/** Every member of every volume (in volume name order, then the volume's member order), with its volume. */
export function allMembers(cat: Catalog): Array<Member & { volume: string }> {
  return cat.db.all<MemberRow>('SELECT * FROM members ORDER BY volume, position').map((m) => ({ volume: m.volume, name: m.name, kind: m.kind, path: m.path }));
}

/** The rows of a new volume and its members (checked by the caller), in the caller's transaction if any. */
export function insertVolume(cat: Catalog, v: { name: string; role: Role; hooks: Hooks; retention: RetentionPolicy; journal: boolean; members: Member[] }): void {
  cat.tx(() => {
    cat.db.run('INSERT INTO volumes (name, role, created_at, hooks, retention, journal) VALUES (?, ?, ?, ?, ?, ?)', v.name, v.role, cat.now(), JSON.stringify(v.hooks), JSON.stringify(v.retention), v.journal ? 1 : 0);
    v.members.forEach((m, i) => cat.db.run('INSERT INTO members (volume, position, name, kind, path) VALUES (?, ?, ?, ?, ?)', v.name, i, m.name, m.kind, m.path));
  });
}

export function setVolumeSettings(cat: Catalog, name: string, hooks: Hooks, retention: RetentionPolicy, journal: boolean): void {
  cat.db.run('UPDATE volumes SET hooks = ?, retention = ?, journal = ? WHERE name = ?', JSON.stringify(hooks), JSON.stringify(retention), journal ? 1 : 0, name);
}

/** The volume becomes `role` (only if it is `from` now, when given). */
export function setVolumeRole(cat: Catalog, name: string, role: Role, from?: Role): void {
  if (from) cat.db.run('UPDATE volumes SET role = ? WHERE name = ? AND role = ?', role, name, from);
  else cat.db.run('UPDATE volumes SET role = ? WHERE name = ?', role, name);
}

/**
 * The volume's rows and every row that belongs to it, in one transaction: its peer-snapshot rows and
 * deletions, the holds on its snapshots, its secondary relation, its stat cache, its snapshots, its
 * members. The caller has checked that nothing else needs them (no mirror, no link refers to it).
 */
export function forgetVolume(cat: Catalog, name: string): void {
  cat.tx(() => {
    dropPeerRowsOfVolume(cat, name);
    releaseVolumeHolds(cat, name);
    removeSecondaryRow(cat, name);
    clearSplitBrain(cat, name, undefined, 'the volume is removed here');
    deleteSnapshotRowsOf(cat, name);
    cat.db.run('DELETE FROM volumes WHERE name = ?', name);
  });
}
