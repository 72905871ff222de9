// GET /metrics of `divert proxy`: read from the proxy's figures when scraped (nothing on
// the relay path but the connection table's own counters; with --workers, every worker's
// merged), and Node's process figures of the process that serves --status.

import { Counter, Gauge, Registry } from 'prom-client';
import { collectProcessMetrics } from '../process-metrics.js';
import type { TargetStats } from './connections.js';
import type { ProxyFigures } from './figures.js';

/** Figures for one scrape: the metrics of a scrape share one read. */
function perScrape(read: () => Promise<ProxyFigures>): () => Promise<ProxyFigures> {
  let last: { at: number; figures: Promise<ProxyFigures> } | undefined;
  return () => {
    if (!last || Date.now() - last.at > 200) last = { at: Date.now(), figures: read() };
    return last.figures;
  };
}

export function proxyRegistry(read: () => Promise<ProxyFigures>): Registry {
  const figures = perScrape(read);
  const registry = new Registry();
  collectProcessMetrics(registry, 'divert_proxy_');
  const perTarget = (name: string, help: string, value: (s: TargetStats) => number, kind: 'counter' | 'gauge' = 'counter') => {
    const options = {
      name,
      help,
      labelNames: ['target'],
      registers: [registry],
      async collect(this: Counter | Gauge) {
        this.reset();
        for (const [target, s] of Object.entries((await figures()).targets)) {
          if (this instanceof Counter) this.inc({ target }, value(s));
          else this.set({ target }, value(s));
        }
      },
    };
    return kind === 'counter' ? new Counter(options) : new Gauge(options);
  };
  perTarget('divert_proxy_target_connects_total', 'Connections (TCP) and flows (UDP) relayed to the target', (s) => s.connects);
  perTarget('divert_proxy_target_connect_failures_total', 'Connects to the target that failed or timed out', (s) => s.connectFailures);
  perTarget(
    'divert_proxy_target_connect_seconds_total',
    'Time spent connecting to the target (TCP), summed',
    (s) => s.connectMsTotal / 1000,
  );
  perTarget('divert_proxy_target_received_bytes_total', 'Bytes from clients sent on to the target', (s) => s.bytesIn);
  perTarget('divert_proxy_target_sent_bytes_total', 'Bytes from the target sent back to clients', (s) => s.bytesOut);
  perTarget('divert_proxy_target_open', 'Connections and flows open to the target', (s) => s.open, 'gauge');
  new Gauge({
    name: 'divert_proxy_connections_open',
    help: 'TCP connections and UDP flows open, all services',
    registers: [registry],
    async collect() {
      this.set((await figures()).connections.length);
    },
  });
  new Counter({
    name: 'divert_proxy_connections_total',
    help: 'TCP connections and UDP flows accepted, per service',
    labelNames: ['service'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const [service, n] of Object.entries((await figures()).opened)) this.inc({ service }, n);
    },
  });
  new Counter({
    name: 'divert_proxy_refused_total',
    help: 'Connections and flows refused at a limit (total: maxConnections; network: maxConnectionsPerNetwork)',
    labelNames: ['limit'],
    registers: [registry],
    async collect() {
      this.reset();
      const { refused } = await figures();
      this.inc({ limit: 'total' }, refused.total);
      this.inc({ limit: 'network' }, refused.network);
    },
  });
  new Gauge({
    name: 'divert_proxy_admin_up',
    help: "1 while divert serve's admin API is reachable and followed; 0 while the last table read is in use",
    registers: [registry],
    async collect() {
      this.set((await figures()).admin.up ? 1 : 0);
    },
  });
  return registry;
}
