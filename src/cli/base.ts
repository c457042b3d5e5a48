// The parts of ferry's program every command shares: its name, version and
// global options, and what each command gets once registered (its own --home
// and --json, exit codes instead of exits, its examples in --help). Light on
// purpose: a command run from the shell loads this and its own group only.
import { Command } from 'commander';
import { FERRY_VERSION } from '../site/home.ts';
import { EXAMPLES, examplesHelpText } from './examples.ts';

export function baseProgram(): Command {
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
  return program;
}

/** Once the commands are registered: each exits through the caller, takes --home and --json, and shows its examples. */
export function finishProgram(program: Command): Command {
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
