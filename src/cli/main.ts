// ferry's command line. Each command group lives in commands/; this file
// wires them, reads the global options, and turns errors into exit codes.
import { Command, CommanderError } from 'commander';
import { asFerryError } from '../core/errors.ts';
import { FERRY_VERSION } from '../site/site.ts';
import { reportError, type GlobalOptions } from './output.ts';
import * as siteCommands from './commands/site.ts';
import * as volumeCommands from './commands/volume.ts';
import * as snapshotCommands from './commands/snapshot.ts';
import * as restoreCommands from './commands/restore.ts';
import * as serveCommands from './commands/serve.ts';
import * as peerCommands from './commands/peers.ts';
import * as mirrorCommands from './commands/mirror.ts';
import * as statusCommands from './commands/status.ts';
import * as drCommands from './commands/dr.ts';
import * as linkCommands from './commands/link.ts';
import * as eventCommands from './commands/events.ts';
import * as configCommands from './commands/config.ts';
import * as dashboardCommands from './commands/dashboard.ts';
import * as completionCommands from './commands/completion.ts';
import { EXAMPLES, examplesHelpText } from './examples.ts';

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('ferry')
    .description('snapshot replication and disaster recovery for directory trees and block images')
    .version(FERRY_VERSION)
    .option('--home <dir>', 'site home directory (default: $FERRY_HOME or ~/.ferry)')
    .option('--json', 'print one JSON document instead of text')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  // Global options may come before or after the subcommand.
  program.enablePositionalOptions(false);
  const g = (): GlobalOptions => program.opts<GlobalOptions>();
  siteCommands.register(program, g);
  volumeCommands.register(program, g);
  snapshotCommands.register(program, g);
  restoreCommands.register(program, g);
  serveCommands.register(program, g);
  peerCommands.register(program, g);
  mirrorCommands.register(program, g);
  statusCommands.register(program, g);
  drCommands.register(program, g);
  linkCommands.register(program, g);
  eventCommands.register(program, g);
  configCommands.register(program, g);
  dashboardCommands.register(program, g);
  completionCommands.register(program);
  for (const c of allCommands(program)) {
    c.exitOverride();
    if (c !== program) c.option('--home <dir>', 'site home directory').option('--json', 'JSON output');
    const examples = EXAMPLES[commandPath(c)];
    if (examples) c.addHelpText('after', examplesHelpText(examples));
  }
  return program;
}

/** The words after `ferry` that name a command: "mirror update". */
export function commandPath(c: Command): string {
  const words: string[] = [];
  for (let x: Command | null = c; x?.parent; x = x.parent) words.unshift(x.name());
  return words.join(' ');
}

function allCommands(c: Command): Command[] {
  return [c, ...c.commands.flatMap(allCommands)];
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
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

if (import.meta.main) {
  // A reader that goes away (`ferry ... | head`) is not an error.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
  process.on('unhandledRejection', (err) => {
    process.exitCode = reportError(asFerryError(err, { prefix: 'unhandled: ' }), false);
  });
  main(process.argv).then((code) => {
    process.exitCode = code;
  });
}
