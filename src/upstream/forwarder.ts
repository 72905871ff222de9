// Forwards a query upstream unchanged but for its ID, and hands back the upstream's reply
// unchanged but for its ID. Attempts are hedged: when one does not answer within the
// attempt timeout the next upstream in line is asked too (or the same one again, from a
// new port, when there is only one), and the first valid reply wins, until the query's
// overall deadline, after which the client gets SERVFAIL.

import { setMessageId, messageId } from '../wire/message.js';
import { randomId } from './random-id.js';
import { tcpExchange } from './tcp-exchange.js';
import { udpExchange, type Exchange } from './udp-exchange.js';
import { UpstreamPool, type Upstream } from './upstream-pool.js';

export type Transport = 'udp' | 'tcp';

export interface ForwarderOptions {
  attemptTimeoutMs: number;
  queryTimeoutMs: number;
}

export interface ForwarderStats {
  /** Replies dropped because source, ID or question did not match what was sent. */
  rejectedReplies: number;
  timeouts: number;
}

export class Forwarder {
  readonly stats: ForwarderStats = { rejectedReplies: 0, timeouts: 0 };
  private readonly onRejected = () => {
    this.stats.rejectedReplies++;
  };

  constructor(
    readonly pool: UpstreamPool,
    private readonly options: ForwarderOptions,
  ) {}

  /** The upstream's reply with the client's ID put back, or null when none answered in time. */
  forward(query: Buffer, questionEnd: number, transport: Transport): Promise<Buffer | null> {
    const clientId = messageId(query);
    const sent = Buffer.from(query);
    setMessageId(sent, randomId());
    const exchange = transport === 'tcp' ? tcpExchange : udpExchange;
    const order = this.pool.order();
    const started = Date.now();

    return new Promise<Buffer | null>((resolve) => {
      const live = new Map<Exchange, Upstream>();
      /** Attempts already counted as failures for not answering within the attempt timeout. */
      const late = new Set<Exchange>();
      let attempts = 0;
      let failedOutright = 0;
      let finished = false;
      let nextTimer: NodeJS.Timeout | undefined;

      const finish = (reply: Buffer | null) => {
        if (finished) return;
        finished = true;
        clearTimeout(nextTimer);
        clearTimeout(deadline);
        for (const e of live.keys()) e.cancel();
        if (reply) setMessageId(reply, clientId);
        else this.stats.timeouts++;
        resolve(reply);
      };

      const scheduleNext = (delayMs: number) => {
        clearTimeout(nextTimer);
        const remaining = started + this.options.queryTimeoutMs - Date.now();
        if (remaining <= delayMs) return; // the deadline comes first
        nextTimer = setTimeout(attempt, delayMs);
      };

      const attempt = () => {
        if (finished) return;
        // whoever is still unanswered now did not answer in time; a late answer undoes it
        for (const [e, u] of live) {
          if (!late.has(e)) {
            late.add(e);
            this.pool.failed(u);
          }
        }
        const upstream = order[attempts % order.length];
        attempts++;
        const sentAt = Date.now();
        const e = exchange(sent, questionEnd, upstream, this.onRejected);
        live.set(e, upstream);
        void e.reply.then((reply) => {
          if (finished) return;
          live.delete(e);
          if (reply) {
            this.pool.succeeded(upstream, Date.now() - sentAt);
            finish(reply);
            return;
          }
          // failed outright (refused, reset): move on without waiting for the timer; an
          // attempt already counted as late is not counted against its upstream again
          if (!late.has(e)) this.pool.failed(upstream);
          failedOutright++;
          if (live.size > 0) return;
          if (attempts < order.length) scheduleNext(0);
          else if (failedOutright === attempts) finish(null);
        });
        scheduleNext(this.options.attemptTimeoutMs);
      };

      const deadline = setTimeout(() => {
        // attempts still unanswered at the deadline count against their upstreams
        for (const [e, upstream] of live) if (!late.has(e)) this.pool.failed(upstream);
        finish(null);
      }, this.options.queryTimeoutMs);

      attempt();
    });
  }
}
