// Coverage guidance without native code: V8's precise block coverage, read
// through node:inspector in the fuzzing thread itself (a session on one's own
// thread answers synchronously).
//
// takePreciseCoverage returns, per function, nested source ranges with
// execution counts since the last call, and resets the counts. V8 drops a
// nested range whose count equals its parent's, so which ranges a block
// shows up in depends on the rest of the take (per input or per batch): the
// ranges are no stable key, and no stable count of blocks either. Instead,
// each take is painted onto the source: a position is reached when the
// innermost range holding it has a count above zero. An input is new when it
// reaches positions no earlier input reached. The figures are the source
// positions (characters of ferry's code) reached, and the functions reached
// (a function's own range is always reported, so that count is stable).
import { Session } from 'node:inspector';

interface Range {
  startOffset: number;
  endOffset: number;
  count: number;
}
interface ScriptCoverage {
  url: string;
  functions: Array<{ functionName: string; ranges: Range[]; isBlockCoverage: boolean }>;
}

/** Reached source intervals of one take, per script: [start0, end0, start1, end1, ...]. */
export type Take = Map<string, number[]>;

export class Coverage {
  readonly #session = new Session();
  readonly #include: (url: string) => boolean;
  /** reached positions, per script */
  readonly #reached = new Map<string, Uint8Array>();
  /** functions reached: url and start offset */
  readonly #functions = new Set<string>();
  #scratch = new Int8Array(1 << 16);
  /** time spent taking and painting coverage, ms */
  takeMs = 0;
  takes = 0;

  /** Start counting. Call before the code under test is loaded: functions compiled earlier may not count. */
  constructor(include: (url: string) => boolean) {
    this.#include = include;
    this.#session.connect();
    this.#post('Profiler.enable');
    this.#post('Profiler.startPreciseCoverage', { callCount: true, detailed: true });
  }

  #post(method: string, params: object = {}): any {
    let result: unknown;
    let error: Error | null = null;
    this.#session.post(method, params, (err, r) => {
      error = err;
      result = r;
    });
    if (error) throw error;
    return result;
  }

  /** What ran since the last take (counts are reset). */
  take(): Take {
    const t0 = performance.now();
    const { result } = this.#post('Profiler.takePreciseCoverage') as { result: ScriptCoverage[] };
    const out: Take = new Map();
    for (const script of result) {
      if (!this.#include(script.url)) continue;
      const intervals: number[] = [];
      for (const fn of script.functions) {
        const ranges = fn.ranges;
        if (ranges.length === 0 || ranges[0].count === 0) continue;
        this.#functions.add(`${script.url}:${ranges[0].startOffset}`);
        this.#paint(ranges, intervals);
      }
      if (intervals.length) out.set(script.url, intervals);
    }
    this.takeMs += performance.now() - t0;
    this.takes++;
    return out;
  }

  /** Ranges come outermost first, sorted by start: painting them in order leaves each position its innermost count. */
  #paint(ranges: Range[], out: number[]): void {
    const base = ranges[0].startOffset;
    const len = ranges[0].endOffset - base;
    if (this.#scratch.length < len) this.#scratch = new Int8Array(len * 2);
    const s = this.#scratch;
    for (const r of ranges) s.fill(r.count > 0 ? 1 : 0, r.startOffset - base, r.endOffset - base);
    let i = 0;
    while (i < len) {
      if (s[i] === 0) {
        i++;
        continue;
      }
      const start = i;
      while (i < len && s[i] === 1) i++;
      out.push(base + start, base + i);
    }
  }

  /** How many positions `take` reached that no merged take did. */
  novelty(take: Take): number {
    let n = 0;
    for (const [url, iv] of take) {
      const seen = this.#reached.get(url);
      for (let k = 0; k < iv.length; k += 2) {
        if (!seen) n += iv[k + 1] - iv[k];
        else for (let p = iv[k]; p < iv[k + 1]; p++) if (p >= seen.length || seen[p] === 0) n++;
      }
    }
    return n;
  }

  /** Add `take` to what was reached; returns how many positions were new. */
  merge(take: Take): number {
    let n = 0;
    for (const [url, iv] of take) {
      let seen = this.#reached.get(url);
      let end = 0;
      for (let k = 1; k < iv.length; k += 2) if (iv[k] > end) end = iv[k]; // one function's intervals after another's: not sorted
      if (!seen || seen.length < end) {
        const grown = new Uint8Array(Math.max(end, (seen?.length ?? 0) * 2));
        if (seen) grown.set(seen);
        this.#reached.set(url, (seen = grown));
      }
      for (let k = 0; k < iv.length; k += 2) {
        for (let p = iv[k]; p < iv[k + 1]; p++) {
          if (seen[p] === 0) {
            seen[p] = 1;
            n++;
          }
        }
      }
    }
    return n;
  }

  /** Figures: source positions reached, functions reached, scripts reached. */
  summary(): { positions: number; functions: number; scripts: number } {
    let positions = 0;
    for (const seen of this.#reached.values()) for (const v of seen) positions += v;
    return { positions, functions: this.#functions.size, scripts: this.#reached.size };
  }

  close(): void {
    try {
      this.#post('Profiler.stopPreciseCoverage');
      this.#post('Profiler.disable');
    } finally {
      this.#session.disconnect();
    }
  }
}
