// Fault injection for tests: a wrapper around any PeerConnection
// (connection.ts) that breaks the requests a FaultPlan names, replication and
// DR calls alike (kopia's FaultyStorage, zrepl's PartialSender). compose.ts
// puts it innermost, under the stall watch and busy-retry, where a broken
// link would be, so what a fault does is what the rest of ferry sees of a
// real one. The rules (core/test-knobs.ts, FaultRule) come from
// FERRY_TEST_FAULTS for a daemon or a CLI process, or from a test in-process
// (EngineOptions.faults); a plan counts calls for the whole process, so "the
// first failback call" means that whatever connection carries it. Every
// error it makes says "test fault", and the plan lists what fired.
import { FerryError, isErrorCode } from '../core/errors.ts';
import type { FaultRule } from '../core/test-knobs.ts';
import { around, framesOf, type PeerConnection } from './connection.ts';

export interface FiredFault {
  peer: string;
  call: string;
  action: FaultRule['action'];
}

export class FaultPlan {
  readonly rules: readonly FaultRule[];
  /** what fired, in order */
  readonly fired: FiredFault[] = [];
  readonly #seen: number[];
  readonly #hit: number[];

  constructor(rules: readonly FaultRule[]) {
    this.rules = rules;
    this.#seen = rules.map(() => 0);
    this.#hit = rules.map(() => 0);
  }

  /** The rule that hits this call, if one does (each rule counts the calls it matches). */
  take(call: string): FaultRule | undefined {
    let found: FaultRule | undefined;
    this.rules.forEach((r, i) => {
      if (r.call !== '*' && r.call !== call) return;
      this.#seen[i]++;
      if (!found && this.#seen[i] >= r.nth && this.#hit[i] < r.times) {
        this.#hit[i]++;
        found = r;
      }
    });
    return found;
  }
}

export function withFaults(inner: PeerConnection, plan: FaultPlan): PeerConnection {
  const name = inner.peer.name;
  return around(inner, (req, o = {}) => {
    const rule = plan.take(req.call);
    if (!rule) return inner.request(req, o);
    plan.fired.push({ peer: name, call: req.call, action: rule.action });
    const what = `${req.call} (test fault ${rule.call}:${rule.action})`;
    if (rule.action === 'fail') {
      return Promise.reject(new FerryError(rule.code && isErrorCode(rule.code) ? rule.code : 'TRANSFER_INTERRUPTED', `connection to ${name} failed: ${what}`));
    }
    if (rule.action === 'stall') {
      // The request goes out, and then nothing moves: it never reaches the peer, and only its signal
      // (the stall watch's, or the caller's) ends it.
      o.onMoved?.();
      return new Promise<Buffer>((_, reject) => {
        const cancelled = () => reject(new FerryError('TRANSFER_INTERRUPTED', `request to ${name} was cancelled`));
        if (o.signal?.aborted) cancelled();
        else o.signal?.addEventListener('abort', cancelled, { once: true });
      });
    }
    // cut: once `bytes` of the body are sent (all of it by default, and then as its answer starts to
    // arrive: the peer got the request, and what it did is never known here), the connection is cut.
    const ctl = new AbortController();
    const onAbort = () => ctl.abort(o.signal?.reason);
    if (o.signal?.aborted) onAbort();
    else o.signal?.addEventListener('abort', onAbort, { once: true });
    return new Promise<Buffer>((resolve, reject) => {
      let sent = false;
      let done = false;
      const cut = () => {
        if (done) return;
        done = true;
        reject(new FerryError('TRANSFER_INTERRUPTED', `connection to ${name} was cut: ${what}`));
        ctl.abort();
        inner.reset();
      };
      const { body } = req;
      async function* frames(): AsyncGenerator<Buffer> {
        let n = 0;
        for await (const part of framesOf(body)) {
          if (rule!.bytes !== undefined && n + part.length > rule!.bytes) {
            if (rule!.bytes > n) yield part.subarray(0, rule!.bytes - n);
            cut();
            return;
          }
          n += part.length;
          yield part;
        }
        sent = true;
      }
      const onMoved = () => {
        if (sent) cut();
        else o.onMoved?.();
      };
      const resume = Buffer.isBuffer(body) ? () => true : body.resume && ((refusal: FerryError) => body.resume!(refusal));
      inner.request({ ...req, body: { frames, ...(resume ? { resume } : {}) } }, { signal: ctl.signal, onMoved }).then(
        (buf) => {
          if (done) return;
          done = true;
          resolve(buf);
        },
        (err) => {
          if (done) return;
          done = true;
          reject(err);
        },
      );
    }).finally(() => o.signal?.removeEventListener('abort', onAbort));
  });
}
