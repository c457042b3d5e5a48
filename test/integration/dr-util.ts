// Moved to test/harness/: this file only re-exports it under its old names, for tests not yet moved
// onto the harness. New tests import '../harness/index.ts' (there: createSite, TestSite.volumeStatus).
import { createSite, waitFor as harnessWaitFor, type TestSite } from '../harness/index.ts';
import { mirroredPair as harnessMirroredPair } from '../harness/index.ts';

export { MiB, KiB, errorCode, pairSites, pairPlain, cleanupSites, writeVolumeData, writeChange, copyTree, mirrorRow, mirrorWithBase, transfersSince } from '../harness/index.ts';

/** The harness's site, with `volume(name)` for its status entry (the harness calls it volumeStatus). */
export type DrSite = TestSite & { volume(volume: string): Promise<any> };

export async function newSite(name: string): Promise<DrSite> {
  const site = (await createSite(name, { prefix: `ferry-dr-${name}-` })) as DrSite;
  site.volume = site.volumeStatus;
  return site;
}

export function mirroredPair(list: DrSite[], names: [string, string], o: { files?: number; fileSize?: number; beforeStart?: (a: DrSite, b: DrSite) => void } = {}): Promise<{ a: DrSite; b: DrSite; data: string }> {
  return harnessMirroredPair(list, names, { ...o, create: newSite });
}

/** The harness's waitFor with this file's old defaults (30 s, every 200 ms). */
export function waitFor<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 30_000, everyMs = 200): Promise<T> {
  return harnessWaitFor(what, fn, { timeoutMs, everyMs });
}
