// ferry init, ferry info
import type { Command } from 'commander';
import { parseName } from '../../core/ids.ts';
import { Site } from '../../site/site.ts';
import { homeFrom, withSite } from '../context.ts';
import { formatBytes, printJson, type GlobalOptions } from '../output.ts';
import { hostname } from 'node:os';

export function register(program: Command, g: () => GlobalOptions): void {
  program
    .command('init')
    .description('create a site: home directory, catalog, store and TLS identity; prints the site id')
    .option('--name <name>', 'human name of the site (default: the host name)')
    .action((o: { name?: string }) => {
      const name = parseName(o.name ?? hostname().split('.')[0].replace(/[^A-Za-z0-9._@+-]/g, '-'), 'site');
      const site = Site.init(homeFrom(g()), name);
      try {
        const info = site.info();
        if (g().json) printJson(info);
        else {
          process.stdout.write(`created site ${info.name} at ${info.home}\n`);
          process.stdout.write(`site id: ${info.idFormatted}\n`);
        }
      } finally {
        site.close();
      }
    });

  program
    .command('info')
    .description('print the site name, id, home and versions')
    .action(() =>
      withSite(g(), 'info', (site) => {
        const info = site.info();
        if (g().json) return printJson(info);
        const s = info.store;
        process.stdout.write(
          [
            `name:     ${info.name}`,
            `id:       ${info.idFormatted}`,
            `home:     ${info.home}`,
            `versions: ferry ${info.versions.ferry}, catalog format ${info.versions.catalogFormat}, node ${info.versions.node}`,
            `store:    ${s.objects} objects in ${s.packs} packs, ${formatBytes(s.storedBytes)} stored (${formatBytes(s.rawBytes)} raw)`,
          ].join('\n') + '\n',
        );
      }, { readOnly: true }),
    );
}
