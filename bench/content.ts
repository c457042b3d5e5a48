// File contents for the benchmark: incompressible bytes and log-like text.
//
// Text lines come from a fixed vocabulary and a few line templates
// (timestamped log lines with key=value pairs, short prose). Writing them byte
// by byte in JavaScript runs at only ~40 MB/s, so a per-seed pool of 16 MiB of
// such lines is built once (LinePool) and files are filled by copying
// randomly chosen pool lines and stamping each log line with a fresh,
// advancing timestamp (TextSource, several hundred MB/s). zstd at its default
// level compresses the result about 3.2x (1 MiB pieces). Line runs are chosen
// at random per file, so no two files share chunk-sized runs of text.

import { Rng } from './prng.ts';

const VOCABULARY = (
  'the of and to in is for on that with as by at from it be this are was or an ' +
  'which not have has can will all more one new data file time user system ' +
  'server request response error value table index record update delete insert ' +
  'select query cache block chunk volume snapshot mirror replica primary secondary ' +
  'network socket stream buffer packet header payload length offset size count ' +
  'start stop begin end open close read write sync flush commit rollback retry ' +
  'timeout latency throughput bandwidth memory disk storage backup restore archive ' +
  'config option setting default path directory folder name type mode owner group ' +
  'permission access denied granted allowed failed success warning notice debug ' +
  'trace info level event message queue worker thread process task job schedule ' +
  'daily hourly minute second host node cluster service instance container image ' +
  'deploy release version build test check verify hash digest signature key token ' +
  'session login logout account customer order invoice payment price amount total ' +
  'report summary detail item list entry field column row page view client agent ' +
  'browser mobile desktop device sensor metric gauge counter histogram sample rate ' +
  'alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega north south ' +
  'east west river mountain forest ocean island valley city village street market ' +
  'garden window kitchen table chair paper letter number word sentence paragraph ' +
  'chapter story history science music picture color green blue red yellow black ' +
  'white large small quick slow early late first last next previous current local ' +
  'remote global internal external public private shared static dynamic virtual'
).split(' ');

const LEVELS = ['INFO ', 'INFO ', 'INFO ', 'DEBUG', 'DEBUG', 'WARN ', 'ERROR'];
const SERVICES = ['api', 'auth', 'billing', 'catalog', 'gateway', 'indexer', 'mailer', 'scheduler',
  'search', 'storage', 'worker', 'frontend'];
const KEYS = ['user', 'id', 'size', 'took', 'status', 'path', 'host', 'retries', 'bytes', 'items'];
const METHODS = ['GET', 'GET', 'GET', 'POST', 'PUT', 'DELETE'];
const USERS = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan', 'judy',
  'mallory', 'oscar', 'peggy', 'trent', 'victor', 'walter'];

const enc = new TextEncoder();
const ENC_WORDS = VOCABULARY.map((w) => enc.encode(w));
const ENC_LEVELS = LEVELS.map((w) => enc.encode(w));
const ENC_SERVICES = SERVICES.map((w) => enc.encode(w));
const ENC_KEYS = KEYS.map((w) => enc.encode(w));
const ENC_METHODS = METHODS.map((w) => enc.encode(w));
const ENC_USERS = USERS.map((w) => enc.encode(w));
const ENC_API = enc.encode(' /api/v1/');

/** Writes log-like text into buffers byte by byte (slow; used to build the pool). */
class TextWriter {
  private readonly rng: Rng;
  private clockMs: number;
  private buf: Uint8Array = new Uint8Array(0);
  private pos = 0;

  constructor(rng: Rng) {
    this.rng = rng;
    // Somewhere in 2024, in milliseconds.
    this.clockMs = 1704067200000 + rng.int(0, 365 * 86400) * 1000;
  }

  /** Fills buf completely; the last line may be cut at the end of the buffer. */
  fill(buf: Uint8Array): void {
    this.buf = buf;
    this.pos = 0;
    const rng = this.rng;
    while (this.pos < buf.length) {
      const r = rng.next();
      const kind = r & 7;
      if (kind < 6) this.logLine(r >>> 3);
      else this.proseLine();
    }
  }

  private put(bytes: Uint8Array): void {
    const buf = this.buf;
    let p = this.pos;
    const n = Math.min(bytes.length, buf.length - p);
    for (let i = 0; i < n; i++) buf[p++] = bytes[i];
    this.pos = p;
  }

  private byte(c: number): void {
    if (this.pos < this.buf.length) this.buf[this.pos++] = c;
  }

  private digits(value: number, width: number): void {
    for (let i = width - 1; i >= 0; i--) {
      const p = this.pos + i;
      if (p < this.buf.length) this.buf[p] = 48 + (value % 10);
      value = Math.floor(value / 10);
    }
    this.pos = Math.min(this.pos + width, this.buf.length);
  }

  private number(value: number): void {
    let width = 1;
    for (let v = value; v >= 10; v = Math.floor(v / 10)) width++;
    this.digits(value, width);
  }

  /** A vocabulary word with a skewed (roughly Zipf-like) choice: common words recur. */
  private word(): void {
    const f = this.rng.float();
    this.put(ENC_WORDS[Math.floor(f * f * f * ENC_WORDS.length)]);
  }

  private timestamp(): void {
    this.clockMs += this.rng.int(0, 250);
    const d = new Date(this.clockMs);
    this.digits(d.getUTCFullYear(), 4); this.byte(45);
    this.digits(d.getUTCMonth() + 1, 2); this.byte(45);
    this.digits(d.getUTCDate(), 2); this.byte(84);
    this.digits(d.getUTCHours(), 2); this.byte(58);
    this.digits(d.getUTCMinutes(), 2); this.byte(58);
    this.digits(d.getUTCSeconds(), 2); this.byte(46);
    this.digits(d.getUTCMilliseconds(), 3); this.byte(90);
  }

  private logLine(r: number): void {
    const rng = this.rng;
    this.timestamp();
    this.byte(32);
    this.put(ENC_LEVELS[r % ENC_LEVELS.length]);
    this.byte(32);
    this.byte(91);
    this.put(ENC_SERVICES[(r >>> 4) % ENC_SERVICES.length]);
    this.byte(45);
    this.number((r >>> 8) % 16);
    this.byte(93);
    this.byte(32);
    if ((r >>> 12) % 3 === 0) {
      this.put(ENC_METHODS[(r >>> 14) % ENC_METHODS.length]);
      this.put(ENC_API);
      this.word();
      this.byte(47);
      this.number(rng.int(1, 99999));
      this.byte(32);
    }
    const words = 3 + ((r >>> 17) % 6);
    for (let i = 0; i < words; i++) {
      this.word();
      this.byte(32);
    }
    const pairs = 1 + ((r >>> 20) % 3);
    for (let i = 0; i < pairs; i++) {
      const k = rng.next() % ENC_KEYS.length;
      this.put(ENC_KEYS[k]);
      this.byte(61);
      if (k === 0) this.put(ENC_USERS[rng.next() % ENC_USERS.length]);
      else if (k === 4) this.number([200, 200, 200, 201, 204, 304, 404, 500][rng.next() & 7]);
      else this.number(rng.int(0, k === 1 ? 999999 : 9999));
      this.byte(i + 1 < pairs ? 32 : 10);
    }
  }

  private proseLine(): void {
    const words = 6 + (this.rng.next() % 14);
    for (let i = 0; i < words; i++) {
      this.word();
      this.byte(i + 1 < words ? 32 : 46);
    }
    this.byte(10);
  }
}

const POOL_BYTES = 16 << 20;

/** A fixed body of text lines, one per seed, that TextSource samples from. */
class LinePool {
  readonly bytes: Uint8Array;
  /** Start offset of every complete line; starts[n] is the end of the last one. */
  readonly starts: Uint32Array;
  readonly lines: number;

  constructor(seed: number) {
    const raw = new Uint8Array(POOL_BYTES);
    new TextWriter(new Rng(seed, 'text-pool')).fill(raw);
    const starts: number[] = [0];
    for (let i = 0; i < raw.length; i++) if (raw[i] === 10) starts.push(i + 1);
    this.bytes = raw;
    this.starts = Uint32Array.from(starts);
    this.lines = starts.length - 1;
  }
}

const pools = new Map<number, LinePool>();

function poolFor(seed: number): LinePool {
  let pool = pools.get(seed);
  if (!pool) {
    pool = new LinePool(seed);
    pools.set(seed, pool);
  }
  return pool;
}

const DIGIT_0 = 48;

/** Fast log-like text: pool lines in a random order, each log line with its own timestamp. */
export class TextSource {
  private readonly rng: Rng;
  private readonly pool: LinePool;
  private clockMs: number;
  private readonly stamp = new Uint8Array(23);
  private stampSecond = -1;

  constructor(seed: number, rng: Rng) {
    this.rng = rng;
    this.pool = poolFor(seed);
    this.clockMs = 1704067200000 + rng.int(0, 365 * 86400) * 1000;
  }

  private renderStamp(): void {
    const second = Math.floor(this.clockMs / 1000);
    if (second !== this.stampSecond) {
      const iso = new Date(second * 1000).toISOString(); // 2024-07-27T07:52:26.000Z
      for (let i = 0; i < 20; i++) this.stamp[i] = iso.charCodeAt(i);
      this.stampSecond = second;
    }
    const ms = this.clockMs % 1000;
    this.stamp[20] = DIGIT_0 + Math.floor(ms / 100);
    this.stamp[21] = DIGIT_0 + (Math.floor(ms / 10) % 10);
    this.stamp[22] = DIGIT_0 + (ms % 10);
  }

  /**
   * Fills buf completely; the last line may be cut at the end of the buffer.
   * Copies runs of 1-8 consecutive pool lines (one native copy per run), then
   * stamps every log line of the run with the advancing clock.
   */
  fill(buf: Uint8Array): void {
    const { bytes, starts, lines } = this.pool;
    const rng = this.rng;
    const stamp = this.stamp;
    let pos = 0;
    while (pos < buf.length) {
      const r = rng.next();
      const first = r % (lines - 8);
      const run = 1 + ((r >>> 28) & 7);
      const from = starts[first];
      const to = Math.min(starts[first + run], from + (buf.length - pos));
      buf.set(bytes.subarray(from, to), pos);
      for (let l = first; l < first + run; l++) {
        const at = starts[l];
        if (at + 23 > to) break;
        if (bytes[at] !== 50) continue; // not a log line ('2' of the year)
        this.clockMs += (r >>> (l - first) * 3) & 127;
        this.renderStamp();
        const p = pos + (at - from);
        for (let i = 0; i < 23; i++) buf[p + i] = stamp[i];
      }
      pos += to - from;
    }
  }
}

/** Kind of content of a file or region. */
export type ContentKind = 'random' | 'text';

/** Fills buf with content of the given kind; text needs the TextSource of the same stream. */
export function fillContent(kind: ContentKind, rng: Rng, text: TextSource, buf: Uint8Array): void {
  if (kind === 'random') rng.fillRandom(buf);
  else text.fill(buf);
}
