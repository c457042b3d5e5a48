// One registry of every error ferry can report. Each code has a kind that
// retry logic reads (only `transient` is retried), an exit code for the CLI,
// and a message that tells the operator what to do next. Errors are plain
// data (code, kind, message, details) so they survive JSON and the wire.
// This module imports nothing of ferry's.

export type ErrorKind = 'permanent' | 'transient' | 'conflict' | 'usage' | 'corrupt';

interface ErrorSpec {
  kind: ErrorKind;
  /** process exit code the CLI uses */
  exit: number;
  /** one line for docs/errors.md */
  doc: string;
}

// Exit codes: 1 generic failure, 2 usage, 3 not found, 4 conflict/refused,
// 5 corrupt data, 6 transient (retry later), 7 environment (disk full, permissions).
export const ERRORS = {
  USAGE: { kind: 'usage', exit: 2, doc: 'The command line is wrong; the message says which argument.' },
  HOME_MISSING: { kind: 'usage', exit: 2, doc: 'No site at the home directory; run `ferry init` or pass --home.' },
  HOME_EXISTS: { kind: 'conflict', exit: 4, doc: '`ferry init` found a site already at that home.' },
  FORMAT_VERSION: { kind: 'permanent', exit: 5, doc: 'A catalog, pack or object has a format version this ferry cannot read.' },
  CATALOG_CORRUPT: { kind: 'corrupt', exit: 5, doc: 'The catalog database cannot be read.' },
  SITE_LOCKED: { kind: 'transient', exit: 6, doc: 'Another ferry process holds the site lock; wait for it or stop it.' },
  VOLUME_NOT_FOUND: { kind: 'usage', exit: 3, doc: 'No volume of that name at this site.' },
  VOLUME_EXISTS: { kind: 'conflict', exit: 4, doc: 'A volume of that name already exists.' },
  VOLUME_IN_USE: { kind: 'conflict', exit: 4, doc: 'The volume still has snapshots or mirrors; remove them or use --force.' },
  MEMBER_INVALID: { kind: 'usage', exit: 2, doc: 'A member path is missing, a symlink, of the wrong type, or overlaps another member.' },
  SNAPSHOT_NOT_FOUND: { kind: 'usage', exit: 3, doc: 'No snapshot of that id or name in the volume.' },
  SNAPSHOT_EXISTS: { kind: 'conflict', exit: 4, doc: 'A snapshot of that name already exists in the volume.' },
  SNAPSHOT_HELD: { kind: 'conflict', exit: 4, doc: 'The snapshot is held (a mirror base or a peer snapshot) and cannot be deleted.' },
  HOOK_FAILED: { kind: 'permanent', exit: 1, doc: 'A pre hook failed or timed out; the snapshot was not taken.' },
  OBJECT_NOT_FOUND: { kind: 'corrupt', exit: 5, doc: 'An object a snapshot needs is missing from the store.' },
  OBJECT_CORRUPT: { kind: 'corrupt', exit: 5, doc: 'An object read from the store does not match its hash or format.' },
  PACK_CORRUPT: { kind: 'corrupt', exit: 5, doc: 'A pack file is truncated or damaged.' },
  VERIFY_FAILED: { kind: 'corrupt', exit: 5, doc: '`ferry verify` found damaged objects; the report names the snapshots and paths.' },
  TARGET_NOT_EMPTY: { kind: 'conflict', exit: 4, doc: 'The restore target is not empty; choose another or pass --force.' },
  PATH_NOT_IN_SNAPSHOT: { kind: 'usage', exit: 3, doc: 'The --path given to restore is not in the snapshot.' },
  NO_SPACE: { kind: 'permanent', exit: 7, doc: 'The disk is full; free space and retry: nothing was half-written.' },
  IO: { kind: 'permanent', exit: 7, doc: 'A file could not be read or written (permissions, I/O error).' },
  CONFIG_INVALID: { kind: 'usage', exit: 2, doc: 'A setting (retention, hook, schedule) or the site file is malformed; for a site file the message lists every error with its line and a hint, and nothing was applied.' },
  IDENTITY_INVALID: { kind: 'corrupt', exit: 5, doc: "The site's key.pem or cert.pem is missing, unreadable, corrupt, or the two do not match; restore both from backup." },
  IDENTITY_EXISTS: { kind: 'conflict', exit: 4, doc: 'A site identity (key.pem or cert.pem) already exists there; ferry never overwrites one.' },
  PEER_UNTRUSTED: { kind: 'permanent', exit: 4, doc: 'A peer presented a site id that is not paired; pair it with `ferry site add NAME URL --id ID` if you trust it.' },
  PROTOCOL: { kind: 'permanent', exit: 5, doc: 'A peer sent a malformed or out-of-bounds message; nothing of it was used.' },
  TRANSFER_INTERRUPTED: { kind: 'transient', exit: 6, doc: 'A transfer was cut (connection lost, peer stopped); the next attempt resumes without resending what arrived.' },
  PEER_UNREACHABLE: { kind: 'transient', exit: 6, doc: 'The peer site cannot be reached; check that `ferry serve` runs there and the URL is right. Retried with backoff.' },
  STORE_BUSY: { kind: 'transient', exit: 6, doc: 'Garbage collection was asked for while a capture or an incoming transfer is writing objects no snapshot names yet; run it again once they finish (collections ferry starts itself wait for them).' },
  PEER_BUSY: { kind: 'transient', exit: 6, doc: 'The peer refused a request because the data its streams hold (per connection, or for all peers) would exceed its memory budget; ferry retries it once its other requests finish.' },
  PEER_NOT_FOUND: { kind: 'usage', exit: 3, doc: 'No paired site of that name; `ferry site list` shows them, `ferry site add` pairs one.' },
  PEER_EXISTS: { kind: 'conflict', exit: 4, doc: 'A site of that name or id is already paired.' },
  NOT_AUTHORIZED: { kind: 'permanent', exit: 4, doc: 'The peer may not do this: it may only write into volumes this site holds as its secondary.' },
  MIRROR_NOT_FOUND: { kind: 'usage', exit: 3, doc: 'No mirror of that volume to that site.' },
  MIRROR_EXISTS: { kind: 'conflict', exit: 4, doc: 'That volume already has a mirror to that site.' },
  MIRROR_STATE: { kind: 'conflict', exit: 4, doc: 'The mirror is not in a state that allows this (e.g. update before initialize, or within min delay without --force).' },
  REPLICA_WRITTEN: { kind: 'conflict', exit: 4, doc: 'Someone wrote into the replica since the last apply; the writes were kept in a snapshot; update with --force to overwrite them.' },
  REPLICA_MISMATCH: { kind: 'corrupt', exit: 5, doc: 'After an apply the replica does not match the snapshot; it is marked inconsistent and the next update re-applies.' },
  FAILED_OVER: { kind: 'conflict', exit: 4, doc: 'The destination took over this volume (failover): updates stop; run `ferry failback VOLUME` at the old primary to resync from the new one.' },
  SPLIT_BRAIN: { kind: 'conflict', exit: 4, doc: 'Both sites hold the primary role for a volume and both may have written: ferry will not pick a winner; run `ferry failback` at the site that should yield (its writes are kept in a snapshot).' },
  NEEDS_FULL_SYNC: { kind: 'conflict', exit: 4, doc: 'The two sites share no base snapshot any more: only a full sync can bring them together; rerun with --full.' },
  DAEMON_UNREACHABLE: { kind: 'transient', exit: 6, doc: 'The local daemon holds the site but does not answer on its socket; check `ferry serve`.' },
  INTERNAL: { kind: 'permanent', exit: 1, doc: 'A bug in ferry; the message and cause tell where.' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

export interface FerryErrorJSON {
  code: ErrorCode;
  kind: ErrorKind;
  message: string;
  details?: Record<string, unknown>;
}

export class FerryError extends Error {
  readonly code: ErrorCode;
  readonly kind: ErrorKind;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'FerryError';
    this.code = code;
    this.kind = ERRORS[code].kind;
    this.details = options.details;
  }

  get exitCode(): number {
    return ERRORS[this.code].exit;
  }

  toJSON(): FerryErrorJSON {
    const out: FerryErrorJSON = { code: this.code, kind: this.kind, message: this.message };
    if (this.details) out.details = this.details;
    return out;
  }
}

/** Whether `code` is one of this ferry's error codes (its own keys: not '__proto__' or 'toString'). */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERRORS, code);
}

export function isFerryError(err: unknown, code?: ErrorCode): err is FerryError {
  return err instanceof FerryError && (code === undefined || err.code === code);
}

/**
 * Turn a Node system error met while doing `what` into a FerryError that says
 * what to do. Keeps FerryErrors as they are.
 */
export function wrapIoError(err: unknown, what: string): FerryError {
  if (err instanceof FerryError) return err;
  const e = err as NodeJS.ErrnoException;
  switch (e?.code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return new FerryError('NO_SPACE', `${what}: the disk is full; free space and run the command again`, { cause: err });
    case 'EACCES':
    case 'EPERM':
      return new FerryError('IO', `${what}: permission denied; run ferry as a user that can read it`, { cause: err });
    case 'ENOENT':
      return new FerryError('IO', `${what}: no such file or directory`, { cause: err });
    default:
      return new FerryError('IO', `${what}: ${e?.message ?? String(err)}`, { cause: err });
  }
}
