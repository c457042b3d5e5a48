// The sample site files in docs/examples/: each one loads and validates as
// it is, and is applied to a real site (its /srv paths moved under the
// test's directory, its peers paired), after which a second apply changes
// nothing. The OpenSVC test-link sample is applied at a real DR site that
// a real primary replicates to: the link waits for the first snapshot, then
// the next apply makes it, showing the replica.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { assertTreesEqual, ROOT, runFerry, tempDir } from '../helpers.ts';
import { loadConfig, formatIssues } from '../../src/config/load.ts';
import { addPeer } from '../../src/site/peers.ts';
import { Site } from '../../src/site/site.ts';
import { cleanupSites, createSite, pairSites, writeVolumeData, type TestSite } from '../harness/index.ts';
import { writeSmallFiles } from '../harness/cli-site.ts';

const EXAMPLES = join(ROOT, 'docs', 'examples');
const tmp = tempDir('ferry-examples-');
const drSites: TestSite[] = [];
after(async () => {
  await cleanupSites(drSites);
  tmp.cleanup();
});

/** Valid ids for the peers the samples name (pairing needs real identities; they are never contacted). */
const peerIds = new Map<string, string>();
function peerId(name: string): string {
  if (!peerIds.has(name)) {
    const s = Site.init(join(tmp.path, 'peers', name), name);
    peerIds.set(name, s.id);
    s.close();
  }
  return peerIds.get(name)!;
}

function catalog<T>(home: string, sql: string): T[] {
  const db = new DatabaseSync(join(home, 'catalog.db'), { readOnly: true });
  try {
    return db.prepare(sql).all() as T[];
  } finally {
    db.close();
  }
}

test('every sample in docs/examples loads and validates as it is', () => {
  const files = readdirSync(EXAMPLES).filter((f) => f.endsWith('.yaml')).sort();
  assert.deepEqual(files, ['afm-peer-snapshots.yaml', 'opensvc-test-link.yaml', 'remote-copy-group.yaml', 'snapmirror-app-consistent.yaml', 'vvr-two-secondaries.yaml']);
  for (const f of files) {
    const path = join(EXAMPLES, f);
    const { config, issues } = loadConfig(readFileSync(path, 'utf8'), path);
    assert.deepEqual(issues, [], `${f}:\n${formatIssues(path, issues)}`);
    assert.ok(config.volumes.length >= 1, f);
  }
});

const SAMPLES: Array<{ file: string; site: string; peers: string[]; expect: { volumes: string[]; members: number; mirrors: string[] } }> = [
  { file: 'snapmirror-app-consistent.yaml', site: 'paris', peers: ['london'], expect: { volumes: ['db'], members: 1, mirrors: ['db@london'] } },
  { file: 'remote-copy-group.yaml', site: 'array-a', peers: ['array-b'], expect: { volumes: ['erp'], members: 3, mirrors: ['erp@array-b'] } },
  { file: 'afm-peer-snapshots.yaml', site: 'home-site', peers: ['cache1'], expect: { volumes: ['home'], members: 1, mirrors: ['home@cache1'] } },
  { file: 'vvr-two-secondaries.yaml', site: 'primary', peers: ['dr-east', 'dr-west'], expect: { volumes: ['orders'], members: 2, mirrors: ['orders@dr-east', 'orders@dr-west'] } },
];

for (const sample of SAMPLES) {
  test(`sample ${sample.file} applies to a real site, and a second apply changes nothing`, async () => {
    const dir = join(tmp.path, sample.site);
    const home = join(dir, 'home');
    const site = Site.init(home, sample.site);
    try {
      for (const p of sample.peers) addPeer(site, p, `https://127.0.0.1:${7400 + peerIds.size}`, peerId(p));
    } finally {
      site.close();
    }
    const text = readFileSync(join(EXAMPLES, sample.file), 'utf8').replaceAll('/srv/', `${dir}/srv/`);
    const file = join(dir, sample.file);
    writeFileSync(file, text);
    // The members the sample names: directories with a few files, and image members as files.
    const { config } = loadConfig(text, file);
    for (const v of config.volumes) {
      for (const m of v.members) {
        if (m.kind === 'image') {
          mkdirSync(dirname(m.path), { recursive: true });
          writeFileSync(m.path, Buffer.alloc(128 * 1024, 1));
        } else writeSmallFiles(m.path, 3);
      }
    }
    const check = await runFerry(['config', 'check', file, '--json'], { home });
    assert.equal(check.code, 0, check.stderr);
    assert.equal(check.json.site, sample.site);
    const r = await runFerry(['config', 'apply', file, '--json'], { home });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.json.applied, r.json.actions.length);
    const volumes = catalog<{ name: string; hooks: string; retention: string }>(home, 'SELECT name, hooks, retention FROM volumes ORDER BY name');
    assert.deepEqual(volumes.map((v) => v.name), sample.expect.volumes);
    for (const v of config.volumes) {
      const row = volumes.find((x) => x.name === v.name)!;
      assert.deepEqual(JSON.parse(row.hooks), v.hooks);
      assert.deepEqual(JSON.parse(row.retention), v.retention);
    }
    assert.equal(catalog(home, 'SELECT * FROM members').length, sample.expect.members);
    const mirrors = catalog<{ id: string; remote_volume: string; schedule_s: number | null; max_delay_s: number; bandwidth: number | null }>(home, 'SELECT * FROM mirrors ORDER BY id');
    assert.deepEqual(mirrors.map((m) => m.id), sample.expect.mirrors);
    for (const mc of config.mirrors) {
      const row = mirrors.find((m) => m.id === `${mc.volume}@${mc.to}`)!;
      assert.deepEqual([row.remote_volume, row.schedule_s, row.max_delay_s, row.bandwidth], [mc.remoteVolume, mc.scheduleS, mc.maxDelayS, mc.bandwidth]);
    }
    const again = await runFerry(['config', 'apply', file, '--json'], { home });
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.json.changed, false, JSON.stringify(again.json.actions));
  });
}

test('sample opensvc-test-link.yaml at a real DR site: the link waits for the first replicated snapshot, then shows it', async () => {
  const [prod, dr] = await Promise.all([createSite('prod'), createSite('dr')]);
  drSites.push(prod, dr);
  const data = join(prod.dir, 'data');
  writeVolumeData(data, 2, 64 * 1024);
  prod.defineVolume('app', [`data=${data}`]);
  const text = readFileSync(join(EXAMPLES, 'opensvc-test-link.yaml'), 'utf8').replaceAll('/srv/', `${dr.dir}/srv/`);
  const file = join(dr.dir, 'ferry.yaml');
  writeFileSync(file, text);
  mkdirSync(join(dr.dir, 'srv/ferry/replicas/app/data'), { recursive: true });
  mkdirSync(join(dr.dir, 'srv/test'), { recursive: true });
  await Promise.all([prod.start({ tick: 200 }), dr.start({ tick: 200 })]);
  await pairSites(prod, dr);

  // Through the DR daemon: the secondary is declared, the link waits (exit 8).
  const first = await dr.json(['config', 'apply', file], 8);
  assert.deepEqual(first.actions.map((a: any) => `${a.verb} ${a.kind}`), ['create setting', 'create setting', 'create volume', 'wait link']);
  assert.equal(catalog<{ role: string }>(dr.home, "SELECT role FROM volumes WHERE name = 'app'")[0].role, 'secondary');

  await prod.json(['mirror', 'create', 'app', '--to', 'dr']);
  await prod.json(['mirror', 'initialize', 'app', '--to', 'dr', '--wait']);
  const replica = join(dr.dir, 'srv/ferry/replicas/app/data');
  assertTreesEqual(replica, data);

  const second = await dr.json(['config', 'apply', file]);
  assert.deepEqual(second.actions.map((a: any) => `${a.verb} ${a.kind}`), ['create link']);
  const link = join(dr.dir, 'srv/test/app');
  assertTreesEqual(link, data);
  const row = catalog<{ snapshot_ref: string; schedule_s: number; min_delay_s: number; max_delay_s: number }>(dr.home, 'SELECT * FROM links')[0];
  assert.deepEqual([row.snapshot_ref, row.schedule_s, row.min_delay_s, row.max_delay_s], ['latest', 86_400, 3600, 172_800]);
  const meta = Object.fromEntries(catalog<{ key: string; value: string }>(dr.home, "SELECT key, value FROM meta WHERE key IN ('replica_root', 'log_file', 'log_max_bytes', 'log_keep')").map((m) => [m.key, m.value]));
  assert.deepEqual(meta, { replica_root: join(dr.dir, 'srv/ferry/replicas'), log_file: join(dr.dir, 'srv/ferry/log/ferry.log'), log_max_bytes: String(64 * 1024 * 1024), log_keep: '5' });
  const third = await dr.json(['config', 'apply', file]);
  assert.equal(third.changed, false);
});
