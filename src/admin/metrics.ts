// GET /metrics: Prometheus text from prom-client. The query path keeps plain counters
// (a property increment per query); they are read into the registry only on a scrape.

import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { Outcome } from '../pipeline/pipeline.js';
import type { ServingStats } from '../serving.js';

export interface MetricSources {
  /** Summed over the workers; read once per scrape. */
  stats: () => Promise<ServingStats>;
  tableReady: () => boolean;
}

/** A Counter fed from a running total that lives elsewhere. */
function mirrorCounter(registry: Registry, name: string, help: string, labelNames: string[], read: () => [Record<string, string>, number][]) {
  const last = new Map<string, number>();
  return new Counter({
    name, help, labelNames, registers: [registry],
    collect() {
      for (const [labels, total] of read()) {
        const key = JSON.stringify(labels);
        const delta = total - (last.get(key) ?? 0);
        if (delta > 0) this.inc(labels, delta);
        else if (!last.has(key)) this.inc(labels, 0);
        last.set(key, total);
      }
    },
  });
}

export function createMetrics(sources: MetricSources): () => Promise<{ contentType: string; body: string }> {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'divert_' });
  // fetched from the workers once per scrape, before the collectors below read it
  let stats: ServingStats | undefined;
  mirrorCounter(registry, 'divert_queries_total', 'DNS queries by outcome', ['outcome'], () =>
    (Object.entries(stats!.counts) as [Outcome, number][]).map(([outcome, n]) => [{ outcome }, n]));
  mirrorCounter(registry, 'divert_forward_rejected_replies_total', 'upstream replies dropped: wrong source, ID or question', [], () =>
    [[{}, stats!.rejectedReplies]]);
  mirrorCounter(registry, 'divert_forward_timeouts_total', 'forwarded queries no upstream answered in time', [], () =>
    [[{}, stats!.timeouts]]);
  mirrorCounter(registry, 'divert_answer_cache_lookups_total', 'answer cache lookups by result', ['result'], () =>
    [[{ result: 'hit' }, stats!.cacheHits], [{ result: 'miss' }, stats!.cacheMisses]]);
  new Gauge({
    name: 'divert_upstream_up', help: '1 while an upstream is in service (in any worker), 0 while it is backed off', labelNames: ['upstream'], registers: [registry],
    collect() {
      for (const u of stats!.upstreams) this.set({ upstream: u.upstream }, u.up ? 1 : 0);
    },
  });
  new Gauge({
    name: 'divert_table_ready', help: '1 while the address table backend is reachable', registers: [registry],
    collect() {
      this.set(sources.tableReady() ? 1 : 0);
    },
  });
  return async () => {
    stats = await sources.stats();
    return { contentType: registry.contentType, body: await registry.metrics() };
  };
}
