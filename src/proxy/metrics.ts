// GET /metrics of `divert proxy`: figures read from the connection table when scraped
// (nothing on the relay path but the table's own counters), and Node's process figures.

import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { ConnectionTable } from './connections.js';
import type { TableView } from './table-view.js';

export function proxyRegistry(table: ConnectionTable, view: TableView): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'divert_proxy_' });
  const perTarget = (name: string, help: string, read: (s: ReturnType<ConnectionTable['targetStats']>[string]) => number) =>
    new Counter({
      name,
      help,
      labelNames: ['target'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [target, s] of Object.entries(table.targetStats())) this.inc({ target }, read(s));
      },
    });
  perTarget('divert_proxy_target_connects_total', 'Connections (TCP) and flows (UDP) relayed to the target', (s) => s.connects);
  perTarget('divert_proxy_target_connect_failures_total', 'Connects to the target that failed or timed out', (s) => s.connectFailures);
  perTarget(
    'divert_proxy_target_connect_seconds_total',
    'Time spent connecting to the target (TCP), summed',
    (s) => s.connectMsTotal / 1000,
  );
  perTarget('divert_proxy_target_received_bytes_total', 'Bytes from clients sent on to the target', (s) => s.bytesIn);
  perTarget('divert_proxy_target_sent_bytes_total', 'Bytes from the target sent back to clients', (s) => s.bytesOut);
  new Gauge({
    name: 'divert_proxy_target_open',
    help: 'Connections and flows open to the target',
    labelNames: ['target'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [target, s] of Object.entries(table.targetStats())) this.set({ target }, s.open);
    },
  });
  new Gauge({
    name: 'divert_proxy_connections_open',
    help: 'TCP connections and UDP flows open, all services',
    registers: [registry],
    collect() {
      this.set(table.size);
    },
  });
  new Counter({
    name: 'divert_proxy_connections_total',
    help: 'TCP connections and UDP flows accepted, per service',
    labelNames: ['service'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [service, n] of table.opened) this.inc({ service }, n);
    },
  });
  new Counter({
    name: 'divert_proxy_refused_total',
    help: 'Connections and flows refused at a limit (total: maxConnections; network: maxConnectionsPerNetwork)',
    labelNames: ['limit'],
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ limit: 'total' }, table.refused.total);
      this.inc({ limit: 'network' }, table.refused.network);
    },
  });
  new Gauge({
    name: 'divert_proxy_admin_up',
    help: "1 while divert serve's admin API is reachable and followed; 0 while the last table read is in use",
    registers: [registry],
    collect() {
      this.set(view.admin().up ? 1 : 0);
    },
  });
  return registry;
}
