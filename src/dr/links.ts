// Links: a snapshot presented as a writable copy at a stable path, for DR
// tests and pre-production (NEC link volumes, FlexClone DR tests), refreshed
// on demand or on schedule without renaming the path. A refresh discards
// whatever was written in the copy, and says how much: the link is captured
// into a throwaway overlay (its writes never enter the store), diffed
// against the snapshot it was made from, then brought to the new snapshot
// by the same apply that replicas use (only differences are written).
import { existsSync, lstatSync, readdirSync, realpathSync, rmSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { FerryError } from '../core/errors.ts';
import { checkScheduleSettings } from '../core/units.ts';
import { hashBytes, type ObjectId } from '../core/ids.ts';
import { CODEC_NONE, type ObjectInfo, type ObjectKind, type PreparedObject } from '../store/types.ts';
import { applyTree } from '../replication/apply.ts';
import { captureTree } from '../snapshot/capture.ts';
import type { ChunkPool } from '../snapshot/chunk-pool.ts';
import { diffTrees } from '../snapshot/diff.ts';
import { readManifest } from '../snapshot/graph.ts';
import { restoreImage, restoreTree } from '../snapshot/restore.ts';
import type { Site } from '../site/site.ts';
import { canonicalPath, replicaRoot, within } from '../site/paths.ts';
import { deleteLink, findLink, insertLink, linkNests, setLinkSnapshot, type Link } from '../catalog/links.ts';
import { resolveSnapshot, snapshotById, type SnapshotRecord } from '../catalog/snapshots.ts';
import { allMembers, getVolume } from '../catalog/volumes.ts';

export type { Link } from '../catalog/links.ts';

export function getLink(site: Site, path: string): Link {
  const l = findLink(site.catalog, resolve(path));
  if (!l) throw new FerryError('USAGE', `no link at ${resolve(path)}; \`ferry link list\` shows them`);
  return l;
}

function checkLinkPath(site: Site, path: string): string {
  if (!isAbsolute(path)) path = resolve(path);
  if (existsSync(path)) {
    const st = lstatSync(path);
    if (st.isSymbolicLink()) throw new FerryError('MEMBER_INVALID', `link path ${path} is a symlink; give a real path`);
    if (!st.isDirectory() || readdirSync(path).length > 0) throw new FerryError('TARGET_NOT_EMPTY', `link path ${path} exists and is not an empty directory; choose a new path`);
    path = realpathSync(path);
  }
  for (const m of allMembers(site.catalog)) {
    if (within(path, m.path) || within(m.path, path)) throw new FerryError('MEMBER_INVALID', `link path ${path} overlaps member ${m.path} of volume ${m.volume}; a link must be a path of its own`);
  }
  if (within(path, site.paths.home) || within(site.paths.home, path)) throw new FerryError('MEMBER_INVALID', `link path ${path} overlaps the site home`);
  const root = canonicalPath(replicaRoot(site));
  if (within(path, root) || within(root, path)) {
    throw new FerryError('MEMBER_INVALID', `link path ${path} overlaps the replica root ${root}, where replicas from peers are made (a refresh replaces the link's copy whole); choose a path apart from it`);
  }
  if (linkNests(site.catalog, path)) throw new FerryError('MEMBER_INVALID', `link path ${path} overlaps another link`);
  return path;
}

function pickMember(site: Site, volume: string, member?: string): { name: string; kind: 'tree' | 'image' } {
  const vol = getVolume(site.catalog, volume);
  if (member) {
    const m = vol.members.find((x) => x.name === member);
    if (!m) throw new FerryError('USAGE', `volume ${volume} has no member ${member} (members: ${vol.members.map((x) => x.name).join(', ')})`);
    return m;
  }
  if (vol.members.length > 1) throw new FerryError('USAGE', `volume ${volume} has several members; say which with --member (${vol.members.map((x) => x.name).join(', ')})`);
  return vol.members[0];
}

function memberRoot(site: Site, snap: SnapshotRecord, member: string): { kind: 'tree' | 'image'; root: ObjectId } {
  const m = readManifest(site.store, snap.manifest as ObjectId).members.find((x) => x.name === member);
  if (!m) throw new FerryError('SNAPSHOT_NOT_FOUND', `snapshot ${snap.id} has no member ${member}`);
  return m;
}

export interface CreateLinkOptions {
  volume: string;
  member?: string;
  snapshot?: string;
  scheduleS?: number | null;
  minDelayS?: number;
  maxDelayS?: number;
}

export function createLink(site: Site, rawPath: string, o: CreateLinkOptions): Link {
  const settings = checkScheduleSettings({ scheduleS: o.scheduleS ?? null, minDelayS: o.minDelayS ?? 0, maxDelayS: o.maxDelayS ?? 86400 }, 'link');
  const path = checkLinkPath(site, resolve(rawPath));
  if (findLink(site.catalog, path)) throw new FerryError('USAGE', `a link already exists at ${path}`);
  const member = pickMember(site, o.volume, o.member);
  const ref = o.snapshot ?? 'latest';
  const snap = resolveSnapshot(site.catalog, o.volume, ref);
  const m = memberRoot(site, snap, member.name);
  if (m.kind === 'tree') restoreTree(m.root, '', path, { store: site.store, force: true });
  else restoreImage(m.root, path, { store: site.store });
  site.catalog.tx(() => {
    // The snapshot a link shows is held from now on: retention must not take it from under the copy.
    insertLink(site.catalog, { path, volume: o.volume, member: member.name, snapshotRef: ref, snapshot: snap.id, scheduleS: settings.scheduleS, minDelayS: settings.minDelayS, maxDelayS: settings.maxDelayS });
    site.event({ kind: 'link.create', volume: o.volume, outcome: 'ok', detail: { path, member: member.name, snapshot: snap.id } });
  });
  return getLink(site, path);
}

/** A store that keeps capture's metadata objects in memory and drops file data: for looking, not keeping. */
interface BackingStore {
  has(id: ObjectId): boolean;
  get(id: ObjectId): Buffer;
  info(id: ObjectId): ObjectInfo | undefined;
}

export class OverlayStore {
  readonly #real: BackingStore;
  readonly #mem = new Map<string, Buffer>();
  /** raw lengths of the file data seen and dropped (for diffs that count changed bytes) */
  readonly #dropped = new Map<string, number>();
  constructor(real: BackingStore) {
    this.#real = real;
  }
  has(id: ObjectId): boolean {
    return this.#mem.has(id) || this.#real.has(id);
  }
  put(_kind: ObjectKind, raw: Uint8Array): { id: ObjectId; added: boolean } {
    const id = hashBytes(raw);
    if (!this.#mem.has(id)) this.#mem.set(id, Buffer.from(raw));
    return { id, added: false };
  }
  putPrepared(o: PreparedObject): boolean {
    if (!this.#real.has(o.id)) this.#dropped.set(o.id, o.rawLength);
    return false;
  }
  get(id: ObjectId): Buffer {
    return this.#mem.get(id) ?? this.#real.get(id);
  }
  info(id: ObjectId): ObjectInfo | undefined {
    const real = this.#real.info(id);
    if (real) return real;
    const n = this.#dropped.get(id);
    return n === undefined ? undefined : { id, kind: 'chunk', rawLength: n, storedLength: n, codec: CODEC_NONE, pack: -1 };
  }
}

export interface RefreshResult {
  link: Link;
  from: string;
  to: string;
  /** paths changed in the link since it was made or last refreshed (discarded) */
  discarded: number;
  bytesWritten: number;
}

export async function refreshLink(site: Site, pool: ChunkPool, rawPath: string, o: { force?: boolean; snapshot?: string; scheduled?: boolean } = {}): Promise<RefreshResult> {
  const link = getLink(site, rawPath);
  const now = site.clock.now();
  if (!o.force && !o.scheduled && now - link.refreshedAt < link.minDelayS * 1000) {
    throw new FerryError('MIRROR_STATE', `link ${link.path} was refreshed ${Math.round((now - link.refreshedAt) / 1000)} s ago, within its min delay of ${link.minDelayS} s; wait or use --force`);
  }
  const ref = o.snapshot ?? link.snapshotRef;
  const next = resolveSnapshot(site.catalog, link.volume, ref);
  const before = memberRoot(site, resolveSnapshot(site.catalog, link.volume, link.snapshot), link.member);
  const after = memberRoot(site, next, link.member);
  let discarded = 0;
  let bytesWritten = 0;
  if (after.kind === 'tree') {
    const overlay = new OverlayStore(site.store);
    const current = await captureTree(link.path, { store: overlay, pool, startedAt: now });
    diffTrees(overlay, before.root, current.root, () => discarded++);
    bytesWritten = (await applyTree(link.path, current.root, after.root, { store: overlay })).bytesWritten;
  } else {
    // An image link is rewritten where it differs from the new snapshot; blocks written in the copy are not tracked, so all are checked.
    const st = lstatSync(link.path, { bigint: true });
    discarded = st.mtimeMs > BigInt(link.refreshedAt) ? 1 : 0;
    bytesWritten = restoreImage(after.root, link.path, { store: site.store, force: true }).bytes;
  }
  site.catalog.tx(() => {
    setLinkSnapshot(site.catalog, link.path, next.id, ref, now);
    site.event({ kind: 'link.refresh', volume: link.volume, outcome: discarded ? 'warning' : 'ok', detail: { path: link.path, from: link.snapshot, to: next.id, discarded, scheduled: o.scheduled === true } });
  });
  return { link: getLink(site, link.path), from: link.snapshot, to: next.id, discarded, bytesWritten };
}

export function removeLink(site: Site, rawPath: string, o: { keepData?: boolean } = {}): void {
  const link = getLink(site, rawPath);
  site.catalog.tx(() => {
    deleteLink(site.catalog, link.path);
    site.event({ kind: 'link.remove', volume: link.volume, outcome: 'ok', detail: { path: link.path, keptData: o.keepData === true } });
  });
  if (!o.keepData) rmSync(link.path, { recursive: true, force: true });
}

export interface LinkStatus extends Link {
  health: 'up' | 'warn';
  ageSeconds: number;
  snapshotTime: number;
  nextRunAt: number | null;
}

export function linkStatus(site: Site, link: Link): LinkStatus {
  const t = snapshotById(site.catalog, link.snapshot)?.time ?? link.refreshedAt;
  const age = Math.max(0, (site.clock.now() - t) / 1000);
  return { ...link, snapshotTime: t, ageSeconds: age, health: age > link.maxDelayS ? 'warn' : 'up', nextRunAt: link.scheduleS ? link.refreshedAt + link.scheduleS * 1000 : null };
}
