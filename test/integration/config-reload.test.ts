// The daemon and the site file: `ferry serve` applies <home>/ferry.yaml at
// start; on SIGHUP it re-reads it: a good file is applied (a new volume
// appears), a bad one is refused with every error in a failed
// `config.reload` event while the running configuration stays and the
// daemon keeps serving. `serve --config F` with a bad F does not start, and
// without --listen the daemon listens where the file's site.listen says.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { FERRY_BIN, runFerry } from '../helpers.ts';
import { cleanupSites, createSite, giveUp, waitFor, type TestSite } from '../harness/index.ts';

const sites: TestSite[] = [];
after(() => cleanupSites(sites));

function query<T>(home: string, sql: string, ...args: Array<string | number>): T[] {
  const db = new DatabaseSync(join(home, 'catalog.db'), { readOnly: true });
  try {
    db.exec('PRAGMA busy_timeout = 5000');
    return db.prepare(sql).all(...args) as T[];
  } finally {
    db.close();
  }
}

const volumeNames = (home: string) => query<{ name: string }>(home, 'SELECT name FROM volumes ORDER BY name').map((v) => v.name);
const reloadEvents = (home: string) =>
  query<{ id: number; outcome: string; detail: string }>(home, "SELECT id, outcome, detail FROM events WHERE kind = 'config.reload' ORDER BY id").map((e) => ({ ...e, detail: JSON.parse(e.detail) }));

const volumeFile = (dir: string, names: string[], extra = '') =>
  `version: 1\nvolumes:\n${names.map((n) => `  ${n}:\n    members: [ ${dir}/data/${n} ]\n    retention: { last: 3 }\n`).join('')}${extra}`;

test('SIGHUP: a good file is applied, a bad one is refused and the running configuration stays', async () => {
  const s = await createSite('hup');
  sites.push(s);
  for (const n of ['alpha', 'beta', 'gamma']) mkdirSync(join(s.dir, 'data', n), { recursive: true });
  const file = join(s.home, 'ferry.yaml');
  writeFileSync(file, volumeFile(s.dir, ['alpha']));
  await s.start();
  // Applied at start.
  assert.deepEqual(volumeNames(s.home), ['alpha']);
  const loaded = query<{ outcome: string }>(s.home, "SELECT outcome FROM events WHERE kind = 'config.load'");
  assert.deepEqual(loaded.map((e) => e.outcome), ['ok']);

  // A good file: the new volume appears.
  writeFileSync(file, volumeFile(s.dir, ['alpha', 'beta']));
  s.proc!.kill('SIGHUP');
  await waitFor('beta to appear', () => volumeNames(s.home).includes('beta'));
  const ok = await waitFor('the config.reload event', () => reloadEvents(s.home)[0]);
  assert.equal(ok.outcome, 'ok');
  assert.equal(ok.detail.create, 1);
  assert.deepEqual(ok.detail.actions, ['create volume beta']);

  // A bad file: refused whole (gamma is not created although its part is fine), every error in the event.
  writeFileSync(file, volumeFile(s.dir, ['alpha', 'beta', 'gamma']).replace('retention: { last: 3 }', 'retention: { lats: 3 }') + 'mirrors:\n  - volume: gamma\n    to: nowhere\n    schedule: often\n');
  s.proc!.kill('SIGHUP');
  const failed = await waitFor('the failed config.reload event', () => reloadEvents(s.home).find((e) => e.outcome === 'failed'));
  const errors = failed.detail.errors as Array<{ line: number; message: string; hint?: string }>;
  assert.deepEqual(errors.map((e) => e.line), [5, 15], JSON.stringify(errors));
  assert.match(errors[0].message, /unknown key "lats"/);
  assert.equal(errors[0].hint, 'did you mean "last"?');
  assert.match(errors[1].message, /schedule takes a duration/);
  assert.match(failed.detail.kept, /running configuration is unchanged/);
  assert.deepEqual(volumeNames(s.home), ['alpha', 'beta']);
  assert.deepEqual(query<{ retention: string }>(s.home, "SELECT retention FROM volumes WHERE name = 'alpha'").map((v) => JSON.parse(v.retention)), [{ last: 3 }]);
  // The daemon is alive and answers; the log says why the file was refused.
  assert.equal(s.proc!.exitCode, null);
  const status = await s.json(['status']);
  assert.deepEqual(status.volumes.map((v: any) => v.name), ['alpha', 'beta']);
  assert.match(s.log, /config\.reload/);

  // Fixed: the next SIGHUP applies it; the CLI's apply goes through the daemon and finds nothing to change.
  writeFileSync(file, volumeFile(s.dir, ['alpha', 'beta', 'gamma']));
  s.proc!.kill('SIGHUP');
  await waitFor('gamma to appear', () => volumeNames(s.home).includes('gamma'));
  const viaDaemon = await s.json(['config', 'apply']);
  assert.equal(viaDaemon.changed, false);
  const stopped = await s.stop();
  assert.equal(stopped.code, 0);
});

test('serve --config: a bad file stops the start; without --listen the file\'s site.listen is used', async () => {
  const s = await createSite('start');
  sites.push(s);
  mkdirSync(join(s.dir, 'data', 'alpha'), { recursive: true });
  const bad = join(s.dir, 'bad.yaml');
  writeFileSync(bad, volumeFile(s.dir, ['alpha']).replace('last: 3', 'last: three'));
  const r = await runFerry(['serve', '--config', bad, '--listen', '127.0.0.1:0'], { home: s.home, timeoutMs: 60_000 });
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.match(r.stderr, /bad\.yaml:5:24: volumes\.alpha\.retention\.last: retention last must be a whole number/);
  assert.deepEqual(volumeNames(s.home), []);
  const missing = await runFerry(['serve', '--config', join(s.dir, 'absent.yaml')], { home: s.home, timeoutMs: 60_000 });
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /no site file at/);

  // A good file with site.listen, and no --listen: the daemon listens there (port 0: any free port on 127.0.0.2).
  const good = join(s.dir, 'good.yaml');
  writeFileSync(good, volumeFile(s.dir, ['alpha']).replace('volumes:', 'site:\n  listen: 127.0.0.2:0\nvolumes:'));
  const p = spawn(FERRY_BIN, ['serve', '--home', s.home, '--config', good, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout.on('data', (d) => (out += d));
  p.stderr.on('data', (d) => (err += d));
  try {
    const info = await waitFor('the daemon to listen', () => {
      if (p.exitCode !== null) throw giveUp(`serve exited ${p.exitCode}: ${out}${err}`);
      // serve --json: one JSON line per event or notice; the listening notice carries the address.
      const lines = out.split('\n').slice(0, -1).map((l) => JSON.parse(l));
      const listening = lines.find((l) => l.notice === 'daemon.listening');
      return listening ? { listen: listening.details.listen as string } : undefined;
    }, 30_000);
    assert.match(info.listen, /^127\.0\.0\.2:\d+$/);
    assert.deepEqual(volumeNames(s.home), ['alpha']);
    // SIGHUP re-reads the --config file, not <home>/ferry.yaml.
    writeFileSync(good, readFileSync(good, 'utf8').replace('last: 3', 'last: 4'));
    p.kill('SIGHUP');
    await waitFor('the new retention', () => JSON.parse(query<{ retention: string }>(s.home, "SELECT retention FROM volumes WHERE name = 'alpha'")[0].retention).last === 4);
  } finally {
    p.kill('SIGTERM');
    await new Promise((resolve) => (p.exitCode !== null ? resolve(null) : p.once('exit', resolve)));
  }
});
