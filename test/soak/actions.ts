// The soak's actions: what they are (plain JSON, so a run's log can be replayed, shrunk and turned
// into a script), how the seeded generator picks them with weights from what the catalogs say now,
// and how each is carried out through the real CLI, the members' files, the daemons' processes,
// the fault proxies and the sites' small filesystems.
import { execFileSync } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Rng } from './harness.ts';
import { applyWrite, WROTE_NOTHING, pickFromCatalog, seedData, type PickKind, type WriteOp } from './fileop.ts';
import { primariesOf, siteOfPeer, type SiteView, type View } from './view.ts';
import type { CliOutcome, SoakSite, World } from './world.ts';

/** A fault that lands while a ferry command runs. */
export interface Along {
  /** kill -9 the CLI this long after it started */
  killCliAfterMs?: number;
  /** kill -9 a daemon this long after the command started; it stays down for `downSteps` steps */
  killDaemon?: { site: string; afterMs: number; downSteps: number };
  /** reset every connection of a link this long after the command started */
  cutLink?: { from: string; to: string; afterMs: number };
}

export type Op =
  | { kind: 'write'; site: string; volume: string; member: string; op: WriteOp; pick: number; size: number; seed: string }
  /** `ferry ARGS` at a site; an arg `{snapshot:VOL:N}`, `{peer-snapshot:VOL:N}`, `{link:N}`, `{dir}`, `{url:SITE}` or `{id:SITE}` is resolved when it runs */
  | { kind: 'ferry'; site: string; args: string[]; along?: Along }
  | { kind: 'kill-daemon'; site: string; downSteps: number }
  | { kind: 'link'; from: string; to: string; fault: 'cut' | 'stall' | 'slow' | 'delay'; steps: number; rate?: number; ms?: number }
  | { kind: 'disk-full'; site: string; freeKiB: number; steps: number }
  | { kind: 'clock'; site: string; offsetMs: number }
  /** a volume's first data, where it is created (setup) */
  | { kind: 'seed-data'; site: string; volume: string; seed: string };

/** Fault kinds, as counted in the summary. */
export type FaultKind = 'kill-daemon' | 'kill-cli' | 'link-cut' | 'link-stall' | 'link-slow' | 'link-delay' | 'disk-full' | 'clock-step';

/** The volumes the soak protects, where each starts as primary, and its members. */
export interface VolumeSpec {
  name: string;
  home: string;
  members: Array<{ name: string; kind: 'tree' | 'image' }>;
}

export const VOLUMES: readonly VolumeSpec[] = [
  { name: 'v1', home: 'a', members: [{ name: 'data', kind: 'tree' }, { name: 'disk', kind: 'image' }] },
  { name: 'v2', home: 'b', members: [{ name: 'data', kind: 'tree' }] },
];

export function volumeSpec(name: string): VolumeSpec {
  const v = VOLUMES.find((x) => x.name === name);
  if (!v) throw new Error(`no volume ${name}`);
  return v;
}

// ------------------------------------------------------------------ the generator

/** Named snapshots of a volume a site keeps before the generator starts deleting them by hand. */
export const NAMED_KEPT = 6;

interface Candidate {
  name: string;
  weight: number;
  make: () => Op | undefined;
}

/**
 * Picks the next action from the PRNG and what the catalogs say now (`view`): only the PRNG decides,
 * so the same seed with the same outcomes gives the same actions; the log of a run replays exactly.
 */
export class Generator {
  readonly rng: Rng;
  readonly volumes: readonly VolumeSpec[];
  readonly siteNames: string[];
  readonly mounted: Set<string>;
  #linkSeq = 0;

  constructor(seed: number, siteNames: string[], volumes: readonly VolumeSpec[], mounted: Set<string>) {
    this.rng = new Rng(seed);
    this.siteNames = siteNames;
    this.volumes = volumes;
    this.mounted = mounted;
  }

  next(step: number, view: View): Op {
    const r = this.rng;
    const sites = [...view.values()];
    const pick = <T>(xs: readonly T[]): T | undefined => (xs.length ? xs[r.int(xs.length)] : undefined);
    const vol = this.volumes[r.int(this.volumes.length)];
    const holders = sites.filter((s) => s.volumes.some((v) => v.name === vol.name));
    const primaries = primariesOf(view, vol.name);
    const mirrors = sites.flatMap((s) => s.mirrors.filter((m) => m.volume === vol.name).map((m) => ({ s, m })));
    const activeSecondaries = sites.filter((s) => s.secondaries.some((x) => x.volume === vol.name && x.state === 'active'));
    const seed = `s${step}-${r.u32().toString(36)}`;
    const ferry = (site: SiteView | undefined, args: string[]): Op | undefined => (site ? { kind: 'ferry', site: site.name, args } : undefined);
    const otherSite = (s: SiteView) => pick(sites.filter((x) => x !== s));
    const twoMembers = vol.members.length > 1;
    const named = (s: SiteView) => s.snapshots.filter((x) => x.volume === vol.name && x.name !== null).length;

    const cands: Candidate[] = [
      {
        name: 'write', weight: 30, make: () => {
          // Mostly at a primary; now and then into a replica (writes made at a secondary must be kept, never dropped).
          const at = primaries.length && !r.chance(0.08) ? pick(primaries) : pick(holders);
          if (!at) return undefined;
          const useImage = twoMembers && r.chance(0.25);
          const member = useImage ? vol.members.find((m) => m.kind === 'image')! : vol.members.find((m) => m.kind === 'tree')!;
          const op: WriteOp = useImage ? 'image' : pickWeighted<WriteOp>(r, [['new', 30], ['modify', 25], ['append', 10], ['truncate', 5], ['rename', 10], ['delete', 8], ['mkdir', 6], ['symlink', 6]]);
          const size = op === 'image' ? r.range(1, 16) * 4096 : r.chance(0.2) ? r.range(64 << 10, 512 << 10) : r.range(0, 16 << 10);
          return { kind: 'write', site: at.name, volume: vol.name, member: member.name, op, pick: r.u32(), size, seed };
        },
      },
      {
        name: 'snapshot', weight: 8, make: () => {
          const at = pick(primaries.length ? primaries : holders);
          const peer = r.chance(0.3);
          const named = peer || r.chance(0.4);
          return ferry(at, ['snapshot', 'create', vol.name, ...(named ? ['--name', `n${step}`] : []), ...(peer ? ['--peer', ...(r.chance(0.5) ? ['--wait'] : [])] : [])]);
        },
      },
      {
        name: 'update', weight: 12, make: () => {
          const x = pick(mirrors);
          if (!x) return undefined;
          return ferry(x.s, ['mirror', 'update', vol.name, '--to', x.m.peer, ...(r.chance(0.8) ? ['--wait'] : []), ...(r.chance(0.2) ? ['--force'] : [])]);
        },
      },
      {
        name: 'initialize', weight: mirrors.some((x) => ['uninitialized', 'needs-full-sync'].includes(x.m.state)) ? 6 : 1, make: () => {
          const x = pick(mirrors.filter((y) => ['uninitialized', 'needs-full-sync'].includes(y.m.state))) ?? pick(mirrors);
          // --force now and then: a replica bound over files no apply wrote (a volume made again there) refuses without it.
          return x && ferry(x.s, ['mirror', 'initialize', vol.name, '--to', x.m.peer, '--wait', ...(r.chance(0.3) ? ['--force'] : [])]);
        },
      },
      {
        name: 'pause-resume', weight: 2, make: () => {
          const x = pick(mirrors);
          return x && ferry(x.s, ['mirror', x.m.paused ? 'resume' : r.chance(0.7) ? 'pause' : 'resume', vol.name, '--to', x.m.peer]);
        },
      },
      {
        name: 'mirror-set', weight: 1, make: () => {
          const x = pick(mirrors);
          if (!x) return undefined;
          // Mostly manual mirrors; a schedule now and then puts scheduled updates in the background.
          // Deltas pinned either way or chosen by the link: `never` sends whole objects, early (link-fit.ts).
          const setting = r.chance(0.4) ? ['--schedule', r.pick(['20s', '1m', 'none', 'none'])]
            : r.chance(0.5) ? ['--keep', r.chance(0.3) ? 'auto' : String(r.range(1, 4))]
            : ['--deltas', r.pick(['auto', 'always', 'never'])];
          return ferry(x.s, ['mirror', 'set', vol.name, '--to', x.m.peer, ...setting]);
        },
      },
      { name: 'retention', weight: 1, make: () => ferry(pick(primaries.length ? primaries : holders), ['volume', 'set', vol.name, '--keep-last', String(r.range(2, 8))]) },
      { name: 'snapshot-delete', weight: 2, make: () => ferry(pick(holders), ['snapshot', 'delete', vol.name, `{snapshot:${vol.name}:${r.u32()}}`]) },
      {
        // Retention keeps named snapshots (the soak's `--name`, failback-kept-*, replica-writes-*): the
        // operator deletes them by hand, the more often the more a site keeps, so that what they pin
        // does not fill the sites' small filesystems over hours.
        name: 'named-delete', weight: Math.min(8, 0.5 * Math.max(0, ...holders.map((s) => named(s) - NAMED_KEPT))), make: () => {
          const at = pick(holders.filter((s) => named(s) > NAMED_KEPT));
          return ferry(at, ['snapshot', 'delete', vol.name, `{named-snapshot:${vol.name}:${r.u32()}}`]);
        },
      },
      { name: 'peer-delete', weight: 1, make: () => ferry(pick(primaries), ['snapshot', 'delete', vol.name, `{peer-snapshot:${vol.name}:${r.u32()}}`, '--peer']) },
      { name: 'gc', weight: 1.5, make: () => ferry(pick(sites), ['gc']) },
      {
        // At most three links a site: each is a full copy of a member on the site's small filesystem.
        name: 'link-create', weight: 1.5, make: () => ferry(pick(holders.filter((s) => s.links.length < 3)), ['link', 'create', `{dir}/links/${vol.name}-${step}-${this.#linkSeq++}`, '--volume', vol.name, ...(twoMembers ? ['--member', 'data'] : [])]),
      },
      {
        name: 'link-refresh', weight: sites.some((s) => s.links.length) ? 1.5 : 0, make: () => {
          const at = pick(sites.filter((s) => s.links.length));
          return ferry(at, ['link', 'refresh', `{link:${r.u32()}}`, ...(r.chance(0.5) ? ['--force'] : [])]);
        },
      },
      { name: 'link-remove', weight: sites.some((s) => s.links.length) ? 0.7 : 0, make: () => ferry(pick(sites.filter((s) => s.links.length)), ['link', 'remove', `{link:${r.u32()}}`]) },
      {
        name: 'failover', weight: activeSecondaries.length ? 2.5 : 0, make: () => ferry(pick(activeSecondaries), ['failover', vol.name, ...(r.chance(0.5) ? ['--force'] : []), ...(r.chance(0.2) ? ['--no-repoint'] : [])]),
      },
      {
        name: 'failback', weight: 2.5, make: () => {
          // At an old primary: its mirror broken off by a failover, or a second primary that should yield.
          const broken = mirrors.filter((x) => x.m.state === 'broken-off');
          const x = pick(broken);
          if (x) return ferry(x.s, ['failback', vol.name, ...(r.chance(0.6) ? ['--to', x.m.peer] : []), ...(r.chance(0.1) ? ['--full'] : [])]);
          if (primaries.length > 1) {
            const at = pick(primaries)!;
            const other = pick(primaries.filter((p) => p !== at))!;
            const name = at.peers.find((p) => p.id === other.id)?.name;
            return name ? ferry(at, ['failback', vol.name, '--to', name]) : undefined;
          }
          return undefined;
        },
      },
      {
        name: 'migrate', weight: 1.5, make: () => {
          const x = pick(mirrors.filter((y) => primaries.includes(y.s)));
          return x && ferry(x.s, ['migrate', vol.name, '--to', x.m.peer]);
        },
      },
      {
        name: 'repoint', weight: 0.7, make: () => {
          const at = pick(primaries);
          if (!at) return undefined;
          const to = pick(at.peers);
          return to && ferry(at, ['mirror', 'repoint', vol.name, '--to', to.name]);
        },
      },
      { name: 'mirror-remove', weight: 1, make: () => { const x = pick(mirrors); return x && ferry(x.s, ['mirror', 'remove', vol.name, '--to', x.m.peer]); } },
      {
        name: 'mirror-create', weight: 1.5, make: () => {
          const at = pick(primaries.length ? primaries : holders.filter((s) => s.volumes.some((v) => v.name === vol.name && v.role === 'standalone')));
          if (!at) return undefined;
          const to = pick(at.peers.filter((p) => !at.mirrors.some((m) => m.volume === vol.name && m.peer === p.name)));
          return to && ferry(at, ['mirror', 'create', vol.name, '--to', to.name, ...(r.chance(0.3) ? ['--keep', String(r.range(1, 4))] : [])]);
        },
      },
      {
        name: 'volume-remove', weight: 0.8, make: () => {
          // Mostly at a secondary whose mirror was removed (snapmirror destroy); sometimes anywhere.
          const orphan = holders.filter((s) => !s.mirrors.some((m) => m.volume === vol.name) && !mirrors.some((x) => siteOfPeer(view, x.s, x.m.peer) === s));
          return ferry(pick(orphan.length && r.chance(0.8) ? orphan : holders), ['volume', 'remove', vol.name, '--force']);
        },
      },
      {
        name: 'volume-create', weight: holders.length === 0 ? 6 : sites.some((s) => s.name === vol.home && !holders.includes(s)) ? 2 : 0, make: () => {
          const at = sites.find((s) => s.name === vol.home);
          return at && !holders.includes(at) ? ferry(at, ['volume', 'create', vol.name, ...volumeMembers(vol)]) : undefined;
        },
      },
      {
        // After `volume remove` at a secondary its replica's files stay, and a new secondary is not
        // made over them: the operator binds them again (`volume create --secondary`).
        name: 'volume-create-secondary', weight: sites.some((s) => s.name !== vol.home && !holders.includes(s)) ? 2 : 0, make: () => {
          const at = pick(sites.filter((s) => s.name !== vol.home && !holders.includes(s)));
          return at && ferry(at, ['volume', 'create', vol.name, ...vol.members.flatMap((m) => ['--member', `${m.name}=${m.kind}:{dir}/home/replicas/${vol.name}/${m.name}`]), '--secondary']);
        },
      },
      {
        name: 'site-remove', weight: 0.4, make: () => {
          const at = pick(sites)!;
          const p = pick(at.peers);
          return p && ferry(at, ['site', 'remove', p.name]);
        },
      },
      {
        name: 'site-add', weight: sites.some((s) => s.peers.length < sites.length - 1) ? 6 : 0, make: () => {
          const at = pick(sites.filter((s) => s.peers.length < sites.length - 1))!;
          const missing = pick(sites.filter((x) => x !== at && !at.peers.some((p) => p.id === x.id)));
          return missing && ferry(at, ['site', 'add', missing.name, `{url:${missing.name}}`, '--id', `{id:${missing.name}}`]);
        },
      },
      // faults
      { name: 'kill-daemon', weight: 3, make: () => ({ kind: 'kill-daemon', site: pick(sites)!.name, downSteps: r.int(3) }) },
      { name: 'link-cut', weight: 1.5, make: () => { const [f, t] = this.#pair(); return { kind: 'link', from: f, to: t, fault: 'cut', steps: 0 }; } },
      { name: 'link-stall', weight: 1.5, make: () => { const [f, t] = this.#pair(); return { kind: 'link', from: f, to: t, fault: 'stall', steps: r.range(1, 3) }; } },
      { name: 'link-slow', weight: 1.2, make: () => { const [f, t] = this.#pair(); return { kind: 'link', from: f, to: t, fault: 'slow', steps: r.range(1, 4), rate: r.range(2, 32) * 64 * 1024 }; } },
      { name: 'link-delay', weight: 0.8, make: () => { const [f, t] = this.#pair(); return { kind: 'link', from: f, to: t, fault: 'delay', steps: r.range(1, 4), ms: r.range(5, 300) }; } },
      {
        name: 'disk-full', weight: this.mounted.size ? 1.5 : 0, make: () => {
          const at = pick([...this.mounted]);
          return at ? { kind: 'disk-full', site: at, freeKiB: pick([0, 16, 256, 2048])!, steps: r.range(1, 3) } : undefined;
        },
      },
      // A clock step: the site's clock moves to an offset within an hour either way (the limits the design accepts: docs/soak.md).
      { name: 'clock-step', weight: 1, make: () => ({ kind: 'clock', site: pick(sites)!.name, offsetMs: r.range(-3600, 3600) * 1000 }) },
    ];
    for (let tries = 0; tries < 20; tries++) {
      const c = pickWeighted(r, cands.filter((x) => x.weight > 0).map((x) => [x, x.weight] as [Candidate, number]));
      const op = c.make();
      if (!op) continue;
      if (op.kind === 'ferry' && r.chance(0.2)) op.along = this.#along(op, view);
      return op;
    }
    return { kind: 'ferry', site: sites[0].name, args: ['status'] };
  }

  #pair(): [string, string] {
    const n = this.siteNames;
    const f = n[this.rng.int(n.length)];
    const rest = n.filter((x) => x !== f);
    return [f, rest[this.rng.int(rest.length)]];
  }

  /** A fault while the command runs: its CLI killed, a daemon killed (its own or another), a link cut. */
  #along(op: { site: string; args: string[] }, view: View): Along {
    const r = this.rng;
    const afterMs = r.range(20, 3000);
    const k = r.int(10);
    if (k < 5) return { killCliAfterMs: afterMs };
    if (k < 8) {
      const names = [...view.keys()];
      const site = r.chance(0.6) ? op.site : names[r.int(names.length)];
      return { killDaemon: { site, afterMs, downSteps: r.int(2) } };
    }
    const others = [...view.keys()].filter((x) => x !== op.site);
    const to = others[r.int(others.length)];
    return r.chance(0.5) ? { cutLink: { from: op.site, to, afterMs } } : { cutLink: { from: to, to: op.site, afterMs } };
  }
}

export function memberDirRel(volume: string, m: { name: string; kind: string }): string {
  return `data/${volume}/${m.kind === 'image' ? `${m.name}.img` : m.name}`;
}

/** `--member` arguments of a volume at the site that creates it (`{dir}`: that site's directory). */
export function volumeMembers(v: VolumeSpec): string[] {
  return v.members.flatMap((m) => ['--member', `${m.name}=${m.kind}:{dir}/${memberDirRel(v.name, m)}`]);
}

function pickWeighted<T>(r: Rng, items: Array<[T, number]>): T {
  const total = items.reduce((a, [, w]) => a + w, 0);
  let x = (r.u32() / 0x1_0000_0000) * total;
  for (const [v, w] of items) {
    if (x < w) return v;
    x -= w;
  }
  return items[items.length - 1][0];
}

// ------------------------------------------------------------------ carrying actions out

export interface Executed {
  /** what was done, one line for the log */
  text: string;
  /** the command and its outcome, for a ferry action */
  outcome?: CliOutcome;
  /** the faults this action injected */
  faults: FaultKind[];
  /** a write's site and volume, when it changed a member */
  wrote?: { site: string; volume: string };
  /** nothing could be done (no such volume here, no snapshot to pick): not a failure */
  skipped?: string;
}

/** Resolve an action's run-time arguments at its site; undefined (and why) if one has nothing to name. */
export function resolveArgs(world: World, s: SoakSite, args: string[]): { args: string[] } | { missing: string } {
  const out: string[] = [];
  for (const a of args) {
    if (a.includes('{dir}')) {
      out.push(a.replaceAll('{dir}', s.dir));
      continue;
    }
    const m = /^\{([a-z-]+):([^}]*)\}$/.exec(a);
    if (!m) {
      out.push(a);
      continue;
    }
    const [, kind, rest] = m;
    if (kind === 'url') {
      out.push(world.link(s.name, rest).proxy.url);
      continue;
    }
    if (kind === 'id') {
      out.push(world.site(rest).id);
      continue;
    }
    const [volume, n] = kind === 'link' ? ['', rest] : rest.split(':');
    const v = pickFromCatalog(s.home, kind as PickKind, volume, Number(n));
    if (v === undefined) return { missing: kind === 'link' ? 'no link here' : `no ${kind} of ${volume} here` };
    out.push(v);
  }
  return { args: out };
}

export async function execute(world: World, op: Op): Promise<Executed> {
  switch (op.kind) {
    case 'write': {
      const s = world.site(op.site);
      const m = world.members(s, op.volume).find((x) => x.name === op.member);
      if (!m) return { text: `write at ${op.site}: no member ${op.volume}:${op.member} here`, faults: [], skipped: 'no such member' };
      try {
        const did = applyWrite(m.kind, m.path, op);
        // A write that changed nothing is no write: what the member holds is still what ferry (or an
        // earlier write, already noted) put there, e.g. the empty replica a new secondary starts with.
        const wrote = WROTE_NOTHING.has(did) ? undefined : { site: op.site, volume: op.volume };
        return { text: `write ${op.site}:${op.volume}:${op.member} ${did}`, faults: [], wrote };
      } catch (err) {
        // A full disk, a name taken: the write did what it did (maybe part of it).
        return { text: `write ${op.site}:${op.volume}:${op.member} ${op.op} failed: ${(err as Error).message}`, faults: [], wrote: { site: op.site, volume: op.volume } };
      }
    }
    case 'ferry': {
      const s = world.site(op.site);
      const r = resolveArgs(world, s, op.args);
      if ('missing' in r) return { text: `ferry ${op.args.join(' ')} at ${op.site}: skipped (${r.missing})`, faults: [], skipped: r.missing };
      const faults: FaultKind[] = [];
      const timers: NodeJS.Timeout[] = [];
      const work: Array<Promise<unknown>> = [];
      const a = op.along;
      if (a?.killDaemon) {
        const kd = a.killDaemon;
        const target = world.site(kd.site);
        timers.push(setTimeout(() => {
          if (!target.proc) return;
          faults.push('kill-daemon');
          work.push(world.stopDaemon(target, 'SIGKILL').then(() => (target.downSteps = kd.downSteps)));
        }, kd.afterMs));
      }
      if (a?.cutLink) {
        const l = world.link(a.cutLink.from, a.cutLink.to);
        timers.push(setTimeout(() => {
          faults.push('link-cut');
          l.proxy.resetAll();
        }, a.cutLink.afterMs));
      }
      const outcome = await world.cli(s, r.args, { killAfterMs: a?.killCliAfterMs });
      for (const t of timers) clearTimeout(t);
      await Promise.all(work);
      if (outcome.killed) faults.push('kill-cli');
      const alongText = a ? ` [along: ${JSON.stringify(a)}]` : '';
      return { text: `${op.site}$ ferry ${r.args.join(' ')} -> ${describeOutcome(outcome)}${alongText}`, outcome, faults };
    }
    case 'kill-daemon': {
      const s = world.site(op.site);
      if (!s.proc) return { text: `kill -9 daemon ${op.site}: not running`, faults: [], skipped: 'not running' };
      await world.stopDaemon(s, 'SIGKILL');
      s.downSteps = op.downSteps;
      return { text: `kill -9 daemon ${op.site} (down ${op.downSteps} step(s))`, faults: ['kill-daemon'] };
    }
    case 'link': {
      const l = world.link(op.from, op.to);
      if (op.fault === 'cut') {
        l.proxy.resetAll();
        return { text: `link ${op.from}>${op.to}: cut`, faults: ['link-cut'] };
      }
      if (op.fault === 'stall') l.proxy.stall();
      else if (op.fault === 'slow') l.proxy.throttle(op.rate!);
      else l.proxy.delay(op.ms!);
      l.fault = { mode: op.fault, steps: op.steps };
      const what = op.fault === 'slow' ? `${Math.round(op.rate! / 1024)} KiB/s` : op.fault === 'delay' ? `${op.ms} ms` : 'black hole';
      return { text: `link ${op.from}>${op.to}: ${op.fault} (${what}) for ${op.steps} step(s)`, faults: [op.fault === 'stall' ? 'link-stall' : op.fault === 'slow' ? 'link-slow' : 'link-delay'] };
    }
    case 'disk-full': {
      const s = world.site(op.site);
      if (!s.mounted) return { text: `disk full at ${op.site}: no small filesystem here`, faults: [], skipped: 'not mounted' };
      const free = world.free(s);
      const size = Math.max(0, free - op.freeKiB * 1024);
      if (size > 0) {
        try {
          execFileSync('fallocate', ['-l', String(size), join(s.dir, `ballast.${Date.now()}`)], { stdio: 'pipe' });
        } catch {
          // fallocate may fill what it can and fail: the disk is as full as it gets
        }
      }
      s.diskFullSteps = Math.max(s.diskFullSteps, op.steps);
      return { text: `disk full at ${op.site}: ${op.freeKiB} KiB left for ${op.steps} step(s)`, faults: ['disk-full'] };
    }
    case 'seed-data': {
      const s = world.site(op.site);
      seedData(volumeSpec(op.volume).members.map((m) => ({ kind: m.kind, path: join(s.dir, memberDirRel(op.volume, m)) })), op.seed);
      return { text: `seed data of ${op.volume} at ${op.site}`, faults: [] };
    }
    case 'clock': {
      const s = world.site(op.site);
      const was = s.offsetMs;
      s.offsetMs = op.offsetMs;
      // The offset is read at process start: the daemon starts again with the new clock.
      if (s.proc) {
        await world.stopDaemon(s, 'SIGTERM');
        await world.startDaemon(s);
      }
      return { text: `clock at ${op.site}: ${was / 1000} s -> ${op.offsetMs / 1000} s`, faults: ['clock-step'] };
    }
  }
}

/** Heal what has run its course, before a step: daemons down long enough start, links clear, disks empty. */
export async function heal(world: World, all = false): Promise<string[]> {
  const done: string[] = [];
  for (const l of world.links) {
    if (!l.fault) continue;
    if (all || --l.fault.steps <= 0) {
      l.proxy.pass();
      done.push(`link ${l.from}>${l.to}: ${l.fault.mode} over`);
      l.fault = undefined;
    }
  }
  for (const s of world.sites) {
    if (s.diskFullSteps > 0 && (all || --s.diskFullSteps <= 0)) {
      s.diskFullSteps = 0;
      removeBallast(s);
      done.push(`disk at ${s.name}: space again`);
    }
  }
  for (const s of world.sites) {
    if (s.proc) continue;
    if (all || s.downSteps <= 0) {
      await world.startDaemon(s);
      done.push(`daemon ${s.name}: started again`);
    } else s.downSteps--;
  }
  return done;
}

export function removeBallast(s: SoakSite): void {
  for (const f of readdirSync(s.dir)) if (f.startsWith('ballast.')) rmSync(join(s.dir, f), { force: true });
}

export function describeOutcome(o: CliOutcome): string {
  if (o.hung) return `HUNG (killed after ${Math.round(o.ms / 1000)} s)`;
  if (o.killed) return `killed (-9) after ${o.ms} ms`;
  if (o.signal) return `died of ${o.signal}`;
  // A refusal's first words, so that a log says why without a rerun.
  const why = o.code !== 0 && typeof o.json?.error?.message === 'string' ? `: ${o.json.error.message.split('\n')[0].slice(0, 140)}` : '';
  return `exit ${o.code}${o.errorCode ? ` ${o.errorCode}` : ''} (${(o.ms / 1000).toFixed(1)} s)${why}`;
}
