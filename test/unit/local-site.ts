// A site in a temporary directory with a one-worker chunk pool, for unit tests
// that take real snapshots in-process; closed and removed after `fn`.
import { join } from 'node:path';
import { Site, type SiteOptions } from '../../src/site/site.ts';
import { ChunkPool } from '../../src/snapshot/chunk-pool.ts';
import { tempDir } from '../helpers.ts';

export async function withLocalSite<T>(name: string, fn: (c: { dir: string; site: Site; pool: ChunkPool }) => Promise<T>, options: SiteOptions = {}): Promise<T> {
  const tmp = tempDir();
  const site = Site.init(join(tmp.path, 'home'), name, options);
  const pool = new ChunkPool({ workers: 1 });
  try {
    return await fn({ dir: tmp.path, site, pool });
  } finally {
    await pool.close();
    site.close();
    tmp.cleanup();
  }
}
