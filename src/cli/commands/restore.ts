// ferry restore, ferry verify, ferry gc
import type { Command } from 'commander';
import { FerryError } from '../../core/errors.ts';
import { collectGarbage, listSnapshots, resolveSnapshot, summarizeGc } from '../../site/snapshots.ts';
import { getVolume } from '../../site/volumes.ts';
import { readManifest } from '../../snapshot/graph.ts';
import { restoreImage, restoreTree } from '../../snapshot/restore.ts';
import { verifySnapshots } from '../../snapshot/verify.ts';
import { withSite } from '../context.ts';
import { EXIT_WARNINGS, formatBytes, formatDuration, printJson, ProgressLine, type GlobalOptions } from '../output.ts';
import { join, resolve } from 'node:path';

export function register(program: Command, g: () => GlobalOptions): void {
  program
    .command('restore <volume>')
    .description('restore a snapshot (all members, one member, or a path inside one) to a target')
    .requiredOption('--snapshot <ref>', 'snapshot id, unique id prefix, name, or "latest"')
    .requiredOption('--target <dir>', 'where to restore; must be empty or new unless --force')
    .option('--member <name>', 'restore only this member (required with --path when the volume has several)')
    .option('--path <subpath>', 'restore only this file or directory (member-relative)')
    .option('--force', 'restore over a non-empty target, replacing entries of the same name')
    .option('--no-owner', 'do not restore ownership even when running as root')
    .action((volume: string, o: { snapshot: string; target: string; member?: string; path?: string; force?: boolean; owner?: boolean }) =>
      withSite(g(), 'restore', (site) => {
        const s = resolveSnapshot(site, volume, o.snapshot);
        const manifest = readManifest(site.store, s.manifest);
        let members = manifest.members;
        if (o.member) {
          members = members.filter((m) => m.name === o.member);
          if (members.length === 0) throw new FerryError('USAGE', `snapshot ${s.id} has no member ${o.member}; members: ${manifest.members.map((m) => m.name).join(', ')}`);
        } else if (o.path && members.length > 1) {
          throw new FerryError('USAGE', `volume ${volume} has several members; say which with --member (${manifest.members.map((m) => m.name).join(', ')})`);
        }
        const target = resolve(o.target);
        const warnings: Array<{ path: string; message: string }> = [];
        const started = Date.now();
        const results = [];
        for (const m of members) {
          const t = members.length > 1 || (manifest.members.length > 1 && !o.member) ? join(target, m.name) : target;
          const opts = { store: site.store, force: o.force, noOwner: o.owner === false, onWarning: (w: { path: string; message: string }) => warnings.push(w) };
          if (m.kind === 'image') {
            if (o.path) throw new FerryError('USAGE', `--path does not apply to image member ${m.name}`);
            results.push({ member: m.name, target: t, ...restoreImage(m.root, t, opts) });
          } else results.push({ member: m.name, target: t, ...restoreTree(m.root, o.path ?? '', t, opts) });
        }
        const ms = Date.now() - started;
        if (g().json) printJson({ snapshot: s.id, results, warnings, seconds: ms / 1000 });
        else {
          for (const w of warnings) process.stderr.write(`warning: ${w.path}: ${w.message}\n`);
          for (const r of results) process.stdout.write(`restored ${r.member} of ${s.id} to ${r.target}: ${r.files} files, ${r.dirs} dirs, ${formatBytes(r.bytes)} in ${formatDuration(ms)}\n`);
        }
        if (warnings.length) process.exitCode = EXIT_WARNINGS;
      }),
    );

  program
    .command('verify [volume]')
    .description('read every object of every snapshot (of one volume, or all) and check it against its hash')
    .action((volume: string | undefined) =>
      withSite(g(), 'verify', (site) => {
        const vols = volume ? [getVolume(site, volume).name] : site.db.all<{ name: string }>('SELECT name FROM volumes ORDER BY name').map((r) => r.name);
        const snaps = vols.flatMap((v) => listSnapshots(site, v));
        const progress = new ProgressLine();
        const started = Date.now();
        const report = verifySnapshots(site.store, snaps, (n) => progress.update(`verified ${n} objects`));
        progress.done();
        const ms = Date.now() - started;
        const names = new Map<string, string>(snaps.map((s) => [s.id, `${s.volume}@${s.name ?? s.id}`]));
        site.event({ kind: 'verify', volume: volume ?? null, outcome: report.damaged.length ? 'failed' : 'ok', detail: { objects: report.objectsChecked, damaged: report.damaged.length } });
        if (g().json) printJson({ ...report, seconds: ms / 1000 });
        else {
          process.stdout.write(`checked ${report.snapshots} snapshots, ${report.objectsChecked} objects, ${formatBytes(report.bytesChecked)} in ${formatDuration(ms)}\n`);
          for (const d of report.damaged) {
            process.stdout.write(`DAMAGED ${d.kind} ${d.id}: ${d.error}\n`);
            for (const u of d.usedBy) process.stdout.write(`  used by ${names.get(u.snapshot) ?? u.snapshot} ${u.member}:${u.path || '/'}\n`);
          }
        }
        if (report.damaged.length) {
          throw new FerryError('VERIFY_FAILED', `${report.damaged.length} damaged object(s) in ${report.damagedSnapshots.length} snapshot(s): ${report.damagedSnapshots.map((id) => names.get(id)).join(', ')}; restore what you can from other snapshots or a replica, then delete the damaged snapshots`);
        }
      }),
    );

  program
    .command('gc')
    .description('collect objects no snapshot references (plan, then execute)')
    .option('--dry-run', 'print the plan and stop')
    .action((o: { dryRun?: boolean }) =>
      withSite(g(), 'gc', (site) => {
        const r = collectGarbage(site, { dryRun: o.dryRun });
        if (g().json) return printJson({ executed: r.executed, plan: summarizeGc(r.plan) });
        const t = r.plan.totals;
        process.stdout.write(`${r.executed ? 'collected' : 'would collect'} ${t.deadObjects} objects, ${formatBytes(t.bytesFreed)}\n`);
      }),
    );
}
