// The replica root (where `hello` makes new secondaries) and the other paths
// of a site keep apart (src/site/paths.ts): a replicaRoot inside a member of
// one of the site's volumes is refused by `config check` and `config apply`
// (offline too, for the file's own members), naming the member and what to
// do; a member containing the replica root or a link's copy, and a link
// overlapping the replica root or the home, are refused. A site that holds such a setting already (an older ferry took it)
// refuses the first incoming mirror as its own configuration problem,
// REPLICA_PATH_INVALID at both sides, and makes nothing inside the member;
// once the setting is fixed the command the refusal names last (the
// initialize at the source) goes through.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertTreesEqual, describeTree } from '../helpers.ts';
import { assertRefused, cleanupSites, createSite, pairSites, suggestedCommand, withCatalog, type TestSite } from '../harness/index.ts';

const sites: TestSite[] = [];
after(() => cleanupSites(sites));

/** A directory with one file, made at `path`. */
function dataAt(path: string, what: string): string {
  mkdirSync(path, { recursive: true });
  writeFileSync(join(path, 'f.txt'), `${what}\n`);
  return path;
}

/** `config check` or `apply` refused the file (exit 2); the issues' text. */
function refusedIssues(r: { code: number; stdout: string; stderr: string; json?: any }): string {
  assert.equal(r.code, 2, `refused as CONFIG_INVALID (exit 2): ${r.stdout} ${r.stderr}`);
  assert.equal(r.json?.error?.code, 'CONFIG_INVALID', r.stdout);
  return JSON.stringify(r.json.error.details.issues);
}

test('a replicaRoot already inside a member: the first mirror is refused as the destination\'s own setting, nothing is made in the member, and once fixed the mirror goes through', async () => {
  const [a, b] = await Promise.all([createSite('a'), createSite('b')]);
  sites.push(a, b);
  const data = dataAt(join(a.dir, 'data'), 'from a');
  a.defineVolume('vol', [`data=${data}`]);
  const srv = dataAt(join(b.dir, 'srv'), 'b\'s own');
  b.defineVolume('app', [srv]);
  // As an older ferry took it: the setting is in b's catalog.
  withCatalog(b.home, (db) => db.prepare("INSERT INTO meta (key, value) VALUES ('replica_root', ?)").run(join(srv, 'replicas')), { write: true });
  const before = describeTree(srv);
  await Promise.all([a.start(), b.start()]);
  await pairSites(a, b);
  await a.json(['mirror', 'create', 'vol', '--to', 'b']);

  const r = await a.ferry(['mirror', 'initialize', 'vol', '--to', 'b', '--wait', '--json']);
  assertRefused(r, 4, 'REPLICA_PATH_INVALID', /site b cannot make a replica of volume vol: replica root .*srv\/replicas lies inside member srv of volume app .*replicaRoot/);
  assert.match(r.json.error.message, /Nothing was created/);
  // What to do at b, then the command that runs the mirror again here, last (as its state accepts it).
  const rerun = suggestedCommand(r);
  assert.deepEqual(rerun, ['mirror', 'initialize', 'vol', '--to', 'b']);
  assert.ok(!existsSync(join(srv, 'replicas')), 'the failed hello made directories inside the member');
  assert.deepEqual(describeTree(srv), before);
  // Reported at b too, as its own failure.
  const events = await b.ferry(['events', '--kind', 'secondary.create', '--json']);
  const failed = events.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)).find((e) => e.event.outcome === 'failed');
  assert.match(failed?.details.error ?? '', /lies inside member srv of volume app/, events.stdout);
  const m = await a.mirror('vol', 'b');
  assert.equal(m.lastError.code, 'REPLICA_PATH_INVALID');

  // Fixed at b with its site file (applied inside its daemon): the mirror goes through.
  const file = join(b.dir, 'ferry.yaml');
  writeFileSync(file, `version: 1\nsite:\n  replicaRoot: ${join(b.dir, 'replicas')}\nvolumes:\n  app:\n    members: [ ${srv} ]\n`);
  await b.json(['config', 'apply', file]);
  await a.json([...rerun, '--wait']);
  assertTreesEqual(join(b.dir, 'replicas', 'vol', 'data'), data);
  assert.deepEqual(describeTree(srv), before);
});

test('config check and apply refuse a replicaRoot inside a member (online and offline); a member containing the replica root or a link, and a link overlapping the replica root, are refused', async () => {
  const b = await createSite('b');
  sites.push(b);
  const srv = dataAt(join(b.dir, 'srv'), 'app');
  b.defineVolume('app', [srv]);
  const file = join(b.dir, 'ferry.yaml');
  const write = (text: string) => writeFileSync(file, `version: 1\n${text}`);

  // Inside a member the file declares: refused by the file's own checks, online and offline.
  write(`site:\n  replicaRoot: ${join(srv, 'replicas')}\nvolumes:\n  app:\n    members: [ ${srv} ]\n`);
  for (const args of [['check'], ['check', '--offline'], ['apply']]) {
    const issues = refusedIssues(await b.ferry(['config', args[0], file, ...args.slice(1), '--json']));
    assert.match(issues, /replicaRoot .*srv\/replicas lies inside member .*srv of volume app/, `${args.join(' ')}: ${issues}`);
    assert.match(issues, /set replicaRoot to a directory outside every member/);
  }
  // Inside a member of a volume the site keeps (it has a snapshot) though the file leaves it out.
  await b.json(['snapshot', 'create', 'app']);
  write(`site:\n  replicaRoot: ${join(srv, 'replicas')}\n`);
  for (const cmd of ['check', 'apply']) {
    const issues = refusedIssues(await b.ferry(['config', cmd, file, '--json']));
    assert.match(issues, /replica root .*srv\/replicas lies inside member srv of volume app/, `${cmd}: ${issues}`);
    assert.match(issues, /set replicaRoot to a directory outside every member/);
  }
  assert.equal(withCatalog(b.home, (db) => db.prepare("SELECT value FROM meta WHERE key = 'replica_root'").get()), undefined, 'nothing was applied');

  // A good replica root, then a member that contains it, and a link over it.
  const outer = join(b.dir, 'outer');
  mkdirSync(outer);
  write(`site:\n  replicaRoot: ${join(outer, 'replicas')}\nvolumes:\n  app:\n    members: [ ${srv} ]\n`);
  await b.json(['config', 'apply', file]);
  assertRefused(await b.ferry(['volume', 'create', 'big', '--member', outer, '--json']), 2, 'MEMBER_INVALID', /contains the replica root .*outer\/replicas/);
  assertRefused(await b.ferry(['volume', 'create', 'big', '--member', outer, '--secondary', '--json']), 2, 'MEMBER_INVALID', /contains the replica root/);
  assertRefused(await b.ferry(['link', 'create', join(outer, 'replicas', 'test'), '--volume', 'app', '--json']), 2, 'MEMBER_INVALID', /overlaps the replica root/);
  // A member over a link's copy (which a refresh replaces whole).
  await b.json(['link', 'create', join(b.dir, 'lk', 'copy'), '--volume', 'app']);
  assertRefused(await b.ferry(['volume', 'create', 'lk', '--member', join(b.dir, 'lk'), '--json']), 2, 'MEMBER_INVALID', /overlaps the link .*lk\/copy/);
  // The same through the file, refused whole by the plan (not half applied by its steps), which
  // compares canonical paths: here the replica root is named through a symlink.
  const alias = join(b.dir, 'alias');
  symlinkSync(outer, alias);
  const site = `site:\n  replicaRoot: ${join(alias, 'replicas')}\nvolumes:\n  app:\n    members: [ ${srv} ]\n`;
  write(`${site}  big:\n    members: [ ${outer} ]\n`);
  assert.match(refusedIssues(await b.ferry(['config', 'check', file, '--json'])), /member .*outer contains the replica root/);
  write(`${site}links:\n  - { path: ${join(outer, 'replicas', 'test')}, volume: app }\n  - { path: ${join(b.home, 'copy')}, volume: app }\n`);
  const links = refusedIssues(await b.ferry(['config', 'check', file, '--json']));
  assert.match(links, /link path .*outer\/replicas\/test overlaps the replica root/);
  assert.match(links, /link path .*home\/copy overlaps the site home/);
});
