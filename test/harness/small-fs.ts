// A small filesystem for the full-disk tests: a tmpfs of a few MiB mounted
// over a directory (a site's home, its store, its replica root), grown later
// to free space. Needs mount (root in a sandbox that allows it): `tryMount`
// says why not, and the test skips with that reason.
import { execFileSync } from 'node:child_process';

/** Mount a tmpfs of `sizeMiB` at `dir`; returns why not if this sandbox does not allow it. */
export function tryMount(dir: string, sizeMiB: number): string | undefined {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m,mode=0700`, 'tmpfs', dir], { stdio: 'pipe' });
    return undefined;
  } catch (err) {
    return `cannot mount a tmpfs here (${String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim()})`;
  }
}

export function unmount(dir: string): void {
  try {
    execFileSync('umount', [dir], { stdio: 'pipe' });
  } catch {
    execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
  }
}

/** Grow (or shrink) a mounted tmpfs: freeing space without touching what is on it. */
export function remount(dir: string, sizeMiB: number): void {
  execFileSync('mount', ['-o', `remount,size=${sizeMiB}m`, dir], { stdio: 'pipe' });
}
