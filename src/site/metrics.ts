// Prometheus metrics, computed from the catalog and the engine when scraped
// (text exposition format 0.0.4). Names follow Prometheus conventions: base
// units (seconds, bytes), `_total` for counters, labels for identity.
import type { Engine } from './engine.ts';
import { filesystems } from './filesystems.ts';
import { journalOf } from './journal-service.ts';
import { listVolumes } from '../catalog/volumes.ts';
import { linkStatus } from '../dr/links.ts';
import { hookFailures as countHookFailures, transferTotals } from '../catalog/events.ts';
import { listLinks } from '../catalog/links.ts';
import { countDeletionsOwed, countPendingPeerSnapshots } from '../catalog/peer-snapshots.ts';
import { listSecondaries } from '../catalog/secondaries.ts';
import { logicalBytes, snapshotTotals } from '../catalog/snapshots.ts';

type Labels = Record<string, string>;

interface Family {
  type: 'gauge' | 'counter';
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
    if (!NAME_RE.test(name) || name.startsWith('__')) throw new Error(`metric name ${name} is not valid`);
    if (type === 'counter' && !name.endsWith('_total')) throw new Error(`counter ${name} must end in _total`);
    let f = this.#families.get(name);
    if (!f) this.#families.set(name, (f = { type, help, samples: [] }));
    else if (f.type !== type) throw new Error(`metric ${name} declared as ${f.type} and ${type}`);
    const l = Object.entries(labels)
      .map(([k, v]) => {
        if (!LABEL_RE.test(k) || k.startsWith('__')) throw new Error(`label name ${k} is not valid`);
        return `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
      })
      .join(',');
    f.samples.push(`${name}${l ? `{${l}}` : ''} ${formatValue(value)}`);
  }

  text(): string {
    const lines: string[] = [];
    for (const [name, f] of this.#families) {
      lines.push(`# HELP ${name} ${f.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${name} ${f.type}`, ...f.samples);
    }
    return lines.join('\n') + '\n';
  }
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

const STATES = ['uninitialized', 'baselining', 'idle', 'updating', 'paused', 'disconnected', 'needs-full-sync', 'broken-off', 'resyncing'];

export function renderMetrics(engine: Engine): string {
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
  // Counted from the event log (which is never pruned), so they survive restarts and removed mirrors.
  const totals = transferTotals(site.catalog);
  for (const t of totals) {
    // The same labels as the mirror's gauges: a mirror's id is VOLUME@PEER.
    const peer = t.mirror?.startsWith(`${t.volume}@`) ? t.mirror.slice(t.volume.length + 1) : (t.mirror ?? '');
    const l = { volume: t.volume, peer };
    x.metric('ferry_mirror_transferred_bytes_total', 'counter', 'Bytes sent by successful updates.', l, t.bytes ?? 0);
    x.metric('ferry_mirror_transferred_objects_total', 'counter', 'Objects sent by successful updates.', l, t.objects ?? 0);
  }
  for (const s of listSecondaries(site.catalog)) {
    x.metric('ferry_replica_apply_in_progress', 'gauge', '1 while an apply runs (or was cut and awaits resumption).', { volume: s.volume }, s.applying ? 1 : 0);
    x.metric('ferry_replica_consistent', 'gauge', '1 when the replica shows a complete snapshot.', { volume: s.volume }, s.consistent);
  }
  for (const v of snapshotTotals(site.catalog)) {
    x.metric('ferry_snapshots', 'gauge', 'Snapshots held for the volume.', { volume: v.volume }, v.n);
  }
  const store = site.store.stats();
  const logical = logicalBytes(site.catalog);
  x.metric('ferry_store_objects', 'gauge', 'Objects in the store.', {}, store.objects);
  x.metric('ferry_store_packs', 'gauge', 'Pack files in the store.', {}, store.packs);
  x.metric('ferry_store_size_bytes', 'gauge', 'Bytes of pack files on disk.', {}, store.storedBytes);
  x.metric('ferry_store_raw_bytes', 'gauge', 'Uncompressed bytes of the stored objects.', {}, store.rawBytes);
  x.metric('ferry_store_dedup_ratio', 'gauge', 'Logical bytes of all local snapshots divided by the uncompressed bytes stored.', {}, store.rawBytes > 0 ? logical / store.rawBytes : 0);
  const hookFailures = countHookFailures(site.catalog);
  x.metric('ferry_hook_failures_total', 'counter', 'Hook runs that failed or timed out.', {}, hookFailures);
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
  x.metric('ferry_scrape_timestamp_seconds', 'gauge', 'When these metrics were computed.', {}, now / 1000);
  return x.text();
}
