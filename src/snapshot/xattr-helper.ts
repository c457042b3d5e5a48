// Small long-lived helpers that run getfattr and setfattr batches for the
// daemon, so that the daemon does not fork itself per batch.
// Forking a Node process that holds several hundred MiB costs tens of
// milliseconds per spawn (its page tables are copied); forking the helper,
// a bash started while the daemon was still small, costs about what it
// costs from any small process. `ferry serve` starts the helpers before it
// opens anything large (startXattrHelpers) and stops them when it stops;
// the CLI's own commands (small processes) keep spawning directly. Two
// helpers serve the capture's reader over their stdin and stdout
// (XattrHelper); one serves the synchronous callers over two FIFOs read and
// written with blocking calls (XattrSyncHelper).
//
// The protocol, one request at a time per helper, on its stdin and stdout:
//   request: "ARGC INLEN\n", then ARGC arguments each ended by a NUL byte,
//            then INLEN bytes for the tool's stdin;
//   reply:   "STATUS OUTLEN ERRLEN\n", then the tool's stdout and stderr.
// Every byte of a path travels inside a counted body, never on a line of
// its own, so names with newlines, spaces, leading dashes or bytes that are
// not UTF-8 pass as they are. The body is read whole into a file before the
// tool runs (a request cut short never runs), and the output is counted in
// files of the helper's own directory (0700) before it is sent.
//
// Owns: the helper processes and their framing. Must never: leave a helper
// running after the daemon stops or dies (each exits at the end of its
// stdin, and its process group is killed when it is stopped), or answer a
// request with another request's reply (a helper that dies mid-request is
// never reused: the request fails, the next one starts a new helper).
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, constants, mkdtempSync, open, openSync, readFileSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FerryError } from '../core/errors.ts';

/** What a tool's run gave: its exit status (null: killed by a signal), stdout and stderr. */
export interface ToolRun {
  status: number | null;
  stdout: Buffer;
  stderr: Buffer;
}

/** The helper's argv[0]: how it shows in ps and /proc/PID/cmdline. */
export const XATTR_HELPER_NAME = 'ferry-xattr-helper';

// $1: the helper's private directory (made by the daemon, removed by whoever ends last).
const SCRIPT = `
set -u
d=$1
trap 'rm -rf -- "$d"' EXIT
if [[ \${2-} == fifo ]]; then
  mkfifo -m 600 -- "$d/req" "$d/resp" || exit 4
  echo ready
  exec 0<"$d/req" 1>"$d/resp"
fi
while IFS=' ' read -r argc inlen; do
  [[ $argc =~ ^[0-9]+$ && $inlen =~ ^[0-9]+$ ]] || exit 2
  args=()
  for ((i = 0; i < argc; i++)); do
    IFS= read -r -d '' a || exit 0
    args+=("$a")
  done
  head -c "$inlen" >"$d/in" || exit 0
  [[ $(stat -c %s -- "$d/in") == "$inlen" ]] || exit 0
  "\${args[@]}" <"$d/in" >"$d/out" 2>"$d/err"
  st=$?
  sizes=$(stat -c %s -- "$d/out" "$d/err") || exit 3
  printf '%s %s %s\\n' "$st" \${sizes//$'\\n'/ } || exit 0
  cat -- "$d/out" "$d/err" || exit 0
  : >"$d/in"; : >"$d/out"; : >"$d/err"
done
`;

/** A request's header and arguments (its input follows). */
function requestHead(argv: string[], input: Buffer): Buffer {
  for (const a of argv) if (a.includes('\0')) throw new FerryError('INTERNAL', `${XATTR_HELPER_NAME}: an argument holds a NUL byte`);
  return Buffer.concat([Buffer.from(`${argv.length} ${input.length}\n`), ...argv.map((a) => Buffer.from(`${a}\0`))]);
}

/** What a request runs, for its error: the attribute tool it names (through xargs), else its command. */
function describe(argv: string[]): string {
  return `running ${argv.find((a) => a === 'getfattr' || a === 'setfattr') ?? argv[0]}`;
}

/** A reply's header line: the tool's status and the lengths of its stdout and stderr. */
function replyHead(line: Buffer): { status: number; out: number; err: number } | undefined {
  const m = /^(\d+) (\d+) (\d+)$/.exec(line.toString('latin1'));
  return m ? { status: Number(m[1]), out: Number(m[2]), err: Number(m[3]) } : undefined;
}

/**
 * Whether process `pid`, a child of this one, has exited though the event loop has not reaped it yet
 * (Linux: its /proc entry shows a zombie). False where /proc cannot tell.
 */
function exitedUnseen(pid: number | undefined): boolean {
  if (!pid) return true;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return /^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT';
  }
}

/** Signal a helper's process group (its tools with it); nothing if it is gone. */
function signalGroup(pid: number | undefined, sig: NodeJS.Signals): void {
  try {
    if (pid) process.kill(-pid, sig);
  } catch {
    // gone already
  }
}

/** Stop a helper's process group: SIGTERM, SIGKILL after two seconds; resolves once it has exited. */
async function stopGroup(pid: number | undefined, exited: Promise<void>): Promise<void> {
  signalGroup(pid, 'SIGTERM');
  const t = setTimeout(() => signalGroup(pid, 'SIGKILL'), 2000);
  await exited;
  clearTimeout(t);
}

/** The error of a request to a helper that is gone, with what it said last on stderr. */
function goneError(what: string, pid: number | undefined, why: string | undefined, stderr: string): FerryError {
  const more = stderr.trim() ? ` (${stderr.trim().slice(-300)})` : '';
  return new FerryError('IO', `${what}: the ${XATTR_HELPER_NAME} process (pid ${pid}) is gone: ${why}${more}; the next request starts a new one`);
}

interface Pending {
  resolve: (r: ToolRun) => void;
  reject: (e: unknown) => void;
  what: string;
}

/** One helper process: a bash running SCRIPT, one request at a time. */
export class XattrHelper {
  readonly #child: ChildProcess;
  readonly #dir: string;
  #chunks: Buffer[] = [];
  #have = 0;
  #header: { status: number; out: number; err: number } | undefined;
  #pending: Pending | undefined;
  #stderr = '';
  /** why it cannot take requests any more (set once: it died, or was stopped) */
  #dead: string | undefined;
  readonly exited: Promise<void>;

  private constructor(child: ChildProcess, dir: string) {
    this.#child = child;
    this.#dir = dir;
    // Its death fails the request in flight at once ('exit'); its directory goes once its pipes are closed.
    child.on('exit', (code, signal) => this.#die(signal ? `it was killed by ${signal}` : `it exited with status ${code}`));
    this.exited = new Promise<void>((resolve) => {
      child.on('close', () => {
        rmSync(dir, { recursive: true, force: true });
        resolve();
      });
    });
    child.stdout!.on('data', (b: Buffer) => this.#data(b));
    child.stderr!.on('data', (b: Buffer) => (this.#stderr = (this.#stderr + b.toString('utf8')).slice(-2000)));
    child.stdin!.on('error', () => {}); // a helper that died shows in its exit
  }

  /** Start one (resolves once the process runs; rejects when it cannot be started). */
  static async start(): Promise<XattrHelper> {
    const dir = mkdtempSync(join(tmpdir(), 'ferry-xattr-'));
    // its own process group: stopping it also stops a tool it runs
    const child = spawn('bash', ['-c', SCRIPT, XATTR_HELPER_NAME, dir], { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    const helper = new XattrHelper(child, dir);
    try {
      await new Promise<void>((resolve, reject) => {
        child.once('spawn', resolve);
        child.once('error', reject);
      });
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw new FerryError('IO', `cannot start the ${XATTR_HELPER_NAME} process (bash): ${(err as Error).message}`, { cause: err });
    }
    child.on('error', (e) => helper.#die(e.message));
    return helper;
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** Whether it takes requests: not known dead, and not exited unseen (a busy thread sees the exit late). */
  get alive(): boolean {
    return this.#dead === undefined && !exitedUnseen(this.#child.pid);
  }

  get busy(): boolean {
    return this.#pending !== undefined;
  }

  /** Run `argv` (argv[0] found on the PATH) with `input` as its stdin. One at a time. */
  run(argv: string[], input: Buffer): Promise<ToolRun> {
    if (this.#pending) throw new FerryError('INTERNAL', `${XATTR_HELPER_NAME}: a request while another runs`);
    const what = describe(argv);
    if (this.#dead) return Promise.reject(this.#error(what));
    const head = requestHead(argv, input);
    return new Promise<ToolRun>((resolve, reject) => {
      this.#pending = { resolve, reject, what };
      this.#child.stdin!.write(head);
      this.#child.stdin!.write(input);
    });
  }

  /** Stop it: end its input (it exits after any request it runs) and its process group; resolves once it is gone. */
  async stop(): Promise<void> {
    this.#die('it was stopped');
    this.#child.stdin!.end();
    await stopGroup(this.#child.pid, this.exited);
  }

  #signalGroup(sig: NodeJS.Signals): void {
    signalGroup(this.#child.pid, sig);
  }

  #error(what: string): FerryError {
    return goneError(what, this.#child.pid, this.#dead, this.#stderr);
  }

  #die(why: string): void {
    if (this.#dead !== undefined) return;
    this.#dead = why;
    const p = this.#pending;
    this.#pending = undefined;
    p?.reject(this.#error(p.what));
    // any tool it left running goes with it
    if (why !== 'it was stopped') this.#signalGroup('SIGKILL');
  }

  #data(b: Buffer): void {
    if (this.#dead) return;
    this.#chunks.push(b);
    this.#have += b.length;
    if (!this.#header) {
      const all = Buffer.concat(this.#chunks);
      const nl = all.indexOf(0x0a);
      if (nl < 0) {
        this.#chunks = [all];
        if (all.length > 100) this.#protocol(all);
        return;
      }
      const header = replyHead(all.subarray(0, nl));
      if (!header) return this.#protocol(all.subarray(0, nl));
      this.#header = header;
      this.#chunks = [all.subarray(nl + 1)];
      this.#have = all.length - nl - 1;
    }
    const h = this.#header;
    if (this.#have < h.out + h.err) return;
    const all = Buffer.concat(this.#chunks);
    const p = this.#pending;
    this.#header = undefined;
    this.#pending = undefined;
    this.#chunks = [all.subarray(h.out + h.err)];
    this.#have = all.length - h.out - h.err;
    if (!p || this.#have > 0) return this.#protocol(all);
    p.resolve({ status: h.status, stdout: Buffer.from(all.subarray(0, h.out)), stderr: Buffer.from(all.subarray(h.out, h.out + h.err)) });
  }

  /** Bytes that are no reply: the helper is not trusted again. */
  #protocol(b: Buffer): void {
    this.#die(`it answered out of turn: ${JSON.stringify(b.toString('latin1', 0, 100))}`);
  }
}

/**
 * A helper for the synchronous callers (readXattrsSync, XattrWriter: the apply's walk is
 * synchronous). Node has no synchronous read of a child's pipe, so this one talks through two FIFOs
 * in its directory, opened here in blocking mode: a request is written and its reply read with
 * writeSync and readSync. Its death shows as the end of the reply FIFO (the helper is its only
 * writer; a tool's stdout is a file), or as EPIPE on the request FIFO.
 */
export class XattrSyncHelper {
  readonly #child: ChildProcess;
  readonly #req: number;
  readonly #resp: number;
  #dead: string | undefined;
  #stderr = '';
  readonly exited: Promise<void>;

  private constructor(child: ChildProcess, req: number, resp: number, exited: Promise<void>) {
    this.#child = child;
    this.#req = req;
    this.#resp = resp;
    this.exited = exited;
    child.on('exit', (code, signal) => this.#die(signal ? `it was killed by ${signal}` : `it exited with status ${code}`));
    child.stderr!.on('data', (b: Buffer) => (this.#stderr = (this.#stderr + b.toString('utf8')).slice(-2000)));
  }

  static async start(): Promise<XattrSyncHelper> {
    const dir = mkdtempSync(join(tmpdir(), 'ferry-xattr-'));
    const child = spawn('bash', ['-c', SCRIPT, XATTR_HELPER_NAME, dir, 'fifo'], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
    void exited.then(() => rmSync(dir, { recursive: true, force: true }));
    let gone: string | undefined;
    const onExit = (code: number | null, signal: string | null) => {
      gone = signal ? `killed by ${signal}` : `exited with status ${code}`;
      // a FIFO open waiting for the helper's end is let go (O_RDWR never waits)
      for (const f of ['req', 'resp']) {
        try {
          closeSync(openSync(join(dir, f), constants.O_RDWR | constants.O_NONBLOCK));
        } catch {
          // not made yet
        }
      }
    };
    child.on('exit', onExit);
    const fds: number[] = [];
    try {
      await new Promise<void>((resolve, reject) => {
        child.once('error', reject);
        child.once('exit', () => reject(new Error(`it ${gone}`)));
        child.stdout!.on('data', (b: Buffer) => (b.toString().includes('ready') ? resolve() : undefined));
      });
      // in the helper's order: it opens the request FIFO, then the reply FIFO
      for (const [f, flags] of [['req', constants.O_WRONLY], ['resp', constants.O_RDONLY]] as const) {
        fds.push(await new Promise<number>((resolve, reject) => open(join(dir, f), flags, (e, fd) => (e ? reject(e) : resolve(fd)))));
      }
      if (gone) throw new Error(`it ${gone}`);
    } catch (err) {
      for (const fd of fds) closeSync(fd);
      signalGroup(child.pid, 'SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      throw new FerryError('IO', `cannot start the ${XATTR_HELPER_NAME} process (bash, FIFOs in ${dir}): ${(err as Error).message}`, { cause: err });
    }
    child.off('exit', onExit);
    return new XattrSyncHelper(child, fds[0], fds[1], exited);
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** Whether it takes requests: not known dead, and not exited unseen (a busy thread sees the exit late). */
  get alive(): boolean {
    return this.#dead === undefined && !exitedUnseen(this.#child.pid);
  }

  /**
   * Run `argv` with `input` as its stdin, synchronously. Throws IO if the helper dies meanwhile (it is
   * not used again); undefined if it was gone before any of the request was written (nothing ran).
   */
  runSync(argv: string[], input: Buffer): ToolRun | undefined {
    const what = describe(argv);
    if (this.#dead) throw this.#error(what);
    const head = requestHead(argv, input);
    try {
      // a dead helper (its exit not seen yet: this thread was busy) leaves no reader: EPIPE, nothing written
      const first = writeSync(this.#req, head);
      writeAll(this.#req, head.subarray(first));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EPIPE') throw err;
      this.#die('it was gone before the request was written');
      return undefined;
    }
    try {
      writeAll(this.#req, input);
      // nothing follows a reply until the next request: a read never takes bytes of another
      const read = (into: Buffer, at: number) => {
        const n = readSync(this.#resp, into, at, into.length - at, null);
        if (n === 0) throw new Error('its reply ended early (it died)');
        return n;
      };
      const first = Buffer.allocUnsafe(1 << 16);
      let have = 0;
      let nl = -1;
      while (nl < 0) {
        if (have > 100) throw new Error(`it answered out of turn: ${JSON.stringify(first.toString('latin1', 0, 100))}`);
        have += read(first, have);
        nl = first.subarray(0, have).indexOf(0x0a);
      }
      const header = replyHead(first.subarray(0, nl));
      if (!header) throw new Error(`it answered out of turn: ${JSON.stringify(first.toString('latin1', 0, Math.min(nl, 100)))}`);
      const body = Buffer.allocUnsafe(header.out + header.err);
      let got = first.copy(body, 0, nl + 1, have);
      if (have - nl - 1 > body.length) throw new Error(`it answered out of turn: ${have - nl - 1 - body.length} bytes more`);
      while (got < body.length) got += read(body, got);
      return { status: header.status, stdout: body.subarray(0, header.out), stderr: body.subarray(header.out) };
    } catch (err) {
      if (err instanceof FerryError) throw err;
      this.#die((err as NodeJS.ErrnoException).code === 'EPIPE' ? 'it stopped reading the request' : (err as Error).message);
      throw this.#error(what);
    }
  }

  async stop(): Promise<void> {
    this.#die('it was stopped');
    await stopGroup(this.#child.pid, this.exited);
  }

  #error(what: string): FerryError {
    return goneError(what, this.#child.pid, this.#dead, this.#stderr);
  }

  #die(why: string): void {
    if (this.#dead !== undefined) return;
    this.#dead = why;
    // its end of the request FIFO closed: it sees the end of its input and exits
    closeSync(this.#req);
    closeSync(this.#resp);
    if (why !== 'it was stopped') signalGroup(this.#child.pid, 'SIGKILL');
  }
}

function writeAll(fd: number, b: Buffer): void {
  for (let o = 0; o < b.length; ) o += writeSync(fd, b, o, b.length - o);
}

/**
 * The daemon's helpers: `size` processes, each one request at a time; requests wait for a free
 * one. A helper that died is replaced at the next request; where even that fails, run() returns
 * undefined (the caller spawns the tool itself, as the CLI does) and the pool warns once.
 */
export class XattrHelpers {
  readonly #size: number;
  readonly #warn: (message: string) => void;
  #helpers: XattrHelper[] = [];
  #starting = 0;
  readonly #waiting: Array<() => void> = [];
  #broken = false;
  #stopped = false;
  /** the synchronous callers' helper, and its restart when one is under way */
  #sync: XattrSyncHelper | undefined;
  #syncStarting: Promise<void> | undefined;

  constructor(o: { size?: number; onWarning?: (message: string) => void } = {}) {
    this.#size = o.size ?? 2;
    this.#warn = o.onWarning ?? (() => {});
  }

  /** Start every helper now (while the process is small). */
  async start(): Promise<void> {
    while (this.#helpers.length < this.#size) this.#helpers.push(await XattrHelper.start());
    this.#sync = await XattrSyncHelper.start();
  }

  /** The pids of the helpers running now (the synchronous callers' last). */
  pids(): number[] {
    return [...this.#helpers, ...(this.#sync ? [this.#sync] : [])].filter((h) => h.alive && h.pid !== undefined).map((h) => h.pid!);
  }

  /**
   * Run `argv` with `input` synchronously on the synchronous callers' helper; undefined when there is
   * none now (run it directly): one that died is replaced in the background, from the next call on.
   * Throws IO when the helper dies during the call.
   */
  runSync(argv: string[], input: Buffer): ToolRun | undefined {
    if (this.#stopped || this.#broken) return undefined;
    if (this.#sync?.alive) {
      const r = this.#sync.runSync(argv, input);
      if (r) return r;
    }
    this.#syncStarting ??= XattrSyncHelper.start().then(
      (h) => {
        if (this.#stopped) return h.stop();
        this.#sync = h;
      },
      (err) => this.#fail(err),
    ).finally(() => (this.#syncStarting = undefined));
    return undefined;
  }

  #fail(err: unknown): void {
    if (this.#broken) return;
    this.#broken = true;
    this.#warn(`${(err as Error).message}; getfattr and setfattr are run directly by the daemon from now on (each run forks the daemon)`);
    for (const w of this.#waiting.splice(0)) w();
  }

  /** Run `argv` with `input` on a free helper; undefined when no helper can be had (run it directly). */
  async run(argv: string[], input: Buffer): Promise<ToolRun | undefined> {
    for (;;) {
      if (this.#stopped || this.#broken) return undefined;
      this.#helpers = this.#helpers.filter((h) => h.alive);
      const free = this.#helpers.find((h) => !h.busy);
      if (free) {
        try {
          return await free.run(argv, input);
        } finally {
          this.#waiting.shift()?.();
        }
      }
      if (this.#helpers.length + this.#starting < this.#size) {
        this.#starting++;
        try {
          this.#helpers.push(await XattrHelper.start());
        } catch (err) {
          this.#fail(err);
          return undefined;
        } finally {
          this.#starting--;
        }
        continue;
      }
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    for (const w of this.#waiting.splice(0)) w();
    await this.#syncStarting;
    await Promise.all([...this.#helpers, ...(this.#sync ? [this.#sync] : [])].map((h) => h.stop()));
    this.#helpers = [];
    this.#sync = undefined;
  }
}

let registered: XattrHelpers | undefined;

/**
 * The daemon's helpers, for every attribute read of this process (set at `ferry serve` start, before
 * the daemon grows; cleared at its stop). Worker threads have none of their own: they spawn directly.
 */
export async function startXattrHelpers(o: { size?: number; onWarning?: (message: string) => void } = {}): Promise<XattrHelpers> {
  const h = new XattrHelpers(o);
  try {
    await h.start();
  } catch (err) {
    await h.stop();
    o.onWarning?.(`${(err as Error).message}; getfattr and setfattr are run directly by the daemon (each run forks the daemon)`);
    return h;
  }
  registered = h;
  return h;
}

export async function stopXattrHelpers(h: XattrHelpers | undefined): Promise<void> {
  if (!h) return;
  if (registered === h) registered = undefined;
  await h.stop();
}

/** The helpers in use in this thread, if any. */
export function xattrHelpers(): XattrHelpers | undefined {
  return registered;
}
