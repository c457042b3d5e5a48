// `ferry config check | apply | export` through the real CLI on real sites:
// a file applied builds the same catalog as the CLI commands it stands for;
// a second apply changes nothing; changes show in the plan; removals of
// anything with snapshots wait for --prune and never touch member data;
// export -> check -> apply is a no-op; check reports every error at once.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { runFerry, tempDir, type CliResult } from '../helpers.ts';
import { Site } from '../../src/site/site.ts';
import { writeSmallFiles } from '../harness/cli-site.ts';

const tmp = tempDir('ferry-config-');
after(() => tmp.cleanup());

interface S {
  dir: string;
  home: string;
  ferry(args: string[]): Promise<CliResult>;
  ok(args: string[], code?: number): Promise<any>;
}

function newSite(label: string, name: string): S {
  const dir = join(tmp.path, label);
  const home = join(dir, 'home');
  Site.init(home, name).close();
  const ferry = (args: string[]) => runFerry(args, { home });
  return {
    dir,
    home,
    ferry,
    async ok(args, code = 0) {
      const r = await ferry([...args, '--json']);
      assert.equal(r.code, code, `ferry ${args.join(' ')} exited ${r.code}, expected ${code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
      return r.json;
    },
  };
}

/** Member data: two small trees and an image. */
function makeData(s: S): void {
  writeSmallFiles(join(s.dir, 'srv/app/data'), 6);
  writeSmallFiles(join(s.dir, 'srv/app/logs'), 3);
  writeFileSync(join(s.dir, 'srv/app/disk.img'), Buffer.alloc(64 * 1024, 7));
  writeSmallFiles(join(s.dir, 'srv/solo'), 2);
  mkdirSync(join(s.dir, 'test'), { recursive: true });
}

/** What the catalog says about volumes, members, mirrors and links, with this site's directory taken out of paths. */
function catalogState(s: S): unknown {
  const db = new DatabaseSync(join(s.home, 'catalog.db'), { readOnly: true });
  try {
    const rel = (p: string) => p.replace(s.dir, '<dir>');
    const q = (sql: string) => db.prepare(sql).all() as any[];
    return {
      volumes: q('SELECT name, role, hooks, retention FROM volumes ORDER BY name').map((v) => ({ ...v, hooks: JSON.parse(v.hooks), retention: JSON.parse(v.retention) })),
      members: q('SELECT volume, position, name, kind, path FROM members ORDER BY volume, position').map((m) => ({ ...m, path: rel(m.path) })),
      mirrors: q('SELECT id, volume, peer, remote_volume, schedule_s, min_delay_s, max_delay_s, bandwidth, state, paused FROM mirrors ORDER BY id'),
      links: q('SELECT path, volume, member, snapshot_ref, schedule_s, min_delay_s, max_delay_s FROM links ORDER BY path').map((l) => ({ ...l, path: rel(l.path) })),
      peers: q('SELECT name, id, url FROM peers ORDER BY name'),
    };
  } finally {
    db.close();
  }
}

function snapshotCount(s: S, volume: string): number {
  const db = new DatabaseSync(join(s.home, 'catalog.db'), { readOnly: true });
  try {
    return (db.prepare('SELECT count(*) AS n FROM snapshots WHERE volume = ?').get(volume) as { n: number }).n;
  } finally {
    db.close();
  }
}

// A peer to mirror to: a real site identity (pairing needs a valid id), never contacted.
const london = (() => {
  const s = Site.init(join(tmp.path, 'london-home'), 'london');
  const id = s.id;
  s.close();
  return { id, url: 'https://127.0.0.1:7999' };
})();

const fileFor = (dir: string, extra = '') => `version: 1
site:
  name: paris
volumes:
  app:
    members:
      - data=${dir}/srv/app/data
      - { name: logs, kind: tree, path: ${dir}/srv/app/logs }
      - disk=image:${dir}/srv/app/disk.img
    hooks:
      pre: { command: "true", timeout: 30s }
      post: { command: "true", timeout: 30s }
    retention: { last: 5, daily: 7 }
  solo:
    members: [ ${dir}/srv/solo ]
mirrors:
  - volume: app
    to: london
    remoteVolume: app-copy
    schedule: 15m
    minDelay: 5m
    maxDelay: 2h
    bandwidth: 50MiB/s
links:
  - path: test/app
    volume: app
    member: data
    schedule: 1d
    maxDelay: 2d
${extra}`;

let cliSite: S;
let cfgSite: S;

test('config apply builds the catalog the CLI commands build; a second apply changes nothing', async () => {
  cliSite = newSite('cli', 'paris');
  cfgSite = newSite('cfg', 'paris');
  makeData(cliSite);
  makeData(cfgSite);

  // The CLI way.
  const d = cliSite.dir;
  await cliSite.ok(['volume', 'create', 'app', '--member', `data=${d}/srv/app/data`, '--member', `logs=tree:${d}/srv/app/logs`, '--member', `disk=image:${d}/srv/app/disk.img`,
    '--pre', 'true', '--post', 'true', '--hook-timeout', '30s', '--keep-last', '5', '--keep-daily', '7']);
  await cliSite.ok(['volume', 'create', 'solo', '--member', `${d}/srv/solo`]);
  await cliSite.ok(['site', 'add', 'london', london.url, '--id', london.id]);
  await cliSite.ok(['mirror', 'create', 'app', '--to', 'london:app-copy', '--schedule', '15m', '--min-delay', '5m', '--max-delay', '2h', '--bandwidth', '50MiB/s']);
  await cliSite.ok(['snapshot', 'create', 'app']);
  await cliSite.ok(['link', 'create', join(d, 'test/app'), '--volume', 'app', '--member', 'data', '--schedule', '1d', '--max-delay', '2d']);

  // The file way: peers are paired with the CLI (docs/config.md says why), everything else from the file.
  await cfgSite.ok(['site', 'add', 'london', london.url, '--id', london.id]);
  const file = join(cfgSite.dir, 'ferry.yaml');
  writeFileSync(file, fileFor(cfgSite.dir));
  const dry = await cfgSite.ok(['config', 'apply', file, '--dry-run'], 8);
  assert.equal(dry.dryRun, true);
  assert.deepEqual(dry.summary, { create: 3, change: 0, remove: 0, keep: 0, wait: 1 });
  assert.deepEqual(dry.actions.map((a: any) => `${a.verb} ${a.kind} ${a.name}`), ['create volume app', 'create volume solo', 'create mirror app@london', `wait link ${join(cfgSite.dir, 'test/app')}`]);
  assert.equal(dry.actions[0].line, 5, 'each step names the line that asks for it');
  assert.deepEqual((catalogState(cfgSite) as any).volumes, [], 'a dry run changes nothing');

  // The link waits for a first snapshot (exit 8: done, with something left to do).
  const first = await cfgSite.ok(['config', 'apply', file], 8);
  assert.equal(first.applied, 3);
  assert.match(first.actions[3].reason, /no snapshot yet/);
  await cfgSite.ok(['snapshot', 'create', 'app']);
  const second = await cfgSite.ok(['config', 'apply', file]);
  assert.deepEqual(second.summary, { create: 1, change: 0, remove: 0, keep: 0, wait: 0 });
  assert.ok(existsSync(join(cfgSite.dir, 'test/app', 'f0000')), 'the link shows the snapshot');

  assert.deepEqual(catalogState(cfgSite), catalogState(cliSite));

  // Applying the same file again: nothing to change, in JSON and in text.
  const again = await cfgSite.ok(['config', 'apply', file]);
  assert.equal(again.changed, false);
  assert.equal(again.applied, 0);
  const text = await cfgSite.ferry(['config', 'apply', file]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /nothing to change/);
});

test('changes show in the plan; removals of what has snapshots wait for --prune; member data is never touched', async () => {
  const s = cfgSite;
  const file = join(s.dir, 'ferry.yaml');
  const before = catalogState(s);
  // Retention and the mirror's schedule change; solo (no snapshots) goes.
  writeFileSync(file, fileFor(s.dir).replace('retention: { last: 5, daily: 7 }', 'retention: { last: 5, daily: 14 }').replace('schedule: 15m', 'schedule: 5m').replace(/  solo:\n.*\n/, ''));
  const plan = await s.ok(['config', 'apply', file, '--dry-run']);
  assert.deepEqual(plan.actions.map((a: any) => `${a.verb} ${a.kind} ${a.name}`), ['remove volume solo', 'change volume app', 'change mirror app@london']);
  assert.deepEqual(plan.actions[2].changes, [{ key: 'scheduleS', from: 900, to: 300 }]);
  assert.deepEqual(catalogState(s), before, 'a dry run changes nothing');
  await s.ok(['config', 'apply', file]);
  const after1 = catalogState(s) as any;
  assert.deepEqual(after1.volumes.map((v: any) => v.name), ['app']);
  assert.deepEqual(after1.volumes[0].retention, { last: 5, daily: 14 });
  assert.equal(after1.mirrors[0].schedule_s, 300);
  assert.ok(existsSync(join(s.dir, 'srv/solo/f0000')), 'removing a volume leaves its member data');

  // The file no longer names app: its link goes (files kept), but the volume has snapshots and a mirror: kept without --prune.
  writeFileSync(file, 'version: 1\nsite: { name: paris }\n');
  const held = await s.ok(['config', 'apply', file], 8);
  assert.deepEqual(held.actions.map((a: any) => `${a.verb} ${a.kind} ${a.name}`), [`remove link ${join(s.dir, 'test/app')}`, 'keep mirror app@london', 'keep volume app']);
  assert.match(held.actions[2].reason, /1 snapshot\(s\) and 1 mirror\(s\).*--prune/);
  const text = await s.ferry(['config', 'apply', file]);
  assert.equal(text.code, 8);
  assert.match(text.stdout, /= keep +volume app .*pass --prune to remove it/);
  assert.equal(snapshotCount(s, 'app'), 1);
  assert.ok(existsSync(join(s.dir, 'test/app/f0000')), 'a removed link keeps its files');

  const pruned = await s.ok(['config', 'apply', file, '--prune']);
  assert.deepEqual(pruned.actions.map((a: any) => `${a.verb} ${a.kind} ${a.name}`), ['remove mirror app@london', 'remove volume app']);
  const gone = catalogState(s) as any;
  assert.deepEqual([gone.volumes, gone.members, gone.mirrors, gone.links], [[], [], [], []]);
  assert.equal(snapshotCount(s, 'app'), 0);
  for (const p of ['srv/app/data/f0005', 'srv/app/logs/f0002', 'srv/app/disk.img']) assert.ok(existsSync(join(s.dir, p)), `${p} is still there`);
  const noop = await s.ok(['config', 'apply', file]);
  assert.equal(noop.changed, false);
});

test('export -> check -> apply is a no-op', async () => {
  const s = cliSite;
  const out = join(s.dir, 'exported.yaml');
  const r = await s.ferry(['config', 'export', '--output', out]);
  assert.equal(r.code, 0, r.stderr);
  const text = readFileSync(out, 'utf8');
  assert.match(text, /^# ferry site file for site paris/);
  assert.match(text, /Paired sites .*london https:\/\/127\.0\.0\.1:7999/);
  const check = await s.ok(['config', 'check', out]);
  assert.deepEqual([check.valid, check.site, check.volumes, check.members, check.mirrors, check.links], [true, 'paris', 2, 4, 1, 1]);
  const before = catalogState(s);
  const applied = await s.ok(['config', 'apply', out]);
  assert.equal(applied.changed, false, JSON.stringify(applied.actions));
  assert.deepEqual(applied.actions, []);
  assert.deepEqual(catalogState(s), before);
  // --json prints the same document as an object (JSON is YAML: it checks too).
  const obj = await s.ok(['config', 'export']);
  assert.equal(obj.version, 1);
  assert.deepEqual(Object.keys(obj.volumes), ['app', 'solo']);
  assert.deepEqual(obj.mirrors, [{ volume: 'app', to: 'london', remoteVolume: 'app-copy', schedule: '15m', minDelay: '5m', maxDelay: '2h', bandwidth: '50MiB/s' }]);
  const jsonFile = join(s.dir, 'exported.json');
  writeFileSync(jsonFile, JSON.stringify(obj));
  assert.equal((await s.ok(['config', 'apply', jsonFile])).changed, false);
});

test('config check: every error at once, file errors and site errors, each with its line and a hint', async () => {
  const s = cliSite;
  const file = join(s.dir, 'bad.yaml');
  writeFileSync(file, [
    'version: 1', //                         1
    'volumes:', //                           2
    '  web:', //                             3
    '    members:', //                       4
    `      - ${s.dir}/srv/nowhere`, //       5  missing path (site check)
    '    retention: { dialy: 7 }', //        6  unknown key
    'mirrors:', //                           7
    '  - volume: web', //                    8
    '    to: lndon', //                      9  not paired (site check), did you mean london
    '    maxDelay: 1hour', //                10 bad duration
  ].join('\n'));
  // The file alone first: its own errors.
  const r1 = await s.ferry(['config', 'check', file]);
  assert.equal(r1.code, 2);
  assert.match(r1.stderr, /2 errors/);
  assert.match(r1.stderr, new RegExp(`${file}:6:18: volumes\\.web\\.retention\\.dialy: unknown key "dialy" in retention\\n +hint: did you mean "daily"\\?`));
  assert.match(r1.stderr, new RegExp(`${file}:10:15: mirrors\\[0\\]\\.maxDelay: maxDelay takes a duration`));
  assert.match(r1.stderr, /\[CONFIG_INVALID\]/);
  // Fixed, it is well formed; against the site: the missing path and the unpaired site, together.
  writeFileSync(file, readFileSync(file, 'utf8').replace('dialy', 'daily').replace('1hour', '1h'));
  const r2 = await s.ferry(['config', 'check', file, '--json']);
  assert.equal(r2.code, 2);
  const issues = r2.json.error.details.issues;
  assert.deepEqual(issues.map((i: any) => [i.line, i.path]), [[5, 'volumes.web.members[0].path'], [9, 'mirrors[0].to']]);
  assert.match(issues[0].message, /does not exist/);
  assert.match(issues[1].message, /site lndon is not paired/);
  assert.match(issues[1].hint, /did you mean "london"\?/);
  // Offline, the file alone passes; apply refuses it whole, and nothing changes.
  assert.equal((await s.ferry(['config', 'check', file, '--offline'])).code, 0);
  const before = catalogState(s);
  const r3 = await s.ferry(['config', 'apply', file]);
  assert.equal(r3.code, 2);
  assert.match(r3.stderr, /2 errors; nothing was applied/);
  assert.deepEqual(catalogState(s), before);
});
