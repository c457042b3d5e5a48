// Checks that a replica equals its source after a benchmarked run: content
// with diff -r (trees) or cmp (images), and metadata with a walk. A content
// difference invalidates the run's numbers; the reports say so at the top.

import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, lstatSync, openSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';

export interface Verification {
  ok: boolean; // content identical
  detail: string;
  metadataDiffs: number;
  metadataExamples: string[];
  seconds: number;
}

/** diff -r for content, then a walk comparing type, mode, size, mtime (ms) and symlink targets. */
export function verifyTree(src: string, dst: string, log: string): Verification {
  const started = performance.now();
  const out = openSync(`${log}.diff`, 'w');
  let r;
  try {
    r = spawnSync('diff', ['-r', '--no-dereference', src, dst], { stdio: ['ignore', out, out] });
  } finally {
    closeSync(out);
  }
  const ok = r.status === 0;
  const detail = ok ? 'diff -r: identical' : `diff -r exit ${r.status}: ${readFileSync(`${log}.diff`, 'utf8').split('\n').slice(0, 3).join(' | ').slice(0, 300)}`;
  const examples: string[] = [];
  let diffs = 0;
  const note = (what: string): void => {
    diffs++;
    if (examples.length < 5) examples.push(what);
  };
  const visit = (rel: string): void => {
    for (const name of readdirSync(join(src, rel)).sort()) {
      const path = rel ? `${rel}/${name}` : name;
      const a = lstatSync(join(src, path));
      let b;
      try {
        b = lstatSync(join(dst, path));
      } catch {
        continue; // missing: diff -r says so
      }
      const type = (s: typeof a): string => (s.isDirectory() ? 'dir' : s.isSymbolicLink() ? 'symlink' : s.isFile() ? 'file' : 'other');
      if (type(a) !== type(b)) {
        note(`${path}: ${type(a)} vs ${type(b)}`);
        continue;
      }
      if ((a.mode & 0o7777) !== (b.mode & 0o7777)) note(`${path}: mode ${(a.mode & 0o7777).toString(8)} vs ${(b.mode & 0o7777).toString(8)}`);
      if (!a.isSymbolicLink() && Math.floor(a.mtimeMs) !== Math.floor(b.mtimeMs)) note(`${path}: mtime ${a.mtime.toISOString()} vs ${b.mtime.toISOString()}`);
      if (a.isFile() && a.size !== b.size) note(`${path}: size ${a.size} vs ${b.size}`);
      if (a.isSymbolicLink() && readlinkSync(join(src, path)) !== readlinkSync(join(dst, path))) note(`${path}: symlink target differs`);
      if (a.isDirectory()) visit(path);
    }
  };
  visit('');
  return { ok, detail, metadataDiffs: diffs, metadataExamples: examples, seconds: (performance.now() - started) / 1000 };
}

export function verifyImage(src: string, dst: string): Verification {
  const started = performance.now();
  const r = spawnSync('cmp', [src, dst], { encoding: 'utf8' });
  const ok = r.status === 0;
  let diffs = 0;
  const examples: string[] = [];
  if (existsSync(dst)) {
    const a = statSync(src);
    const b = statSync(dst);
    if (Math.floor(a.mtimeMs) !== Math.floor(b.mtimeMs)) {
      diffs++;
      examples.push(`mtime ${a.mtime.toISOString()} vs ${b.mtime.toISOString()}`);
    }
  }
  return { ok, detail: ok ? 'cmp: identical' : `cmp exit ${r.status}: ${(r.stdout + r.stderr).trim().slice(0, 300)}`, metadataDiffs: diffs, metadataExamples: examples, seconds: (performance.now() - started) / 1000 };
}
