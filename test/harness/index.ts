// The integration tests' harness (docs/testing.md, "The test harness"): one way
// to start and stop daemons, make and pair sites, create and initialize
// mirrors, peek at a catalog, wait for a condition, and assert an error.
export { startDaemon, stopDaemon, exited, runningDaemons, scrapeMetrics, metricValue, type Daemon, type DaemonJson } from './daemon.ts';
export { waitFor, giveUp, type WaitOptions } from './wait.ts';
export { errorCode, assertRefused, suggestedCommand } from './errors.ts';
export { createSite, cleanupSites, setSiteSettings, type TestSite } from './site.ts';
export { pairSites, pairPlain, createMirror, mirroredPair } from './mirrors.ts';
export {
  withCatalog,
  mirrorState,
  mirrorRow,
  mirrorWithBase,
  secondaryState,
  snapshotRows,
  memberPaths,
  transfersSince,
  storeTotals,
  indexedPacks,
  type HasHome,
  type MirrorState,
  type SecondaryState,
} from './catalog.ts';
export { MiB, KiB, writeVolumeData, writeChange, copyTree } from './data.ts';
