// Random trees for property tests: nested directories, files (empty, small,
// multi-chunk), symlinks (relative, absolute, dangling), hard links, names
// that are not UTF-8, assorted modes, owners and mtimes. Materialized on
// disk with real syscalls.
import fc from 'fast-check';
import { chmodSync, linkSync, lchownSync, lutimesSync, mkdirSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';

export type GenNode =
  | { kind: 'file'; name: number[]; size: number; seed: number; mode: number; owner: number; mtime: number }
  | { kind: 'dir'; name: number[]; children: GenNode[]; mode: number; mtime: number }
  | { kind: 'symlink'; name: number[]; target: string }
  | { kind: 'hardlink'; name: number[]; to: number };

const nameArb = fc.oneof(
  { weight: 4, arbitrary: fc.stringMatching(/^[a-z][a-z0-9._-]{0,11}$/).map((s) => [...Buffer.from(s)]) },
  // raw bytes: anything but '/' and NUL, not '.' or '..'
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 8 }).map((a) => [...a].map((b) => (b === 0 || b === 47 ? 0xe9 : b))).filter((b) => !(b.length === 1 && b[0] === 46) && !(b.length === 2 && b[0] === 46 && b[1] === 46)) },
);
const modeArb = fc.constantFrom(0o644, 0o600, 0o755, 0o700, 0o444, 0o640, 0o4755, 0o1777 & 0o1755);
const mtimeArb = fc.integer({ min: 946_684_800, max: 1_900_000_000 }).chain((s) => fc.integer({ min: 0, max: 999_999 }).map((us) => s + us / 1e6));
const sizeArb = fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 0, max: 4096 }) }, { weight: 1, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 200_000, max: 700_000 }) });

const leafArb: fc.Arbitrary<GenNode> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('file' as const), name: nameArb, size: sizeArb, seed: fc.integer(), mode: modeArb, owner: fc.integer({ min: 0, max: 3 }), mtime: mtimeArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('symlink' as const), name: nameArb, target: fc.constantFrom('../x', '/etc/passwd', 'dangling', 'a/b/c', '.') }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('hardlink' as const), name: nameArb, to: fc.nat() }) },
);

export const treeArb: fc.Arbitrary<GenNode[]> = fc.letrec<{ node: GenNode; dir: GenNode; children: GenNode[] }>((tie) => ({
  node: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leafArb, tie('dir')),
  dir: fc.record({ kind: fc.constant('dir' as const), name: nameArb, children: tie('children'), mode: fc.constantFrom(0o755, 0o700, 0o750), mtime: mtimeArb }),
  children: fc.uniqueArray(tie('node'), { maxLength: 6, selector: (n) => Buffer.from(n.name).toString('latin1') }),
})).children;

export function fillBytes(size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  let x = seed | 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    // half the files text-like, so compression is exercised too
    b[i] = seed & 1 ? 97 + ((x >>> 0) % 8) : x & 0xff;
  }
  return b;
}

/** Write the generated tree under `root` (which must exist). */
export function materialize(root: string, nodes: GenNode[]): void {
  const files: Buffer[] = [];
  const links: Array<{ path: Buffer; to: number }> = [];
  const dirs: Array<{ path: Buffer; mode: number; mtime: number }> = [];
  const walk = (dir: Buffer, list: GenNode[]) => {
    for (const n of list) {
      const p = Buffer.concat([dir, Buffer.from('/'), Buffer.from(n.name)]);
      switch (n.kind) {
        case 'file':
          writeFileSync(p, fillBytes(n.size, n.seed));
          lchownSync(p, n.owner * 1000, n.owner * 1000 + 1);
          chmodSync(p, n.mode);
          utimesSync(p, n.mtime, n.mtime);
          files.push(p);
          break;
        case 'dir':
          mkdirSync(p);
          walk(p, n.children);
          dirs.push({ path: p, mode: n.mode, mtime: n.mtime });
          break;
        case 'symlink':
          symlinkSync(n.target, p);
          lutimesSync(p, 1_600_000_000, 1_600_000_000);
          break;
        case 'hardlink':
          links.push({ path: p, to: n.to });
          break;
      }
    }
  };
  walk(Buffer.from(root), nodes);
  for (const l of links) {
    if (files.length === 0) writeFileSync(l.path, 'lonely');
    else linkSync(files[l.to % files.length], l.path);
  }
  // Directory metadata last: creating children changes a directory's mtime.
  for (const d of dirs) {
    chmodSync(d.path, d.mode);
    utimesSync(d.path, d.mtime, d.mtime);
  }
}
