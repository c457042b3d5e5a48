// `config export`: the site's current state as a site file, which `config
// check` accepts and `config apply` applies as a no-op. Read-only. Values are
// written with core/units.ts's spec formatters, which its parsers read back
// to the same numbers; a setting stored out of bounds by an older ferry is
// written as the value in force (within bounds), so the file always checks.
import { Document } from 'yaml';
import { readMeta } from '../catalog/meta.ts';
import { type Link } from '../dr/links.ts';
import { type Mirror } from '../site/mirrors.ts';
import type { Site } from '../site/site.ts';
import { type HookSpec } from '../site/volumes.ts';
import { clampStored, COUNT, DURATION, formatDurationSpec, formatRateSpec, formatSizeSpec, SIZE, type DeltaMode } from '../core/units.ts';
import { CONFIG_VERSION, DEFAULTS, META_KEYS, RETENTION_KEYS } from './schema.ts';
import { listLinks } from '../catalog/links.ts';
import { listMirrors } from '../catalog/mirrors.ts';
import { listPeers } from '../catalog/peers.ts';
import { listVolumes } from '../catalog/volumes.ts';

function hook(h: HookSpec): Record<string, unknown> {
  return { command: h.command, timeout: formatDurationSpec(clampStored(h.timeout, DURATION.hookTimeout).value) };
}

/** The site's state as a plain object in the file's shape. */
export function exportConfigObject(site: Site): Record<string, unknown> {
  const meta = (k: string) => readMeta(site.catalog, k);
  const siteSection: Record<string, unknown> = { name: site.name };
  if (meta(META_KEYS.listen)) siteSection.listen = meta(META_KEYS.listen);
  if (meta(META_KEYS.replicaRoot)) siteSection.replicaRoot = meta(META_KEYS.replicaRoot);
  const budget = meta(META_KEYS.memoryBudget);
  if (budget) siteSection.memoryBudget = formatSizeSpec(clampStored(Number(budget), SIZE.memoryBudget).value);
  const gcThreshold = meta(META_KEYS.gcThreshold);
  if (gcThreshold) siteSection.gcThreshold = formatSizeSpec(clampStored(Number(gcThreshold), SIZE.gcThreshold).value);
  const logFile = meta(META_KEYS.logFile);
  if (logFile) {
    const log: Record<string, unknown> = { file: logFile };
    const max = meta(META_KEYS.logMaxBytes);
    const keep = meta(META_KEYS.logKeep);
    if (max) log.maxSize = formatSizeSpec(clampStored(Number(max), SIZE.logMaxSize).value);
    if (keep) log.keep = clampStored(Number(keep), COUNT.logKeep).value;
    siteSection.log = log;
  }
  const volumes: Record<string, unknown> = {};
  for (const v of listVolumes(site.catalog)) {
    const out: Record<string, unknown> = {};
    if (v.role === 'secondary') out.secondary = true;
    out.members = v.members.map((m) => ({ name: m.name, kind: m.kind, path: m.path }));
    if (v.hooks.pre || v.hooks.post) out.hooks = { ...(v.hooks.pre ? { pre: hook(v.hooks.pre) } : {}), ...(v.hooks.post ? { post: hook(v.hooks.post) } : {}) };
    const ret = Object.fromEntries(RETENTION_KEYS.filter((k) => v.retention[k]).map((k) => [k, v.retention[k]]));
    if (Object.keys(ret).length) out.retention = ret;
    if (!v.journal) out.journal = false;
    volumes[v.name] = out;
  }
  return { version: CONFIG_VERSION, site: siteSection, volumes, mirrors: listMirrors(site.catalog).map(mirrorEntry), links: listLinks(site.catalog).map(linkEntry) };
}

/** One mirror as the file writes it (its settings as read: within bounds). */
export function mirrorEntry(m: Pick<Mirror, 'volume' | 'peer' | 'remoteVolume' | 'scheduleS' | 'minDelayS' | 'maxDelayS' | 'bandwidth'> & { deltas?: DeltaMode }): Record<string, unknown> {
  const out: Record<string, unknown> = { volume: m.volume, to: m.peer };
  if (m.remoteVolume !== m.volume) out.remoteVolume = m.remoteVolume;
  if (m.scheduleS !== null) out.schedule = formatDurationSpec(m.scheduleS);
  if (m.minDelayS !== DEFAULTS.mirror.minDelayS) out.minDelay = formatDurationSpec(m.minDelayS);
  out.maxDelay = formatDurationSpec(m.maxDelayS);
  if (m.bandwidth !== null) out.bandwidth = formatRateSpec(m.bandwidth);
  if (m.deltas !== undefined && m.deltas !== 'auto') out.deltas = m.deltas;
  return out;
}

/** One link as the file writes it. */
export function linkEntry(l: Pick<Link, 'path' | 'volume' | 'member' | 'snapshotRef' | 'scheduleS' | 'minDelayS' | 'maxDelayS'>): Record<string, unknown> {
  const out: Record<string, unknown> = { path: l.path, volume: l.volume, member: l.member };
  if (l.snapshotRef !== DEFAULTS.link.snapshot) out.snapshot = l.snapshotRef;
  if (l.scheduleS !== null) out.schedule = formatDurationSpec(l.scheduleS);
  if (l.minDelayS !== DEFAULTS.link.minDelayS) out.minDelay = formatDurationSpec(l.minDelayS);
  out.maxDelay = formatDurationSpec(l.maxDelayS);
  return out;
}

/** The site's state as YAML text, with a header that says where it came from. */
export function exportConfigText(site: Site): string {
  const doc = new Document(exportConfigObject(site));
  const peers = listPeers(site.catalog);
  doc.commentBefore = [
    ` ferry site file for site ${site.name}, written by \`ferry config export\` at ${new Date(site.clock.now()).toISOString()}.`,
    ' Reference: docs/config.md. Check with `ferry config check`, apply with `ferry config apply`.',
    peers.length
      ? ` Paired sites (paired with \`ferry site add\`, not declared here): ${peers.map((p) => `${p.name} ${p.url}`).join(', ')}`
      : ' No paired sites yet (pair one with `ferry site add NAME URL --id ID`).',
  ].join('\n');
  return doc.toString({ lineWidth: 0 });
}
