// ferry site add | list | remove  (pairing with other sites)
import type { Command } from 'commander';
import type { Peer } from '../../site/peers.ts';
import { formatSiteId } from '../../transport/identity.ts';
import { invoke } from '../invoke.ts';
import { formatTime, printJson, table, type GlobalOptions } from '../output.ts';

export function register(program: Command, g: () => GlobalOptions): void {
  const siteCmd = program.command('site').description('pair with other sites (each side adds the other)');
  siteCmd
    .command('add <name> <url>')
    .description('pair with a site: its https://HOST:PORT and its site id (`ferry info` there); do the same there with this site')
    .requiredOption('--id <site-id>', "the other site's id")
    .action(async (name: string, url: string, o: { id: string }) => {
      const p = (await invoke(g(), 'site.add', { name, url, id: o.id })) as Peer;
      if (g().json) printJson(p);
      else process.stdout.write(`paired with ${p.name} at ${p.url} (${formatSiteId(p.id)})\n`);
    });
  siteCmd
    .command('list')
    .description('list paired sites')
    .action(async () => {
      const r = (await invoke(g(), 'site.list', {})) as { self: { name: string; id: string }; peers: Peer[] };
      if (g().json) return printJson(r);
      process.stdout.write(`this site: ${r.self.name} (${formatSiteId(r.self.id)})\n`);
      if (r.peers.length === 0) return void process.stdout.write('no paired sites; pair one with `ferry site add NAME https://HOST:PORT --id ID`\n');
      process.stdout.write(table(['SITE', 'URL', 'ID', 'PAIRED'], r.peers.map((p) => [p.name, p.url, formatSiteId(p.id), formatTime(p.createdAt)])) + '\n');
    });
  siteCmd
    .command('remove <name>')
    .description('unpair a site (refused while mirrors use it)')
    .action(async (name: string) => {
      await invoke(g(), 'site.remove', { name });
      if (g().json) printJson({ removed: name });
      else process.stdout.write(`unpaired ${name}\n`);
    });
}
