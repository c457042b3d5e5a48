// `ferry serve` starts its attribute helpers (snapshot/xattr-helper.ts) at
// start and leaves none behind: stopped by SIGTERM, the daemon exits by
// itself and takes its helpers with it; killed with -9, its helpers see the
// end of their input and exit.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { XATTR_HELPER_NAME } from '../../src/snapshot/xattr-helper.ts';
import { cleanupSites, createSite, metricValue, scrapeMetrics, waitFor, type TestSite } from '../harness/index.ts';

const sites: TestSite[] = [];
after(() => cleanupSites(sites));

/** Running processes whose command line names the helper, with their parent's pid (from /proc). */
function helperProcesses(): Array<{ pid: number; ppid: number }> {
  const out: Array<{ pid: number; ppid: number }> = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (!readFileSync(`/proc/${d}/cmdline`, 'latin1').split('\0').includes(XATTR_HELPER_NAME)) continue;
      const stat = readFileSync(`/proc/${d}/stat`, 'latin1');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields[0] === 'Z') continue; // exited, not yet reaped
      out.push({ pid: Number(d), ppid: Number(fields[1]) });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

const helpersOf = (pid: number) => helperProcesses().filter((p) => p.ppid === pid).map((p) => p.pid);
const stillRunning = (pids: number[]) => helperProcesses().filter((p) => pids.includes(p.pid));

test('the daemon starts its helpers (two for the reader, one for the synchronous callers), and none is left once it stops (SIGTERM) or is killed (-9)', async () => {
  const site = await createSite('xh');
  sites.push(site);
  await site.start();
  const pid = site.proc!.pid!;
  const helpers = helpersOf(pid);
  assert.equal(helpers.length, 3, `helpers of daemon ${pid}: ${JSON.stringify(helperProcesses())}`);
  assert.equal(metricValue(await scrapeMetrics(site.home), 'ferry_xattr_helpers'), 3);
  // a graceful stop: the daemon exits by itself (a helper left running would keep it alive), helpers gone
  const stopped = await site.stop();
  assert.deepEqual(stopped, { code: 0, signal: null });
  assert.deepEqual(stillRunning(helpers), []);

  await site.start({ port: site.port });
  const again = helpersOf(site.proc!.pid!);
  assert.equal(again.length, 3);
  assert.deepEqual(await site.stop('SIGKILL'), { code: null, signal: 'SIGKILL' });
  await waitFor('the killed daemon\'s helpers to exit', () => stillRunning(again).length === 0, 10_000, 50);
});

test('a start that fails (its port taken) exits at once with its error, its helpers stopped', async () => {
  const site = await createSite('xh-busy');
  sites.push(site);
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  try {
    const port = (taken.address() as { port: number }).port;
    // a helper left running would keep the failed daemon alive until startDaemon's timeout killed it
    await assert.rejects(site.start({ port }), /daemon exited \(\d+\).*cannot listen on 127\.0\.0\.1:\d+/s);
  } finally {
    await new Promise<void>((resolve) => taken.close(() => resolve()));
  }
});
