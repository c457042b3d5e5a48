// ferry events [--volume V] [--since 1h] [--follow] [--json]
import type { Command } from 'commander';
import { setTimeout as sleep } from 'node:timers/promises';
import { withSite } from '../context.ts';
import { formatLogLine } from '../../site/log.ts';
import type { GlobalOptions } from '../output.ts';
import { parseDurationSeconds } from '../parse.ts';

interface EventRow {
  id: number;
  at: number;
  kind: string;
  volume: string | null;
  outcome: 'ok' | 'failed' | 'warning' | 'info';
  detail: string;
}

export function register(program: Command, g: () => GlobalOptions): void {
  program
    .command('events')
    .description('the site\'s event history: state transitions, transfers, failovers, hooks, errors')
    .option('--volume <name>', 'only this volume')
    .option('--since <duration>', 'only the last duration, e.g. 1h, 2d', '1d')
    .option('--kind <prefix>', 'only kinds starting with this, e.g. mirror. or failover')
    .option('--follow', 'keep printing new events until interrupted')
    .action(async (o: { volume?: string; since: string; kind?: string; follow?: boolean }) => {
      const json = Boolean(g().json);
      let last = 0;
      const since = Date.now() - parseDurationSeconds(o.since, '--since') * 1000;
      const print = (siteName: string, rows: EventRow[]) => {
        for (const r of rows) {
          last = Math.max(last, r.id);
          process.stdout.write(formatLogLine(siteName, r.at, { kind: r.kind, volume: r.volume, outcome: r.outcome, detail: JSON.parse(r.detail) as Record<string, unknown> }, !json) + '\n');
        }
      };
      const query = (site: { db: { all<T>(sql: string, ...p: Array<string | number | null>): T[] } }) =>
        site.db.all<EventRow>(
          'SELECT * FROM events WHERE id > ? AND at >= ? AND (? IS NULL OR volume = ?) AND (? IS NULL OR kind LIKE ? || \'%\') ORDER BY id LIMIT 10000',
          last, since, o.volume ?? null, o.volume ?? null, o.kind ?? null, o.kind ?? null,
        );
      for (;;) {
        await withSite(g(), 'events', (site) => print(site.name, query(site)), { readOnly: true });
        if (!o.follow) return;
        await sleep(1000);
      }
    });
}
