// ferry config check | apply | export: the declarative site file (docs/config.md).
import type { Command } from 'commander';
import { existsSync, linkSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { FerryError, isFerryError, wrapIoError } from '../../core/errors.ts';
import { readConfigFile, type ApplyResult } from '../../config/apply.ts';
import { exportConfigObject, exportConfigText } from '../../config/export.ts';
import { invalidConfig, loadConfig } from '../../config/load.ts';
import { planConfig, type PlanAction } from '../../config/plan.ts';
import { DEFAULT_CONFIG_NAME } from '../../config/schema.ts';
import { homeFrom, siteFileFrom, siteFileOrigin, withSite, type SiteFileLocation } from '../context.ts';
import { invoke } from '../invoke.ts';
import { EXIT_WARNINGS, printJson, type GlobalOptions } from '../output.ts';

const CONFIG_OPTION_HELP = `the site file (the same as FILE; default: $FERRY_CONFIG, else <home>/${DEFAULT_CONFIG_NAME})`;

/** The file's text; a missing file's error says where its name came from. */
function readSiteFile(loc: SiteFileLocation): string {
  try {
    return readConfigFile(loc.path);
  } catch (err) {
    if (isFerryError(err, 'CONFIG_INVALID') && loc.source !== 'argument') throw new FerryError('CONFIG_INVALID', err.message.replace(loc.path, `${loc.path}${siteFileOrigin(loc)}`), { cause: err });
    throw err;
  }
}

/** Write `text` at `out` atomically; a file already there is kept as OUT.bak first (it may hold comments the export cannot). */
function writeSiteFile(out: string, text: string): string | undefined {
  const tmp = `${out}.tmp-${process.pid}`;
  let backup: string | undefined;
  try {
    writeFileSync(tmp, text, { mode: 0o644 });
    if (existsSync(out)) {
      backup = `${out}.bak`;
      rmSync(backup, { force: true });
      linkSync(out, backup);
    }
    renameSync(tmp, out);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw wrapIoError(err, `writing site file ${out}`, { writing: true });
  }
  return backup;
}

const SIGN: Record<PlanAction['verb'], string> = { create: '+', change: '~', remove: '-', keep: '=', wait: '…', note: '#' };

function show(v: unknown): string {
  if (v === null || v === undefined) return '(none)';
  return typeof v === 'string' ? v : JSON.stringify(v);
}

export function formatPlan(r: ApplyResult): string {
  const lines = [`plan for ${r.file} at site ${r.site}:`];
  for (const a of r.actions) {
    const head = `  ${SIGN[a.verb]} ${a.verb.padEnd(6)} ${a.kind} ${a.name}`;
    const changes = a.changes?.map((c) => `${c.key} ${show(c.from)} => ${show(c.to)}`).join('; ');
    lines.push(`${head}${changes ? `: ${changes}` : ''}${a.reason ? ` (${a.reason})` : ''}`);
  }
  const s = r.summary;
  if (!r.changed) lines.push('  nothing to change');
  const tail = [`${s.create} to create`, `${s.change} to change`, `${s.remove} to remove`, ...(s.keep ? [`${s.keep} kept`] : []), ...(s.wait ? [`${s.wait} waiting`] : [])].join(', ');
  lines.push(r.dryRun ? `${tail}; dry run: nothing was applied` : r.changed ? `${tail}; applied ${r.applied} step(s)` : tail);
  return lines.join('\n') + '\n';
}

export function register(program: Command, g: () => GlobalOptions): void {
  const config = program.command('config').description('the declarative site file: volumes, mirrors, links and site settings (docs/config.md)');

  config
    .command('check [file]')
    .description(`validate a site file and report every error at once, with its line (default file: $FERRY_CONFIG, else <home>/${DEFAULT_CONFIG_NAME}); with a site at --home, also check it against the site: paths, paired sites, what apply would refuse`)
    .option('--config <file>', CONFIG_OPTION_HELP)
    .option('--offline', 'check the file alone, without the site (no paths, paired sites or catalog)')
    .action(async (file: string | undefined, o: { config?: string; offline?: boolean }) => {
      const loc = siteFileFrom(g(), { argument: file, config: o.config });
      const path = loc.path;
      const { config: cfg, issues } = loadConfig(readSiteFile(loc), path);
      if (issues.length) throw invalidConfig(path, issues, 'fix them and check again');
      let against: string | null = null;
      if (!o.offline) {
        try {
          const plan = await withSite(g(), 'config check', (site) => planConfig(site, cfg), { readOnly: true });
          if (plan.issues.length) throw invalidConfig(path, plan.issues, `the file is well formed, but site ${plan.site} would refuse it`);
          against = plan.site;
        } catch (err) {
          if (!isFerryError(err, 'HOME_MISSING')) throw err;
        }
      }
      const counts = { volumes: cfg.volumes.length, members: cfg.volumes.reduce((n, v) => n + v.members.length, 0), mirrors: cfg.mirrors.length, links: cfg.links.length };
      if (g().json) return printJson({ valid: true, file: path, site: against, ...counts });
      process.stdout.write(
        `${path} is valid: ${counts.volumes} volume(s) of ${counts.members} member(s), ${counts.mirrors} mirror(s), ${counts.links} link(s)` +
          (against ? `; checked against site ${against}\n` : o.offline ? ' (checked offline)\n' : `; no site at ${homeFrom(g())}, so paths and paired sites were not checked\n`),
      );
    });

  config
    .command('apply [file]')
    .description(`show what a site file creates, changes and removes, and apply it (default file: $FERRY_CONFIG, else <home>/${DEFAULT_CONFIG_NAME}); removals of anything with snapshots or a mirror base need --prune`)
    .option('--config <file>', CONFIG_OPTION_HELP)
    .option('--dry-run', 'only print the plan')
    .option('--prune', 'also remove volumes and mirrors the file no longer names that have snapshots or a base (never the member data)')
    .action(async (file: string | undefined, o: { config?: string; dryRun?: boolean; prune?: boolean }) => {
      const loc = siteFileFrom(g(), { argument: file, config: o.config });
      const path = loc.path;
      const text = readSiteFile(loc);
      const r = (await invoke(g(), 'config.apply', { text, file: path, dryRun: o.dryRun === true, prune: o.prune === true })) as ApplyResult;
      if (g().json) printJson(r);
      else process.stdout.write(formatPlan(r));
      if (r.summary.keep || r.summary.wait) process.exitCode = EXIT_WARNINGS;
    });

  config
    .command('export')
    .description('write the site\'s current volumes, mirrors, links and settings as a site file that `config check` accepts and `config apply` applies as a no-op')
    .option('--output [file]', `write to this file (atomically; a file already there is kept as FILE.bak) instead of standard output; with no FILE, the site file: $FERRY_CONFIG, else <home>/${DEFAULT_CONFIG_NAME}`)
    .option('--config <file>', 'the site file --output writes when given no FILE')
    .action(async (o: { output?: string | true; config?: string }) => {
      if (o.config !== undefined && o.output === undefined) throw new FerryError('USAGE', '--config names the file `config export --output` writes: give --output too (without --output the export goes to standard output)');
      const { text, object } = await withSite(g(), 'config export', (site) => ({ text: exportConfigText(site), object: exportConfigObject(site) }), { readOnly: true });
      if (o.output !== undefined) {
        const out = siteFileFrom(g(), { argument: o.output === true ? undefined : o.output, config: o.config }).path;
        const backup = writeSiteFile(out, text);
        if (g().json) printJson({ written: out, backup: backup ?? null, ...object });
        else process.stderr.write(`wrote ${out}${backup ? ` (the previous file is ${backup})` : ''}\n`);
        return;
      }
      if (g().json) printJson(object);
      else process.stdout.write(text);
    });
}
