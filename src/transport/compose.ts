// The one place a connection to a paired site is put together, for
// replication and DR traffic alike (Engine builds both through it, and so do
// the CLI's and the tests' clients): the plain HTTP/2 connection
// (http2-connection.ts), then, from the inside out, fault injection (tests
// only: the FaultPlan from FERRY_TEST_FAULTS, or one handed in), the stall
// watch, busy-retry, and a rate limit when one is asked for. Order matters:
// faults sit where a broken link would, so the stall watch and busy-retry
// treat them as they would a real one; each busy retry gets its own stall
// watch; the rate limit paces what the retries send too.
import { testKnobs, type TestKnobs } from '../core/test-knobs.ts';
import { TokenBucket } from '../replication/token-bucket.ts';
import type { PeerConnection } from './connection.ts';
import { withBusyRetry } from './busy-retry.ts';
import { FaultPlan, withFaults } from './faults.ts';
import { withRateLimit } from './rate-limit.ts';
import { STALL_TIMEOUT_MS, withStallWatch } from './stall-watch.ts';

export interface ComposeOptions {
  /** no bytes moving for this long ends a request (STALL_TIMEOUT_MS, or the test knob, by default) */
  stallTimeoutMs?: number;
  /** bytes per second for streamed bodies (a mirror's bandwidth limit); none: unlimited */
  bandwidth?: number | null;
  /** faults to inject (tests): the plan of the installed test knobs by default */
  faults?: FaultPlan;
}

let knobPlan: { knobs: TestKnobs; plan: FaultPlan | undefined } | undefined;

/** The FaultPlan of the installed test knobs (FERRY_TEST_FAULTS), one per installation: its counts are the process's. */
export function knobFaults(): FaultPlan | undefined {
  const knobs = testKnobs();
  if (knobPlan?.knobs !== knobs) knobPlan = { knobs, plan: knobs.faults?.length ? new FaultPlan(knobs.faults) : undefined };
  return knobPlan.plan;
}

export function composeConnection(base: PeerConnection, o: ComposeOptions = {}): PeerConnection {
  let c = base;
  const faults = o.faults ?? knobFaults();
  if (faults) c = withFaults(c, faults);
  c = withStallWatch(c, o.stallTimeoutMs ?? testKnobs().stallTimeoutMs ?? STALL_TIMEOUT_MS);
  c = withBusyRetry(c);
  if (o.bandwidth) c = withRateLimit(c, new TokenBucket(o.bandwidth));
  return c;
}
