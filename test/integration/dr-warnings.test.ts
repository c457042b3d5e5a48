// Snapshots a DR workflow takes tell what their capture skipped or only recorded, like `snapshot
// create`: the failover-* snapshot of a failover and, above all, the failback-kept-* snapshot of a
// failback (writes it could not read are not kept) name those paths and the command exits 8.
// A FIFO is the capture warning that needs no special privileges: it is recorded, never read.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { cleanupSites, mirroredPair, type DrSite } from './dr-util.ts';

const sites: DrSite[] = [];
after(() => cleanupSites(sites));

function fifo(path: string): void {
  const r = spawnSync('mkfifo', [path]);
  assert.equal(r.status, 0, `mkfifo ${path}: ${r.stderr}`);
}

test('failover and failback report the capture warnings of the snapshots they take (exit 8)', async () => {
  const { a, b, data } = await mirroredPair(sites, ['warn-east', 'warn-west']);
  const replica = await b.memberPath('vol');
  fifo(join(replica, 'pipe-at-west'));
  const fo = await b.ferry(['failover', 'vol', '--json']);
  assert.equal(fo.code, 8, `failover: ${fo.stdout}\n${fo.stderr}`);
  assert.deepEqual(fo.json.warnings.map((w: { path: string }) => w.path), ['data:pipe-at-west']);

  // east learns of the failover (the notice), writes on, then fails back: its kept snapshot warns
  fifo(join(data, 'pipe-at-east'));
  const fb = await a.ferry(['failback', 'vol']);
  assert.equal(fb.code, 8, `failback: ${fb.stdout}\n${fb.stderr}`);
  assert.match(fb.stderr, /path\(s\) skipped while capturing the kept snapshot failback-kept-\S+: writes made here at these paths are NOT kept/);
  assert.match(fb.stderr, /warning: data:pipe-at-east: /);
  const events = (await a.ferry(['events', '--kind', 'failback', '--json'])).stdout.split('\n').filter((l) => l.includes('"warning"'));
  assert.equal(events.length, 1, 'one warning event names the kept snapshot and its paths');
});
