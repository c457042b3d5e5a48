// Shared test helpers: temporary directories, running the real CLI, and an
// exact comparison of two trees (content and metadata).
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { chmodSync, closeSync, ftruncateSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
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
export function runFerry(args: string[], opts: { home?: string; env?: Record<string, string>; timeoutMs?: number; prefix?: string[] } = {}): Promise<CliResult> {
  const full = opts.home ? [...args, '--home', opts.home] : args;
  // Under a wrapper command (e.g. setpriv ...), when given: the wrapper runs the CLI.
  const [bin, argv] = opts.prefix ? [opts.prefix[0], [...opts.prefix.slice(1), FERRY_BIN, ...full]] : [FERRY_BIN, full];
  return new Promise((resolve) => {
    execFile(bin, argv, { env: { ...process.env, FERRY_NO_PROGRESS: '1', ...opts.env }, timeout: opts.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
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

/** Write `data` at `offset` of the existing file `path`, in place. */
export function writeAt(path: string, offset: number, data: Buffer): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, data, 0, data.length, offset);
  } finally {
    closeSync(fd);
  }
}

/** A new sparse file of `size` bytes: holes except for `pieces` ([offset, bytes]). */
export function sparseFile(path: string, size: number, pieces: Array<[offset: number, data: Buffer]>): void {
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, size);
    for (const [offset, data] of pieces) writeSync(fd, data, 0, data.length, offset);
  } finally {
    closeSync(fd);
  }
}

/** The attribute names ferry keeps (xattrs.ts), as a getfattr -m pattern. */
const KEPT_XATTRS = '^(user\\.|trusted\\.|security\\.capability$|system\\.posix_acl_(access|default)$)';

/** Whether getfattr, setfattr, getfacl and setfacl are here (packages attr and acl). */
export function aclToolsPresent(): boolean {
  return ['getfattr', 'setfattr', 'getfacl', 'setfacl'].every((t) => spawnSync(t, ['--version'], { stdio: 'ignore' }).status === 0);
}

export const ACL_TOOLS_MISSING = 'getfattr/setfattr/getfacl/setfacl are not installed and could not be (as root, `npm test` installs the Debian packages attr and acl)';

/**
 * The extended attributes ferry keeps of every entry below `root` (symlinks not followed), by
 * member-relative path (latin1): one `name=0xvalue` line each, in name order. Entries without any
 * are left out.
 */
export function xattrDump(root: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const r = spawnSync('getfattr', ['-R', '-h', '-d', '-m', KEPT_XATTRS, '-e', 'hex', '--absolute-names', '--', root], { maxBuffer: 256 << 20 });
  assert.equal(r.status, 0, r.stderr?.toString());
  let current: string[] | undefined;
  // paths come as given (absolute), bytes as they are (latin1 keeps them one char each)
  const prefix = Buffer.from(root + '/').toString('latin1');
  for (const line of r.stdout.toString('latin1').split('\n')) {
    if (line.startsWith('# file: ')) {
      const path = line.slice(8);
      current = path.startsWith(prefix) ? [] : undefined; // the member root's own are no snapshot's
      if (current) out.set(path.slice(prefix.length), current);
    } else if (line && current) current.push(line);
  }
  for (const v of out.values()) v.sort();
  return out;
}

/**
 * A PATH of every command in /usr/bin except `missing` (symlinks in a new directory under `dir`):
 * ferry run with it finds no such command, as on a machine without the package.
 */
export function pathWithout(dir: string, missing: string[]): string {
  const bin = join(dir, `path-without-${missing.join('-')}`);
  mkdirSync(bin, { recursive: true });
  for (const name of readdirSync('/usr/bin')) if (!missing.includes(name)) symlinkSync(join('/usr/bin', name), join(bin, name));
  return bin;
}

const run = (cmd: string, ...args: string[]) => execFileSync(cmd, args);
/** Run `cmd args... path` with a path that may not be UTF-8 (through xargs: argv strings are UTF-8). */
const onPath = (path: Buffer, cmd: string, ...args: string[]) => execFileSync('xargs', ['-0', cmd, ...args, '--'], { input: Buffer.concat([path, Buffer.from([0])]) });

/** security.capability granting cap_net_bind_service (VFS_CAP_REVISION_2: magic, then permitted/inheritable, low and high words). */
function capabilityValue(): string {
  const v = Buffer.alloc(20);
  v.writeUInt32LE(0x02000000, 0);
  v.writeUInt32LE(1 << 10, 4);
  return `0x${v.toString('hex')}`;
}

/** A tree of files with extended attributes and POSIX ACLs (trusted.* and capabilities as root). */
export function aclTree(root: string): void {
  mkdirSync(join(root, 'shared'), { recursive: true });
  // group r--, a named user rwx: the mode's group bits show the mask (rwx), not the group's rights
  writeFileSync(join(root, 'acl-file'), 'acl\n');
  chmodSync(join(root, 'acl-file'), 0o640);
  run('setfacl', '-m', 'u:1234:rwx', join(root, 'acl-file'));
  // a directory with a default ACL: what is made in it inherits, unless taken away
  run('setfacl', '-d', '-m', 'u:1234:rwx,g:5678:r-x', join(root, 'shared'));
  writeFileSync(join(root, 'shared', 'inherited'), 'inherits the default\n');
  writeFileSync(join(root, 'shared', 'stripped'), 'its ACL taken away\n');
  run('setfacl', '-b', join(root, 'shared', 'stripped'));
  mkdirSync(join(root, 'shared', 'sub'));
  writeFileSync(join(root, 'shared', 'sub', 'deeper'), 'deeper\n');
  // user attributes with awkward values, also on a name that is not UTF-8
  writeFileSync(join(root, 'user-attrs'), 'x');
  run('setfattr', '-n', 'user.comment', '-v', 'hello world', join(root, 'user-attrs'));
  run('setfattr', '-n', 'user.binary', '-v', '0x00ff0a5c3d', join(root, 'user-attrs'));
  run('setfattr', '-n', 'user.empty', join(root, 'user-attrs'));
  const odd = Buffer.concat([Buffer.from(root + '/'), Buffer.from([0x78, 0xff])]);
  writeFileSync(odd, 'odd name\n');
  onPath(odd, 'setfattr', '-n', 'user.odd', '-v', 'yes');
  execFileSync('mkfifo', [join(root, 'pipe')]);
  run('setfacl', '-m', 'u:1234:r', join(root, 'pipe'));
  if (process.getuid?.() === 0) {
    writeFileSync(join(root, 'trusted-attr'), 'x');
    run('setfattr', '-n', 'trusted.ferry', '-v', 'root only', join(root, 'trusted-attr'));
    writeFileSync(join(root, 'cap-bin'), '#!/bin/true\n');
    chmodSync(join(root, 'cap-bin'), 0o755);
    run('setfattr', '-n', 'security.capability', '-v', capabilityValue(), join(root, 'cap-bin'));
    symlinkSync('acl-file', join(root, 'link'));
    run('setfattr', '-h', '-n', 'trusted.on-link', '-v', '1', join(root, 'link'));
  }
}

