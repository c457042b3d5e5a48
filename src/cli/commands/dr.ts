// ferry failover, ferry failback
import type { Command } from 'commander';
import type { FailoverPlan, FailoverResult } from '../../dr/failover.ts';
import type { FailbackPlan, FailbackResult } from '../../dr/failback.ts';
import type { FailoverOutOfMigrate, MigratePlan, MigrateResult } from '../../dr/migrate.ts';
import type { RepointResult } from '../../dr/repoint.ts';
import { invoke } from '../invoke.ts';
import { EXIT_WARNINGS, formatBytes, formatDuration, printJson, type GlobalOptions } from '../output.ts';

export function printRepoint(volume: string, p: RepointResult): void {
  if (p.outcome === 'repointed') {
    process.stdout.write(`${p.peer}:${p.volume} now follows this site: ${p.base ? `from common base ${p.base}` : 'full sync'}, ${formatBytes(p.update?.transfer.bytes ?? 0)} sent${p.oldPrimary === 'unreachable' ? ' (the old primary could not be asked)' : ''}\n`);
  } else {
    process.stdout.write(`${p.peer}:${p.volume} was not re-pointed (${p.error?.code}: ${p.error?.message}); retry with \`ferry mirror repoint ${volume} --to ${p.peer}\`${p.outcome === 'needs-full-sync' ? ' --full' : ''}\n`);
  }
}

function printSteps(title: string, steps: string[], resuming?: string): void {
  // A workflow the journal shows in progress is carried on (or, for migrate, settled) by running the command again.
  if (resuming) process.stdout.write(`in progress (last completed step: ${resuming}); running the command again carries it on from there\n`);
  process.stdout.write(`${title}\n${steps.map((s, i) => `  ${i + 1}. ${s}`).join('\n')}\n`);
}

function resumingOf(r: unknown): string | undefined {
  return (r as { resuming?: string }).resuming;
}

export function register(program: Command, g: () => GlobalOptions): void {
  program
    .command('failover <volume>')
    .description('at a secondary: promote the replica to primary (the mirror becomes broken-off; its base is kept for failback)')
    .option('--force', 'proceed when the old primary is unreachable, or roll an inconsistent replica back to its newest complete snapshot')
    .option('--no-repoint', "do not re-point the old primary's other secondaries to this site (later: `ferry mirror repoint`)")
    .option('--dry-run', 'print the plan and stop')
    .action(async (volume: string, o: { force?: boolean; dryRun?: boolean; repoint?: boolean }) => {
      const r = (await invoke(g(), 'failover', { volume, force: o.force === true, dryRun: o.dryRun === true, repoint: o.repoint !== false })) as { plan: FailoverPlan } | (FailoverResult & { repointed?: RepointResult[]; migrate?: FailoverOutOfMigrate['migrate'] });
      if (g().json) return void (printJson(r), 'warnings' in r && warnAbout(r.warnings, '', true));
      if (!('snapshot' in r)) return printSteps(`failover of ${volume} would:`, r.plan.steps, resumingOf(r));
      // A migrate that stopped after this site demoted itself: settled by the target's answer, or closed by --force.
      for (const n of r.migrate?.notReturned ?? []) process.stdout.write(`${n.peer} still follows ${r.plan.oldPrimary} (${n.error}): run \`${n.run}\` once it answers\n`);
      if (r.instead) return void process.stdout.write(`${r.instead}\n`);
      if (r.migrate?.outcome === 'forced') process.stdout.write(`the migrate of ${volume} to ${r.plan.oldPrimary} is closed; its post hook ran here; the daemon asks ${r.plan.oldPrimary} when it is back: still this site's secondary, its mirror is restored; primary, both sites show split brain\n`);
      process.stdout.write(
        `${volume} is now primary here (was secondary of ${r.plan.oldPrimary}); base ${r.base || r.plan.snapshot} kept for failback; snapshot ${r.snapshot} taken\n` +
          (r.rollback ? `the replica was rolled back to ${r.rollback.to}${r.rollback.kept ? `; what it held besides the unfinished apply's own work is kept in snapshot ${r.rollback.kept}` : ''}\n` : '') +
          (r.notified ? `${r.plan.oldPrimary} was told and stopped updating\n` : `${r.plan.oldPrimary} could not be told (${r.notifyError}): make sure it does not keep writing\n`) +
          (r.splitBrainWith ? `${r.splitBrainWith} had taken ${volume} over from ${r.plan.oldPrimary} first: both are primary now, recorded here as split brain with ${r.splitBrainWith} (\`ferry status\` shows it; each site keeps all its writes)\n` : ''),
      );
      const beside = (r.splitBrainsWith ?? []).filter((n) => n !== r.splitBrainWith);
      if (beside.length) {
        process.stdout.write(`${beside.join(', ')} ${beside.length > 1 ? 'are' : 'is'} primary of ${volume} too, as ${r.plan.oldPrimary} knew (it had taken ${volume} over from there, or recorded a split brain): recorded here as split brain (\`ferry status\` shows it; each site keeps all its writes)\n`);
      }
      for (const p of r.repointed ?? []) printRepoint(volume, p);
      warnAbout(r.warnings, `snapshot ${r.snapshot}`);
    });

  program
    .command('failback <volume>')
    .description('at the old primary: keep its writes in a snapshot, become the secondary of the site that took over, and resync only the differences since the base')
    .option('--to <site>', 'the site that took over, when the volume had several mirrors')
    .option('--full', 'when no common base is left: copy what differs in full')
    .option('--dry-run', 'print the plan (what is kept, what is overwritten, bytes expected) and stop')
    .option('--wait', 'accepted for symmetry: failback always waits for the resync')
    .action(async (volume: string, o: { to?: string; full?: boolean; dryRun?: boolean }) => {
      const started = Date.now();
      const r = (await invoke(g(), 'failback', { volume, to: o.to, full: o.full === true, dryRun: o.dryRun === true })) as { plan: FailbackPlan } | FailbackResult;
      if (g().json) return void (printJson(r), 'warnings' in r && warnAbout(r.warnings, '', true));
      if (!('update' in r)) {
        const p = r.plan;
        printSteps(`failback of ${volume} from ${p.newPrimary}:${p.remoteVolume} would:`, p.steps, resumingOf(r));
        process.stdout.write(`  base: ${p.base ?? 'none'}${p.commonBase ? '' : ' (not common: full sync)'}\n`);
        process.stdout.write(`  writes here since the base (kept, then overwritten): ${p.divergentSnapshots.length} snapshot(s)${p.divergentSnapshots.length ? `: ${p.divergentSnapshots.join(', ')}` : ''}, plus any unsnapshotted changes\n`);
        process.stdout.write(`  expected to move: ${p.expectedBytes === null ? 'unknown' : `about ${formatBytes(p.expectedBytes)}`} (changed at ${p.newPrimary} since the base)\n`);
        return;
      }
      const t = r.update.transfer;
      process.stdout.write(
        `${volume} is now the secondary of ${r.plan.newPrimary}:${r.plan.remoteVolume}\n` +
          (r.kept ? `writes made here were kept in snapshot ${r.kept}${r.keptDiffers ? '' : ' (none since the base)'}; restore them with \`ferry restore ${volume} --snapshot ${r.kept} --target DIR\`\n` : '') +
          `resynced to ${r.update.snapshot}: ${formatBytes(t.bytes)} in ${t.objects} objects moved, in ${formatDuration(Date.now() - started)}\n`,
      );
      warnAbout(r.warnings, `the kept snapshot ${r.kept} (writes made here at a path it skipped are not in it)`);
    });

  program
    .command('migrate <volume>')
    .description('planned switchover with no data loss: stop the application here, send a final snapshot to every secondary, make SITE primary (mirroring back here), start the application there; rolls back on failure')
    .requiredOption('--to <site>', 'the secondary that becomes primary')
    .option('--dry-run', 'print the plan and stop')
    .option('--wait', 'accepted for symmetry: migrate always waits')
    .action(async (volume: string, o: { to: string; dryRun?: boolean }) => {
      const started = Date.now();
      const r = (await invoke(g(), 'migrate', { volume, to: o.to, dryRun: o.dryRun === true })) as { plan: MigratePlan } | MigrateResult;
      if (g().json) return printJson(r);
      if (!('final' in r)) return printSteps(`migrate of ${volume} to ${o.to} would:`, r.plan.steps, resumingOf(r));
      process.stdout.write(`${volume} migrated to ${r.plan.to}:${r.plan.remoteVolume} with final snapshot ${r.final} on every site in ${formatDuration(Date.now() - started)}; this site is now its secondary\n`);
      if (r.remotePost && r.remotePost.exitCode !== 0) process.stderr.write(`warning: the post hook at ${r.plan.to} failed: ${r.remotePost.output}\n`);
    });
}

/** Capture warnings of a snapshot a workflow took: printed, and the exit status says so (8). */
function warnAbout(warnings: Array<{ path: string; message: string }> | undefined, what: string, quiet = false): void {
  if (!warnings?.length) return;
  process.exitCode = EXIT_WARNINGS;
  if (quiet) return;
  process.stderr.write(`warning: ${warnings.length} warning(s) while capturing ${what}:\n`);
  for (const w of warnings) process.stderr.write(`warning: ${w.path}: ${w.message}\n`);
  process.exitCode = EXIT_WARNINGS;
}
