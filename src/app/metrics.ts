// Prometheus metrics, computed from the catalog and the engine when scraped
// (text exposition format 0.0.4). Names follow Prometheus conventions: base
// units (seconds, bytes), `_total` for counters, labels for identity. The
// counters and histograms are read from the catalog's running totals
// (catalog/counters.ts, kept as events are recorded), never summed from the
// event log: a scrape costs the same however old the site. The process and
// Node runtime figures use the names of Prometheus' client libraries
// (process_*, nodejs_*), so the dashboards made for them work.
import { readdirSync, readFileSync } from 'node:fs';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';
import { memory } from '../core/memory.ts';
import { xattrRuns } from '../snapshot/xattrs.ts';
import { xattrHelpers } from '../snapshot/xattr-helper.ts';
import type { Engine } from '../site/engine.ts';
import { FERRY_VERSION } from '../site/site.ts';
import { filesystems } from '../site/filesystems.ts';
import { journalOf } from '../site/journal-service.ts';
import { collectionReport } from '../site/auto-collect.ts';
import { listVolumes } from '../catalog/volumes.ts';
import { linkStatus } from '../dr/links.ts';
import { COUNTERS, HISTOGRAMS, listCounters, type Labels as CounterLabels } from '../catalog/counters.ts';
import { listLinks } from '../catalog/links.ts';
import { countDeletionsOwed, countPendingPeerSnapshots } from '../catalog/peer-snapshots.ts';
import { listSecondaries } from '../catalog/secondaries.ts';
import { logicalBytes, snapshotTotals } from '../catalog/snapshots.ts';

type Labels = Record<string, string>;

type FamilyType = 'gauge' | 'counter' | 'histogram';

interface Family {
  type: FamilyType;
  help: string;
  samples: string[];
}

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/**
 * The text format wants every sample of a metric family in one group, after
 * its HELP and TYPE lines: samples are collected per family and written out
 * family by family, whatever order the loops below produce them in.
 */
export class Exposition {
  readonly #families = new Map<string, Family>();

  metric(name: string, type: 'gauge' | 'counter', help: string, labels: Labels, value: number): void {
    if (type === 'counter' && !name.endsWith('_total')) throw new Error(`counter ${name} must end in _total`);
    this.#family(name, type, help).samples.push(sample(name, labels, value));
  }

  /**
   * A histogram's series: `counts[i]` observations fell at or below `bounds[i]` and above the bound
   * before (the last, beyond every bound, is +Inf's); written cumulative, as the format wants.
   */
  histogram(name: string, help: string, labels: Labels, bounds: readonly number[], counts: number[], sum: number): void {
    if (/_(bucket|sum|count|total)$/.test(name)) throw new Error(`histogram ${name} must not end in _bucket, _sum, _count or _total`);
    if (counts.length !== bounds.length + 1) throw new Error(`histogram ${name}: ${counts.length} counts for ${bounds.length} bounds`);
    const f = this.#family(name, 'histogram', help);
    let cumulative = 0;
    bounds.forEach((b, i) => {
      cumulative += counts[i];
      f.samples.push(sample(`${name}_bucket`, { ...labels, le: String(b) }, cumulative));
    });
    cumulative += counts[bounds.length];
    f.samples.push(sample(`${name}_bucket`, { ...labels, le: '+Inf' }, cumulative), sample(`${name}_sum`, labels, sum), sample(`${name}_count`, labels, cumulative));
  }

  #family(name: string, type: FamilyType, help: string): Family {
    if (!NAME_RE.test(name) || name.startsWith('__')) throw new Error(`metric name ${name} is not valid`);
    let f = this.#families.get(name);
    if (!f) this.#families.set(name, (f = { type, help, samples: [] }));
    else if (f.type !== type) throw new Error(`metric ${name} declared as ${f.type} and ${type}`);
    return f;
  }

  text(): string {
    const lines: string[] = [];
    for (const [name, f] of this.#families) {
      lines.push(`# HELP ${name} ${f.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${name} ${f.type}`, ...f.samples);
    }
    return lines.join('\n') + '\n';
  }
}

function sample(name: string, labels: Labels, value: number): string {
  const l = Object.entries(labels)
    .map(([k, v]) => {
      if (!LABEL_RE.test(k) || k.startsWith('__')) throw new Error(`label name ${k} is not valid`);
      return `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
    })
    .join(',');
  return `${name}${l ? `{${l}}` : ''} ${formatValue(value)}`;
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

const STATES = ['uninitialized', 'baselining', 'idle', 'updating', 'paused', 'disconnected', 'needs-full-sync', 'broken-off', 'resyncing'];

/** Help of the totals kept in the catalog (catalog/counters.ts names them). */
const COUNTER_HELP: Record<(typeof COUNTERS)[number], string> = {
  ferry_mirror_transferred_bytes_total: 'Bytes sent by successful updates.',
  ferry_mirror_transferred_objects_total: 'Objects sent by successful updates.',
  ferry_mirror_update_failures_total: 'Updates (and baselines) that failed.',
  ferry_snapshot_failures_total: 'Snapshots of the volume that failed (a failed pre hook, an unreadable member, a full disk).',
  ferry_hook_failures_total: 'Hook runs that failed or timed out.',
};
const HISTOGRAM_HELP: Record<string, string> = {
  ferry_snapshot_duration_seconds: 'How long snapshots of the volume took, hooks included (snapshots taken here).',
  ferry_mirror_transfer_duration_seconds: 'How long successful updates of the mirror took: negotiation, transfer, commit and the apply at the destination.',
  ferry_replica_apply_duration_seconds: 'How long applies of received snapshots to the replica took (writes check, staging, apply, verify).',
};

/** Labels in the order the other families have them (volume, peer, ...), whatever order the catalog keeps. */
function ordered(labels: CounterLabels): Labels {
  const first = ['volume', 'peer', 'member', 'path'];
  return Object.fromEntries([...first.filter((k) => k in labels).map((k) => [k, labels[k]]), ...Object.entries(labels).filter(([k]) => !first.includes(k) && k !== 'le')]);
}

/** The catalog's running totals: counters as they are, histograms from their per-bucket rows. Every mirror and volume has its counters, 0 before anything counted. */
function renderTotals(x: Exposition, engine: Engine): void {
  const site = engine.site;
  // Per counter, its series by their labels (as JSON): a stored total replaces the 0 put first.
  const counters = new Map<string, Map<string, { labels: Labels; value: number }>>();
  const histograms = new Map<string, { labels: Labels; counts: number[]; sum: number }>();
  const put = (name: string, labels: Labels, value: number) => {
    const series = counters.get(name) ?? new Map<string, { labels: Labels; value: number }>();
    series.set(JSON.stringify(labels), { labels, value });
    counters.set(name, series);
  };
  for (const m of engine.status()) {
    for (const name of ['ferry_mirror_transferred_bytes_total', 'ferry_mirror_transferred_objects_total', 'ferry_mirror_update_failures_total']) put(name, { volume: m.volume, peer: m.peer }, 0);
  }
  for (const v of listVolumes(site.catalog)) put('ferry_snapshot_failures_total', { volume: v.name }, 0);
  put('ferry_hook_failures_total', {}, 0);
  for (const c of listCounters(site.catalog)) {
    const h = /^(.+)_(bucket|sum|count)$/.exec(c.name);
    if (h && HISTOGRAMS[h[1]]) {
      const labels = ordered(c.labels);
      const key = `${h[1]}${JSON.stringify(labels)}`;
      const bounds = HISTOGRAMS[h[1]];
      let s = histograms.get(key);
      if (!s) histograms.set(key, (s = { labels, counts: new Array<number>(bounds.length + 1).fill(0), sum: 0 }));
      if (h[2] === 'sum') s.sum = c.value;
      else if (h[2] === 'bucket') {
        // Its own bound; one no longer in the list (changed since it was counted) goes to the next one up.
        const i = c.labels.le === '+Inf' ? -1 : bounds.findIndex((b) => b >= Number(c.labels.le));
        s.counts[i >= 0 ? i : bounds.length] += c.value;
      }
    } else if (c.name in COUNTER_HELP) put(c.name, ordered(c.labels), c.value);
  }
  for (const name of COUNTERS) for (const c of counters.get(name)?.values() ?? []) x.metric(name, 'counter', COUNTER_HELP[name], c.labels, c.value);
  for (const [key, s] of histograms) {
    const name = key.slice(0, key.indexOf('{'));
    x.histogram(name, HISTOGRAM_HELP[name] ?? name, s.labels, HISTOGRAMS[name], s.counts, s.sum);
  }
}

/**
 * The daemon's own figures: the event loop's delay (sampled while the daemon runs, reported for the
 * time since the previous scrape) beside what the process and V8 say when asked.
 */
export class RuntimeProbe {
  readonly #delay = monitorEventLoopDelay({ resolution: 10 });
  /** the delay figures of the last window that had samples (a second scrape within 10 ms has none of its own) */
  #lastDelay: { mean: number; p50: number; p99: number; max: number } | undefined;

  start(): void {
    this.#delay.enable();
  }

  stop(): void {
    this.#delay.disable();
  }

  render(x: Exposition): void {
    const mem = process.memoryUsage();
    const cpu = process.cpuUsage();
    x.metric('process_cpu_user_seconds_total', 'counter', 'User CPU time spent, in seconds.', {}, cpu.user / 1e6);
    x.metric('process_cpu_system_seconds_total', 'counter', 'System CPU time spent, in seconds.', {}, cpu.system / 1e6);
    x.metric('process_cpu_seconds_total', 'counter', 'User and system CPU time spent, in seconds.', {}, (cpu.user + cpu.system) / 1e6);
    x.metric('process_start_time_seconds', 'gauge', 'When the process started, in seconds since the Unix epoch.', {}, Math.round(performance.timeOrigin) / 1000);
    x.metric('process_resident_memory_bytes', 'gauge', 'Resident memory size, in bytes.', {}, mem.rss);
    // Where /proc allows (Linux): open descriptors and their limit, virtual memory.
    try {
      x.metric('process_open_fds', 'gauge', 'Open file descriptors.', {}, readdirSync('/proc/self/fd').length - 1); // less the one reading the directory
      const max = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
      if (max) x.metric('process_max_fds', 'gauge', 'The limit of open file descriptors.', {}, Number(max[1]));
      const vm = /^VmSize:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
      if (vm) x.metric('process_virtual_memory_bytes', 'gauge', 'Virtual memory size, in bytes.', {}, Number(vm[1]) * 1024);
    } catch {
      // no /proc here: those figures are left out
    }
    // getfattr and setfattr runs of the daemon's main thread: through its helper processes, or forked
    // from the daemon itself (snapshot/xattr-helper.ts; the writer's and the worker threads' still are)
    for (const via of ['helper', 'direct'] as const) {
      for (const kind of ['read', 'write'] as const) {
        x.metric('ferry_xattr_tool_runs_total', 'counter', 'Runs of getfattr (read) and setfattr (write) batches, through the daemon\'s helper processes or spawned by the daemon itself.', { via, kind }, xattrRuns[via][kind]);
      }
    }
    x.metric('ferry_xattr_helpers', 'gauge', 'The helper processes that run getfattr for the daemon (0: none, each batch forks the daemon).', {}, xattrHelpers()?.pids().length ?? 0);
    const heap = getHeapStatistics();
    x.metric('nodejs_heap_size_total_bytes', 'gauge', 'V8 heap size, in bytes.', {}, heap.total_heap_size);
    x.metric('nodejs_heap_size_used_bytes', 'gauge', 'V8 heap in use, in bytes.', {}, heap.used_heap_size);
    x.metric('nodejs_heap_size_limit_bytes', 'gauge', 'The V8 heap size limit, in bytes.', {}, heap.heap_size_limit);
    x.metric('nodejs_external_memory_bytes', 'gauge', 'Memory of C++ objects bound to JavaScript ones (buffers), in bytes.', {}, mem.external);
    x.metric('nodejs_array_buffers_bytes', 'gauge', 'Memory of ArrayBuffers and Buffers (part of the external memory), in bytes.', {}, mem.arrayBuffers);
    // The memory budget (core/memory.ts): each share's bound, what it holds now and the most it held.
    const budget = memory.report();
    x.metric('ferry_memory_budget_bytes', 'gauge', 'The daemon\'s memory budget (serve --memory-budget, site.memoryBudget), in bytes.', {}, budget.budget);
    for (const [share, r] of Object.entries(budget.shares)) {
      x.metric('ferry_memory_share_limit_bytes', 'gauge', 'The bound of one share of the memory budget, in bytes.', { share }, r.limit);
      x.metric('ferry_memory_share_used_bytes', 'gauge', 'What one share of the memory budget holds now, in bytes.', { share }, r.used);
      x.metric('ferry_memory_share_peak_bytes', 'gauge', 'The most one share of the memory budget held since the daemon started, in bytes.', { share }, r.peak);
    }
    const d = this.#delay;
    if (d.count > 0) {
      this.#lastDelay = { mean: d.mean / 1e9, p50: d.percentile(50) / 1e9, p99: d.percentile(99) / 1e9, max: d.max / 1e9 };
      d.reset();
    }
    const last = this.#lastDelay;
    if (last) {
      const help = (what: string) => `${what} delay of the event loop since the previous scrape, in seconds.`;
      x.metric('nodejs_eventloop_lag_mean_seconds', 'gauge', help('The mean'), {}, last.mean);
      x.metric('nodejs_eventloop_lag_p50_seconds', 'gauge', help('The median'), {}, last.p50);
      x.metric('nodejs_eventloop_lag_p99_seconds', 'gauge', help('The 99th percentile'), {}, last.p99);
      x.metric('nodejs_eventloop_lag_max_seconds', 'gauge', help('The largest'), {}, last.max);
    }
  }
}

export function renderMetrics(engine: Engine, runtime?: RuntimeProbe): string {
  const site = engine.site;
  const x = new Exposition();
  const now = site.clock.now();
  for (const m of engine.status()) {
    const l = { volume: m.volume, peer: m.peer };
    // No sample before the first replicated snapshot (an absent series, not a made-up number); ferry_mirror_up is 0 then.
    if (m.lagSeconds !== null) x.metric('ferry_mirror_lag_seconds', 'gauge', 'Age of the newest replicated snapshot, from its capture time at the primary.', l, m.lagSeconds);
    x.metric('ferry_mirror_max_delay_seconds', 'gauge', 'The mirror\'s max delay: lag above it turns health to warn.', l, m.maxDelayS);
    x.metric('ferry_mirror_up', 'gauge', '1 when the mirror\'s health is up, 0 when warn.', l, m.health === 'up' ? 1 : 0);
    x.metric('ferry_mirror_last_success_timestamp_seconds', 'gauge', 'When the last update succeeded.', l, m.lastSuccessAt ? m.lastSuccessAt / 1000 : 0);
    for (const s of STATES) x.metric('ferry_mirror_state', 'gauge', 'The mirror\'s state (1 for the current one).', { ...l, state: s }, (m.paused ? 'paused' : m.state) === s ? 1 : 0);
    x.metric('ferry_mirror_last_transfer_bytes', 'gauge', 'Bytes sent by the last update.', l, m.lastTransfer?.bytes ?? 0);
    x.metric('ferry_mirror_last_transfer_objects', 'gauge', 'Objects sent by the last update.', l, m.lastTransfer?.objects ?? 0);
    x.metric('ferry_mirror_last_transfer_duration_seconds', 'gauge', 'Duration of the last update.', l, m.lastTransfer?.seconds ?? 0);
    x.metric('ferry_mirror_transfer_in_progress', 'gauge', '1 while an update or baseline runs.', l, m.progress ? 1 : 0);
    x.metric('ferry_mirror_consecutive_failures', 'gauge', 'Failed attempts since the last success.', l, m.failures);
    x.metric('ferry_mirror_snapshot_warnings', 'gauge', 'Warnings the capture of the replicated snapshot reported (paths skipped or changed while read, a failed post hook): 0 when clean.', l, m.baseWarnings);
    const pending = countPendingPeerSnapshots(site.catalog, m.id);
    x.metric('ferry_mirror_peer_snapshots_pending', 'gauge', 'Peer snapshots not yet present at the destination.', l, pending);
    x.metric('ferry_mirror_peer_snapshot_deletions_pending', 'gauge', 'Peer snapshots deleted with --peer that the destination has not confirmed deleting yet.', l, countDeletionsOwed(site.catalog, m.id));
  }
  // Kept in the catalog as their events are recorded, so they survive restarts and removed mirrors.
  renderTotals(x, engine);
  for (const s of listSecondaries(site.catalog)) {
    x.metric('ferry_replica_apply_in_progress', 'gauge', '1 while an apply runs (or was cut and awaits resumption).', { volume: s.volume }, s.applying ? 1 : 0);
    x.metric('ferry_replica_consistent', 'gauge', '1 when the replica shows a complete snapshot.', { volume: s.volume }, s.consistent);
  }
  for (const v of snapshotTotals(site.catalog)) {
    x.metric('ferry_snapshots', 'gauge', 'Snapshots held for the volume.', { volume: v.volume }, v.n);
    x.metric('ferry_snapshot_last_timestamp_seconds', 'gauge', 'When the newest snapshot held for the volume was captured (at its primary).', { volume: v.volume }, v.last / 1000);
  }
  const store = site.store.stats();
  const logical = logicalBytes(site.catalog);
  x.metric('ferry_store_objects', 'gauge', 'Objects in the store.', {}, store.objects);
  x.metric('ferry_store_packs', 'gauge', 'Pack files in the store.', {}, store.packs);
  x.metric('ferry_store_size_bytes', 'gauge', 'Bytes of pack files on disk.', {}, store.storedBytes);
  x.metric('ferry_store_raw_bytes', 'gauge', 'Uncompressed bytes of the stored objects.', {}, store.rawBytes);
  const gc = collectionReport(site);
  x.metric('ferry_gc_releasable_bytes', 'gauge', 'Estimated bytes that released snapshots left for the next collection to free (docs/store.md, "When garbage is collected").', {}, gc.releasableBytes);
  x.metric('ferry_gc_threshold_bytes', 'gauge', 'Releasable bytes above which an automatic collection runs (site.gcThreshold; 0: after every release).', {}, gc.thresholdBytes);
  if (gc.lastCollectionAt !== null) x.metric('ferry_gc_last_timestamp_seconds', 'gauge', 'When the last garbage collection ran.', {}, gc.lastCollectionAt / 1000);
  x.metric('ferry_store_dedup_ratio', 'gauge', 'Logical bytes of all local snapshots divided by the uncompressed bytes stored.', {}, store.rawBytes > 0 ? logical / store.rawBytes : 0);
  for (const l of listLinks(site.catalog)) {
    const st = linkStatus(site, l);
    x.metric('ferry_link_age_seconds', 'gauge', 'Age of the snapshot a link shows.', { path: l.path, volume: l.volume }, st.ageSeconds);
    x.metric('ferry_link_up', 'gauge', '1 when the link is younger than its max delay.', { path: l.path, volume: l.volume }, st.health === 'up' ? 1 : 0);
  }
  for (const f of filesystems(site)) {
    x.metric('ferry_filesystem_avail_bytes', 'gauge', 'Bytes free to unprivileged users on a filesystem ferry writes (the home\'s, the replica root\'s, each tree member\'s), once per filesystem: path is the first of them on it.', { path: f.path }, f.avail);
    x.metric('ferry_filesystem_size_bytes', 'gauge', 'Size of that filesystem.', { path: f.path }, f.size);
  }
  // The change journal (journal-service.ts): per tree member of the volumes this daemon captures.
  const journal = journalOf(site);
  if (journal) {
    for (const v of listVolumes(site.catalog)) {
      for (const [member, j] of Object.entries(journal.status(v.name))) {
        const l = { volume: v.name, member };
        x.metric('ferry_journal_live', 'gauge', '1 when snapshots of the member read only what its change journal names; 0 when the next one walks in full (an audit is due, or the journal lost events).', l, j.state === 'live' ? 1 : 0);
        x.metric('ferry_journal_missed_total', 'counter', 'Audits (full walks) that found a change the change journal did not report, since the daemon started.', l, j.missed);
        if (j.lastAudit !== null) x.metric('ferry_journal_last_audit_timestamp_seconds', 'gauge', 'When the member was last walked in full.', l, j.lastAudit / 1000);
      }
    }
  }
  x.metric('ferry_site_info', 'gauge', 'Always 1; the site\'s name and id as labels.', { site: site.name, id: site.id }, 1);
  x.metric('ferry_build_info', 'gauge', 'Always 1; the version of ferry and of the Node.js running it as labels.', { version: FERRY_VERSION, node: process.versions.node }, 1);
  runtime?.render(x);
  x.metric('ferry_scrape_timestamp_seconds', 'gauge', 'When these metrics were computed.', {}, now / 1000);
  return x.text();
}
