// The query path of each configuration (pipeline.ts), built from what lasts across
// reloads — the answer cache, the figures and the query log, the upstreams' health — and
// what a configuration decides: the allow list, --trust-ecs, the rate limit, the
// upstreams and their timeouts, --max-udp-size. A reload builds a new path and swaps one
// reference; nothing a query in flight holds is changed under it, and a query already
// forwarded finishes on the forwarder it was given, which then closes its sockets.

import type { ServeConfig } from '../config/options.js';
import { AccessList } from '../net/cidr.js';
import { ClientNetworks } from '../net/client-networks.js';
import { sameUpstreams, type UpstreamSpec } from '../net/upstream-spec.js';
import type { InFlight } from '../pipeline/in-flight.js';
import { QueryPipeline, type Limits, type Observers } from '../pipeline/pipeline.js';
import { RateLimiter } from '../pipeline/rate-limit.js';
import type { AnswerCache } from '../table/answer-cache.js';
import type { TcpAdmission } from '../transport/connection-slots.js';
import type { ConnectedUdp } from '../transport/connected-udp.js';
import { Forwarder, type ForwarderStats } from '../upstream/forwarder.js';
import { carryHealth, UpstreamPool, type PoolNews, type Upstream } from '../upstream/upstream-pool.js';
import type { UpstreamState } from './stats.js';

/** What every path of a process shares. */
export interface SharedParts {
  answers: AnswerCache;
  observers: Observers;
  inFlight: InFlight;
  /** The time the rules' windows see (tests inject one). */
  clock: () => number;
  /** A bug in a stage: the query gets SERVFAIL, and this is told. */
  onFault: (err: unknown) => void;
  /** Upstream failures and recoveries seen here, for the other workers' pools. */
  onPoolNews?: (news: PoolNews) => void;
  /** Why a connection to an upstream failed (a DoT handshake, a certificate refused). */
  onUpstreamError?: (upstream: Upstream, err: Error) => void;
  /** Workers sharing the listeners: each keeps its share of --rate-limit. */
  workers: number;
  /** --udp-batch: the upstream UDP sockets are the native addon's. */
  connectedUdp?: ConnectedUdp | null;
}

function sameRate(a: ServeConfig, b: ServeConfig): boolean {
  return a.rateLimit === b.rateLimit && a.rateLimitV4Prefix === b.rateLimitV4Prefix && a.rateLimitV6Prefix === b.rateLimitV6Prefix;
}

export class QueryPaths {
  private path: QueryPipeline;
  private config: ServeConfig;
  private pool: UpstreamPool;
  private forwarder: Forwarder;
  private limiter: RateLimiter | null;
  private access: AccessList;
  private networks: ClientNetworks;
  /** Carried from forwarder to forwarder, so the figures count on across reloads. */
  private readonly forwarded: ForwarderStats = { rejectedReplies: 0, timeouts: 0, overloaded: 0 };
  /** The longest query timeout a forwarder still in use may have: what a drain waits for. */
  private longestQueryMs: number;

  /** TCP clients are judged at accept, by the allow list and client networks in force then. */
  readonly admission: TcpAdmission = {
    admits: (address) => this.access.allows(address),
    networkOf: (address) => this.networks.of(address),
  };

  constructor(
    config: ServeConfig,
    upstreams: UpstreamSpec[],
    private readonly shared: SharedParts,
  ) {
    this.config = config;
    this.pool = this.newPool(upstreams, null);
    this.forwarder = this.newForwarder(config);
    this.limiter = this.newLimiter(config);
    this.access = new AccessList(config.allow);
    this.networks = new ClientNetworks({ v4Prefix: config.rateLimitV4Prefix, v6Prefix: config.rateLimitV6Prefix });
    this.longestQueryMs = config.queryTimeoutMs;
    this.path = this.build(config);
  }

  /** The path new queries take. */
  get current(): QueryPipeline {
    return this.path;
  }

  get drainMs(): number {
    return this.longestQueryMs;
  }

  get forwarderStats(): ForwarderStats {
    return this.forwarded;
  }

  get upstreams(): UpstreamState[] {
    const pool = this.pool;
    return pool.upstreams.map((u) => ({
      upstream: u.label,
      up: !pool.isDown(u),
      lastRttMs: u.lastRttMs,
      srttMs: u.srttMs,
      answered: u.answered,
      failed: u.failed,
    }));
  }

  /** Another worker's upstream news: the upstreams' health is one view for all workers. */
  hear(news: PoolNews): void {
    this.pool.hear(news);
  }

  /** A reload: a path for `next`, reusing what it does not change. */
  reconfigure(next: ServeConfig, upstreams: UpstreamSpec[]): void {
    const current = this.config;
    const unchanged = sameUpstreams(this.pool.upstreams, upstreams);
    if (!unchanged) this.pool = this.newPool(upstreams, this.pool);
    if (!unchanged || next.upstreamTimeoutMs !== current.upstreamTimeoutMs || next.queryTimeoutMs !== current.queryTimeoutMs) {
      const previous = this.forwarder;
      this.forwarder = this.newForwarder(next);
      // the queries it has in flight finish there; then it closes its sockets
      previous.retire();
    }
    if (!sameRate(next, current)) this.limiter = this.newLimiter(next);
    this.access = new AccessList(next.allow);
    if (next.rateLimitV4Prefix !== current.rateLimitV4Prefix || next.rateLimitV6Prefix !== current.rateLimitV6Prefix) {
      this.networks = new ClientNetworks({ v4Prefix: next.rateLimitV4Prefix, v6Prefix: next.rateLimitV6Prefix });
    }
    // a reload also reopens the query log file, so logrotate can move it first
    this.shared.observers.queryLog?.reopen(next.queryLogSample);
    this.longestQueryMs = Math.max(this.longestQueryMs, next.queryTimeoutMs);
    this.config = next;
    this.path = this.build(next);
  }

  /** Closes the upstream sockets: queries still in flight get SERVFAIL. */
  close(): void {
    this.forwarder.close();
  }

  private build(config: ServeConfig): QueryPipeline {
    const limits: Limits = { limiter: this.limiter, action: config.rateLimitAction };
    return new QueryPipeline({
      access: this.access,
      answers: this.shared.answers,
      forwarder: this.forwarder,
      onFault: this.shared.onFault,
      rules: { trustEcs: config.trustEcs.length > 0 ? new AccessList(config.trustEcs) : null, clock: this.shared.clock },
      limits,
      observers: this.shared.observers,
      maxUdpSize: config.maxUdpSize,
      inFlight: this.shared.inFlight,
    });
  }

  /** An upstream kept from the previous list keeps its health (a backed-off one stays so) and figures. */
  private newPool(upstreams: UpstreamSpec[], previous: UpstreamPool | null): UpstreamPool {
    const pool = new UpstreamPool(upstreams);
    pool.onNews = this.shared.onPoolNews;
    for (const u of pool.upstreams) {
      const kept = previous?.upstreams.find((p) => p.label === u.label);
      if (kept) carryHealth(u, kept);
    }
    return pool;
  }

  private newForwarder(config: ServeConfig): Forwarder {
    return new Forwarder(this.pool, {
      attemptTimeoutMs: config.upstreamTimeoutMs,
      queryTimeoutMs: config.queryTimeoutMs,
      maxInFlight: config.forwardMaxInFlight,
      udp: { sockets: config.upstreamSockets, native: this.shared.connectedUdp },
      stats: this.forwarded,
      maxUdpSize: config.maxUdpSize,
      onConnectionError: this.shared.onUpstreamError,
    });
  }

  /** The workers read one socket, so a flood spreads over them: each keeps its share of the rate. */
  private newLimiter(config: ServeConfig): RateLimiter | null {
    if (config.rateLimit === 0) return null;
    return new RateLimiter({
      qps: config.rateLimit / this.shared.workers,
      v4Prefix: config.rateLimitV4Prefix,
      v6Prefix: config.rateLimitV6Prefix,
    });
  }
}
