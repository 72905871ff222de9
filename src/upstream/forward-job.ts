// One forwarded query: its hedged attempts, their outcomes, and its deadline. An attempt
// that has not answered within the attempt timeout is counted as failed against its
// upstream, and the next upstream in line is asked too (or the same one again, from
// another socket and with another ID); the first valid reply wins; at the query's
// deadline it ends with null (the client gets SERVFAIL).
//
// Callback-driven, as the exchanges are: an exchange reports to its job by the attempt's
// index (ReplyTarget), and the job reports its reply to its waiter (JobWaiter), so a
// forwarded query costs one job and one timer — no promise, closure, Map or Set per
// attempt, nor per query on the UDP path (pipeline/pending-query.ts). Each job holds one
// timer, for the next attempt or the deadline, whichever comes first.

import type { Transport } from '../transport/handler.js';
import { TC } from '../wire/header.js';
import type { Exchange, ReplyTarget } from './udp-exchange.js';
import type { Upstream } from './upstream-pool.js';

/** What a job needs of its forwarder. */
export interface JobOwner {
  readonly attemptTimeoutMs: number;
  /** Starts an attempt: `target.settled(attempt, …)` gets its outcome, possibly before this
   * returns. Null: it failed before anything was sent. */
  exchange(
    query: Buffer,
    questionEnd: number,
    upstream: Upstream,
    transport: Transport,
    target: ReplyTarget,
    attempt: number,
  ): Exchange | null;
  /** An attempt was answered (its round trip) or failed (counted against its upstream). */
  succeeded(upstream: Upstream, rttMs: number): void;
  failed(upstream: Upstream): void;
  /** The reply that goes back (a DoT upstream's reply to a UDP client may need truncating). */
  fit(reply: Buffer, upstream: Upstream, transport: Transport, query: Buffer, questionEnd: number): Buffer;
  /** The query ended: its reply (the client's ID is put back here), or null when none came in time. */
  done(job: ForwardJob, reply: Buffer | null): void;
}

/** Who hears how a forwarded query ended: once, possibly before the job's constructor returns. */
export interface JobWaiter {
  /** The upstream's reply with the client's ID put back, or null when none answered in time. */
  forwarded(reply: Buffer | null): void;
}

/** An attempt's exchange while exchange() has not returned it yet. */
const STARTING: Exchange = Object.freeze({ cancel: () => {} });

/** Per attempt: counted as failed for not answering in time (a late answer still counts as success). */
const LATE = 1;
/** Per attempt: asked again over TCP after a truncated UDP reply. */
const OVER_TCP = 2;

export class ForwardJob implements ReplyTarget {
  /** Per attempt: its upstream, its exchange (null once settled), when it went, LATE. */
  private readonly upstreams: Upstream[] = [];
  private readonly exchanges: (Exchange | null)[] = [];
  private readonly sentAt: number[] = [];
  private readonly flags: number[] = [];
  private attempts = 0;
  private live = 0;
  private failedOutright = 0;
  private finished = false;
  private timer: NodeJS.Timeout | undefined;
  /** What the timer is for: the deadline, or the next attempt. */
  private timerIsDeadline = false;
  private readonly deadline: number;

  constructor(
    private readonly owner: JobOwner,
    readonly query: Buffer,
    private readonly questionEnd: number,
    private readonly transport: Transport,
    private readonly order: readonly Upstream[],
    readonly clientId: number,
    queryTimeoutMs: number,
    private readonly waiter: JobWaiter,
  ) {
    this.deadline = Date.now() + queryTimeoutMs;
    this.attempt();
  }

  /** An exchange's outcome; one that was cancelled or already settled is ignored. */
  settled(attempt: number, reply: Buffer | null): void {
    if (this.finished || this.exchanges[attempt] === null) return;
    const upstream = this.upstreams[attempt];
    if (reply !== null && this.askedAgainOverTcp(reply, attempt, upstream)) return;
    this.exchanges[attempt] = null;
    this.live--;
    if (reply) {
      this.owner.succeeded(upstream, Date.now() - this.sentAt[attempt]);
      this.finish(this.owner.fit(reply, upstream, this.transport, this.query, this.questionEnd));
      return;
    }
    // failed outright (refused, reset): move on without waiting for the timer; an attempt
    // already counted as late is not counted against its upstream again
    if ((this.flags[attempt] & LATE) === 0) this.owner.failed(upstream);
    this.failedOutright++;
    if (this.live > 0) return;
    if (this.attempts < this.order.length) this.schedule(0);
    else if (this.failedOutright === this.attempts) this.finish(null);
  }

  /** A DoT or DoH client's query goes up over UDP (the forwarder's choice, for a plain
   * upstream); when the reply comes truncated, the same attempt asks the same upstream
   * over TCP, so the client, which takes a reply of any size, gets it whole. */
  private askedAgainOverTcp(reply: Buffer, attempt: number, upstream: Upstream): boolean {
    if ((this.transport !== 'dot' && this.transport !== 'doh') || upstream.tls) return false;
    if ((this.flags[attempt] & OVER_TCP) !== 0 || (reply.readUInt16BE(2) & TC) === 0) return false;
    this.flags[attempt] |= OVER_TCP;
    this.exchanges[attempt] = STARTING;
    const e = this.owner.exchange(this.query, this.questionEnd, upstream, 'tcp', this, attempt);
    if (e === null) this.settled(attempt, null);
    else if (this.exchanges[attempt] === STARTING) this.exchanges[attempt] = e;
    return true;
  }

  private attempt(): void {
    if (this.finished) return;
    // whoever is still unanswered now did not answer in time
    for (let i = 0; i < this.attempts; i++) {
      if (this.exchanges[i] !== null && (this.flags[i] & LATE) === 0) {
        this.flags[i] |= LATE;
        this.owner.failed(this.upstreams[i]);
      }
    }
    const i = this.attempts++;
    const upstream = this.order[i % this.order.length];
    this.upstreams.push(upstream);
    this.sentAt.push(Date.now());
    this.flags.push(0);
    this.exchanges.push(STARTING);
    this.live++;
    // armed first: an exchange that fails at once reschedules at once
    this.schedule(this.owner.attemptTimeoutMs);
    const e = this.owner.exchange(this.query, this.questionEnd, upstream, this.transport, this, i);
    if (e === null) this.settled(i, null);
    else if (this.exchanges[i] === STARTING) this.exchanges[i] = e;
  }

  private schedule(delayMs: number): void {
    if (this.finished) return;
    clearTimeout(this.timer);
    const remaining = this.deadline - Date.now();
    this.timerIsDeadline = remaining <= delayMs; // the deadline comes first
    this.timer = setTimeout(fire, this.timerIsDeadline ? Math.max(0, remaining) : delayMs, this);
  }

  private timedOut(): void {
    if (!this.timerIsDeadline) return this.attempt();
    // attempts still unanswered at the deadline count against their upstreams
    for (let i = 0; i < this.attempts; i++) {
      if (this.exchanges[i] !== null && (this.flags[i] & LATE) === 0) this.owner.failed(this.upstreams[i]);
    }
    this.finish(null);
  }

  private finish(reply: Buffer | null): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.timer);
    for (const e of this.exchanges) e?.cancel();
    this.owner.done(this, reply);
    this.waiter.forwarded(reply);
  }

  /** For the timer, which calls it with the job as argument: no closure per job. */
  static fire(this: void, job: ForwardJob): void {
    job.timedOut();
  }
}

const fire = ForwardJob.fire;
