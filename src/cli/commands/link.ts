// ferry link create | refresh | list | remove
import type { Command } from 'commander';
import type { LinkStatus, RefreshResult } from '../../dr/links.ts';
import { invoke } from '../invoke.ts';
import { EXIT_WARNINGS, formatBytes, formatDuration, formatTime, printJson, table, type GlobalOptions } from '../output.ts';
import { DURATION } from '../../core/units.ts';
import { parseDuration } from '../parse.ts';
import { resolve } from 'node:path';

export function register(program: Command, g: () => GlobalOptions): void {
  const link = program.command('link').description('writable copies of a snapshot at a stable path, refreshed from production');
  link
    .command('create <path>')
    .description('materialize a snapshot of a volume member at PATH (new or empty) as a writable copy')
    .requiredOption('--volume <volume>', 'the volume')
    .option('--member <name>', 'which member, when the volume has several')
    .option('--snapshot <ref>', 'snapshot id, name, or "latest" (followed on each refresh)', 'latest')
    .option('--schedule <interval>', 'refresh every interval, e.g. 1d')
    .option('--min-delay <duration>', 'refuse refreshes closer together than this unless --force', '0s')
    .option('--max-delay <duration>', 'status warns when the copy is older than this', '1d')
    .action(async (path: string, o: { volume: string; member?: string; snapshot: string; schedule?: string; minDelay: string; maxDelay: string }) => {
      const l = (await invoke(g(), 'link.create', {
        path: resolve(path),
        volume: o.volume,
        member: o.member,
        snapshot: o.snapshot,
        scheduleS: o.schedule === undefined ? null : parseDuration(o.schedule, DURATION.schedule, '--schedule'),
        minDelayS: parseDuration(o.minDelay, DURATION.minDelay, '--min-delay'),
        maxDelayS: parseDuration(o.maxDelay, DURATION.maxDelay, '--max-delay'),
      })) as LinkStatus;
      if (g().json) return printJson(l);
      process.stdout.write(`link ${l.path} shows ${l.volume}:${l.member} at snapshot ${l.snapshot}; writes there are discarded on refresh\n`);
    });
  link
    .command('refresh <path>')
    .description('discard writes in the copy and bring it to the newest (or named) snapshot, at the same path')
    .option('--snapshot <ref>', 'refresh to this snapshot instead of the link\'s own reference')
    .option('--force', 'refresh even within --min-delay')
    .action(async (path: string, o: { snapshot?: string; force?: boolean }) => {
      const r = (await invoke(g(), 'link.refresh', { path: resolve(path), snapshot: o.snapshot, force: o.force === true })) as RefreshResult;
      if (g().json) printJson(r);
      else {
        if (r.discarded) process.stderr.write(`warning: ${r.discarded} path(s) changed in ${r.link.path} since it was made were discarded\n`);
        process.stdout.write(`refreshed ${r.link.path} from ${r.from} to ${r.to}: ${formatBytes(r.bytesWritten)} written\n`);
      }
      if (r.discarded) process.exitCode = EXIT_WARNINGS;
    });
  link
    .command('list')
    .description('list links with their snapshot, age and health')
    .action(async () => {
      const ls = (await invoke(g(), 'link.list', {})) as LinkStatus[];
      if (g().json) return printJson(ls);
      if (ls.length === 0) return void process.stdout.write('no links; create one with `ferry link create PATH --volume VOLUME`\n');
      process.stdout.write(table(['PATH', 'VOLUME', 'SNAPSHOT', 'REFRESHED', 'AGE', 'HEALTH'], ls.map((l) => [l.path, `${l.volume}:${l.member}`, l.snapshot, formatTime(l.refreshedAt), formatDuration(l.ageSeconds * 1000), l.health])) + '\n');
    });
  link
    .command('remove <path>')
    .description('forget a link and delete its copy (or keep the files with --keep-data)')
    .option('--keep-data', 'leave the files at PATH')
    .action(async (path: string, o: { keepData?: boolean }) => {
      await invoke(g(), 'link.remove', { path: resolve(path), keepData: o.keepData === true });
      if (g().json) printJson({ removed: resolve(path) });
      else process.stdout.write(`removed link ${resolve(path)}${o.keepData ? ' (files kept)' : ''}\n`);
    });
}
