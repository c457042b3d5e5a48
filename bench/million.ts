// The million-file case (bench/replication.ts --case million, or --files N):
// 1,000,000 files of 1-4 KiB in 1,000 directories, where fixed costs per file
// (walks, stats, catalog rows, tree entries, file creation) dominate and the
// bytes do not. Half the files random, half log-like text, each file its own
// stream (bench/prng.ts), deterministic from the seed.
//
//   node bench/million.ts --out DIR [--files 1000000] [--seed 1]   (generates DIR/tree only)
//
// Cases, each beside rsync: local snapshots (ferry snapshot create without a
// daemon; rsync -a --delete between two local paths): first, after 1,000
// files changed, unchanged; replication (ferry mirror between two daemons;
// rsync to a daemon, across the same link): initialize, update after 1,000
// files changed, update with nothing changed. Every process's peak RSS.

import { mkdirSync } from 'node:fs';
import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { warmCache } from './common.ts';
import { type ContentKind, fillContent, TextSource } from './content.ts';
import { ensureFresh, type GenStats, KiB, parseSeed } from './gen.ts';
import { type CliToDaemon, type Context, FerryPair, measureCliToDaemon, logRow, measureFerry, measureFerrySnapshot, measureLocalRsync, type Row, RsyncServer, type RsyncVariant } from './measure.ts';
import { bins, must, sleep } from './procs.ts';
import { Rng } from './prng.ts';
import { DiskEstimate, type DiskNeed } from './sysinfo.ts';

export const MILLION = {
  files: 1_000_000,
  filesPerDirectory: 1000,
  minSize: 1 * KiB,
  maxSize: 4 * KiB,
  /** Files rewritten by the change: one in a thousand. */
  changedPerMille: 1,
} as const;

/** The label of rsync between two local paths. */
export const LOCAL_RSYNC = 'rsync (local)';

export interface MillionLayout {
  files: number;
  directories: number;
  perDirectory: number;
}

export function millionLayout(files: number): MillionLayout {
  const directories = Math.max(1, Math.round(files / MILLION.filesPerDirectory));
  return { files, directories, perDirectory: Math.ceil(files / directories) };
}

function pathOf(layout: MillionLayout, i: number): { dir: string; name: string; kind: ContentKind } {
  const kind: ContentKind = i % 2 === 0 ? 'random' : 'text';
  return {
    dir: `d${String(Math.floor(i / layout.perDirectory)).padStart(4, '0')}`,
    name: `f${String(i).padStart(7, '0')}.${kind === 'random' ? 'bin' : 'txt'}`,
    kind,
  };
}

/** One file's content: its size and bytes from its own stream. */
function content(seed: number, i: number, kind: ContentKind, ...tags: Array<string | number>): Uint8Array {
  const rng = new Rng(seed, ...tags, i);
  const buf = new Uint8Array(rng.int(MILLION.minSize, MILLION.maxSize));
  fillContent(kind, rng, new TextSource(seed, rng), buf);
  return buf;
}

/** Runs jobs over [0, n) with `limit` in flight, in index order (directories fill one after the other). */
async function forEachLimited(n: number, limit: number, job: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, n) }, async () => {
    while (next < n) await job(next++);
  }));
}

/**
 * Creates root (new or empty) and the files in it. File creation is the slow
 * part: eight in flight keep libuv's threads busy while the next contents are
 * generated here.
 */
export async function generateMillion(root: string, seed: number, files: number, log: (s: string) => void = () => {}): Promise<GenStats> {
  const started = performance.now();
  ensureFresh(root);
  const layout = millionLayout(files);
  for (let d = 0; d < layout.directories; d++) mkdirSync(join(root, pathOf(layout, d * layout.perDirectory).dir));
  const stats: GenStats = { directories: layout.directories, files: 0, bytes: 0, randomBytes: 0, textBytes: 0, seconds: 0 };
  let reported = performance.now();
  await forEachLimited(files, 8, async (i) => {
    const { dir, name, kind } = pathOf(layout, i);
    const buf = content(seed, i, kind, 'million');
    await writeFile(join(root, dir, name), buf, { flag: 'wx' });
    stats.files++;
    stats.bytes += buf.length;
    if (kind === 'random') stats.randomBytes += buf.length;
    else stats.textBytes += buf.length;
    if (performance.now() - reported > 10_000) {
      reported = performance.now();
      log(`  ${stats.files.toLocaleString('en')} of ${files.toLocaleString('en')} files`);
    }
  });
  stats.seconds = (performance.now() - started) / 1000;
  return stats;
}

export interface MillionChange {
  files: number;
  /** Bytes written (the files' new sizes). */
  bytes: number;
  seconds: number;
}

/** Rewrites one file in a thousand (at least one) with new content of a new size, each from its own stream. */
export async function changeMillion(root: string, seed: number, files: number, round = 1): Promise<MillionChange> {
  const started = performance.now();
  const layout = millionLayout(files);
  const count = Math.max(1, Math.round((files * MILLION.changedPerMille) / 1000));
  const picks = new Rng(seed, 'million-change', round).sample(files, count);
  let bytes = 0;
  for (const i of picks) {
    const { dir, name, kind } = pathOf(layout, i);
    const buf = content(seed, i, kind, 'million-change', round);
    const handle = await open(join(root, dir, name), 'r+');
    try {
      await handle.truncate(0);
      await handle.write(buf, 0, buf.length, 0);
    } finally {
      await handle.close();
    }
    bytes += buf.length;
  }
  return { files: count, bytes, seconds: (performance.now() - started) / 1000 };
}

/** What a million-file run writes: (3 + rsync variants) copies of the tree, three ferry stores. */
export function millionDiskNeed(files: number, rsyncVariants: number): DiskNeed {
  const layout = millionLayout(files);
  const copy = files * 4 * KiB + layout.directories * 4 * KiB;
  // Stored objects (random content stored as is, text compressed about 3x), a tree entry and catalog rows per
  // file: 2.2 KiB a file measured at 20,000 files.
  const store = files * 2.5 * KiB;
  return new DiskEstimate()
    .add('the tree', copy, files + layout.directories)
    .add('ferry replica', copy, files + layout.directories)
    .add(`rsync destinations (${1 + rsyncVariants}: local and to the daemon)`, copy * (1 + rsyncVariants), (files + layout.directories) * (1 + rsyncVariants))
    .add('ferry stores (3: local, site a, site b)', 3 * store, 3000)
    .need;
}

export interface MillionResult {
  data?: GenStats;
  change?: MillionChange;
  rows: Row[];
  /** the CLI's fixed cost to the source daemon, at the end */
  cli?: CliToDaemon;
}

/** The whole million-file case; rows are pushed as they are measured (a failure leaves the rest n/a, the run goes on). */
export async function runMillion(ctx: Context, work: string, seed: number, files: number, variants: RsyncVariant[],
  settleSeconds: number, log: (s: string) => void, result: MillionResult, phases: Record<string, number>): Promise<void> {
  const tree = join(work, 'data', 'tree');
  const rows = result.rows;
  const add = (row: Row): void => {
    rows.push(row);
    logRow(row, log);
  };
  const tick = (name: string, since: number): void => {
    phases[name] = (performance.now() - since) / 1000;
  };
  let t = performance.now();
  log(`generating ${files.toLocaleString('en')} files ...`);
  result.data = await generateMillion(tree, seed, files, log);
  log(`  generated in ${result.data.seconds.toFixed(1)} s`);
  await sleep(settleSeconds * 1000);
  tick('generate', t);
  t = performance.now();
  warmCache(tree);
  tick('warm', t);

  t = performance.now();
  const localHome = join(work, 'ferry', 'local');
  let localReady: string | null = null;
  try {
    must([bins.ferry, 'init', '--home', localHome, '--name', 'local'], join(ctx.logs, 'ferry-init-local'));
    must([bins.ferry, 'volume', 'create', 'files', '--member', tree, '--home', localHome], join(ctx.logs, 'ferry-volume-local'));
  } catch (err) {
    localReady = err instanceof Error ? err.message : String(err);
  }
  const started = await FerryPair.tryStart(ctx, join(work, 'ferry'), 'files', tree, log);
  const pair = typeof started === 'string' ? null : started;
  let mirrorReady = typeof started === 'string' ? started : null;
  const rsyncRoot = join(work, 'rsync');
  const rs = await RsyncServer.setup(ctx, rsyncRoot, variants.map((v) => v.module));
  const localDest = join(work, 'rsync-local', 'tree');
  tick('setup', t);
  const failed = (tool: string, caseName: string, why: string, changedBytes: number): void => add({ tool, case: caseName, command: '', ok: false, error: why, changedBytes });

  try {
    const localCase = async (caseName: string, changedBytes: number): Promise<void> => {
      if (localReady === null) {
        const row = await measureFerrySnapshot(ctx, localHome, caseName, 'files', changedBytes);
        add(row);
        if (!row.ok) localReady = `an earlier snapshot failed (${row.error})`;
      } else failed('ferry', caseName, localReady, changedBytes);
      add(await measureLocalRsync(ctx, caseName, LOCAL_RSYNC, ['-a', '--delete'], tree, localDest, changedBytes));
    };
    const mirrorCase = async (caseName: string, verb: 'initialize' | 'update', changedBytes: number): Promise<void> => {
      if (mirrorReady === null && pair) {
        const row = await measureFerry(ctx, pair, caseName, ['mirror', verb, 'files', '--to', 'site-b', '--wait'], changedBytes, tree, 'tree');
        add(row);
        if (!row.ok) mirrorReady = `an earlier mirror run failed (${row.error})`;
      } else failed('ferry', caseName, mirrorReady ?? 'no ferry pair', changedBytes);
      for (const v of variants) add(await rs.measure(ctx, caseName, v, `${tree}/`, changedBytes, 'tree', join(rsyncRoot, v.module)));
    };

    t = performance.now();
    const bytes = result.data.bytes;
    await localCase('local: first', bytes);
    await mirrorCase('mirror: initialize', 'initialize', bytes);
    tick('first and initialize', t);

    t = performance.now();
    log('changing files ...');
    result.change = await changeMillion(tree, seed, files);
    await sleep(settleSeconds * 1000);
    warmCache(tree);
    const changed = `${result.change.files.toLocaleString('en')} changed`;
    await localCase(`local: ${changed}`, result.change.bytes);
    await mirrorCase(`mirror: ${changed}`, 'update', result.change.bytes);
    tick('changed', t);

    t = performance.now();
    await localCase('local: unchanged', 0);
    await mirrorCase('mirror: unchanged', 'update', 0);
    tick('unchanged', t);
    if (pair) result.cli = measureCliToDaemon(pair.a.home);
  } finally {
    await pair?.stop();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { out: { type: 'string' }, files: { type: 'string' }, seed: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help || !values.out) {
    console.log('usage: node bench/million.ts --out DIR [--files 1000000] [--seed 1]   (DIR/tree)');
    process.exit(values.help ? 0 : 2);
  }
  const files = parseFiles(values.files);
  const stats = await generateMillion(join(values.out, 'tree'), parseSeed(values.seed), files, (s) => console.error(s));
  console.log(JSON.stringify(stats, null, 2));
}

export function parseFiles(text: string | undefined): number {
  const files = Number(text ?? String(MILLION.files));
  if (!Number.isInteger(files) || files < 1 || files > 10_000_000) throw new Error(`--files must be a whole number from 1 to 10,000,000, got ${text}`);
  return files;
}

if (import.meta.main) {
  main().catch((err: unknown) => {
    console.error(`million: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
