// ferry dashboard [--json]: the URL of the running daemon's web dashboard,
// with the token a browser on another host needs (made on first use).
import type { Command } from 'commander';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { FerryError } from '../../core/errors.ts';
import { dashboardToken, tokenPath } from '../../app/dashboard.ts';
import { splitHostPort } from '../../transport/http.ts';
import { CERT_FILE } from '../../transport/identity.ts';
import { sitePaths } from '../../site/site.ts';
import { homeFrom } from '../context.ts';
import { runningDaemon } from '../invoke.ts';
import { printJson, type GlobalOptions } from '../output.ts';

function urlHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

export function register(program: Command, g: () => GlobalOptions): void {
  program
    .command('dashboard')
    .description('print the URL of the web dashboard served by the running daemon (with its access token)')
    .action(() => {
      const paths = sitePaths(homeFrom(g()));
      const d = runningDaemon(paths.home);
      if (!d) throw new FerryError('DAEMON_UNREACHABLE', `no daemon runs for the site at ${paths.home}: start it with \`ferry serve --home ${paths.home}\`; the dashboard is served on its --listen port`);
      const token = dashboardToken(paths.home, { create: true })!;
      const [host] = splitHostPort(d.listen);
      const any = host === '0.0.0.0' || host === '::';
      const reachable = any ? hostname() : host;
      const local = any ? (host === '::' ? '[::1]' : '127.0.0.1') : urlHost(host);
      const url = `https://${urlHost(reachable)}:${d.port}/ui/?token=${token}`;
      const localUrl = `https://${local}:${d.port}/ui/`;
      // The browser sees a self-signed certificate: this is what it should show as its SHA-256 fingerprint.
      const fingerprint = new X509Certificate(readFileSync(join(paths.identity, CERT_FILE))).fingerprint256;
      if (g().json) return printJson({ url, localUrl, token, tokenFile: tokenPath(paths.home), listen: d.listen, fingerprint });
      process.stdout.write(
        `${url}\n` +
          `  from this host without a token: ${localUrl}\n` +
          `  the certificate is the site's own (self-signed); its SHA-256 fingerprint is\n  ${fingerprint}\n` +
          `  the token is in ${tokenPath(paths.home)}; delete that file to revoke it (a new one is made on next use)\n`,
      );
    });
}
