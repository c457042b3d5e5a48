// The rotating log file: sizes, number of files kept, no lost or split lines,
// external rotation, a missing directory, file modes; and the fanout that
// gives a terminal the human form while the file gets JSON lines.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers.ts';
import { formatLogLine, humanFromJsonLine, LogFanout, logFileSettings, RotatingFileSink, DEFAULT_LOG_KEEP, DEFAULT_LOG_MAX_BYTES } from '../../src/site/log.ts';
import { FerryError } from '../../src/core/errors.ts';
import { Site } from '../../src/site/site.ts';

function line(i: number, pad = 0): string {
  return formatLogLine('site-a', 1_700_000_000_000 + i, { kind: 'mirror.state', volume: 'app', outcome: 'info', detail: { seq: i, transition: 'idle => updating', reason: 'x'.repeat(pad) } }, false);
}

/** Every line of PATH.keep ... PATH.1, PATH, oldest first. */
function readAll(path: string, keep: number): string[] {
  const files = [...Array.from({ length: keep }, (_, i) => `${path}.${keep - i}`), path].filter(existsSync);
  return files.flatMap((f) => readFileSync(f, 'utf8').split('\n').slice(0, -1));
}

test('rotates by size: every file within the limit, keep files kept, and the lines kept are the newest, whole and in order', (t) => {
  const tmp = tempDir('ferry-log-');
  t.after(tmp.cleanup);
  const path = join(tmp.path, 'ferry.log');
  const sink = new RotatingFileSink(path, { maxBytes: 2048, keep: 3 });
  const written: string[] = [];
  for (let i = 0; i < 400; i++) {
    const l = line(i, (i * 37) % 200); // lines of varying length, 150-350 bytes
    written.push(l);
    sink.write(l + '\n');
  }
  sink.close();
  const names = readdirSync(tmp.path).sort();
  assert.deepEqual(names, ['ferry.log', 'ferry.log.1', 'ferry.log.2', 'ferry.log.3'], 'PATH and exactly keep rotated files');
  for (const n of names) {
    const size = statSync(join(tmp.path, n)).size;
    assert.ok(size <= 2048, `${n} is ${size} bytes, over the 2048 limit`);
    assert.ok(size > 0, `${n} is empty`);
    assert.ok(readFileSync(join(tmp.path, n), 'utf8').endsWith('\n'), `${n} ends mid-line`);
  }
  // Rotated files are nearly full: a rotation happens only when the next line would not fit.
  for (const n of ['ferry.log.1', 'ferry.log.2', 'ferry.log.3']) assert.ok(statSync(join(tmp.path, n)).size > 2048 - 360, `${n} was rotated early`);
  const kept = readAll(path, 3);
  assert.ok(kept.length > 10);
  // The kept lines are exactly the newest ones written: none lost, none split, none reordered.
  assert.deepEqual(kept, written.slice(written.length - kept.length));
  for (const l of kept) assert.equal(JSON.parse(l).event.kind, 'mirror.state');
});

test('a line longer than the limit is written whole, in a file of its own', (t) => {
  const tmp = tempDir('ferry-log-');
  t.after(tmp.cleanup);
  const path = join(tmp.path, 'ferry.log');
  const sink = new RotatingFileSink(path, { maxBytes: 1024, keep: 2 });
  sink.write(line(1));
  const big = line(2, 3000);
  sink.write(big);
  sink.write(line(3));
  sink.close();
  assert.equal(readFileSync(`${path}.2`, 'utf8'), line(1) + '\n');
  assert.equal(readFileSync(`${path}.1`, 'utf8'), big + '\n');
  assert.equal(readFileSync(path, 'utf8'), line(3) + '\n');
});

test('keep 0 keeps no rotated file; a smaller keep drops files a larger one left', (t) => {
  const tmp = tempDir('ferry-log-');
  t.after(tmp.cleanup);
  const path = join(tmp.path, 'ferry.log');
  const a = new RotatingFileSink(path, { maxBytes: 1024, keep: 4 });
  for (let i = 0; i < 60; i++) a.write(line(i));
  a.close();
  assert.ok(existsSync(`${path}.4`));
  const b = new RotatingFileSink(path, { maxBytes: 1024, keep: 1 });
  for (let i = 60; i < 70; i++) b.write(line(i));
  b.close();
  assert.deepEqual(readdirSync(tmp.path).sort(), ['ferry.log', 'ferry.log.1']);
  assert.deepEqual(readAll(path, 1).map((l) => JSON.parse(l).details.seq).at(-1), 69);
  const c = new RotatingFileSink(path, { maxBytes: 1024, keep: 0 });
  for (let i = 70; i < 90; i++) c.write(line(i));
  c.close();
  assert.deepEqual(readdirSync(tmp.path).sort(), ['ferry.log']);
  const last = readFileSync(path, 'utf8').split('\n').slice(0, -1);
  assert.equal(JSON.parse(last.at(-1)!).details.seq, 89);
  assert.ok(statSync(path).size <= 1024);
});

test('a restarted sink appends to the existing file and counts its size', (t) => {
  const tmp = tempDir('ferry-log-');
  t.after(tmp.cleanup);
  const path = join(tmp.path, 'ferry.log');
  writeFileSync(path, 'x'.repeat(900) + '\n');
  const sink = new RotatingFileSink(path, { maxBytes: 1024, keep: 2 });
  sink.write(line(1, 100)); // 901 + ~250 > 1024: the old content is rotated away first
  sink.close();
  assert.equal(readFileSync(`${path}.1`, 'utf8'), 'x'.repeat(900) + '\n');
  assert.equal(readFileSync(path, 'utf8'), line(1, 100) + '\n');
});

test('new log files are mode 0600', (t) => {
  const tmp = tempDir('ferry-log-');
  t.after(tmp.cleanup);
  const path = join(tmp.path, 'ferry.log');
  const sink = new RotatingFileSink(path, { maxBytes: 1024, keep: 2 });
  for (let i = 0; i < 20; i++) sink.write(line(i));
  sink.close();
  for (const f of [path, `${path}.1`, `${path}.2`]) assert.equal(statSync(f).mode & 0o777, 0o600, f);
});

test('after an external rotation (the file moved or deleted) the next line starts a new file, no SIGHUP needed', (t) => {
  const tmp = tempDir('ferry-log-');
  t.after(tmp.cleanup);
  const path = join(tmp.path, 'ferry.log');
  const sink = new RotatingFileSink(path, { maxBytes: 1 << 20, keep: 2 });
  sink.write(line(1));
  renameSync(path, `${path}.moved`); // what logrotate does
  sink.write(line(2));
  rmSync(path);
  sink.write(line(3));
  sink.close();
  assert.equal(readFileSync(`${path}.moved`, 'utf8'), line(1) + '\n');
  assert.equal(readFileSync(path, 'utf8'), line(3) + '\n', 'line 3 went to a fresh file after the delete');
});

test('a missing directory is a clear error at start; one that disappears later is reported once, and writing resumes when it is back', (t) => {
  const tmp = tempDir('ferry-log-');
  t.after(tmp.cleanup);
  assert.throws(() => new RotatingFileSink(join(tmp.path, 'nope', 'ferry.log')), (err: unknown) => {
    assert.ok(err instanceof FerryError);
    assert.equal(err.code, 'IO');
    assert.match(err.message, /directory .*nope does not exist/);
    return true;
  });
  assert.throws(() => new RotatingFileSink(tmp.path), (err: unknown) => err instanceof FerryError && /not a regular file/.test(err.message));
  assert.throws(() => new RotatingFileSink(join(tmp.path, 'l'), { maxBytes: 10 }), (err: unknown) => err instanceof FerryError && err.code === 'USAGE');
  assert.throws(() => new RotatingFileSink(join(tmp.path, 'l'), { keep: -1 }), (err: unknown) => err instanceof FerryError && err.code === 'USAGE');

  const dir = join(tmp.path, 'logs');
  mkdirSync(dir);
  const path = join(dir, 'ferry.log');
  const errors: string[] = [];
  const sink = new RotatingFileSink(path, { maxBytes: 4096, keep: 2, onError: (m) => errors.push(m) });
  sink.write(line(1));
  rmSync(dir, { recursive: true });
  sink.write(line(2)); // must not throw: the work the line describes goes on
  sink.write(line(3));
  assert.equal(errors.length, 1, `reported once: ${errors.join(' | ')}`);
  assert.match(errors[0], /ferry events/);
  mkdirSync(dir);
  sink.write(line(4));
  sink.close();
  assert.equal(readFileSync(path, 'utf8'), line(4) + '\n');
});

test('the fanout gives a terminal the human form and the file the JSON line', (t) => {
  const tmp = tempDir('ferry-log-');
  t.after(tmp.cleanup);
  const path = join(tmp.path, 'ferry.log');
  const tty: string[] = [];
  const fan = new LogFanout([{ write: (l) => tty.push(l), isTTY: true }, new RotatingFileSink(path, { maxBytes: 4096, keep: 1 })]);
  const e = { kind: 'mirror.state', volume: 'app', outcome: 'info' as const, detail: { mirror: 'app@b', transition: 'idle => updating', reason: 'scheduled' } };
  const json = formatLogLine('site-a', 1_700_000_000_000, e, false);
  fan.write(json + '\n');
  fan.close();
  assert.equal(readFileSync(path, 'utf8'), json + '\n');
  assert.equal(tty[0], formatLogLine('site-a', 1_700_000_000_000, e, true) + '\n');
  assert.match(tty[0], /site-a INFO {4}mirror\.state app idle => updating \(scheduled\) mirror=app@b/);
  assert.equal(humanFromJsonLine('not json\n'), 'not json\n');
});

test('log file settings: flags win over the catalog meta keys, which win over the defaults', (t) => {
  const tmp = tempDir('ferry-log-');
  t.after(tmp.cleanup);
  const home = join(tmp.path, 'home');
  const site = Site.init(home, 'a');
  t.after(() => site.close());
  assert.equal(logFileSettings(site.catalog, home, {}), undefined);
  assert.deepEqual(logFileSettings(site.catalog, home, { file: join(tmp.path, 'x.log') }), { path: join(tmp.path, 'x.log'), maxBytes: DEFAULT_LOG_MAX_BYTES, keep: DEFAULT_LOG_KEEP });
  site.catalog.db.run("INSERT INTO meta (key, value) VALUES ('log_file', 'logs/ferry.log'), ('log_max_bytes', '4096'), ('log_keep', '2')");
  assert.deepEqual(logFileSettings(site.catalog, home, {}), { path: join(home, 'logs', 'ferry.log'), maxBytes: 4096, keep: 2 });
  assert.deepEqual(logFileSettings(site.catalog, home, { file: '/var/log/f.log', keep: 7 }), { path: '/var/log/f.log', maxBytes: 4096, keep: 7 });
  site.catalog.db.run("UPDATE meta SET value = 'lots' WHERE key = 'log_keep'");
  assert.throws(() => logFileSettings(site.catalog, home, {}), (err: unknown) => err instanceof FerryError && err.code === 'CONFIG_INVALID');
});
