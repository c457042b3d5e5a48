// The soak's one door to the shared test helpers (test/helpers.ts, test/integration/*, the
// fuzzer's PRNG). Everything the soak needs from them is re-exported here and nowhere else is
// imported from there, so when the helpers move (test/harness/) only this file changes.
export { FERRY_BIN, ROOT, seededBytes, tempDir } from '../helpers.ts';
export { startDaemon, stopDaemon, withCatalog, exited } from '../harness/index.ts';
export { TcpProxy } from '../harness/tcp-proxy.ts';
export { tryMount, unmount } from '../harness/small-fs.ts';
export { Rng } from '../fuzz/rng.ts';
