// What replication logic sees of the other side. The receiving site
// implements Receiver over its catalog and store (site/receiver.ts); the
// HTTP/2 client implements it over the network (transport/client.ts); tests wrap
// it to cut, delay or corrupt. Replication never imports HTTP.
import type { ObjectId } from '../core/ids.ts';
import type { WireObject } from './protocol.ts';
import type { MemberKind } from '../snapshot/model.ts';

/** 2: large directories are paged (a treeindex and its treepages: snapshot/dir-pages.ts), which version 1 cannot read. */
export const PROTOCOL_VERSION = 2;

export interface HelloRequest {
  protocol: number;
  /** the source's volume name */
  sourceVolume: string;
  /** the volume name wanted at the destination */
  volume: string;
  members: Array<{ name: string; kind: MemberKind }>;
  /** how many replication snapshots the destination keeps (a common base with a sibling after a failover); default 3 */
  keep?: number;
  /** the source's other secondaries of this volume: after a failover at one of them, it re-points the others */
  siblings?: SiblingInfo[];
  /** the name the source calls the destination by (its paired site's name there): the commands a refusal names for the source's operator use it */
  to?: string;
}

/** One other secondary of the source volume, as the source knows it (site id, not a local name). */
export interface SiblingInfo {
  site: string;
  volume: string;
  scheduleS: number | null;
  minDelayS: number;
  maxDelayS: number;
  bandwidth: number | null;
  keep: number | null;
}

export interface HelloResponse {
  protocol: number;
  volume: string;
  /** complete snapshots the destination holds for this volume, oldest first */
  snapshots: Array<{ id: string; name: string | null; time: number }>;
  /** the snapshot the replica currently shows (null before the first apply) */
  applied: string | null;
  /** true while the replica is mid-apply */
  applying: boolean;
  /** where each member's replica is, for the operator */
  replicas: Array<{ name: string; kind: MemberKind; path: string }>;
  /** the destination takes chunks as deltas against objects it holds (WIRE_DELTA); absent from older sites */
  delta?: boolean;
}

export interface PutResult {
  received: number;
  stored: number;
  bytes: number;
}

export interface CommitRequest {
  snapshot: string;
  manifest: ObjectId;
  /** apply even if someone wrote into the replica since the last apply (their writes are kept first) */
  force?: boolean;
  /** a peer snapshot: the receiver keeps it (held) until the primary deletes it everywhere */
  peer?: boolean;
  /**
   * the first snapshot of a full sync (the mirror has no base): the relation starts again with it,
   * and what the source sent before is no reference for the receiver's replay check (absent from older sites)
   */
  baseline?: boolean;
  /**
   * the snapshot's parent is not at the receiver (the source deleted it): the newest snapshot of its
   * lineage the source knows the receiver holds, which the receiver's replay check takes it to
   * descend from (absent from older sites)
   */
  ancestor?: string;
  /**
   * the newest snapshot the source took before this one (in the order it took them, whatever its
   * clock said) that the receiver holds; for the receiver's replay check, like `ancestor`, and not
   * recorded as lineage (absent from older sites)
   */
  after?: string;
  /**
   * the order in which the source took this snapshot (its recorded order, never reused): the
   * receiver keeps it and orders what one source sent by it rather than by the source's clock (absent
   * from older sites, and for a snapshot the source did not take)
   */
  seq?: number;
}

export interface CommitResponse {
  snapshot: string;
  applied: boolean;
  /** set when writes into the replica were found and kept */
  writesSnapshot?: string;
  /** why the apply was refused, when it was */
  refused?: string;
  /** seconds spent in each step at the destination (check, stageWait, writesCheck, apply, verify), for status and the benchmark */
  phases?: Record<string, number>;
}

export interface Receiver {
  hello(req: HelloRequest, signal?: AbortSignal): Promise<HelloResponse>;
  /** for each id, true when the receiver lacks it */
  missing(volume: string, ids: ObjectId[], signal?: AbortSignal): Promise<boolean[]>;
  /** store objects (each verified against its id by the receiver) */
  put(volume: string, objects: AsyncIterable<WireObject>, signal?: AbortSignal): Promise<PutResult>;
  commit(volume: string, req: CommitRequest, signal?: AbortSignal): Promise<CommitResponse>;
}
