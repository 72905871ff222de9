// GET /metrics: Prometheus text from prom-client. The query path keeps plain counters
// in typed arrays (src/pipeline/query-stats.ts); on a scrape they are fetched from every
// worker, summed, and read into the registry. Label values are bounded: outcomes,
// transports and query types are fixed lists, upstreams are configured, and names are
// table entries, at most --metrics-max-names of them (the rest count as "_other").

import { Counter, Gauge, Histogram, Registry, type MetricObjectWithValues, type MetricValueWithName } from 'prom-client';
import { collectProcessMetrics } from '../process-metrics.js';
import { countSeries, latencyOf, LATENCY_BUCKETS } from '../pipeline/query-stats.js';
import { OUTCOMES } from '../pipeline/outcome.js';
import type { OpenConnections, ServingStats } from '../serving/stats.js';
import { LISTENER_EVENTS, type ListenerCounts } from '../transport/listener-events.js';
import type { EventStreamFigures } from './events.js';

const STREAM_TRANSPORTS: readonly (keyof OpenConnections)[] = ['tcp', 'dot', 'doh'];

export interface MetricSources {
  /** Summed over the workers; read once per scrape. */
  stats: () => Promise<ServingStats>;
  /** Per worker slot: worker processes started to replace one that exited. */
  workerRestarts: () => number[];
  tableReady: () => boolean;
  /** Entries in the address table. */
  tableSize: () => Promise<number>;
  /** 'redis' adds the Redis connection figures. */
  backend: 'memory' | 'redis';
  /** The DNS UPDATE port's listener figures, when it is on. */
  updateListener?: () => ListenerCounts | undefined;
  /** The admin API's GET /v1/events streams. */
  events: () => EventStreamFigures;
  /** Each DNS listener: its transport (udp, tcp, dot, doh) and address. */
  listeners?: () => { transport: string; address: string }[];
  /** The DoT and DoH certificate in force, when there are such listeners. */
  certificate?: () => { notAfter: Date; certificate: { serialNumber: string } } | null;
}

type Labels = Record<string, string>;

/** A Counter fed from a running total that lives elsewhere. */
function mirrorCounter(registry: Registry, name: string, help: string, labelNames: string[], read: () => Iterable<[Labels, number]>) {
  const last = new Map<string, number>();
  return new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      for (const [labels, total] of read()) {
        const key = JSON.stringify(labels);
        const before = last.get(key);
        // a total below the last one was restarted (a worker replaced, an upstream pool
        // rebuilt by a reload): what it counted since then is new
        const delta = before === undefined || total < before ? total : total - before;
        this.inc(labels, delta);
        last.set(key, total);
      }
    },
  });
}

/** A Gauge set from the scrape's figures. */
function readGauge(
  registry: Registry,
  name: string,
  help: string,
  labelNames: string[],
  read: () => Iterable<[Labels, number]> | Promise<Iterable<[Labels, number]>>,
) {
  return new Gauge({
    name,
    help,
    labelNames,
    registers: [registry],
    async collect() {
      this.reset();
      for (const [labels, value] of await read()) this.set(labels, value);
    },
  });
}

/**
 * A histogram whose buckets are counted elsewhere (in the workers, without prom-client
 * on the query path): prom-client's Histogram only takes single observations, so this
 * one reports the buckets it is given instead.
 */
class CountedHistogram extends Histogram<'outcome'> {
  constructor(
    registry: Registry,
    name: string,
    help: string,
    private readonly read: () => ServingStats,
  ) {
    super({ name, help, labelNames: ['outcome'], buckets: [...LATENCY_BUCKETS], registers: [registry] });
  }

  // the registry prints what getForPromString() gives, and get() is the JSON form: both are this
  override async get(): Promise<MetricObjectWithValues<MetricValueWithName<'outcome' | 'le'>>> {
    return this.getForPromString();
  }

  async getForPromString(): Promise<MetricObjectWithValues<MetricValueWithName<'outcome' | 'le'>>> {
    const figures = this.read().queries;
    const name = (this as unknown as { name: string }).name;
    const values: MetricValueWithName<'outcome' | 'le'>[] = [];
    for (const outcome of OUTCOMES) {
      const { cumulative, sum } = latencyOf(figures, outcome);
      const count = cumulative[cumulative.length - 1];
      if (count === 0) continue;
      cumulative.forEach((n, b) =>
        values.push({
          metricName: `${name}_bucket`,
          labels: { outcome, le: b < LATENCY_BUCKETS.length ? LATENCY_BUCKETS[b] : '+Inf' },
          value: n,
        }),
      );
      values.push({ metricName: `${name}_sum`, labels: { outcome }, value: sum });
      values.push({ metricName: `${name}_count`, labels: { outcome }, value: count });
    }
    return { name, help: (this as unknown as { help: string }).help, type: 'histogram', aggregator: 'sum', values } as never;
  }
}

export function createMetrics(sources: MetricSources): () => Promise<{ contentType: string; body: string }> {
  const registry = new Registry();
  collectProcessMetrics(registry, 'divert_');
  // fetched from the workers once per scrape, before the collectors below read it
  let stats: ServingStats | undefined;
  const now = () => stats!;

  mirrorCounter(
    registry,
    'divert_queries_total',
    'DNS queries by outcome, transport and query type',
    ['outcome', 'transport', 'type'],
    () => countSeries(now().queries),
  );
  new CountedHistogram(
    registry,
    'divert_query_duration_seconds',
    "time from a query's arrival to its reply (or to its drop), by outcome",
    now,
  );
  mirrorCounter(
    registry,
    'divert_name_queries_total',
    'queries answered from the table, by the entry that answered (a wildcard is one name); beyond --metrics-max-names names, name="_other"',
    ['name'],
    () => [...now().queries.names].map(([name, n]) => [{ name }, n]),
  );

  mirrorCounter(
    registry,
    'divert_listener_events_total',
    'messages a listener could not serve (handler_error, send_error, unreplyable_source: from port 0) and TCP connections its limits refused or closed, by listener (dns, update)',
    ['listener', 'event'],
    () => {
      const series: [Labels, number][] = LISTENER_EVENTS.map((event) => [{ listener: 'dns', event }, now().listener[event]]);
      const update = sources.updateListener?.();
      if (update) for (const event of LISTENER_EVENTS) series.push([{ listener: 'update', event }, update[event]]);
      return series;
    },
  );

  readGauge(
    registry,
    'divert_upstream_up',
    '1 while an upstream is in service (in any worker), 0 while it is backed off',
    ['upstream'],
    () => now().upstreams.map((u) => [{ upstream: u.upstream }, u.up ? 1 : 0]),
  );
  readGauge(
    registry,
    'divert_upstream_rtt_seconds',
    "smoothed round-trip time of an upstream's answers (7/8 old + 1/8 new)",
    ['upstream'],
    () =>
      now()
        .upstreams.filter((u) => u.answered > 0)
        .map((u) => [{ upstream: u.upstream }, u.srttMs / 1000]),
  );
  mirrorCounter(
    registry,
    'divert_upstream_attempts_total',
    'attempts sent to an upstream, by result (answered, or failed: timed out or socket error)',
    ['upstream', 'result'],
    () =>
      now().upstreams.flatMap((u): [Labels, number][] => [
        [{ upstream: u.upstream, result: 'answered' }, u.answered],
        [{ upstream: u.upstream, result: 'failed' }, u.failed],
      ]),
  );
  mirrorCounter(registry, 'divert_forward_rejected_replies_total', 'upstream replies dropped: wrong source, ID or question', [], () => [
    [{}, now().rejectedReplies],
  ]);
  mirrorCounter(registry, 'divert_forward_timeouts_total', 'forwarded queries no upstream answered in time', [], () => [
    [{}, now().timeouts],
  ]);
  mirrorCounter(
    registry,
    'divert_forward_overloaded_total',
    'forwarded queries answered SERVFAIL at once: --forward-max-in-flight were already waiting for an upstream',
    [],
    () => [[{}, now().overloaded]],
  );

  mirrorCounter(registry, 'divert_answer_cache_lookups_total', 'answer cache lookups by result', ['result'], () => [
    [{ result: 'hit' }, now().cacheHits],
    [{ result: 'miss' }, now().cacheMisses],
  ]);
  readGauge(registry, 'divert_answer_cache_hit_ratio', 'answer cache hits ÷ lookups since start (0 before the first lookup)', [], () => {
    const lookups = now().cacheHits + now().cacheMisses;
    return [[{}, lookups === 0 ? 0 : now().cacheHits / lookups]];
  });
  readGauge(registry, 'divert_answer_cache_names', 'names held in the answer caches, summed over the workers', [], () => [
    [{}, now().cachedNames],
  ]);

  readGauge(registry, 'divert_table_names', 'entries in the address table', [], async () => {
    // the size needs the store: with Redis down, the series is left out rather than wrong
    const size = await sources.tableSize().catch(() => null);
    return size === null ? [] : [[{}, size]];
  });
  readGauge(registry, 'divert_table_ready', '1 while the address table backend is reachable', [], () => [
    [{}, sources.tableReady() ? 1 : 0],
  ]);
  mirrorCounter(registry, 'divert_table_changes_total', 'table changes applied, summed over the processes answering queries', [], () => [
    [{}, now().changes],
  ]);
  if (sources.backend === 'redis') {
    readGauge(
      registry,
      'divert_redis_up',
      '1 while a Redis connection is ready: the admin API\'s (process="primary"), and the number of workers\' (process="workers")',
      ['process'],
      () => [
        [{ process: 'primary' }, sources.tableReady() ? 1 : 0],
        [{ process: 'workers' }, now().tableViewsReady],
      ],
    );
  }
  readGauge(registry, 'divert_event_streams', 'open GET /v1/events streams (at most --events-max-streams)', [], () => [
    [{}, sources.events().open],
  ]);
  mirrorCounter(
    registry,
    'divert_event_streams_slow_closed_total',
    'event streams sent resync and closed because their client did not keep up',
    [],
    () => [[{}, sources.events().slowClosed]],
  );
  mirrorCounter(registry, 'divert_event_streams_refused_total', 'GET /v1/events requests refused at --events-max-streams', [], () => [
    [{}, sources.events().refused],
  ]);
  readGauge(
    registry,
    'divert_listener_info',
    'each DNS listener, by transport (udp, tcp, dot, doh) and address; always 1',
    ['transport', 'address'],
    () => (sources.listeners?.() ?? []).map((l) => [l, 1]),
  );
  readGauge(
    registry,
    'divert_tls_certificate_expiry_seconds',
    "when the DoT and DoH listeners' certificate expires (its notAfter), in seconds since the Unix epoch; reloaded on SIGHUP",
    ['serial'],
    () => {
      const tls = sources.certificate?.();
      return tls ? [[{ serial: tls.certificate.serialNumber }, Math.floor(tls.notAfter.getTime() / 1000)]] : [];
    },
  );
  readGauge(registry, 'divert_workers', 'processes answering DNS queries', [], () => [[{}, now().processes.length]]);
  mirrorCounter(
    registry,
    'divert_worker_restarts_total',
    'worker processes started to replace one that exited (crashed, or failed to start), by worker slot',
    ['worker'],
    () => sources.workerRestarts().map((n, slot) => [{ worker: String(slot + 1) }, n]),
  );
  readGauge(
    registry,
    'divert_worker_resident_memory_bytes',
    'resident memory of each process answering queries (worker 1 without --workers)',
    ['worker'],
    () => now().processes.map((p) => [{ worker: String(p.worker) }, p.residentBytes]),
  );
  readGauge(registry, 'divert_worker_heap_used_bytes', 'V8 heap in use in each process answering queries', ['worker'], () =>
    now().processes.map((p) => [{ worker: String(p.worker) }, p.heapUsedBytes]),
  );
  readGauge(
    registry,
    'divert_worker_event_loop_utilization',
    "share of time each process's event loop was busy since the previous reading (a scrape, or /healthz) (0-1; near 1: saturated)",
    ['worker'],
    () => now().processes.map((p) => [{ worker: String(p.worker) }, p.eventLoopUtilization]),
  );
  readGauge(
    registry,
    'divert_worker_udp_reading',
    'UDP listen sockets each process reads now: a worker other than the first reads a shared one only while the first falls behind (0: away, the first worker reads alone)',
    ['worker'],
    () => now().processes.map((p) => [{ worker: String(p.worker) }, p.udp.reading]),
  );
  readGauge(
    registry,
    'divert_worker_udp_first_busy',
    "the first worker's thread's CPU share (0-1; 1 is a core) as each other worker last weighed it: at 0.9 with a queue waiting, that worker reads the shared UDP socket too",
    ['worker'],
    () =>
      now().processes.flatMap((p): [Labels, number][] =>
        p.udp.firstBusy === null ? [] : [[{ worker: String(p.worker) }, p.udp.firstBusy]],
      ),
  );
  mirrorCounter(
    registry,
    'divert_worker_udp_spill_total',
    'times a worker other than the first came back to a shared UDP socket (join: the first fell behind: stalled, or saturated) or left it to the first (leave: one reader can do the work)',
    ['worker', 'event'],
    () =>
      now().processes.flatMap((p): [Labels, number][] => [
        [{ worker: String(p.worker), event: 'join' }, p.udp.joins],
        [{ worker: String(p.worker), event: 'leave' }, p.udp.leaves],
      ]),
  );
  readGauge(
    registry,
    'divert_worker_open_connections',
    "connections open on each process's DNS listeners, by transport (tcp, dot, doh): how the workers share long-lived DoT and DoH clients",
    ['worker', 'transport'],
    () =>
      now().processes.flatMap((p) =>
        STREAM_TRANSPORTS.map((transport): [Labels, number] => [{ worker: String(p.worker), transport }, p.openConnections[transport]]),
      ),
  );

  return async () => {
    stats = await sources.stats();
    return { contentType: registry.contentType, body: await registry.metrics() };
  };
}
