// Shared test helpers: temporary directories, running the real CLI, and an
// exact comparison of two trees (content and metadata).
import { execFile } from 'node:child_process';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { closeSync, lstatSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

export const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
export const FERRY_BIN = join(ROOT, 'bin', 'ferry');
export const NODE_BIN = process.execPath;

/** Unsigned LEB128, as ferry's formats write lengths and counts. */
export function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n % 128) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}

export function tempDir(prefix = 'ferry-test-'): { path: string; cleanup: () => void } {
  const path = mkdtempSync(join(process.env.FERRY_TEST_TMP ?? tmpdir(), prefix));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  json?: any;
}

/** Run ./bin/ferry with args; never throws on a non-zero exit. */
export function runFerry(args: string[], opts: { home?: string; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<CliResult> {
  const full = opts.home ? [...args, '--home', opts.home] : args;
  return new Promise((resolve) => {
    execFile(FERRY_BIN, full, { env: { ...process.env, FERRY_NO_PROGRESS: '1', ...opts.env }, timeout: opts.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? ((err as NodeJS.ErrnoException & { code?: unknown }).code as unknown as number) ?? 1 : 0;
      let json: unknown;
      if (full.includes('--json')) {
        try {
          json = JSON.parse(stdout);
        } catch {
          json = undefined;
        }
      }
      resolve({ code: typeof code === 'number' ? code : 1, stdout, stderr, json });
    });
  });
}

export interface EntryInfo {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtimeUs: bigint;
  size: number;
  content?: string; // sha of content for files, target for symlinks
  ino?: bigint;
}

const SLASH = Buffer.from('/');

/** Describe a tree: member-relative path (latin1) -> entry info. Hard links show as the same `link` group. */
export function describeTree(root: string, opts: { mtimes?: boolean; owners?: boolean } = {}): Map<string, EntryInfo> {
  const out = new Map<string, EntryInfo>();
  const walk = (abs: Buffer, rel: string) => {
    const names = readdirSync(abs, { encoding: 'buffer' }).sort(Buffer.compare);
    for (const n of names) {
      const p = Buffer.concat([abs, SLASH, n]);
      const r = rel ? `${rel}/${n.toString('latin1')}` : n.toString('latin1');
      const st = lstatSync(p, { bigint: true });
      const info: EntryInfo = {
        type: st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : st.isFIFO() ? 'fifo' : 'other',
        mode: Number(st.mode & 0o7777n),
        uid: opts.owners === false ? 0 : Number(st.uid),
        gid: opts.owners === false ? 0 : Number(st.gid),
        mtimeUs: opts.mtimes === false || st.isSymbolicLink() ? 0n : st.mtimeNs / 1000n,
        size: st.isSymbolicLink() ? 0 : st.isDirectory() ? 0 : Number(st.size),
      };
      if (info.type === 'symlink') {
        info.content = readlinkSync(p, { encoding: 'buffer' }).toString('latin1');
        info.mode = 0;
      }
      if (info.type === 'file') {
        info.content = readFileSync(p).toString('base64');
        if (st.nlink > 1n) info.ino = st.ino;
      }
      out.set(r, info);
      if (info.type === 'dir') walk(p, r);
    }
  };
  walk(Buffer.from(root), '');
  return out;
}

/** Assert two trees are equal in content and metadata (and hard-link structure). */
export function assertTreesEqual(actual: string, expected: string, opts: { mtimes?: boolean; owners?: boolean } = {}): void {
  const a = describeTree(actual, opts);
  const e = describeTree(expected, opts);
  const strip = (m: Map<string, EntryInfo>) => {
    // Hard links: compare the grouping, not inode numbers.
    const groups = new Map<bigint, string>();
    const out: Record<string, unknown> = {};
    for (const [k, v] of m) {
      const { ino, ...rest } = v;
      let link: string | undefined;
      if (ino !== undefined) {
        link = groups.get(ino);
        if (!link) groups.set(ino, (link = k));
      }
      out[k] = { ...rest, mtimeUs: undefined, ...(link ? { link } : {}) };
    }
    return out;
  };
  assert.deepEqual(strip(a), strip(e));
  // Node sets times through a double of seconds: exact to about a microsecond, so allow 2 us.
  for (const [k, v] of e) {
    const d = a.get(k)!.mtimeUs - v.mtimeUs;
    assert.ok(d <= 2n && d >= -2n, `mtime of ${k} differs by ${d} us`);
  }
}

/** Write `size` random (incompressible) bytes to `path`, in 4 MiB pieces so memory stays small. */
/** A file of `size` random bytes; with `seed`, the same bytes on every run (seededBytes). */
export function writeRandomFile(path: string, size: number, seed?: string): void {
  const stream = seed === undefined ? null : seededStream(seed);
  const fd = openSync(path, 'w');
  try {
    for (let left = size; left > 0; left -= 4 << 20) {
      const n = Math.min(left, 4 << 20);
      writeSync(fd, stream ? stream.update(Buffer.alloc(n)) : randomBytes(n));
    }
  } finally {
    closeSync(fd);
  }
}

function seededStream(seed: string) {
  const key = createHash('sha256').update(seed).digest();
  return createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
}

/**
 * `size` bytes that look random (incompressible) but are the same on every run
 * for the same seed: for tests whose outcome depends on where content-defined
 * chunk boundaries fall, which truly random data would move from run to run.
 */
export function seededBytes(size: number, seed: string): Buffer {
  return seededStream(seed).update(Buffer.alloc(size));
}
