// The kernel-native floor of snapshot replication, as an anchor beside ferry
// and rsync (--anchors btrfs): two btrfs filesystems on loop files, the
// benchmark's tree copied into a subvolume of the first and changed there by
// the same change (bench/change.ts, same seed: the same bytes), each case a
// read-only snapshot and `btrfs send [-p parent] | btrfs receive` into the
// second, through the same link model as the other tools (the stream crosses
// a TCP connection through the proxies: btrfs send -> relay -> link ->
// relay -> btrfs receive).
//
// Needs root, btrfs-progs and loop devices; without them the anchor is
// skipped and the report says why. Mounts and loop devices are released in
// every case (end of run, exception, SIGINT/SIGTERM: procs.ts cleanup).

import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, ftruncateSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';

import { humanBytes, round2, syncDisks } from './common.ts';
import { type Context, measuredRow, MiBOf, type ProcessUsage, type Row, slugOf } from './measure.ts';
import { countDelta } from './proxy.ts';
import { onCleanup, startTimed, timed } from './procs.ts';
import { verifyTree } from './verify.ts';

export const BTRFS_TOOL = 'btrfs send/receive';

/** Why the anchor cannot run here, or null if it can. */
export function btrfsUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'not root (loop devices and mounts need root)';
  for (const bin of ['btrfs', 'mkfs.btrfs', 'losetup', 'mount', 'umount']) {
    if (spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0) return `${bin} not found (apt-get install -y btrfs-progs)`;
  }
  if (!existsSync('/dev/loop-control')) return 'no /dev/loop-control (loop devices unavailable)';
  return null;
}

/** Runs a setup command; throws with its output if it fails. */
function sh(argv: string[]): string {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' });
  if (r.error) throw new Error(`${argv.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`\`${argv.join(' ')}\` failed (exit ${r.status}): ${(r.stderr || r.stdout).trim().slice(0, 300)}`);
  return r.stdout;
}

/** A btrfs filesystem on a loop file, mounted; released by the cleanup registry. */
class LoopBtrfs {
  readonly mount: string;
  readonly device: string;
  readonly release: () => void;

  constructor(file: string, mount: string, sizeBytes: number) {
    mkdirSync(mount, { recursive: true });
    const fd = openSync(file, 'wx');
    ftruncateSync(fd, sizeBytes); // sparse: only what btrfs writes takes disk space
    closeSync(fd);
    this.device = sh(['losetup', '--find', '--show', file]).trim();
    const device = this.device;
    let mounted = false;
    this.mount = mount;
    this.release = onCleanup(`release ${device} (${file})`, () => {
      if (mounted && spawnSync('umount', [mount]).status !== 0) {
        console.error(`umount ${mount} failed; detaching it lazily (umount -l)`);
        spawnSync('umount', ['-l', mount]);
      }
      spawnSync('losetup', ['-d', device]);
    });
    sh(['mkfs.btrfs', '-f', '-q', device]);
    sh(['mount', device, mount]);
    mounted = true;
  }
}

export interface BtrfsCase {
  /** The snapshot's name; also the received subvolume's. */
  snapshot: string;
  parent: string | null;
}

/**
 * The two filesystems, the source subvolume and the relay. measure() takes
 * a snapshot and sends it; release() (or the cleanup registry) unmounts.
 */
export class BtrfsAnchor {
  readonly source: LoopBtrfs;
  readonly destination: LoopBtrfs;
  /** The subvolume holding the data, at the source. */
  readonly data: string;
  readonly mountOptions: string;
  private readonly relay: Server;
  private relayPort = 0;
  private proxySlot: number | null = null;
  private proxyPort = 0;
  private onStream: ((socket: Socket) => void) | null = null;
  private closeRelay: () => void = () => {};

  private constructor(dir: string, sizeBytes: number) {
    this.source = new LoopBtrfs(join(dir, 'source.img'), join(dir, 'source'), sizeBytes);
    this.destination = new LoopBtrfs(join(dir, 'destination.img'), join(dir, 'destination'), sizeBytes);
    this.data = join(this.source.mount, 'data');
    sh(['btrfs', 'subvolume', 'create', this.data]);
    mkdirSync(join(this.source.mount, 'snapshots'));
    mkdirSync(join(this.destination.mount, 'received'));
    this.mountOptions = sh(['findmnt', '-n', '-o', 'OPTIONS', this.source.mount]).trim();
    this.relay = createServer((socket) => {
      if (this.onStream) this.onStream(socket);
      else socket.destroy();
    });
  }

  /** Two filesystems of sizeBytes each (sparse loop files in dir), the tree copied into the source subvolume (untimed). */
  static async setup(ctx: Context, dir: string, sizeBytes: number, tree: string): Promise<BtrfsAnchor> {
    mkdirSync(dir, { recursive: true });
    const anchor = new BtrfsAnchor(dir, sizeBytes);
    try {
      await new Promise<void>((resolve) => anchor.relay.listen(0, '127.0.0.1', () => resolve()));
      anchor.closeRelay = onCleanup('close the btrfs relay', () => anchor.relay.close());
      const address = anchor.relay.address();
      anchor.relayPort = typeof address === 'object' && address ? address.port : 0;
      if (ctx.proxies) {
        // The stream goes from site a (send) to site b (receive).
        const p = await ctx.proxies.add('btrfs', anchor.relayPort, 'a');
        anchor.proxySlot = p.slot;
        anchor.proxyPort = p.port;
      }
      sh(['cp', '-a', '--reflink=never', `${tree}/.`, `${anchor.data}/`]);
      syncDisks();
      return anchor;
    } catch (err) {
      anchor.release();
      throw err;
    }
  }

  /**
   * Timed: `btrfs subvolume snapshot -r data snapshots/NAME`, then
   * `btrfs send [-p snapshots/PARENT] snapshots/NAME` through the link into
   * `btrfs receive received/`. Checks the received subvolume against the
   * snapshot (content and metadata) and the snapshot's content against the
   * tree the other tools replicated (the same data and change).
   */
  async measure(ctx: Context, caseName: string, c: BtrfsCase, changedBytes: number, tree: string): Promise<Row> {
    const slug = slugOf('btrfs', caseName);
    const snapshots = join(this.source.mount, 'snapshots');
    const received = join(this.destination.mount, 'received');
    const sendArgs = ['btrfs', 'send', ...(c.parent ? ['-p', join(snapshots, c.parent)] : []), join(snapshots, c.snapshot)];
    const command = `btrfs subvolume snapshot -r DATA SNAP; ${sendArgs.join(' ').replaceAll(snapshots + '/', '')} | link | btrfs receive DEST`;
    const fail = (error: string): Row => ({ tool: BTRFS_TOOL, case: caseName, command, ok: false, error, changedBytes });
    syncDisks();
    const started = performance.now();
    const snap = await timed(['btrfs', 'subvolume', 'snapshot', '-r', this.data, join(snapshots, c.snapshot)], {}, join(ctx.logs, `${slug}-snapshot`), ctx.timeoutS);
    if (!snap.ok) return fail(`snapshot: ${snap.error}`);
    const snapped = performance.now();

    const wireBefore = ctx.proxies && this.proxySlot !== null ? ctx.proxies.read(this.proxySlot) : null;
    let streamBytes = 0;
    const recv = startTimed(['btrfs', 'receive', received], {}, join(ctx.logs, `${slug}-receive`), ctx.timeoutS, { stdin: true });
    this.onStream = (socket) => {
      this.onStream = null;
      socket.on('data', (b: Buffer) => void (streamBytes += b.length));
      socket.pipe(recv.child.stdin!);
      socket.on('error', () => recv.child.stdin!.destroy());
    };
    const send = startTimed(sendArgs, {}, join(ctx.logs, `${slug}-send`), ctx.timeoutS, { stdout: true });
    const out = connect({ host: '127.0.0.1', port: this.proxySlot !== null ? this.proxyPort : this.relayPort, noDelay: true });
    out.on('error', () => {
      // Never reached the relay: end the receive's input so that it exits (and says so).
      send.child.stdout!.destroy();
      recv.child.stdin!.end();
    });
    recv.child.stdin!.on('error', () => {}); // a receive that died early: its own exit status says why
    send.child.stdout!.pipe(out);
    const [sent, got] = await Promise.all([send.result, recv.result]);
    const finished = performance.now();
    out.destroy();
    this.onStream = null;
    if (!sent.ok) return fail(`btrfs send: ${sent.error}`);
    if (!got.ok) return fail(`btrfs receive: ${got.error}`);
    const wire = wireBefore && ctx.proxies ? countDelta(ctx.proxies.read(this.proxySlot!), wireBefore) : null;
    const processes: ProcessUsage[] = [
      { role: 'snapshot', cpuSeconds: snap.cpuSeconds, peakRssMiB: MiBOf(snap.peakRssKiB), peakScope: 'process' },
      { role: 'send', cpuSeconds: sent.cpuSeconds, peakRssMiB: MiBOf(sent.peakRssKiB), peakScope: 'process' },
      { role: 'receive', cpuSeconds: got.cpuSeconds, peakRssMiB: MiBOf(got.peakRssKiB), peakScope: 'process' },
    ];
    const row = measuredRow(BTRFS_TOOL, caseName, command, round2((finished - started) / 1000), processes, wire, changedBytes, {
      toolBytes: streamBytes,
      steps: { snapshot: (snapped - started) / 1000, 'send | receive': (finished - snapped) / 1000 },
    });
    row.verify = verifyTree(join(snapshots, c.snapshot), join(received, c.snapshot), join(ctx.logs, slug));
    // Same data and change as the other tools: content only (the change ran at another moment, so mtimes differ).
    const same = spawnSync('diff', ['-r', '-q', '--no-dereference', tree, join(snapshots, c.snapshot)], { encoding: 'utf8', maxBuffer: 64 << 20 });
    if (same.status !== 0) {
      row.verify = { ...row.verify, ok: false, detail: `the btrfs source is not the benchmark's tree: ${(same.stdout + same.stderr).split('\n').slice(0, 3).join(' | ').slice(0, 300)}` };
    }
    return row;
  }

  describe(): string {
    return `two btrfs filesystems on loop files (${humanBytes(this.sizeBytes())} each, sparse), mounted ${this.mountOptions}`;
  }

  private sizeBytes(): number {
    const r = spawnSync('blockdev', ['--getsize64', this.source.device], { encoding: 'utf8' });
    return Number(r.stdout.trim()) || 0;
  }

  /** Unmounts both filesystems and detaches their loop devices (once; the cleanup registry does it otherwise). */
  release(): void {
    this.closeRelay();
    this.destination.release();
    this.source.release();
  }
}
