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
import { NO_TIMER, type Due, type FixedDelayTimers } from './fixed-delay-timers.js';

/** What a job needs of its forwarder. */
export interface JobOwner {
  readonly attemptTimeoutMs: number;
  /** Where every job's first timer goes: the attempt timeout, or the query timeout when that is shorter. */
  readonly firstTimers: FixedDelayTimers;
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

/** One attempt of a job: its upstream, its exchange (null once settled), when it went, LATE and OVER_TCP. */
class Attempt {
  exchange: Exchange | null = STARTING;
  flags = 0;

  constructor(
    readonly upstream: Upstream,
    readonly sentAt: number,
  ) {}
}

export class ForwardJob implements ReplyTarget, Due {
  /** In the order they went; most queries make one. */
  private attempts: Attempt[] | null = null;
  private live = 0;
  private failedOutright = 0;
  private finished = false;
  private timer: NodeJS.Timeout | undefined;
  /** The first timer's ticket with the owner's firstTimers, while it is armed. */
  private ticket = NO_TIMER;
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
    /** performance.now() when the query came (the pipeline has read the clock already). */
    now: number,
  ) {
    this.deadline = now + queryTimeoutMs;
    // from the settings, not the clock: (now + q) - now need not be q in floating point
    this.timerIsDeadline = queryTimeoutMs <= owner.attemptTimeoutMs;
    this.attempt(now);
  }

  /** An exchange's outcome; one that was cancelled or already settled is ignored. */
  settled(attempt: number, reply: Buffer | null): void {
    if (this.finished) return;
    const a = this.attempts![attempt];
    if (a.exchange === null) return;
    if (reply !== null && this.askedAgainOverTcp(reply, attempt, a)) return;
    a.exchange = null;
    this.live--;
    if (reply) {
      this.owner.succeeded(a.upstream, performance.now() - a.sentAt);
      this.finish(this.owner.fit(reply, a.upstream, this.transport, this.query, this.questionEnd));
      return;
    }
    // failed outright (refused, reset): move on without waiting for the timer; an attempt
    // already counted as late is not counted against its upstream again
    if ((a.flags & LATE) === 0) this.owner.failed(a.upstream);
    this.failedOutright++;
    if (this.live > 0) return;
    const made = this.attempts!.length;
    if (made < this.order.length) this.schedule(0);
    else if (this.failedOutright === made) this.finish(null);
  }

  /** A DoT or DoH client's query goes up over UDP (the forwarder's choice, for a plain
   * upstream); when the reply comes truncated, the same attempt asks the same upstream
   * over TCP, so the client, which takes a reply of any size, gets it whole. */
  private askedAgainOverTcp(reply: Buffer, attempt: number, a: Attempt): boolean {
    if ((this.transport !== 'dot' && this.transport !== 'doh') || a.upstream.tls) return false;
    if ((a.flags & OVER_TCP) !== 0 || (reply.readUInt16BE(2) & TC) === 0) return false;
    a.flags |= OVER_TCP;
    a.exchange = STARTING;
    const e = this.owner.exchange(this.query, this.questionEnd, a.upstream, 'tcp', this, attempt);
    if (e === null) this.settled(attempt, null);
    else if (a.exchange === STARTING) a.exchange = e;
    return true;
  }

  private attempt(now = performance.now()): void {
    if (this.finished) return;
    // whoever is still unanswered now did not answer in time
    let i = 0;
    for (; this.attempts !== null && i < this.attempts.length; i++) {
      const late = this.attempts[i];
      if (late.exchange !== null && (late.flags & LATE) === 0) {
        late.flags |= LATE;
        this.owner.failed(late.upstream);
      }
    }
    const a = new Attempt(this.order[i % this.order.length], now);
    if (this.attempts === null) this.attempts = [a];
    else this.attempts.push(a);
    this.live++;
    // armed first: an exchange that fails at once reschedules at once
    if (i === 0) this.armFirst(now);
    else this.schedule(this.owner.attemptTimeoutMs, now);
    const e = this.owner.exchange(this.query, this.questionEnd, a.upstream, this.transport, this, i);
    if (e === null) this.settled(i, null);
    else if (a.exchange === STARTING) a.exchange = e;
  }

  /** The first attempt's timer, which every job arms after the same time: one queue for them all. */
  private armFirst(now: number): void {
    this.ticket = this.owner.firstTimers.add(this, now);
  }

  /** The first timer fell due. */
  due(): void {
    this.ticket = NO_TIMER;
    this.timedOut();
  }

  private disarm(): void {
    clearTimeout(this.timer);
    this.owner.firstTimers.cancel(this.ticket);
    this.ticket = NO_TIMER;
  }

  private schedule(delayMs: number, now = performance.now()): void {
    if (this.finished) return;
    this.disarm();
    const remaining = this.deadline - now;
    this.timerIsDeadline = remaining <= delayMs; // the deadline comes first
    this.timer = setTimeout(fire, this.timerIsDeadline ? Math.max(0, remaining) : delayMs, this);
  }

  private timedOut(): void {
    if (!this.timerIsDeadline) return this.attempt();
    // attempts still unanswered at the deadline count against their upstreams
    for (const a of this.attempts ?? []) {
      if (a.exchange !== null && (a.flags & LATE) === 0) this.owner.failed(a.upstream);
    }
    this.finish(null);
  }

  private finish(reply: Buffer | null): void {
    if (this.finished) return;
    this.finished = true;
    this.disarm();
    for (const a of this.attempts ?? []) a.exchange?.cancel();
    this.owner.done(this, reply);
    this.waiter.forwarded(reply);
  }

  /** For the timer, which calls it with the job as argument: no closure per job. */
  static fire(this: void, job: ForwardJob): void {
    job.timedOut();
  }
}

const fire = ForwardJob.fire;
