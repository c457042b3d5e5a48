// ferry serve
import { runOp } from '../../app/ops.ts';
import type { Command } from 'commander';
import { ConfigReloader } from '../../config/reload.ts';
import { Daemon } from '../../app/daemon.ts';
import { newEngine } from '../../app/workflows.ts';
import { startJournal } from '../../site/journal-service.ts';
import { formatSiteId } from '../../transport/identity.ts';
import { Site } from '../../site/site.ts';
import { LogFanout, logFileSettings, RotatingFileSink, type LogSink } from '../../site/log.ts';
import { COUNT, SIZE } from '../../core/units.ts';
import { parseCount, parseSize } from '../parse.ts';
import { homeFrom, siteFileFrom } from '../context.ts';
import type { GlobalOptions } from '../output.ts';
import { takeSystemdNotifier } from '../systemd.ts';
import { memory } from '../../core/memory.ts';
import { readMeta } from '../../catalog/meta.ts';
import { META_KEYS } from '../../config/schema.ts';
import { startXattrHelpers, stopXattrHelpers, type XattrHelpers } from '../../snapshot/xattr-helper.ts';
import { xattrToolsPresent } from '../../snapshot/xattrs.ts';

export function register(program: Command, g: () => GlobalOptions): void {
  program
    .command('serve')
    .description('run the site daemon: the peer API (HTTP/2, mutual TLS), the local API for the CLI, and the scheduler')
    .option('--listen <host:port>', 'address for peers (default: site.listen from the site file, else 127.0.0.1:7420)')
    .option('--config <file>', 'site file applied at start and re-read on SIGHUP (default: $FERRY_CONFIG, else <home>/ferry.yaml when it exists); a bad file stops the start, and is refused on reload')
    .option('--tick <ms>', 'scheduler interval in milliseconds', '1000')
    .option('--metrics <host:port>', 'also serve Prometheus metrics over plain HTTP here (GET /metrics); they are always on the local socket')
    .option('--log-file <path>', 'also write the log to this file, as JSON lines rotated by size (default: the catalog setting log_file, if any)')
    .option('--log-max-size <size>', 'rotate the log file before it passes this size, e.g. 64MiB (default: log_max_bytes, or 64MiB)')
    .option('--log-keep <n>', 'rotated log files to keep: PATH.1 ... PATH.n (default: log_keep, or 5)')
    .option('--memory-budget <size>', 'the memory this daemon bounds its buffers, caches and worker heaps to, e.g. 256MiB (default: the catalog setting memory_budget, else 256MiB; docs/memory.md)')
    .option('--no-journal', 'no change journal: every snapshot walks its trees in full (docs/design.md, "The change journal")')
    .action(async (o: { listen?: string; config?: string; tick: string; metrics?: string; logFile?: string; logMaxSize?: string; logKeep?: string; journal: boolean; memoryBudget?: string }) => {
      // Every value first: a wrong one stops the start before anything is opened.
      const tickMs = parseCount(o.tick, COUNT.tickMs, '--tick');
      const logMaxBytes = o.logMaxSize !== undefined ? parseSize(o.logMaxSize, SIZE.logMaxSize, '--log-max-size') : undefined;
      const logKeep = o.logKeep !== undefined ? parseCount(o.logKeep, COUNT.logKeep, '--log-keep') : undefined;
      const memoryBudget = o.memoryBudget !== undefined ? parseSize(o.memoryBudget, SIZE.memoryBudget, '--memory-budget') : undefined;
      // Under systemd (Type=notify): told READY=1 once listening. Taken before any child (a hook) can inherit it.
      const systemd = takeSystemdNotifier();
      const site = Site.open(homeFrom(g()), { command: 'serve' });
      // Without a terminal (systemd, a pipe) or with --json: JSON lines only, one per event or notice (site/log.ts).
      site.logSink = { write: (l) => process.stdout.write(l), isTTY: process.stdout.isTTY && !g().json };
      let daemon: Daemon | undefined;
      let reloader: ConfigReloader | undefined;
      // A SIGHUP while starting must not kill the daemon (the default action): it is remembered,
      // and the file re-read once the daemon runs.
      let hupWhileStarting = false;
      const earlyHangup = () => (hupWhileStarting = true);
      process.on('SIGHUP', earlyHangup);
      let xattrHelpers: XattrHelpers | undefined;
      try {
        // Before anything large is opened: the helper processes that read extended attributes for
        // the daemon (snapshot/xattr-helper.ts), and the check for the attr tools, are forked from
        // a small process (a fork of a large one costs tens of milliseconds).
        xattrToolsPresent();
        xattrHelpers = await startXattrHelpers({ onWarning: (message) => site.notice('warn', 'daemon.xattr-helper', `ferry: ${message}`, { error: message }) });
        // The memory budget before anything sizes itself from it: the flag, else the catalog setting
        // memory_budget (site.memoryBudget; read again below, once the site file is applied).
        const configureMemory = () => {
          const setting = readMeta(site.catalog, META_KEYS.memoryBudget);
          if (memoryBudget !== undefined) memory.configure(memoryBudget, '--memory-budget');
          else if (setting) memory.configure(parseSize(setting, SIZE.memoryBudget, 'the catalog setting memory_budget'), 'memory_budget');
        };
        configureMemory();
        // The site file first: it may set the log and listen settings read below.
        const engine = newEngine(site);
        daemon = new Daemon(engine);
        const siteFile = siteFileFrom(g(), { config: o.config });
        reloader = new ConfigReloader(engine, (op, args) => runOp({ engine, daemon: true }, op, args), siteFile.source === 'home' ? undefined : siteFile.path, siteFile.source);
        await reloader.applyAtStart();
        configureMemory();
        // The change journal: watches over the tree members, so snapshots read only what changed.
        if (o.journal) await startJournal(site);
        // The log file: JSON lines whatever stdout shows (the fanout hands the terminal its human form).
        const logFile = logFileSettings(site.catalog, site.paths.home, {
          file: o.logFile,
          maxBytes: logMaxBytes,
          keep: logKeep,
        });
        if (logFile) site.logSink = new LogFanout([site.logSink as LogSink, new RotatingFileSink(logFile.path, logFile)]);
        const info = await daemon.start(o.listen ?? reloader.listen());
        const metricsPort = o.metrics ? await daemon.startMetrics(o.metrics) : undefined;
        if (metricsPort !== undefined) {
          const metrics = `${o.metrics!.replace(/:\d+$/, '')}:${metricsPort}`;
          site.notice('info', 'daemon.metrics', `metrics on http://${metrics}/metrics`, { metrics });
        }
        engine.startScheduler(tickMs);
        void engine.resumeApplies();
        // One line, like every other: JSON without a terminal (or with --json), for systemd's journal and log shippers.
        site.notice('info', 'daemon.listening', `ferry site ${site.name} (${formatSiteId(site.id)}) listening on https://${info.listen}, local socket ${info.socket}`, { ...info, id: site.id });
        if (systemd) {
          const listening = `listening on https://${info.listen}`;
          void systemd.ready(listening).then((why) => {
            if (!why) return;
            process.stderr.write(`ferry: could not tell systemd the daemon is ready: ${why}\n`);
            try {
              site.event({ kind: 'daemon.notify', outcome: 'failed', detail: { state: 'READY=1', socket: systemd.socket, error: why, effect: 'systemd may not count the daemon started, and stops it after TimeoutStartSec' } });
            } catch {
              // stopped meanwhile: stderr has it
            }
          });
        }
      } catch (err) {
        process.off('SIGHUP', earlyHangup);
        await daemon?.stop().catch(() => {});
        await stopXattrHelpers(xattrHelpers);
        site.close();
        site.logSink?.close?.();
        throw err;
      }
      const onHangup = () => void reloader!.reload();
      process.on('SIGHUP', onHangup);
      process.off('SIGHUP', earlyHangup);
      if (hupWhileStarting) onHangup();
      await new Promise<void>((resolve) => {
        let stopping = false;
        const stop = (sig: string) => {
          if (stopping) return;
          stopping = true;
          site.notice('info', 'daemon.stopping', `ferry: ${sig}: stopping (transfers in flight resume on the next attempt)`, { signal: sig });
          void systemd?.stopping(`stopping on ${sig}`);
          daemon!
            .stop()
            .catch((err) => site.notice('error', 'daemon.stopping', `ferry: error while stopping: ${(err as Error).message}`, { error: (err as Error).message }))
            .then(() => stopXattrHelpers(xattrHelpers))
            .finally(() => {
              process.off('SIGHUP', onHangup);
              site.close();
              site.logSink?.close?.();
              resolve();
            });
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
    });
}
