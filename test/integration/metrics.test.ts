// GET /metrics after a real transfer: two real daemons, a volume of a few
// files, a mirror baselined and updated with --wait; the scrape (on the local
// socket and on `serve --metrics 127.0.0.1:0`) must agree with what the
// transfers reported and with the catalog's events, and follow the Prometheus
// text format's rules (HELP/TYPE once per family, families contiguous, valid
// names and labels, `_total` counters, base units). The primary also runs with
// --log-file: its mirror transitions must be in the file.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { FERRY_BIN, ROOT } from '../helpers.ts';
import { cleanupSites, createSite, giveUp, pairSites, waitFor, type TestSite } from '../harness/index.ts';

const sites: TestSite[] = [];
const procs: ChildProcess[] = [];
after(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  await cleanupSites(sites);
});

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The families a histogram's samples belong to: NAME_bucket, NAME_sum, NAME_count. */
function familyOf(name: string, types: Map<string, string>): string {
  const h = /^(.+)_(bucket|sum|count)$/.exec(name);
  return h && types.get(h[1]) === 'histogram' ? h[1] : name;
}

/**
 * Parse and lint a text exposition (format 0.0.4). Fails on anything a strict
 * parser (promtool check metrics) would reject or flag.
 */
function lintExposition(text: string): { samples: Sample[]; types: Map<string, string> } {
  assert.ok(text.endsWith('\n'), 'the exposition ends with a newline');
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const samples: Sample[] = [];
  const seenSeries = new Set<string>();
  const finished = new Set<string>();
  let current = '';
  for (const line of text.slice(0, -1).split('\n')) {
    if (line.startsWith('# HELP ')) {
      const m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
      assert.ok(m, `malformed HELP: ${line}`);
      assert.ok(!helps.has(m[1]), `second HELP for ${m[1]}`);
      assert.ok(!/\\[^\\n]/.test(m[2].replace(/\\\\/g, '')), `bad escape in HELP: ${line}`);
      helps.add(m[1]);
      if (current && current !== m[1]) finished.add(current);
      assert.ok(!finished.has(m[1]), `family ${m[1]} appears in two groups`);
      current = m[1];
      continue;
    }
    if (line.startsWith('# TYPE ')) {
      const m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
      assert.ok(m, `malformed TYPE: ${line}`);
      assert.ok(!types.has(m[1]), `second TYPE for ${m[1]}`);
      assert.equal(m[1], current, `TYPE ${m[1]} is not right after its HELP`);
      types.set(m[1], m[2]);
      continue;
    }
    assert.ok(!line.startsWith('#') && line.trim() !== '', `unexpected line: ${JSON.stringify(line)}`);
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `malformed sample: ${line}`);
    const [, name, labelText, valueText] = m;
    const family = familyOf(name, types);
    assert.equal(family, current, `sample ${name} outside its family's group (after ${current})`);
    assert.ok(types.has(family), `sample ${name} before its TYPE`);
    if (types.get(family) === 'histogram') assert.notEqual(name, family, `histogram ${family}: a sample without _bucket, _sum or _count`);
    const labels: Record<string, string> = {};
    if (labelText) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/y;
      let at = 0;
      while (at < labelText.length) {
        re.lastIndex = at;
        const lm = re.exec(labelText);
        assert.ok(lm, `malformed labels at ${at}: ${line}`);
        assert.ok(!(lm[1] in labels), `label ${lm[1]} twice: ${line}`);
        assert.ok(!lm[1].startsWith('__'), `reserved label name ${lm[1]}`);
        labels[lm[1]] = lm[2].replace(/\\(.)/g, (_s, c: string) => (c === 'n' ? '\n' : c));
        at = re.lastIndex;
      }
    }
    const value = valueText === 'NaN' ? NaN : valueText === '+Inf' ? Infinity : valueText === '-Inf' ? -Infinity : Number(valueText);
    assert.ok(valueText === 'NaN' || !Number.isNaN(value), `value is not a number: ${line}`);
    const series = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    assert.ok(!seenSeries.has(series), `duplicate series ${series}`);
    seenSeries.add(series);
    samples.push({ name, labels, value });
  }
  for (const [name, type] of types) {
    assert.ok(helps.has(name), `${name} has no HELP`);
    // ferry's own, and the process and Node runtime figures under the names client libraries use.
    assert.match(name, /^(ferry|process|nodejs)_/, `${name} lacks the ferry_ prefix`);
    if (type === 'counter') assert.ok(name.endsWith('_total'), `counter ${name} must end in _total`);
    else assert.ok(!name.endsWith('_total'), `${type} ${name} must not end in _total`);
    // Base units only, as suffixes.
    assert.ok(!/(milli|micro|nano)?seconds?_|_ms$|_ms_|kib|mib|kilobytes|megabytes|_minutes|_hours/.test(name.replace(/_seconds(_total)?$/, '')), `${name}: use base units (seconds, bytes) as the suffix`);
    if (/bytes/.test(name)) assert.match(name, /_bytes(_total)?$/, `${name}: bytes go last`);
    if (/seconds/.test(name)) assert.match(name, /_seconds(_total)?$/, `${name}: seconds go last`);
    if (type === 'histogram') {
      // Per series: buckets in increasing le, cumulative, +Inf last and equal to _count.
      const series = new Map<string, Sample[]>();
      for (const s of samples.filter((x) => x.name === `${name}_bucket`)) {
        const { le, ...rest } = s.labels;
        assert.ok(le !== undefined, `${name}_bucket without le`);
        const key = JSON.stringify(Object.entries(rest).sort());
        series.set(key, [...(series.get(key) ?? []), s]);
      }
      assert.ok(series.size > 0, `histogram ${name} has buckets`);
      for (const [key, buckets] of series) {
        const les = buckets.map((b) => (b.labels.le === '+Inf' ? Infinity : Number(b.labels.le)));
        assert.deepEqual(les, [...les].sort((x, y) => x - y), `${name}${key}: buckets in order`);
        assert.equal(les.at(-1), Infinity, `${name}${key}: +Inf last`);
        const counts = buckets.map((b) => b.value);
        assert.deepEqual(counts, [...counts].sort((x, y) => x - y), `${name}${key}: cumulative`);
        const count = samples.find((x) => x.name === `${name}_count` && JSON.stringify(Object.entries(x.labels).sort()) === key);
        assert.equal(count?.value, counts.at(-1), `${name}${key}: _count is the +Inf bucket`);
        assert.ok(samples.some((x) => x.name === `${name}_sum` && JSON.stringify(Object.entries(x.labels).sort()) === key), `${name}${key}: _sum`);
      }
    }
  }
  // And what Prometheus' own linter says (Debian's prometheus package; skipped where it is missing).
  if (spawnSync('sh', ['-c', 'command -v promtool']).status === 0) {
    const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    assert.equal(r.status, 0, `promtool check metrics: ${r.stdout}${r.stderr}`);
  }
  return { samples, types };
}

function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  assert.equal(found.length, 1, `exactly one sample of ${name}${JSON.stringify(labels)}, found ${found.length}`);
  return found[0].value;
}

function get(opts: http.RequestOptions): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(opts, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), body }));
      })
      .on('error', reject);
  });
}

/** Start `ferry serve` for a TestSite with extra flags; returns the metrics port it printed. */
async function startWith(site: TestSite, extra: string[]): Promise<{ metricsPort: number; proc: ChildProcess; out: () => string }> {
  const p = spawn(FERRY_BIN, ['serve', '--home', site.home, '--listen', '127.0.0.1:0', ...extra], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FERRY_NO_PROGRESS: '1' } });
  procs.push(p);
  let out = '';
  p.stdout!.on('data', (d) => (out += d));
  p.stderr!.on('data', (d) => (out += d));
  const m = await waitFor('the daemon to listen', () => {
    if (p.exitCode !== null) throw giveUp(`daemon exited ${p.exitCode}: ${out}`);
    const listen = /listening on https:\/\/127\.0\.0\.1:(\d+)/.exec(out);
    const metrics = /metrics on http:\/\/127\.0\.0\.1:(\d+)\/metrics/.exec(out);
    return listen && metrics && existsSync(join(site.home, 'ferry.sock')) ? { port: Number(listen[1]), metrics: Number(metrics[1]) } : undefined;
  }, 30_000, 50);
  site.port = m.port;
  site.url = `https://127.0.0.1:${m.port}`;
  return { metricsPort: m.metrics, proc: p, out: () => out };
}

test('metrics after a real transfer: values match the transfers and the events, and the exposition is well formed', async () => {
  const [a, b] = await Promise.all([createSite('a'), createSite('b')]);
  sites.push(a, b);
  const data = join(a.dir, 'data');
  mkdirSync(join(data, 'sub'), { recursive: true });
  for (let i = 0; i < 8; i++) writeFileSync(join(data, i % 2 ? 'sub' : '', `f${i}.bin`), randomBytes(2000 + i * 3000));
  writeFileSync(join(data, 'big.bin'), randomBytes(3 << 20)); // several chunks
  a.defineVolume('vol', [data]);
  // A second mirrored volume: with two of each, a family whose samples are not grouped shows.
  const data2 = join(a.dir, 'data2');
  mkdirSync(data2);
  writeFileSync(join(data2, 'one.txt'), 'one\n');
  a.defineVolume('vol2', [data2]);
  const logDir = join(a.dir, 'logs');
  mkdirSync(logDir);
  const logFile = join(logDir, 'ferry.log');
  const aDaemon = await startWith(a, ['--metrics', '127.0.0.1:0', '--log-file', logFile, '--log-max-size', '1MiB', '--log-keep', '2']);
  await b.start();
  await pairSites(a, b);

  await a.json(['mirror', 'create', 'vol', '--to', 'b', '--max-delay', '1h']);
  const init = await a.json(['mirror', 'initialize', 'vol', '--to', 'b', '--wait']);
  await a.json(['mirror', 'create', 'vol2', '--to', 'b']);
  const init2 = await a.json(['mirror', 'initialize', 'vol2', '--to', 'b', '--wait']);
  writeFileSync(join(data, 'f0.bin'), randomBytes(5000));
  writeFileSync(join(data, 'new.txt'), 'a new file\n');
  const upd = await a.json(['mirror', 'update', 'vol', '--to', 'b', '--wait']);
  assert.ok(init.transfer.bytes > 3 << 20 && init.transfer.objects > 5, JSON.stringify(init.transfer));
  assert.ok(upd.transfer.bytes > 0 && upd.transfer.bytes < init.transfer.bytes, JSON.stringify(upd.transfer));

  // Both listeners serve the same families.
  const viaSocket = await get({ socketPath: join(a.home, 'ferry.sock'), path: '/metrics' });
  const viaTcp = await get({ host: '127.0.0.1', port: aDaemon.metricsPort, path: '/metrics' });
  for (const r of [viaSocket, viaTcp]) {
    assert.equal(r.status, 200);
    assert.match(r.type, /^text\/plain; version=0\.0\.4/);
  }
  assert.equal((await get({ host: '127.0.0.1', port: aDaemon.metricsPort, path: '/other' })).status, 404);
  const sock = lintExposition(viaSocket.body);
  const tcp = lintExposition(viaTcp.body);
  assert.deepEqual([...tcp.types], [...sock.types]);
  // Lag, time and free space move between two scrapes.
  const stable = (ss: Sample[]) => ss.filter((s) => !/lag_seconds|scrape_timestamp|filesystem_avail|^process_|^nodejs_/.test(s.name));
  assert.deepEqual(stable(tcp.samples), stable(sock.samples), 'the two listeners agree');

  const s = sock.samples;
  const l = { volume: 'vol', peer: 'b' };
  // What the transfers reported, and what the catalog's events say.
  assert.equal(value(s, 'ferry_mirror_transferred_bytes_total', l), init.transfer.bytes + upd.transfer.bytes);
  assert.equal(value(s, 'ferry_mirror_transferred_objects_total', l), init.transfer.objects + upd.transfer.objects);
  assert.equal(value(s, 'ferry_mirror_transferred_bytes_total', { volume: 'vol2', peer: 'b' }), init2.transfer.bytes);
  const ev = (await a.ferry(['events', '--kind', 'replication.update', '--volume', 'vol', '--json'])).stdout.trim().split('\n').map((x) => JSON.parse(x));
  assert.equal(ev.length, 2);
  assert.equal(value(s, 'ferry_mirror_transferred_bytes_total', l), ev[0].details.bytes + ev[1].details.bytes);
  assert.equal(value(s, 'ferry_mirror_last_transfer_bytes', l), upd.transfer.bytes);
  assert.equal(value(s, 'ferry_mirror_last_transfer_objects', l), upd.transfer.objects);
  const dur = value(s, 'ferry_mirror_last_transfer_duration_seconds', l);
  assert.ok(dur > 0 && Math.abs(dur - upd.transfer.seconds) < 1e-9, `duration ${dur}`);
  const lag = value(s, 'ferry_mirror_lag_seconds', l);
  assert.ok(lag >= 0 && lag < 120, `lag ${lag}`);
  assert.equal(value(s, 'ferry_mirror_max_delay_seconds', l), 3600);
  assert.equal(value(s, 'ferry_mirror_up', l), 1);
  for (const st of ['uninitialized', 'baselining', 'idle', 'updating', 'paused', 'disconnected', 'needs-full-sync', 'broken-off', 'resyncing']) {
    assert.equal(value(s, 'ferry_mirror_state', { ...l, state: st }), st === 'idle' ? 1 : 0, st);
  }
  assert.equal(value(s, 'ferry_mirror_transfer_in_progress', l), 0);
  assert.equal(value(s, 'ferry_mirror_consecutive_failures', l), 0);
  assert.equal(value(s, 'ferry_mirror_peer_snapshots_pending', l), 0);
  const lastSuccess = value(s, 'ferry_mirror_last_success_timestamp_seconds', l);
  assert.ok(Math.abs(lastSuccess - Date.now() / 1000) < 300, `last success ${lastSuccess}`);
  const snaps = await a.json(['snapshot', 'list', 'vol']);
  assert.equal(value(s, 'ferry_snapshots', { volume: 'vol' }), snaps.length);
  assert.ok(value(s, 'ferry_store_size_bytes') > 3 << 20);
  assert.ok(value(s, 'ferry_store_raw_bytes') > 3 << 20);
  assert.ok(value(s, 'ferry_store_objects') >= init.transfer.objects);
  assert.ok(value(s, 'ferry_store_packs') >= 1);
  // Two snapshots of nearly the same data: nearly twice the logical bytes of what is stored.
  const dedup = value(s, 'ferry_store_dedup_ratio');
  assert.ok(dedup > 1.5 && dedup < 2.1, `dedup ratio ${dedup}`);
  assert.equal(value(s, 'ferry_hook_failures_total'), 0);
  assert.equal(value(s, 'ferry_site_info', { site: 'a', id: a.id }), 1);
  // The build, the process, the Node runtime.
  const build = s.filter((x) => x.name === 'ferry_build_info');
  assert.equal(build.length, 1);
  assert.equal(build[0].labels.version, JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version);
  assert.match(build[0].labels.node, /^\d+\.\d+\.\d+$/);
  assert.ok(value(s, 'process_resident_memory_bytes') > 10 << 20);
  assert.ok(value(s, 'process_cpu_seconds_total') > 0);
  assert.ok(Math.abs(value(s, 'process_cpu_seconds_total') - value(s, 'process_cpu_user_seconds_total') - value(s, 'process_cpu_system_seconds_total')) < 1e-6);
  const started = value(s, 'process_start_time_seconds');
  assert.ok(started > Date.now() / 1000 - 600 && started <= Date.now() / 1000, `start time ${started}`);
  assert.ok(value(s, 'process_open_fds') > 3 && value(s, 'process_open_fds') < value(s, 'process_max_fds'));
  assert.ok(value(s, 'nodejs_heap_size_used_bytes') > 0 && value(s, 'nodejs_heap_size_used_bytes') <= value(s, 'nodejs_heap_size_total_bytes'));
  assert.ok(value(s, 'nodejs_eventloop_lag_p99_seconds') >= value(s, 'nodejs_eventloop_lag_p50_seconds'));
  // Histograms: one observation per transfer (two for vol, one for vol2), per snapshot taken for them, per apply at b.
  assert.equal(value(s, 'ferry_mirror_transfer_duration_seconds_count', l), 2);
  assert.ok(Math.abs(value(s, 'ferry_mirror_transfer_duration_seconds_sum', l) - ev[0].details.seconds - ev[1].details.seconds) < 1e-6);
  assert.equal(value(s, 'ferry_mirror_transfer_duration_seconds_count', { volume: 'vol2', peer: 'b' }), 1);
  assert.equal(value(s, 'ferry_mirror_transfer_duration_seconds_bucket', { ...l, le: '+Inf' }), 2);
  const taken = (await a.ferry(['events', '--kind', 'snapshot.create', '--volume', 'vol', '--json'])).stdout.trim().split('\n').map((x) => JSON.parse(x));
  assert.ok(taken.length >= 2 && taken.every((x) => x.event.outcome === 'ok' && x.details.seconds > 0), JSON.stringify(taken));
  assert.equal(value(s, 'ferry_snapshot_duration_seconds_count', { volume: 'vol' }), taken.length);
  assert.equal(value(s, 'ferry_mirror_update_failures_total', l), 0);
  assert.equal(value(s, 'ferry_snapshot_failures_total', { volume: 'vol' }), 0);
  const newest = Math.max(...snaps.map((x: { time: number | string }) => (typeof x.time === 'number' ? x.time : Date.parse(x.time))));
  assert.equal(value(s, 'ferry_snapshot_last_timestamp_seconds', { volume: 'vol' }), newest / 1000);

  // The destination's side, on its local socket.
  const bm = lintExposition((await get({ socketPath: join(b.home, 'ferry.sock'), path: '/metrics' })).body).samples;
  assert.equal(value(bm, 'ferry_replica_apply_in_progress', { volume: 'vol' }), 0);
  assert.equal(value(bm, 'ferry_replica_consistent', { volume: 'vol' }), 1);
  assert.equal(value(bm, 'ferry_replica_consistent', { volume: 'vol2' }), 1);
  assert.ok(value(bm, 'ferry_snapshots', { volume: 'vol' }) >= 1);
  assert.ok(value(bm, 'ferry_store_size_bytes') > 3 << 20);
  assert.equal(value(bm, 'ferry_replica_apply_duration_seconds_count', { volume: 'vol' }), 2);
  assert.equal(value(bm, 'ferry_replica_apply_duration_seconds_count', { volume: 'vol2' }), 1);
  assert.ok(!bm.some((x) => x.name.startsWith('ferry_mirror_')), 'b has no mirrors of its own');

  // The primary's log file (--log-file): JSON lines with the mirror's transitions and the transfers.
  aDaemon.proc.kill('SIGTERM');
  await new Promise((r) => aDaemon.proc.once('exit', r));
  const lines = readFileSync(logFile, 'utf8').trim().split('\n').map((x) => JSON.parse(x));
  assert.ok(lines.every((x) => x.site === 'a'));
  const transitions = lines.filter((x) => x.event?.kind === 'mirror.state').map((x) => x.details.transition);
  assert.ok(transitions.includes('uninitialized => baselining') && transitions.includes('baselining => idle') && transitions.includes('idle => updating'), transitions.join(', '));
  assert.ok(lines.filter((x) => x.event?.kind === 'mirror.state').every((x) => typeof x.details.reason === 'string' && (x.event.volume === 'vol' || x.event.volume === 'vol2')));
  assert.deepEqual(lines.filter((x) => x.event?.kind === 'replication.update').map((x) => x.details.bytes), [init.transfer.bytes, init2.transfer.bytes, upd.transfer.bytes]);
  assert.equal(lines.at(-1).event.kind, 'daemon.stop');
  // stdout is not a terminal here, so it carries the same JSON lines.
  assert.ok(aDaemon.out().split('\n').some((x) => x.startsWith('{') && JSON.parse(x).event?.kind === 'replication.update'));
});
