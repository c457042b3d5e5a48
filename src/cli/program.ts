// ferry's whole command line: every command group of commands/ wired into one
// program (help, completion and the man page are generated from it). A command
// run from the shell loads only its own group (main.ts, COMMAND_GROUPS).
import { Command } from 'commander';
import type { GlobalOptions } from './output.ts';
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
import { baseProgram, finishProgram } from './base.ts';
export { commandPath } from './base.ts';

export function buildProgram(): Command {
  const program = baseProgram();
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
  return finishProgram(program);
}

