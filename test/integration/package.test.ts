// The npm package as an operator installs it: `npm pack` (whose prepack
// builds dist/), then `npm install -g ferry-*.tgz --prefix TMP` with the Node
// 24 of node_modules first on the PATH. The installed ferry runs with
// NODE_OPTIONS=--no-experimental-strip-types, so any TypeScript it tried to
// execute would fail: --version, init, completion bash, a snapshot (chunk
// workers) restored exactly, the man page where `man` finds it, and two
// installed daemons mirroring a volume (the verify and apply worker pools)
// while one serves the dashboard page. With an older Node first on the PATH,
// or none, `ferry` says in one line which Node it needs and exits 7.
// One pack, one install: the rest runs on that install.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, symlinkSync } from 'node:fs';
import http2 from 'node:http2';
import { delimiter, dirname, join } from 'node:path';
import { assertTreesEqual, ROOT, tempDir, writeRandomFile } from '../helpers.ts';
import { startDaemon, stopDaemon, type Daemon } from '../harness/index.ts';

const tmp = tempDir('ferry-package-');
const NODE_DIR = dirname(realpathSync(process.execPath));
const daemons: Daemon[] = [];
after(async () => {
  for (const d of daemons) if (d.proc.exitCode === null && d.proc.signalCode === null) await stopDaemon(d.proc, 'SIGKILL');
  tmp.cleanup();
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], o: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: o.cwd ?? tmp.path, env: o.env ?? installedEnv(), timeout: o.timeoutMs ?? 120_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** What the installed ferry runs with: Node 24 first on the PATH, no type stripping at all, its own HOME. */
function installedEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: [NODE_DIR, '/usr/local/bin', '/usr/bin', '/bin'].join(delimiter),
    HOME: tmp.path,
    NODE_OPTIONS: '--no-experimental-strip-types',
    FERRY_NO_PROGRESS: '1',
    ...extra,
  };
}

const prefix = join(tmp.path, 'prefix');
const FERRY = join(prefix, 'bin', 'ferry');
let packed: { filename: string; files: Array<{ path: string }> } | undefined;

test('npm pack builds the package: JavaScript, the dashboard page, the man page and the packaging files, no TypeScript', async () => {
  const npmEnv = { ...process.env, PATH: [NODE_DIR, process.env.PATH ?? ''].join(delimiter) } as Record<string, string>;
  const r = await run('npm', ['pack', '--json', '--pack-destination', tmp.path], { cwd: ROOT, env: npmEnv, timeoutMs: 300_000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const json = JSON.parse(r.stdout.slice(r.stdout.indexOf('[\n'))) as Array<{ filename: string; files: Array<{ path: string }> }>;
  packed = json[0];
  const files = packed.files.map((f) => f.path);
  for (const f of ['bin/ferry', 'dist/cli/main.js', 'dist/snapshot/chunk-worker.js', 'dist/app/dashboard-page.html', 'dist/man/ferry.1', 'packaging/systemd/ferry.service', 'packaging/prometheus/ferry-rules.yml', 'packaging/grafana/ferry-dashboard.json', 'packaging/schema/ferry.schema.json', 'README.md']) {
    assert.ok(files.includes(f), `the package has ${f}`);
  }
  assert.deepEqual(files.filter((f) => f.endsWith('.ts') || f.startsWith('src/')), [], 'the package ships no TypeScript');
});

test('npm install -g of the tarball gives a ferry that runs no TypeScript', async (t) => {
  assert.ok(packed, 'packed');
  const npmEnv = { ...process.env, PATH: [NODE_DIR, process.env.PATH ?? ''].join(delimiter) } as Record<string, string>;
  const inst = await run('npm', ['install', '-g', join(tmp.path, packed.filename), '--prefix', prefix, '--no-audit', '--no-fund', '--prefer-offline'], { env: npmEnv, timeoutMs: 300_000 });
  assert.equal(inst.code, 0, inst.stdout + inst.stderr);
  const installed = join(prefix, 'lib', 'node_modules', 'ferry');
  const ts = spawnSync('find', [installed, '-name', '*.ts', '-not', '-name', '*.d.ts', '-not', '-path', `${installed}/node_modules/*`], { encoding: 'utf8' });
  assert.equal(ts.stdout, '', 'no TypeScript is installed');

  await t.test('--version, init, completion', async () => {
    const v = await run(FERRY, ['--version']);
    assert.equal(v.code, 0, v.stderr);
    assert.equal(v.stdout.trim(), JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version);
    const init = await run(FERRY, ['init', '--name', 'pkg-a', '--home', join(tmp.path, 'a')]);
    assert.equal(init.code, 0, init.stderr);
    assert.match(init.stdout, /created site pkg-a/);
    const bash = await run(FERRY, ['completion', 'bash']);
    assert.equal(bash.code, 0, bash.stderr);
    const parsed = spawnSync('bash', ['-n'], { input: bash.stdout });
    assert.equal(parsed.status, 0, String(parsed.stderr));
  });

  await t.test('the man page is where man looks, and is what `ferry help --man` prints', async () => {
    const man = await run(FERRY, ['help', '--man']);
    assert.equal(man.code, 0, man.stderr);
    const file = join(prefix, 'share', 'man', 'man1', 'ferry.1');
    assert.ok(existsSync(file), `${file} is linked by npm`);
    assert.equal(readFileSync(file, 'utf8'), man.stdout);
  });

  await t.test('a snapshot (chunk workers) restores exactly', async () => {
    const home = join(tmp.path, 'a');
    const data = join(tmp.path, 'data');
    mkdirSync(join(data, 'sub'), { recursive: true });
    for (let i = 0; i < 6; i++) writeRandomFile(join(data, i % 2 ? 'sub' : '', `f${i}`), 3000 + i * 70_000);
    for (const args of [['volume', 'create', 'app', '--member', data], ['snapshot', 'create', 'app'], ['verify'], ['restore', 'app', '--snapshot', 'latest', '--target', join(tmp.path, 'restored')]]) {
      const r = await run(FERRY, [...args, '--home', home]);
      assert.equal(r.code, 0, `ferry ${args.join(' ')}: ${r.stdout}${r.stderr}`);
    }
    assertTreesEqual(join(tmp.path, 'restored'), data);
  });

  await t.test('two installed daemons mirror the volume (verify and apply workers), and one serves the dashboard page', async () => {
    const a = join(tmp.path, 'a');
    const b = join(tmp.path, 'b');
    assert.equal((await run(FERRY, ['init', '--name', 'pkg-b', '--home', b])).code, 0);
    const start = async (home: string, name: string) => {
      let out = '';
      const d = await startDaemon(home, { name, bin: FERRY, env: installedEnv(), onOutput: (s) => (out += s), output: () => out });
      daemons.push(d);
      return d;
    };
    const [da, db] = [await start(a, 'pkg-a'), await start(b, 'pkg-b')];
    const id = async (home: string) => JSON.parse((await run(FERRY, ['info', '--json', '--home', home])).stdout).id as string;
    assert.equal((await run(FERRY, ['site', 'add', 'pkg-b', `https://127.0.0.1:${db.info.port}`, '--id', await id(b), '--home', a])).code, 0);
    assert.equal((await run(FERRY, ['site', 'add', 'pkg-a', `https://127.0.0.1:${da.info.port}`, '--id', await id(a), '--home', b])).code, 0);
    assert.equal((await run(FERRY, ['mirror', 'create', 'app', '--to', 'pkg-b', '--home', a])).code, 0);
    const init = await run(FERRY, ['mirror', 'initialize', 'app', '--to', 'pkg-b', '--wait', '--home', a]);
    assert.equal(init.code, 0, init.stdout + init.stderr);
    const replicas = join(b, 'replicas', 'app');
    assertTreesEqual(join(replicas, readdirSync(replicas)[0]), join(tmp.path, 'data'));

    const page = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const session = http2.connect(`https://127.0.0.1:${da.info.port}`, { rejectUnauthorized: false });
      session.on('error', reject);
      const req = session.request({ ':method': 'GET', ':path': '/ui/' });
      let status = 0;
      let body = '';
      req.setEncoding('utf8');
      req.on('response', (h) => (status = Number(h[':status'])));
      req.on('data', (d: string) => (body += d));
      req.on('error', reject);
      req.on('end', () => {
        session.close();
        resolve({ status, body });
      });
      req.end();
    });
    assert.equal(page.status, 200, page.body);
    assert.match(page.body, /<html/i);
    for (const d of [da, db]) assert.equal((await stopDaemon(d.proc)).code, 0);
  });

  await t.test('with an older Node first on the PATH, or none, ferry says which Node it needs, in one line, and exits 7', async (t2) => {
    // No node at all: a PATH with only what the launcher itself needs.
    const tools = join(tmp.path, 'tools');
    mkdirSync(tools);
    for (const x of ['readlink', 'dirname']) symlinkSync(spawnSync('sh', ['-c', `command -v ${x}`], { encoding: 'utf8' }).stdout.trim(), join(tools, x));
    const none = await run(FERRY, ['--version'], { env: installedEnv({ PATH: tools }) });
    assert.equal(none.code, 7);
    assert.equal(none.stdout, '');
    assert.match(none.stderr, /^ferry: needs Node\.js 24 or newer, and found no 'node' to run; install Node\.js 24 or newer \(https:\/\/nodejs\.org\/en\/download.*nvm install 24\) and put it first on the PATH\n$/);
    // An older Node (this machine's system Node, wherever `which -a node` finds one).
    const older = spawnSync('sh', ['-c', 'which -a node'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).find((p) => {
      const v = spawnSync(p, ['--version'], { encoding: 'utf8' }).stdout.trim();
      return /^v\d+\./.test(v) && Number(v.slice(1).split('.')[0]) < 24;
    });
    if (!older) return void t2.skip('no Node older than 24 on this machine');
    const version = spawnSync(older, ['--version'], { encoding: 'utf8' }).stdout.trim();
    const r = await run(FERRY, ['init', '--home', join(tmp.path, 'old')], { env: installedEnv({ PATH: [dirname(older), '/usr/bin', '/bin'].join(delimiter) }) });
    assert.equal(r.code, 7, r.stderr);
    assert.equal(r.stderr.split('\n').length, 2, `one line: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`^ferry: needs Node\\.js 24 or newer, but \\S+ is ${version.replace(/\./g, '\\.')}; install Node\\.js 24`));
    assert.equal(existsSync(join(tmp.path, 'old')), false, 'nothing ran');
  });
});

// The clone's launcher still runs the sources (never dist/, even with a build there): with type
// stripping turned off it must fail on a .ts file.
test('./bin/ferry in the repository runs src/, not the build', async () => {
  assert.ok(existsSync(join(ROOT, 'dist', 'cli', 'main.js')), 'npm pack left a build in dist/');
  const ok = await run(join(ROOT, 'bin', 'ferry'), ['--version'], { env: { ...process.env } as Record<string, string> });
  assert.equal(ok.code, 0, ok.stderr);
  const r = await run(join(ROOT, 'bin', 'ferry'), ['--version'], { env: { ...process.env, NODE_OPTIONS: '--no-experimental-strip-types' } as Record<string, string> });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /src\/cli\/main\.ts/);
});
