// systemd: the shipped unit (packaging/systemd/ferry.service) has the
// hardening and the readiness the operator guide promises, its ExecStart
// parses with the real program and `systemd-analyze verify` accepts it; and a
// real `ferry serve` with NOTIFY_SOCKET set sends READY=1 to a real Unix
// datagram socket only once it listens (the receiver checks daemon.json, the
// local socket and the peer port the moment READY=1 arrives, before it lets
// systemd-notify's barrier go), STOPPING=1 on SIGTERM, and no hook it runs
// inherits NOTIFY_SOCKET. The receiver is a small Python program (Node has no
// Unix datagram sockets).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { FERRY_BIN, ROOT, runFerry, tempDir } from '../helpers.ts';
import { buildProgram } from '../../src/cli/program.ts';
import { giveUp, startDaemon, stopDaemon, waitFor } from '../harness/index.ts';

const UNIT = join(ROOT, 'packaging', 'systemd', 'ferry.service');
const tmp = tempDir('ferry-systemd-');
const procs: ChildProcess[] = [];
after(() => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  tmp.cleanup();
});

/** The unit's settings: section -> key -> values (a key may repeat). */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const out = new Map<string, Map<string, string[]>>();
  let section: Map<string, string[]> | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const s = /^\[(\w+)\]$/.exec(line);
    if (s) {
      out.set(s[1], (section = new Map()));
      continue;
    }
    const kv = /^([A-Za-z]+)=(.*)$/.exec(line);
    assert.ok(kv && section, `not a setting: ${raw}`);
    section.set(kv[1], [...(section.get(kv[1]) ?? []), kv[2]]);
  }
  return out;
}

test('the shipped unit: notify readiness, reload by SIGHUP, hardening, restart policy; ExecStart parses', () => {
  const unit = parseUnit(readFileSync(UNIT, 'utf8'));
  const svc = unit.get('Service')!;
  const one = (k: string) => {
    const v = svc.get(k);
    assert.ok(v && v.length === 1, `[Service] ${k} is set once`);
    return v[0];
  };
  assert.equal(one('Type'), 'notify');
  assert.equal(one('NotifyAccess'), 'all');
  assert.equal(one('ExecReload'), '/bin/kill -HUP $MAINPID');
  assert.equal(one('NoNewPrivileges'), 'yes');
  assert.equal(one('ProtectSystem'), 'strict');
  assert.equal(one('PrivateTmp'), 'yes');
  assert.equal(one('Restart'), 'on-failure');
  assert.equal(one('RestartPreventExitStatus'), '2');
  assert.equal(one('StateDirectory'), 'ferry');
  const home = svc.get('Environment')!.find((e) => e.startsWith('FERRY_HOME='))!.slice('FERRY_HOME='.length);
  assert.equal(home, '/var/lib/ferry');
  assert.ok(one('ReadWritePaths').split(/\s+/).includes(home), 'the home is writable');
  for (const cap of ['CAP_CHOWN', 'CAP_FOWNER', 'CAP_DAC_READ_SEARCH', 'CAP_DAC_OVERRIDE', 'CAP_MKNOD', 'CAP_SETFCAP']) assert.ok(one('CapabilityBoundingSet').split(/\s+/).includes(cap), cap);
  for (const k of ['MemoryDenyWriteExecute', 'RestrictSUIDSGID', 'PrivateDevices']) assert.equal(svc.get(k), undefined, `${k} would break ferry`);
  assert.equal(unit.get('Install')!.get('WantedBy')![0], 'multi-user.target');
  // ExecStart is a real ferry command line.
  const [bin, ...args] = one('ExecStart').split(/\s+/);
  assert.equal(bin, '/usr/local/bin/ferry');
  const p = buildProgram();
  p.commands.find((c) => c.name() === 'serve')!.action(() => {});
  p.parse(args, { from: 'user' });
  // The package ships it.
  assert.ok((JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).files as string[]).includes('packaging'));
});

test('systemd-analyze verify accepts the unit', (t) => {
  if (spawnSync('sh', ['-c', 'command -v systemd-analyze']).status !== 0) return void t.skip('systemd-analyze is not installed');
  // ExecStart must name an executable that exists: this checkout's launcher, as an installed one would be.
  const dir = join(tmp.path, 'unit');
  mkdirSync(dir);
  writeFileSync(join(dir, 'ferry.service'), readFileSync(UNIT, 'utf8').replace('/usr/local/bin/ferry', FERRY_BIN));
  const r = spawnSync('systemd-analyze', ['verify', '--man=no', join(dir, 'ferry.service')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.doesNotMatch(r.stderr, /ferry\.service:\d+: (Unknown|Invalid|Failed)/, r.stderr);
});

const RECEIVER = `
import json, os, socket, sys
path, home = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
print(json.dumps({"bound": path}), flush=True)
while True:
    msg, fds, flags, addr = socket.recv_fds(s, 65536, 16)
    text = msg.decode()
    seen = {"message": text}
    if "READY=1" in text.split("\\n"):
        # What holds the moment READY=1 arrives, before the barrier below lets systemd-notify exit.
        try:
            info = json.load(open(os.path.join(home, "daemon.json")))
            seen["daemonJson"] = True
            seen["localSocket"] = os.path.exists(info["socket"])
            c = socket.create_connection(("127.0.0.1", info["port"]), timeout=5)
            c.close()
            seen["peerPort"] = True
        except Exception as e:
            seen["error"] = repr(e)
    for fd in fds:
        os.close(fd)
    print(json.dumps(seen), flush=True)
`;

test('ferry serve tells NOTIFY_SOCKET READY=1 once it listens, STOPPING=1 on SIGTERM; hooks do not inherit it', async (t) => {
  const python = ['/usr/bin/python3', 'python3'].find((p) => spawnSync(p, ['-c', 'import socket; socket.recv_fds'], { stdio: 'ignore' }).status === 0);
  if (!python) return void t.skip('no python3 (3.9 or newer) to receive datagrams');
  if (spawnSync('sh', ['-c', 'command -v systemd-notify']).status !== 0) return void t.skip('systemd-notify is not installed (apt-get install systemd)');
  const home = join(tmp.path, 'home');
  const data = join(tmp.path, 'data');
  mkdirSync(data);
  writeFileSync(join(data, 'f'), 'x');
  const envFile = join(tmp.path, 'hook-env');
  assert.equal((await runFerry(['init', '--name', 'notify'], { home })).code, 0);
  const vol = await runFerry(['volume', 'create', 'app', '--member', data, '--pre', `env > ${envFile}`], { home });
  assert.equal(vol.code, 0, vol.stderr);

  const socketPath = join(tmp.path, 'notify.sock');
  writeFileSync(join(tmp.path, 'receiver.py'), RECEIVER);
  const receiver = spawn(python, [join(tmp.path, 'receiver.py'), socketPath, home], { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(receiver);
  let errors = '';
  receiver.stderr!.on('data', (d) => (errors += d));
  const messages: Array<Record<string, unknown>> = [];
  createInterface({ input: receiver.stdout! }).on('line', (l) => messages.push(JSON.parse(l)));
  await waitFor('the receiver to bind', () => {
    if (receiver.exitCode !== null) throw giveUp(`receiver exited: ${errors}`);
    return messages.some((m) => m.bound);
  });

  let out = '';
  const d = await startDaemon(home, { name: 'notify', env: { NOTIFY_SOCKET: socketPath }, onOutput: (s) => (out += s), output: () => out });
  procs.push(d.proc);
  const ready = await waitFor('READY=1', () => messages.find((m) => typeof m.message === 'string' && m.message.split('\n').includes('READY=1')), 20_000);
  assert.equal(ready.error, undefined, String(ready.error));
  assert.deepEqual([ready.daemonJson, ready.localSocket, ready.peerPort], [true, true, true], 'READY=1 came once the daemon listened');
  assert.match(String(ready.message), new RegExp(`STATUS=listening on https://127\\.0\\.0\\.1:${d.info.port}`));
  assert.doesNotMatch(out, /could not tell systemd/);

  // A hook the daemon runs does not see NOTIFY_SOCKET (it cannot speak for the daemon).
  const snap = await runFerry(['snapshot', 'create', 'app'], { home });
  assert.equal(snap.code, 0, snap.stderr);
  assert.ok(existsSync(envFile));
  assert.doesNotMatch(readFileSync(envFile, 'utf8'), /NOTIFY_SOCKET/);

  const stopped = await stopDaemon(d.proc);
  assert.equal(stopped.code, 0, out);
  await waitFor('STOPPING=1', () => messages.some((m) => typeof m.message === 'string' && m.message.split('\n').includes('STOPPING=1')), 20_000);
});
