// Centralized event history: `ferry events --site NAME` reads a paired site's
// events from its daemon (peer API, paired sites only, bounded), `--site all`
// merges every site's in time order and reports a peer it cannot reach; and a
// daemon configured through the catalog (log_file, log_max_bytes, log_keep)
// writes its transitions to a rotated JSON-lines file. Real daemons, real
// sockets.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { FERRY_BIN } from '../helpers.ts';
import { cleanupSites, createSite, errorCode, pairSites, waitFor, type TestSite } from '../harness/index.ts';
import { Site } from '../../src/site/site.ts';
import { PeerClient } from '../../src/transport/client.ts';
import { loadIdentity } from '../../src/transport/identity.ts';
import { addPeer } from '../../src/site/peers.ts';
import { FerryError } from '../../src/core/errors.ts';
import { getPeer } from '../../src/catalog/peers.ts';

const sites: TestSite[] = [];
after(() => cleanupSites(sites));

function jsonLines(stdout: string): any[] {
  return stdout.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
}

async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** A client of `peerName` with `site`'s identity, in this process (the CLI does the same). */
function clientOf(site: TestSite, peerName: string): PeerClient {
  const s = Site.open(site.home, { readOnly: true });
  try {
    return new PeerClient(loadIdentity(s.paths.identity), getPeer(s.catalog, peerName));
  } finally {
    s.close();
  }
}

test('events --site: a secondary\'s events read from the primary, --site all merged, unreachable and unpaired sites, bounds, follow, and the log file', async () => {
  const [a, b, c] = await Promise.all([createSite('a'), createSite('b'), createSite('c')]);
  sites.push(a, b, c);
  const data = join(a.dir, 'data');
  mkdirSync(data);
  for (let i = 0; i < 5; i++) writeFileSync(join(data, `f${i}.txt`), `file ${i}\n`.repeat(50));
  a.defineVolume('vol', [data]);
  const scratch = join(b.dir, 'scratch');
  mkdirSync(scratch);
  // b's log file comes from the catalog settings (what `ferry config apply` writes), not flags.
  mkdirSync(join(b.home, 'logs'));
  const bs = Site.open(b.home);
  bs.catalog.db.run("INSERT INTO meta (key, value) VALUES ('log_file', 'logs/ferry.log'), ('log_max_bytes', '1024'), ('log_keep', '1')");
  bs.close();

  await Promise.all([a.start(), b.start()]);
  await pairSites(a, b);
  await a.json(['mirror', 'create', 'vol', '--to', 'b']);
  await a.json(['mirror', 'initialize', 'vol', '--to', 'b', '--wait']);
  // Something that happens only at the secondary.
  await b.json(['volume', 'create', 'scratch', '--member', scratch]);

  // From the primary: b's events, each naming b.
  const r = await a.ferry(['events', '--site', 'b', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const bEvents = jsonLines(r.stdout);
  assert.ok(bEvents.every((e) => e.site === 'b'), 'every line names site b');
  assert.ok(bEvents.some((e) => e.event.kind === 'volume.create' && e.event.volume === 'scratch'), `b's volume.create is read from a: ${r.stdout}`);
  assert.ok(bEvents.some((e) => e.event.kind === 'replication.commit' && e.event.volume === 'vol'), 'b\'s commit of the baseline');
  assert.ok(bEvents.some((e) => e.event.kind === 'replica.apply' && e.details.transition === 'inconsistent => consistent'), 'b\'s apply transition');
  assert.ok(!bEvents.some((e) => e.event.kind === 'mirror.create'), 'a\'s own events are not b\'s');
  // Filters travel to the peer.
  const kinds = jsonLines((await a.ferry(['events', '--site', 'b', '--kind', 'volume.', '--json'])).stdout);
  assert.ok(kinds.length >= 1 && kinds.every((e) => e.event.kind.startsWith('volume.')), JSON.stringify(kinds));
  const vols = jsonLines((await a.ferry(['events', '--site', 'b', '--volume', 'scratch', '--json'])).stdout);
  assert.ok(vols.length >= 1 && vols.every((e) => e.event.volume === 'scratch'));
  // Human form, naming the site.
  const human = await a.ferry(['events', '--site', 'b', '--kind', 'replica.']);
  assert.equal(human.code, 0, human.stderr);
  assert.match(human.stdout, /^\S+Z b OK +replica\.apply vol inconsistent => consistent/m);

  // Every site at once, in time order.
  const all = await a.ferry(['events', '--site', 'all', '--json']);
  assert.equal(all.code, 0, all.stderr);
  const merged = jsonLines(all.stdout);
  assert.ok(merged.some((e) => e.site === 'a' && e.event.kind === 'mirror.create'));
  assert.ok(merged.some((e) => e.site === 'b' && e.event.kind === 'volume.create'));
  const times = merged.map((e) => Date.parse(e.time));
  assert.deepEqual(times, [...times].sort((x, y) => x - y), 'merged lines are in time order');
  assert.equal((await a.ferry(['events', '--all-sites', '--json'])).stdout.split('\n').length, all.stdout.split('\n').length);

  // A paired peer that is down: reported, not fatal, with --site all; an error when asked for alone.
  await a.json(['site', 'add', 'c', `https://127.0.0.1:${await closedPort()}`, '--id', c.id]);
  const partial = await a.ferry(['events', '--site', 'all', '--json']);
  assert.equal(partial.code, 8, `exit 8 (completed with warnings): ${partial.stderr}`);
  assert.match(partial.stderr, /c could not be read: .*\[PEER_UNREACHABLE\]/);
  const partialLines = jsonLines(partial.stdout);
  assert.ok(partialLines.some((e) => e.site === 'a') && partialLines.some((e) => e.site === 'b'), 'the reachable sites still print');
  const alone = await a.ferry(['events', '--site', 'c', '--json']);
  assert.equal(alone.code, 6);
  assert.equal(errorCode(alone), 'PEER_UNREACHABLE');
  const unknown = await a.ferry(['events', '--site', 'nobody', '--json']);
  assert.equal(errorCode(unknown), 'PEER_NOT_FOUND');

  // A site b never paired gets nothing.
  const cs = Site.open(c.home);
  addPeer(cs, 'b', b.url!, b.id);
  cs.close();
  const stranger = await c.ferry(['events', '--site', 'b', '--json']);
  assert.equal(stranger.code, 4, stranger.stderr);
  assert.equal(errorCode(stranger), 'PEER_UNTRUSTED');

  // The route is bounded and validates its input.
  const client = clientOf(a, 'b');
  try {
    const page = await client.events({ limit: 2 });
    assert.equal(page.site, 'b');
    assert.equal(page.events.length, 2);
    assert.equal(page.more, true);
    const next = await client.events({ limit: 2, after: page.events[1].id });
    assert.ok(next.events[0].id > page.events[1].id, 'the cursor pages forward');
    for (const bad of [{ limit: 100_000 }, { limit: 0 }, { volume: 7 }, { kind: 'x'.repeat(65) }, { sinceSeconds: -1 }, { after: 1.5 }]) {
      await assert.rejects(client.events(bad as never), (err: unknown) => err instanceof FerryError && err.code === 'PROTOCOL', JSON.stringify(bad));
    }
  } finally {
    client.close();
  }

  // --follow with --site polls the peer: an event that happens at b later shows up at a.
  const follower = spawn(FERRY_BIN, ['events', '--site', 'b', '--follow', '--json', '--since', '1h', '--home', a.home], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FERRY_NO_PROGRESS: '1' } });
  let followed = '';
  follower.stdout.on('data', (d) => (followed += d));
  try {
    await waitFor('the follower to print b\'s history', () => followed.includes('"volume.create"'), 30_000);
    const late = join(b.dir, 'late');
    mkdirSync(late);
    await b.json(['volume', 'create', 'late', '--member', late]);
    await waitFor('b\'s new event at the follower', () => jsonLines(followed).some((e) => e.event.kind === 'volume.create' && e.event.volume === 'late' && e.site === 'b'), 30_000);
  } finally {
    follower.kill('SIGTERM');
  }

  // b's log file, from the catalog settings: JSON lines of b's transitions, rotated at 1024 bytes, 1 kept.
  await b.stop('SIGTERM');
  const log = join(b.home, 'logs', 'ferry.log');
  const files = [`${log}.1`, log].filter(existsSync);
  assert.ok(files.length >= 2, `the log rotated: ${files.map((f) => `${f} (${statSync(f).size} bytes)`).join(', ')}\n${readFileSync(log, 'utf8')}`);
  assert.ok(!existsSync(`${log}.2`), 'no more than log_keep rotated files');
  const lines: any[] = [];
  for (const f of files) {
    assert.ok(statSync(f).size <= 1024 || readFileSync(f, 'utf8').split('\n').length === 2, `${f} is over the limit`);
    assert.equal(statSync(f).mode & 0o777, 0o600, `${f} mode`);
    const text = readFileSync(f, 'utf8');
    assert.ok(text.endsWith('\n'));
    lines.push(...text.split('\n').slice(0, -1).map((l) => JSON.parse(l)));
  }
  assert.ok(lines.every((e) => e.site === 'b'));
  assert.ok(lines.some((e) => e.event?.kind === 'volume.create' && e.event.volume === 'late'), 'recent events are in the file');
  assert.ok(lines.some((e) => e.event?.kind === 'daemon.stop'), 'the last event before stopping');
  const ids = lines.map((e) => Date.parse(e.time));
  assert.deepEqual(ids, [...ids].sort((x, y) => x - y), 'files read oldest first give the events in order');
});
