// A mirror update whose snapshot was captured with warnings (paths skipped,
// a post hook that failed) says so: the command prints them and exits 8
// (completed with warnings), the event is a warning, and status and the
// metrics show the mirror in warn, naming why, until a clean snapshot
// replicates. Through the daemon (a failing post hook) and in-process (an
// unreadable file: the CLI runs without the capabilities that let root read
// anything).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NO_DAC, runWrapped } from '../harness/cli-site.ts';
import { cleanupSites, createSite, pairSites, withCatalog, type TestSite } from '../harness/index.ts';

const sites: TestSite[] = [];
after(() => cleanupSites(sites));

function metrics(home: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get({ socketPath: join(home, 'ferry.sock'), path: '/metrics' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

const sample = (text: string, name: string) => Number(new RegExp(`^${name}\\{volume="app",peer="b"\\} (\\S+)$`, 'm').exec(text)?.[1]);
const lastUpdateEvent = (home: string) => withCatalog(home, (db) => db.prepare("SELECT outcome, detail FROM events WHERE kind = 'replication.update' ORDER BY id DESC LIMIT 1").get() as { outcome: string; detail: string });

test('capture warnings reach the mirror command (exit 8), its event, status and metrics, until a clean snapshot replicates', { timeout: 240_000 }, async () => {
  const [a, b] = await Promise.all(['a', 'b'].map((n) => createSite(n)));
  sites.push(a, b);
  const data = join(a.dir, 'data');
  mkdirSync(data);
  writeFileSync(join(data, 'f.txt'), 'one\n');
  a.defineVolume('app', [data]);
  await Promise.all([a.start(), b.start()]);
  await pairSites(a, b);

  // Through the daemon: the post hook fails, so the snapshot is taken with a warning.
  await a.json(['volume', 'set', 'app', '--post', 'echo thaw failed >&2; exit 3']);
  await a.json(['mirror', 'create', 'app', '--to', 'b']);
  const init = await a.ferry(['mirror', 'initialize', 'app', '--to', 'b', '--wait']);
  assert.equal(init.code, 8, `expected exit 8 (warnings)\n${init.stdout}\n${init.stderr}`);
  assert.match(init.stdout, /baseline/);
  assert.doesNotMatch(init.stdout, /\d\.\d{2,}/, 'numbers for people are rounded (a rate under 1 KiB/s was printed with 14 decimals)');
  assert.match(init.stderr, /warning: .*post hook/);
  let m = await a.mirror('app', 'b');
  assert.equal(m.health, 'warn');
  assert.match(m.healthReasons.join('; '), /captured with 1 warning/);
  assert.equal(m.lastTransfer.warnings, 1);
  let ev = lastUpdateEvent(a.home);
  assert.equal(ev.outcome, 'warning');
  assert.equal(JSON.parse(ev.detail).warnings, 1);
  assert.equal(sample(await metrics(a.home), 'ferry_mirror_snapshot_warnings'), 1);
  const j = await a.ferry(['mirror', 'update', 'app', '--to', 'b', '--wait', '--force', '--json']);
  assert.equal(j.code, 8, j.stderr);
  assert.equal(j.json.warnings.length, 1);
  assert.match(j.json.warnings[0].message, /post hook/);

  // In-process, without the capabilities that let root read anything: an unreadable file is skipped.
  await a.json(['volume', 'set', 'app', '--post', 'true']);
  await a.stop();
  writeFileSync(join(data, 'secret'), 'top secret');
  chmodSync(join(data, 'secret'), 0);
  const probe = await runWrapped(NO_DAC, ['info'], a.home);
  if (probe.code !== 0) throw new Error(`cannot run ferry without CAP_DAC_OVERRIDE here: ${probe.stderr}`);
  const up = await runWrapped(NO_DAC, ['mirror', 'update', 'app', '--to', 'b', '--wait', '--force'], a.home);
  assert.equal(up.code, 8, `expected exit 8 (warnings)\n${up.stdout}\n${up.stderr}`);
  assert.match(up.stderr, /warning: data:secret: .*(permission denied|EACCES)/i);
  m = await a.mirror('app', 'b');
  assert.equal(m.health, 'warn');
  assert.match(m.healthReasons.join('; '), /captured with 1 warning/);
  ev = lastUpdateEvent(a.home);
  assert.equal(ev.outcome, 'warning');
  assert.deepEqual(JSON.parse(ev.detail).warningPaths, ['data:secret']);

  // A clean snapshot replicates: health is up again, the gauge 0, exit 0.
  chmodSync(join(data, 'secret'), 0o644);
  await a.start();
  const clean = await a.ferry(['mirror', 'update', 'app', '--to', 'b', '--wait', '--force']);
  assert.equal(clean.code, 0, clean.stderr);
  assert.doesNotMatch(clean.stderr, /warning/);
  m = await a.mirror('app', 'b');
  assert.equal(m.health, 'up', m.healthReasons.join('; '));
  assert.equal(sample(await metrics(a.home), 'ferry_mirror_snapshot_warnings'), 0);
  assert.equal(lastUpdateEvent(a.home).outcome, 'ok');
});
