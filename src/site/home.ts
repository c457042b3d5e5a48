// Where a site lives, without opening it: the home directory, the paths in it,
// the daemon's info file and socket, and ferry's version. Imports nothing of
// ferry's, so the CLI can find a running daemon without loading the site's
// code (cli/invoke.ts).
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

export const FERRY_VERSION = '0.1.0';

export function defaultHome(): string {
  return resolve(process.env.FERRY_HOME || join(homedir(), '.ferry'));
}

export interface SitePaths {
  home: string;
  catalog: string;
  store: string;
  identity: string;
  lock: string;
  replicas: string;
}

export function sitePaths(home: string): SitePaths {
  const h = resolve(home);
  return {
    home: h,
    catalog: join(h, 'catalog.db'),
    store: join(h, 'store'),
    identity: join(h, 'identity'),
    lock: join(h, 'lock'),
    replicas: join(h, 'replicas'),
  };
}

/** What a running daemon writes to <home>/daemon.json for the CLI. */
export interface DaemonInfo {
  pid: number;
  socket: string;
  listen: string;
  port: number;
  startedAt: number;
}

export function daemonInfoPath(home: string): string {
  return join(home, 'daemon.json');
}

export function socketPath(home: string): string {
  return join(home, 'ferry.sock');
}
