// The filesystems a site writes, for the free-space figures of the metrics
// (ferry_filesystem_*_bytes) that the disk alerts of
// packaging/prometheus/ferry-rules.yml read.
import { statfsSync, statSync } from 'node:fs';
import { replicaRoot } from './paths.ts';
import type { Site } from './site.ts';
import { listVolumes } from '../catalog/volumes.ts';

/**
 * The filesystems ferry writes, once each (by device): the home (catalog, store), the replica root
 * (new replicas), and every tree member (a replica is applied there). A path that is not there
 * (yet) is left out. For the disk-full alert (packaging/prometheus/ferry-rules.yml).
 */
export function filesystems(site: Site): Array<{ path: string; avail: number; size: number }> {
  const paths = [site.paths.home, replicaRoot(site), ...listVolumes(site.catalog).flatMap((v) => v.members.filter((m) => m.kind === 'tree').map((m) => m.path))];
  const seen = new Set<number>();
  const out: Array<{ path: string; avail: number; size: number }> = [];
  for (const path of paths) {
    try {
      const dev = statSync(path).dev;
      if (seen.has(dev)) continue;
      const fs = statfsSync(path);
      seen.add(dev);
      out.push({ path, avail: fs.bavail * fs.bsize, size: fs.blocks * fs.bsize });
    } catch {
      // not there (a replica root not made yet, a member removed by hand)
    }
  }
  return out;
}
