// ferry mirror create | initialize | update | pause | resume | remove | list
import type { Command } from 'commander';
import { FerryError } from '../../core/errors.ts';
import type { TransferProgress } from '../../replication/sender.ts';
import type { UpdateResult } from '../../replication/driver/types.ts';
import type { Mirror, MirrorStatus } from '../../site/mirrors.ts';
import type { RepointResult } from '../../dr/repoint.ts';
import { printRepoint } from './dr.ts';
import { invoke } from '../invoke.ts';
import { EXIT_WARNINGS, formatBytes, formatDuration, formatPercent, formatRate, printJson, ProgressLine, table, type GlobalOptions } from '../output.ts';
import { COUNT, DELTA_MODES, DURATION, RATE, formatDurationSpec, formatRateSpec, type DeltaMode } from '../../core/units.ts';
import { parseCount, parseDuration, parseDurationOrNone, parseRate, parseRateOrNone } from '../parse.ts';

function progressPrinter(json: boolean): { line: ProgressLine; on: (p: TransferProgress) => void } {
  const line = new ProgressLine();
  const started = Date.now();
  return {
    line,
    on: (p) => {
      if (json) return;
      const secs = (Date.now() - started) / 1000;
      const rate = secs > 0 ? p.bytesSent / secs : 0;
      const pct = formatPercent(p.bytesSent, p.bytesTotal);
      const width = 24;
      const bar = '#'.repeat(Math.floor((parseInt(pct, 10) / 100) * width)).padEnd(width, '.');
      const eta = rate > 0 && p.bytesTotal > p.bytesSent ? ` ETA ${formatDuration(((p.bytesTotal - p.bytesSent) / rate) * 1000)}` : '';
      line.update(`${p.phase} [${bar}] ${pct} ${formatBytes(p.bytesSent)}/${formatBytes(p.bytesTotal)} ${p.objectsSent}/${p.objectsTotal} objects ${formatRate(rate)}${eta}`, p.phase !== 'sending');
    },
  };
}

function printUpdate(r: UpdateResult | { queued: true; mirror: string }): void {
  if ('queued' in r) {
    process.stdout.write(`queued to the daemon: ${r.mirror}; follow it with \`ferry status\`\n`);
    return;
  }
  const t = r.transfer;
  process.stdout.write(
    `${r.mirror}: ${r.base ? `updated from ${r.base} to` : 'baseline'} ${r.snapshot}: sent ${t.objects} objects, ${formatBytes(t.bytes)} (${formatBytes(t.rawBytes)} raw) in ${formatDuration(t.seconds * 1000)}, ${formatRate(t.throughput)}\n`,
  );
  // An apply found writes in the replica and went on (forced, or finishing an unfinished apply): say where they are kept.
  if (r.writesSnapshot) process.stdout.write(`writes found in the replica were kept there, in snapshot ${r.writesSnapshot} (at the destination: \`ferry restore VOLUME --snapshot ${r.writesSnapshot} --target DIR\`)\n`);
}

const DELTAS_HELP = 'how changed chunks go: auto (as deltas when the link measured by earlier transfers is slower than making them), always, or never (default: auto)';

/** --deltas: one of the modes, or a usage error that names them. */
function parseDeltaMode(text: string): DeltaMode {
  const d = text.trim().toLowerCase();
  if (!(DELTA_MODES as readonly string[]).includes(d)) throw new FerryError('USAGE', `--deltas ${text}: choose one of ${DELTA_MODES.join(', ')}`);
  return d as DeltaMode;
}

export function register(program: Command, g: () => GlobalOptions): void {
  const mirror = program.command('mirror').description('replicate a volume to another site');

  mirror
    .command('create <volume>')
    .description('define a mirror of a volume to a paired site (the volume becomes primary here)')
    .requiredOption('--to <site[:volume]>', 'destination site, and the volume name there (default: the same name)')
    .option('--schedule <interval>', 'update every interval, e.g. 15m (default: manual updates only)')
    .option('--min-delay <duration>', 'refuse updates closer together than this unless --force', '0s')
    .option('--max-delay <duration>', 'health turns warn when the newest replicated snapshot is older than this', '1h')
    .option('--bandwidth <rate>', 'limit this mirror to a rate, e.g. 50MiB/s')
    .option('--keep <n>', 'replication snapshots the destination keeps, as common bases with its siblings after a failover (default: 3 with several secondaries, else 1)')
    .option('--deltas <mode>', DELTAS_HELP)
    .action(async (volume: string, o: { to: string; schedule?: string; minDelay: string; maxDelay: string; bandwidth?: string; keep?: string; deltas?: string }) => {
      const m = (await invoke(g(), 'mirror.create', {
        volume,
        to: o.to,
        scheduleS: o.schedule === undefined ? null : parseDuration(o.schedule, DURATION.schedule, '--schedule'),
        minDelayS: parseDuration(o.minDelay, DURATION.minDelay, '--min-delay'),
        maxDelayS: parseDuration(o.maxDelay, DURATION.maxDelay, '--max-delay'),
        bandwidth: o.bandwidth === undefined ? null : parseRate(o.bandwidth, RATE.bandwidth, '--bandwidth'),
        keep: o.keep === undefined ? undefined : parseCount(o.keep, COUNT.keep, '--keep'),
        deltas: o.deltas === undefined ? undefined : parseDeltaMode(o.deltas),
      })) as Mirror;
      if (g().json) return printJson(m);
      process.stdout.write(`mirror ${m.id} created (${m.state}); baseline it with \`ferry mirror initialize ${volume} --to ${m.peer}\`\n`);
    });

  mirror
    .command('set <volume>')
    .description("change a mirror's schedule, delays, bandwidth, kept snapshots or deltas (the settings not given stay as they are)")
    .option('--to <site>', 'which mirror, when the volume has several')
    .option('--schedule <interval>', 'update every interval, e.g. 15m; none: manual updates only')
    .option('--min-delay <duration>', 'refuse updates closer together than this unless --force (0s: none)')
    .option('--max-delay <duration>', 'health turns warn when the newest replicated snapshot is older than this')
    .option('--bandwidth <rate>', 'limit this mirror to a rate, e.g. 50MiB/s; none: no limit')
    .option('--keep <n>', 'replication snapshots the destination keeps; auto: 3 with several secondaries, else 1')
    .option('--deltas <mode>', DELTAS_HELP)
    .action(async (volume: string, o: { to?: string; schedule?: string; minDelay?: string; maxDelay?: string; bandwidth?: string; keep?: string; deltas?: string }) => {
      const set: Record<string, number | string | null> = {};
      if (o.schedule !== undefined) set.scheduleS = parseDurationOrNone(o.schedule, DURATION.schedule, '--schedule');
      if (o.minDelay !== undefined) set.minDelayS = parseDuration(o.minDelay, DURATION.minDelay, '--min-delay');
      if (o.maxDelay !== undefined) set.maxDelayS = parseDuration(o.maxDelay, DURATION.maxDelay, '--max-delay');
      if (o.bandwidth !== undefined) set.bandwidth = parseRateOrNone(o.bandwidth, RATE.bandwidth, '--bandwidth');
      if (o.keep !== undefined) set.keep = o.keep.trim().toLowerCase() === 'auto' ? null : parseCount(o.keep, COUNT.keep, '--keep');
      if (o.deltas !== undefined) set.deltas = parseDeltaMode(o.deltas);
      if (Object.keys(set).length === 0) throw new FerryError('USAGE', 'give at least one of --schedule, --min-delay, --max-delay, --bandwidth, --keep, --deltas');
      const m = (await invoke(g(), 'mirror.set', { volume, to: o.to, ...set })) as MirrorStatus;
      if (g().json) return printJson(m);
      const show = (v: number | null, f: (n: number) => string, none: string) => (v === null ? none : f(v));
      process.stdout.write(
        `mirror ${m.id}: schedule ${show(m.scheduleS, formatDurationSpec, 'manual')}, min delay ${formatDurationSpec(m.minDelayS)}, max delay ${formatDurationSpec(m.maxDelayS)}, bandwidth ${show(m.bandwidth, formatRateSpec, 'no limit')}, keep ${m.keepSnapshots ?? 'auto'}, deltas ${m.deltas}\n`,
      );
    });

  for (const [name, initialize] of [['initialize', true], ['update', false]] as const) {
    const c = mirror
      .command(`${name} <volume>`)
      .description(initialize ? 'baseline a mirror: transfer a new snapshot, or a named existing one, and apply it at the destination' : 'transfer a new (or the named) snapshot incrementally from the base, and apply it')
      .option('--to <site>', 'which mirror, when the volume has several')
      .option('--snapshot <name>', 'send this existing snapshot (e.g. an application-consistent one) instead of taking a new one')
      .option('--wait', 'wait for the transfer and apply, with a progress bar (default: return once queued to the daemon)');
    if (!initialize) c.option('--force', 'update even within --min-delay or while paused, and overwrite writes made into the replica (they are kept in a snapshot first)');
    else c.option('--force', 'overwrite what the replica holds that no apply wrote there (files it was bound over, writes made into it: they are kept in a snapshot first)');
    c.action(async (volume: string, o: { to?: string; snapshot?: string; wait?: boolean; force?: boolean }) => {
      const p = progressPrinter(Boolean(g().json));
      try {
        const r = (await invoke(g(), `mirror.${name}`, { volume, to: o.to, snapshot: o.snapshot, wait: o.wait ?? false, force: o.force ?? false }, p.on)) as UpdateResult | { queued: true; mirror: string };
        p.line.done();
        if (g().json) printJson(r);
        else printUpdate(r);
        // Completed, but the replica may lack what the capture skipped: say so, as `snapshot create` does.
        const warnings = 'warnings' in r ? r.warnings : [];
        if (warnings.length) {
          if (!g().json) for (const w of warnings) process.stderr.write(`warning: ${w.path ? `${w.path}: ` : ''}${w.message}\n`);
          process.exitCode = EXIT_WARNINGS;
        }
      } finally {
        p.line.done();
      }
    });
  }

  for (const [name, desc] of [['pause', 'suspend scheduled updates (manual ones need --force)'], ['resume', 'resume scheduled updates'], ['remove', 'remove a mirror here (its base hold is released; the destination keeps its replica)']] as const) {
    mirror
      .command(`${name} <volume>`)
      .description(desc)
      .option('--to <site>', 'which mirror, when the volume has several')
      .action(async (volume: string, o: { to?: string }) => {
        const r = await invoke(g(), `mirror.${name}`, { volume, to: o.to });
        if (g().json) printJson(r);
        else process.stdout.write(`${name === 'remove' ? 'removed' : name === 'pause' ? 'paused' : 'resumed'} mirror of ${volume}${o.to ? ` to ${o.to}` : ''}\n`);
      });
  }

  mirror
    .command('repoint <volume>')
    .description("at the site that took a volume over (failover): make another secondary of the old primary follow this site, difference-based from the newest snapshot both hold")
    .requiredOption('--to <site[:volume]>', 'the secondary to re-point, and its volume name there (default: as the old primary named it)')
    .option('--full', 'when the two share no snapshot: copy what it lacks in full')
    .action(async (volume: string, o: { to: string; full?: boolean }) => {
      const r = (await invoke(g(), 'mirror.repoint', { volume, to: o.to, full: o.full === true })) as RepointResult;
      if (g().json) return printJson(r);
      printRepoint(volume, r);
    });

  mirror
    .command('list [volume]')
    .description('list mirrors with their state and health')
    .action(async (volume: string | undefined) => {
      const ms = (await invoke(g(), 'mirror.list', { volume })) as MirrorStatus[];
      if (g().json) return printJson(ms);
      if (ms.length === 0) return void process.stdout.write('no mirrors; create one with `ferry mirror create VOLUME --to SITE`\n');
      process.stdout.write(table(['MIRROR', 'TO', 'STATE', 'HEALTH', 'LAG', 'BASE'], ms.map((m) => [m.id, `${m.peer}:${m.remoteVolume}`, m.paused && m.state !== 'paused' ? `${m.state} (paused)` : m.state, m.health, m.lagSeconds === null ? '-' : formatDuration(m.lagSeconds * 1000), m.base ?? '-'])) + '\n');
    });
}
