// Forwards a query upstream unchanged but for its ID, and hands back the upstream's reply
// unchanged but for its ID. Attempts are hedged: when one does not answer within the
// attempt timeout the next upstream in line is asked too (or the same one again, from
// another socket of its pool and with another ID, when there is only one), and the first
// valid reply wins, until the query's overall deadline, after which the client gets
// SERVFAIL. Each upstream has its own pool of UDP sockets and of TCP connections, opened
// on first use; each attempt copies the query once, with an ID of its socket's choosing.
// A query that came over UDP goes up over UDP, one that came over TCP over TCP; one that
// came over DoT or DoH goes up over UDP too, as dnsdist does — its client takes a reply of
// any size, but most replies fit a datagram, and a UDP exchange costs far less than a
// write on a shared connection — and is asked again over TCP when the reply comes back
// truncated (TC), so the client still gets it whole.
// A DoT upstream (tls://) gets every query on its TLS connections, whatever transport the
// query came in on; a reply from it to a UDP query that is larger than the client takes
// goes back truncated (TC), as a UDP upstream would have sent it, and the client asks
// again over TCP.

import { INSPECT } from '../debug.js';
import { setMessageId, messageId } from '../wire/header.js';
import type { Transport } from '../transport/handler.js';
import { fitUdp } from '../wire/reply.js';
import { tlsDial } from './stream-dial.js';
import { DEFAULT_TCP_POOL_OPTIONS, TcpUpstreamConnections, type TcpConnectionsState, type TcpPoolOptions } from './tcp-exchange.js';
import { DEFAULT_UDP_POOL_OPTIONS, UdpUpstreamSockets, type UdpPoolOptions, type UdpSocketsState } from './udp-exchange.js';
import { FixedDelayTimers } from './fixed-delay-timers.js';
import { ForwardJob, type JobOwner, type JobWaiter } from './forward-job.js';
import { UpstreamPool, type Upstream } from './upstream-pool.js';

export interface ForwarderOptions {
  attemptTimeoutMs: number;
  queryTimeoutMs: number;
  /** Queries forwarded and not yet answered at once; beyond it a query fails at once
   * (SERVFAIL), so a flood towards a silent upstream cannot pile up state without bound. */
  maxInFlight?: number;
  udp?: Partial<UdpPoolOptions>;
  tcp?: Partial<TcpPoolOptions>;
  /** Count into these figures (a reload's new forwarder carries on its predecessor's). */
  stats?: ForwarderStats;
  /** --max-udp-size: the most a DoT upstream's reply to a UDP query may take before it is truncated. */
  maxUdpSize?: number;
  /** A connection to a DoT upstream failed for this reason (the handshake, the certificate refused, reset). */
  onConnectionError?: (upstream: Upstream, err: Error) => void;
}

export interface ForwarderStats {
  /** Replies dropped because their ID or question matched no query in flight on their
   * socket or connection. (UDP from anywhere but the upstream's address and port never
   * reaches divert: the kernel drops it, the sockets being connected.) */
  rejectedReplies: number;
  timeouts: number;
  /** Queries failed at once because maxInFlight were already waiting. */
  overloaded: number;
}

export class Forwarder {
  readonly stats: ForwarderStats;
  private readonly onRejected = () => {
    this.stats.rejectedReplies++;
  };

  private readonly udp = new Map<Upstream, UdpUpstreamSockets>();
  private readonly tcp = new Map<Upstream, TcpUpstreamConnections>();
  private readonly udpOptions: UdpPoolOptions;
  private readonly tcpOptions: TcpPoolOptions;
  private closed = false;
  /** Queries being forwarded now; a retired forwarder closes when none is left. */
  private inFlight = 0;
  private retired = false;

  /** What the forwarded queries' jobs call back: one object for all of them. */
  private readonly jobs: JobOwner;

  constructor(
    readonly pool: UpstreamPool,
    private readonly options: ForwarderOptions,
  ) {
    this.stats = options.stats ?? { rejectedReplies: 0, timeouts: 0, overloaded: 0 };
    this.udpOptions = { ...DEFAULT_UDP_POOL_OPTIONS, ...options.udp };
    this.tcpOptions = { ...DEFAULT_TCP_POOL_OPTIONS, ...options.tcp };
    this.jobs = {
      attemptTimeoutMs: options.attemptTimeoutMs,
      firstTimers: new FixedDelayTimers(Math.min(options.attemptTimeoutMs, options.queryTimeoutMs)),
      exchange: this.exchange,
      succeeded: (upstream, rttMs) => this.pool.succeeded(upstream, rttMs),
      failed: (upstream) => this.pool.failed(upstream),
      fit: (reply, upstream, transport, query, questionEnd) =>
        transport === 'udp' && upstream.tls ? fitUdp(reply, query, questionEnd, this.options.maxUdpSize) : reply,
      done: (job, reply) => {
        if (reply) setMessageId(reply, job.clientId);
        else this.stats.timeouts++;
        if (--this.inFlight === 0 && this.retired) this.close();
      },
    };
  }

  /** The upstream's reply with the client's ID put back, or null when none answered in time. */
  forward(query: Buffer, questionEnd: number, transport: Transport): Promise<Buffer | null> {
    return new Promise((forwarded) => this.forwardTo(query, questionEnd, transport, { forwarded }));
  }

  /** As forward(), the reply going to `waiter` (possibly before this returns): no promise.
   * `now`: performance.now(), when the caller has just read it. */
  forwardTo(query: Buffer, questionEnd: number, transport: Transport, waiter: JobWaiter, now = performance.now()): void {
    if (this.inFlight >= (this.options.maxInFlight ?? Infinity)) {
      this.stats.overloaded++;
      waiter.forwarded(null);
      return;
    }
    this.inFlight++;
    new ForwardJob(this.jobs, query, questionEnd, transport, this.pool.order(), messageId(query), this.options.queryTimeoutMs, waiter, now);
  }

  /** For tests and debugging (debug.ts): the state of `upstream`'s UDP sockets and TCP
   * connections, each undefined until first used. */
  [INSPECT](upstream: Upstream): { udp?: UdpSocketsState; tcp?: TcpConnectionsState } {
    return { udp: this.udp.get(upstream)?.[INSPECT](), tcp: this.tcp.get(upstream)?.[INSPECT]() };
  }

  /** Replaced (by a reload): the queries in flight finish here, then the sockets close.
   * Every query ends by its query timeout, so this takes at most that long. */
  retire(): void {
    this.retired = true;
    if (this.inFlight === 0) this.close();
  }

  /** Closes every upstream socket and connection. Queries in flight get null (SERVFAIL);
   * queries after this fail at once. */
  close(): void {
    this.closed = true;
    for (const sockets of this.udp.values()) sockets.close();
    for (const connections of this.tcp.values()) connections.close();
    this.udp.clear();
    this.tcp.clear();
  }

  private readonly exchange: JobOwner['exchange'] = (query, questionEnd, upstream, transport, target, attempt) => {
    if (this.closed) return null;
    if (transport === 'tcp' || upstream.tls) {
      let connections = this.tcp.get(upstream);
      if (!connections) this.tcp.set(upstream, (connections = this.streamConnections(upstream)));
      return connections.exchange(query, questionEnd, target, attempt);
    }
    let sockets = this.udp.get(upstream);
    if (!sockets) this.udp.set(upstream, (sockets = new UdpUpstreamSockets(upstream, this.udpOptions, this.onRejected)));
    // DoT and DoH queries come one per callback: sent together at the end of the loop turn
    return sockets.exchange(query, questionEnd, target, attempt, transport === 'dot' || transport === 'doh');
  };

  private streamConnections(upstream: Upstream): TcpUpstreamConnections {
    if (!upstream.tls) return new TcpUpstreamConnections(upstream, this.tcpOptions, this.onRejected);
    const report = (err: Error) => this.options.onConnectionError?.(upstream, err);
    return new TcpUpstreamConnections(upstream, this.tcpOptions, this.onRejected, tlsDial({ ...upstream, tls: upstream.tls }, report));
  }
}
