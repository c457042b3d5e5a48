// The receiving end of replication at a site: the site's side of the
// receiver in replication/receive/ (docs/design.md, "Layers"). This module
// only hands the site to it (receiveHost: the catalog and store, events, GC,
// the replica journal, where new secondaries go) and gives the rest of the
// site and DR the replica lock and cancellation of a volume. Everything a
// receiver keeps between requests lives in the site's replica state
// (site.replicas), so two sites in one process share none of it.
import { join } from 'node:path';
import type { ChunkPool } from '../snapshot/chunk-pool.ts';
import { ReplicaReceiver } from '../replication/receive/receiver.ts';
import type { ReceiveHost } from '../replication/receive/host.ts';
import type { Site } from './site.ts';
import { collectGarbageSoon } from './snapshots.ts';
import { countRelease, estimateRelease } from './auto-collect.ts';
import { createVolume, memberPathProblem } from './volumes.ts';
import { journalOf } from './journal-service.ts';
import { canonicalPath, replicaRoot, replicaRootProblem, sitePathOwners, within } from './paths.ts';

/** What the receiver needs of `site` (replication/receive/host.ts). */
export function receiveHost(site: Site): ReceiveHost {
  return {
    id: site.id,
    name: site.name,
    catalog: site.catalog,
    store: site.store,
    clock: site.clock,
    replicas: site.replicas,
    event: (e) => site.event(e),
    beginWrite: () => site.beginWrite(),
    journal: () => journalOf(site),
    estimateRelease: (volume, ids) => estimateRelease(site, volume, ids),
    countRelease: (bytes, o) => countRelease(site, bytes, o),
    collectGarbageSoon: (reason) => {
      collectGarbageSoon(site, reason);
    },
    replicaPlace: (volume, members) => {
      const root = replicaRoot(site);
      const base = join(root, volume);
      const owners = sitePathOwners(site);
      const at = canonicalPath(base);
      const occupant = [...owners.members.map((o) => ({ ...o, what: `${o.what} (${o.path})` })), ...owners.links].find((o) => within(o.path, at));
      return {
        base,
        members: members.map((m) => ({ name: m.name, kind: m.kind, path: canonicalPath(join(base, m.name)) })),
        problem: replicaRootProblem(site, root, owners),
        ...(occupant ? { occupant: occupant.what } : {}),
      };
    },
    memberPathProblem: (members) => memberPathProblem(site, members),
    createSecondaryVolume: (name, members) => {
      createVolume(site, name, { role: 'secondary', members });
    },
  };
}

/** The receiver of a site for one authenticated peer (`peer`: the sender's site id). */
export class SiteReceiver extends ReplicaReceiver {
  constructor(site: Site, peer: string, pool: ChunkPool) {
    super(receiveHost(site), peer, pool);
  }
}

/** An apply of the volume is running or queued in this process. */
export function applyInFlight(site: Site, volume: string): boolean {
  return site.replicas.applying(volume);
}

/** Ask the apply in flight (and those queued behind it) to stop at its next check; the replica stays marked inconsistent. */
export function cancelApply(site: Site, volume: string, reason: string): void {
  site.replicas.of(volume).cancel(reason);
}

/**
 * Run `fn` holding the volume's replica lock, the one every apply holds: a failover takes it so it
 * never promotes a replica while an apply writes into it. A cancellation asked for before ends with it.
 */
export function withReplicaLock<T>(site: Site, volume: string, fn: () => Promise<T>): Promise<T> {
  return site.replicas.of(volume).withLock(fn);
}
