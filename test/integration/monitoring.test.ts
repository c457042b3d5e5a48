// The alerting rules and the Grafana dashboard that ship in the package
// (packaging/prometheus/ferry-rules.yml, packaging/grafana/ferry-dashboard.json)
// name only metrics ferry exports, and only labels those metrics carry: the
// names are read from the exposition two real daemons serve (a primary with a
// mirror updated once and a test link, its secondary with the replica), not
// from a list. `promtool check rules` parses the rules and `promtool test
// rules` runs them on series that cross each threshold (Debian's prometheus
// package; skipped with a message when it cannot be installed).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ROOT } from '../helpers.ts';
import { cleanupSites, createSite, pairSites, type TestSite } from '../harness/index.ts';

const RULES = join(ROOT, 'packaging', 'prometheus', 'ferry-rules.yml');
const DASHBOARD = join(ROOT, 'packaging', 'grafana', 'ferry-dashboard.json');
const sites: TestSite[] = [];
after(() => cleanupSites(sites));

/** Labels Prometheus adds to every scraped series. */
const TARGET_LABELS = new Set(['instance', 'job']);
const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'inf', 'nan', 'Inf', 'NaN']);

interface Use {
  metric: string;
  labels: string[];
}

/** The metrics a PromQL expression reads, each with the label names its matchers use. */
function metricUses(expr: string): Use[] {
  let e = expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""');
  e = e.replace(/\$\{?\w+\}?/g, '0');
  const uses: Use[] = [];
  // name{matchers}: remember the label names, then drop the braces.
  e = e.replace(/((?<![\w:.])[a-zA-Z_:][\w:]*)?\s*\{([^}]*)\}/g, (_m, name: string | undefined, body: string) => {
    const labels = [...body.matchAll(/([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)/g)].map((x) => x[1]);
    if (name) uses.push({ metric: name, labels });
    return ` ${name ?? ''} `;
  });
  e = e.replace(/\[[^\]]*\]/g, ' ');
  e = e.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  for (const m of e.matchAll(/(?<![\w:.])[a-zA-Z_:][\w:]*/g)) {
    if (KEYWORDS.has(m[0]) || e.slice(m.index + m[0].length).trimStart().startsWith('(')) continue;
    if (!uses.some((u) => u.metric === m[0])) uses.push({ metric: m[0], labels: [] });
  }
  return uses;
}

function scrape(home: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get({ socketPath: join(home, 'ferry.sock'), path: '/metrics' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`GET /metrics: ${res.statusCode} ${body}`))));
    }).on('error', reject);
  });
}

/** Families (from # TYPE) with their type and the label names of their samples. */
function families(texts: string[]): Map<string, { type: string; labels: Set<string> }> {
  const out = new Map<string, { type: string; labels: Set<string> }>();
  for (const text of texts) {
    for (const line of text.split('\n')) {
      const t = /^# TYPE (\S+) (\S+)$/.exec(line);
      if (t) {
        if (!out.has(t[1])) out.set(t[1], { type: t[2], labels: new Set() });
        continue;
      }
      const s = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? /.exec(line);
      if (!s) continue;
      const base = out.has(s[1]) ? s[1] : s[1].replace(/_(bucket|sum|count)$/, '');
      for (const l of (s[2] ?? '').matchAll(/([a-zA-Z_]\w*)="/g)) out.get(base)?.labels.add(l[1]);
    }
  }
  return out;
}

/** Every PromQL expression of the rules and the dashboard, with where it is. */
function expressions(): Array<{ where: string; expr: string }> {
  const out: Array<{ where: string; expr: string }> = [];
  const rules = parseYaml(readFileSync(RULES, 'utf8')) as { groups: Array<{ name: string; rules: Array<{ alert?: string; record?: string; expr: string }> }> };
  for (const g of rules.groups) for (const r of g.rules) out.push({ where: `rules: ${r.alert ?? r.record}`, expr: String(r.expr) });
  const dash = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: Array<{ title: string; type: string; targets?: Array<{ expr: string }> }>; templating: { list: Array<{ name: string; query?: unknown }> } };
  for (const p of dash.panels) {
    if (p.type === 'row') continue;
    assert.ok(p.targets?.length, `panel ${p.title} has queries`);
    for (const t of p.targets) out.push({ where: `dashboard panel "${p.title}"`, expr: t.expr });
  }
  for (const v of dash.templating.list) {
    const q = typeof v.query === 'object' && v.query ? String((v.query as { query: string }).query) : String(v.query ?? '');
    const m = /^label_values\((.+),\s*(\w+)\)$/.exec(q);
    if (m) out.push({ where: `dashboard variable $${v.name}`, expr: m[1] });
  }
  return out;
}

test('the expression reader finds metrics and their matchers, not functions, labels or variables', () => {
  assert.deepEqual(
    metricUses('sum by (volume) (rate(ferry_a_total{instance=~"$instance", volume="x"}[$__rate_interval])) / on(instance) group_left(site) ferry_site_info > 5m or vector(0) offset 5m'),
    [{ metric: 'ferry_a_total', labels: ['instance', 'volume'] }, { metric: 'ferry_site_info', labels: [] }],
  );
  assert.deepEqual(metricUses('predict_linear(ferry_b[6h], 86400) < 0 and 1e3 > ferry_c'), [{ metric: 'ferry_b', labels: [] }, { metric: 'ferry_c', labels: [] }]);
});

test('the rules and the dashboard name only metrics and labels two real daemons export', async () => {
  const [a, b] = [await createSite('mon-a'), await createSite('mon-b')];
  sites.push(a, b);
  const data = join(a.dir, 'data');
  mkdirSync(data);
  writeFileSync(join(data, 'f'), 'hello');
  a.defineVolume('app', [data]);
  await Promise.all([a.start(), b.start()]);
  await pairSites(a, b);
  await a.json(['mirror', 'create', 'app', '--to', b.name]);
  await a.json(['mirror', 'initialize', 'app', '--to', b.name, '--wait']);
  await a.json(['mirror', 'update', 'app', '--to', b.name, '--wait']);
  await a.json(['link', 'create', join(a.dir, 'test-copy'), '--volume', 'app']);
  const textA = await scrape(a.home);
  const fams = families([textA, await scrape(b.home)]);
  // The filesystem figures the disk alerts read: the home's filesystem, its real size.
  const sample = (name: string) => Number(new RegExp(`^${name}\\{path="${a.home.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}"\\} (\\S+)$`, 'm').exec(textA)?.[1]);
  const fs = statfsSync(a.home);
  assert.equal(sample('ferry_filesystem_size_bytes'), fs.blocks * fs.bsize);
  assert.ok(sample('ferry_filesystem_avail_bytes') > 0 && sample('ferry_filesystem_avail_bytes') <= fs.blocks * fs.bsize);
  // The families the alerts rest on are there (a scrape that lost them would pass the checks below vacuously).
  for (const f of ['ferry_mirror_up', 'ferry_mirror_lag_seconds', 'ferry_mirror_max_delay_seconds', 'ferry_mirror_consecutive_failures', 'ferry_mirror_state', 'ferry_filesystem_avail_bytes', 'ferry_filesystem_size_bytes', 'ferry_replica_consistent', 'ferry_link_up']) {
    assert.ok(fams.has(f), `the daemons export ${f}`);
  }
  const problems: string[] = [];
  for (const { where, expr } of expressions()) {
    const uses = metricUses(expr);
    if (!uses.length) problems.push(`${where}: no metric in ${expr}`);
    for (const u of uses) {
      const base = fams.has(u.metric) ? u.metric : u.metric.replace(/_(bucket|sum|count)$/, '');
      const f = fams.get(base);
      if (!f || (base !== u.metric && !['histogram', 'summary'].includes(f.type))) {
        problems.push(`${where}: ${u.metric} is not a metric ferry exports`);
        continue;
      }
      for (const l of u.labels) if (!f.labels.has(l) && !TARGET_LABELS.has(l)) problems.push(`${where}: ${u.metric} has no label ${l}`);
    }
  }
  assert.deepEqual(problems, []);
});

test('the rules: the alerts the operator guide lists, each with a severity and a summary', () => {
  const rules = parseYaml(readFileSync(RULES, 'utf8')) as { groups: Array<{ rules: Array<{ alert: string; labels?: { severity?: string }; annotations?: { summary?: string } }> }> };
  const alerts = rules.groups.flatMap((g) => g.rules);
  for (const name of ['FerryMirrorHealthWarn', 'FerryMirrorLagOverMaxDelay', 'FerryMirrorTransfersFailing', 'FerryPeerUnreachable', 'FerryDiskNearlyFull']) assert.ok(alerts.some((r) => r.alert === name), name);
  for (const r of alerts) {
    assert.match(r.labels?.severity ?? '', /^(critical|warning|info)$/, `${r.alert} severity`);
    assert.ok(r.annotations?.summary, `${r.alert} summary`);
  }
  assert.match(readFileSync(join(ROOT, 'docs', 'operator-guide.md'), 'utf8'), /packaging\/prometheus\/ferry-rules\.yml/);
});

test('promtool: the rules parse, and the alerts fire when their condition has lasted, not before', (t) => {
  if (spawnSync('sh', ['-c', 'command -v promtool']).status !== 0) return void t.skip('promtool is not installed (apt-get install prometheus)');
  const r = spawnSync('promtool', ['check', 'rules', RULES], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /SUCCESS: \d+ rules found/);
  // Series made to cross each threshold at a known minute (test/fixtures/prometheus/ferry-rules.test.yml).
  const u = spawnSync('promtool', ['test', 'rules', join(ROOT, 'test', 'fixtures', 'prometheus', 'ferry-rules.test.yml')], { encoding: 'utf8' });
  assert.equal(u.status, 0, u.stdout + u.stderr);
});

test('the dashboard: one datasource variable used by every panel, unique panel ids, and a layout inside 24 columns', () => {
  const dash = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { uid: string; panels: Array<{ id: number; type: string; title: string; datasource?: { uid: string }; gridPos: { x: number; w: number } }>; templating: { list: Array<{ name: string; type: string }> } };
  assert.ok(dash.templating.list.some((v) => v.name === 'datasource' && v.type === 'datasource'));
  const ids = dash.panels.map((p) => p.id);
  assert.equal(new Set(ids).size, ids.length);
  for (const p of dash.panels) {
    assert.ok(p.gridPos.x + p.gridPos.w <= 24, `${p.title} fits`);
    if (p.type !== 'row') assert.equal(p.datasource?.uid, '${datasource}', `${p.title} uses the datasource variable`);
  }
});
