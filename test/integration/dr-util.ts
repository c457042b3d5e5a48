// Helpers for the DR end-to-end tests (test/integration/dr-*.test.ts): real
// sites, each a `ferry serve` daemon in its own temp home on loopback, driven
// by the real CLI; volumes of random files; copies and restores to compare
// byte for byte. Every daemon started here is tracked: `cleanup()` (from an
// after hook) kills it, and a process 'exit' handler SIGKILLs any left over.
import { execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DatabaseSync } from 'node:sqlite';
import assert from 'node:assert/strict';
import { runFerry, tempDir, type CliResult } from '../helpers.ts';
import { startDaemon, stopDaemon, withCatalog } from './daemons.ts';
import { Site } from '../../src/site/site.ts';
import { createVolume, parseMemberSpec, type Hooks } from '../../src/site/volumes.ts';

export const MiB = 1 << 20;
export const KiB = 1 << 10;

export interface DrSite {
  name: string;
  /** the site's temp directory: its home, its data, and the test's scratch space */
  dir: string;
  home: string;
  id: string;
  /** the daemon's port (kept after stop, so a restart can reuse it: peers pinned the URL) */
  port?: number;
  url?: string;
  proc?: ChildProcess;
  log: string;
  /** run the CLI with this site's home; never throws */
  ferry(args: string[]): Promise<CliResult>;
  /** run with --json, assert the exit status, return the parsed document */
  json(args: string[], expectCode?: number): Promise<any>;
  /** run with --json and assert it failed with this exit status and error code */
  refused(args: string[], exit: number, code: string, message?: RegExp): Promise<CliResult>;
  /** define a volume in this process (setup; the daemon must not run) */
  defineVolume(volume: string, members: string[], hooks?: Hooks): void;
  /** start the daemon (on its earlier port, if any); `env`: extra environment for this daemon only (test hooks) */
  start(opts?: { tick?: number; port?: number; env?: Record<string, string> }): Promise<void>;
  stop(signal?: NodeJS.Signals): Promise<void>;
  status(): Promise<any>;
  /** the status entry of this site's mirror of `volume` to `peer` */
  mirror(volume: string, peer: string): Promise<any>;
  /** the status entry of a volume */
  volume(volume: string): Promise<any>;
  /** the path of a volume's (single) member at this site: for a secondary, the replica */
  memberPath(volume: string): Promise<string>;
  /** `ferry snapshot list` */
  snapshots(volume: string): Promise<any[]>;
  /** the snapshots of a volume from the catalog (cheap: no CLI process) */
  snapshotRows(volume: string): Array<{ id: string; name: string | null; time: number }>;
  /** restore a snapshot into a new directory under the site's dir and return it */
  restore(volume: string, snapshot: string, label: string): Promise<string>;
  /** read-only access to the catalog, beside the daemon */
  catalog<T>(fn: (db: DatabaseSync) => T, opts?: { write?: boolean }): T;
  cleanup(): Promise<void>;
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 30_000, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v as T;
      last = undefined;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export function errorCode(r: CliResult): string | undefined {
  return r.json?.error?.code ?? /\b([A-Z][A-Z_]{3,})\b/.exec(r.stderr)?.[1];
}

let counter = 0;

export async function newSite(name: string): Promise<DrSite> {
  const tmp = tempDir(`ferry-dr-${name}-`);
  const home = join(tmp.path, 'home');
  const ferry = (args: string[]) => runFerry(args, { home, timeoutMs: 180_000 });
  const json: DrSite['json'] = async (args, expectCode = 0) => {
    const r = await ferry([...args, '--json']);
    assert.equal(r.code, expectCode, `[${name}] ferry ${args.join(' ')} exited ${r.code}, expected ${expectCode}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    assert.ok(r.json !== undefined, `[${name}] ferry ${args.join(' ')} --json printed no JSON: ${r.stdout}\nstderr: ${r.stderr}`);
    return r.json;
  };
  // Setup runs in this process (each CLI process costs a second or two of CPU on a loaded machine);
  // what is under test runs through the real CLI and daemons.
  const created = Site.init(home, name);
  const id = created.id;
  created.close();
  const site: DrSite = {
    name,
    dir: tmp.path,
    home,
    id,
    log: '',
    ferry,
    json,
    async refused(args, exit, code, message) {
      const r = await ferry([...args, '--json']);
      assert.equal(r.code, exit, `[${name}] ferry ${args.join(' ')}: expected exit ${exit} (${code}), got ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
      assert.equal(errorCode(r), code, `[${name}] ferry ${args.join(' ')}: expected ${code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
      if (message) assert.match(r.json?.error?.message ?? r.stderr, message);
      return r;
    },
    defineVolume(volume, members, hooks) {
      assert.ok(!site.proc, 'stop the daemon before defining volumes in-process');
      const s = Site.open(home, { command: 'test setup' });
      try {
        createVolume(s, volume, { members: members.map(parseMemberSpec), hooks: hooks ?? {} });
      } finally {
        s.close();
      }
    },
    async start(o = {}) {
      assert.ok(!site.proc, `[${name}] daemon already running`);
      site.log = '';
      const d = await startDaemon(home, { name, port: o.port ?? site.port, tick: o.tick, env: o.env, onOutput: (t) => (site.log += t), output: () => site.log });
      site.proc = d.proc;
      site.port = d.info.port;
      site.url = `https://127.0.0.1:${d.info.port}`;
    },
    async stop(signal = 'SIGTERM') {
      const p = site.proc;
      if (!p) return;
      try {
        await stopDaemon(p, signal);
      } finally {
        site.proc = undefined;
      }
    },
    status: () => json(['status']),
    async volume(volume) {
      const s = await json(['status']);
      const v = s.volumes.find((x: any) => x.name === volume);
      assert.ok(v, `[${name}] no volume ${volume} in status`);
      return v;
    },
    async mirror(volume, peer) {
      const v = await site.volume(volume);
      const m = v.mirrors.find((x: any) => x.peer === peer);
      assert.ok(m, `[${name}] no mirror of ${volume} to ${peer}: ${JSON.stringify(v.mirrors)}`);
      return m;
    },
    async memberPath(volume) {
      const rows = site.catalog((db) => db.prepare('SELECT path FROM members WHERE volume = ?').all(volume)) as Array<{ path: string }>;
      assert.equal(rows.length, 1, `[${name}] volume ${volume} has ${rows.length} members`);
      return rows[0].path;
    },
    snapshots: (volume) => json(['snapshot', 'list', volume]),
    snapshotRows: (volume) => site.catalog((db) => db.prepare('SELECT id, name, time FROM snapshots WHERE volume = ? ORDER BY time, id').all(volume)) as any,
    async restore(volume, snapshot, label) {
      const target = join(tmp.path, `restore-${label}-${++counter}`);
      await json(['restore', volume, '--snapshot', snapshot, '--target', target]);
      return target;
    },
    catalog: (fn, o = {}) => withCatalog(home, fn, o),
    async cleanup() {
      await site.stop('SIGKILL').catch(() => {});
      tmp.cleanup();
    },
  };
  return site;
}

/** Pair two running sites, each pinning the other's id and URL. */
export async function pairSites(a: DrSite, b: DrSite): Promise<void> {
  assert.ok(a.url && b.url, 'both daemons must run before pairing');
  await Promise.all([a.json(['site', 'add', b.name, b.url!, '--id', b.id]), b.json(['site', 'add', a.name, a.url!, '--id', a.id])]);
}

/**
 * Two running, paired sites: `a` the primary of `vol` (a small volume of random files at `a.dir/data`),
 * mirrored to `b` and initialized. `beforeStart` runs with both daemons stopped (setup in-process).
 * The sites are pushed to `list` for cleanup.
 */
export async function mirroredPair(list: DrSite[], names: [string, string], o: { files?: number; fileSize?: number; beforeStart?: (a: DrSite, b: DrSite) => void } = {}): Promise<{ a: DrSite; b: DrSite; data: string }> {
  const [a, b] = await Promise.all([newSite(names[0]), newSite(names[1])]);
  list.push(a, b);
  const data = join(a.dir, 'data');
  writeVolumeData(data, o.files ?? 2, o.fileSize ?? 128 * KiB);
  a.defineVolume('vol', [data]);
  o.beforeStart?.(a, b);
  await Promise.all([a.start(), b.start()]);
  await pairSites(a, b);
  await a.json(['mirror', 'create', 'vol', '--to', b.name]);
  await a.json(['mirror', 'initialize', 'vol', '--to', b.name, '--wait']);
  return { a, b, data };
}

/** Pair two running sites under their names without the test's tag (`seattle-rb` is paired as `seattle`), as an operator would name them. */
export async function pairPlain(a: DrSite, b: DrSite): Promise<void> {
  const plain = (s: DrSite) => s.name.replace(/-.*$/, '');
  await Promise.all([a.json(['site', 'add', plain(b), b.url!, '--id', b.id]), b.json(['site', 'add', plain(a), a.url!, '--id', a.id])]);
}

export async function cleanupSites(sites: DrSite[]): Promise<void> {
  await Promise.all(sites.map((s) => s.cleanup().catch(() => {})));
}

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

/** The catalog's mirror row (cheap to poll: no CLI process). */
export function mirrorRow(site: DrSite, volume: string, peer: string): any {
  return site.catalog((db) => db.prepare('SELECT * FROM mirrors WHERE volume = ? AND peer = ?').get(volume, peer));
}

/** The mirror's row with its base snapshot's capture time (cheap to poll: no CLI process). */
export function mirrorWithBase(site: DrSite, volume: string, peer: string): { state: string; paused: number; base: string | null; base_time: number | null; schedule_s: number | null; last_success_at: number | null } | undefined {
  return site.catalog((db) => db.prepare('SELECT m.*, s.time AS base_time FROM mirrors m LEFT JOIN snapshots s ON s.id = m.base WHERE m.volume = ? AND m.peer = ?').get(volume, peer)) as any;
}

/** Updates of `volume` that completed at `site` (the source) since `since` (ms): the snapshot each sent and its bytes on the wire. */
export function transfersSince(site: DrSite, volume: string, since: number): Array<{ snapshot: string; bytes: number; at: number }> {
  const rows = site.catalog((db) => db.prepare("SELECT at, detail FROM events WHERE kind = 'replication.update' AND volume = ? AND outcome IN ('ok', 'warning') AND at >= ? ORDER BY id").all(volume, since)) as Array<{ at: number; detail: string }>;
  return rows.map((r) => {
    const d = JSON.parse(r.detail);
    return { snapshot: d.snapshot, bytes: d.bytes, at: r.at };
  });
}
