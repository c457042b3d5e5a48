// Captures of a replica, for the apply job (apply-job.ts): the writes check
// before an apply (did anyone write into the replica since the last one? if
// so, keep what is there as a snapshot before anything is overwritten) and
// the verification after it (the replica must equal the snapshot exactly).
// Both go from the stat cache, and from the replica's change journal where
// the site runs one (ReceiveHost.journal): only what changed is looked at.
//
// Owns: those captures and the replica-writes-* snapshots they keep. Must
// never: take a file as unchanged on anything weaker than the stat cache's
// test, or read through a symlink put in place of an image replica.
import { lstatSync } from 'node:fs';
import { FerryError } from '../../core/errors.ts';
import { newSnapshotId, type ObjectId, type SnapshotId } from '../../core/ids.ts';
import type { ObjectReader } from '../../store/types.ts';
import { captureTree, type CaptureJournal, type StatCacheIO } from '../../snapshot/capture.ts';
import { captureImage } from '../../snapshot/capture-image.ts';
import type { DirtySet } from '../../snapshot/journal.ts';
import { decodeImage, encodeSnapshot } from '../../snapshot/format.ts';
import { dirEntries, readDir } from '../../snapshot/dir-pages.ts';
import { sameTreeContent } from '../../snapshot/diff.ts';
import { readManifest } from '../../snapshot/graph.ts';
import type { SnapshotManifest, SnapshotMember } from '../../snapshot/model.ts';
import { inPlaceRecords, type SecondaryRow } from '../../catalog/secondaries.ts';
import { insertSnapshotRow, newestReplicaWrites, snapshotById } from '../../catalog/snapshots.ts';
import { commitStatCache, discardStatCache, StatCacheWriter, statCacheFor } from '../../catalog/stat-cache.ts';
import type { Volume } from '../../catalog/volumes.ts';
import { foreignImageBlocks, foreignTreePaths, type OwnWork } from '../mid-apply.ts';
import { isOwnWork, parseInPlaceRecord } from '../in-place.ts';
import type { ReceiveHost, Receiving } from './host.ts';
import type { WrittenDir, WrittenFiles } from './written-files.ts';

/** An apply left part way: the member roots it started from, and its snapshot (null when that is gone). */
export interface Unfinished {
  from: Record<string, ObjectId | null>;
  to: SnapshotManifest | null;
}

/** A stat cache with the apply's written files of one member (`files`: directory, latin1 -> its files) laid over the parent snapshot's entries. */
export function withWritten(base: StatCacheIO, files: (dir: string) => WrittenDir | undefined): StatCacheIO {
  return {
    load(dir: Buffer) {
      const extra = files(dir.toString('latin1'));
      const cached = base.load(dir);
      if (!extra) return cached;
      const out = new Map(cached ?? []);
      for (const [name, f] of extra) out.set(name, f);
      return out;
    },
    save: (dir, data) => base.save(dir, data),
    loadKey: base.loadKey && ((key: Buffer) => {
      // a page's rows (statCacheKey: the directory, NUL, the page's first name), with the directory's written files over them
      const nul = key.indexOf(0);
      const extra = files((nul < 0 ? key : key.subarray(0, nul)).toString('latin1'));
      const cached = base.loadKey!(key);
      if (!extra) return cached;
      const out = new Map(cached ?? []);
      for (const [name, f] of extra) out.set(name, f);
      return out;
    }),
  };
}

export interface ImageStat {
  size: number;
  mtimeNs: string;
  ctimeNs: string;
  ino: string;
}

export function statOf(path: string): ImageStat {
  const st = lstatSync(path, { bigint: true });
  return { size: Number(st.size), mtimeNs: String(st.mtimeNs), ctimeNs: String(st.ctimeNs), ino: String(st.ino) };
}

function sameMembers(a: SnapshotMember[], b: SnapshotMember[]): boolean {
  return a.length === b.length && a.every((x, i) => x.name === b[i].name && x.kind === b[i].kind && x.root === b[i].root);
}

/** Whether the store holds image `id` and every block list of it (readable: not in a lost pack). */
function imageListsHeld(store: ObjectReader, id: ObjectId): boolean {
  if (!store.has(id)) return false;
  try {
    return decodeImage(store.get(id)).lists.every((l) => store.has(l));
  } catch {
    return false;
  }
}

/** The captures of one peer's replicas. */
export class ReplicaCapture {
  readonly #rx: Receiving;
  readonly #host: ReceiveHost;

  constructor(rx: Receiving) {
    this.#rx = rx;
    this.#host = rx.host;
  }

  /**
   * Capture the tree members of the replica with the stat cache; returns member -> root.
   * `written`: files the apply just wrote from verified chunks, with what lstat saw of each once in
   * place; a file that still shows exactly that (size, mtime, ctime, inode) is taken as those chunks
   * without being read again, like a stat-cache hit. A write into it since (even one that put the
   * mtime back) changes its ctime, and the file is read.
   * The capture's stat cache rows are written pending under `newKey`; the caller commits them
   * (commitStatCache) with `whole`: 'all' when every subtree was walked, none when subtrees were
   * trusted from the parent (`unchanged`, `journals`), whose rows then stand.
   */
  async captureTrees(
    vol: Volume, parentKey: string | undefined, newKey: string, written?: WrittenFiles,
    stats?: { filesRead: number; filesReused: number; bytesRead: number }, unchanged?: Map<string, Map<string, ObjectId>>, skipAtRoot?: string,
    journals?: Map<string, CaptureJournal>,
  ): Promise<{ roots: Record<string, ObjectId>; whole: 'all' | [] }> {
    const host = this.#host;
    const rows = new StatCacheWriter(host.catalog, vol.name, newKey);
    const out: Record<string, ObjectId> = {};
    // a failed write that discards what this capture stored (or skipped as pending) fails it (WriteSession)
    const session = host.store.session();
    for (const m of vol.members.filter((x) => x.kind === 'tree')) {
      const base = statCacheFor(host.catalog, vol.name, m.name, parentKey, rows);
      const cache = written?.count(m.name) ? withWritten(base, (dir) => written.dir(m.name, dir)) : base;
      const same = unchanged?.get(m.name);
      const reuse = same?.size ? (rel: Buffer) => same.get(rel.toString('latin1')) : undefined;
      // From the replica's change journal (ReceiveHost.journal), where the caller has an exact set:
      // only what changed is looked at, and nothing is taken on trust from an earlier capture.
      const journal = journals?.get(m.name);
      const r = await captureTree(m.path, { store: session, pool: this.#rx.pool, cache, startedAt: host.clock.now(), reuse: journal ? undefined : reuse, skipAtRoot, journal });
      out[m.name] = r.root;
      if (stats) {
        stats.filesRead += r.stats.filesRead;
        stats.filesReused += r.stats.filesReused;
        stats.bytesRead += r.stats.bytesRead;
      }
    }
    rows.flush();
    host.store.flush();
    session.check();
    // The stat cache rows of subtrees not walked stand (the parent's, which describe them still).
    const trusted = [...(unchanged?.values() ?? [])].some((x) => x.size > 0) || (journals?.size ?? 0) > 0;
    return { roots: out, whole: trusted ? [] : 'all' };
  }

  /**
   * Take the replica journal's set of every tree member (ReceiveHost.journal, replicaTake). `parentOf`
   * says, per member, which tree the set counts from (null: the capture walks in full). `exact`:
   * every tree member's set was taken from a live watch, so a capture made now is the replica as of
   * the take; false without a journal (a capture made without a daemon, a watch that cannot be made).
   */
  async replicaTakes(vol: Volume, parentOf: (member: string, t: { set: DirtySet; base: string | null }) => ObjectId | null): Promise<{ journals: Map<string, CaptureJournal>; exact: boolean }> {
    const host = this.#host;
    const j = host.journal();
    const journals = new Map<string, CaptureJournal>();
    let exact = j !== undefined;
    for (const m of vol.members.filter((x) => x.kind === 'tree')) {
      const t = await j?.replicaTake(vol, m.name);
      if (!t) {
        exact = false;
        continue;
      }
      const parent = parentOf(m.name, t);
      if (parent) journals.set(m.name, { parent, dirs: t.set.dirs, tree: (id) => ({ entries: dirEntries(host.store, id) }), store: host.store });
    }
    return { journals, exact };
  }

  /**
   * Did anyone write into the replica since the last apply? If so, keep what is there as a snapshot.
   * `unfinished`: an apply left part way (from its start to its snapshot, if that is still here):
   * then the replica may differ from the last apply by that apply's own work, and only what is
   * neither (mid-apply.ts) counts as written.
   */
  async captureReplica(vol: Volume, row: SecondaryRow, skipAtRoot?: string, unfinished?: Unfinished, full = false): Promise<{ roots: Record<string, ObjectId | null>; changed: boolean; snapshot?: string; exact: boolean; journaled: boolean }> {
    const host = this.#host;
    const applied = row.applied ? readManifest(host.store, snapshotById(host.catalog, row.applied)!.manifest) : null;
    const key = newSnapshotId(host.clock);
    const session = host.store.session();
    // The replica's change journal: what changed since the last take. When the last verification
    // found the replica exactly at the snapshot it shows, only that is looked at; either way this
    // capture is then exact as of the take, and the verification after the apply may go from it.
    const { journals, exact } = await this.replicaTakes(vol, (member, t) =>
      !full && !unfinished && applied !== null && t.set.lost === null && t.base === row.applied ? (applied.members.find((x) => x.name === member && x.kind === 'tree')?.root ?? null) : null,
    );
    // The capture's stat cache rows are pending: unchanged, they become the applied snapshot's
    // (below); writes found, they go (the apply's verification reads the applied snapshot's).
    const { roots: trees, whole } = await this.captureTrees(vol, row.applied ?? undefined, key, undefined, undefined, undefined, skipAtRoot, journals);
    const imageStats = JSON.parse(row.image_stats) as Record<string, ImageStat>;
    const roots: Record<string, ObjectId | null> = {};
    const members: SnapshotMember[] = [];
    // what was written (the first few paths or blocks), for the event
    const written: string[] = [];
    const sides = (name: string) => [unfinished!.from[name] ?? null, unfinished!.to?.members.find((x) => x.name === name)?.root ?? null] as const;
    for (const m of vol.members) {
      const base = applied?.members.find((x) => x.name === m.name)?.root ?? null;
      if (m.kind === 'tree') {
        const now = trees[m.name];
        roots[m.name] = now;
        members.push({ name: m.name, kind: 'tree', root: now });
        if (unfinished) {
          if (now !== base) written.push(...foreignTreePaths(host.store, now, ...sides(m.name), 5, this.#ownWork(vol.name, m.name, m.path)).map((p) => `${m.name}/${p}`));
        } else if (base ? now !== base && !sameTreeContent(host.store, base, now) : !this.#isEmptyTree(now)) written.push(m.name);
        continue;
      }
      const now = statOf(m.path);
      const kind = lstatSync(m.path);
      if (!kind.isFile() && !kind.isBlockDevice()) {
        // Never read through a symlink (or anything else) put in place of the image: that would copy what it points at.
        throw new FerryError('MEMBER_INVALID', `image replica ${m.path} of ${vol.name} is neither a regular file nor a block device (a symlink?); move it away`);
      }
      const was = imageStats[m.name];
      // An untouched replica is the applied image, but the apply diffs from that image's block lists:
      // if this store lost any of them (a lost pack), capture the replica instead, which also stores them again.
      const untouched = base ? was && was.size === now.size && was.mtimeNs === now.mtimeNs && was.ctimeNs === now.ctimeNs && was.ino === now.ino && imageListsHeld(host.store, base) : now.size === 0;
      if (untouched) {
        roots[m.name] = base;
        if (base) members.push({ name: m.name, kind: 'image', root: base });
        continue;
      }
      const img = await captureImage(m.path, { store: session, pool: this.#rx.pool, startedAt: host.clock.now() });
      roots[m.name] = img.root;
      members.push({ name: m.name, kind: 'image', root: img.root });
      if (img.root === base) continue;
      if (!unfinished) written.push(m.name);
      else written.push(...foreignImageBlocks(host.store, img.root, ...sides(m.name)).map((b) => (b < 0 ? `${m.name} (size)` : `${m.name} block ${b}`)));
    }
    const changed = written.length > 0;
    if (!changed) {
      // Nothing new: the cache rows just written describe the applied state (or, with none applied,
      // the empty replica: they name no file). Not after a cut apply: they would name its files,
      // whose chunks only its snapshot holds (the verification after the apply writes new ones).
      if (unfinished) discardStatCache(host.catalog, vol.name, key);
      else commitStatCache(host.catalog, vol.name, key, { owner: row.applied ?? key, parent: row.applied ?? undefined, whole });
      return { roots, changed, exact, journaled: journals.size > 0 };
    }
    discardStatCache(host.catalog, vol.name, key);
    // Kept already: the newest replica-writes-* snapshot holds exactly this (the refused update before
    // a forced one, an apply that keeps failing): no second copy.
    const last = newestReplicaWrites(host.catalog, vol.name, host.id);
    if (last && sameMembers(readManifest(host.store, last.manifest).members, members)) {
      host.event({ kind: 'replica.writes', volume: vol.name, outcome: 'warning', detail: { name: last.name, written, keptAlready: true, ...(unfinished ? { during: unfinished.to?.id ?? row.applying } : {}) } });
      return { roots, changed, snapshot: last.name, exact, journaled: journals.size > 0 };
    }
    // Keep the writes: a named snapshot of the replica as it is (invariant: nothing is lost silently).
    const time = host.clock.now();
    const name = `replica-writes-${new Date(time).toISOString().replace(/[:.]/g, '-')}`;
    const manifest: SnapshotManifest = { id: key as SnapshotId, volume: vol.name, name, time, origin: host.id, parent: (row.applied as SnapshotId | null) ?? null, members };
    const { id: manifestId } = session.put('snapshot', encodeSnapshot(manifest));
    host.store.flush();
    session.check();
    host.catalog.tx(() => {
      insertSnapshotRow(host.catalog, { id: key, volume: vol.name, name, time, origin: host.id, parent: row.applied, manifest: manifestId, stats: { replicaWrites: true } });
      host.event({ kind: 'replica.writes', volume: vol.name, outcome: 'warning', detail: { snapshot: key, name, written, ...(unfinished ? { during: unfinished.to?.id ?? row.applying } : {}) } });
    });
    return { roots, changed, snapshot: name, exact, journaled: journals.size > 0 };
  }

  /** Files of a member a cut apply was patching in place: which hold only its own work (in-place.ts). */
  #ownWork(volume: string, member: string, root: string): OwnWork | undefined {
    const records = inPlaceRecords(this.#host.catalog, volume, member);
    if (records.size === 0) return undefined;
    const base = Buffer.from(root);
    return (rel: Buffer) => {
      const r = parseInPlaceRecord(records.get(rel.toString('latin1')));
      return r !== undefined && isOwnWork(Buffer.concat([base, Buffer.from('/'), rel]), r);
    };
  }

  #isEmptyTree(id: ObjectId): boolean {
    return readDir(this.#host.store, id).entries?.length === 0;
  }
}
