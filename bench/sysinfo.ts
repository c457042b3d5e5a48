// What a benchmark report says about where it ran (CPU, cores, memory,
// kernel, the work directory's filesystem, tool versions), and the free-space
// check every runner makes before it writes anything.

import { spawnSync } from 'node:child_process';
import { existsSync, statfsSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { dirname, resolve } from 'node:path';

import { humanBytes } from './common.ts';

export interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  kernel: string;
  node: string;
  /** The work directory's filesystem: type, device, mount point. */
  filesystem: string;
}

/** The nearest existing directory at or above path. */
function existingAncestor(path: string): string {
  let dir = resolve(path);
  while (!existsSync(dir) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

export function machineOf(workDir: string): Machine {
  const r = spawnSync('findmnt', ['-n', '-o', 'FSTYPE,SOURCE,TARGET', '-T', existingAncestor(workDir)], { encoding: 'utf8' });
  const [type, source, target] = (r.status === 0 ? r.stdout.trim() : '').split(/\s+/);
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    node: process.version,
    filesystem: type ? `${type} on ${source} (mounted at ${target})` : 'unknown',
  };
}

export function describeMachine(m: Machine): string {
  return `${m.cores} cores (${m.cpu}), ${m.memoryGiB} GiB, Linux ${m.kernel}, Node ${m.node}; work directory on ${m.filesystem}`;
}

/** The first non-empty line a command prints (stdout, else stderr), or 'not found'. */
export function toolVersion(argv: string[]): string {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' });
  if (r.error || r.status !== 0) return 'not found';
  return (`${r.stdout}\n${r.stderr}`.split('\n').find((l) => l.trim()) ?? '').trim();
}

/** What a run is expected to write, with the reckoning behind it. */
export interface DiskNeed {
  bytes: number;
  inodes: number;
  /** One entry per item of the estimate, e.g. 'ferry stores (2): 5.6 GiB'. */
  detail: string[];
}

/** A need built item by item. */
export class DiskEstimate {
  readonly need: DiskNeed = { bytes: 0, inodes: 0, detail: [] };

  add(what: string, bytes: number, inodes = 0): this {
    this.need.bytes += bytes;
    this.need.inodes += inodes;
    this.need.detail.push(`${what}: ${humanBytes(bytes)}${inodes ? `, ${inodes.toLocaleString('en')} inodes` : ''}`);
    return this;
  }
}

/** Margin on top of an estimate: 10 % and 2 GiB, so that the disk is never filled to the last block. */
const MARGIN_FACTOR = 1.1;
const MARGIN_BYTES = 2 * 2 ** 30;

/**
 * Refuses to start a run that would not fit: the free space (and inodes) of
 * the work directory's filesystem against the estimate plus a margin.
 */
export function checkFreeSpace(workDir: string, need: DiskNeed): { freeBytes: number; freeInodes: number; neededBytes: number } {
  const s = statfsSync(existingAncestor(workDir));
  const freeBytes = Number(s.bavail) * Number(s.bsize);
  const freeInodes = Number(s.ffree);
  const neededBytes = Math.ceil(need.bytes * MARGIN_FACTOR + MARGIN_BYTES);
  const neededInodes = Math.ceil(need.inodes * MARGIN_FACTOR);
  const short: string[] = [];
  if (freeBytes < neededBytes) short.push(`${humanBytes(neededBytes)} free (${humanBytes(need.bytes)} estimated, plus 10 % and 2 GiB), ${humanBytes(freeBytes)} available`);
  if (freeInodes > 0 && freeInodes < neededInodes) short.push(`${neededInodes.toLocaleString('en')} free inodes, ${freeInodes.toLocaleString('en')} available`);
  if (short.length) {
    throw new Error(`not enough room in ${existingAncestor(workDir)} for this run: it needs ${short.join('; and ')}.\n` +
      `  estimate: ${need.detail.join('; ')}\n` +
      '  Free some space (old work directories: delete them well before a timed run, see docs/benchmark.md), ' +
      'pick another --work on a larger filesystem, or run less (a smaller --scale or --files, --no-image, fewer --rsync variants, no --anchors).');
  }
  return { freeBytes, freeInodes, neededBytes };
}

/** Bytes allocated under dir (du -s), or NaN. */
export function diskUsed(dir: string): number {
  const r = spawnSync('du', ['-s', '-B1', dir], { encoding: 'utf8' });
  return r.status === 0 ? Number(r.stdout.split(/\s/)[0]) : NaN;
}
