// Transport fit: whether deltas pay on a mirror's link. A delta costs the
// sender's encoders and the receiver's rebuild time to save bytes on the
// wire; on a slow link that time is well spent, on a fast one (loopback, a
// LAN, a fast WAN) the whole objects arrive sooner than the deltas are made:
// measured on loopback at the benchmark's scale 0.25, an update's send took
// 1.3 s with deltas and 0.45 s without, for twice the bytes on the wire.
//
// Each transfer measures the way it sent: the stored bytes of what it sent
// (what the objects cost whole) over the seconds its put requests were in
// flight (the early stream's included), so both ways are counted in the same
// unit, the time a stored byte of change costs. The next update takes the
// quicker. A way not measured yet counts at DEFAULT_DELTA_BYTES_PER_SECOND
// for deltas; whole sends are measured by the initialize. A way not tried for
// a day is tried once again (the link or the load may have changed since:
// without it a mirror that chose deltas on a slow day would never learn the
// link got fast). The way in use stays unless the other is SWITCH_MARGIN
// quicker (figures a few per cent apart are noise); on a near link (NEAR_RTT_MS) an assumed delta
// rate must be twice the whole one. A mirror's bandwidth limit caps the whole rate. Transfers
// under MIN_MEASURED_BYTES keep the figures they found.
//
// Owns: the measurement and the decision. Must never: send deltas against
// `never` or whole against `always`.
import type { DeltaMode, LinkEstimate, SendRate } from '../catalog/mirrors.ts';
import type { TransferStats } from './sender.ts';

export type { DeltaMode, LinkEstimate };

/** Below this many stored bytes a transfer says little of the link: the figures found stay. */
export const MIN_MEASURED_BYTES = 4 * 1024 * 1024;

/**
 * Deltas' rate assumed before one was measured: a stored byte as a delta costs about this much
 * (the benchmark's loopback runs: 45-60 MiB/s on two cores, the encoders and the rebuild together).
 */
export const DEFAULT_DELTA_BYTES_PER_SECOND = 48 * 1024 * 1024;

/**
 * The other way must be this much quicker before an update switches to it: figures measured a few
 * per cent apart (a 2-core loopback measures whole objects at 40-56 MiB/s and deltas near 48) would
 * otherwise flip the way from one update to the next on noise.
 */
export const SWITCH_MARGIN = 1.25;

/**
 * A link whose round trip (the quickest `missing` question, answer included) is under this is near:
 * a LAN or loopback, rarely slower than deltas are made. On such a link, with the delta rate only
 * assumed, the whole rate must be under half of it before deltas are tried: the initialize that
 * measured it had its capture competing with its sending and every byte committed with fsyncs (the
 * benchmark's loopback measured 33-56 MiB/s there, its updates whole at 80 and more), so a slow
 * initialize made the first update send deltas, 8.3 s -> 13.0 s at scale 1. A far link (the WAN
 * run: 21 MiB/s, 54 ms) keeps SWITCH_MARGIN.
 */
export const NEAR_RTT_MS = 10;
/** The margin on a near link while deltas are only assumed (NEAR_RTT_MS). */
export const NEAR_ASSUMED_MARGIN = 2;

/** A way of sending not tried for this long is tried once again. */
export const RETRY_OTHER_WAY_MS = 24 * 3600 * 1000;

/** What one transfer tells: its stored bytes, the seconds its puts were in flight, whether it sent deltas. */
export interface SendMeasure {
  storedBytes: number;
  seconds: number;
  deltas: boolean;
  minRttMs?: number;
}

/** The measure of a target step's send (and of the early stream before it, which sends whole). */
export function sendMeasure(sent: TransferStats, usedDeltas: boolean, early?: { bytes: number; seconds: number }): SendMeasure {
  return { storedBytes: sent.storedBytes + (early?.bytes ?? 0), seconds: sent.putSeconds + (early?.seconds ?? 0), deltas: usedDeltas && sent.deltas > 0, ...(sent.minRttMs !== undefined ? { minRttMs: sent.minRttMs } : {}) };
}

/** The mirror's figures after a transfer: the way it sent measured again when it sent enough to tell. */
export function measureLink(previous: LinkEstimate | undefined, m: SendMeasure, now: number): LinkEstimate {
  const out: LinkEstimate = { ...previous };
  if (m.storedBytes >= MIN_MEASURED_BYTES && m.seconds > 0.001) {
    const rate: SendRate = { bytesPerSecond: Math.round(m.storedBytes / m.seconds), at: now };
    if (m.deltas) out.delta = rate;
    else out.whole = rate;
  }
  if (m.minRttMs !== undefined) out.rttMs = Math.round(m.minRttMs * 10) / 10;
  return out;
}

export interface DeltaChoice {
  deltas: boolean;
  /** why, for the transfer's record and status */
  reason: string;
}

const mib = (n: number) => `${(n / (1024 * 1024)).toFixed(1)} MiB/s`;

/** Whether this update sends changed chunks as deltas. */
export function chooseDeltas(mode: DeltaMode, link: LinkEstimate | undefined, bandwidth: number | null, now: number): DeltaChoice {
  if (mode === 'always') return { deltas: true, reason: 'the mirror always sends deltas' };
  if (mode === 'never') return { deltas: false, reason: 'the mirror never sends deltas' };
  if (!link?.whole && bandwidth === null) return { deltas: true, reason: 'the link is not measured yet' };
  const whole = Math.min(link?.whole?.bytesPerSecond ?? Infinity, bandwidth ?? Infinity);
  const capped = bandwidth !== null && bandwidth <= (link?.whole?.bytesPerSecond ?? Infinity);
  const delta = link?.delta?.bytesPerSecond ?? DEFAULT_DELTA_BYTES_PER_SECOND;
  const figures = `whole ${mib(whole)}${capped ? ' (the bandwidth limit)' : ''}, deltas ${mib(delta)}${link?.delta ? '' : ' (assumed)'}`;
  // The way in use (the one measured last) stays unless the other is SWITCH_MARGIN quicker.
  const current = link?.whole && link.delta ? (link.whole.at >= link.delta.at ? 'whole' : 'deltas') : link?.whole ? 'whole' : link?.delta ? 'deltas' : undefined;
  const near = !link?.delta && link?.rttMs !== undefined && link.rttMs < NEAR_RTT_MS;
  const margin = near ? NEAR_ASSUMED_MARGIN : SWITCH_MARGIN;
  const deltas = current === 'whole' ? delta > whole * margin : current === 'deltas' ? !(whole > delta * SWITCH_MARGIN) : whole < delta;
  // The other way, not tried for a day, is tried once: the figures may be stale.
  const other = deltas ? link?.whole : link?.delta;
  if (other && now - other.at > RETRY_OTHER_WAY_MS && !(deltas && capped)) {
    return { deltas: !deltas, reason: `${figures}: trying ${deltas ? 'whole objects' : 'deltas'} again (not measured for a day)` };
  }
  if ((whole < delta) !== deltas) {
    if (near && !deltas) return { deltas, reason: `${figures}, a near link (round trip ${link?.rttMs} ms): deltas are tried only where whole objects are under half their assumed rate` };
    return { deltas, reason: `${figures}: within ${Math.round((SWITCH_MARGIN - 1) * 100)} % of each other, staying with ${deltas ? 'deltas' : 'whole objects'}` };
  }
  return deltas ? { deltas, reason: `${figures}: deltas pay` } : { deltas, reason: `${figures}: whole objects arrive sooner` };
}
