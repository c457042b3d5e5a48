// The replication benchmark: ferry replicating between two daemons, side by
// side with rsync pushing to an rsync daemon and (--anchors btrfs) btrfs
// send/receive, in one run, on the same generated data (bench/gen.ts) and
// change (bench/change.ts), across the same link: every connection crosses a
// proxy that models it (bench/link.ts; loopback unless --rtt/--rate).
//
//   node bench/replication.ts [--scale 1] [--seed 1] [--rtt 50ms --rate 200Mbit/s [--loss 0.1%]]
//                             [--anchors btrfs] [--rsync default,compress,whole-file] [--no-image]
//                             [--work DIR] [--out bench/out] [--direct] [--ferry BIN] [--settle 3] [--timeout 3600]
//   node bench/replication.ts --case million [--files 1000000] [link flags] ...   (bench/million.ts)
//
// Standard case (every destination fresh, the data generated once, nothing deleted):
//   check free disk -> generate tree and image -> read the tree once (warm cache)
//   -> ferry: two sites, two daemons, paired through the link
//   -> ferry mirror initialize data --wait; rsync (each variant); btrfs snapshot + send   "tree: initial"
//   -> standard change (to the tree and, the same, to the btrfs source)
//   -> ferry mirror update data --wait; rsync again; btrfs send -p                         "tree: update"
//   -> the same with nothing changed                                                       "tree: unchanged"
//   -> ferry volume of the image: initialize; rsync --inplace --no-whole-file               "image: initial"
//   -> image change (1,000 x 64 KiB at scale 1)
//   -> ferry mirror update img --wait; rsync --inplace --no-whole-file again                "image: update"
// After every run the replica is compared with the source (diff -r and a
// metadata walk for trees, cmp for the image). Per run: wall time of the
// command (the ferry CLI with --wait returns once the replica is applied; rsync
// when it exits; btrfs when the receive exits), CPU time and peak RSS of every
// process involved, bytes on the wire (counted by the proxies) and the tools'
// own byte counts. Results: Markdown on stdout and in
// bench/out/replication-<timestamp>.md, every number in ...json.

import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { BTRFS_TOOL, BtrfsAnchor, btrfsUnavailable } from './btrfs.ts';
import { changeImage, type ChangeStats, changeTree, type ImageChangeStats } from './change.ts';
import { humanBytes, timestamp, warmCache } from './common.ts';
import { ensureFresh, footprint, GiB, generateImage, generateTree, type GenStats, type ImageStats, parseScale, parseSeed } from './gen.ts';
import { describeLink, isLoopback, linkSpec, type LinkSpec } from './link.ts';
import { cliToDaemonLine, type CliToDaemon, type Context, FerryPair, measureCliToDaemon, logRow, measureFerry, mismatchesOf, type Row, rowsNotes, rowsTable, RsyncServer, type RsyncVariant } from './measure.ts';
import { LOCAL_RSYNC, millionDiskNeed, type MillionResult, parseFiles, runMillion } from './million.ts';
import { LinkProxies } from './proxy.ts';
import { bins, cleanupAll, GNU_TIME, ROOT, sleep, trapSignals } from './procs.ts';
import { describeProbe, type DiskProbe, probeDisk, unsettledWarning } from './disk-probe.ts';
import { checkFreeSpace, describeMachine, DiskEstimate, type DiskNeed, diskUsed, type Machine, machineOf, toolVersion } from './sysinfo.ts';

/** Targets (the issue): ferry wall / baseline rsync wall, and wire bytes / changed bytes. */
const WALL_TARGETS: Record<string, number> = { 'tree: initial': 0.9, 'tree: update': 0.5, 'image: update': 0.5 };
const WIRE_TARGETS: Record<string, number> = { 'tree: update': 1.1, 'image: update': 1.5 };

/** rsync variants for trees, each with its own destination (module). */
const RSYNC_VARIANTS: Record<string, RsyncVariant> = {
  default: { label: 'rsync', flags: ['-a', '--delete'], module: 'tree' },
  compress: { label: 'rsync -z', flags: ['-az', '--delete'], module: 'tree-z' },
  'no-whole-file': { label: 'rsync --no-whole-file', flags: ['-a', '--delete', '--no-whole-file'], module: 'tree-nwf' },
  'whole-file': { label: 'rsync --whole-file', flags: ['-a', '--delete', '--whole-file'], module: 'tree-wf' },
};
/** rsync for the image: in place with deltas; with -z as well across a rate-limited link when the compress variant runs. */
const RSYNC_IMAGE: Record<'default' | 'compress', RsyncVariant> = {
  default: { label: 'rsync --inplace', flags: ['-a', '--inplace', '--no-whole-file'], module: 'image' },
  compress: { label: 'rsync -z --inplace', flags: ['-az', '--inplace', '--no-whole-file'], module: 'image-z' },
};

/** What a standard run writes, from the data set's plan and the tools in it. */
export function standardDiskNeed(seed: number, scale: number, variants: number, imageVariants: number, image: boolean, btrfs: boolean): DiskNeed {
  const f = footprint(seed, scale);
  const est = new DiskEstimate();
  // The change writes about 2.5 % of the tree; every copy of the tree gets it.
  const tree = f.treeAllocated * 1.05;
  // A ferry store holds random content as is, text compressed about 3x, and a
  // few per cent of trees, indexes and the catalog; the update adds its changes.
  const store = (random: number, text: number): number => (random + text / 3) * 1.1;
  est.add('data: tree', tree, f.files + f.directories);
  est.add('ferry stores (2) and replica: tree', 2 * store(f.treeRandomBytes, f.treeTextBytes) + tree, f.files + f.directories + 2000);
  est.add(`rsync tree destinations (${variants})`, variants * tree, variants * (f.files + f.directories));
  if (image) {
    est.add('data: image', f.imageAllocated, 1);
    est.add('ferry stores (2) and replica: image', 2 * store(f.imageRandomBytes, f.imageTextBytes) + f.imageAllocated, 2000);
    // rsync writes the holes of the image as zeros: its copies are fully allocated.
    est.add(`rsync image destinations (${imageVariants}, holes written)`, imageVariants * f.imageSize, imageVariants);
  }
  if (btrfs) est.add('btrfs: source and destination filesystems (loop files)', 2 * (tree * 1.15 + 256 * 2 ** 20), 4);
  return est.need;
}

// ---------------------------------------------------------------- report

interface Report {
  case: 'standard' | 'million';
  started: string;
  finished: string;
  totalSeconds: number;
  scale?: number;
  files?: number;
  seed: number;
  work: string;
  machine: Machine;
  link: LinkSpec & { description: string; lostSegments?: { towardsB: number; towardsA: number } };
  versions: Record<string, string>;
  anchors: string[];
  disk: { estimatedBytes: number; estimate: string[]; usedBytes: number; freeBeforeBytes: number };
  /** the disk probe before and after the timed runs (disk-probe.ts) */
  diskProbe?: { before?: DiskProbe; after?: DiskProbe };
  baseline: string;
  notes: string[];
  data: { tree?: GenStats; image?: ImageStats };
  change: { tree?: ChangeStats; image?: ImageChangeStats; treeWrittenBytes?: number; million?: MillionResult['change'] };
  phases: Record<string, number>;
  rows: Row[];
  mismatches: string[];
  /** the CLI's fixed cost to the source daemon (measure.ts measureCliToDaemon) */
  cli?: CliToDaemon;
}

function formatReport(r: Report): string {
  const lines: string[] = [];
  const what = r.case === 'million' ? `${r.files!.toLocaleString('en')} files` : `scale ${r.scale}`;
  lines.push(`# ferry replication benchmark (${r.case === 'million' ? 'million-file case' : 'standard data set'}), ${r.started}`, '');
  lines.push(`${what}, seed ${r.seed}; ${describeMachine(r.machine)}`);
  lines.push(`link: ${r.link.description}` + (r.link.lostSegments ? ` (segments lost: ${r.link.lostSegments.towardsB} towards the destination, ${r.link.lostSegments.towardsA} back)` : ''));
  lines.push(`tools: ${Object.entries(r.versions).map(([k, v]) => `${k}: ${v}`).join('; ')}`);
  if (r.anchors.length) lines.push(`anchors: ${r.anchors.join('; ')}`);
  lines.push(`disk: estimated ${humanBytes(r.disk.estimatedBytes)} before the run (${humanBytes(r.disk.freeBeforeBytes)} free), used ${Number.isNaN(r.disk.usedBytes) ? 'n/a' : humanBytes(r.disk.usedBytes)} (du of the work directory after the run)`);
  if (r.diskProbe?.before || r.diskProbe?.after) lines.push(`disk probe: ${r.diskProbe.before ? `before the runs ${describeProbe(r.diskProbe.before)}` : ''}${r.diskProbe.before && r.diskProbe.after ? '; ' : ''}${r.diskProbe.after ? `after them ${describeProbe(r.diskProbe.after)}` : ''}`);
  lines.push('');
  if (r.data.tree) {
    const t = r.data.tree;
    lines.push(`tree: ${t.files.toLocaleString('en')} files in ${t.directories.toLocaleString('en')} directories, ${humanBytes(t.bytes)} (${humanBytes(t.randomBytes)} random, ${humanBytes(t.textBytes)} text), generated in ${t.seconds.toFixed(1)} s`);
  }
  if (r.change.tree) {
    const c = r.change.tree;
    lines.push(`tree change: ${c.modified.files} files modified, ${c.appended.files} appended, ${c.largeRegions.regions} regions in ${c.largeRegions.files} large files, ` +
      `${c.added.files} added, ${c.deleted.files} deleted: ${humanBytes(r.change.treeWrittenBytes!)} written (the "changed bytes" below), ${humanBytes(c.deleted.bytes)} deleted`);
  }
  if (r.change.million) lines.push(`change: ${r.change.million.files.toLocaleString('en')} files rewritten with new content of 1-4 KiB (${humanBytes(r.change.million.bytes)})`);
  if (r.data.image) {
    const i = r.data.image;
    lines.push(`image: ${humanBytes(i.size)} (${humanBytes(i.randomBytes)} random, ${humanBytes(i.textBytes)} text, ${humanBytes(i.zeroBytes)} written zeros, ${humanBytes(i.holeBytes)} holes)` +
      (r.change.image ? `; change: ${r.change.image.writes} writes of 64 KiB (${humanBytes(r.change.image.bytes)})` : ''));
  }
  lines.push('');
  if (r.mismatches.length) {
    lines.push('**REPLICA MISMATCH: the following replicas do not match their source; their numbers are not valid:**', '');
    for (const m of r.mismatches) lines.push(`- **${m}**`);
    lines.push('');
  }
  lines.push(...rowsTable(r.rows), '');

  // ferry against the others, per case.
  const cases = [...new Set(r.rows.map((m) => m.case))];
  const find = (tool: string, c: string): Row | undefined => r.rows.find((m) => m.tool === tool && m.case === c && m.ok);
  const yes = (x: number | undefined, t: number | undefined): string => (x === undefined || t === undefined ? '—' : x <= t ? 'yes' : 'NO');
  lines.push(`| case | ferry wall s | ferry ÷ ${r.baseline} (target, met) | ferry wire ÷ changed (target, met) | ferry ÷ each other tool (wall) |`);
  lines.push('|---|---:|---|---|---|');
  for (const c of cases) {
    const ferry = find('ferry', c);
    const baselineTool = c.startsWith('local:') ? LOCAL_RSYNC
      : c.startsWith('image') ? (r.baseline === 'rsync -z' ? RSYNC_IMAGE.compress.label : RSYNC_IMAGE.default.label) : r.baseline;
    const baseline = find(baselineTool, c);
    const vs = ferry && baseline ? ferry.wallSeconds! / baseline.wallSeconds! : undefined;
    const target = r.case === 'standard' ? WALL_TARGETS[c] : undefined;
    const wireRatio = ferry?.wire && ferry.changedBytes > 0 ? ferry.wire.total / ferry.changedBytes : undefined;
    const wireTarget = r.case === 'standard' ? WIRE_TARGETS[c] : undefined;
    const others = r.rows.filter((m) => m.case === c && m.ok && m.tool !== 'ferry' && ferry)
      .map((m) => `${m.tool}: ${(ferry!.wallSeconds! / m.wallSeconds!).toFixed(2)}`).join('; ');
    lines.push(`| ${c} | ${ferry ? ferry.wallSeconds!.toFixed(2) : 'n/a'} | ${vs === undefined ? 'n/a' : vs.toFixed(2)}${baseline && baseline.tool !== r.baseline ? ` (vs ${baseline.tool})` : ''}` +
      `${target === undefined ? '' : ` (<= ${target}, ${yes(vs, target)})`} | ${wireRatio === undefined ? 'n/a' : wireRatio.toFixed(2)}${wireTarget === undefined ? '' : ` (<= ${wireTarget}, ${yes(wireRatio, wireTarget)})`} | ${others || '—'} |`);
  }
  lines.push('');
  if ('cli' in r) lines.push(cliToDaemonLine(r.cli), '');
  lines.push(...rowsNotes(r.rows));
  lines.push('Notes:', ...r.notes.map((n) => `- ${n}`), '');
  lines.push('Commands:', ...r.rows.filter((m, i, all) => m.command && all.findIndex((x) => x.tool === m.tool && x.command === m.command) === i).map((m) => `- ${m.tool}: \`${m.command}\``), '');
  lines.push(`Phases (s): ${Object.entries(r.phases).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')}; total ${r.totalSeconds.toFixed(0)} s. Work directory: ${r.work}`);
  return lines.join('\n') + '\n';
}

function notesFor(r: Pick<Report, 'case' | 'link' | 'baseline'>, proxies: boolean, settleSeconds: number, anchors: boolean): string[] {
  const notes = [
    'wall: from the command to its exit; `ferry mirror initialize|update --wait` returns after the destination applied and verified the replica; rsync when the client exits; btrfs from the snapshot command to the exit of `btrfs receive`.',
    'CPU: user + system. ferry: the CLI (GNU time), and each daemon\'s /proc/PID/stat utime+stime (+ reaped children) when the CLI returned minus before the run; work a daemon does after the CLI returned (releasing older replication snapshots, collecting) is shown as "(+x after)" and not counted. rsync: the client (GNU time), and the daemon with the per-connection processes it forked (GNU time around a daemon started for this run only). btrfs: the snapshot, send and receive commands (GNU time; their work in the kernel is system time).',
    'peak RSS: GNU time\'s max RSS for the CLIs, rsync clients and btrfs commands (the largest of a process and the children it reaped, not a sum); ferry daemons: VmHWM from /proc/PID/status, reset before each run (clear_refs 5) where permitted; rsync daemon: GNU time\'s max over the daemon and its forked processes.',
    proxies
      ? `bytes on the wire: TCP payload through the proxies, both directions, every connection of the run, ${isLoopback(r.link) ? 'on loopback' : 'across the link model'}: for ferry, the proxies between the daemons (site-a reaches site-b through one, site-b reaches site-a through another; TLS, HTTP/2 and protocol messages included); for rsync, the proxy in front of its daemon; for btrfs, the send stream through a relay. The tool's count: ferry \`status --json\` mirrors[].lastTransfer.bytes; rsync --stats total bytes sent + received; btrfs: the stream's bytes.`
      : 'bytes on the wire: not counted (--direct: no proxies, no link model); the tool\'s count is ferry\'s lastTransfer.bytes and rsync\'s --stats sent + received.',
    `the link: ${r.link.description}. One model joins the two sites and every tool crosses it: each direction delivers every byte in order at most at the rate, one-way delay (rtt/2) after the link is free; a new connection costs a round trip (the handshake) before its first bytes leave; bytes in flight per connection are bounded, so a slow receiver holds the sender back. TCP slow start and the congestion response to loss are not modelled.`,
    `ratios: against \`${r.baseline}\` (${r.baseline === 'rsync -z' ? 'on a rate-limited link a WAN user runs rsync with compression' : 'on loopback, rsync without compression'}); for the image, the in-place rsync of the same kind; for local snapshots, \`${LOCAL_RSYNC}\`. ferry ÷ each other tool is listed beside it.`,
    'replica check after every run: trees with `diff -r --no-dereference` (content, names, symlinks) plus a walk comparing type, permissions, size and mtime (ms; not the root); the image with `cmp`; btrfs: the received subvolume against the source snapshot (content and metadata), and the source snapshot\'s content against the tree the other tools replicated (the same data and change). A content difference is reported as MISMATCH and the run exits with status 1.',
    'rsync to a daemon uses its delta algorithm by default (whole-file is the default only when both ends are local paths); `--stats` shows it: matched data > 0 means delta. `rsync (local)` copies between two local paths (whole files).',
    `settle: ${settleSeconds} s pause (untimed) after generating and after each change, then the source is read once more (page cache). After each ferry run both daemons are quiet (no CPU for 1 s) before the next tool runs; \`sync\` before every timed run.`,
  ];
  if (anchors) notes.push('btrfs: the tree is copied into a subvolume of a fresh btrfs filesystem on a loop file (untimed, `cp -a`), the change applied there by the same code and seed; each case is `btrfs subvolume snapshot -r` and `btrfs send [-p parent] | btrfs receive` into a second btrfs filesystem. The copy-on-write, kernel-native floor: it knows what changed without reading anything, and keeps no verified content-addressed store.');
  return notes;
}

// ---------------------------------------------------------------- the standard case

interface StandardPlan {
  seed: number;
  scale: number;
  noImage: boolean;
  variants: RsyncVariant[];
  imageVariants: RsyncVariant[];
  anchorBtrfs: boolean;
  settleSeconds: number;
}

async function runStandard(ctx: Context, work: string, plan: StandardPlan, log: (s: string) => void,
  out: { rows: Row[]; data: Report['data']; change: Report['change']; phases: Record<string, number>; anchors: string[]; fixed: { cli?: CliToDaemon } }): Promise<void> {
  const { seed, scale } = plan;
  const { rows, data, change, phases } = out;
  const tick = (name: string, since: number): void => {
    phases[name] = (performance.now() - since) / 1000;
  };
  const settle = (): Promise<void> => sleep(plan.settleSeconds * 1000);
  const add = (row: Row): void => {
    rows.push(row);
    logRow(row, log);
  };
  const failed = (tool: string, c: string, changedBytes: number, why: string): void => add({ tool, case: c, command: '', ok: false, error: why, changedBytes });
  const treeDir = join(work, 'data', 'tree');
  const imagePath = join(work, 'data', 'image.img');

  let t = performance.now();
  log('generating the tree ...');
  data.tree = await generateTree(treeDir, seed, scale);
  if (!plan.noImage) {
    log('generating the image ...');
    data.image = await generateImage(imagePath, seed, scale);
  }
  await settle();
  tick('generate', t);
  t = performance.now();
  warmCache(treeDir);
  tick('warm tree', t);

  t = performance.now();
  const started = await FerryPair.tryStart(ctx, join(work, 'ferry'), 'data', treeDir, log);
  const pair = typeof started === 'string' ? null : started;
  let ferryReady = typeof started === 'string' ? started : null;
  let anchor: BtrfsAnchor | null = null;
  try {
    const rsyncRoot = join(work, 'rsync');
    const rs = await RsyncServer.setup(ctx, rsyncRoot, [...plan.variants, ...(plan.noImage ? [] : plan.imageVariants)].map((v) => v.module));
    if (plan.anchorBtrfs) {
      log('btrfs: two filesystems on loop files, copying the tree in ...');
      const f = footprint(seed, scale);
      const size = Math.ceil((f.treeAllocated * 1.3 + GiB) / GiB) * GiB;
      try {
        anchor = await BtrfsAnchor.setup(ctx, join(work, 'btrfs'), size, treeDir);
        out.anchors.push(`btrfs send/receive: ${anchor.describe()}`);
      } catch (err) {
        const why = err instanceof Error ? err.message : String(err);
        out.anchors.push(`btrfs send/receive: setup failed (${why})`);
        log(`btrfs setup failed: ${why}`);
        anchor?.release();
        anchor = null;
      }
    }
    tick('setup', t);

    const treeBytes = data.tree.bytes;
    const btrfsCase = async (c: string, snapshot: string, parent: string | null, changedBytes: number): Promise<void> => {
      if (!plan.anchorBtrfs) return;
      if (!anchor) return failed(BTRFS_TOOL, c, changedBytes, 'the btrfs anchor could not be set up');
      add(await anchor.measure(ctx, c, { snapshot, parent }, changedBytes, treeDir));
    };
    const ferryCase = async (c: string, args: string[], changedBytes: number, source: string, kind: 'tree' | 'image', ready: string | null): Promise<Row | null> => {
      if (ready !== null || !pair) {
        failed('ferry', c, changedBytes, ready ?? 'no ferry pair');
        return null;
      }
      const row = await measureFerry(ctx, pair, c, args, changedBytes, source, kind);
      add(row);
      return row;
    };

    // ---- tree: initial
    t = performance.now();
    const initial = await ferryCase('tree: initial', ['mirror', 'initialize', 'data', '--to', 'site-b', '--wait'], treeBytes, treeDir, 'tree', ferryReady);
    if (initial && !initial.ok) ferryReady = `the initial replication failed (${initial.error})`;
    for (const v of plan.variants) add(await rs.measure(ctx, 'tree: initial', v, `${treeDir}/`, treeBytes, 'tree', join(rsyncRoot, v.module)));
    await btrfsCase('tree: initial', 'snap1', null, treeBytes);
    tick('tree initial', t);

    // ---- tree: update
    t = performance.now();
    log('applying the standard change ...');
    change.tree = await changeTree(treeDir, seed, scale);
    if (anchor) await changeTree(anchor.data, seed, scale);
    const written = change.tree.changedBytes - change.tree.deleted.bytes;
    change.treeWrittenBytes = written;
    await settle();
    warmCache(treeDir);
    await ferryCase('tree: update', ['mirror', 'update', 'data', '--to', 'site-b', '--wait'], written, treeDir, 'tree', ferryReady);
    for (const v of plan.variants) add(await rs.measure(ctx, 'tree: update', v, `${treeDir}/`, written, 'tree', join(rsyncRoot, v.module)));
    await btrfsCase('tree: update', 'snap2', 'snap1', written);
    tick('tree update', t);

    // ---- tree: unchanged
    t = performance.now();
    await ferryCase('tree: unchanged', ['mirror', 'update', 'data', '--to', 'site-b', '--wait'], 0, treeDir, 'tree', ferryReady);
    for (const v of plan.variants) add(await rs.measure(ctx, 'tree: unchanged', v, `${treeDir}/`, 0, 'tree', join(rsyncRoot, v.module)));
    await btrfsCase('tree: unchanged', 'snap3', 'snap2', 0);
    tick('tree unchanged', t);
    if (pair) out.fixed.cli = measureCliToDaemon(pair.a.home);

    // ---- image
    if (!plan.noImage && data.image) {
      t = performance.now();
      warmCache(imagePath);
      let imageReady = ferryReady;
      if (imageReady === null && pair) {
        try {
          pair.addMirror(ctx, 'img', `image:${imagePath}`);
        } catch (err) {
          imageReady = err instanceof Error ? err.message : String(err);
        }
      }
      const size = data.image.size;
      const first = await ferryCase('image: initial', ['mirror', 'initialize', 'img', '--to', 'site-b', '--wait'], size, imagePath, 'image', imageReady);
      if (first && !first.ok) imageReady = `the initial replication failed (${first.error})`;
      for (const v of plan.imageVariants) add(await rs.measure(ctx, 'image: initial', v, imagePath, size, 'image', join(rsyncRoot, v.module, 'image.img')));
      change.image = changeImage(imagePath, seed, scale);
      await settle();
      warmCache(imagePath);
      await ferryCase('image: update', ['mirror', 'update', 'img', '--to', 'site-b', '--wait'], change.image.bytes, imagePath, 'image', imageReady);
      for (const v of plan.imageVariants) add(await rs.measure(ctx, 'image: update', v, imagePath, change.image.bytes, 'image', join(rsyncRoot, v.module, 'image.img')));
      tick('image', t);
    }
  } finally {
    await pair?.stop();
    anchor?.release();
  }
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      case: { type: 'string' },
      scale: { type: 'string' },
      files: { type: 'string' },
      seed: { type: 'string' },
      rtt: { type: 'string' },
      rate: { type: 'string' },
      loss: { type: 'string' },
      anchors: { type: 'string' },
      work: { type: 'string' },
      out: { type: 'string' },
      rsync: { type: 'string' },
      'no-image': { type: 'boolean' },
      direct: { type: 'boolean' },
      ferry: { type: 'string' },
      settle: { type: 'string' },
      timeout: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log([
      'usage: node bench/replication.ts [--case standard|million] [--scale 1 | --files 1000000] [--seed 1]',
      '         [--rtt 50ms] [--rate 200Mbit/s] [--loss 0.1%] [--anchors btrfs]',
      '         [--rsync default,compress,whole-file,no-whole-file] [--no-image] [--direct]',
      '         [--work DIR] [--out bench/out] [--ferry BIN] [--settle 3] [--timeout 3600]',
      'The three standard runs (docs/benchmark.md):',
      '  node bench/replication.ts --scale 1 --anchors btrfs',
      '  node bench/replication.ts --scale 0.25 --rtt 50ms --rate 200Mbit/s --anchors btrfs',
      '  node bench/replication.ts --case million',
    ].join('\n'));
    return;
  }
  if (values.ferry) bins.ferry = resolve(values.ferry);
  const caseName = values.case ?? (values.files !== undefined ? 'million' : 'standard');
  if (caseName !== 'standard' && caseName !== 'million') throw new Error(`--case must be standard or million, got ${values.case}`);
  if (caseName === 'million' && values.scale !== undefined) throw new Error('--scale is for the standard case; the million-file case takes --files N');
  if (caseName === 'standard' && values.files !== undefined) throw new Error('--files is for the million-file case (--case million)');
  const scale = parseScale(values.scale);
  const files = parseFiles(values.files);
  const seed = parseSeed(values.seed);
  const settleSeconds = Number(values.settle ?? '3');
  if (!(settleSeconds >= 0)) throw new Error(`--settle must be a number of seconds, got ${values.settle}`);
  const timeoutS = Number(values.timeout ?? '3600');
  if (!(timeoutS > 0)) throw new Error(`--timeout must be a positive number of seconds, got ${values.timeout}`);
  const spec = linkSpec(values.rtt, values.rate, values.loss);
  if (values.direct && !isLoopback(spec)) throw new Error('--direct runs without the proxies, so without a link model: drop --rtt/--rate/--loss or --direct');
  const shaped = spec.rateBitsPerSecond !== Infinity;
  // rsync -z is what a WAN user runs; on loopback it is shown for the tree, and the million-file case runs plain rsync only.
  const defaultVariants = caseName === 'million' && !shaped ? 'default' : 'default,compress';
  const variantNames = (values.rsync ?? defaultVariants).split(',').map((s) => s.trim()).filter(Boolean);
  for (const v of variantNames) if (!RSYNC_VARIANTS[v]) throw new Error(`unknown rsync variant ${v}; choose from ${Object.keys(RSYNC_VARIANTS).join(', ')}`);
  if (variantNames.length === 0) throw new Error('--rsync: name at least one variant');
  const variants = variantNames.map((v) => RSYNC_VARIANTS[v]);
  // The image with -z only across a rate-limited link (4 GiB more disk at scale 1).
  const imageVariants = [RSYNC_IMAGE.default, ...(variantNames.includes('compress') && shaped ? [RSYNC_IMAGE.compress] : [])];
  const baseline = shaped && variantNames.includes('compress') ? 'rsync -z' : variants[0].label;
  const anchorNames = (values.anchors ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  for (const a of anchorNames) if (a !== 'btrfs') throw new Error(`unknown anchor ${a}; the only one is btrfs`);
  if (anchorNames.length && caseName === 'million') throw new Error('--anchors is for the standard case');
  for (const bin of [GNU_TIME, '/usr/bin/rsync']) if (!existsSync(bin)) throw new Error(`${bin} not found: apt-get install -y rsync time`);
  const noImage = Boolean(values['no-image']);
  const anchors: string[] = [];
  let anchorBtrfs = anchorNames.includes('btrfs');
  if (anchorBtrfs) {
    const why = btrfsUnavailable();
    if (why) {
      anchors.push(`btrfs send/receive: skipped (${why})`);
      anchorBtrfs = false;
    }
  }

  const startedAt = new Date();
  const stamp = timestamp(startedAt);
  const work = resolve(values.work ?? join(tmpdir(), `ferry-repl-bench-${stamp}`));
  const outDir = resolve(values.out ?? join(ROOT, 'bench', 'out'));
  const need = caseName === 'million'
    ? millionDiskNeed(files, variants.length)
    : standardDiskNeed(seed, scale, variants.length, imageVariants.length, !noImage, anchorBtrfs);
  const space = checkFreeSpace(work, need);
  ensureFresh(work);
  const logs = join(work, 'logs');
  mkdirSync(logs, { recursive: true });
  mkdirSync(outDir, { recursive: true });
  const log = (s: string): void => console.error(s);
  trapSignals();

  const machine = machineOf(work);
  const versions: Record<string, string> = {
    ferry: toolVersion([bins.ferry, '--version']),
    rsync: toolVersion(['rsync', '--version']),
    ...(anchorBtrfs ? { 'btrfs-progs': toolVersion(['btrfs', '--version']) } : {}),
    node: process.version,
  };
  const proxies = values.direct ? null : LinkProxies.start(spec, seed);
  const ctx: Context = { logs, timeoutS, proxies };
  const rows: Row[] = [];
  const data: Report['data'] = {};
  const change: Report['change'] = {};
  const phases: Record<string, number> = {};
  const fixed: { cli?: CliToDaemon } = {};
  log(`work directory ${work}; ${caseName === 'million' ? `${files.toLocaleString('en')} files` : `scale ${scale}`}, seed ${seed}; ` +
    `link: ${values.direct ? 'none (--direct)' : describeLink(spec)}; rsync ${variants.map((v) => v.label).join(', ')}` +
    `${anchors.length ? `; ${anchors.join('; ')}` : ''}; about ${humanBytes(need.bytes)} of disk`);
  let lostSegments: { towardsB: number; towardsA: number } | undefined;
  const diskProbe: NonNullable<Report['diskProbe']> = {};
  diskProbe.before = probeDisk(work, 'before');
  log(`disk probe before the runs: ${describeProbe(diskProbe.before)}`);
  try {
    if (caseName === 'million') {
      const result: MillionResult = { rows };
      try {
        await runMillion(ctx, work, seed, files, variants, settleSeconds, log, result, phases);
      } finally {
        data.tree = result.data;
        change.million = result.change;
        fixed.cli = result.cli;
      }
    } else {
      await runStandard(ctx, work, { seed, scale, noImage, variants, imageVariants, anchorBtrfs, settleSeconds }, log, { rows, data, change, phases, anchors, fixed });
    }
  } finally {
    if (proxies) {
      if (spec.loss > 0) lostSegments = proxies.lostSegments();
      await proxies.close();
    }
    cleanupAll(); // anything left (should be nothing): processes, mounts, loop devices
  }

  diskProbe.after = probeDisk(work, 'after');
  log(`disk probe after the runs: ${describeProbe(diskProbe.after)}`);
  const finishedAt = new Date();
  const rep: Report = {
    case: caseName,
    started: startedAt.toISOString(),
    finished: finishedAt.toISOString(),
    totalSeconds: (finishedAt.getTime() - startedAt.getTime()) / 1000,
    ...(caseName === 'million' ? { files } : { scale }),
    seed,
    work,
    machine,
    link: { ...spec, description: values.direct ? 'loopback without proxies (--direct)' : describeLink(spec), lostSegments },
    versions,
    anchors,
    disk: { estimatedBytes: need.bytes, estimate: need.detail, usedBytes: diskUsed(work), freeBeforeBytes: space.freeBytes },
    diskProbe,
    baseline,
    notes: [],
    data,
    change,
    phases,
    rows,
    mismatches: mismatchesOf(rows),
    ...(fixed.cli || rows.some((x) => x.tool === 'ferry') ? { cli: fixed.cli } : {}),
  };
  rep.notes = notesFor(rep, proxies !== null, settleSeconds, anchorBtrfs);
  const unsettled = unsettledWarning(diskProbe.before, diskProbe.after);
  if (unsettled) {
    rep.notes.unshift(`WARNING: ${unsettled}`);
    log(`\n!!! ${unsettled}`);
  }
  const markdown = formatReport(rep);
  process.stdout.write(markdown);
  const base = join(outDir, `replication-${caseName === 'million' ? 'million-' : ''}${stamp}`);
  writeFileSync(`${base}.md`, markdown);
  writeFileSync(`${base}.json`, JSON.stringify(rep, (_k, v: unknown) => (v === Infinity ? 'Infinity' : v), 2) + '\n');
  log(`\nwrote ${base}.md and ${base}.json; data, sites and replicas stay in ${work}: delete them when done, and well before the next timed run (file creation is slow for minutes after a mass delete)`);
  if (rep.mismatches.length) {
    log(`\n!!! ${rep.mismatches.length} REPLICA MISMATCH(ES):\n${rep.mismatches.map((m) => `!!!   ${m}`).join('\n')}`);
    process.exitCode = 1;
  }
}

if (import.meta.main) {
  main().catch((err: unknown) => {
    // A plain Error says what to do (bad flags, no room); a programming error, or BENCH_DEBUG=1, shows where it came from.
    const where = err instanceof Error && (err.constructor !== Error || process.env.BENCH_DEBUG) ? `\n${err.stack}` : '';
    console.error(`replication bench: ${err instanceof Error ? err.message : String(err)}${where}`);
    cleanupAll();
    process.exit(1);
  });
}
