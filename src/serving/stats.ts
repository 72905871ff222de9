// What /metrics and /healthz read of the processes answering queries: each one's figures,
// and several workers' figures summed into one.

import { performance } from 'node:perf_hooks';
import type { OutcomeCounts } from '../pipeline/outcome.js';
import { outcomeTotals, sumFigures, type QueryFigures } from '../pipeline/query-stats.js';
import { emptyListenerCounts, LISTENER_EVENTS, type ListenerCounts } from '../transport/listener-events.js';
import type { OpenConnections, ProcessFigures, UdpReading, UpstreamState } from './stats-shapes.js';

export type { OpenConnections, ProcessFigures, UpstreamState };

/** What /metrics and /healthz read; with several workers, the sum over all of them. */
export interface ServingStats {
  counts: OutcomeCounts;
  /** Queries by outcome, transport and type; latency; queries per intercepted name. */
  queries: QueryFigures;
  /** Upstream replies dropped: wrong source, ID or question. */
  rejectedReplies: number;
  /** Forwarded queries no upstream answered in time. */
  timeouts: number;
  /** Forwarded queries failed at once: --forward-max-in-flight were already waiting. */
  overloaded: number;
  cacheHits: number;
  cacheMisses: number;
  cachedNames: number;
  /** Table changes this process has applied (each worker sees every change). */
  changes: number;
  upstreams: UpstreamState[];
  /** Each process answering queries: its worker number (1 without workers), memory, and event loop. */
  processes: ProcessFigures[];
  /** Processes whose view of the table is ready (with Redis: connected). */
  tableViewsReady: number;
  /** Messages the listeners could not serve, and TCP connections their limits closed. */
  listener: ListenerCounts;
}

/** A reader of this process's figures; the event loop's share is since the previous reading; `open` counts the connections of its listeners. */
export function processFigures(worker: number, open: () => OpenConnections, udp: () => UdpReading): () => ProcessFigures {
  let lastLoop = performance.eventLoopUtilization();
  let lastCpu = process.cpuUsage();
  let lastAt = performance.now();
  return () => {
    const loop = performance.eventLoopUtilization();
    const utilization = performance.eventLoopUtilization(loop, lastLoop).utilization;
    lastLoop = loop;
    const cpu = process.cpuUsage(lastCpu);
    lastCpu = process.cpuUsage();
    const at = performance.now();
    const wallMicros = (at - lastAt) * 1000;
    lastAt = at;
    const memory = process.memoryUsage();
    return {
      worker,
      residentBytes: memory.rss,
      heapUsedBytes: memory.heapUsed,
      eventLoopUtilization: utilization,
      cpuUtilization: wallMicros > 0 ? (cpu.user + cpu.system) / wallMicros : 0,
      openConnections: open(),
      udp: udp(),
    };
  };
}

/** The figures of several workers as one: counts add up; an upstream is up while any worker has it in service. */
export function sumStats(all: ServingStats[]): ServingStats {
  const queries = sumFigures(all.map((s) => s.queries));
  const total: ServingStats = {
    counts: outcomeTotals(queries),
    queries,
    rejectedReplies: 0,
    timeouts: 0,
    overloaded: 0,
    cacheHits: 0,
    cacheMisses: 0,
    cachedNames: 0,
    changes: 0,
    upstreams: [],
    tableViewsReady: 0,
    processes: all.flatMap((s) => s.processes),
    listener: emptyListenerCounts(),
  };
  const upstreams = new Map<string, UpstreamState>();
  for (const s of all) {
    total.rejectedReplies += s.rejectedReplies;
    total.timeouts += s.timeouts;
    total.overloaded += s.overloaded;
    total.cacheHits += s.cacheHits;
    total.cacheMisses += s.cacheMisses;
    total.cachedNames += s.cachedNames;
    total.changes += s.changes;
    total.tableViewsReady += s.tableViewsReady;
    for (const event of LISTENER_EVENTS) total.listener[event] += s.listener[event];
    for (const u of s.upstreams) {
      const seen = upstreams.get(u.upstream);
      if (!seen) upstreams.set(u.upstream, { ...u });
      else {
        seen.up ||= u.up;
        seen.lastRttMs = Math.max(seen.lastRttMs, u.lastRttMs);
        // the mean of the workers that have a figure, weighted by what each measured it on
        const weight = seen.answered + u.answered;
        if (weight > 0) seen.srttMs = (seen.srttMs * seen.answered + u.srttMs * u.answered) / weight;
        seen.answered += u.answered;
        seen.failed += u.failed;
      }
    }
  }
  total.upstreams = [...upstreams.values()];
  return total;
}
