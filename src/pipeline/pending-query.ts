// A forwarded query on the listener's callback path (QueryPipeline.answerInto): the forward
// job's waiter, holding what the pipeline needs to count the query and what the listener
// needs to send its reply — one object per forwarded query, in place of the promise chain
// (job, forward, handle, answer, listener) the other transports take.

import type { Client, Reply, ReplySink } from '../transport/handler.js';
import type { JobWaiter } from '../upstream/forward-job.js';
import type { Query } from '../wire/query.js';

/** What a pending query needs of its pipeline. */
export interface PendingOwner {
  /** Counts the query; the reply it gets. */
  forwarded(reply: Buffer | null, msg: Buffer, q: Query, client: Client, started: number): Reply;
}

export class PendingQuery<T> implements JobWaiter {
  constructor(
    private readonly owner: PendingOwner,
    private readonly msg: Buffer,
    private readonly q: Query,
    private readonly client: Client,
    private readonly started: number,
    private readonly sink: ReplySink<T>,
    private readonly tag: T,
  ) {}

  forwarded(reply: Buffer | null): void {
    let out: Reply;
    try {
      out = this.owner.forwarded(reply, this.msg, this.q, this.client, this.started);
    } catch (err) {
      this.sink.failed(err, this.tag);
      return;
    }
    this.sink.later(out, this.tag);
  }
}
