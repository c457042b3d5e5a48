// ferry serve
import type { Command } from 'commander';
import { Daemon } from '../../site/daemon.ts';
import { Engine } from '../../site/engine.ts';
import { formatSiteId } from '../../site/identity.ts';
import { Site } from '../../site/site.ts';
import { homeFrom } from '../context.ts';
import { printJson, type GlobalOptions } from '../output.ts';

export function register(program: Command, g: () => GlobalOptions): void {
  program
    .command('serve')
    .description('run the site daemon: the peer API (HTTP/2, mutual TLS), the local API for the CLI, and the scheduler')
    .option('--listen <host:port>', 'address for peers', '127.0.0.1:7420')
    .option('--tick <ms>', 'scheduler interval in milliseconds', '1000')
    .option('--metrics <host:port>', 'also serve Prometheus metrics over plain HTTP here (GET /metrics); they are always on the local socket')
    .action(async (o: { listen: string; tick: string; metrics?: string }) => {
      const site = Site.open(homeFrom(g()), { command: 'serve' });
      site.logSink = { write: (l) => process.stdout.write(l), isTTY: process.stdout.isTTY && !g().json };
      let daemon: Daemon | undefined;
      try {
        const engine = new Engine(site);
        daemon = new Daemon(engine);
        const info = await daemon.start(o.listen);
        const metricsPort = o.metrics ? await daemon.startMetrics(o.metrics) : undefined;
        if (metricsPort !== undefined && !g().json) process.stdout.write(`metrics on http://${o.metrics!.replace(/:\d+$/, '')}:${metricsPort}/metrics\n`);
        engine.startScheduler(Number(o.tick));
        void engine.resumeApplies();
        if (g().json) printJson({ ...info, site: site.name, id: site.id });
        else process.stdout.write(`ferry site ${site.name} (${formatSiteId(site.id)}) listening on https://${info.listen}, local socket ${info.socket}\n`);
      } catch (err) {
        await daemon?.stop().catch(() => {});
        site.close();
        throw err;
      }
      await new Promise<void>((resolve) => {
        let stopping = false;
        const stop = (sig: string) => {
          if (stopping) return;
          stopping = true;
          process.stdout.write(`ferry: ${sig}: stopping (transfers in flight resume on the next attempt)\n`);
          daemon!
            .stop()
            .catch((err) => process.stderr.write(`ferry: error while stopping: ${(err as Error).message}\n`))
            .finally(() => {
              site.close();
              resolve();
            });
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
    });
}
