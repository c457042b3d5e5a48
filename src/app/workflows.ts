// The DR workflows an engine runs by itself, bound to src/dr/ here, in the
// composition root: the engine (site/) sits below dr/ and may not import it
// (docs/design.md, "Layers"). Every engine that serves a site (the daemon,
// and the CLI running an operation without one) is made with them.
import { Engine, type EngineOptions, type EngineWorkflows } from '../site/engine.ts';
import type { Site } from '../site/site.ts';
import { refreshLink } from '../dr/links.ts';
import { resumeWorkflows } from '../dr/resume.ts';
import { deliverFailoverNotices } from '../dr/failover.ts';

export const DR_WORKFLOWS: EngineWorkflows = {
  refreshLink: (site, pool, path, o) => refreshLink(site, pool, path, o),
  resumeWorkflows: (engine) => resumeWorkflows(engine),
  deliverFailoverNotices: (engine) => deliverFailoverNotices(engine),
};

/** An engine for `site` with the DR workflows bound. */
export function newEngine(site: Site, options: EngineOptions = {}): Engine {
  return new Engine(site, { workflows: DR_WORKFLOWS, ...options });
}
