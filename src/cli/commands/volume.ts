// ferry volume create | list | show | set | remove
import type { Command } from 'commander';
import { FerryError } from '../../core/errors.ts';
import { parseMemberSpec, type Hooks } from '../../site/volumes.ts';
import { describeVolume } from '../../app/ops.ts';
import { invoke } from '../invoke.ts';
import { parseRetention, type RetentionPolicy } from '../../snapshot/retention.ts';
import { withSite } from '../context.ts';
import { formatDuration, formatTime, printJson, table, type GlobalOptions } from '../output.ts';
import { COUNT, DURATION } from '../../core/units.ts';
import { parseCount, parseDuration } from '../parse.ts';
import { getVolume, listVolumes } from '../../catalog/volumes.ts';

interface HookOpts {
  pre?: string;
  post?: string;
  hookTimeout?: string;
  noPre?: boolean;
  noPost?: boolean;
}
interface RetentionOpts {
  keepLast?: string;
  keepHourly?: string;
  keepDaily?: string;
  keepWeekly?: string;
  keepMonthly?: string;
  keepYearly?: string;
}

function hooksFrom(o: HookOpts, current: Hooks = {}): Hooks {
  const timeout = o.hookTimeout ? parseDuration(o.hookTimeout, DURATION.hookTimeout, '--hook-timeout') : undefined;
  const out: Hooks = { ...current };
  if (o.pre !== undefined) out.pre = { command: o.pre, timeout: timeout ?? current.pre?.timeout ?? 60 };
  if (o.post !== undefined) out.post = { command: o.post, timeout: timeout ?? current.post?.timeout ?? 60 };
  if (timeout !== undefined && o.pre === undefined && out.pre) out.pre = { ...out.pre, timeout };
  if (timeout !== undefined && o.post === undefined && out.post) out.post = { ...out.post, timeout };
  if (o.noPre) delete out.pre;
  if (o.noPost) delete out.post;
  return out;
}

function retentionFrom(o: RetentionOpts, current: RetentionPolicy = {}): RetentionPolicy | undefined {
  const map: Array<[keyof RetentionOpts, keyof RetentionPolicy]> = [
    ['keepLast', 'last'], ['keepHourly', 'hourly'], ['keepDaily', 'daily'], ['keepWeekly', 'weekly'], ['keepMonthly', 'monthly'], ['keepYearly', 'yearly'],
  ];
  let changed = false;
  const out: Record<string, number> = { ...current };
  for (const [opt, key] of map) {
    const v = o[opt];
    if (v === undefined) continue;
    changed = true;
    out[key] = parseCount(v, COUNT.retention, `--${opt.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())}`);
  }
  return changed ? parseRetention(out) : undefined;
}

function addHookAndRetentionOptions(c: Command): Command {
  return c
    .option('--pre <command>', 'shell command run before each snapshot (quiesce the application)')
    .option('--post <command>', 'shell command run after each snapshot, always (thaw)')
    .option('--hook-timeout <duration>', 'time limit for each hook, e.g. 30s, 5m (default 60s)')
    .option('--keep-last <n>', 'retention: keep the newest n snapshots')
    .option('--keep-hourly <n>', 'retention: keep the newest snapshot of each of the last n hours')
    .option('--keep-daily <n>', 'retention: ... of each of the last n days')
    .option('--keep-weekly <n>', 'retention: ... of each of the last n weeks')
    .option('--keep-monthly <n>', 'retention: ... of each of the last n months')
    .option('--keep-yearly <n>', 'retention: ... of each of the last n years');
}

type Described = ReturnType<typeof describeVolume>;

function printVolume(v: Described): void {
  const lines = [
    `volume ${v.name} (${v.role}), created ${formatTime(v.createdAt)}`,
    'members:',
    ...v.members.map((m) => `  ${m.name}  ${m.kind}  ${m.path}`),
    `hooks: ${v.hooks.pre ? `pre \`${v.hooks.pre.command}\` (${formatDuration(v.hooks.pre.timeout * 1000)})` : 'no pre'}, ${v.hooks.post ? `post \`${v.hooks.post.command}\` (${formatDuration(v.hooks.post.timeout * 1000)})` : 'no post'}`,
    `retention: ${Object.keys(v.retention).length ? Object.entries(v.retention).map(([k, n]) => `${k} ${n}`).join(', ') : 'keep everything'}`,
    `change journal: ${v.journal ? 'on (the daemon reads only what changed)' : 'off (every snapshot walks in full)'}`,
    `snapshots: ${v.snapshots}${v.newest ? `, latest ${v.newest.id}${v.newest.name ? ` (${v.newest.name})` : ''} at ${formatTime(v.newest.time)}` : ''}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

export function register(program: Command, g: () => GlobalOptions): void {
  const volume = program.command('volume').description('define the data ferry protects: volumes and their members');

  addHookAndRetentionOptions(
    volume
      .command('create <name>')
      .description('define a volume of one or more members: [NAME=][tree:|image:]PATH (a directory, a regular file or a block device)')
      .option('--member <spec>', 'a member; repeat for a consistency group of several', (v: string, acc: string[]) => [...acc, v], [] as string[])
      .option('--secondary', 'this volume receives a replica from a peer (bound to the first peer that mirrors into it); its members are where the replica goes')
      .option('--no-journal', 'the daemon\'s change journal does not watch this volume: every snapshot (and, at a secondary, every writes check) walks its trees in full'),
  ).action((name: string, o: HookOpts & RetentionOpts & { member: string[]; secondary?: boolean; journal: boolean }) =>
    (async () => {
      o.member.forEach(parseMemberSpec); // usage errors before anything else
      const v = (await invoke(g(), 'volume.create', { name, members: o.member, hooks: hooksFrom(o), retention: retentionFrom(o) ?? {}, secondary: o.secondary === true, journal: o.journal !== false })) as Described;
      if (g().json) printJson(v);
      else printVolume(v);
    })(),
  );

  addHookAndRetentionOptions(volume.command('set <name>').description('change a volume\'s hooks, retention or change journal'))
    .option('--no-pre', 'remove the pre hook')
    .option('--no-post', 'remove the post hook')
    .option('--journal', 'turn the daemon\'s change journal on for this volume (the next snapshot walks in full, the ones after read only what changed); on a volume that ran out of inotify watches, try watching it again now')
    .option('--no-journal', 'turn it off: the volume\'s watches are released, and every snapshot (at a secondary, every writes check) walks in full')
    .action((name: string, o: Omit<HookOpts, 'pre' | 'post'> & RetentionOpts & { pre?: string | false; post?: string | false; journal?: boolean }) =>
      (async () => {
        const cur = await withSite(g(), 'volume set', (site) => getVolume(site.catalog, name), { readOnly: true });
        const hookOpts: HookOpts = { ...o, pre: typeof o.pre === 'string' ? o.pre : undefined, post: typeof o.post === 'string' ? o.post : undefined, noPre: o.pre === false, noPost: o.post === false };
        const v = (await invoke(g(), 'volume.set', { name, hooks: hooksFrom(hookOpts, cur.hooks), retention: retentionFrom(o, cur.retention), journal: o.journal })) as Described;
        if (g().json) printJson(v);
        else printVolume(v);
      })(),
    );

  volume
    .command('list')
    .description('list volumes')
    .action(() =>
      withSite(g(), 'volume list', (site) => {
        const vols = listVolumes(site.catalog);
        if (g().json) return printJson(vols.map((v) => describeVolume(site, v)));
        if (vols.length === 0) return void process.stdout.write('no volumes; create one with `ferry volume create NAME --member PATH`\n');
        process.stdout.write(table(['VOLUME', 'ROLE', 'MEMBERS', 'SNAPSHOTS'], vols.map((v) => [v.name, v.role, v.members.map((m) => `${m.kind}:${m.path}`).join(' '), describeVolume(site, v).snapshots])) + '\n');
      }, { readOnly: true }),
    );

  volume
    .command('show <name>')
    .description('show a volume: members, hooks, retention, snapshots')
    .action((name: string) =>
      withSite(g(), 'volume show', (site) => {
        const v = describeVolume(site, getVolume(site.catalog, name));
        if (g().json) printJson(v);
        else printVolume(v);
      }, { readOnly: true }),
    );

  volume
    .command('remove <name>')
    .description('remove a volume definition (refused while it has snapshots, unless --force; the member data is never touched)')
    .option('--force', 'also delete its snapshots')
    .action((name: string, o: { force?: boolean }) =>
      (async () => {
        const r = (await invoke(g(), 'volume.remove', { name, force: o.force === true })) as { snapshotsRemoved: number };
        if (g().json) printJson(r);
        else process.stdout.write(`removed volume ${name}${r.snapshotsRemoved ? ` and its ${r.snapshotsRemoved} snapshot(s)` : ''}; the member data was not touched\n`);
      })(),
    );
}
