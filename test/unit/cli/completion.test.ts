// Shell completion, the man page and the examples, all generated from the
// commander program: the bash script is driven as bash drives it
// (COMP_WORDS/COMP_CWORD, then COMPREPLY) and must offer exactly the
// program's subcommands and options; the zsh and fish scripts parse, and
// their tables (zsh) and completions (fish `complete -C`) match too; the man
// page renders with groff without a warning and documents every command; every
// example parses with the real program. Shells and groff not installed are
// skipped with a message (scripts/ensure-test-tools.sh installs them).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { buildProgram, commandPath } from '../../../src/cli/program.ts';
import { allCommands, completionScript, describeProgram, type CliCommand } from '../../../src/cli/completion.ts';
import { manPage } from '../../../src/cli/man.ts';
import { EXAMPLES } from '../../../src/cli/examples.ts';
import { FERRY_VERSION } from '../../../src/site/site.ts';
import { runFerry, tempDir } from '../../helpers.ts';

const tmp = tempDir('ferry-completion-');
process.on('exit', tmp.cleanup);
const program = buildProgram();
const root = describeProgram(program);

function has(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

function script(shell: 'bash' | 'zsh' | 'fish'): string {
  const file = join(tmp.path, `ferry.${shell}`);
  writeFileSync(file, completionScript(shell, root, FERRY_VERSION));
  return file;
}

function find(path: string[]): Command {
  let c: Command = program;
  for (const w of path) c = c.commands.find((x) => x.name() === w)!;
  assert.ok(c, `no command ${path.join(' ')}`);
  return c;
}

const subcommands = (path: string[]) => find(path).commands.map((c) => c.name()).sort();
const longOptions = (path: string[]) => [...find(path).options.map((o) => o.long!), '--help'].sort();

const sq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** What bash offers for `words` (the last one is the word being completed). */
function bashComplete(words: string[], cwd = tmp.path): string[] {
  const r = spawnSync('bash', ['--norc', '--noprofile', '-c', `source ${sq(script('bash'))}; COMP_WORDS=(${words.map(sq).join(' ')}); COMP_CWORD=${words.length - 1}; _ferry; printf '%s\\n' "\${COMPREPLY[@]}"`], { cwd, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.split('\n').filter(Boolean).sort();
}

test('bash: the script parses and completes subcommands, options and values as the program defines them', { skip: !has('bash') && 'bash is not installed' }, () => {
  const n = spawnSync('bash', ['-n', script('bash')], { encoding: 'utf8' });
  assert.equal(n.status, 0, n.stderr);
  assert.deepEqual(bashComplete(['ferry', '']), subcommands([]));
  assert.deepEqual(bashComplete(['ferry', 'mir']), ['mirror']);
  assert.deepEqual(bashComplete(['ferry', 'mirror', '']), subcommands(['mirror']));
  assert.deepEqual(bashComplete(['ferry', 'mirror', 'update', 'app', '--']), longOptions(['mirror', 'update']));
  assert.deepEqual(bashComplete(['ferry', 'snapshot', 'create', 'app', '--n']), ['--name']);
  // A global option's value is skipped, wherever it stands.
  assert.deepEqual(bashComplete(['ferry', '--home', '/tmp/x', 'vol']), ['volume']);
  assert.deepEqual(bashComplete(['ferry', 'volume', '--json', 'cr']), ['create']);
  // Values: files for --config, directories for --home, the choices of an argument.
  mkdirSync(join(tmp.path, 'sites', 'a-dir'), { recursive: true });
  writeFileSync(join(tmp.path, 'sites', 'a-file.yaml'), 'version: 1\n');
  assert.deepEqual(bashComplete(['ferry', 'serve', '--config', 'sites/a-f']), ['sites/a-file.yaml']);
  assert.deepEqual(bashComplete(['ferry', '--home', 'sites/a']), ['sites/a-dir']);
  assert.deepEqual(bashComplete(['ferry', 'completion', '']), ['bash', 'fish', 'zsh']);
  assert.deepEqual(bashComplete(['ferry', 'help', 'mirror', '']), subcommands(['mirror']));
  assert.deepEqual(bashComplete(['ferry', 'help', '--']), longOptions(['help']));
  // Every command path: its subcommands, or its options.
  for (const c of allCommands(root)) {
    const words = ['ferry', ...c.path];
    if (c.commands.length) assert.deepEqual(bashComplete([...words, '']), subcommands(c.path), words.join(' '));
    assert.deepEqual(bashComplete([...words, '--']), longOptions(c.path), `${words.join(' ')} --`);
  }
});

test('zsh: the script parses, and its tables hold the program\'s subcommands and options', { skip: !has('zsh') && 'zsh is not installed (apt-get install zsh)' }, () => {
  const file = script('zsh');
  const n = spawnSync('zsh', ['-n', file], { encoding: 'utf8' });
  assert.equal(n.status, 0, n.stderr);
  const ask = (fn: string, path: string[]) => {
    const r = spawnSync('zsh', ['-f', '-c', `compdef() { :; }; source ${sq(file)}; ${fn} ${sq(['ferry', ...path].join(' '))}; print -rl -- \${reply%%:*}`], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.split('\n').filter(Boolean).sort();
  };
  for (const c of allCommands(root)) {
    if (c.commands.length) assert.deepEqual(ask('_ferry_commands', c.path), subcommands(c.path), c.path.join(' '));
    assert.deepEqual(ask('_ferry_options', c.path).filter((o) => o.startsWith('--')), longOptions(c.path), c.path.join(' '));
  }
});

test('fish: the script parses, and `complete -C` offers the program\'s subcommands and options', { skip: !has('fish') && 'fish is not installed (apt-get install fish)' }, () => {
  const file = script('fish');
  const n = spawnSync('fish', ['--no-config', '-n', file], { encoding: 'utf8' });
  assert.equal(n.status, 0, n.stderr);
  const complete = (line: string) => {
    const r = spawnSync('fish', ['--no-config', '-c', `source ${sq(file)}; complete -C ${sq(line)}`], { encoding: 'utf8', cwd: tmp.path });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.split('\n').filter(Boolean).map((l) => l.split('\t')[0]).sort();
  };
  assert.deepEqual(complete('ferry '), subcommands([]));
  assert.deepEqual(complete('ferry mirror '), subcommands(['mirror']));
  assert.deepEqual(complete('ferry --home /x mirror up'), ['update']);
  assert.deepEqual(complete('ferry mirror update app --').filter((o) => o.startsWith('--')), longOptions(['mirror', 'update']));
  assert.deepEqual(complete('ferry completion '), ['bash', 'fish', 'zsh']);
});

test('the man page documents every command and option, and renders without a warning', (t) => {
  const page = manPage(root, FERRY_VERSION);
  for (const c of allCommands(root)) {
    if (c.path.length === 0 || c.commands.length) continue;
    assert.ok(page.includes(`.SS "ferry ${c.path.join(' ')}`), `no section for ferry ${c.path.join(' ')}`);
  }
  for (const o of root.options) assert.ok(page.includes(o.long.replace(/-/g, '\\-')), `global option ${o.long}`);
  if (!has('groff')) return void t.skip('groff is not installed (apt-get install groff-base)');
  const r = spawnSync('groff', ['-man', '-Tutf8', '-ww'], { input: page, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '', 'groff warned');
  const text = r.stdout.replace(/.\x08/g, '');
  for (const words of ['ferry mirror update', 'EXIT STATUS', 'FERRY_CONFIG', 'NOTIFY_SOCKET', 'Example:']) assert.ok(text.includes(words), `the rendered page has ${words}`);
});

/** Parse `argv` with the real program, every action a no-op: what commander refuses throws. */
function parses(argv: string[]): void {
  const p = buildProgram();
  for (const c of [p, ...p.commands.flatMap(function all(x: Command): Command[] {
    return [x, ...x.commands.flatMap(all)];
  })]) {
    if (c.commands.length === 0) c.action(() => {});
    c.configureOutput({ writeErr: () => {}, writeOut: () => {} });
  }
  p.parse(argv, { from: 'user' });
}

/** A command line split as sh does, for the examples (single quotes only). */
function words(line: string): string[] {
  return [...line.matchAll(/'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2]);
}

test('every example names a command, parses with the real program, and shows in its --help', () => {
  const paths = new Set(allCommands(root).map((c: CliCommand) => c.path.join(' ')));
  for (const [path, examples] of Object.entries(EXAMPLES)) {
    assert.ok(paths.has(path), `EXAMPLES names ${JSON.stringify(path)}, which is not a command`);
    const cmd = find(path ? path.split(' ') : []);
    assert.equal(commandPath(cmd), path);
    let help = '';
    cmd.configureOutput({ writeOut: (s) => (help += s) });
    cmd.outputHelp();
    assert.match(help, /\nExamples?:\n/, `ferry ${path} --help shows its examples`);
    for (const e of examples) {
      const argv = words(e.cmd.split(/\s+[|>]\s+/)[0]);
      assert.equal(argv[0], 'ferry', e.cmd);
      try {
        parses(argv.slice(1));
      } catch (err) {
        assert.ok(!(err instanceof CommanderError), `example ${e.cmd}: ${(err as Error).message}`);
        throw err;
      }
      assert.ok(help.includes(e.cmd), `ferry ${path} --help shows ${e.cmd}`);
    }
  }
  // The main commands have one.
  for (const p of ['init', 'volume create', 'snapshot create', 'restore', 'serve', 'mirror create', 'mirror update', 'status', 'failover', 'failback', 'config apply']) assert.ok(EXAMPLES[p]?.length, `${p} has an example`);
});

test('the CLI: `ferry completion SHELL`, `ferry help COMMAND`, `ferry help --man`', async () => {
  const bash = await runFerry(['completion', 'bash']);
  assert.equal(bash.code, 0, bash.stderr);
  assert.equal(bash.stdout, completionScript('bash', root, FERRY_VERSION));
  const bad = await runFerry(['completion', 'tcsh']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /bash, zsh, fish/);
  const help = await runFerry(['help', 'mirror', 'update']);
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /^Usage: ferry mirror update \[options\] <volume>/);
  assert.match(help.stdout, /Example:\n {2}\$ ferry mirror update app --snapshot nightly --wait/);
  const none = await runFerry(['help', 'mirror', 'nosuch']);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /no command "mirror nosuch"/);
  const man = await runFerry(['help', '--man']);
  assert.equal(man.code, 0, man.stderr);
  assert.equal(man.stdout, manPage(root, FERRY_VERSION));
});
