// Where the site file is: `config check`, `config apply`, `config export
// --output` and `serve` all read the FILE argument or --config, else
// $FERRY_CONFIG, else <home>/ferry.yaml; serve re-reads that same file on
// SIGHUP. A file named by FERRY_CONFIG that is not there is an error that says
// so (never a silent fall-back to the home's file), and `export --output`
// keeps the file it replaces as FILE.bak.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { runFerry } from '../helpers.ts';
import { cleanupSites, createSite, waitFor, type TestSite } from '../harness/index.ts';

const sites: TestSite[] = [];
after(() => cleanupSites(sites));

function volumeNames(home: string): string[] {
  const db = new DatabaseSync(join(home, 'catalog.db'), { readOnly: true });
  try {
    db.exec('PRAGMA busy_timeout = 5000');
    return (db.prepare('SELECT name FROM volumes ORDER BY name').all() as Array<{ name: string }>).map((v) => v.name);
  } finally {
    db.close();
  }
}

const siteFile = (dir: string, names: string[]) => `version: 1\nvolumes:\n${names.map((n) => `  ${n}:\n    members: [ ${dir}/data/${n} ]\n`).join('')}`;

test('config check, apply and export --output use --config, else FERRY_CONFIG, else <home>/ferry.yaml', async () => {
  const s = await createSite('loc');
  sites.push(s);
  for (const n of ['alpha', 'beta', 'gamma']) mkdirSync(join(s.dir, 'data', n), { recursive: true });
  mkdirSync(join(s.dir, 'etc'));
  const envFile = join(s.dir, 'etc', 'site.yaml');
  const other = join(s.dir, 'etc', 'other.yaml');
  writeFileSync(envFile, siteFile(s.dir, ['alpha']));
  writeFileSync(other, siteFile(s.dir, ['beta']));
  writeFileSync(join(s.home, 'ferry.yaml'), siteFile(s.dir, ['gamma']));
  const env = { FERRY_CONFIG: envFile };
  const ferry = (args: string[], e: Record<string, string> = env) => runFerry(args, { home: s.home, env: e });

  // check: FERRY_CONFIG over the home's file; --config over FERRY_CONFIG; without either, the home's.
  const byEnv = await ferry(['config', 'check', '--json']);
  assert.equal(byEnv.code, 0, byEnv.stderr);
  assert.equal(byEnv.json.file, envFile);
  assert.equal((await ferry(['config', 'check', '--config', other, '--json'])).json.file, other);
  assert.equal((await ferry(['config', 'check', other, '--json'])).json.file, other);
  assert.equal((await ferry(['config', 'check', '--json'], {})).json.file, join(s.home, 'ferry.yaml'));
  const both = await ferry(['config', 'check', envFile, '--config', other]);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /two site files given: .*site\.yaml and --config .*other\.yaml; name one \[USAGE\]/);

  // apply: the file FERRY_CONFIG names.
  const applied = await ferry(['config', 'apply', '--json']);
  assert.equal(applied.code, 0, applied.stderr);
  assert.deepEqual(volumeNames(s.home), ['alpha']);

  // A FERRY_CONFIG naming no file: an error that says where the name came from.
  const missing = await ferry(['config', 'apply'], { FERRY_CONFIG: join(s.dir, 'etc', 'absent.yaml') });
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /no site file at .*absent\.yaml \(named by FERRY_CONFIG\)/);

  // export --output with no FILE writes the site file (FERRY_CONFIG's), keeping the one it replaces.
  const before = readFileSync(envFile, 'utf8');
  const exported = await ferry(['config', 'export', '--output', '--json']);
  assert.equal(exported.code, 0, exported.stderr);
  assert.equal(exported.json.written, envFile);
  assert.equal(exported.json.backup, `${envFile}.bak`);
  assert.equal(readFileSync(`${envFile}.bak`, 'utf8'), before);
  assert.match(readFileSync(envFile, 'utf8'), /^# ferry site file for site loc/);
  assert.equal((await ferry(['config', 'apply', '--json'])).json.changed, false);
  // --config names where --output writes; alone it is a usage error (the export would go to stdout).
  const toOther = await ferry(['config', 'export', '--output', '--config', join(s.dir, 'etc', 'new.yaml')]);
  assert.equal(toOther.code, 0, toOther.stderr);
  assert.ok(existsSync(join(s.dir, 'etc', 'new.yaml')));
  assert.equal((await ferry(['config', 'export', '--config', other])).code, 2);
});

test('serve reads the file FERRY_CONFIG names at start and on SIGHUP; a missing one stops the start', async () => {
  const s = await createSite('locd');
  sites.push(s);
  for (const n of ['alpha', 'beta']) mkdirSync(join(s.dir, 'data', n), { recursive: true });
  const file = join(s.dir, 'site.yaml');
  writeFileSync(file, siteFile(s.dir, ['alpha']));
  writeFileSync(join(s.home, 'ferry.yaml'), 'this is not the file serve must read: {\n');

  const missing = await runFerry(['serve', '--listen', '127.0.0.1:0'], { home: s.home, env: { FERRY_CONFIG: join(s.dir, 'absent.yaml') }, timeoutMs: 60_000 });
  assert.equal(missing.code, 2, missing.stdout + missing.stderr);
  assert.match(missing.stderr, /no site file at .*absent\.yaml \(named by FERRY_CONFIG\); write one \(docs\/config\.md\) or leave FERRY_CONFIG out/);

  await s.start({ env: { FERRY_CONFIG: file } });
  assert.deepEqual(volumeNames(s.home), ['alpha']);
  writeFileSync(file, siteFile(s.dir, ['alpha', 'beta']));
  s.proc!.kill('SIGHUP');
  await waitFor('beta to appear', () => volumeNames(s.home).includes('beta'));
  assert.equal((await s.stop()).code, 0);
});
