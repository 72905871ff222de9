// The forwarded queries of one turn of the event loop to one upstream, sent together: on
// the addon's connected sockets (--udp-batch) a send() per query was most of what
// forwarding cost, so the pool (udp-exchange.ts) draws one socket at random for the turn,
// hands each query to this batch with its own random ID, and the batch goes out with one
// sendmmsg (node:dgram's sockets: a send each) once the caller's JavaScript is done (a microtask) — a batched listener hands
// over up to 64 client datagrams in one call — or, for DoT and DoH, whose queries come one
// per callback, once the poll phase is (setImmediate), so that those of many callbacks go
// together. Each query's socket is still a slot drawn uniformly at random (CSPRNG), which
// only the upstream sees, and its ID random and not outstanding there: what a blind
// spoofer must guess for any query is unchanged.

/** A query waiting in the batch: sent from `sent` with `id` written in, unless settled
 * meanwhile (its owner no longer the batch's socket). */
export interface BatchedQuery<S> {
  owner: S | null;
  readonly sent: Buffer;
  readonly id: number;
}

/** What the batch needs of the pool. */
export interface BatchPool<S, Q> {
  /** Whether `s` can still send (not closed, not failed). */
  isOpen(s: S): boolean;
  /** Sends `count` staged queries with one system call: how many went, or minus the errno. */
  sendStaged(s: S, data: Buffer, lengths: Int32Array, count: number): number;
  /** Queries the socket did not take: `errno` is what it said (0: it took fewer than asked). */
  refused(s: S, queries: Q[], errno: number): void;
}

/** The most queries one flush sends (the addon's sendmmsg takes 64). */
export const BATCH = 64;

/** A turn's queries to one socket, one after another with their IDs written in, for one
 * sendmmsg: one buffer for every pool (a flush stages and sends before anything else runs).
 * Room for BATCH of the largest; only what is staged is ever touched (a query is mostly
 * under 100 bytes), so the rest of it costs no memory. */
const stage = Buffer.allocUnsafeSlow(BATCH * 65536);
const stageLengths = new Int32Array(BATCH);
const staged: unknown[] = new Array<unknown>(BATCH).fill(undefined);

export class TurnBatch<S, Q extends BatchedQuery<S>> {
  /** The socket this turn's queries go out on (while it can take them). */
  turn: S | undefined;
  private readonly queries: Q[] = [];
  private immediateQueued = false;
  private microtaskQueued = false;

  constructor(private readonly pool: BatchPool<S, Q>) {}

  /** Queues `q`, outstanding on `s`, to go with the turn's others. */
  add(s: S, q: Q, together: boolean): void {
    if (this.turn !== s) {
      this.flush();
      this.turn = s;
    }
    this.queries.push(q);
    if (this.queries.length >= BATCH) {
      this.flush();
    } else if (together) {
      if (!this.immediateQueued) {
        this.immediateQueued = true;
        setImmediate(this.flushImmediate);
      }
    } else if (!this.microtaskQueued) {
      this.microtaskQueued = true;
      queueMicrotask(this.flushMicrotask);
    }
  }

  private readonly flushImmediate = (): void => {
    this.immediateQueued = false;
    this.flush();
  };

  private readonly flushMicrotask = (): void => {
    this.microtaskQueued = false;
    this.flush();
  };

  /** Sends the turn's queries. One settled meanwhile (cancelled, its socket failed) is
   * skipped; those the socket refused go back to the pool. */
  flush(): void {
    const s = this.turn;
    this.turn = undefined;
    const queries = this.queries;
    if (s === undefined || queries.length === 0) return;
    let count = 0;
    let at = 0;
    for (const q of queries) {
      if (q.owner !== s) continue;
      const length = q.sent.length;
      q.sent.copy(stage, at);
      stage.writeUInt16BE(q.id, at);
      staged[count] = q;
      stageLengths[count++] = length;
      at += length;
    }
    queries.length = 0;
    if (count === 0 || !this.pool.isOpen(s)) return;
    const sent = this.pool.sendStaged(s, stage, stageLengths, count);
    // what settling a query runs may send queries of its own (and flush): the refused ones are taken out first
    const refused = sent < count ? (staged.slice(Math.max(sent, 0), count) as Q[]) : null;
    staged.fill(undefined, 0, count);
    if (refused !== null) this.pool.refused(s, refused, sent < 0 ? -sent : 0);
  }
}
