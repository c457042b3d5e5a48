// What a failing run leaves behind: its action log (replayed exactly, with the fault proxies, by
// `npm run soak -- --replay FILE`), the action list shrunk while the violation still shows (by
// replaying parts of it from scratch: dropping chunks, halves first), and a reproduction script:
// the same actions as plain `ferry` commands and file operations, for a person to read and run.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './harness.ts';
import { VOLUMES, memberDirRel, type Op } from './actions.ts';
import type { Violation } from './checker.ts';
import { runSoak, setupOps, SITE_NAMES, type LogEntry } from './run.ts';
import { SOAK_ENV, SITE_FS_MIB } from './world.ts';

export interface LogFile {
  seed: number;
  sites: number;
  /** the steps' actions, in order (the setup is made again from seed and sites) */
  ops: Op[];
}

/**
 * Shrink the actions up to a violation: replay parts of the list from scratch and keep a part that
 * still shows a violation of the same check (ddmin: chunks of a half, then quarters, ...), within
 * `budgetMs`. Returns the shortest list found (the input if nothing smaller reproduces). `replay`
 * runs a list and returns its violations: by default a soak from scratch (runSoak) on real daemons.
 */
export async function shrink(o: {
  seed: number;
  sites: number;
  ops: Op[];
  violation: Violation;
  budgetMs: number;
  checkEvery?: number;
  print?: (s: string) => void;
  replay?: (ops: Op[]) => Promise<Violation[]>;
}): Promise<{ ops: Op[]; replays: number }> {
  const until = Date.now() + o.budgetMs;
  let cur = o.ops.slice(0, o.violation.step > 0 ? o.violation.step : o.ops.length);
  let replays = 0;
  const reproduces = async (cand: Op[]): Promise<boolean> => {
    replays++;
    const violations = o.replay ? await o.replay(cand) : (await runSoak({ seed: o.seed, sites: o.sites, replay: cand, checkEvery: o.checkEvery })).violations;
    const hit = violations.some((v) => v.check === o.violation.check);
    o.print?.(`  shrink: ${cand.length} actions -> ${hit ? 'reproduces' : 'no'} (${violations.map((v) => v.check).join(', ') || 'no violation'})`);
    return hit;
  };
  let n = 2;
  while (Date.now() < until && cur.length > 1) {
    const chunk = Math.ceil(cur.length / n);
    let reduced = false;
    for (let start = 0; start < cur.length && Date.now() < until; start += chunk) {
      const cand = [...cur.slice(0, start), ...cur.slice(start + chunk)];
      if (cand.length === 0) continue;
      if (await reproduces(cand)) {
        cur = cand;
        n = Math.max(n - 1, 2);
        reduced = true;
        break;
      }
    }
    if (!reduced) {
      if (n >= cur.length) break;
      n = Math.min(cur.length, n * 2);
    }
  }
  return { ops: cur, replays };
}

const q = (s: string) => (/^[A-Za-z0-9_./:=@+-]+$/.test(s) ? s : `'${s.replaceAll("'", "'\\''")}'`);

/** A placeholder argument as shell (`{dir}` is the site's directory; a pick is resolved by fileop.ts when the line runs). */
function shellArg(site: string, a: string, picks: string[]): string {
  if (a.includes('{dir}')) return `"${a.replaceAll('{dir}', `\${DIR[${site}]}`)}"`;
  const m = /^\{([a-z-]+):([^}]*)\}$/.exec(a);
  if (!m) return q(a);
  const [, kind, rest] = m;
  if (kind === 'url') return `https://127.0.0.1:\${PORT[${rest}]}`;
  if (kind === 'id') return `\${ID[${rest}]}`;
  const [volume, n] = kind === 'link' ? ['-', rest] : rest.split(':');
  const v = `P${picks.length}`;
  picks.push(`${v}=$($FILEOP pick "\${DIR[${site}]}/home" ${kind} ${volume} ${n})`);
  return `"$${v}"`;
}

function opLines(op: Op): string[] {
  switch (op.kind) {
    case 'ferry': {
      const picks: string[] = [];
      const args = op.args.map((a) => shellArg(op.site, a, picks)).join(' ');
      const pre = picks.length ? `${picks.join(' && ')} && ` : '';
      const a = op.along;
      if (a?.killCliAfterMs !== undefined) return [`${pre}f_kill ${(a.killCliAfterMs / 1000).toFixed(3)} ${op.site} ${args}`];
      const lines: string[] = [];
      if (a?.killDaemon) lines.push(`(sleep ${(a.killDaemon.afterMs / 1000).toFixed(3)}; kill_daemon ${a.killDaemon.site}) &  # fault: kill -9 of ${a.killDaemon.site}'s daemon during the next command`);
      if (a?.cutLink) lines.push(`# fault: link ${a.cutLink.from}>${a.cutLink.to} cut ${a.cutLink.afterMs} ms into the next command (the soak's proxy; --replay does it)`);
      lines.push(`${pre}f ${op.site} ${args}`);
      if (a?.killDaemon) lines.push('wait');
      return lines;
    }
    case 'write': {
      return [`M=$($FILEOP member "\${DIR[${op.site}]}/home" ${op.volume} ${op.member}) && $FILEOP write $M ${op.op} ${op.pick} ${op.size} ${q(op.seed)}`];
    }
    case 'seed-data': {
      const v = VOLUMES.find((x) => x.name === op.volume)!;
      return [`$FILEOP seed-data ${q(op.seed)} ${v.members.map((m) => `${m.kind}:\${DIR[${op.site}]}/${memberDirRel(v.name, m)}`).join(' ')}`];
    }
    case 'kill-daemon':
      return [`kill_daemon ${op.site}  # down for ${op.downSteps} step(s)`];
    case 'link':
      return [`# fault: link ${op.from}>${op.to} ${op.fault}${op.rate ? ` ${op.rate} B/s` : ''}${op.ms ? ` ${op.ms} ms` : ''} for ${op.steps} step(s) (the soak's proxy; --replay does it)`];
    case 'disk-full':
      return [`disk_full ${op.site} ${op.freeKiB}  # for ${op.steps} step(s)`];
    case 'clock':
      return [`OFF[${op.site}]=${op.offsetMs}; [ -n "\${PID[${op.site}]:-}" ] && kill -0 \${PID[${op.site}]} 2>/dev/null && restart_daemon ${op.site}  # clock step`];
  }
}

/** The reproduction script of a run's setup and actions. */
export function renderScript(o: { seed: number; sites: number; ops: Op[]; violation?: Violation; logFile?: string }): string {
  const names = SITE_NAMES.slice(0, o.sites);
  const lines = [
    '#!/usr/bin/env bash',
    `# ferry soak reproduction: seed ${o.seed}, ${o.sites} sites, ${o.ops.length} actions.`,
    ...(o.violation ? [`# It ended in: [${o.violation.check}] ${o.violation.message.split('\n')[0].slice(0, 300)}`] : []),
    `# Exact replay, with the soak's fault proxies and checker: npm run soak -- --replay ${o.logFile ?? 'LOG.json'}`,
    '# Here the sites talk directly (no proxy): link faults are comments. Run as root for the small',
    "# filesystems (full disks); otherwise they are plain directories. Each command's exit status is printed.",
    'set -u',
    `ROOT=\${ROOT:-${ROOT}}`,
    'FERRY="$ROOT/bin/ferry"',
    'FILEOP="$ROOT/node_modules/.bin/node $ROOT/test/soak/fileop.ts"',
    'T=$(mktemp -d /tmp/ferry-repro-XXXXXX)',
    `export ${Object.entries(SOAK_ENV).map(([k, v]) => `${k}=${v}`).join(' ')}`,
    'declare -A DIR PORT PID OFF ID',
    `n=0; for s in ${names.join(' ')}; do`,
    '  DIR[$s]=$T/$s; mkdir -p "${DIR[$s]}"',
    `  mount -t tmpfs -o size=${SITE_FS_MIB}m tmpfs "\${DIR[$s]}" 2>/dev/null || true`,
    '  PORT[$s]=$((27400 + RANDOM % 2000 + n)); n=$((n + 100)); OFF[$s]=0',
    '  ID[$s]=$("$FERRY" init --name $s --home "${DIR[$s]}/home" --json | "$ROOT/node_modules/.bin/node" -e \'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).id))\')',
    'done',
    'f() { local s=$1; shift; echo "+ [$s] ferry $*" >&2; FERRY_TEST_CLOCK_OFFSET_MS=${OFF[$s]} "$FERRY" "$@" --home "${DIR[$s]}/home"; echo "  -> exit $?" >&2; }',
    'f_kill() { local t=$1 s=$2; shift 2; echo "+ [$s] ferry $* (killed after ${t}s)" >&2; FERRY_TEST_CLOCK_OFFSET_MS=${OFF[$s]} "$FERRY" "$@" --home "${DIR[$s]}/home" & local p=$!; sleep "$t"; kill -9 $p 2>/dev/null; wait $p; echo "  -> exit $?" >&2; }',
    'start_daemon() {',
    '  FERRY_TEST_CLOCK_OFFSET_MS=${OFF[$1]} "$FERRY" serve --home "${DIR[$1]}/home" --listen 127.0.0.1:${PORT[$1]} --tick 500 >>"$T/$1.log" 2>&1 & PID[$1]=$!',
    '  until [ -S "${DIR[$1]}/home/ferry.sock" ] && grep -q "\\"pid\\": *${PID[$1]}\\b" "${DIR[$1]}/home/daemon.json" 2>/dev/null; do sleep 0.2; done; sleep 0.5',
    '}',
    'kill_daemon() { kill -9 ${PID[$1]} 2>/dev/null; wait ${PID[$1]} 2>/dev/null; echo "+ killed the daemon of $1" >&2; }',
    'restart_daemon() { kill -TERM ${PID[$1]} 2>/dev/null; wait ${PID[$1]} 2>/dev/null; start_daemon $1; }',
    'disk_full() { local free=$(( $(stat -f -c "%a * %S" "${DIR[$1]}") - $2 * 1024 )); [ $free -gt 0 ] && fallocate -l $free "${DIR[$1]}/ballast.$RANDOM"; echo "+ disk of $1 full ($2 KiB left)" >&2; }',
    `for s in ${names.join(' ')}; do start_daemon $s; done`,
    '',
    '# setup',
    ...setupOps(o.seed, names).flatMap(opLines),
    '',
    '# the actions',
  ];
  // The soak heals by counting steps (actions.ts, heal): the same counts here.
  const down = new Map<string, number>();
  const disk = new Map<string, number>();
  o.ops.forEach((op, i) => {
    for (const [site, n] of [...disk]) {
      if (n - 1 <= 0) {
        lines.push(`rm -f "\${DIR[${site}]}"/ballast.*  # space again`);
        disk.delete(site);
      } else disk.set(site, n - 1);
    }
    for (const [site, n] of [...down]) {
      if (n <= 0) {
        lines.push(`start_daemon ${site}`);
        down.delete(site);
      } else down.set(site, n - 1);
    }
    lines.push(`# step ${i + 1}`, ...opLines(op));
    if (op.kind === 'kill-daemon' && !down.has(op.site)) down.set(op.site, op.downSteps);
    if (op.kind === 'ferry' && op.along?.killDaemon && !down.has(op.along.killDaemon.site)) down.set(op.along.killDaemon.site, op.along.killDaemon.downSteps);
    if (op.kind === 'disk-full') disk.set(op.site, Math.max(disk.get(op.site) ?? 0, op.steps));
  });
  lines.push('', `echo "sites under $T (daemons ${names.map((n) => `\${PID[${n}]}`).join(' ')} still run); logs: $T/*.log" >&2`);
  return lines.join('\n') + '\n';
}

/** Write the log, the script and a report of a failing run into `dir`; returns the files. */
export function saveFailure(dir: string, o: { seed: number; sites: number; ops: Op[]; log: LogEntry[]; violation: Violation; shrunk?: Op[]; report: string }): { log: string; script: string; shrunkLog?: string; shrunkScript?: string } {
  mkdirSync(dir, { recursive: true });
  const log = join(dir, 'log.json');
  const script = join(dir, 'repro.sh');
  const full: LogFile = { seed: o.seed, sites: o.sites, ops: o.ops };
  writeFileSync(log, JSON.stringify(full, null, 1) + '\n');
  writeFileSync(script, renderScript({ seed: o.seed, sites: o.sites, ops: o.ops, violation: o.violation, logFile: log }), { mode: 0o755 });
  writeFileSync(join(dir, 'report.txt'), o.report);
  writeFileSync(join(dir, 'steps.txt'), o.log.map((e) => `${e.step ? String(e.step).padStart(4) : 'setup'} ${e.text}${e.healed ? `\n     (${e.healed.join('; ')})` : ''}${e.violations ? `\n     ${e.violations.join('\n     ')}` : ''}`).join('\n') + '\n');
  if (!o.shrunk) return { log, script };
  const shrunkLog = join(dir, 'shrunk.json');
  const shrunkScript = join(dir, 'shrunk.sh');
  const small: LogFile = { seed: o.seed, sites: o.sites, ops: o.shrunk };
  writeFileSync(shrunkLog, JSON.stringify(small, null, 1) + '\n');
  writeFileSync(shrunkScript, renderScript({ seed: o.seed, sites: o.sites, ops: o.shrunk, violation: o.violation, logFile: shrunkLog }), { mode: 0o755 });
  return { log, script, shrunkLog, shrunkScript };
}

