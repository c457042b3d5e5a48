// The README's demo: two sites on this machine. Site A protects a sample
// tree and replicates it to site B; the tree changes and an incremental
// update sends only the difference; status shows both sides. Everything
// runs through the real CLI (./bin/ferry) and real daemons in a temporary
// directory, so what you see is what an operator would type.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, appendFileSync, rmSync, symlinkSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const ferryBin = join(root, 'bin', 'ferry');
const work = mkdtempSync(join(tmpdir(), 'ferry-demo-'));
const homeA = join(work, 'site-a');
const homeB = join(work, 'site-b');
const data = join(work, 'data');
const daemons: ChildProcess[] = [];

function ferry(home: string, ...args: string[]): string {
  process.stdout.write(`\n[${home === homeA ? 'site-a' : 'site-b'}]$ ferry ${args.join(' ')}\n`);
  const out = execFileSync(ferryBin, [...args, '--home', home], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, FERRY_NO_PROGRESS: '1' } });
  process.stdout.write(out);
  return out;
}

function tryFerry(home: string, ...args: string[]): void {
  process.stdout.write(`\n[${home === homeA ? 'site-a' : 'site-b'}]$ ferry ${args.join(' ')}\n`);
  try {
    process.stdout.write(execFileSync(ferryBin, [...args, '--home', home], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }));
  } catch (err) {
    const e = err as { status: number; stderr: string };
    process.stdout.write(`${e.stderr}(exit status ${e.status})\n`);
  }
}

function quiet(home: string, ...args: string[]): string {
  return execFileSync(ferryBin, [...args, '--home', home], { encoding: 'utf8' });
}

function say(text: string): void {
  process.stdout.write(`\n# ${text}\n`);
}

async function serve(home: string): Promise<number> {
  // Its log lines are not shown (the demo prints what the commands say): not piped either, since a
  // pipe nobody reads fills up and the daemon would block writing its next line.
  const child = spawn(ferryBin, ['serve', '--home', home, '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'ignore', 'inherit'] });
  daemons.push(child);
  const info = join(home, 'daemon.json');
  for (let i = 0; i < 200 && !existsSync(info); i++) await new Promise((r) => setTimeout(r, 50));
  if (!existsSync(info)) throw new Error(`daemon for ${home} did not start`);
  return (JSON.parse(readFileSync(info, 'utf8')) as { port: number }).port;
}

async function main(): Promise<void> {
  say(`working in ${work}`);
  mkdirSync(join(data, 'app', 'logs'), { recursive: true });
  mkdirSync(join(data, 'app', 'db'), { recursive: true });
  writeFileSync(join(data, 'app', 'config.yaml'), 'listen: 0.0.0.0:8080\nworkers: 4\n');
  for (let i = 0; i < 50; i++) writeFileSync(join(data, 'app', 'logs', `day-${i}.log`), `entry ${i}\n`.repeat(2000));
  writeFileSync(join(data, 'app', 'db', 'table.dat'), randomBytes(48 * 1024 * 1024));
  symlinkSync('config.yaml', join(data, 'app', 'current.yaml'));

  say('two sites on this machine: create them and start their daemons');
  ferry(homeA, 'init', '--name', 'site-a');
  ferry(homeB, 'init', '--name', 'site-b');
  const idA = (JSON.parse(quiet(homeA, 'info', '--json')) as { id: string }).id;
  const idB = (JSON.parse(quiet(homeB, 'info', '--json')) as { id: string }).id;
  const portA = await serve(homeA);
  const portB = await serve(homeB);

  say('pair them: each side pins the other\'s site id (mutual TLS, no CA)');
  ferry(homeA, 'site', 'add', 'site-b', `https://127.0.0.1:${portB}`, '--id', idB);
  ferry(homeB, 'site', 'add', 'site-a', `https://127.0.0.1:${portA}`, '--id', idA);

  say('protect the sample tree at site-a and mirror it to site-b');
  ferry(homeA, 'volume', 'create', 'app', '--member', data, '--pre', 'echo quiescing $FERRY_VOLUME', '--post', 'echo thawed');
  ferry(homeA, 'mirror', 'create', 'app', '--to', 'site-b', '--max-delay', '1h');
  ferry(homeA, 'mirror', 'initialize', 'app', '--to', 'site-b', '--wait');
  const replica = (JSON.parse(quiet(homeB, 'volume', 'show', 'app', '--json')) as { members: Array<{ path: string }> }).members[0].path;
  say(`the replica at site-b is ${replica}`);

  say('change the tree: append to a log, rewrite 1 MiB of the database, add and remove files');
  appendFileSync(join(data, 'app', 'logs', 'day-1.log'), 'a new line\n');
  const db = readFileSync(join(data, 'app', 'db', 'table.dat'));
  randomBytes(1024 * 1024).copy(db, 20 * 1024 * 1024);
  writeFileSync(join(data, 'app', 'db', 'table.dat'), db);
  writeFileSync(join(data, 'app', 'notes.txt'), 'new file\n');
  rmSync(join(data, 'app', 'logs', 'day-7.log'));

  say('an incremental update sends only the chunks around the changes (a few MiB, not the 49 MiB volume)');
  ferry(homeA, 'mirror', 'update', 'app', '--wait');
  ferry(homeA, 'snapshot', 'diff', 'app', quiet(homeA, 'snapshot', 'list', 'app', '--json').match(/"id": "([0-9A-Z]{26})"/)![1], 'latest', '--summary');
  execFileSync('diff', ['-r', data, replica]);
  say('diff -r finds no difference between the tree and the replica');

  ferry(homeA, 'status');
  ferry(homeB, 'status');
  ferry(homeB, 'verify');

  say('disaster: site-a is lost for a while. Fail over: site-b promotes its replica (site-a is told, if it can be reached)');
  ferry(homeB, 'failover', 'app', '--dry-run');
  ferry(homeB, 'failover', 'app');
  say('the application now runs at site-b and writes there; meanwhile a stray write lands on site-a too');
  writeFileSync(join(replica, 'app', 'written-at-site-b.txt'), 'orders taken during the outage\n');
  appendFileSync(join(replica, 'app', 'logs', 'day-2.log'), 'a line written at site-b\n');
  writeFileSync(join(data, 'app', 'stray-write-at-site-a.txt'), 'must not be lost silently\n');
  say('site-a\'s own update is refused: site-b took over (ferry never picks a winner by itself)');
  tryFerry(homeA, 'mirror', 'update', 'app', '--wait');

  say('site-a is back: fail back. It keeps its own writes in a snapshot, becomes site-b\'s secondary, and receives only the differences');
  ferry(homeA, 'failback', 'app', '--dry-run');
  ferry(homeA, 'failback', 'app');
  execFileSync('diff', ['-r', replica, data]);
  say('site-a now matches site-b exactly; its stray write is kept in the failback-kept-* snapshot:');
  ferry(homeA, 'snapshot', 'list', 'app');
  const kept = (JSON.parse(quiet(homeA, 'snapshot', 'list', 'app', '--json')) as Array<{ name: string | null }>).find((x) => x.name?.startsWith('failback-kept-'))!.name!;
  ferry(homeA, 'restore', 'app', '--snapshot', kept, '--path', 'app/stray-write-at-site-a.txt', '--target', join(work, 'recovered.txt'));
  process.stdout.write(readFileSync(join(work, 'recovered.txt'), 'utf8'));
  ferry(homeB, 'status');
  say(`done; sites and data are in ${work} (remove it when finished)`);
}

main()
  .catch((err) => {
    process.stderr.write(`demo failed: ${(err as Error).message}\n`);
    process.exitCode = 1;
  })
  .finally(() => {
    for (const d of daemons) d.kill('SIGTERM');
  });
