// Retention: which snapshots of a volume to keep. Pure: the caller supplies
// the snapshots, the policy and nothing else. Like restic's `forget`:
// keep the newest N, and the newest snapshot in each of the last N hours,
// days, weeks, months, years that have snapshots. Named snapshots, held
// snapshots (mirror bases, peer snapshots) and the newest snapshot are
// always kept; an empty policy keeps everything.
import { checkCount, COUNT } from '../core/units.ts';
import { FerryError } from '../core/errors.ts';

export interface RetentionPolicy {
  last?: number;
  hourly?: number;
  daily?: number;
  weekly?: number;
  monthly?: number;
  yearly?: number;
}

const KEYS = ['last', 'hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const;

export function parseRetention(p: unknown): RetentionPolicy {
  if (p === null || typeof p !== 'object' || Array.isArray(p)) throw new FerryError('CONFIG_INVALID', 'retention must be an object like {"last": 10, "daily": 7}');
  const out: RetentionPolicy = {};
  for (const [k, v] of Object.entries(p)) {
    if (!(KEYS as readonly string[]).includes(k)) throw new FerryError('CONFIG_INVALID', `unknown retention rule ${k}: use ${KEYS.join(', ')}`);
    checkCount(v, COUNT.retention, `retention ${k}`, 'CONFIG_INVALID');
    if ((v as number) > 0) out[k as (typeof KEYS)[number]] = v as number;
  }
  return out;
}

export function isEmptyPolicy(p: RetentionPolicy): boolean {
  return KEYS.every((k) => !p[k]);
}

export interface RetentionCandidate {
  id: string;
  time: number;
  name: string | null;
  held: boolean;
  /**
   * The site's own order (greater: recorded later). When every candidate has one, "newest" and
   * "last N" follow it rather than the times, which for snapshots taken at other sites were read
   * on other clocks; the hourly, daily, ... buckets still go by each snapshot's time.
   */
  order?: number;
}

export interface RetentionDecision {
  keep: Array<{ id: string; reasons: string[] }>;
  remove: string[];
}

function bucket(kind: Exclude<(typeof KEYS)[number], 'last'>, t: number): string {
  const d = new Date(t);
  switch (kind) {
    case 'hourly':
      return d.toISOString().slice(0, 13);
    case 'daily':
      return d.toISOString().slice(0, 10);
    case 'weekly': {
      // ISO week: Thursday of the week decides the year.
      const day = (d.getUTCDay() + 6) % 7;
      const thursday = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() - day + 3));
      const yearStart = Date.UTC(thursday.getUTCFullYear(), 0, 1);
      const week = 1 + Math.floor((thursday.getTime() - yearStart) / (7 * 86_400_000));
      return `${thursday.getUTCFullYear()}-W${week}`;
    }
    case 'monthly':
      return d.toISOString().slice(0, 7);
    case 'yearly':
      return d.toISOString().slice(0, 4);
  }
}

export function applyRetention(snapshots: RetentionCandidate[], policy: RetentionPolicy): RetentionDecision {
  const byOrder = snapshots.length > 0 && snapshots.every((s) => s.order !== undefined);
  const sorted = [...snapshots].sort((a, b) => (byOrder ? b.order! - a.order! : 0) || b.time - a.time || (a.id < b.id ? 1 : -1));
  const reasons = new Map<string, string[]>();
  const add = (id: string, r: string) => {
    const l = reasons.get(id);
    if (l) l.push(r);
    else reasons.set(id, [r]);
  };
  if (isEmptyPolicy(policy)) {
    for (const s of sorted) add(s.id, 'no retention policy');
  } else {
    sorted.forEach((s, i) => {
      if (i === 0) add(s.id, 'newest');
      if (s.name !== null) add(s.id, 'named');
      if (s.held) add(s.id, 'held');
      if (policy.last && i < policy.last) add(s.id, `last ${policy.last}`);
    });
    for (const kind of ['hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const) {
      const n = policy[kind];
      if (!n) continue;
      // The newest snapshot of each bucket (in the order above: with snapshots of several sites,
      // one bucket's snapshots need not be next to each other).
      const seen = new Set<string>();
      for (const s of sorted) {
        if (seen.size >= n) break;
        const key = bucket(kind, s.time);
        if (!seen.has(key)) {
          add(s.id, `${kind} ${key}`);
          seen.add(key);
        }
      }
    }
  }
  const keep: RetentionDecision['keep'] = [];
  const remove: string[] = [];
  for (const s of sorted) {
    const r = reasons.get(s.id);
    if (r) keep.push({ id: s.id, reasons: r });
    else remove.push(s.id);
  }
  return { keep, remove };
}
