// What DR workflows (src/dr/) see of another site: DrPeer, one method per DR
// call (`/v1/dr/<op>`), each with its request and answer types, beside the
// Receiver that replication sees (types.ts). A peer's answer is bytes from the
// network: each is checked field by field here (parseDrAnswer) before a
// workflow acts on it, and one that is malformed is refused with PROTOCOL,
// naming the call and the field. The transport implements DrPeer over its
// client (transport/dr-client.ts); the engine builds every one (Engine.drPeer),
// so a wrapper (faults, retries) can sit around all DR traffic in one place.
import { FerryError } from '../core/errors.ts';
import type { UpdateResult, UpdateWarning } from './driver/types.ts';

// ---------------------------------------------------------------- requests

export interface StateRequest {
  volume: string;
  /** count the writes at the peer since this snapshot (changedSinceBase); null: do not */
  base: string | null;
}

/** Which role a peer holds a volume in (`dr/role`): asked of any paired site, mirrored with it or not. */
export interface RoleRequest {
  volume: string;
}

/** A new primary asks a paired site whether it is primary of what came from the same old primary (`dr/beside`, dr/beside.ts). */
export interface BesideRequest {
  /** the asker's volume, which it took over */
  volume: string;
  /** the old primary's site id */
  from: string;
  /** the volume at the old primary */
  fromVolume: string;
}

/**
 * Before a plain failover, a secondary asks its siblings whether one of them took the volume over
 * from the same old primary already (`dr/took-over`, dr/beside.ts): asked only, nothing recorded.
 */
export interface TookOverRequest {
  /** the old primary's site id */
  from: string;
  /** the volume at the old primary */
  fromVolume: string;
}

export interface ChangesRequest {
  volume: string;
  base: string;
  /** the asker's lineage, newest first: the peer picks the newest common base from it */
  lineage: string[];
}

export interface FailoverNoticeRequest {
  /** the volume at the old primary (the one told) */
  volume: string;
  /** the volume at the site that took over */
  at: string;
  /** told after the failover itself (the old primary was unreachable then) */
  late?: boolean;
  /** a forced failover: the old primary takes it even when a sibling's failover broke its mirror off already */
  force?: boolean;
}

export interface MirrorSchedule {
  scheduleS: number | null;
  minDelayS: number;
  maxDelayS: number;
  bandwidth: number | null;
}

export interface FailbackRequest {
  volume: string;
  to: string;
  base: string | null;
  full: boolean;
  schedule: MirrorSchedule | null;
  /** the split brains the yielding site recorded (other primaries of the volume: site id, volume there), handed over to the new primary */
  splitBrains?: Array<{ site: string; volume: string }>;
}

export interface TakeoverRequest {
  volume: string;
  newSourceVolume: string;
  snapshots: string[];
  oldSource: string | null;
  oldSourceVolume: string | null;
}

export interface TakeoverNoticeRequest {
  volume: string;
  by: string;
}

export interface RepointRequest {
  volume: string;
  newSource: string;
  newSourceVolume: string;
}

export interface MigrateAcceptRequest {
  volume: string;
  final: string;
  backTo: string;
  schedule: MirrorSchedule;
  others: Array<{ id: string; volume: string } & MirrorSchedule>;
}

export interface PeerDeleteRequest {
  volume: string;
  snapshot: string;
}

// ---------------------------------------------------------------- answers

/** A volume as a peer describes it to a site it is mirrored with (`dr/state`). */
export interface RemoteState {
  volume: string;
  role: string;
  /** set when this volume was the requester's secondary and was taken over */
  failedOverFrom: string | null;
  /** the site this volume follows, when it is an (active) secondary; null otherwise (an older ferry: absent) */
  follows?: string | null;
  snapshots: string[];
  newest: { id: string; time: number } | null;
  /** bytes changed at the remote from `base` to its live members now (an estimate of what will move) */
  changedSinceBase: { bytes: number; paths: number } | null;
}

/**
 * A volume's role as a peer answers any paired site (`dr/role`): the role, and the site it follows
 * when it is an active secondary; nothing of its snapshots (a site it is not mirrored with learns
 * only what a split brain's record needs: whether that site is still primary of it).
 */
export interface RoleAnswer {
  volume: string;
  role: string;
  follows: string | null;
}

/** The answer to `dr/beside`: the volume here that is primary of what came from the old primary (the asker is recorded beside it), or null. */
export interface BesideAnswer {
  volume: string | null;
}

/** The answer to `dr/took-over`: the volume here that took the old primary's volume over (failover), or null. */
export interface TookOverAnswer {
  volume: string | null;
}

/** What one side changed since the base: its latest snapshot diffed against the base (`dr/changes`). */
export interface SideChanges {
  site: string;
  volume: string;
  role: string;
  /** the side's latest snapshot (snapshots.ts latestSnapshot: by lineage, not by time) */
  newest: { id: string; name: string | null; time: number } | null;
  /** the base counted from (the DR route `changes` answers the one it chose by lineage) */
  base?: string;
  /** false when this side no longer holds the base: nothing can be compared */
  hasBase: boolean;
  added: number;
  modified: number;
  removed: number;
  bytesAdded: number;
  bytesChanged: number;
  bytesRemoved: number;
}

export interface FailoverNoticeAnswer {
  /** the mirror broken off; '' (state 'none') when the old primary holds none any more: it follows `tookOverBy` */
  mirror: string;
  state: string;
  /** another secondary took the volume over first (a forced or late notice): that site's id and its volume, a second primary beside the sender */
  tookOverBy?: { site: string; volume: string };
  /**
   * the other sites the old primary knows to be primary of the volume beside itself (each site id and
   * its volume there): the site it took the volume over from (its relation to it broken off), the
   * split brains recorded there. The sender becomes a primary beside each of them too. An older
   * ferry leaves it out.
   */
  alsoPrimary?: Array<{ site: string; volume: string }>;
}

export interface TakeoverAnswer {
  volume: string;
  common: string | null;
  applied: string | null;
  oldPrimary: 'agreed' | 'unreachable' | 'already';
}

export interface TakeoverNoticeAnswer {
  agreed: true;
  role: string;
}

export interface RepointAnswer {
  volume: string;
  source: string;
  already?: boolean;
  returned?: boolean;
}

/** A hook's run (site/hooks.ts runHook): recorded with a snapshot or a workflow, and reported by a peer (a migrate's post hook). */
export interface HookResult {
  phase: 'pre' | 'post';
  command: string;
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  ms: number;
  output: string;
}

export interface MigrateAcceptAnswer {
  /** the new primary's post hook, run as it took the volume over */
  post: HookResult | null;
}

/** A secondary's answer to a peer deletion: deleted, not there, or still held there (by what). */
export interface PeerDeleteAnswer {
  deleted: boolean;
  absent?: boolean;
  heldBy?: string[];
}

/** Every DR call a site makes to a paired peer. */
export interface DrPeer {
  /** the peer's name here (for messages) */
  readonly name: string;
  state(req: StateRequest, signal?: AbortSignal): Promise<RemoteState>;
  role(req: RoleRequest, signal?: AbortSignal): Promise<RoleAnswer>;
  beside(req: BesideRequest, signal?: AbortSignal): Promise<BesideAnswer>;
  tookOver(req: TookOverRequest, signal?: AbortSignal): Promise<TookOverAnswer>;
  changes(req: ChangesRequest, signal?: AbortSignal): Promise<SideChanges>;
  failoverNotice(req: FailoverNoticeRequest, signal?: AbortSignal): Promise<FailoverNoticeAnswer>;
  /** the new primary's half of a failback: it resyncs the asker and answers its update */
  failback(req: FailbackRequest, signal?: AbortSignal): Promise<UpdateResult>;
  takeover(req: TakeoverRequest, signal?: AbortSignal): Promise<TakeoverAnswer>;
  takeoverNotice(req: TakeoverNoticeRequest, signal?: AbortSignal): Promise<TakeoverNoticeAnswer>;
  repoint(req: RepointRequest, signal?: AbortSignal): Promise<RepointAnswer>;
  migrateAccept(req: MigrateAcceptRequest, signal?: AbortSignal): Promise<MigrateAcceptAnswer>;
  peerDelete(req: PeerDeleteRequest, signal?: AbortSignal): Promise<PeerDeleteAnswer>;
  /** end the connection (idempotent) */
  close(): void;
}

/** The DR operations, by method: the route is `/v1/dr/<op>`. */
export const DR_OPS = {
  state: 'state',
  role: 'role',
  beside: 'beside',
  tookOver: 'took-over',
  changes: 'changes',
  failoverNotice: 'failover-notice',
  failback: 'failback',
  takeover: 'takeover',
  takeoverNotice: 'takeover-notice',
  repoint: 'repoint',
  migrateAccept: 'migrate-accept',
  peerDelete: 'peer-delete',
} as const satisfies Record<Exclude<keyof DrPeer, 'name' | 'close'>, string>;

export type DrOp = (typeof DR_OPS)[keyof typeof DR_OPS];

// ---------------------------------------------------------------- checking answers

/** Reads one answer's fields, each checked, naming the call and the field when one is wrong. */
class Fields {
  readonly #what: string;
  readonly #o: Record<string, unknown>;

  constructor(v: unknown, what: string) {
    this.#what = what;
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw this.bad('', 'must be a JSON object');
    this.#o = v as Record<string, unknown>;
  }

  bad(k: string, msg: string): FerryError {
    return new FerryError('PROTOCOL', `${this.#what}${k ? `: ${k}` : ''} ${msg}; nothing of it was used`);
  }

  has(k: string): boolean {
    return this.#o[k] !== undefined;
  }

  raw(k: string): unknown {
    return this.#o[k];
  }

  keys(): string[] {
    return Object.keys(this.#o);
  }

  str(k: string, max = 4096): string {
    const v = this.#o[k];
    if (typeof v !== 'string' || v.length > max) throw this.bad(k, `must be a string of at most ${max} characters`);
    return v;
  }

  optStr(k: string, max = 4096): string | null {
    return this.#o[k] === null ? null : this.str(k, max);
  }

  /** a snapshot id (26 characters) */
  id(k: string): string {
    const v = this.str(k, 26);
    if (v.length !== 26) throw this.bad(k, 'must be a snapshot id');
    return v;
  }

  optId(k: string): string | null {
    return this.#o[k] === null ? null : this.id(k);
  }

  num(k: string): number {
    const v = this.#o[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw this.bad(k, 'must be a number, 0 or more');
    return v;
  }

  optNum(k: string): number | null {
    return this.#o[k] === null ? null : this.num(k);
  }

  bool(k: string): boolean {
    const v = this.#o[k];
    if (typeof v !== 'boolean') throw this.bad(k, 'must be true or false');
    return v;
  }

  list<T>(k: string, max: number, each: (v: unknown, what: string) => T): T[] {
    const v = this.#o[k];
    if (!Array.isArray(v) || v.length > max) throw this.bad(k, `must be a list of at most ${max}`);
    return v.map((x, i) => each(x, `${this.#what}: ${k}[${i}]`));
  }

  /** an object field, read by `read` */
  sub<T>(k: string, read: (f: Fields) => T): T {
    return read(new Fields(this.#o[k], `${this.#what}: ${k}`));
  }

  optSub<T>(k: string, read: (f: Fields) => T): T | null {
    return this.#o[k] === null ? null : this.sub(k, read);
  }
}

/** more than an answer's size limit (8 MiB, transport/client.ts) can carry: the list is bounded by that */
const MAX_SNAPSHOTS = 1_000_000;
const snapshotId = (v: unknown, what: string): string => {
  if (typeof v !== 'string' || v.length !== 26) throw new FerryError('PROTOCOL', `${what} must be a snapshot id; nothing of it was used`);
  return v;
};

function remoteState(f: Fields): RemoteState {
  return {
    volume: f.str('volume', 256),
    role: f.str('role', 64),
    failedOverFrom: f.optStr('failedOverFrom', 256),
    // An older ferry leaves it out: absent stays absent.
    ...(f.has('follows') ? { follows: f.optStr('follows', 256) } : {}),
    snapshots: f.list('snapshots', MAX_SNAPSHOTS, snapshotId),
    newest: f.optSub('newest', (n) => ({ id: n.id('id'), time: n.num('time') })),
    changedSinceBase: f.optSub('changedSinceBase', (c) => ({ bytes: c.num('bytes'), paths: c.num('paths') })),
  };
}

function sideChanges(f: Fields): SideChanges {
  return {
    site: f.str('site', 256),
    volume: f.str('volume', 256),
    role: f.str('role', 64),
    newest: f.optSub('newest', (n) => ({ id: n.id('id'), name: n.optStr('name', 256), time: n.num('time') })),
    // An older ferry answers no base, and one that is no snapshot id is not used: the caller counts from the one it recorded.
    ...(f.has('base') ? { base: f.str('base', 256) } : {}),
    hasBase: f.bool('hasBase'),
    added: f.num('added'),
    modified: f.num('modified'),
    removed: f.num('removed'),
    bytesAdded: f.num('bytesAdded'),
    bytesChanged: f.num('bytesChanged'),
    bytesRemoved: f.num('bytesRemoved'),
  };
}

function updateResult(f: Fields): UpdateResult {
  const warning = (v: unknown, what: string): UpdateWarning => {
    const w = new Fields(v, what);
    return { path: w.str('path', 65_536), message: w.str('message', 65_536), ...(w.has('problem') ? { problem: w.str('problem', 64) } : {}) };
  };
  const r: UpdateResult = {
    mirror: f.str('mirror', 512),
    snapshot: f.id('snapshot'),
    base: f.optId('base'),
    transfer: f.sub('transfer', (t) => ({
      snapshot: t.id('snapshot'),
      bytes: t.num('bytes'),
      rawBytes: t.num('rawBytes'),
      objects: t.num('objects'),
      seconds: t.num('seconds'),
      throughput: t.num('throughput'),
      at: t.num('at'),
      ...(t.has('phases') ? { phases: t.sub('phases', numbers) } : {}),
      ...(t.has('warnings') ? { warnings: t.num('warnings') } : {}),
      ...(t.has('early')
        ? { early: t.sub('early', (e) => ({ objects: e.num('objects'), bytes: e.num('bytes'), seconds: e.num('seconds'), ...(e.has('error') ? { error: e.sub('error', (x) => ({ code: x.str('code', 64), message: x.str('message') })) } : {}) })) }
        : {}),
    })),
    applied: f.bool('applied'),
    warnings: f.list('warnings', 1000, warning),
  };
  // the name of the snapshot that kept writes found in the replica (replica-writes-*)
  if (f.has('writesSnapshot')) r.writesSnapshot = f.str('writesSnapshot', 256);
  return r;
}

/** An object of numbers (timings): each field a number, 0 or more. */
function numbers(f: Fields): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of f.keys()) out[k] = f.num(k);
  return out;
}

function hookResult(f: Fields): HookResult {
  const phase = f.str('phase', 64);
  if (phase !== 'pre' && phase !== 'post') throw f.bad('phase', 'must be pre or post');
  return { phase, command: f.str('command', 65_536), exitCode: f.optNum('exitCode'), signal: f.optStr('signal', 64), timedOut: f.bool('timedOut'), ms: f.num('ms'), output: f.str('output', 65_536) };
}

const siteVolume = (t: Fields): { site: string; volume: string } => ({ site: t.str('site', 256), volume: t.str('volume', 256) });

const READERS: { [K in DrOp]: (f: Fields) => unknown } = {
  state: remoteState,
  role: (f): RoleAnswer => ({ volume: f.str('volume', 256), role: f.str('role', 64), follows: f.optStr('follows', 256) }),
  beside: (f): BesideAnswer => ({ volume: f.optStr('volume', 256) }),
  'took-over': (f): TookOverAnswer => ({ volume: f.optStr('volume', 256) }),
  changes: sideChanges,
  'failover-notice': (f): FailoverNoticeAnswer => ({
    mirror: f.str('mirror', 512),
    state: f.str('state', 64),
    ...(f.has('tookOverBy') ? { tookOverBy: f.sub('tookOverBy', siteVolume) } : {}),
    ...(f.has('alsoPrimary') ? { alsoPrimary: f.list('alsoPrimary', 64, (v, what) => siteVolume(new Fields(v, what))) } : {}),
  }),
  failback: updateResult,
  takeover: (f): TakeoverAnswer => {
    const oldPrimary = f.str('oldPrimary', 16);
    if (oldPrimary !== 'agreed' && oldPrimary !== 'unreachable' && oldPrimary !== 'already') throw f.bad('oldPrimary', 'must be agreed, unreachable or already');
    return { volume: f.str('volume', 256), common: f.optId('common'), applied: f.optId('applied'), oldPrimary };
  },
  'takeover-notice': (f): TakeoverNoticeAnswer => {
    if (f.raw('agreed') !== true) throw f.bad('agreed', 'must be true');
    return { agreed: true, role: f.str('role', 64) };
  },
  repoint: (f): RepointAnswer => ({ volume: f.str('volume', 256), source: f.str('source', 256), ...(f.has('already') ? { already: f.bool('already') } : {}), ...(f.has('returned') ? { returned: f.bool('returned') } : {}) }),
  'migrate-accept': (f): MigrateAcceptAnswer => ({ post: f.has('post') ? f.optSub('post', hookResult) : null }),
  'peer-delete': (f): PeerDeleteAnswer => ({
    deleted: f.bool('deleted'),
    ...(f.has('absent') ? { absent: f.bool('absent') } : {}),
    ...(f.has('heldBy') ? { heldBy: f.list('heldBy', 1000, (v, what) => { if (typeof v !== 'string' || v.length > 512) throw new FerryError('PROTOCOL', `${what} must be a string; nothing of it was used`); return v; }) } : {}),
  }),
};

/** The answer of `peer` to DR call `op`, checked field by field (PROTOCOL, naming the field, when one is wrong). */
export function parseDrAnswer(op: DrOp, v: unknown, peer: string): unknown {
  return READERS[op](new Fields(v, `${peer}'s answer to dr/${op}`));
}
