// Structured logs: every event the site records (state transitions, transfers,
// failovers, hook runs, errors) is also one log line. JSON lines by default
// (for collectors); human-readable when the sink is a terminal; and, when
// configured, JSON lines to a file rotated by size (RotatingFileSink).
// A log sink never fails the work it describes: the event is already in the
// catalog, so a sink that cannot write says so once on stderr and carries on.
import { checkCount, checkSize, COUNT, humanBytes, humanDuration, humanRate, SIZE } from '../core/units.ts';
import { closeSync, existsSync, fstatSync, openSync, renameSync, rmSync, statSync, writeSync, fsyncSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { FerryError, wrapIoError } from '../core/errors.ts';
import type { Catalog } from '../catalog/catalog.ts';
import { eventsAfter, type EventRecord } from '../catalog/events.ts';
import { readMeta } from '../catalog/meta.ts';

export interface LogSink {
  write(line: string): void;
  isTTY?: boolean;
  close?(): void;
}

/** pino's level numbers (https://getpino.io), so log shippers and `pino-pretty` read ours. */
export const LEVELS = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 } as const;
export type LevelName = keyof typeof LEVELS;

const OUTCOME_LEVEL: Record<EventRecord['outcome'], number> = { ok: LEVELS.info, info: LEVELS.info, warning: LEVELS.warn, failed: LEVELS.error };

/**
 * One JSON log line: pino's `level`, `time` (ISO 8601, as pino's isoTime) and `msg`, the site, then
 * either the event (`event`: its catalog id, kind, volume, outcome) or, for a line of the daemon's own
 * that the catalog does not record, `notice` (what it is: daemon.listening, daemon.stopping, ...);
 * the fields of either under `details`. Nothing of the details is at the top level, so a detail can
 * never overwrite the event's kind (a workflow's `kind: failover`) or a field a shipper reads.
 */
export interface LogLine {
  level: number;
  time: string;
  site: string;
  msg: string;
  event?: { id?: number; kind: string; volume: string | null; outcome: EventRecord['outcome'] };
  notice?: string;
  details: Record<string, unknown>;
}

/** An event's one-line summary: its kind, volume, transition, reason, and the error's message when it failed. */
function eventMessage(e: EventRecord): string {
  const detail = e.detail ?? {};
  const transition = typeof detail.transition === 'string' ? ` ${detail.transition}` : '';
  const reason = typeof detail.reason === 'string' ? ` (${detail.reason})` : '';
  const err = detail.error as unknown;
  const error = typeof err === 'string' ? err : err && typeof err === 'object' && typeof (err as { message?: unknown }).message === 'string' ? (err as { message: string }).message : '';
  return `${e.kind}${e.volume ? ` ${e.volume}` : ''}${transition}${reason}${error ? ` failed: ${error.slice(0, 400)}` : ''}`;
}

/**
 * An event as one log line: JSON (LogLine) or, for a terminal, the human form. `id`: the event's id
 * in the catalog, when known.
 */
export function formatLogLine(site: string, at: number, e: EventRecord, human: boolean, id?: number): string {
  const detail = e.detail ?? {};
  if (!human) {
    const line: LogLine = {
      level: OUTCOME_LEVEL[e.outcome] ?? LEVELS.info,
      time: new Date(at).toISOString(),
      site,
      msg: eventMessage(e),
      event: { ...(id !== undefined ? { id } : {}), kind: e.kind, volume: e.volume ?? null, outcome: e.outcome },
      details: detail,
    };
    return JSON.stringify(line);
  }
  const transition = typeof detail.transition === 'string' ? ` ${detail.transition}` : '';
  const reason = typeof detail.reason === 'string' ? ` (${detail.reason})` : '';
  const rest = Object.entries(detail)
    .filter(([k]) => k !== 'transition' && k !== 'reason')
    .map(([k, v]) => `${k}=${humanValue(k, v)}`)
    .join(' ');
  return `${new Date(at).toISOString()} ${site} ${e.outcome.toUpperCase().padEnd(7)} ${e.kind}${e.volume ? ` ${e.volume}` : ''}${transition}${reason}${rest ? ` ${rest.slice(0, 400)}` : ''}`;
}

/**
 * A line of the daemon's own (listening, stopping, an error while stopping) that is not an event of
 * the catalog, as a JSON log line; a terminal gets `msg` alone (humanFromJsonLine).
 */
export function formatNotice(site: string, at: number, level: LevelName, notice: string, msg: string, details: Record<string, unknown> = {}): string {
  const line: LogLine = { level: LEVELS[level], time: new Date(at).toISOString(), site, msg, notice, details };
  return JSON.stringify(line);
}

/**
 * A detail value in the human form of an event: bytes, rates and durations (known by their key) with
 * the formatters people read elsewhere, any other fraction rounded; the JSON form keeps them exact.
 */
function humanValue(key: string, v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) {
    if (key === 'bytes' || key.endsWith('Bytes')) return humanBytes(v);
    if (key === 'throughput' || key === 'rate') return humanRate(v);
    if (key === 'seconds' || key.endsWith('Seconds')) return humanDuration(v * 1000);
    if (key === 'ms' || key.endsWith('Ms')) return humanDuration(v);
    return String(Number.isInteger(v) ? v : Number(v.toFixed(3)));
  }
  return JSON.stringify(v, (_k, x) => (typeof x === 'number' && !Number.isInteger(x) ? Number(x.toFixed(3)) : x));
}

const OUTCOMES = new Set<string>(['ok', 'info', 'warning', 'failed']);

/** The human form of one JSON log line (as formatLogLine or formatNotice made it); a line that is not one is returned as is. */
export function humanFromJsonLine(line: string): string {
  let o: Partial<LogLine>;
  try {
    o = JSON.parse(line) as Partial<LogLine>;
  } catch {
    return line;
  }
  if (!o || typeof o !== 'object' || typeof o.time !== 'string') return line;
  const nl = line.endsWith('\n') ? '\n' : '';
  const details = o.details && typeof o.details === 'object' && !Array.isArray(o.details) ? o.details : {};
  const ev = o.event;
  if (ev && typeof ev === 'object' && typeof ev.kind === 'string') {
    const outcome = OUTCOMES.has(ev.outcome as string) ? ev.outcome : 'info';
    return formatLogLine(String(o.site ?? ''), Date.parse(o.time), { kind: ev.kind, volume: typeof ev.volume === 'string' ? ev.volume : null, outcome, detail: details }, true) + nl;
  }
  if (typeof o.notice === 'string' && typeof o.msg === 'string') return o.msg + nl;
  return line;
}

/**
 * One sink that feeds several: the site formats each event once, as JSON (this
 * sink is not a TTY), and a terminal among the sinks gets the human form.
 */
export class LogFanout implements LogSink {
  readonly isTTY = false;
  readonly #sinks: LogSink[];
  constructor(sinks: LogSink[]) {
    this.#sinks = sinks;
  }
  write(line: string): void {
    for (const s of this.#sinks) s.write(s.isTTY ? humanFromJsonLine(line) : line);
  }
  close(): void {
    for (const s of this.#sinks) s.close?.();
  }
}

export interface RotatingFileOptions {
  /** rotate before a line would take the file past this many bytes (default 64 MiB) */
  maxBytes?: number;
  /** how many rotated files to keep: PATH.1 (newest) ... PATH.keep (default 5; 0 keeps none) */
  keep?: number;
  /** where the sink reports its own write failures (once per kind of failure); stderr by default */
  onError?: (message: string) => void;
}

export const DEFAULT_LOG_MAX_BYTES = 64 * 1024 * 1024;
export const DEFAULT_LOG_KEEP = 5;
export const MIN_LOG_MAX_BYTES = SIZE.logMaxSize.min;
export const MAX_LOG_KEEP = COUNT.logKeep.max;

/**
 * JSON lines appended to a file, rotated by size: PATH -> PATH.1 -> ... ->
 * PATH.keep, the oldest dropped, by rename (so a reader or shipper holding
 * PATH.1 open keeps reading whole lines). Every line goes out in one write
 * on an O_APPEND descriptor and a rotation happens only between lines, so no
 * line is split across files or lost at a rotation. No fsync per line (the
 * catalog is the durable record); a file is synced before it is rotated
 * away and when the sink closes. No SIGHUP is needed after an external
 * rotation (logrotate without copytruncate): each write checks that PATH is
 * still the file it has open and reopens it if not. New files are mode 0600.
 */
export class RotatingFileSink implements LogSink {
  readonly isTTY = false;
  readonly path: string;
  readonly maxBytes: number;
  readonly keep: number;
  #fd: number | undefined;
  #ino = 0;
  #dev = 0;
  #size = 0;
  readonly #onError: (message: string) => void;
  #lastError = '';

  constructor(path: string, options: RotatingFileOptions = {}) {
    this.path = path;
    this.maxBytes = options.maxBytes ?? DEFAULT_LOG_MAX_BYTES;
    this.keep = options.keep ?? DEFAULT_LOG_KEEP;
    this.#onError = options.onError ?? ((m) => process.stderr.write(`ferry: log file: ${m}\n`));
    checkSize(this.maxBytes, SIZE.logMaxSize, "the log file's maximum size");
    checkCount(this.keep, COUNT.logKeep, 'the number of rotated log files to keep');
    // At start, failures are the operator's to fix, so they are errors (later they are only reported).
    const dir = dirname(path);
    if (!existsSync(dir)) throw new FerryError('IO', `cannot write the log file ${path}: its directory ${dir} does not exist; create it (mode 0700) or choose another --log-file`);
    try {
      if (existsSync(path) && !statSync(path).isFile()) throw new FerryError('IO', `cannot write the log file ${path}: it exists and is not a regular file; choose another --log-file`);
      this.#open();
    } catch (err) {
      throw wrapIoError(err, `opening the log file ${path}`, { writing: true });
    }
  }

  #open(): void {
    const fd = openSync(this.path, 'a', 0o600);
    const st = fstatSync(fd);
    this.#fd = fd;
    this.#ino = st.ino;
    this.#dev = st.dev;
    this.#size = st.size;
  }

  #closeFd(sync: boolean): void {
    const fd = this.#fd;
    this.#fd = undefined;
    if (fd === undefined) return;
    try {
      if (sync) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  /** PATH is no longer the file we hold (moved or deleted by someone else): start a new one. */
  #stillOurs(): boolean {
    try {
      const st = statSync(this.path);
      return st.ino === this.#ino && st.dev === this.#dev;
    } catch {
      return false;
    }
  }

  /** PATH.(keep-1) -> PATH.keep, ..., PATH -> PATH.1, then a new PATH. */
  rotate(): void {
    this.#closeFd(true);
    // Files beyond keep (left by a larger keep before) are dropped first.
    for (let i = this.keep + 1; existsSync(`${this.path}.${i}`); i++) rmSync(`${this.path}.${i}`, { force: true });
    if (this.keep === 0) rmSync(this.path, { force: true });
    else {
      for (let i = this.keep - 1; i >= 1; i--) {
        if (existsSync(`${this.path}.${i}`)) renameSync(`${this.path}.${i}`, `${this.path}.${i + 1}`);
      }
      if (existsSync(this.path)) renameSync(this.path, `${this.path}.1`);
    }
    this.#open();
  }

  write(line: string): void {
    const buf = Buffer.from(line.endsWith('\n') ? line : `${line}\n`, 'utf8');
    try {
      if (this.#fd === undefined || !this.#stillOurs()) {
        this.#closeFd(false);
        this.#open();
      }
      // A line that alone exceeds the limit goes into a file of its own: never split.
      if (this.#size > 0 && this.#size + buf.length > this.maxBytes) this.rotate();
      let off = 0;
      while (off < buf.length) off += writeSync(this.#fd!, buf, off);
      this.#size += buf.length;
      this.#lastError = '';
    } catch (err) {
      const message = (err as Error).message;
      if (message !== this.#lastError) this.#onError(`cannot write ${this.path}: ${message}; events are still recorded in the catalog (\`ferry events\`)`);
      this.#lastError = message;
      // Drop the descriptor: the next line tries afresh (the directory may be back, the disk freed).
      try {
        this.#closeFd(false);
      } catch {
        // already unusable
      }
    }
  }

  close(): void {
    try {
      this.#closeFd(true);
    } catch {
      // nothing more to do
    }
  }
}

/** What `ferry serve` was told about the log file (flags win over the catalog's settings). */
export interface LogFileFlags {
  file?: string;
  maxBytes?: number;
  keep?: number;
}

/**
 * The log file settings in force: the flags, else the catalog's meta keys
 * `log_file` (relative to the site home), `log_max_bytes` and `log_keep`
 * (written by `ferry config apply`), else the defaults. No file: undefined.
 */
export function logFileSettings(cat: Catalog, home: string, flags: LogFileFlags): { path: string; maxBytes: number; keep: number } | undefined {
  const metaFile = readMeta(cat, 'log_file');
  const file = flags.file ?? (metaFile ? (isAbsolute(metaFile) ? metaFile : resolve(home, metaFile)) : undefined);
  if (!file) return undefined;
  const metaNumber = (key: string): number | undefined => {
    const v = readMeta(cat, key);
    if (v === undefined || v === '') return undefined;
    const n = Number(v);
    if (!Number.isInteger(n)) throw new FerryError('CONFIG_INVALID', `the catalog setting ${key} is ${JSON.stringify(v)}, not a whole number; fix it with \`ferry config apply\``);
    return n;
  };
  return { path: resolve(file), maxBytes: flags.maxBytes ?? metaNumber('log_max_bytes') ?? DEFAULT_LOG_MAX_BYTES, keep: flags.keep ?? metaNumber('log_keep') ?? DEFAULT_LOG_KEEP };
}

// ---- The event history, as one query for the CLI here and for paired peers (`ferry events --site`).

export type { EventRow, EventQuery, EventsPage, PeerEventsAnswer } from '../catalog/events.ts';
import type { EventRow, EventQuery, EventsPage } from '../catalog/events.ts';

/** At most this many events per call to a peer, and this many bytes of them. */
export const MAX_EVENTS_PER_CALL = 1000;
export const MAX_EVENTS_ANSWER_BYTES = 4 << 20;
/** An event whose detail is larger than this is sent with its detail cut (it is in the peer's own catalog whole). */
const MAX_EVENT_DETAIL_BYTES = 64 << 10;

/** Validate a peer's (or the CLI's) event query: a malformed one is refused whole, never guessed at. */
export function parseEventQuery(body: unknown): EventQuery {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new FerryError('PROTOCOL', 'an events query must be a JSON object');
  const b = body as Record<string, unknown>;
  const optString = (k: string, max: number): string | null => {
    const v = b[k];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'string' || v.length === 0 || v.length > max) throw new FerryError('PROTOCOL', `events query: ${k} must be a string of 1-${max} characters`);
    return v;
  };
  const optInt = (k: string, min: number, max: number): number | undefined => {
    const v = b[k];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new FerryError('PROTOCOL', `events query: ${k} must be a whole number from ${min} to ${max}`);
    return v;
  };
  const since = b.sinceSeconds;
  if (since !== undefined && since !== null && (typeof since !== 'number' || !Number.isFinite(since) || since < 0 || since > 100 * 365 * 86400)) {
    throw new FerryError('PROTOCOL', 'events query: sinceSeconds must be a non-negative number of seconds');
  }
  return {
    volume: optString('volume', 128),
    kind: optString('kind', 64),
    sinceSeconds: (since as number | null | undefined) ?? null,
    after: optInt('after', 0, Number.MAX_SAFE_INTEGER) ?? 0,
    limit: optInt('limit', 1, MAX_EVENTS_PER_CALL) ?? MAX_EVENTS_PER_CALL,
  };
}

/** Events in id order (the order they were recorded), filtered; at most `limit` (and MAX_EVENTS_ANSWER_BYTES of them). */
export function queryEvents(cat: Catalog, now: number, q: EventQuery): EventsPage {
  const limit = Math.min(q.limit ?? MAX_EVENTS_PER_CALL, MAX_EVENTS_PER_CALL);
  const since = q.sinceSeconds != null ? now - q.sinceSeconds * 1000 : 0;
  const rows = eventsAfter(cat, { after: q.after ?? 0, since, volume: q.volume ?? null, kind: q.kind ?? null, limit: limit + 1 });
  const events: EventRow[] = [];
  let bytes = 0;
  let more = rows.length > limit;
  for (const r of rows.slice(0, limit)) {
    let detail: Record<string, unknown>;
    try {
      detail = r.detail.length > MAX_EVENT_DETAIL_BYTES ? { truncated: true, detailBytes: r.detail.length } : (JSON.parse(r.detail) as Record<string, unknown>);
    } catch {
      detail = { unreadable: true };
    }
    const size = r.kind.length + (r.volume?.length ?? 0) + Math.min(r.detail.length, MAX_EVENT_DETAIL_BYTES) + 100;
    if (events.length > 0 && bytes + size > MAX_EVENTS_ANSWER_BYTES) {
      more = true;
      break;
    }
    bytes += size;
    events.push({ id: r.id, at: r.at, kind: r.kind, volume: r.volume, outcome: r.outcome, detail });
  }
  return { events, more };
}
