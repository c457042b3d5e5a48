// The declarative site file (docs/config.md): the shape a validated file
// takes, its keys, and its defaults. One schema, used by `config check`,
// `config apply`, `config export` and the daemon's reload. This module is
// data only: it reads no file and touches no site.
import type { Hooks } from '../site/volumes.ts';
import type { RetentionPolicy } from '../snapshot/retention.ts';
import type { MemberKind } from '../snapshot/model.ts';
import type { DeltaMode } from '../core/units.ts';

export const CONFIG_VERSION = 1;

/** The file a site reads when no --config is given: <home>/ferry.yaml. */
export const DEFAULT_CONFIG_NAME = 'ferry.yaml';

/** Lines of the file: `_` is the object itself, other keys are its fields. */
export type Lines = Record<string, number>;

export interface ConfigIssue {
  /** 1-based line and column in the file (0 when the issue has no place in it) */
  line: number;
  col: number;
  /** where in the document, e.g. volumes.app.retention.daily */
  path: string;
  message: string;
  hint?: string;
}

export interface LogSettings {
  file: string;
  maxBytes: number | null;
  keep: number | null;
}

export interface SiteSettings {
  /** when given, apply refuses a file written for another site */
  name: string | null;
  listen: string | null;
  replicaRoot: string | null;
  log: LogSettings | null;
  /** the daemon's memory budget in bytes (serve --memory-budget wins over it) */
  memoryBudget: number | null;
  /** releasable bytes after which an automatic collection runs (0: after every release; null: the default) */
  gcThreshold: number | null;
  lines: Lines;
}

export interface MemberConfig {
  name: string | null;
  kind: MemberKind | null;
  /** absolute (relative paths in the file are taken from the file's directory) */
  path: string;
  lines: Lines;
}

export interface VolumeConfig {
  name: string;
  secondary: boolean;
  members: MemberConfig[];
  hooks: Hooks;
  retention: RetentionPolicy;
  /** the daemon's change journal watches the volume (default: true) */
  journal: boolean;
  lines: Lines;
}

export interface MirrorConfig {
  volume: string;
  /** the paired site */
  to: string;
  remoteVolume: string;
  scheduleS: number | null;
  minDelayS: number;
  maxDelayS: number;
  bandwidth: number | null;
  /** how changed chunks go (default auto) */
  deltas: DeltaMode;
  lines: Lines;
}

export interface LinkConfig {
  path: string;
  volume: string;
  member: string | null;
  snapshot: string;
  scheduleS: number | null;
  minDelayS: number;
  maxDelayS: number;
  lines: Lines;
}

export interface SiteConfig {
  version: number;
  /** the file it came from (absolute), for messages */
  file: string;
  site: SiteSettings;
  volumes: VolumeConfig[];
  mirrors: MirrorConfig[];
  links: LinkConfig[];
}

// The keys each object accepts, in the order export writes them.
export const TOP_KEYS = ['version', 'site', 'volumes', 'mirrors', 'links'] as const;
export const SITE_KEYS = ['name', 'listen', 'replicaRoot', 'log', 'memoryBudget', 'gcThreshold'] as const;
export const LOG_KEYS = ['file', 'maxSize', 'keep'] as const;
export const VOLUME_KEYS = ['secondary', 'members', 'hooks', 'retention', 'journal'] as const;
export const MEMBER_KEYS = ['path', 'name', 'kind'] as const;
export const HOOKS_KEYS = ['pre', 'post'] as const;
export const HOOK_KEYS = ['command', 'timeout'] as const;
export const RETENTION_KEYS = ['last', 'hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const;
export const MIRROR_KEYS = ['volume', 'to', 'remoteVolume', 'schedule', 'minDelay', 'maxDelay', 'bandwidth', 'deltas'] as const;
export const LINK_KEYS = ['path', 'volume', 'member', 'snapshot', 'schedule', 'minDelay', 'maxDelay'] as const;

/** Defaults: the same as the CLI's (`mirror create`, `link create`, `volume create --pre`). */
export const DEFAULTS = {
  hookTimeoutS: 60,
  mirror: { minDelayS: 0, maxDelayS: 3600 },
  link: { snapshot: 'latest', minDelayS: 0, maxDelayS: 86_400 },
  listen: '127.0.0.1:7420',
} as const;

/** Keys in the site's catalog meta table that the `site` section owns. */
export const META_KEYS = { listen: 'listen', replicaRoot: 'replica_root', logFile: 'log_file', logMaxBytes: 'log_max_bytes', logKeep: 'log_keep', memoryBudget: 'memory_budget', gcThreshold: 'gc_threshold' } as const;

/** Keys people write that belong elsewhere: a hint instead of a bare "unknown key". */
export const MISPLACED: Record<string, string> = {
  peers: 'sites are paired with `ferry site add NAME URL --id ID` on both sides, not declared in the file (docs/config.md, "Peers"); mirrors name a paired site with `to:`',
  peer: 'a mirror names its paired site with `to:`',
  site: 'a mirror names its paired site with `to:`',
  retention: 'retention belongs to a volume: the source side is the volume\'s `retention` here, the destination side is the secondary volume\'s `retention` in the destination site\'s own file',
  from: 'a link names its volume with `volume:`',
  members: 'members belong to a volume',
};
