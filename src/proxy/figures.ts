// What the proxy shows of itself — its connections, per-target figures, refusals and its
// view of divert serve — as one plain value: made by a process from its own table, and
// merged by the primary of `--workers N` from every worker's (sent over IPC).

import type { Connection, ConnectionTable, TargetStats } from './connections.js';
import type { AdminState } from './table-view.js';

export interface ProxyFigures {
  connections: Connection[];
  targets: Record<string, TargetStats>;
  /** Connections and flows accepted, per service. */
  opened: Record<string, number>;
  refused: { total: number; network: number };
  admin: AdminState;
}

export function figuresOf(table: ConnectionTable, admin: AdminState): ProxyFigures {
  return {
    connections: table.list(),
    targets: table.targets(),
    opened: Object.fromEntries(table.opened),
    refused: { ...table.refused },
    admin,
  };
}

/** Every worker's figures as one: counts summed, connections listed together; divert serve counts as reachable only when every worker follows it. */
export function mergeFigures(parts: readonly ProxyFigures[], admin: AdminState): ProxyFigures {
  const out: ProxyFigures = { connections: [], targets: {}, opened: {}, refused: { total: 0, network: 0 }, admin };
  for (const part of parts) {
    out.connections.push(...part.connections);
    for (const [target, s] of Object.entries(part.targets)) {
      const sum = (out.targets[target] ??= { connects: 0, connectFailures: 0, connectMsTotal: 0, bytesIn: 0, bytesOut: 0, open: 0 });
      for (const key of Object.keys(sum) as (keyof TargetStats)[]) sum[key] += s[key];
    }
    for (const [service, n] of Object.entries(part.opened)) out.opened[service] = (out.opened[service] ?? 0) + n;
    out.refused.total += part.refused.total;
    out.refused.network += part.refused.network;
    if (!part.admin.up && out.admin.up) out.admin = part.admin;
  }
  out.connections.sort((a, b) => a.startedAt - b.startedAt);
  return out;
}

/** GET /v1/stats/targets: each target's figures with its average connect time, by target. */
export function targetReport(figures: ProxyFigures): { targets: Record<string, TargetStats & { connectMsAverage: number | null }> } {
  const targets: Record<string, TargetStats & { connectMsAverage: number | null }> = {};
  for (const [target, s] of Object.entries(figures.targets).sort(([a], [b]) => a.localeCompare(b)))
    targets[target] = { ...s, connectMsAverage: s.connects > 0 ? Math.round((s.connectMsTotal / s.connects) * 100) / 100 : null };
  return { targets };
}
