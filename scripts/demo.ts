// The README's demo: a site on this machine protecting a sample tree.
// Everything runs through the real CLI (./bin/ferry) in a temporary
// directory, so what you see is what an operator would type.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, appendFileSync, rmSync, symlinkSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const ferryBin = join(root, 'bin', 'ferry');
const work = mkdtempSync(join(tmpdir(), 'ferry-demo-'));
const home = join(work, 'site-a');
const data = join(work, 'data');

function ferry(...args: string[]): string {
  process.stdout.write(`\n$ ferry ${args.join(' ')}\n`);
  const out = execFileSync(ferryBin, [...args, '--home', home], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  process.stdout.write(out);
  return out;
}

function say(text: string): void {
  process.stdout.write(`\n# ${text}\n`);
}

say(`working in ${work}`);
mkdirSync(join(data, 'app', 'logs'), { recursive: true });
mkdirSync(join(data, 'app', 'db'), { recursive: true });
writeFileSync(join(data, 'app', 'config.yaml'), 'listen: 0.0.0.0:8080\nworkers: 4\n');
for (let i = 0; i < 50; i++) writeFileSync(join(data, 'app', 'logs', `day-${i}.log`), `entry ${i}\n`.repeat(2000));
writeFileSync(join(data, 'app', 'db', 'table.dat'), randomBytes(8 * 1024 * 1024));
symlinkSync('config.yaml', join(data, 'app', 'current.yaml'));

say('create a site and protect the sample tree');
ferry('init', '--name', 'site-a');
ferry('volume', 'create', 'app', '--member', data, '--keep-last', '10', '--pre', 'echo quiescing $FERRY_VOLUME', '--post', 'echo thawed');
ferry('snapshot', 'create', 'app', '--name', 'first');

say('change the tree: append to a log, rewrite 1 MiB of the database, add and remove files');
appendFileSync(join(data, 'app', 'logs', 'day-1.log'), 'a new line\n');
const db = readFileSync(join(data, 'app', 'db', 'table.dat'));
randomBytes(1024 * 1024).copy(db, 3 * 1024 * 1024);
writeFileSync(join(data, 'app', 'db', 'table.dat'), db);
writeFileSync(join(data, 'app', 'notes.txt'), 'new file\n');
rmSync(join(data, 'app', 'logs', 'day-7.log'));

say('an incremental snapshot stores only what changed');
ferry('snapshot', 'create', 'app');
ferry('snapshot', 'list', 'app');
ferry('snapshot', 'diff', 'app', 'first', 'latest');

say('restore the first snapshot elsewhere, then check every object');
ferry('restore', 'app', '--snapshot', 'first', '--target', join(work, 'restored'));
ferry('verify', 'app');
ferry('info');
say(`done; the site and data are in ${work} (remove it when finished)`);
