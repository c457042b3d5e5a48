// Moved to test/harness/: this file only re-exports it under its old names, for tests not yet moved
// onto the harness. New tests import '../harness/index.ts' (there: createSite, TestSite.defineVolume).
import { createSite as harnessCreateSite, type DaemonJson, type TestSite } from '../harness/index.ts';

export type { DaemonJson, MirrorState as MirrorRow } from '../harness/index.ts';
export { errorCode, assertRefused, pairSites as pair, cleanupSites as cleanupAll } from '../harness/index.ts';
export { waitFor } from './daemons.ts';

/** The harness's site with `volume(name, members)` to define a volume, and a restart on any port unless one is given. */
export type RealSite = Omit<TestSite, 'start'> & {
  volume(name: string, members: string[]): void;
  start(opts?: { tick?: number; port?: number; env?: Record<string, string>; args?: string[]; bin?: string }): Promise<DaemonJson>;
};

export async function createSite(name: string): Promise<RealSite> {
  const site = await harnessCreateSite(name, { prefix: `ferry-rep-${name}-`, cliTimeoutMs: 60_000 });
  const start = site.start;
  return Object.assign(site, {
    volume: (vol: string, members: string[]) => site.defineVolume(vol, members),
    start: (o: Parameters<RealSite['start']>[0] = {}) => start({ ...o, port: o.port ?? 0 }),
  });
}
