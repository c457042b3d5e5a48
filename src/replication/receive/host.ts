// What the receiving side needs of the site it receives into, and nothing
// more: its catalog and store, clock and events, its replica state
// (replicas.ts), GC's writer count, the replica journal, and the site's
// rules for where a new secondary may be made. The site implements it
// (site/receiver.ts) and hands it in, so this layer never imports the site.
//
// Owns: that interface, the authorization every request of a peer passes
// (secondaryFor), and the one staging a volume may have (stagerFor).
import { FerryError } from '../../core/errors.ts';
import type { Clock } from '../../core/clock.ts';
import type { PackStore } from '../../store/pack-store.ts';
import type { ChunkPool } from '../../snapshot/chunk-pool.ts';
import type { DirtySet } from '../../snapshot/journal.ts';
import type { Catalog } from '../../catalog/catalog.ts';
import type { EventRecord } from '../../catalog/events.ts';
import { dropStagedFiles, getSecondary, putStagedFiles, stagedFilesOf, type SecondaryRow } from '../../catalog/secondaries.ts';
import { findVolume, type Member, type Volume } from '../../catalog/volumes.ts';
import type { MemberKind } from '../../snapshot/model.ts';
import type { StageRecord, Stager } from '../stage.ts';
import type { Replicas } from './replicas.ts';

/** The replica journal (the site's journal service) as the apply sees it. */
export interface ReplicaJournal {
  /**
   * What changed in the replica member since the last take, and the snapshot it was found exactly at
   * then (null: not known). Undefined: the member is not watched.
   */
  replicaTake(vol: Volume, member: string): Promise<{ set: DirtySet; base: string | null } | undefined>;
  /** A verification found the replica member exactly at snapshot `base` as of the last take. */
  replicaSettle(volume: string, member: string, base: string): void;
}

/** Where `hello` would make a new secondary: its directory, its members' canonical paths, and why not there (if so). */
export interface ReplicaPlace {
  base: string;
  members: Member[];
  /** why the site's replica root cannot take it, for the operator of this site */
  problem?: string;
  /** what of this site (a member of a volume, a link copy) lies at or inside `base`, if anything: moving `base` away would take it along */
  occupant?: string;
}

export interface ReceiveHost {
  /** the site's id and name (messages, snapshot origins) */
  readonly id: string;
  readonly name: string;
  readonly catalog: Catalog;
  readonly store: PackStore;
  readonly clock: Clock;
  /** the site's replica state: one per secondary volume, and its receiving workers */
  readonly replicas: Replicas;
  /** record an event (and log it) */
  event(e: EventRecord): void;
  /** objects no snapshot names yet are about to be written: GC waits until the returned function is called */
  beginWrite(): () => void;
  /** the replica journal, while the site runs one */
  journal(): ReplicaJournal | undefined;
  /** what releasing these snapshots of the volume would free, estimated while their rows are there (site/auto-collect.ts) */
  estimateRelease(volume: string, ids: string[]): number;
  /** released snapshots freeing about `bytes` (in the caller's transaction): counted, and whether a collection is due, with why for the event */
  countRelease(bytes: number, o: { onlyManifests?: boolean }): { collect: boolean; detail: string };
  /** collect garbage once no writer is in progress (`reason` goes in its event) */
  collectGarbageSoon(reason?: string): void;
  /** where a new secondary of `volume` with these members would be made, under the site's replica root */
  replicaPlace(volume: string, members: Array<{ name: string; kind: MemberKind }>): ReplicaPlace;
  /** why members at these (canonical) paths cannot be made at this site, or undefined */
  memberPathProblem(members: Member[]): string | undefined;
  /** record a new secondary volume whose member paths exist (inside the caller's transaction) */
  createSecondaryVolume(name: string, members: Member[]): void;
}

/** One peer's requests at this site: the host, the authenticated site id of the sender, and the capture workers. */
export interface Receiving {
  readonly host: ReceiveHost;
  /** the authenticated site id of the sender */
  readonly peer: string;
  readonly pool: ChunkPool;
}

/** Seconds to the millisecond, for phases. */
export const round3 = (x: number) => Math.round(x * 1000) / 1000;

/** The secondary the peer may write into: this site's secondary of that peer, not taken over. */
export function secondaryFor(rx: Receiving, volume: string): SecondaryRow {
  const { host, peer } = rx;
  const row = getSecondary(host.catalog, volume);
  const vol = findVolume(host.catalog, volume);
  if (row && row.source_site === peer && row.state === 'broken-off') {
    throw new FerryError('FAILED_OVER', `site ${host.name} took over volume ${volume} (failover): it no longer accepts updates from you; run \`ferry failback ${row.source_volume}\` at your site to resync from ${host.name}`);
  }
  if (!row || !vol || vol.role !== 'secondary' || row.source_site !== peer) {
    throw new FerryError('NOT_AUTHORIZED', `site ${peer} may not write into volume ${volume} here: it is not this site's secondary of that peer`);
  }
  return row;
}

/** The staging of the volume's one tree member (made on first use); none for a volume with several (or none). */
export function stagerFor(host: ReceiveHost, vol: Volume): Stager | undefined {
  const members = vol.members.filter((m) => m.kind === 'tree');
  if (members.length !== 1) return undefined;
  const record = (): StageRecord => ({
    put: (rows) => putStagedFiles(host.catalog, vol.name, rows),
    of: (tree) => stagedFilesOf(host.catalog, vol.name, tree),
    drop: (tree) => dropStagedFiles(host.catalog, vol.name, tree),
  });
  return host.replicas.of(vol.name).stager(members[0].path, host.store, record);
}
