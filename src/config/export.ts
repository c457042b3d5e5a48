// `config export`: the site's current state as a site file, which `config
// check` accepts and `config apply` applies as a no-op. Read-only.
import { Document } from 'yaml';
import { readMeta } from '../site/catalog.ts';
import { listLinks } from '../dr/links.ts';
import { listMirrors } from '../site/mirrors.ts';
import { listPeers } from '../site/peers.ts';
import type { Site } from '../site/site.ts';
import { listVolumes, type HookSpec } from '../site/volumes.ts';
import { CONFIG_VERSION, DEFAULTS, META_KEYS, RETENTION_KEYS } from './schema.ts';

/** Seconds as the file writes them: 0s, 90s, 15m, 1h30m, 1d, 2w. */
export function formatDurationSpec(seconds: number): string {
  if (seconds === 0) return '0s';
  if (!Number.isInteger(seconds)) return `${seconds}s`;
  const units: Array<[string, number]> = [['w', 604_800], ['d', 86_400], ['h', 3600], ['m', 60], ['s', 1]];
  if (seconds % 604_800 === 0) return `${seconds / 604_800}w`;
  let left = seconds;
  let out = '';
  for (const [u, n] of units.slice(1)) {
    if (left >= n) {
      out += `${Math.floor(left / n)}${u}`;
      left %= n;
    }
  }
  return out;
}

/** Bytes per second as the file writes them: 50MiB/s, 1GiB/s, 500KiB/s, 1234/s. */
export function formatRateSpec(bytes: number): string {
  for (const [u, n] of [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) if (bytes % n === 0) return `${bytes / n}${u}/s`;
  for (const [u, n] of [['GB', 1e9], ['MB', 1e6], ['kB', 1e3]] as const) if (bytes % n === 0) return `${bytes / n}${u === 'kB' ? 'kb' : u}/s`;
  return `${bytes}/s`;
}

function formatSizeSpec(bytes: number): string {
  return formatRateSpec(bytes).replace(/\/s$/, '');
}

function hook(h: HookSpec): Record<string, unknown> {
  return { command: h.command, timeout: formatDurationSpec(h.timeout) };
}

/** The site's state as a plain object in the file's shape. */
export function exportConfigObject(site: Site): Record<string, unknown> {
  const meta = (k: string) => readMeta(site.db, k);
  const siteSection: Record<string, unknown> = { name: site.name };
  if (meta(META_KEYS.listen)) siteSection.listen = meta(META_KEYS.listen);
  if (meta(META_KEYS.replicaRoot)) siteSection.replicaRoot = meta(META_KEYS.replicaRoot);
  const logFile = meta(META_KEYS.logFile);
  if (logFile) {
    const log: Record<string, unknown> = { file: logFile };
    const max = meta(META_KEYS.logMaxBytes);
    const keep = meta(META_KEYS.logKeep);
    if (max) log.maxSize = formatSizeSpec(Number(max));
    if (keep) log.keep = Number(keep);
    siteSection.log = log;
  }
  const volumes: Record<string, unknown> = {};
  for (const v of listVolumes(site)) {
    const out: Record<string, unknown> = {};
    if (v.role === 'secondary') out.secondary = true;
    out.members = v.members.map((m) => ({ name: m.name, kind: m.kind, path: m.path }));
    if (v.hooks.pre || v.hooks.post) out.hooks = { ...(v.hooks.pre ? { pre: hook(v.hooks.pre) } : {}), ...(v.hooks.post ? { post: hook(v.hooks.post) } : {}) };
    const ret = Object.fromEntries(RETENTION_KEYS.filter((k) => v.retention[k]).map((k) => [k, v.retention[k]]));
    if (Object.keys(ret).length) out.retention = ret;
    volumes[v.name] = out;
  }
  const mirrors = listMirrors(site).map((m) => {
    const out: Record<string, unknown> = { volume: m.volume, to: m.peer };
    if (m.remoteVolume !== m.volume) out.remoteVolume = m.remoteVolume;
    if (m.scheduleS !== null) out.schedule = formatDurationSpec(m.scheduleS);
    if (m.minDelayS !== DEFAULTS.mirror.minDelayS) out.minDelay = formatDurationSpec(m.minDelayS);
    out.maxDelay = formatDurationSpec(m.maxDelayS);
    if (m.bandwidth !== null) out.bandwidth = formatRateSpec(m.bandwidth);
    return out;
  });
  const links = listLinks(site).map((l) => {
    const out: Record<string, unknown> = { path: l.path, volume: l.volume, member: l.member };
    if (l.snapshotRef !== DEFAULTS.link.snapshot) out.snapshot = l.snapshotRef;
    if (l.scheduleS !== null) out.schedule = formatDurationSpec(l.scheduleS);
    if (l.minDelayS !== DEFAULTS.link.minDelayS) out.minDelay = formatDurationSpec(l.minDelayS);
    out.maxDelay = formatDurationSpec(l.maxDelayS);
    return out;
  });
  return { version: CONFIG_VERSION, site: siteSection, volumes, mirrors, links };
}

/** The site's state as YAML text, with a header that says where it came from. */
export function exportConfigText(site: Site): string {
  const doc = new Document(exportConfigObject(site));
  const peers = listPeers(site);
  doc.commentBefore = [
    ` ferry site file for site ${site.name}, written by \`ferry config export\` at ${new Date(site.clock.now()).toISOString()}.`,
    ' Reference: docs/config.md. Check with `ferry config check`, apply with `ferry config apply`.',
    peers.length
      ? ` Paired sites (paired with \`ferry site add\`, not declared here): ${peers.map((p) => `${p.name} ${p.url}`).join(', ')}`
      : ' No paired sites yet (pair one with `ferry site add NAME URL --id ID`).',
  ].join('\n');
  return doc.toString({ lineWidth: 0 });
}
