// Opening the site a command works on, from --home / FERRY_HOME, and closing
// it whatever happens; and where its site file is.
import { resolve } from 'node:path';
import { DEFAULT_CONFIG_NAME } from '../config/schema.ts';
import { FerryError } from '../core/errors.ts';
import { defaultHome, sitePaths } from '../site/home.ts';
import type { Site } from '../site/site.ts';
import type { GlobalOptions } from './output.ts';

export function homeFrom(g: GlobalOptions): string {
  return g.home ?? defaultHome();
}

/** Where a site file's location came from: named on the command line, by FERRY_CONFIG, or the home's default. */
export type SiteFileSource = 'argument' | '--config' | 'FERRY_CONFIG' | 'home';

export interface SiteFileLocation {
  /** absolute */
  path: string;
  source: SiteFileSource;
}

/**
 * The site file a command reads or writes: the FILE argument or --config (the same file if both),
 * else $FERRY_CONFIG, else <home>/ferry.yaml. `ferry serve`, `config check`, `config apply` and
 * `config export --output` all use this, so the CLI and the daemon read one file.
 */
export function siteFileFrom(g: GlobalOptions, given: { argument?: string; config?: string } = {}, env: NodeJS.ProcessEnv = process.env): SiteFileLocation {
  const arg = given.argument === undefined ? undefined : resolve(given.argument);
  const opt = given.config === undefined ? undefined : resolve(given.config);
  if (arg !== undefined && opt !== undefined && arg !== opt) throw new FerryError('USAGE', `two site files given: ${arg} and --config ${opt}; name one`);
  if (arg !== undefined) return { path: arg, source: 'argument' };
  if (opt !== undefined) return { path: opt, source: '--config' };
  const fromEnv = env.FERRY_CONFIG;
  if (fromEnv !== undefined && fromEnv !== '') return { path: resolve(fromEnv), source: 'FERRY_CONFIG' };
  return { path: resolve(sitePaths(homeFrom(g)).home, DEFAULT_CONFIG_NAME), source: 'home' };
}

/** How a message names where the file came from: " (named by FERRY_CONFIG)". */
export function siteFileOrigin(loc: SiteFileLocation): string {
  return loc.source === 'FERRY_CONFIG' ? ' (named by FERRY_CONFIG)' : loc.source === '--config' ? ' (given with --config)' : '';
}

export async function withSite<T>(g: GlobalOptions, command: string, fn: (site: Site) => Promise<T> | T, options: { readOnly?: boolean } = {}): Promise<T> {
  const { Site } = await import('../site/site.ts');
  const site = Site.open(homeFrom(g), { command, readOnly: options.readOnly });
  try {
    return await fn(site);
  } finally {
    site.close();
  }
}
