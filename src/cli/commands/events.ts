// ferry events [--volume V] [--since 1h] [--kind K] [--follow] [--site NAME|all] [--json]
// The event history of this site, of a paired site (read from its daemon over
// the peer API: `--site NAME`), or of every site at once (`--site all`): merged
// in time order, each line naming its site, so one place shows them all. A
// peer that cannot be reached is reported and the others still print.
import type { Command } from 'commander';
import { setTimeout as sleep } from 'node:timers/promises';
import { FerryError, isFerryError } from '../../core/errors.ts';
import { withSite } from '../context.ts';
import { formatLogLine, queryEvents, MAX_EVENTS_PER_CALL, type EventQuery, type EventRow, type EventsPage } from '../../site/log.ts';
import { PeerClient } from '../../transport/client.ts';
import { loadIdentity } from '../../transport/identity.ts';
import { type Peer } from '../../site/peers.ts';
import { EXIT_WARNINGS, type GlobalOptions } from '../output.ts';
import { DURATION } from '../../core/units.ts';
import { parseDuration } from '../parse.ts';
import { getPeer, listPeers } from '../../catalog/peers.ts';

/** Per site and per command (or per poll with --follow): beyond this, narrow the query. */
const MAX_EVENTS_PRINTED = 10_000;
const FOLLOW_EVERY_MS = 1_000;

interface Source {
  name: string;
  local: boolean;
  fetch(q: EventQuery): Promise<EventsPage>;
  close(): void;
  /** the last event id printed from this site */
  cursor: number;
  /** the message of the failure last reported, so an outage is reported once */
  down?: string;
}

interface Options {
  volume?: string;
  since: string;
  kind?: string;
  follow?: boolean;
  site?: string;
  allSites?: boolean;
}

export function register(program: Command, g: () => GlobalOptions): void {
  program
    .command('events')
    .description('the site\'s event history: state transitions, transfers, failovers, hooks, errors; --site reads a paired site\'s, --site all every site\'s')
    .option('--volume <name>', 'only this volume')
    .option('--since <duration>', 'only the last duration, e.g. 1h, 2d', '1d')
    .option('--kind <prefix>', 'only kinds starting with this, e.g. mirror. or failover')
    .option('--follow', 'keep printing new events until interrupted (polls every second)')
    .option('--site <name>', 'read the events of this paired site (from its daemon), or "all": this site and every paired site, merged in time order')
    .option('--all-sites', 'the same as --site all')
    .action(async (o: Options) => {
      const json = Boolean(g().json);
      const sinceSeconds = parseDuration(o.since, DURATION.since, '--since');
      if (o.volume !== undefined && (o.volume.length === 0 || o.volume.length > 128)) throw new FerryError('USAGE', '--volume takes a volume name of 1-128 characters');
      if (o.kind !== undefined && (o.kind.length === 0 || o.kind.length > 64)) throw new FerryError('USAGE', '--kind takes a prefix of 1-64 characters, e.g. mirror.');
      const sources = await openSources(g(), o.allSites ? 'all' : o.site);
      const many = sources.length > 1;
      let warned = false;
      try {
        for (let round = 0; ; round++) {
          const batch: Array<{ site: string; order: number; e: EventRow }> = [];
          await Promise.all(
            sources.map(async (src, order) => {
              try {
                const got = await drain(src, { volume: o.volume ?? null, kind: o.kind ?? null, sinceSeconds });
                for (const e of got.events) batch.push({ site: src.name, order, e });
                if (got.truncated && !o.follow) {
                  warned = true;
                  process.stderr.write(`ferry: events: ${src.name} has more than ${MAX_EVENTS_PRINTED} matching events; only the oldest ${MAX_EVENTS_PRINTED} are shown: narrow with --since, --volume or --kind\n`);
                }
                if (src.down !== undefined) {
                  process.stderr.write(`ferry: events: ${src.name} answers again\n`);
                  src.down = undefined;
                }
              } catch (err) {
                // One site's failure: fatal when it is the only one asked for, reported otherwise.
                if (!many) throw err;
                const fe = isFerryError(err) ? err : new FerryError('INTERNAL', String((err as Error)?.message ?? err));
                warned = true;
                if (src.down !== fe.message) process.stderr.write(`ferry: events: ${src.name} could not be read: ${fe.message} [${fe.code}]\n`);
                src.down = fe.message;
              }
            }),
          );
          // Time order across sites (each site's own events stay in the order it recorded them).
          batch.sort((a, b) => a.e.at - b.e.at || a.order - b.order || a.e.id - b.e.id);
          for (const { site, e } of batch) process.stdout.write(render(site, e, json) + '\n');
          if (!o.follow) break;
          await sleep(FOLLOW_EVERY_MS);
        }
      } finally {
        for (const s of sources) s.close();
      }
      if (warned) process.exitCode = EXIT_WARNINGS;
    });
}

/** Everything new at one site since its cursor, page by page (a peer answers at most MAX_EVENTS_PER_CALL a call). */
async function drain(src: Source, q: EventQuery): Promise<{ events: EventRow[]; truncated: boolean }> {
  const events: EventRow[] = [];
  for (;;) {
    const page = await src.fetch({ ...q, after: src.cursor, limit: MAX_EVENTS_PER_CALL });
    if (!page || !Array.isArray(page.events)) throw new FerryError('PROTOCOL', `${src.name} answered the events query with something that is not a list of events`);
    for (const e of page.events) {
      if (!isEventRow(e) || e.id <= src.cursor) throw new FerryError('PROTOCOL', `${src.name} sent a malformed or out-of-order event`);
      src.cursor = e.id;
      events.push(e);
    }
    if (!page.more || page.events.length === 0) return { events, truncated: false };
    if (events.length >= MAX_EVENTS_PRINTED) return { events, truncated: true };
  }
}

function isEventRow(e: unknown): e is EventRow {
  const r = e as EventRow;
  return (
    !!r && typeof r === 'object' && Number.isSafeInteger(r.id) && Number.isFinite(r.at) && typeof r.kind === 'string' &&
    (r.volume === null || typeof r.volume === 'string') && typeof r.outcome === 'string' && !!r.detail && typeof r.detail === 'object'
  );
}

function render(site: string, e: EventRow, json: boolean): string {
  const line = formatLogLine(site, e.at, { kind: e.kind, volume: e.volume, outcome: e.outcome, detail: e.detail }, !json, e.id);
  // A peer's strings reach this terminal: no control characters (escape sequences) get through.
  // eslint-disable-next-line no-control-regex
  return json ? line : line.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}

async function openSources(g: GlobalOptions, which: string | undefined): Promise<Source[]> {
  const { name, peers } = await withSite(g, 'events', (site) => ({ name: site.name, peers: listPeers(site.catalog) }), { readOnly: true });
  const local: Source = {
    name,
    local: true,
    cursor: 0,
    // Opened afresh for each poll, read-only: the daemon (or any command) keeps the site meanwhile.
    fetch: (q) => withSite(g, 'events', (site) => queryEvents(site.catalog, site.clock.now(), q), { readOnly: true }),
    close: () => {},
  };
  if (which === undefined || which === name) return [local];
  let chosen: Peer[];
  if (which === 'all') chosen = peers;
  else {
    const p = peers.find((x) => x.name === which);
    if (!p) await withSite(g, 'events', (site) => getPeer(site.catalog, which), { readOnly: true }); // throws PEER_NOT_FOUND with the usual advice
    chosen = [p!];
  }
  const ident = chosen.length ? await withSite(g, 'events', (site) => loadIdentity(site.paths.identity), { readOnly: true }) : undefined;
  const remote = chosen.map((p): Source => {
    const client = new PeerClient(ident!, p);
    return { name: p.name, local: false, cursor: 0, fetch: (q) => client.events(q), close: () => client.close() };
  });
  return which === 'all' ? [local, ...remote] : remote;
}
