// The daemon's side of the site file: applied when `ferry serve` starts
// (a bad file stops the start), and again on each SIGHUP, where a bad file is
// refused, logged as a failed `config.reload` event with every error, and the
// running configuration is kept. Reloads run one at a time; a SIGHUP that
// arrives during one runs once it ends. A reload never prunes.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { FerryError } from '../core/errors.ts';
import { readMeta } from '../catalog/meta.ts';
import type { Engine } from '../site/engine.ts';
import { applyConfigFile, type ApplyResult, type ConfigContext } from './apply.ts';
import { DEFAULT_CONFIG_NAME, DEFAULTS, META_KEYS } from './schema.ts';

export class ConfigReloader {
  readonly engine: Engine;
  /** the file read: --config, else FERRY_CONFIG, else <home>/ferry.yaml */
  readonly file: string;
  readonly #explicit: boolean;
  #running: Promise<void> = Promise.resolve();
  #queued = false;

  /** where an explicit file was named, for messages: --config, or FERRY_CONFIG */
  readonly #namedBy: string;

  /** runs one of the CLI's operations in the daemon (app/ops.ts runOp, handed in by whoever starts the daemon) */
  readonly #run: ConfigContext['run'];

  constructor(engine: Engine, run: ConfigContext['run'], file?: string, namedBy = '--config') {
    this.engine = engine;
    this.#run = run;
    this.#explicit = file !== undefined;
    this.#namedBy = namedBy;
    this.file = file ?? join(engine.site.paths.home, DEFAULT_CONFIG_NAME);
  }

  #apply(event: string): Promise<ApplyResult> {
    return applyConfigFile({ site: this.engine.site, run: this.#run }, this.file, { event });
  }

  /** At start: apply the file if there is one (one named by --config or FERRY_CONFIG must exist); throws when it is refused. */
  async applyAtStart(): Promise<ApplyResult | null> {
    if (!existsSync(this.file)) {
      if (this.#explicit) throw new FerryError('CONFIG_INVALID', `no site file at ${this.file} (${this.#namedBy === 'FERRY_CONFIG' ? 'named by FERRY_CONFIG' : `given with ${this.#namedBy}`}); write one (docs/config.md) or leave ${this.#namedBy} out`);
      return null;
    }
    return this.#apply('config.load');
  }

  /** The address to listen on when --listen is not given: site.listen from the file, else the default. */
  listen(): string {
    return readMeta(this.engine.site.catalog, META_KEYS.listen) ?? DEFAULTS.listen;
  }

  /** SIGHUP: re-read and apply; refusals and failures are events, never exceptions. Resolves when done (tests await it). */
  reload = (): Promise<void> => {
    if (this.#queued) return this.#running;
    this.#queued = true;
    this.#running = this.#running.then(async () => {
      this.#queued = false;
      const site = this.engine.site;
      if (!existsSync(this.file)) {
        site.event({ kind: 'config.reload', outcome: 'warning', detail: { file: this.file, error: 'no site file there: nothing to reload', kept: 'the running configuration is unchanged' } });
        return;
      }
      try {
        await this.#apply('config.reload');
      } catch {
        // applyConfigText recorded the failed config.reload event with every error
      }
    });
    return this.#running;
  };
}
