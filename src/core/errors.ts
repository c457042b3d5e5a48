// One registry of every error ferry can report. Each code has a kind that
// retry logic reads (core/backoff.ts: a `transient` error is retried after a
// backoff, any other waits at least a period), an exit code for the CLI,
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
  VOLUME_IN_USE: { kind: 'conflict', exit: 4, doc: 'The volume still has mirrors or links (remove those first: the message names the commands) or snapshots (`--force` removes them with the volume).' },
  MEMBER_INVALID: { kind: 'usage', exit: 2, doc: 'A member (or link) path is missing, a symlink, of the wrong type, or overlaps another member, a link copy, the site home, or the replica root (where peers\' replicas are made).' },
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
  IO: { kind: 'permanent', exit: 7, doc: 'A file could not be read or written (permissions, an immutable file, I/O error); the message names the operation (read, write, rename, unlink, chmod, ...) and the path that failed, and what to do (e.g. `chattr -i PATH` for a file made immutable).' },
  TOOL_MISSING: { kind: 'permanent', exit: 7, doc: 'A command ferry needs is not installed at this site: getfattr and setfattr (Debian/Ubuntu package `attr`) read and set extended attributes and POSIX ACLs; install it and run the command again.' },
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
  REPLICA_WRITTEN: { kind: 'conflict', exit: 4, doc: 'Someone wrote into the replica since the last apply; the writes were kept in a snapshot there; the message ends with the forced command that overwrites them, as the mirror\'s state accepts it (`ferry mirror update VOL --to SITE --force`, or `initialize` while the mirror has no base).' },
  REPLICA_PATH_INVALID: { kind: 'permanent', exit: 4, doc: "The destination cannot make a new replica where its settings put it: its replica root lies inside a member of one of its volumes (or overlaps the home or a link), or the replica's directory exists already, holding something (left from a replica removed there, or another volume's member; one that holds no data, as a crash before the replica was recorded leaves it, is used again); nothing was created, and nothing there is deleted. The message names the paths and the commands: at that site, set `site.replicaRoot` outside every member (`ferry config apply`), move the directory away or bind it as the secondary (`ferry volume create NAME --member M=PATH --secondary`), or mirror into another volume name; then the command that runs the mirror again at the source." },
  REPLICA_MISMATCH: { kind: 'corrupt', exit: 5, doc: 'After an apply the replica does not match the snapshot (someone wrote into it meanwhile); it stays marked inconsistent, and the next update (plain or --force) keeps what differs in a replica-writes-* snapshot and finishes the apply.' },
  FAILED_OVER: { kind: 'conflict', exit: 4, doc: 'The destination took over this volume (failover): updates stop; run `ferry failback VOLUME` at the old primary to resync from the new one.' },
  SPLIT_BRAIN: { kind: 'conflict', exit: 4, doc: 'Both sites hold the primary role for a volume and both may have written: ferry will not pick a winner; a failback ends it, run at a site that has a mirror to the other (the old primary after a failover): that site yields, its writes kept in a snapshot. A site that took over by failover yields by removing the volume and being mirrored anew (docs/dr.md, "Split brain").' },
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

/** Syscalls, as Node names them in its errors, that change the file system, and those that only read it. */
const CHANGES = new Set(['rename', 'unlink', 'rmdir', 'rm', 'mkdir', 'mkdtemp', 'link', 'symlink', 'chmod', 'fchmod', 'lchmod', 'chown', 'fchown', 'lchown', 'utime', 'futime', 'lutime', 'ftruncate', 'truncate', 'write', 'copyfile', 'fsync', 'fdatasync']);
const READS = new Set(['read', 'scandir', 'opendir', 'readdir', 'readlink', 'lstat', 'stat', 'fstat', 'access', 'realpath']);

function dirOf(path: string): string {
  const i = path.replace(/\/+$/, '').lastIndexOf('/');
  return i > 0 ? path.slice(0, i) : '/';
}

/**
 * What to say of EACCES or EPERM: which operation (the syscall) on which path was refused, and what
 * to do. EPERM where permissions would allow it (root, say) is usually an immutable or append-only
 * file or directory (chattr +i / +a); EACCES is the permission bits. `writing`: an `open` for writing
 * (an open's errno does not say which).
 */
function refusal(e: NodeJS.ErrnoException & { dest?: string }, what: string, writing: boolean | undefined): string {
  const call = e.syscall;
  const path = e.path === undefined ? undefined : String(e.path);
  const dest = e.dest === undefined ? undefined : String(e.dest);
  const on = call ? `${call}${path ? ` of ${path}` : ''}${dest ? ` to ${dest}` : ''}` : path ? `access to ${path}` : 'the operation';
  const changes = (call !== undefined && CHANGES.has(call)) || (call === 'open' && writing === true);
  const reads = (call !== undefined && READS.has(call)) || (call === 'open' && writing === false);
  // the entry a change is refused on: a rename's or link's destination, else the path
  const target = dest ?? path;
  if (e.code === 'EPERM') {
    const head = `${what}: ${on} failed (EPERM: operation not permitted)`;
    if (reads || !target) return `${head}: ferry's user is not allowed this; run ferry as the owner of the file or as root`;
    const flags =
      call === 'rm'
        ? `something below ${target} may be immutable or append-only: \`lsattr -R ${target}\` shows which (flag i or a); clear it with \`chattr -i FILE\` or \`chattr -a FILE\``
        : `${target} or its directory may be immutable or append-only: \`lsattr -d ${target} ${dirOf(target)}\` shows it (flag i or a); clear it with \`chattr -i ${target}\` (or \`chattr -a\`, on the directory too if it is flagged)`;
    const owner = /^(f|l)?(chmod|chown|utime)$/.test(call ?? '') ? '; otherwise only its owner or root may change its metadata: run ferry as root' : '';
    return `${head}: ${flags}${owner}`;
  }
  const head = `${what}: ${on} failed (EACCES: permission denied)`;
  if (reads) return `${head}: run ferry as a user that can read it, or give ferry's user read permission on ${target ?? 'it'} (and search permission on the directories above)`;
  if (changes && target) return `${head}: ferry's user may not write in ${dirOf(target)}: give it write and search permission there, or run ferry as a user that can`;
  return `${head}: ferry's user may not ${writing === undefined ? 'read or write' : 'write'} ${target ?? 'it'}: check its permissions and those of its directories, or run ferry as a user that can`;
}

/**
 * Turn a Node system error met while doing `what` into a FerryError that says
 * what failed and what to do (a refused operation names the syscall and its
 * path). Keeps FerryErrors as they are. `writing`: `what` opens a file for
 * writing (an open's error does not say whether it was for reading).
 */
/**
 * Any error as the FerryError a command or a reply reports, at the boundaries (the CLI's answer, the
 * daemon's API replies): a FerryError as it is; a full disk (ENOSPC, EDQUOT) that came this far
 * unwrapped is still NO_SPACE, never INTERNAL; anything else is INTERNAL, a bug (with its stack, or
 * its message only where `brief`).
 */
export function asFerryError(err: unknown, o: { brief?: boolean; prefix?: string } = {}): FerryError {
  if (err instanceof FerryError) return err;
  const e = err as NodeJS.ErrnoException;
  if (e?.code === 'ENOSPC' || e?.code === 'EDQUOT') return wrapIoError(err, `${e.syscall ?? 'a write'}${e.path ? ` ${e.path}` : ''}`);
  const text = o.brief ? ((err as Error)?.message ?? String(err)) : ((err as Error)?.stack ?? String(err));
  return new FerryError('INTERNAL', `${o.prefix ?? ''}${text}`, { cause: err });
}

export function wrapIoError(err: unknown, what: string, o: { writing?: boolean } = {}): FerryError {
  if (err instanceof FerryError) return err;
  const e = err as NodeJS.ErrnoException;
  switch (e?.code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return new FerryError('NO_SPACE', `${what}: the disk is full; free space and run the command again`, { cause: err });
    case 'EACCES':
    case 'EPERM':
      return new FerryError('IO', refusal(e, what, o.writing), { cause: err });
    case 'ENOENT':
      return new FerryError('IO', `${what}: no such file or directory`, { cause: err });
    default:
      return new FerryError('IO', `${what}: ${e?.message ?? String(err)}`, { cause: err });
  }
}
