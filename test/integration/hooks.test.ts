// Hooks around a snapshot: pre and post see the snapshot's identity in their
// environment; a failing or timed-out pre aborts the snapshot (post still
// runs); a timed-out pre is killed with everything it started; a failing post
// leaves the snapshot taken and warns.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { assertError, makeSite, spawnFerry } from '../harness/cli-site.ts';

function parseEnv(file: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}

/** Processes whose command line contains `marker` (zombies have an empty command line: they are gone as far as this is concerned). */
function processesWith(marker: string): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(marker)) out.push(Number(p));
    } catch {
      // gone
    }
  }
  return out;
}

test('pre and post hooks run with FERRY_VOLUME, FERRY_SNAPSHOT_ID and FERRY_SNAPSHOT_NAME', async () => {
  const site = await makeSite();
  try {
    const data = join(site.dir, 'data');
    mkdirSync(data);
    writeFileSync(join(data, 'f'), 'x');
    const out = join(site.dir, 'hook-out');
    mkdirSync(out);
    const dump = (phase: string) => `env | grep '^FERRY_' > ${out}/${phase}.env; echo ${phase} >> ${out}/order`;
    assert.equal((await site.ferry(['volume', 'create', 'app', '--member', data, '--pre', dump('pre'), '--post', dump('post')])).code, 0);
    const r = await site.json(['snapshot', 'create', 'app', '--name', 'consistent']);
    const pre = parseEnv(join(out, 'pre.env'));
    const post = parseEnv(join(out, 'post.env'));
    for (const env of [pre, post]) {
      assert.equal(env.FERRY_VOLUME, 'app');
      assert.equal(env.FERRY_SNAPSHOT_ID, r.snapshot.id);
      assert.equal(env.FERRY_SNAPSHOT_NAME, 'consistent');
    }
    assert.equal(pre.FERRY_HOOK, 'pre');
    assert.equal(post.FERRY_HOOK, 'post');
    assert.equal(readFileSync(join(out, 'order'), 'utf8'), 'pre\npost\n');
    assert.deepEqual(r.hooks.map((h: { phase: string; exitCode: number }) => [h.phase, h.exitCode]), [['pre', 0], ['post', 0]]);
    // An unnamed snapshot gets an empty name, and its own id.
    const r2 = await site.json(['snapshot', 'create', 'app']);
    const pre2 = parseEnv(join(out, 'pre.env'));
    assert.equal(pre2.FERRY_SNAPSHOT_NAME, '');
    assert.equal(pre2.FERRY_SNAPSHOT_ID, r2.snapshot.id);
    assert.notEqual(r2.snapshot.id, r.snapshot.id);
  } finally {
    site.cleanup();
  }
});

test('a failing pre hook aborts the snapshot; post still runs', async () => {
  const site = await makeSite();
  try {
    const data = join(site.dir, 'data');
    mkdirSync(data);
    writeFileSync(join(data, 'f'), 'x');
    const marker = join(site.dir, 'post-ran');
    assert.equal((await site.ferry(['volume', 'create', 'app', '--member', data, '--pre', 'echo cannot freeze >&2; exit 3', '--post', `echo ran >> ${marker}`])).code, 0);
    const r = await site.ferry(['snapshot', 'create', 'app', '--json']);
    assertError(r, 1, 'HOOK_FAILED', /pre hook .*exited with status 3/);
    assert.match(r.json.error.message, /cannot freeze/, 'the hook output should be in the message');
    assert.equal(readFileSync(marker, 'utf8'), 'ran\n', 'post did not run exactly once');
    assert.deepEqual(await site.json(['snapshot', 'list', 'app']), []);
    assert.equal((await site.json(['info'])).store.objects, 0, 'a failed snapshot stored objects');
  } finally {
    site.cleanup();
  }
});

test('a pre hook that exceeds --hook-timeout is killed with its children and reported as timed out', async () => {
  const site = await makeSite();
  try {
    const data = join(site.dir, 'data');
    mkdirSync(data);
    writeFileSync(join(data, 'f'), 'x');
    const marker = join(site.dir, 'post-ran');
    // A unique sleep length marks the hook's processes in /proc.
    const tag = `${1000 + Math.floor(Math.random() * 1000)}.${process.pid}`;
    assert.equal((await site.ferry(['volume', 'create', 'app', '--member', data, '--pre', `sleep ${tag} & sleep ${tag}`, '--post', `touch ${marker}`, '--hook-timeout', '1s'])).code, 0);
    const r = await site.ferry(['snapshot', 'create', 'app', '--json'], { timeoutMs: 60_000 });
    assertError(r, 1, 'HOOK_FAILED', /timed out/);
    assert.equal(r.json.error.details?.hook?.timedOut, true);
    assert.ok(existsSync(marker), 'post did not run after the timed-out pre');
    assert.deepEqual(processesWith(`sleep\0${tag}`), [], 'the hook\'s children survived the timeout');
    // The check above can see such processes: start the same pair here and find them.
    const control = spawn('/bin/sh', ['-c', `sleep ${tag} & sleep ${tag}`], { detached: true, stdio: 'ignore' });
    try {
      for (let i = 0; i < 100 && processesWith(`sleep\0${tag}`).length < 2; i++) await sleep(50);
      assert.equal(processesWith(`sleep\0${tag}`).length, 2, 'the /proc scan does not see the sleeps');
    } finally {
      process.kill(-control.pid!, 'SIGKILL');
    }
    assert.deepEqual(await site.json(['snapshot', 'list', 'app']), []);
  } finally {
    site.cleanup();
  }
});

test('a failing post hook leaves the snapshot taken and warns (exit 8)', async () => {
  const site = await makeSite();
  try {
    const data = join(site.dir, 'data');
    mkdirSync(data);
    writeFileSync(join(data, 'f'), 'x');
    assert.equal((await site.ferry(['volume', 'create', 'app', '--member', data, '--pre', 'true', '--post', 'echo thaw failed >&2; exit 4'])).code, 0);
    const r = await site.ferry(['snapshot', 'create', 'app']);
    assert.equal(r.code, 8, r.stderr);
    assert.match(r.stderr, /post hook/);
    const list = await site.json(['snapshot', 'list', 'app']);
    assert.equal(list.length, 1);
    const j = await site.ferry(['snapshot', 'create', 'app', '--json']);
    assert.equal(j.code, 8);
    assert.equal(j.json.warnings.length, 1);
    assert.match(j.json.warnings[0].message, /post hook/);
    assert.equal((await site.json(['snapshot', 'list', 'app'])).length, 2);
    const out = join(site.dir, 'out');
    assert.equal((await site.ferry(['restore', 'app', '--snapshot', 'latest', '--target', out])).code, 0);
    assert.equal(readFileSync(join(out, 'f'), 'utf8'), 'x');
  } finally {
    site.cleanup();
  }
});

test('while a snapshot waits in its pre hook, other writers are refused busy (exit 6) and readers work', async () => {
  const site = await makeSite();
  let child: ChildProcess | undefined;
  try {
    const data = join(site.dir, 'data');
    mkdirSync(data);
    writeFileSync(join(data, 'f'), 'x');
    const started = join(site.dir, 'started');
    const release = join(site.dir, 'release');
    // (the loop also ends if the test's directory is gone, so a failed test leaves nothing running)
    const pre = `touch ${started}; while [ ! -e ${release} ] && [ -e ${started} ]; do sleep 0.05; done`;
    assert.equal((await site.ferry(['volume', 'create', 'app', '--member', data, '--pre', pre, '--hook-timeout', '2m'])).code, 0);
    child = spawnFerry(['snapshot', 'create', 'app', '--name', 'first'], site.home);
    child.stdout!.resume();
    child.stderr!.resume();
    const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));
    try {
      while (!existsSync(started)) await sleep(20);
      const busy = await site.ferry(['snapshot', 'create', 'app', '--json']);
      assertError(busy, 6, 'SITE_LOCKED', new RegExp(`pid ${child.pid}.*snapshot.create`));
      assertError(await site.ferry(['volume', 'set', 'app', '--keep-last', '3']), 6, 'SITE_LOCKED');
      assert.deepEqual(await site.json(['snapshot', 'list', 'app']), []);
      assert.equal((await site.json(['volume', 'show', 'app'])).name, 'app');
    } finally {
      writeFileSync(release, '');
    }
    assert.equal(await exited, 0);
    assert.deepEqual((await site.json(['snapshot', 'list', 'app'])).map((s: { name: string }) => s.name), ['first']);
  } finally {
    if (child && child.exitCode === null && child.signalCode === null) {
      // the hook's loop would outlive the test: stop the whole group
      child.kill('SIGKILL');
    }
    site.cleanup();
  }
});
