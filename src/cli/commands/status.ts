// ferry status [--watch]
import type { Command } from 'commander';
import type { JournalStatus } from '../../site/journal-service.ts';
import type { MirrorStatus } from '../../site/mirrors.ts';
import type { SideChanges } from '../../replication/dr-peer.ts';
import type { Divergence } from '../../dr/split-brain.ts';
import { DURATION } from '../../core/units.ts';
import { invoke } from '../invoke.ts';
import { parseDuration } from '../parse.ts';
import { formatBytes, formatRate, formatDuration, formatTime, printJson, type GlobalOptions } from '../output.ts';

interface StatusReport {
  site: { name: string; idFormatted: string; home: string; now: number };
  peers: Array<{ name: string; url: string }>;
  store?: { storedBytes: number; collection: { releasableBytes: number; thresholdBytes: number; threshold: string; lastCollectionAt: number | null; due: string | null } };
  links: Array<{ path: string; volume: string; member: string; snapshot: string; ageSeconds: number; maxDelayS: number; health: string }>;
  volumes: Array<{
    name: string;
    role: string;
    members: Array<{ name: string; kind: string; path: string }>;
    newestSnapshot: { id: string; name: string | null; time: number } | null;
    journal?: Record<string, JournalStatus> | null;
    mirrors: Array<Omit<MirrorStatus, 'state'> & { state: string; divergence?: Divergence }>;
    secondary?: { source: string; sourceVolume: string; applied: string | null; applying: string | null; consistent: boolean; applyError?: { code: string; message: string } | null; notice?: { state: string; attempts: number; lastAttemptAt: number; lastError?: string; splitBrainWith?: { name: string; volume: string } } | null; state?: string; updatedAt: number; divergence?: Divergence };
    workflow?: { kind: string; step: string; startedAt: number; updatedAt: number; error: { code: string; message: string } | null } | null;
    splitBrains?: Array<{ site: string; name: string; volume: string; oldPrimary: string | null; since: number }>;
  }>;
}

function side(s: SideChanges): string {
  if (!s.hasBase) return `${s.site} (${s.role}): does not hold the base`;
  return `${s.site} (${s.role}): +${s.added} ~${s.modified} -${s.removed} files, ${formatBytes(s.bytesAdded)} added, ${formatBytes(s.bytesChanged)} changed, ${formatBytes(s.bytesRemoved)} removed${s.newest ? ` (newest snapshot ${s.newest.name ?? s.newest.id})` : ''}`;
}

/** `yieldHow`: what ends a split brain, said where the divergence is shown (a failback runs only where a mirror to the other is). */
function renderDivergence(d: Divergence, indent: string, yieldHow: string): string[] {
  const out = [`${indent}${d.splitBrain ? 'SPLIT BRAIN: both sites are primary and both wrote after' : 'changes since'} base ${d.base}:`];
  out.push(`${indent}  here  ${side(d.here)}`);
  out.push(d.peer ? `${indent}  peer  ${side(d.peer)}` : `${indent}  peer  unknown (${d.peerError})`);
  if (d.splitBrain) out.push(`${indent}  ferry picks no winner: ${yieldHow} (docs/dr.md, "Split brain")`);
  return out;
}

function render(r: StatusReport): string {
  const out: string[] = [];
  out.push(`site ${r.site.name} (${r.site.idFormatted}) at ${formatTime(r.site.now)}; peers: ${r.peers.map((p) => `${p.name} ${p.url}`).join(', ') || 'none'}`);
  if (r.store) {
    const c = r.store.collection;
    const when = c.thresholdBytes === 0 ? 'after every release (gcThreshold 0)' : `at ${formatBytes(c.thresholdBytes)}${c.threshold === 'default' ? ' (the default)' : ''} or a day after the last`;
    out.push(`store ${formatBytes(r.store.storedBytes)}; ${formatBytes(c.releasableBytes)} to free at the next collection, which runs ${when}; last collection ${c.lastCollectionAt ? formatTime(c.lastCollectionAt) : 'none yet'}${c.due ? `; due: ${c.due}` : ''}`);
  }
  for (const v of r.volumes) {
    out.push('');
    out.push(`${v.name}  ${v.role}  ${v.members.map((m) => `${m.kind}:${m.path}`).join(' ')}`);
    if (v.newestSnapshot) out.push(`  latest snapshot ${v.newestSnapshot.id}${v.newestSnapshot.name ? ` (${v.newestSnapshot.name})` : ''} at ${formatTime(v.newestSnapshot.time)}`);
    for (const [member, j] of Object.entries(v.journal ?? {})) {
      const audit = j.replica ? 'read by the writes check once a verification found the replica exact' : j.lastAudit ? `last audit ${formatTime(j.lastAudit)}${j.missed ? `, ${j.missed} found changes the journal missed (the last at ${formatTime(j.lastMissed!)})` : ', nothing missed'}` : 'no audit yet';
      if (j.state === 'off') {
        out.push(`  journal ${member}: off (every ${j.replica ? 'writes check' : 'snapshot'} walks in full)`);
        continue;
      }
      const backoff = j.retryAt !== null && j.retryAt !== undefined ? `; out of watches: not tried again before ${formatTime(j.retryAt)}` : '';
      out.push(`  journal ${member}${j.replica ? ' (replica)' : ''}: ${j.state === 'live' ? 'live' : `audit due${j.reason ? ` (${j.reason})` : ''}`}, ${j.watches} watches${backoff}; ${audit}`);
    }
    for (const w of v.splitBrains ?? []) {
      // With the site both took the volume over from: a sibling that took it over first; without: a primary learned otherwise (handed by a failback, named by an old primary at a failover)
      const how = w.oldPrimary ? `it took ${v.name} over from ${w.oldPrimary} first, and both are primary` : `both are primary of ${v.name}`;
      out.push(`  split brain with ${w.name} (${w.volume} there): ${how} (known here since ${formatTime(w.since)}); each keeps its writes`);
      out.push(`    ferry picks no winner: the site that yields keeps what it needs (its snapshots: \`ferry restore\`), removes ${v.name} (\`ferry volume remove ${v.name} --force\`: its snapshots go with it) and is mirrored anew from the other (\`ferry mirror create\` and \`initialize\` there); this record goes once one follows the other (docs/dr.md, "Several secondaries")`);
    }
    if (v.secondary) {
      const s = v.secondary;
      out.push(`  secondary of ${s.source}:${s.sourceVolume}  applied ${s.applied ?? '-'}  consistent ${s.consistent}${s.applying ? `  applying ${s.applying}` : ''}${s.state && s.state !== 'active' ? `  ${s.state}` : ''}`);
      if (s.applying && s.applyError) out.push(`    the apply of ${s.applying} failed: ${s.applyError.code}: ${s.applyError.message}`);
      if (s.notice?.state === 'pending') {
        out.push(`    ${s.source} not told yet of the failover (it may still be primary and writing): ${s.notice.attempts} attempt(s), the last at ${formatTime(s.notice.lastAttemptAt)}${s.notice.lastError ? `: ${s.notice.lastError}` : ''}; the daemon keeps trying, and \`ferry failover ${v.name}\` tries now`);
      }
      // This site took the volume over: it has no mirror to fail back over, the old primary has.
      if (s.divergence) out.push(...renderDivergence(s.divergence, '    ', `for ${s.source} to yield, run \`ferry failback ${s.sourceVolume}\` there (its writes are kept in a snapshot there); for this site to yield, keep what it needs (\`ferry restore\`), remove ${v.name} here (\`ferry volume remove ${v.name} --force\`: its snapshots go with it) and have ${s.source} mirror it here anew`));
    }
    if (v.workflow) {
      const w = v.workflow;
      out.push(`  ${w.kind} in progress: last completed step ${w.step} (started ${formatTime(w.startedAt)})${w.error ? `; stopped on ${w.error.code}: ${w.error.message}` : ''}`);
    }
    for (const m of v.mirrors) {
      const state = m.paused && m.state !== 'paused' ? `${m.state} (paused)` : m.state;
      out.push(`  -> ${m.peer}:${m.remoteVolume}  ${state}  health ${m.health.toUpperCase()}  lag ${m.lagSeconds === null ? '-' : formatDuration(m.lagSeconds * 1000)} (max ${formatDuration(m.maxDelayS * 1000)})`);
      out.push(`     base ${m.base ?? '-'}  next run ${m.nextRunAt ? formatTime(m.nextRunAt) : m.scheduleS ? 'after baseline' : 'manual'}`);
      if (m.lastTransfer) {
        const t = m.lastTransfer;
        out.push(`     last transfer ${formatBytes(t.bytes)} in ${t.objects} objects, ${formatDuration(t.seconds * 1000)}, ${formatRate(t.throughput)} at ${formatTime(t.at)}`);
        const phases = Object.entries(t.phases ?? {});
        const here = phases.filter(([k]) => !k.includes('.')).map(([k, v]) => `${k} ${formatDuration(v * 1000)}`);
        const there = phases.filter(([k]) => k.startsWith('destination.')).map(([k, v]) => `${k.slice('destination.'.length)} ${formatDuration(v * 1000)}`);
        const cost = [t.roundTrips !== undefined ? `${t.roundTrips} round trips` : '', t.cpuSeconds !== undefined ? `CPU ${formatDuration(t.cpuSeconds * 1000)}` : ''].filter(Boolean);
        if (cost.length || here.length) out.push(`     ${[...cost, ...here].join(', ')}`);
        if (there.length) out.push(`     at ${m.peer}: ${there.join(', ')}`);
        if (t.link || t.fit) {
          const l = t.link ?? {};
          const figures = [l.whole ? `whole ${formatRate(l.whole.bytesPerSecond)}` : '', l.delta ? `deltas ${formatRate(l.delta.bytesPerSecond)}` : '', l.rttMs !== undefined ? `round trip ${formatDuration(l.rttMs)}` : ''].filter(Boolean);
          const way = t.fit ? (t.fit.deltas ? `sent deltas (${t.deltas ?? 0})` : 'sent whole objects') : '';
          out.push(`     link ${figures.length ? figures.join(', ') : 'not measured'}${way ? `; ${way}` : ''}${m.deltas !== 'auto' ? ` (deltas ${m.deltas})` : ''}`);
        }
      }
      if (m.progress) {
        const p = m.progress;
        out.push(`     ${p.phase}: ${formatBytes(p.bytesSent)}/${formatBytes(p.bytesTotal)} ${formatRate(p.rate)}${p.etaSeconds !== null ? ` ETA ${formatDuration(p.etaSeconds * 1000)}` : ''}`);
      }
      if (m.healthReasons.length) out.push(`     warn: ${m.healthReasons.join('; ')}`);
      if (m.lastError) out.push(`     last error: ${m.lastError.code}: ${m.lastError.message}`);
      if (m.divergence) out.push(...renderDivergence(m.divergence, '     ', `for this site to yield, run \`ferry failback ${v.name} --to ${m.peer}\` here (its writes are kept in a snapshot); for ${m.peer} to yield, it keeps what it needs and removes ${m.remoteVolume} there (\`ferry volume remove ${m.remoteVolume} --force\`, then its files moved away: they stay where they were), then this site mirrors it anew (\`ferry mirror remove ${v.name} --to ${m.peer}\`, \`ferry mirror create\`, \`ferry mirror initialize\`)`));
    }
  }
  if (r.links.length) {
    out.push('');
    out.push('links:');
    for (const l of r.links) out.push(`  ${l.path}  ${l.volume}:${l.member}@${l.snapshot}  age ${formatDuration(l.ageSeconds * 1000)} (max ${formatDuration(l.maxDelayS * 1000)})  health ${l.health.toUpperCase()}`);
  }
  return out.join('\n') + '\n';
}

export function register(program: Command, g: () => GlobalOptions): void {
  program
    .command('status')
    .description('sites, volumes, mirrors: state, health, lag, last transfer, progress, next run, last error')
    .option('--watch [seconds]', 'refresh until interrupted')
    .action(async (o: { watch?: string | boolean }) => {
      const every = typeof o.watch === 'string' ? parseDuration(o.watch, DURATION.watch, '--watch') * 1000 : 2000;
      const once = async () => (await invoke(g(), 'status', {})) as StatusReport;
      if (!o.watch) {
        const r = await once();
        return g().json ? printJson(r) : void process.stdout.write(render(r));
      }
      for (;;) {
        const r = await once();
        if (g().json) process.stdout.write(JSON.stringify(r) + '\n');
        else process.stdout.write(`\x1b[2J\x1b[H${render(r)}`);
        await new Promise((res) => setTimeout(res, every));
      }
    });
}
