// Volume data for the integration tests: random files, changes of a known
// size, and byte-exact copies to compare a restore or a replica with.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const MiB = 1 << 20;
export const KiB = 1 << 10;

/**
 * A volume's data: `files` incompressible random files of `fileSize` bytes
 * (big-0..), and a small `etc/` directory of text files. Returns its size in bytes.
 */
export function writeVolumeData(dir: string, files: number, fileSize: number): number {
  mkdirSync(join(dir, 'etc'), { recursive: true });
  let total = 0;
  for (let i = 0; i < files; i++) {
    writeFileSync(join(dir, `big-${i}.bin`), randomBytes(fileSize));
    total += fileSize;
  }
  for (let i = 0; i < 4; i++) {
    const text = `setting-${i} = ${i}\n`.repeat(50);
    writeFileSync(join(dir, 'etc', `app-${i}.conf`), text);
    total += text.length;
  }
  return total;
}

/** Write `bytes` of new random data as one new file (what a change of about that size costs on the wire). */
export function writeChange(dir: string, name: string, bytes: number): void {
  mkdirSync(join(dir, ...name.split('/').slice(0, -1)), { recursive: true });
  writeFileSync(join(dir, name), randomBytes(bytes));
}

/** A byte-exact copy (content, modes, owners, mtimes) of a tree, to compare with later. */
export function copyTree(src: string, dst: string): string {
  execFileSync('cp', ['-a', src, dst]);
  return dst;
}
