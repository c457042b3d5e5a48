// The daemon's stdout without a terminal (systemd, a pipe): JSON lines only,
// one per event or notice, each with pino's `level`, `time` and `msg`, the
// site, and the event's fields nested, so a workflow's detail `kind: failover`
// no longer overwrites the event's kind. Two real daemons on pipes, one of
// them with --json: a mirror baselined, a failover at the secondary, both
// stopped with SIGTERM; then every line either wrote is parsed. And, when npx
// can fetch it, pino-pretty reads those lines.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanupSites, createSite, pairSites, startDaemon, stopDaemon, type TestSite } from '../harness/index.ts';

const sites: TestSite[] = [];
after(() => cleanupSites(sites));

const LEVEL_OF: Record<string, number> = { ok: 30, info: 30, warning: 40, failed: 50 };
let captured: Array<{ site: string; text: string }> = [];

async function start(s: TestSite, args: string[] = []): Promise<() => string> {
  let stdout = '';
  s.log = '';
  const d = await startDaemon(s.home, { name: s.name, args, onOutput: (t) => (s.log += t), output: () => s.log, onStdout: (t) => (stdout += t) });
  s.proc = d.proc;
  s.port = d.info.port;
  s.url = `https://127.0.0.1:${d.info.port}`;
  return () => stdout;
}

test('without a terminal, serve writes JSON lines only: pino fields, the event nested, notices for listening and stopping', async () => {
  const [a, b] = [await createSite('log-a'), await createSite('log-b')];
  sites.push(a, b);
  const data = join(a.dir, 'data');
  mkdirSync(data);
  writeFileSync(join(data, 'f'), 'hello');
  a.defineVolume('app', [data]);
  const outA = await start(a);
  const outB = await start(b, ['--json']);
  await pairSites(a, b);
  await a.json(['mirror', 'create', 'app', '--to', b.name]);
  await a.json(['mirror', 'initialize', 'app', '--to', b.name, '--wait']);
  await b.json(['failover', 'app']);
  for (const s of [a, b]) {
    await stopDaemon(s.proc!, 'SIGTERM');
    s.proc = undefined;
  }
  captured = [{ site: a.name, text: outA() }, { site: b.name, text: outB() }];

  for (const { site, text } of captured) {
    assert.ok(text.endsWith('\n'), `${site}: whole lines`);
    const lines = text.slice(0, -1).split('\n').map((l, i) => {
      try {
        return JSON.parse(l) as Record<string, any>;
      } catch {
        assert.fail(`${site}: line ${i + 1} is not JSON: ${l}`);
      }
    });
    for (const o of lines) {
      assert.equal(typeof o.level, 'number', JSON.stringify(o));
      assert.ok([30, 40, 50].includes(o.level), JSON.stringify(o));
      assert.match(o.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.equal(o.site, site);
      assert.equal(typeof o.msg, 'string');
      assert.ok(o.msg.length > 0);
      assert.ok(o.details && typeof o.details === 'object', JSON.stringify(o));
      // Either an event of the catalog or a notice of the daemon's own, never both; nothing else at the top.
      assert.ok(Boolean(o.event) !== Boolean(o.notice), JSON.stringify(o));
      for (const k of Object.keys(o)) assert.ok(['level', 'time', 'site', 'msg', 'event', 'notice', 'details'].includes(k), `${site}: top-level field ${k}`);
      if (o.event) {
        assert.equal(o.level, LEVEL_OF[o.event.outcome], JSON.stringify(o));
        assert.ok(Number.isSafeInteger(o.event.id), JSON.stringify(o));
        assert.ok(o.msg.startsWith(o.event.kind), JSON.stringify(o));
      }
    }
    const notices = lines.filter((o) => o.notice).map((o) => o.notice);
    assert.deepEqual(notices, ['daemon.listening', 'daemon.stopping'], `${site}: the daemon's own lines`);
    const listening = lines.find((o) => o.notice === 'daemon.listening')!;
    assert.match(listening.msg, /listening on https:\/\/127\.0\.0\.1:\d+, local socket /);
    assert.match(listening.details.listen, /^127\.0\.0\.1:\d+$/);
    assert.equal(lines.find((o) => o.notice === 'daemon.stopping')!.details.signal, 'SIGTERM');
    assert.equal(lines[0].event?.kind, 'daemon.start');
    assert.equal(lines.at(-1)!.event?.kind, 'daemon.stop');
    // Event ids grow in the order the lines were written.
    const ids = lines.filter((o) => o.event).map((o) => o.event.id);
    assert.deepEqual(ids, [...ids].sort((x, y) => x - y));
    if (site === b.name) {
      // The failover's journal steps: the event is a workflow, its own kind a detail.
      const wf = lines.filter((o) => o.event?.kind === 'workflow');
      assert.ok(wf.length >= 2, `workflow lines: ${JSON.stringify(wf)}`);
      for (const o of wf) assert.equal(o.details.kind, 'failover', JSON.stringify(o));
      assert.ok(!lines.some((o) => o.event?.kind === 'failover' && o.details.workflow), 'no workflow line logged as a failover');
    } else {
      const transitions = lines.filter((o) => o.event?.kind === 'mirror.state').map((o) => o.details.transition);
      assert.ok(transitions.includes('uninitialized => baselining') && transitions.includes('baselining => idle'), transitions.join(', '));
      assert.ok(lines.some((o) => o.event?.kind === 'replication.update' && o.details.bytes > 0));
    }
  }
  // `ferry events --json` prints the same lines (and a stored event's id).
  const ev = (await b.ferry(['events', '--kind', 'workflow', '--json'])).stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(ev.length >= 2 && ev.every((o) => o.event.kind === 'workflow' && o.details.kind === 'failover' && Number.isSafeInteger(o.event.id)), JSON.stringify(ev));
});

test('pino-pretty reads the lines (npx, when it can fetch it)', (t) => {
  assert.ok(captured.length, 'the daemons ran');
  const input = captured.map((c) => c.text).join('');
  const r = spawnSync('npx', ['--yes', '--prefer-offline', 'pino-pretty', '--no-color'], { input, encoding: 'utf8', timeout: 180_000 });
  if (r.status !== 0) return void t.skip(`pino-pretty is not available through npx here (${(r.stderr || r.error?.message || '').trim().split('\n').at(-1)})`);
  // pino-pretty names the level and prints the message, one entry per line it read.
  assert.match(r.stdout, /\] INFO: ferry site log-a \(.*\) listening on https:\/\/127\.0\.0\.1:\d+/);
  assert.match(r.stdout, /\] INFO: workflow app /);
  assert.match(r.stdout, /\] INFO: daemon\.stop\b/);
  assert.equal((r.stdout.match(/^\[\d\d:\d\d:\d\d\.\d{3}\] (INFO|WARN|ERROR): /gm) ?? []).length, input.trim().split('\n').length);
});
