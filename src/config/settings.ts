// The few settings a site file changes that no command changes yet: the
// site's own settings (catalog meta), a mirror's schedule, delays and
// bandwidth, and a link's snapshot reference, schedule and delays. Each is
// one transaction and one event, like every other state change.
// Everything else `config apply` does goes through the same operations as
// the CLI (app/ops.ts). A mirror's settings are set by site/mirrors.ts
// (shared with `ferry mirror set`); when `ferry link set` exists, the link's
// belong beside createLink.
import { FerryError } from '../core/errors.ts';
import { checkScheduleSettings, type DeltaMode } from '../core/units.ts';
import { setMirrorSettings as setMirrorSettingsOf } from '../site/mirrors.ts';
import type { Site } from '../site/site.ts';
import { replicaRootProblem, sitePathOwners } from '../site/paths.ts';
import { findLink, setLinkSettings as writeLinkSettings } from '../catalog/links.ts';
import { writeMeta } from '../catalog/meta.ts';
import { findMirrorById } from '../catalog/mirrors.ts';
import { META_KEYS } from './schema.ts';

export function setSiteMeta(site: Site, values: Record<string, string | null>): void {
  // The plan checked the file; checked again against the catalog as it is now (paths.ts).
  const root = values[META_KEYS.replicaRoot];
  const why = root ? replicaRootProblem(site, root, sitePathOwners(site)) : undefined;
  if (why) throw new FerryError('CONFIG_INVALID', `site.replicaRoot: ${why}`);
  site.catalog.tx(() => {
    writeMeta(site.catalog, values);
    site.event({ kind: 'site.settings', outcome: 'ok', detail: { set: values } });
  });
}

export function setMirrorSettings(site: Site, id: string, s: { scheduleS: number | null; minDelayS: number; maxDelayS: number; bandwidth: number | null; deltas?: DeltaMode }): void {
  const cur = findMirrorById(site.catalog, id);
  if (!cur) throw new FerryError('MIRROR_NOT_FOUND', `no mirror ${id} (removed while the plan ran?); apply the file again`);
  setMirrorSettingsOf(site, cur.volume, cur.peer, s);
}

export function setLinkSettings(site: Site, path: string, s: { snapshotRef: string; scheduleS: number | null; minDelayS: number; maxDelayS: number }): void {
  const cur = findLink(site.catalog, path);
  if (!cur) throw new FerryError('USAGE', `no link at ${path} (removed while the plan ran?); apply the file again`);
  checkScheduleSettings(s, 'link');
  site.catalog.tx(() => {
    writeLinkSettings(site.catalog, path, s);
    site.event({ kind: 'link.settings', volume: cur.volume, outcome: 'ok', detail: { path, ...s } });
  });
}
