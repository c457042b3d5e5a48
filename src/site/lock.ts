// The site lock: one process at a time mutates a site (catalog + store).
// A lock file created with O_EXCL holds the owner's pid; a lock whose owner
// is gone (crashed, killed) is taken over. Readers do not lock: SQLite WAL
// gives them a consistent view.
import { closeSync, openSync, statSync, readFileSync, unlinkSync, writeSync, fsyncSync, constants } from 'node:fs';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import { FerryError, wrapIoError } from '../core/errors.ts';

export interface SiteLock {
  release(): void;
}

interface LockOwner {
  pid: number;
  host: string;
  command: string;
  since: number;
}

export function acquireSiteLock(path: string, command: string): SiteLock {
  for (let attempt = 0; attempt < 3; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw wrapIoError(err, `creating lock ${path}`, { writing: true });
      const owner = readOwner(path);
      const stale = owner ? owner.host === hostname() && !processAlive(owner.pid) : olderThan(path, 10_000);
      if (stale) {
        // The owner died without releasing: the lock is stale.
        try {
          unlinkSync(path);
        } catch {
          // someone else took it over first; retry
        }
        continue;
      }
      const who = owner ? `pid ${owner.pid} (${owner.command}, since ${new Date(owner.since).toISOString()})` : 'another process';
      throw new FerryError('SITE_LOCKED', `the site is busy: ${who} holds ${path}; wait for it to finish, or stop it`, { details: { owner } });
    }
    const owner: LockOwner = { pid: process.pid, host: hostname(), command, since: Date.now() };
    try {
      writeSync(fd, JSON.stringify(owner) + '\n');
      fsyncSync(fd);
    } catch (err) {
      // A full disk (or a failing one) at the lock's first write: the lock is not ours. An empty lock
      // file left here would turn every next command away for ten seconds, so it goes.
      closeSync(fd);
      try {
        unlinkSync(path);
      } catch {
        // already gone
      }
      throw lockWriteError(err, path);
    }
    closeSync(fd);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      process.off('exit', release);
      try {
        const cur = readOwner(path);
        if (cur && cur.pid === process.pid) unlinkSync(path);
      } catch {
        // already gone
      }
    };
    process.on('exit', release);
    return { release };
  }
  throw new FerryError('SITE_LOCKED', `could not take the site lock ${path}; retry`);
}

/** The error of a lock that could not be written: NO_SPACE on a full disk, saying what to free. */
function lockWriteError(err: unknown, path: string): FerryError {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new FerryError(
      'NO_SPACE',
      `cannot write the site lock ${path}: the disk is full (nothing was changed). Free space on the filesystem of ${dirname(path)} ` +
        '(ferry can delete nothing there until it can write this lock: move or remove other files on it, or grow it), then run the command again',
      { cause: err },
    );
  }
  return wrapIoError(err, `writing the site lock ${path}`, { writing: true });
}

function readOwner(path: string): LockOwner | undefined {
  try {
    const o = JSON.parse(readFileSync(path, 'utf8')) as LockOwner;
    return typeof o.pid === 'number' ? o : undefined;
  } catch {
    return undefined;
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** An unreadable lock file (its writer died between create and write) is stale once it is old. */
function olderThan(path: string, ms: number): boolean {
  try {
    return Date.now() - statSync(path).mtimeMs > ms;
  } catch {
    return true;
  }
}

/** Whether a live process holds the lock at `path` (for read-only views that must tell a dead job from a running one). */
export function lockHeld(path: string): boolean {
  const owner = readOwner(path);
  if (!owner) return false;
  return owner.host !== hostname() || processAlive(owner.pid);
}
