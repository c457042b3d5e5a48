// The apply's file-system helpers: paths, its temporaries' names, removal,
// and the check that a hard link's target is a file reached through real
// directories only (apply.ts). Owns nothing; must never follow a symlink
// where a member-relative path is resolved.
import { lstatSync, rmSync } from 'node:fs';
import { wrapIoError } from '../core/errors.ts';
import { hashBytes } from '../core/ids.ts';
import { pathToText } from '../snapshot/path-text.ts';

const SLASH = Buffer.from('/');
export const join = (a: Buffer, b: Buffer) => Buffer.concat([a, SLASH, b]);

export function tmpName(name: Buffer): Buffer {
  return Buffer.from(`.ferry-tmp.${hashBytes(name).slice(0, 24)}`);
}

const TMP_NAME = /^\.ferry-tmp\.[0-9a-f]{24}$/;

/** Is `name` one of the apply's temporaries (an entry written beside its target, renamed into place)? */
export function isApplyTemporary(name: Buffer): boolean {
  return name.length === 35 && TMP_NAME.test(name.toString('latin1'));
}

export function lstatOrNull(p: Buffer) {
  try {
    return lstatSync(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw wrapIoError(err, `inspecting ${p}`);
  }
}

export function removePath(p: Buffer): void {
  try {
    rmSync(p, { recursive: true, force: true });
  } catch (err) {
    throw wrapIoError(err, `removing ${p}`);
  }
}

/** null when the member-relative `target` is a regular file reached through real directories only (never a symlink). */
export function linkTargetProblem(root: Buffer, target: Buffer): string | null {
  let p = root;
  let start = 0;
  for (;;) {
    const slash = target.indexOf(0x2f, start);
    const comp = target.subarray(start, slash === -1 ? target.length : slash);
    p = join(p, comp);
    const st = lstatOrNull(p);
    if (slash === -1) return st?.isFile() ? null : st ? 'it is not a regular file in the replica' : 'it does not exist in the replica';
    if (!st?.isDirectory()) return `${pathToText(target.subarray(0, slash))} is not a directory in the replica${st?.isSymbolicLink() ? ' (a symlink)' : ''}`;
    start = slash + 1;
  }
}
