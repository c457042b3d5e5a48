// Opening the site a command works on, from --home / FERRY_HOME, and closing
// it whatever happens.
import { Site, defaultHome } from '../site/site.ts';
import type { GlobalOptions } from './output.ts';

export function homeFrom(g: GlobalOptions): string {
  return g.home ?? defaultHome();
}

export async function withSite<T>(g: GlobalOptions, command: string, fn: (site: Site) => Promise<T> | T, options: { readOnly?: boolean } = {}): Promise<T> {
  const site = Site.open(homeFrom(g), { command, readOnly: options.readOnly });
  try {
    return await fn(site);
  } finally {
    site.close();
  }
}
