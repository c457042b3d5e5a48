// ferry's command line: reads the global options, runs the command, and turns
// errors into exit codes. The command groups live in commands/ (program.ts
// wires them all); a command run from the shell loads only its own group
// (COMMAND_GROUPS), so `ferry status` against a running daemon does not load
// the catalog, the store or the snapshot code (docs/operator-guide.md).
import { CommanderError, type Command } from 'commander';
import { asFerryError, FerryError } from '../core/errors.ts';
import { reportError, type GlobalOptions } from './output.ts';
import { baseProgram, finishProgram } from './base.ts';
import { installTestKnobs, testKnobsFromEnv } from '../core/test-knobs.ts';

type Group = { register(program: Command, g: () => GlobalOptions): void };

/**
 * The group that registers each top-level command (test/unit/cli/command-groups.test.ts checks this
 * against the whole program). `help`, `completion`, a bare `ferry` and anything not listed here load
 * the whole program.
 */
export const COMMAND_GROUPS: Record<string, () => Promise<Group>> = {
  init: () => import('./commands/site.ts'),
  info: () => import('./commands/site.ts'),
  volume: () => import('./commands/volume.ts'),
  snapshot: () => import('./commands/snapshot.ts'),
  restore: () => import('./commands/restore.ts'),
  verify: () => import('./commands/restore.ts'),
  gc: () => import('./commands/restore.ts'),
  serve: () => import('./commands/serve.ts'),
  site: () => import('./commands/peers.ts'),
  mirror: () => import('./commands/mirror.ts'),
  status: () => import('./commands/status.ts'),
  failover: () => import('./commands/dr.ts'),
  failback: () => import('./commands/dr.ts'),
  migrate: () => import('./commands/dr.ts'),
  link: () => import('./commands/link.ts'),
  events: () => import('./commands/events.ts'),
  config: () => import('./commands/config.ts'),
  dashboard: () => import('./commands/dashboard.ts'),
};

/** The command word of argv (after the global options), if any. */
export function commandWord(argv: string[]): string | undefined {
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--home') i++;
    else if (a === '--json' || a.startsWith('--home=')) continue;
    else return a.startsWith('-') ? undefined : a;
  }
  return undefined;
}

/** The program for argv: the command's own group when it is known, else the whole program. */
export async function programFor(argv: string[]): Promise<Command> {
  const word = commandWord(argv);
  const load = word === undefined ? undefined : COMMAND_GROUPS[word];
  if (!load) {
    const args = argv.slice(2);
    if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) return baseProgram();
    return (await import('./program.ts')).buildProgram();
  }
  const program = baseProgram();
  (await load()).register(program, () => program.opts<GlobalOptions>());
  return finishProgram(program);
}

export async function main(argv: string[]): Promise<number> {
  const program = await programFor(argv);
  // Options given after a subcommand land on it; fold them into the globals.
  program.hook('preAction', (_root, action) => {
    const local = action.opts<GlobalOptions>();
    if (local.home) program.setOptionValue('home', local.home);
    if (local.json) program.setOptionValue('json', true);
  });
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0;
      return 2;
    }
    return reportError(err, Boolean(program.opts<GlobalOptions>().json) || argv.includes('--json'));
  }
}

/**
 * A command whose work waits on something that can never come (a bug) ends when the event loop
 * empties, and Node would exit 0 saying nothing: a script or an operator takes that for success.
 * Until `done` settles (or the returned function is called), an exit of 0 becomes INTERNAL, said.
 */
export function failUnfinished(done: Promise<unknown>): () => void {
  let finished = false;
  const finish = () => {
    finished = true;
  };
  done.then(finish, finish);
  process.on('exit', (code) => {
    if (finished || code !== 0) return;
    process.exitCode = reportError(new FerryError('INTERNAL', 'the command ended before its work did: something it waited on never came (a bug in ferry). Nothing was reported done: take it as failed, and run it again'), false);
  });
  return finish;
}

if (import.meta.main) {
  // The test knobs (core/test-knobs.ts): read from the environment here, once, and nowhere else.
  installTestKnobs(testKnobsFromEnv(process.env));
  let finish = () => {};
  // A reader that goes away (`ferry ... | head`) is not an error.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    finish();
    process.exit(process.exitCode ?? 0);
  });
  process.on('unhandledRejection', (err) => {
    process.exitCode = reportError(asFerryError(err, { prefix: 'unhandled: ' }), false);
  });
  const done = main(process.argv).then((code) => {
    process.exitCode = code;
  });
  finish = failUnfinished(done);
}
