// A disk probe, run before and after the timed runs: a fixed small workload of file creation and
// fsync, timed (wall and this process's CPU, the kernel's share included). On this machine's ext4 a
// heavy writer soon after a mass delete ran about twice as slow, in wall time and in CPU (an A/B at
// scale 1 in the eleventh session: the same build 154 s first, then 76-81 s), and ferry, which
// writes two stores and a replica with fsyncs, feels it where rsync and btrfs receive hardly do. The
// report shows both probes; a first one much slower than the last says the run began on a disk that
// had not settled, and its first figures (the initialize) are suspect.
import { closeSync, fsyncSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

export interface DiskProbe {
  files: number;
  bytes: number;
  seconds: number;
  cpuSeconds: number;
}

/** Files the probe writes, and their size: 250 MiB, about the size of one ferry store's pack of small objects. */
export const PROBE_FILES = 2000;
export const PROBE_FILE_BYTES = 128 * 1024;

/**
 * Write `files` files of PROBE_FILE_BYTES under `dir`/probe-<tag>, each fsynced; timed. The files
 * stay (they go with the work directory): deleting them would itself slow the runs after it (on
 * this disk each probe that deleted its files made the next one slower: 1.3, 2.3, 2.7, 3.7 s).
 */
export function probeDisk(dir: string, tag: string, files = PROBE_FILES): DiskProbe {
  const where = join(dir, `probe-${tag}`);
  mkdirSync(where, { recursive: true });
  const block = randomBytes(PROBE_FILE_BYTES);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < files; i++) {
    block.writeUInt32LE(i, 0); // no two files alike
    const fd = openSync(join(where, `f${i}`), 'w');
    try {
      writeSync(fd, block);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
  const dfd = openSync(where, 'r');
  fsyncSync(dfd);
  closeSync(dfd);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { files, bytes: files * PROBE_FILE_BYTES, seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
}

/** How a probe reads in the report. */
export function describeProbe(p: DiskProbe): string {
  return `${p.files.toLocaleString('en')} files of ${PROBE_FILE_BYTES / 1024} KiB written and fsynced in ${p.seconds.toFixed(2)} s (CPU ${p.cpuSeconds.toFixed(2)} s)`;
}

/**
 * A first probe this much slower than the last makes the report warn that the disk had not settled.
 * A settled disk here measures 1.17-1.3 s; the twelfth session's loopback run probed 1.65 s before
 * and 1.17 s after (1.41x) and its initialize took 147 s against 85 s on a settled disk.
 */
export const UNSETTLED_RATIO = 1.3;

/** The warning, if the probes call for one. */
export function unsettledWarning(before: DiskProbe | undefined, after: DiskProbe | undefined): string | undefined {
  if (!before || !after || after.seconds <= 0) return undefined;
  const ratio = before.seconds / after.seconds;
  if (ratio < UNSETTLED_RATIO) return undefined;
  return `the disk probe before the runs took ${ratio.toFixed(1)}x as long as after them (${before.seconds.toFixed(2)} s against ${after.seconds.toFixed(2)} s): the disk had not settled (a mass delete shortly before?), so the first figures, the initialize's above all, are likely inflated; rerun on a disk left alone (docs/benchmark.md, "Hygiene")`;
}
