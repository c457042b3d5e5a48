// The receiving end of replication: Receiver (types.ts) over a site's
// catalog and store, for one authenticated peer. The site hands in what it
// is through a ReceiveHost (host.ts); the work is done by the intake (hello,
// missing, put: intake.ts), the commit (commit.ts) and the apply job
// (apply-job.ts), with the site's replica state (replicas.ts). Receivers are
// made per request; everything that outlives one lives in the host.
import type { ObjectId } from '../../core/ids.ts';
import type { ChunkPool } from '../../snapshot/chunk-pool.ts';
import type { WireObject } from '../protocol.ts';
import type { CommitRequest, CommitResponse, HelloRequest, HelloResponse, PutResult, Receiver } from '../types.ts';
import { ApplyJob } from './apply-job.ts';
import { Commit } from './commit.ts';
import type { ReceiveHost } from './host.ts';
import { Intake } from './intake.ts';

export class ReplicaReceiver implements Receiver {
  readonly #intake: Intake;
  readonly #commit: Commit;
  readonly #job: ApplyJob;

  /** `peer` is the authenticated site id of the sender. */
  constructor(host: ReceiveHost, peer: string, pool: ChunkPool) {
    const rx = { host, peer, pool };
    this.#intake = new Intake(rx);
    this.#job = new ApplyJob(rx);
    this.#commit = new Commit(rx, this.#job);
  }

  hello(raw: HelloRequest): Promise<HelloResponse> {
    return this.#intake.hello(raw);
  }

  missing(volume: string, ids: ObjectId[]): Promise<boolean[]> {
    return this.#intake.missing(volume, ids);
  }

  /** See Intake.put; `hold(bytes)` asks the daemon's stream budget to hold that many bytes in flight. */
  put(volume: string, objects: AsyncIterable<WireObject>, signal?: AbortSignal, o: { hold?: (bytes: number) => boolean } = {}): Promise<PutResult> {
    return this.#intake.put(volume, objects, signal, o);
  }

  commit(volume: string, raw: CommitRequest): Promise<CommitResponse> {
    return this.#commit.commit(volume, raw);
  }

  /** Finish applies a crash interrupted (the daemon calls this at start, for this peer's secondaries). */
  resumeInterrupted(): Promise<string[]> {
    return this.#job.resumeInterrupted();
  }

  /** Roll the replica back to the snapshot it last showed complete (a forced failover; see ApplyJob.rollBack). */
  rollBack(volume: string): Promise<{ to: string; kept?: string }> {
    return this.#job.rollBack(volume);
  }
}
