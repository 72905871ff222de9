// Which upstream to ask next. Upstreams are tried in the order given; one that keeps
// failing is moved to the back for a back-off period that doubles while it keeps
// failing, and is probed again by real queries once the period ends. Plain and DoT
// upstreams are kept alike.

import { formatUpstream, type UpstreamSpec } from '../net/upstream-spec.js';

/** An upstream's address (and, for DoT, its certificate check) as configured. */
export type UpstreamAddress = UpstreamSpec;

export interface Upstream extends UpstreamAddress {
  /** "host:port" ("[v6]:port"), "tls://host:port[#name]" for DoT, for logs and metrics. */
  label: string;
  family: 4 | 6;
  consecutiveFailures: number;
  downUntil: number;
  backoffMs: number;
  lastRttMs: number;
  /** Smoothed round-trip time (as BIND and Unbound keep it: 7/8 old + 1/8 new); 0 before the first answer. */
  srttMs: number;
  /** Attempts it answered, and attempts counted as failures. */
  answered: number;
  failed: number;
}

/** An upstream's health and figures, which a reload carries over to the same upstream in its new list. */
const HEALTH_AND_FIGURES = ['consecutiveFailures', 'downUntil', 'backoffMs', 'lastRttMs', 'srttMs', 'answered', 'failed'] as const;

/** `to` takes `from`'s health and figures; its address and certificate check stay its own (a reloaded --upstream-ca). */
export function carryHealth(to: Upstream, from: Upstream): void {
  for (const key of HEALTH_AND_FIGURES) to[key] = from[key];
}

export interface PoolOptions {
  /** Failures in a row that mark an upstream down. */
  failuresToMarkDown: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
  now?: () => number;
}

/** What one pool tells the others sharing its upstreams (the other workers). */
export type PoolNews = { upstream: string; event: 'failed' | 'recovered' };

export const DEFAULT_POOL_OPTIONS: PoolOptions = { failuresToMarkDown: 3, initialBackoffMs: 2_000, maxBackoffMs: 60_000 };

export class UpstreamPool {
  readonly upstreams: Upstream[];
  private readonly now: () => number;
  /** Told of every failure while an upstream is in service, and of its first success after failures. */
  onNews?: (news: PoolNews) => void;

  constructor(
    addresses: UpstreamAddress[],
    private readonly options: PoolOptions = DEFAULT_POOL_OPTIONS,
  ) {
    this.now = options.now ?? Date.now;
    this.upstreams = addresses.map((a) => ({
      ...a,
      label: formatUpstream(a),
      family: a.host.includes(':') ? 6 : 4,
      consecutiveFailures: 0,
      downUntil: 0,
      backoffMs: 0,
      lastRttMs: 0,
      srttMs: 0,
      answered: 0,
      failed: 0,
    }));
  }

  /** The order to try upstreams in for one query: the ones up first, then the ones down. */
  order(): Upstream[] {
    // every query asks: with none ever marked down since its last answer (the usual case),
    // the list itself, with no array made and no reading of the clock
    let marked = false;
    for (const u of this.upstreams) if (u.downUntil !== 0) marked = true;
    if (!marked) return this.upstreams;
    const now = this.now();
    const up = this.upstreams.filter((u) => u.downUntil <= now);
    if (up.length === this.upstreams.length) return this.upstreams;
    return up.concat(this.upstreams.filter((u) => u.downUntil > now));
  }

  isDown(upstream: Upstream): boolean {
    return upstream.downUntil > this.now();
  }

  succeeded(upstream: Upstream, rttMs: number): void {
    if (upstream.consecutiveFailures > 0) this.onNews?.({ upstream: upstream.label, event: 'recovered' });
    this.reset(upstream);
    upstream.lastRttMs = rttMs;
    upstream.srttMs = upstream.answered === 0 ? rttMs : upstream.srttMs + (rttMs - upstream.srttMs) / 8;
    upstream.answered++;
  }

  failed(upstream: Upstream): void {
    if (!this.isDown(upstream)) this.onNews?.({ upstream: upstream.label, event: 'failed' });
    upstream.failed++;
    this.countFailure(upstream);
  }

  /** News from another pool over the same upstreams: its failures count here too. */
  hear(news: PoolNews): void {
    const upstream = this.upstreams.find((u) => u.label === news.upstream);
    if (!upstream) return;
    if (news.event === 'recovered') this.reset(upstream);
    else if (!this.isDown(upstream)) this.countFailure(upstream);
  }

  private reset(upstream: Upstream): void {
    upstream.consecutiveFailures = 0;
    upstream.downUntil = 0;
    upstream.backoffMs = 0;
  }

  private countFailure(upstream: Upstream): void {
    upstream.consecutiveFailures++;
    if (upstream.consecutiveFailures < this.options.failuresToMarkDown) return;
    upstream.backoffMs =
      upstream.backoffMs === 0 ? this.options.initialBackoffMs : Math.min(upstream.backoffMs * 2, this.options.maxBackoffMs);
    upstream.downUntil = this.now() + upstream.backoffMs;
  }
}
