// The soak's world: two or three real sites on loopback, each a `ferry serve` daemon in its own home
// (on a small tmpfs of its own where this machine allows mounting one, so that a full disk can be
// made without touching the machine's disk), every peer link through a fault proxy (one TcpProxy per
// direction: site X reaches site Y only through the proxy X>Y), and the real CLI for every action.
// It also reads what the checker needs beside the daemons: each site's catalog (read-only), the
// members' files, the daemons' memory. It owns no policy: what to do is actions.ts, what must hold
// is checker.ts.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, rmSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import type { DatabaseSync } from 'node:sqlite';
import { FERRY_BIN, TcpProxy, startDaemon, stopDaemon, exited, tryMount, unmount, withCatalog } from './harness.ts';

/** The environment every ferry process of the soak gets (daemons and CLI alike). */
export const SOAK_ENV: Record<string, string> = {
  FERRY_NO_PROGRESS: '1',
  // A black-holed link is given up after 8 s instead of 60 s, so a stall costs the soak seconds; a
  // receiver that works longer than that (an apply) keeps its answer alive every second.
  FERRY_TEST_STALL_TIMEOUT_MS: '8000',
  FERRY_TEST_KEEPALIVE_MS: '1000',
};

/** Size of each site's tmpfs: room for its home, data, replicas and links. */
export const SITE_FS_MIB = 128;

export interface SoakSite {
  name: string;
  /** the site's directory: home, data, links (a tmpfs of its own when `mounted`) */
  dir: string;
  home: string;
  id: string;
  mounted: boolean;
  proc?: ChildProcess;
  /** the daemon's peer port while it runs (proxies to this site follow it) */
  port?: number;
  /** the tail of the current daemon's output */
  log: string;
  /** this site's clock offset (FERRY_TEST_CLOCK_OFFSET_MS, for its daemon and its CLI) */
  offsetMs: number;
  /** the soak stopped or killed this daemon on purpose (an exit otherwise is a violation) */
  stopping: boolean;
  /** steps left before a killed daemon is started again (-1: running) */
  downSteps: number;
  /** steps left of a full disk (0: none) */
  diskFullSteps: number;
  /** largest resident size seen, bytes */
  rssMax: number;
  /** most of its filesystem the site used at a checkpoint (without a full-disk fault's ballast), bytes */
  usedMax: number;
}

export interface LinkFault {
  mode: 'stall' | 'slow' | 'delay';
  steps: number;
}

export interface SoakLink {
  from: string;
  to: string;
  proxy: TcpProxy;
  fault?: LinkFault;
}

export interface CliOutcome {
  site: string;
  args: string[];
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  json?: any;
  /** killed by the soak on purpose (kill -9 of the CLI) */
  killed: boolean;
  /** still running at the time limit (then killed) */
  hung: boolean;
  ms: number;
  /** the error code the command reported, if it failed */
  errorCode?: string;
}

export interface Member {
  name: string;
  kind: 'tree' | 'image';
  path: string;
}

/** A daemon that exited without being asked to. */
export interface UnexpectedExit {
  site: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  log: string;
}

const LOG_TAIL = 64 * 1024;

// A soak interrupted (Ctrl-C, a test's timeout) must not leave its small filesystems mounted.
const liveWorlds = new Set<World>();
process.on('exit', () => {
  for (const w of liveWorlds) w.unmountAll();
});

export class World {
  readonly root: string;
  readonly sites: SoakSite[] = [];
  readonly links: SoakLink[] = [];
  readonly unexpectedExits: UnexpectedExit[] = [];
  /** CLI time limit: a command still running then is a hang */
  cliTimeoutMs = 300_000;
  #running = new Set<ChildProcess>();

  constructor(root: string) {
    this.root = root;
    liveWorlds.add(this);
  }

  /** Unmount every site's filesystem (lazily if still busy); synchronous, for the exit handler too. */
  unmountAll(): void {
    for (const s of this.sites) {
      if (!s.mounted) continue;
      try {
        unmount(s.dir);
      } catch {
        // already gone
      }
      s.mounted = false;
    }
  }

  site(name: string): SoakSite {
    const s = this.sites.find((x) => x.name === name);
    if (!s) throw new Error(`no site ${name}`);
    return s;
  }

  link(from: string, to: string): SoakLink {
    const l = this.links.find((x) => x.from === from && x.to === to);
    if (!l) throw new Error(`no link ${from}>${to}`);
    return l;
  }

  /** Create a site (its directory on a tmpfs of its own if possible) and its home; no daemon yet. */
  async addSite(name: string, initHome: (home: string, name: string) => string): Promise<SoakSite> {
    const dir = join(this.root, name);
    mkdirSync(dir, { recursive: true });
    const mounted = tryMount(dir, SITE_FS_MIB) === undefined;
    const home = join(dir, 'home');
    const id = initHome(home, name);
    const s: SoakSite = { name, dir, home, id, mounted, log: '', offsetMs: 0, stopping: false, downSteps: -1, diskFullSteps: 0, rssMax: 0, usedMax: 0 };
    this.sites.push(s);
    return s;
  }

  /** A proxy for every ordered pair of sites (started before the daemons: it follows their ports). */
  async addLinks(): Promise<void> {
    for (const a of this.sites) {
      for (const b of this.sites) {
        if (a === b) continue;
        // Until b's daemon runs the proxy points at a closed port (9): connections are refused.
        const proxy = await TcpProxy.start(b.port ?? 9);
        this.links.push({ from: a.name, to: b.name, proxy });
      }
    }
  }

  /** The environment of this site's ferry processes. */
  env(s: SoakSite): Record<string, string> {
    return { ...SOAK_ENV, FERRY_TEST_CLOCK_OFFSET_MS: String(s.offsetMs) };
  }

  async startDaemon(s: SoakSite): Promise<void> {
    if (s.proc) return;
    s.log = '';
    s.stopping = false;
    const d = await startDaemon(s.home, {
      name: s.name,
      tick: 500,
      env: this.env(s),
      timeoutMs: 90_000,
      onOutput: (t) => {
        s.log += t;
        if (s.log.length > LOG_TAIL * 2) s.log = s.log.slice(-LOG_TAIL);
      },
      output: () => s.log,
    });
    s.proc = d.proc;
    s.port = d.info.port;
    s.downSteps = -1;
    const proc = d.proc;
    proc.once('exit', (code, signal) => {
      if (s.proc === proc) s.proc = undefined;
      if (!s.stopping) this.unexpectedExits.push({ site: s.name, code, signal, log: s.log.slice(-8000) });
    });
    for (const l of this.links) if (l.to === s.name) l.proxy.target = d.info.port;
  }

  /** kill -9 (or another signal) the site's daemon and wait until it is gone. */
  async stopDaemon(s: SoakSite, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const p = s.proc;
    if (!p) return;
    s.stopping = true;
    await stopDaemon(p, signal, 30_000);
    s.proc = undefined;
  }

  /**
   * Run `ferry args --json` at a site (through its daemon when one runs, in-process otherwise).
   * `killAfterMs`: SIGKILL the CLI that long after it started (if still running).
   */
  async cli(s: SoakSite, args: string[], o: { killAfterMs?: number; timeoutMs?: number } = {}): Promise<CliOutcome> {
    const started = Date.now();
    const full = [...args, '--json', '--home', s.home];
    const child = spawn(FERRY_BIN, full, { env: { ...process.env, ...this.env(s) }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.#running.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    let killed = false;
    let hung = false;
    const timers: NodeJS.Timeout[] = [];
    if (o.killAfterMs !== undefined) {
      timers.push(setTimeout(() => {
        if (child.exitCode === null && child.signalCode === null) {
          killed = true;
          child.kill('SIGKILL');
        }
      }, o.killAfterMs));
    }
    timers.push(setTimeout(() => {
      if (child.exitCode === null && child.signalCode === null) {
        hung = true;
        child.kill('SIGKILL');
      }
    }, o.timeoutMs ?? this.cliTimeoutMs));
    const end = await exited(child);
    // the pipes may still hold the last output
    await new Promise((r) => setImmediate(r));
    for (const t of timers) clearTimeout(t);
    this.#running.delete(child);
    let json: any;
    try {
      json = stdout.trim() ? JSON.parse(stdout) : undefined;
    } catch {
      json = undefined;
    }
    const errorCode = end.code !== 0 && end.code !== null ? (json?.error?.code ?? /\[([A-Z][A-Z_]+)\]/.exec(stderr)?.[1]) : undefined;
    return { site: s.name, args, code: end.code, signal: end.signal, stdout, stderr, json, killed, hung, ms: Date.now() - started, errorCode };
  }

  /** Read a site's catalog beside its daemon (read-only). */
  catalog<T>(s: SoakSite, fn: (db: DatabaseSync) => T): T {
    return withCatalog(s.home, fn);
  }

  members(s: SoakSite, volume: string): Member[] {
    return this.catalog(s, (db) => db.prepare('SELECT name, kind, path FROM members WHERE volume = ? ORDER BY position').all(volume)) as unknown as Member[];
  }

  /** Resident size of the site's daemon in bytes (undefined when none runs). */
  rss(s: SoakSite): number | undefined {
    const pid = s.proc?.pid;
    if (!pid) return undefined;
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      return m ? Number(m[1]) * 1024 : undefined;
    } catch {
      return undefined;
    }
  }

  /** Free bytes on the site's filesystem. */
  free(s: SoakSite): number {
    const st = statfsSync(s.dir);
    return st.bavail * st.bsize;
  }

  /** Bytes the site uses on its filesystem, leaving out a full-disk fault's ballast (undefined without a filesystem of its own). */
  used(s: SoakSite): number | undefined {
    if (!s.mounted) return undefined;
    const st = statfsSync(s.dir);
    let ballast = 0;
    for (const f of readdirSync(s.dir)) if (f.startsWith('ballast.')) ballast += lstatSync(join(s.dir, f)).blocks * 512;
    const used = Math.max(0, (st.blocks - st.bfree) * st.bsize - ballast);
    s.usedMax = Math.max(s.usedMax, used);
    return used;
  }

  async close(): Promise<void> {
    for (const c of this.#running) c.kill('SIGKILL');
    for (const s of this.sites) {
      s.stopping = true;
      if (s.proc) await stopDaemon(s.proc, 'SIGKILL', 10_000).catch(() => {});
      s.proc = undefined;
    }
    for (const l of this.links) await l.proxy.close().catch(() => {});
    // FERRY_SOAK_KEEP=1: each site's directory (home, catalog, data) is copied out of its tmpfs
    // (to DIR-kept) before the unmount, and nothing is removed.
    const keep = Boolean(process.env.FERRY_SOAK_KEEP);
    if (keep) for (const s of this.sites) if (s.mounted) spawnSync('cp', ['-a', s.dir, `${s.dir}-kept`]);
    this.unmountAll();
    liveWorlds.delete(this);
    if (!keep) rmSync(this.root, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------ content digests

/** Entries at the member root that are ferry's own work areas, not data (checked on their own). */
export const STAGE_DIR = '.ferry-stage';

function hashFile(path: string): string {
  const h = createHash('sha256');
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

/**
 * What a tree holds, one line per entry below its root in byte order of the paths: type, permission
 * bits, size and content hash (or link target). Times and owners are left out: the soak writes the
 * data and compares what it holds, not when it was written. The root's own metadata and a staging
 * area at the root are left out too.
 */
export function describeTree(root: string): string[] {
  const out: string[] = [];
  const walk = (abs: string, rel: string) => {
    const names = readdirSync(abs).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const n of names) {
      if (rel === '' && n === STAGE_DIR) continue;
      const p = join(abs, n);
      const r = rel ? `${rel}/${n}` : n;
      const st = lstatSync(p);
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isDirectory()) {
        out.push(`d ${mode} ${r}`);
        walk(p, r);
      } else if (st.isFile()) out.push(`f ${mode} ${st.size} ${hashFile(p)} ${r}`);
      else if (st.isSymbolicLink()) out.push(`l ${readlinkSync(p)} ${r}`);
      else out.push(`o ${mode} ${r}`);
    }
  };
  walk(root, '');
  return out;
}

/** A member's content as one string (undefined if its path is missing). */
export function describeMember(m: { kind: string; path: string }): string[] | undefined {
  if (!existsSync(m.path)) return undefined;
  if (m.kind === 'image') {
    const st = lstatSync(m.path);
    return st.isFile() ? [`image ${st.size} ${hashFile(m.path)}`] : [`image not a file`];
  }
  return describeTree(m.path);
}

/** The digest of a volume's members as they are on disk (undefined if a member is missing). */
export function volumeDigest(members: Array<{ name: string; kind: string; path: string }>): string | undefined {
  const h = createHash('sha256');
  for (const m of [...members].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const d = describeMember(m);
    if (!d) return undefined;
    h.update(`member ${m.name} ${m.kind}\n${d.join('\n')}\n`);
  }
  return h.digest('hex').slice(0, 24);
}
