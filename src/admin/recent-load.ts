// GET /v1/stats/recent: queries per second over the last minutes, for the dashboard's load
// chart. The serving figures are running totals; this samples them once a second into a
// bounded ring of rates — only while someone reads it (a dashboard polls): with none open,
// nothing is sampled, and a multi-worker server is not asked for its figures every second.
// Each sample names the busiest intercepted names of its second (at most TOP_NAMES), so the
// ring stays bounded whatever the number of names (which --metrics-max-names bounds too).

import type { ServingStats } from '../serving/stats.js';
import type { LoadSample, RecentLoad } from './recent-load-shape.js';

export type { LoadSample, RecentLoad };

/** Names each sample keeps: the busiest of its second. */
export const TOP_NAMES = 8;

export interface RecentLoadOptions {
  intervalMs?: number;
  /** Samples kept: with 1 s each, 300 is five minutes. */
  keep?: number;
  /** Sampling stops when nobody has asked for this long. */
  idleStopMs?: number;
  now?: () => number;
}

interface Totals {
  at: number;
  total: number;
  intercepted: number;
  forwarded: number;
  names: Map<string, number>;
}

function totalsOf(stats: ServingStats, at: number): Totals {
  const total = Object.values(stats.counts).reduce((sum, n) => sum + n, 0);
  return { at, total, intercepted: stats.counts.intercepted, forwarded: stats.counts.forwarded, names: stats.queries.names };
}

/** A rate from two readings; a total that went down (a worker replaced) counts as none. */
function rate(now: number, before: number, seconds: number): number {
  return Math.max(0, now - before) / seconds;
}

/** The busiest names between two readings, at most TOP_NAMES of them, busiest first (ties by name). */
function topNames(now: Map<string, number>, before: Map<string, number>, seconds: number): Record<string, number> {
  const rates: [string, number][] = [];
  for (const [name, count] of now) {
    const r = rate(count, before.get(name) ?? 0, seconds);
    if (r > 0) rates.push([name, r]);
  }
  rates.sort(([a, x], [b, y]) => y - x || (a < b ? -1 : 1));
  return Object.fromEntries(rates.slice(0, TOP_NAMES));
}

export class RecentLoadSampler {
  private readonly intervalMs: number;
  private readonly keep: number;
  private readonly idleStopMs: number;
  private readonly now: () => number;
  private readonly samples: LoadSample[] = [];
  private last: Totals | undefined;
  private latest: ServingStats | undefined;
  private timer: NodeJS.Timeout | undefined;
  private reading = false;
  private askedAt = 0;

  constructor(
    private readonly read: () => Promise<ServingStats>,
    options: RecentLoadOptions = {},
  ) {
    this.intervalMs = options.intervalMs ?? 1000;
    this.keep = options.keep ?? 300;
    this.idleStopMs = options.idleStopMs ?? 120_000;
    this.now = options.now ?? Date.now;
  }

  /** The samples so far; the first call starts sampling (and has none yet). */
  async recent(): Promise<RecentLoad> {
    this.askedAt = this.now();
    if (!this.timer) {
      this.timer = setInterval(() => void this.sample(), this.intervalMs).unref();
      await this.sample();
    }
    return {
      intervalMs: this.intervalMs,
      samples: this.samples.slice(),
      upstreams: this.latest?.upstreams ?? [],
      processes: this.latest?.processes ?? [],
    };
  }

  /** Takes one reading now (the timer's step; exposed so tests need not wait for it). */
  async sample(): Promise<void> {
    if (this.reading) return; // a slow reading (workers busy) is not stacked up
    if (this.now() - this.askedAt > this.idleStopMs) return this.stop();
    this.reading = true;
    try {
      const stats = await this.read();
      const totals = totalsOf(stats, this.now());
      this.latest = stats;
      const before = this.last;
      this.last = totals;
      if (!before || totals.at <= before.at) return;
      const seconds = (totals.at - before.at) / 1000;
      this.samples.push({
        at: totals.at,
        total: rate(totals.total, before.total, seconds),
        intercepted: rate(totals.intercepted, before.intercepted, seconds),
        forwarded: rate(totals.forwarded, before.forwarded, seconds),
        names: topNames(totals.names, before.names, seconds),
      });
      if (this.samples.length > this.keep) this.samples.splice(0, this.samples.length - this.keep);
    } catch {
      // the figures were not available this time (a worker restarting): the next tick tries again
    } finally {
      this.reading = false;
    }
  }

  /** Stops sampling; the ring starts afresh when asked again (a gap is not drawn as a rate). */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.last = undefined;
    this.samples.length = 0;
  }
}
