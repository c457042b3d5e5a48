// ferry completion bash|zsh|fish, ferry help [COMMAND...] [--man]: generated
// from the program's own definition (../completion.ts, ../man.ts), so they
// list exactly what the parser accepts.
import { Argument, type Command } from 'commander';
import { FerryError } from '../../core/errors.ts';
import { FERRY_VERSION } from '../../site/home.ts';
import { completionScript, describeProgram, SHELLS, type Shell } from '../completion.ts';
import { manPage } from '../man.ts';

export function register(program: Command): void {
  program
    .command('completion')
    .description('print a shell completion script for bash, zsh or fish (install it as the example shows)')
    .addArgument(new Argument('<shell>', 'bash, zsh or fish').choices(SHELLS))
    .action((shell: Shell) => {
      process.stdout.write(completionScript(shell, describeProgram(program), FERRY_VERSION));
    });

  // Replaces commander's implicit help command, to add --man.
  program.helpCommand(false);
  program
    .command('help')
    .description('show help for a command (ferry help mirror update), or print the manual page with --man')
    .argument('[command...]', 'the command, as its words')
    .option('--man', 'print the manual page (roff: pipe it to `man -l -`)')
    .action((words: string[], o: { man?: boolean }) => {
      if (o.man) return void process.stdout.write(manPage(describeProgram(program), FERRY_VERSION));
      let cmd: Command = program;
      for (const w of words) {
        const next = cmd.commands.find((c) => c.name() === w || c.aliases().includes(w));
        if (!next) throw new FerryError('USAGE', `no command ${JSON.stringify([...words.slice(0, words.indexOf(w)), w].join(' '))}; \`ferry help\` lists them`);
        cmd = next;
      }
      cmd.outputHelp();
    });
}
