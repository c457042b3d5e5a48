// ferry restore, ferry verify, ferry gc
import type { Command } from 'commander';
import { FerryError } from '../../core/errors.ts';
import type { VerifyReport } from '../../snapshot/verify.ts';
import { invoke } from '../invoke.ts';
import { pathArgument } from '../parse.ts';
import { EXIT_WARNINGS, formatBytes, formatDuration, printJson, type GlobalOptions } from '../output.ts';
import { resolve } from 'node:path';

export function register(program: Command, g: () => GlobalOptions): void {
  program
    .command('restore <volume>')
    .description('restore a snapshot (all members, one member, or a path inside one) to a target')
    .requiredOption('--snapshot <ref>', 'snapshot id, unique id prefix, name, or "latest"')
    .requiredOption('--target <dir>', 'where to restore; must be empty or new unless --force')
    .option('--member <name>', 'restore only this member (required with --path when the volume has several)')
    .option('--path <subpath>', 'restore only this file or directory (member-relative; a name that is not UTF-8 as the shell gives it, or spelled as `snapshot diff` shows it, with \\xHH)')
    .option('--force', 'restore over a non-empty target, replacing entries of the same name')
    .option('--no-owner', 'do not restore ownership even when running as root')
    .action((volume: string, o: { snapshot: string; target: string; member?: string; path?: string; force?: boolean; owner?: boolean }) =>
      (async () => {
        const r = (await invoke(g(), 'restore', { volume, snapshot: o.snapshot, target: resolve(o.target), member: o.member, path: o.path === undefined ? undefined : pathArgument(o.path, '--path'), force: o.force === true, noOwner: o.owner === false })) as {
          snapshot: string;
          results: Array<{ member: string; target: string; files: number; dirs: number; bytes: number }>;
          warnings: Array<{ path: string; message: string }>;
          seconds: number;
        };
        if (g().json) printJson(r);
        else {
          for (const w of r.warnings) process.stderr.write(`warning: ${w.path}: ${w.message}\n`);
          for (const x of r.results) process.stdout.write(`restored ${x.member} of ${r.snapshot} to ${x.target}: ${x.files} files, ${x.dirs} dirs, ${formatBytes(x.bytes)} in ${formatDuration(r.seconds * 1000)}\n`);
        }
        if (r.warnings.length) process.exitCode = EXIT_WARNINGS;
      })(),
    );

  program
    .command('verify [volume]')
    .description('read every object of every snapshot (of one volume, or all) and check it against its hash')
    .action((volume: string | undefined) =>
      (async () => {
        const report = (await invoke(g(), 'verify', { volume })) as VerifyReport & { seconds: number; names: Record<string, string> };
        const names = report.names;
        const failure = report.damaged.length
          ? new FerryError('VERIFY_FAILED', `${report.damaged.length} damaged object(s) in ${report.damagedSnapshots.length} snapshot(s): ${report.damagedSnapshots.map((id) => names[id] ?? id).join(', ')}; restore what you can from other snapshots or a replica, then delete the damaged snapshots`)
          : undefined;
        if (g().json) {
          // One JSON document: the report, with the error in it when verify failed.
          printJson({ ...report, ...(failure ? { error: failure.toJSON() } : {}) });
          if (failure) {
            process.stderr.write(`ferry: ${failure.message} [${failure.code}]\n`);
            process.exitCode = failure.exitCode;
          }
          return;
        }
        process.stdout.write(`checked ${report.snapshots} snapshots, ${report.objectsChecked} objects, ${formatBytes(report.bytesChecked)} in ${formatDuration(report.seconds * 1000)}\n`);
        for (const d of report.damaged) {
          process.stdout.write(`DAMAGED ${d.kind} ${d.id}: ${d.error}\n`);
          for (const u of d.usedBy) process.stdout.write(`  used by ${names[u.snapshot] ?? u.snapshot} ${u.member ? `${u.member}:${u.path || '/'}` : '(its manifest)'}\n`);
        }
        if (failure) throw failure;
      })(),
    );

  program
    .command('gc')
    .description('collect objects no snapshot references (plan, then execute)')
    .option('--dry-run', 'print the plan and stop')
    .action((o: { dryRun?: boolean }) =>
      (async () => {
        const r = (await invoke(g(), 'gc', { dryRun: o.dryRun === true })) as { executed: boolean; plan: unknown; freed: number; collected: number };
        if (g().json) return printJson(r);
        process.stdout.write(`${r.executed ? 'collected' : 'would collect'} ${r.collected} objects, ${formatBytes(r.freed)}\n`);
      })(),
    );
}
