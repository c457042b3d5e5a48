// Extended attributes and POSIX ACLs, through the `attr` package's tools.
// Node has no xattr API and ferry takes no native addon, so capture reads
// them with `getfattr` and restore and apply set them with
// `setfattr --restore`, in batches (one process per few thousand paths, fed
// through `xargs -0`, so that names that are not UTF-8 pass as bytes). In the
// daemon's main thread every batch runs through its long-lived helper
// processes (xattr-helper.ts), started while the daemon was small, so that
// a batch does not fork the daemon (docs/design.md, "Fixed costs"); the CLI
// and worker threads spawn the tools themselves.
//
// Kept: `user.*`, `trusted.*`, `security.capability` and the two POSIX ACLs
// (`system.posix_acl_access`, `system.posix_acl_default`); not
// `security.selinux` (a label belongs to the policy of the host it is on) or
// other `security.*` and `system.*` names. On a file with an ACL the mode's
// group bits are the ACL's mask, not the owning group's rights: restoring
// the mode without the ACL would widen them (`r--` becoming `rwx`). So where
// the tools are missing, capture says once that it captures no attributes,
// restore narrows the group bits to the owning group's effective rights and
// says what it left out, and an apply refuses (a replica must be exact).
//
// Owns: the dump format of getfattr/setfattr and the ACL bits ferry reads.
// Must never: follow a symlink (-h everywhere), or pass a path through a
// command line as a string (it may not be UTF-8).
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, lstatSync } from 'node:fs';
import { FerryError, wrapIoError } from '../core/errors.ts';
import { pathToText } from './path-text.ts';
import { xattrHelpers, type ToolRun } from './xattr-helper.ts';

export type Xattrs = Array<[name: Buffer, value: Buffer]>;

/** The names ferry keeps, as a getfattr -m pattern (an extended regular expression). */
const KEPT = '^(user\\.|trusted\\.|security\\.capability$|system\\.posix_acl_(access|default)$)';
export const ACL_ACCESS = Buffer.from('system.posix_acl_access');
export const ACL_DEFAULT = Buffer.from('system.posix_acl_default');
/** An ACL with no entries: setting it removes the ACL (the kernel takes it as none). */
const NO_ACL = Buffer.from([2, 0, 0, 0]);

/** Paths per getfattr or setfattr run. */
const BATCH_PATHS = 4096;
/** Bytes of dump per setfattr run. */
const BATCH_BYTES = 4 << 20;

export const XATTR_TOOLS_HINT = 'install the attr package (Debian/Ubuntu: apt-get install attr), which has getfattr and setfattr';

/**
 * Runs of getfattr and setfattr in this thread, by how they were run (through the daemon's helper,
 * or spawned by this process) and what they did: /metrics shows the daemon's.
 */
export const xattrRuns = { helper: { read: 0, write: 0 }, direct: { read: 0, write: 0 } };

let toolsChecked: { ok: boolean; at: number } | undefined;

/** Whether getfattr, setfattr and xargs run here (checked once; a miss again after a minute). */
export function xattrToolsPresent(): boolean {
  if (toolsChecked && (toolsChecked.ok || Date.now() - toolsChecked.at < 60_000)) return toolsChecked.ok;
  const runs = (cmd: string) => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
  toolsChecked = { ok: runs('getfattr') && runs('setfattr') && runs('xargs'), at: Date.now() };
  return toolsChecked.ok;
}

// ---- the dump format (getfattr -d -e hex, setfattr --restore) ----

/** Quote for a dump line: backslash, control characters and, in names, '=' as \ooo (the tools' own quoting). */
function quote(b: Uint8Array, isName: boolean): Buffer {
  let n = 0;
  for (const c of b) if (c < 0x20 || c === 0x7f || c === 0x5c || (isName && c === 0x3d)) n++;
  if (n === 0) return Buffer.from(b);
  const out = Buffer.allocUnsafe(b.length + 3 * n);
  let o = 0;
  for (const c of b) {
    if (c < 0x20 || c === 0x7f || c === 0x5c || (isName && c === 0x3d)) {
      out[o++] = 0x5c;
      out[o++] = 0x30 + ((c >> 6) & 7);
      out[o++] = 0x30 + ((c >> 3) & 7);
      out[o++] = 0x30 + (c & 7);
    } else out[o++] = c;
  }
  return out;
}

function unquote(b: Buffer): Buffer {
  if (!b.includes(0x5c)) return b;
  const out = Buffer.allocUnsafe(b.length);
  let o = 0;
  for (let i = 0; i < b.length; i++) {
    const d = (k: number) => b[i + k] - 0x30;
    if (b[i] === 0x5c && i + 3 < b.length && [1, 2, 3].every((k) => d(k) >= 0 && d(k) <= 7)) {
      out[o++] = (d(1) << 6) | (d(2) << 3) | d(3);
      i += 3;
    } else out[o++] = b[i];
  }
  return out.subarray(0, o);
}

const FILE_LINE = Buffer.from('# file: ');

/** Parse getfattr's `-d -e hex` output: path (latin1 of its bytes) -> attributes, sorted by name. */
export function parseDump(out: Buffer): Map<string, Xattrs> {
  const found = new Map<string, Xattrs>();
  let current: Xattrs | undefined;
  for (let start = 0; start < out.length; ) {
    let end = out.indexOf(0x0a, start);
    if (end < 0) end = out.length;
    const line = out.subarray(start, end);
    start = end + 1;
    if (line.length === 0) {
      current = undefined;
    } else if (line.subarray(0, FILE_LINE.length).equals(FILE_LINE)) {
      current = [];
      found.set(unquote(line.subarray(FILE_LINE.length)).toString('latin1'), current);
    } else {
      const eq = line.indexOf(0x3d);
      const hex = eq < 0 ? '' : line.toString('latin1', eq + 1);
      if (!current || eq <= 0 || !/^0x(?:[0-9a-f]{2})*$/.test(hex)) throw new FerryError('INTERNAL', `unexpected getfattr output: ${JSON.stringify(line.toString('latin1').slice(0, 200))}`);
      current.push([Buffer.from(unquote(line.subarray(0, eq))), Buffer.from(hex.slice(2), 'hex')]);
    }
  }
  for (const x of found.values()) x.sort((a, b) => Buffer.compare(a[0], b[0]));
  return found;
}

/** Per-path errors a tool printed (`tool: path: message`): path (latin1) -> message. */
function parseErrors(err: Buffer, tool: string): Map<string, string> {
  const out = new Map<string, string>();
  const prefix = Buffer.from(`${tool}: `);
  for (let start = 0; start < err.length; ) {
    let end = err.indexOf(0x0a, start);
    if (end < 0) end = err.length;
    const line = err.subarray(start, end);
    start = end + 1;
    const sep = line.lastIndexOf(': ');
    if (!line.subarray(0, prefix.length).equals(prefix) || sep <= prefix.length) continue;
    out.set(unquote(line.subarray(prefix.length, sep)).toString('latin1'), line.toString('utf8', sep + 2));
  }
  return out;
}

/** The dump setfattr --restore takes: each path with the attributes to set. */
export function encodeDump(items: Array<{ path: Buffer; set: Xattrs }>): Buffer {
  const parts: Buffer[] = [];
  for (const it of items) {
    parts.push(FILE_LINE, quote(it.path, false), Buffer.from('\n'));
    for (const [name, value] of it.set) parts.push(quote(name, true), Buffer.from(`=0x${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex')}\n`));
    parts.push(Buffer.from('\n'));
  }
  return Buffer.concat(parts);
}

const NUL = Buffer.from([0]);
const nulList = (paths: Buffer[]) => Buffer.concat(paths.flatMap((p) => [p, NUL]));
const GETFATTR = ['-0', '-r', 'getfattr', '-h', '-d', '-m', KEPT, '-e', 'hex', '--absolute-names', '--'];

/** What reading one path's attributes gave: its attributes, or why there are none (undefined: unknown). */
export interface XattrResult {
  xattrs: Xattrs | undefined;
  /** a per-path error other than "not supported" (the filesystem keeps none: no attributes) or "no such file" (gone: unknown) */
  error?: string;
}

function results(paths: Buffer[], status: number | null, out: Buffer, err: Buffer): XattrResult[] {
  // xargs: 0 ok, 123 some getfattr run exited 1-125 (per-path errors, on stderr); anything else failed
  if (status !== 0 && status !== 123) {
    throw new FerryError('IO', `reading extended attributes: getfattr (through xargs) exited with status ${status}: ${err.toString('utf8').trim().slice(0, 500) || 'no message'}; ${XATTR_TOOLS_HINT}`);
  }
  const found = parseDump(out);
  const errors = status === 0 ? new Map<string, string>() : parseErrors(err, 'getfattr');
  return paths.map((p) => {
    const key = p.toString('latin1');
    const e = errors.get(key);
    // a filesystem that keeps none has none; an entry gone since it was seen is the walk's to report
    if (e !== undefined && /no such file/i.test(e)) return { xattrs: undefined };
    if (e !== undefined && !/not supported/i.test(e)) return { xattrs: undefined, error: e };
    return { xattrs: found.get(key) ?? [] };
  });
}

/** Read the kept attributes of `paths` now (absolute paths, symlinks not followed). */
export function readXattrsSync(paths: Buffer[]): XattrResult[] {
  if (paths.length === 0) return [];
  const input = nulList(paths);
  const helped = xattrHelpers()?.runSync(['xargs', ...GETFATTR], input);
  if (helped) {
    xattrRuns.helper.read++;
    return results(paths, helped.status, helped.stdout, helped.stderr);
  }
  xattrRuns.direct.read++;
  const r = spawnSync('xargs', GETFATTR, { input, maxBuffer: 1 << 30 });
  if (r.error) throw new FerryError('IO', `reading extended attributes: ${r.error.message}; ${XATTR_TOOLS_HINT}`, { cause: r.error });
  return results(paths, r.status, r.stdout, r.stderr);
}

/**
 * Capture's reader: paths are gathered and read in batches by getfattr
 * processes that run beside the walk (two at a time); each read resolves
 * when its batch has run. flush() starts what is gathered.
 */
export class XattrReader {
  #paths: Buffer[] = [];
  #waiters: Array<(r: XattrResult) => void> = [];
  #fails: Array<(e: unknown) => void> = [];
  #running = 0;
  readonly #queue: Array<() => void> = [];
  #drainWaiters: Array<() => void> = [];

  /** Resolves once at most `n` batches wait to run: the walk waits here so that paths do not pile up. */
  async drained(n = 4): Promise<void> {
    while (this.#queue.length > n) await new Promise<void>((resolve) => this.#drainWaiters.push(resolve));
  }

  read(path: Buffer): Promise<XattrResult> {
    const p = new Promise<XattrResult>((resolve, reject) => {
      this.#paths.push(path);
      this.#waiters.push(resolve);
      this.#fails.push(reject);
    });
    if (this.#paths.length >= BATCH_PATHS) this.flush();
    return p;
  }

  flush(): void {
    if (this.#paths.length === 0) return;
    const paths = this.#paths;
    const waiters = this.#waiters;
    const fails = this.#fails;
    this.#paths = [];
    this.#waiters = [];
    this.#fails = [];
    const run = () => {
      this.#running++;
      this.#run(paths).then(
        (rs) => rs.forEach((r, i) => waiters[i](r)),
        (err) => fails.forEach((f) => f(err)),
      ).finally(() => {
        this.#running--;
        this.#queue.shift()?.();
        for (const w of this.#drainWaiters.splice(0)) w();
      });
    };
    if (this.#running < 2) run();
    else this.#queue.push(run);
  }

  async #run(paths: Buffer[]): Promise<XattrResult[]> {
    // In the daemon, through its helper (xattr-helper.ts): no fork of the daemon per batch.
    const helped = await xattrHelpers()?.run(['xargs', ...GETFATTR], nulList(paths));
    if (helped) {
      xattrRuns.helper.read++;
      return results(paths, helped.status, helped.stdout, helped.stderr);
    }
    xattrRuns.direct.read++;
    return new Promise((resolve, reject) => {
      const child = spawn('xargs', GETFATTR, { stdio: ['pipe', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (b: Buffer) => out.push(b));
      child.stderr.on('data', (b: Buffer) => err.push(b));
      child.on('error', (e) => reject(new FerryError('IO', `reading extended attributes: ${e.message}; ${XATTR_TOOLS_HINT}`, { cause: e })));
      child.on('close', (status) => {
        try {
          resolve(results(paths, status, Buffer.concat(out), Buffer.concat(err)));
        } catch (e) {
          reject(e);
        }
      });
      child.stdin.on('error', () => {}); // a child that died early shows in its status
      child.stdin.end(nulList(paths));
    });
  }
}

/** One setfattr run of the writer: through the daemon's helper where there is one, else spawned here. */
function runWrite(argv: string[], input: Buffer, what: string): ToolRun {
  const helped = xattrHelpers()?.runSync(argv, input);
  if (helped) {
    xattrRuns.helper.write++;
    return helped;
  }
  xattrRuns.direct.write++;
  const r = spawnSync(argv[0], argv.slice(1), { input, maxBuffer: 64 << 20 });
  if (r.error) throw new FerryError('IO', `${what} extended attributes: ${r.error.message}; ${XATTR_TOOLS_HINT}`, { cause: r.error });
  return r;
}

/**
 * Restore's and apply's writer: the attributes each written entry must have,
 * set by `setfattr -h --restore` in batches. An entry made inside a
 * directory with a default ACL inherits an ACL the snapshot may not have:
 * `clearAcls` removes those the entry lacks. Names to remove from an existing
 * entry go through `setfattr -x`, one run per name.
 *
 * Until its batch is set, an entry has only its owner's rights: the caller
 * gives it `mode & 0o700` and the writer its final mode, set once the
 * attributes are (so a file never shows its ACL's mask as its group's rights
 * without the ACL, even for a moment). Where an ACL could not be set, the
 * group bits are narrowed to the owning group's own rights (modeWithoutAcl).
 */
export class XattrWriter {
  #items: Array<{ path: Buffer; set: Xattrs; mode?: number; acl?: Xattrs }> = [];
  #bytes = 0;
  readonly #remove = new Map<string, Buffer[]>();
  /** called with each path whose attributes could not all be set, and why */
  readonly #onFailure: (path: Buffer, message: string) => void;
  /** called after each batch is set, with the paths it held */
  readonly #onFlushed: ((paths: Buffer[]) => void) | undefined;

  constructor(onFailure: (path: Buffer, message: string) => void, onFlushed?: (paths: Buffer[]) => void) {
    this.#onFailure = onFailure;
    this.#onFlushed = onFlushed;
  }

  /**
   * Give `path` the attributes `want`, at the next flush. `had`: what it has
   * now (an entry that existed: names it has and `want` lacks are removed);
   * `clearAcls`: it is made in a directory that may have a default ACL
   * (inherited ACLs `want` lacks are removed; `isDir`: the default ACL too);
   * `mode`: its final mode, set after the attributes. Returns false when
   * there is nothing to do (the caller then sets the mode itself).
   */
  set(path: Buffer, want: Xattrs, o: { had?: Xattrs; clearAcls?: boolean; isDir?: boolean; mode?: number } = {}): boolean {
    const set: Xattrs = [...want];
    const lacks = (name: Buffer) => !want.some(([n]) => n.equals(name));
    if (o.clearAcls) {
      if (lacks(ACL_ACCESS)) set.push([ACL_ACCESS, NO_ACL]);
      if (o.isDir && lacks(ACL_DEFAULT)) set.push([ACL_DEFAULT, NO_ACL]);
    }
    let removes = false;
    for (const [name] of o.had ?? []) {
      if (!lacks(name)) continue;
      if (name.equals(ACL_ACCESS) || name.equals(ACL_DEFAULT)) {
        if (!set.some(([n]) => n.equals(name))) set.push([name, NO_ACL]);
      } else {
        const key = name.toString('latin1');
        const list = this.#remove.get(key) ?? [];
        list.push(path);
        this.#remove.set(key, list);
        removes = true;
      }
    }
    if (set.length === 0 && !removes) return false;
    this.#items.push({ path, set, mode: o.mode, acl: want });
    this.#bytes += path.length + set.reduce((n, [k, v]) => n + k.length + 2 * v.length + 8, 16);
    return true;
  }

  /** Flush when a batch is full (call once the entries queued so far exist). */
  flushIfFull(): void {
    if (this.#items.length >= BATCH_PATHS || this.#bytes >= BATCH_BYTES) this.flush();
  }

  /** Set what is gathered (synchronously), then the final modes. */
  flush(): void {
    const items = this.#items;
    this.#items = [];
    this.#bytes = 0;
    const failed = new Set<string>();
    const toSet = items.filter((i) => i.set.length > 0);
    if (toSet.length > 0) {
      const r = runWrite(['setfattr', '-h', '--restore=-'], encodeDump(toSet), 'setting');
      if (r.status !== 0) this.#failures(toSet.map((i) => i.path), r.stderr, r.status, failed);
    }
    for (const [name, paths] of this.#remove) {
      const r = runWrite(['xargs', '-0', '-r', 'setfattr', '-h', '-x', Buffer.from(name, 'latin1').toString(), '--'], nulList(paths), 'removing');
      if (r.status !== 0) this.#failures(paths, r.stderr, r.status, failed);
    }
    this.#remove.clear();
    for (const it of items) {
      if (it.mode === undefined) continue;
      const mode = failed.has(it.path.toString('latin1')) ? modeWithoutAcl(it.mode, it.acl ?? []) : it.mode;
      try {
        // chmod follows symlinks: only what is not one (a symlink has no mode to set)
        if (!lstatSync(it.path).isSymbolicLink()) chmodSync(it.path, mode);
      } catch (err) {
        throw wrapIoError(err, `setting the mode of ${pathToText(it.path)}`);
      }
    }
    if (items.length > 0) this.#onFlushed?.(items.map((i) => i.path));
  }

  #failures(paths: Buffer[], stderr: Buffer, status: number | null, failed: Set<string>): void {
    const errors = parseErrors(stderr, 'setfattr');
    let named = 0;
    for (const p of paths) {
      const e = errors.get(p.toString('latin1'));
      if (e === undefined) continue;
      named++;
      failed.add(p.toString('latin1'));
      this.#onFailure(p, `extended attributes not set: ${e}`);
    }
    if (named === 0) throw new FerryError('IO', `setting extended attributes: setfattr exited with status ${status}: ${stderr.toString('utf8').trim().slice(0, 500) || 'no message'}`);
  }
}

/** Whether attributes hold a default ACL (a directory's: what entries made in it inherit). */
export function hasDefaultAcl(x: Xattrs | undefined): boolean {
  return (x ?? []).some(([n, v]) => n.equals(ACL_DEFAULT) && v.length > NO_ACL.length);
}

/**
 * The mode to give a file whose access ACL cannot be restored: the group
 * bits of a mode with an ACL are the ACL's mask; the owning group's own
 * rights are its entry's, limited by the mask. Never wider than either.
 */
export function modeWithoutAcl(mode: number, x: Xattrs): number {
  const acl = x.find(([n]) => n.equals(ACL_ACCESS))?.[1];
  if (!acl || acl.length < 4 || (acl.length - 4) % 8 !== 0) return mode;
  let group = 0o7;
  let mask = 0o7;
  for (let o = 4; o + 8 <= acl.length; o += 8) {
    const tag = acl.readUInt16LE(o);
    const perm = acl.readUInt16LE(o + 2) & 7;
    if (tag === 0x04) group = perm; // ACL_GROUP_OBJ
    if (tag === 0x10) mask = perm; // ACL_MASK
  }
  return (mode & ~0o070) | ((group & mask) << 3);
}
