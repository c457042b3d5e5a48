// The daemon's JSON log lines (site/log.ts): pino's field names and level
// numbers, the event's own fields nested so a detail can never overwrite the
// event's kind, volume or outcome, and the human form a terminal gets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatLogLine, formatNotice, humanFromJsonLine, LEVELS } from '../../../src/site/log.ts';

const AT = Date.UTC(2026, 0, 2, 3, 4, 5, 678);

test("a detail named kind, volume, outcome, time or level does not overwrite the event's own", () => {
  // What dr/journal.ts records for each step of a failover.
  const e = { kind: 'workflow', volume: 'app', outcome: 'info' as const, detail: { workflow: 'wf1', kind: 'failover', step: 'promote', transition: '=> promote' } };
  const o = JSON.parse(formatLogLine('b', AT, e, false, 17));
  assert.equal(o.event.kind, 'workflow');
  assert.equal(o.event.volume, 'app');
  assert.equal(o.event.outcome, 'info');
  assert.equal(o.event.id, 17);
  assert.equal(o.details.kind, 'failover');
  const clash = JSON.parse(formatLogLine('b', AT, { kind: 'x', outcome: 'ok', detail: { time: 'then', level: 'loud', msg: 'mine', site: 'other', event: 'e', details: 'd' } }, false));
  assert.equal(clash.time, new Date(AT).toISOString());
  assert.equal(clash.level, LEVELS.info);
  assert.equal(clash.site, 'b');
  assert.equal(clash.event.kind, 'x');
  assert.deepEqual(clash.details, { time: 'then', level: 'loud', msg: 'mine', site: 'other', event: 'e', details: 'd' });
});

test("pino's fields: a numeric level from the outcome, time, msg; one line", () => {
  const line = (outcome: 'ok' | 'info' | 'warning' | 'failed', detail: Record<string, unknown> = {}) => formatLogLine('a', AT, { kind: 'replication.update', volume: 'app', outcome, detail }, false);
  assert.deepEqual(['ok', 'info', 'warning', 'failed'].map((o) => JSON.parse(line(o as 'ok')).level), [30, 30, 40, 50]);
  const o = JSON.parse(line('failed', { mirror: 'app@b', error: { code: 'PEER_UNREACHABLE', message: 'cannot reach b' } }));
  assert.equal(o.time, '2026-01-02T03:04:05.678Z');
  assert.equal(o.msg, 'replication.update app failed: cannot reach b');
  assert.deepEqual(Object.keys(o), ['level', 'time', 'site', 'msg', 'event', 'details']);
  const m = JSON.parse(formatLogLine('a', AT, { kind: 'mirror.state', volume: 'app', outcome: 'info', detail: { transition: 'idle => updating', reason: 'scheduled' } }, false));
  assert.equal(m.msg, 'mirror.state app idle => updating (scheduled)');
  assert.ok(!line('ok', { text: 'two\nlines' }).includes('\n'), 'one line, whatever the details hold');
});

test('a notice (not an event of the catalog) is a JSON line too, and a terminal gets its message alone', () => {
  const line = formatNotice('a', AT, 'info', 'daemon.listening', 'ferry site a (AAAA) listening on https://127.0.0.1:7420, local socket /h/ferry.sock', { listen: '127.0.0.1:7420' });
  const o = JSON.parse(line);
  assert.deepEqual(o, { level: 30, time: '2026-01-02T03:04:05.678Z', site: 'a', msg: 'ferry site a (AAAA) listening on https://127.0.0.1:7420, local socket /h/ferry.sock', notice: 'daemon.listening', details: { listen: '127.0.0.1:7420' } });
  assert.equal(humanFromJsonLine(line + '\n'), `${o.msg}\n`);
  assert.equal(JSON.parse(formatNotice('a', AT, 'error', 'daemon.stop', 'error while stopping: x')).level, 50);
});

test('the human form of a JSON line is the human form of its event', () => {
  const e = { kind: 'workflow', volume: 'app', outcome: 'info' as const, detail: { workflow: 'wf1', kind: 'failover', transition: '=> promote' } };
  const json = formatLogLine('b', AT, e, false, 3);
  assert.equal(humanFromJsonLine(json), formatLogLine('b', AT, e, true));
  assert.match(humanFromJsonLine(json), /^2026-01-02T03:04:05\.678Z b INFO {4}workflow app => promote workflow=wf1 kind=failover$/);
  assert.equal(humanFromJsonLine('{"no":"event"}\n'), '{"no":"event"}\n');
});
