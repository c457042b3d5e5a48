// `config apply` and the daemon's reload: load the file, plan it against the
// site, refuse it whole if anything is wrong, else run the plan's steps in
// order. Steps are the CLI's own operations (app/ops.ts), each one
// transaction: an apply cut off part-way leaves a site that a second apply
// finishes, because the plan is always made anew from what is there.
import { readFileSync } from 'node:fs';
import { FerryError, isFerryError, wrapIoError } from '../core/errors.ts';
import type { Site } from '../site/site.ts';
import { invalidConfig, loadConfig } from './load.ts';
import { hasChanges, planConfig, summarize, type Plan, type PlanAction, type PlanSummary } from './plan.ts';
import { setLinkSettings, setMirrorSettings, setSiteMeta } from './settings.ts';

export interface ApplyOptions {
  text: string;
  /** absolute path of the file (for messages and relative paths in it) */
  file: string;
  dryRun?: boolean;
  prune?: boolean;
  /** the event kind to record: config.apply (the CLI), config.reload (SIGHUP), config.load (serve start) */
  event?: string;
}

export interface ApplyResult {
  file: string;
  site: string;
  dryRun: boolean;
  actions: PlanAction[];
  summary: PlanSummary;
  /** false when the plan had nothing to create, change or remove */
  changed: boolean;
  /** steps run (0 on a dry run) */
  applied: number;
}

/**
 * What applying a site file needs: the site, and a way to run one of the CLI's operations (the
 * composition root hands in app/ops.ts's runOp, in the daemon or in the CLI process).
 */
export interface ConfigContext {
  site: Site;
  run: (op: string, args: Record<string, unknown>) => Promise<unknown>;
}

export function readConfigFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new FerryError('CONFIG_INVALID', `no site file at ${file}; write one (docs/config.md), or start from \`ferry config export --output ${file}\``, { cause: err });
    throw wrapIoError(err, `reading site file ${file}`, { writing: false });
  }
}

/** Load and plan, refusing with every issue at once. */
export function planFromText(ctx: ConfigContext, o: ApplyOptions): Plan {
  const { config, issues } = loadConfig(o.text, o.file);
  if (issues.length) throw invalidConfig(o.file, issues);
  const plan = planConfig(ctx.site, config, { prune: o.prune });
  if (plan.issues.length) throw invalidConfig(o.file, plan.issues);
  return plan;
}

export function describeAction(a: PlanAction): string {
  return `${a.verb} ${a.kind} ${a.name}`;
}

async function runStep(ctx: ConfigContext, a: PlanAction): Promise<void> {
  const step = a.step!;
  const site = ctx.site;
  if ('op' in step) await ctx.run(step.op, step.args);
  else if ('meta' in step) setSiteMeta(site, step.meta);
  else if ('mirror' in step) setMirrorSettings(site, step.mirror, step.settings);
  else setLinkSettings(site, step.link, step.settings);
}

export async function applyConfigText(ctx: ConfigContext, o: ApplyOptions): Promise<ApplyResult> {
  const site = ctx.site;
  const kind = o.event ?? 'config.apply';
  let plan: Plan;
  try {
    plan = planFromText(ctx, o);
  } catch (err) {
    if (!o.dryRun) {
      const issues = isFerryError(err, 'CONFIG_INVALID') ? (err.details?.issues as unknown[] | undefined) : undefined;
      site.event({ kind, outcome: 'failed', detail: { file: o.file, ...(issues ? { errors: issues } : { error: (err as Error).message }), kept: 'the running configuration is unchanged' } });
    }
    throw err;
  }
  const steps = plan.actions.filter((a) => a.step);
  const result: ApplyResult = { file: o.file, site: plan.site, dryRun: o.dryRun === true, actions: plan.actions, summary: summarize(plan), changed: hasChanges(plan), applied: 0 };
  if (o.dryRun) return result;
  for (const a of steps) {
    try {
      await runStep(ctx, a);
      result.applied++;
    } catch (err) {
      const fe = isFerryError(err) ? err : new FerryError('INTERNAL', String((err as Error)?.stack ?? err), { cause: err });
      site.event({ kind, outcome: 'failed', detail: { file: o.file, step: describeAction(a), error: fe.message, applied: steps.slice(0, result.applied).map(describeAction) } });
      throw new FerryError(fe.code, `${o.file}: step ${result.applied + 1} of ${steps.length} (${describeAction(a)}) failed: ${fe.message}; ${result.applied} step(s) before it were applied. Fix the cause and apply again: the plan is made anew from what is there`, { cause: err, details: fe.details });
    }
  }
  site.event({
    kind,
    outcome: result.summary.keep || result.summary.wait ? 'warning' : 'ok',
    detail: { file: o.file, ...result.summary, actions: plan.actions.filter((a) => a.verb !== 'note').map((a) => `${describeAction(a)}${a.reason && (a.verb === 'keep' || a.verb === 'wait') ? ` (${a.reason})` : ''}`) },
  });
  return result;
}

/** Read the file and apply it (serve's start and SIGHUP). */
export async function applyConfigFile(ctx: ConfigContext, file: string, o: { event: string; prune?: boolean }): Promise<ApplyResult> {
  let text: string;
  try {
    text = readConfigFile(file);
  } catch (err) {
    ctx.site.event({ kind: o.event, outcome: 'failed', detail: { file, error: (err as Error).message, kept: 'the running configuration is unchanged' } });
    throw err;
  }
  return applyConfigText(ctx, { text, file, event: o.event, prune: o.prune });
}
