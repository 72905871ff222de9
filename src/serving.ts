// The DNS-serving half of `divert serve`: answer cache, upstreams, query path and the
// UDP/TCP listeners, over a view of the address table. It runs in the one process of
// `--workers 1`, or in every worker process (src/cluster/), where the table view is a
// replica fed by the primary or a Redis connection of the worker's own.

import type { Socket as UdpSocket } from 'node:dgram';
import { performance } from 'node:perf_hooks';
import type { Server, Socket } from 'node:net';
import type { Logger } from 'pino';
import { DivertError } from './errors.js';
import { throttledLog } from './log.js';
import { formatHostPort, type HostPort } from './net/host-port.js';
import type { ServeConfig } from './config/options.js';
import { AccessList } from './net/cidr.js';
import { ClientNetworks } from './net/client-networks.js';
import { RateLimiter } from './pipeline/rate-limit.js';
import { QueryPipeline, type OutcomeCounts, type Result } from './pipeline/pipeline.js';
import { QueryLog } from './pipeline/query-log.js';
import { outcomeTotals, QueryStats, sumFigures, type QueryFigures } from './pipeline/query-stats.js';
import { AnswerCache } from './table/answer-cache.js';
import { RedisTable } from './table/redis-table.js';
import type { TableView } from './table/table.js';
import { BindFailure, listenPair } from './transport/listen-pair.js';
import { DEFAULT_TCP_LIMITS, type TcpAdmission } from './transport/tcp-listener.js';
import type { Handler } from './transport/udp-listener.js';
import { emptyListenerCounts, LISTENER_EVENTS, listenerReport, type ListenerCounts, type ListenerReport } from './transport/listener-events.js';
import { Forwarder } from './upstream/forwarder.js';
import { UpstreamPool, type PoolNews } from './upstream/upstream-pool.js';
import type { Limits, RuleContext } from './pipeline/pipeline.js';

export interface UpstreamState {
  upstream: string;
  up: boolean;
  lastRttMs: number;
  /** Smoothed round-trip time of its answers (0 before the first). */
  srttMs: number;
  /** Attempts it answered, and attempts that failed (timed out, or a socket error). */
  answered: number;
  failed: number;
}

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

export interface Serving {
  /** The addresses actually bound (a requested port 0 replaced by the one given). */
  listening: HostPort[];
  /** The reply of this query path to `query` from `address` (over UDP), without a socket. */
  probe(query: Buffer, address: string): Promise<Buffer | null>;
  /** Another worker's upstream news: the upstreams' health is one view for all workers. */
  hear(news: PoolNews): void;
  /** A reload (src/reload.ts): new upstreams, allow list, --trust-ecs, rate limit and
   * upstream timeouts for the queries from now on; a query in flight keeps its forwarder. */
  reconfigure(config: ServeConfig, upstreams: HostPort[]): void;
  stats(): ServingStats;
  close(): Promise<void>;
}

export interface ProcessFigures {
  worker: number;
  residentBytes: number;
  heapUsedBytes: number;
  /** The share of time the event loop was busy since the previous reading (0-1): how near saturation. */
  eventLoopUtilization: number;
}

export interface ServingOptions {
  /** false in a cluster worker: the socket is shared with the other workers. */
  exclusive: boolean;
  /** The worker's number, for its figures (1 without workers). */
  worker?: number;
  /** Upstream failures and recoveries seen here, for the other workers' pools. */
  onPoolNews?: (news: PoolNews) => void;
  /** The time the rules' windows see (tests inject one); Date.now by default. */
  clock?: () => number;
}

export function bindError(err: NodeJS.ErrnoException, at: HostPort): DivertError {
  const where = formatHostPort(at);
  const reason =
    err.code === 'EADDRINUSE' ? `${where} is already in use (another DNS server?); stop it or choose another --listen`
    : err.code === 'EACCES' ? `no permission to listen on ${where}: ports below 1024 need root or CAP_NET_BIND_SERVICE (e.g. setcap cap_net_bind_service=+ep "$(command -v node)"), or use --listen with a port from 1024 up`
    : err.code === 'EADDRNOTAVAIL' ? `cannot listen on ${where}: ${at.host} is not an address of this machine`
    : `cannot listen on ${where}: ${err.message}`;
  return new DivertError('LISTEN_FAILED', reason, { cause: err });
}

/** What a query that arrives once the drain has begun gets: nothing. */
const DRAINING: Result = Object.freeze({ reply: null, outcome: 'dropped' });
/** Beyond the query timeout, what the drain allows for the last replies to be sent. */
const DRAIN_MARGIN_MS = 250;

interface Listener {
  udp: UdpSocket;
  tcp: Server;
  address: HostPort;
}

interface ListenContext {
  config: ServeConfig;
  log: Logger;
  sockets: Set<Socket>;
  admission: TcpAdmission;
  report: ListenerReport;
  exclusive: boolean;
}

/** The query path's UDP and TCP on one address; a failure to bind says what to do about it. */
async function listenBoth(at: HostPort, handler: Handler, { config, log, sockets, admission, report, exclusive }: ListenContext): Promise<Listener> {
  const limits = { ...DEFAULT_TCP_LIMITS, idleTimeoutMs: config.tcpIdleTimeoutMs, maxConnections: config.tcpMaxConnections, maxPerClient: config.tcpMaxPerClient };
  try {
    const { udp, tcp, port } = await listenPair(at, handler, { limits, admission, report, exclusive, onError: (err) => log.warn({ err: err.message }, 'listener') });
    tcp.on('connection', (socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    return { udp, tcp, address: { host: at.host, port } };
  } catch (err) {
    throw err instanceof BindFailure ? bindError(err.cause, err.at) : err;
  }
}

function trustEcsOf(config: ServeConfig): AccessList | null {
  return config.trustEcs.length > 0 ? new AccessList(config.trustEcs) : null;
}

function limitsOf(config: ServeConfig): Limits {
  return {
    // the workers read one socket, so a flood spreads over them: each keeps its share of the rate
    limiter: config.rateLimit > 0 ? new RateLimiter({ qps: config.rateLimit / config.workers, v4Prefix: config.rateLimitV4Prefix, v6Prefix: config.rateLimitV6Prefix }) : null,
    action: config.rateLimitAction,
  };
}

function sameAddresses(a: readonly HostPort[], b: readonly HostPort[]): boolean {
  return a.length === b.length && a.every((u, i) => u.host === b[i].host && u.port === b[i].port);
}

export async function startServing(config: ServeConfig, view: TableView, upstreams: HostPort[], log: Logger, options: ServingOptions): Promise<Serving> {
  const access = new AccessList(config.allow);
  // the names in Redis, held in process so that names it lacks cost no round trip; until
  // the filter is loaded, lookups read Redis
  if (view instanceof RedisTable) void view.loadFilter();
  // while the store is down every lookup fails the same way: one line per 10 s, with a count
  const lookupFailed = throttledLog((details, message) => log.warn(details, message), 1, 10_000);
  const answers = new AnswerCache(view, {
    maxNames: config.cacheNames,
    onLookupError: (err, name) => lookupFailed({ err: (err as Error).message, name }, 'table lookup failed; forwarding names not seen before'),
  });
  let changes = 0;
  const stopCounting = view.onChange(() => changes++);
  // let: a reload (reconfigure below) replaces them; stats() and hear() read the current ones
  let pool = new UpstreamPool(upstreams);
  pool.onNews = options.onPoolNews;
  let forwarder = new Forwarder(pool, { attemptTimeoutMs: config.upstreamTimeoutMs, queryTimeoutMs: config.queryTimeoutMs, maxInFlight: config.forwardMaxInFlight });
  // the pipeline reads these per query: a reload changes their fields in place
  const rules: RuleContext = { trustEcs: trustEcsOf(config), clock: options.clock ?? Date.now };
  const limits: Limits = limitsOf(config);
  let current = config;
  /** What the drain waits for: the longest query timeout a forwarder still in use may have. */
  let drainMs = config.queryTimeoutMs;
  const pipeline = new QueryPipeline({
    access,
    answers,
    forwarder,
    onFault: (err) => log.error({ err }, 'query failed'),
    rules,
    limits,
    observers: {
      stats: new QueryStats(config.metricsMaxNames),
      queryLog: config.queryLog ? new QueryLog({ to: config.queryLog, sample: config.queryLogSample }) : null,
    },
    maxUdpSize: config.maxUdpSize,
  });
  // TCP clients are judged at accept, by the allow list and client networks in force then
  let allowed = access;
  let networks = new ClientNetworks({ v4Prefix: config.rateLimitV4Prefix, v6Prefix: config.rateLimitV6Prefix });
  const admission: TcpAdmission = { admits: (address) => allowed.allows(address), networkOf: (address) => networks.of(address) };
  // a failure to serve one message is that message's loss; a peer can provoke it at will, so the log is throttled
  const faultLog = throttledLog((details, message) => log.warn(details, message));
  const report = listenerReport((event, err) => faultLog({ event, err: err instanceof Error ? err.message : String(err) }, 'a message could not be served'));
  // Once the drain has begun, new queries, also on open TCP connections, are dropped
  // unanswered; the pipeline counts the ones in flight, which close() lets finish.
  let draining = false;
  const handler: Handler = (msg, client) => (draining ? DRAINING : pipeline.handle(msg, client));

  const listeners: Listener[] = [];
  const sockets = new Set<Socket>();
  const close = async () => {
    // Stop accepting (TCP at once; UDP and open connections through the gate above), let
    // the queries in flight get their answers, then close. A query waits at most the
    // query timeout for its upstreams (then it is SERVFAIL), so the wait is bounded by it.
    draining = true;
    const closed = listeners.map((l) => new Promise<void>((resolve) => l.tcp.close(() => resolve())));
    await pipeline.idle(drainMs + DRAIN_MARGIN_MS);
    // the last replies were handed to their sockets in the same turn: let them go out
    await new Promise<void>((resolve) => setImmediate(resolve));
    for (const l of listeners) l.udp.close();
    for (const socket of sockets) {
      // end() sends what is buffered first; a client that does not read is cut off
      socket.destroySoon();
      setTimeout(() => socket.destroy(), DRAIN_MARGIN_MS).unref();
    }
    await Promise.all(closed);
    forwarder.close();
    await pipeline.observers.queryLog?.close();
    stopCounting();
    answers.close();
  };
  try {
    for (const at of config.listen) listeners.push(await listenBoth(at, handler, { config, log, sockets, admission, report, exclusive: options.exclusive }));
  } catch (err) {
    await close();
    throw err;
  }

  let lastLoop = performance.eventLoopUtilization();
  const processFigures = (): ProcessFigures => {
    const loop = performance.eventLoopUtilization();
    const utilization = performance.eventLoopUtilization(loop, lastLoop).utilization;
    lastLoop = loop;
    const memory = process.memoryUsage();
    return { worker: options.worker ?? 1, residentBytes: memory.rss, heapUsedBytes: memory.heapUsed, eventLoopUtilization: utilization };
  };
  const stats = (): ServingStats => {
    const queries = pipeline.observers.stats.snapshot();
    return {
      counts: outcomeTotals(queries),
      queries,
      rejectedReplies: forwarder.stats.rejectedReplies,
      timeouts: forwarder.stats.timeouts,
      overloaded: forwarder.stats.overloaded,
      cacheHits: answers.hits,
      cacheMisses: answers.misses,
      cachedNames: answers.size,
      changes,
      upstreams: pool.upstreams.map((u) => ({
        upstream: u.label, up: !pool.isDown(u), lastRttMs: u.lastRttMs, srttMs: u.srttMs, answered: u.answered, failed: u.failed,
      })),
      // a replica fed by the primary is as ready as the primary's table, which counts itself
      tableViewsReady: view instanceof RedisTable && !view.isReady() ? 0 : 1,
      processes: [processFigures()],
      listener: { ...report.counts },
    };
  };
  const probe = async (query: Buffer, address: string) => (await pipeline.handle(query, { transport: 'udp', address })).reply;
  const reconfigure = (next: ServeConfig, nextUpstreams: HostPort[]) => {
    const sameUpstreams = sameAddresses(pool.upstreams, nextUpstreams);
    if (!sameUpstreams) {
      const previous = pool;
      pool = new UpstreamPool(nextUpstreams);
      pool.onNews = options.onPoolNews;
      // an upstream kept from the old list keeps its health (a backed-off one stays so) and figures
      for (const u of pool.upstreams) {
        const kept = previous.upstreams.find((p) => p.label === u.label);
        if (kept) Object.assign(u, kept);
      }
    }
    const previousForwarder = forwarder;
    if (!sameUpstreams || next.upstreamTimeoutMs !== current.upstreamTimeoutMs || next.queryTimeoutMs !== current.queryTimeoutMs) {
      forwarder = new Forwarder(pool, {
        attemptTimeoutMs: next.upstreamTimeoutMs, queryTimeoutMs: next.queryTimeoutMs, maxInFlight: current.forwardMaxInFlight, stats: previousForwarder.stats,
      });
    }
    allowed = new AccessList(next.allow);
    pipeline.reconfigure(allowed, forwarder);
    if (next.rateLimitV4Prefix !== current.rateLimitV4Prefix || next.rateLimitV6Prefix !== current.rateLimitV6Prefix) {
      networks = new ClientNetworks({ v4Prefix: next.rateLimitV4Prefix, v6Prefix: next.rateLimitV6Prefix });
    }
    // the queries the old forwarder has in flight finish there; then it closes its sockets
    if (forwarder !== previousForwarder) previousForwarder.retire();
    rules.trustEcs = trustEcsOf(next);
    if (next.rateLimit !== current.rateLimit || next.rateLimitV4Prefix !== current.rateLimitV4Prefix || next.rateLimitV6Prefix !== current.rateLimitV6Prefix) {
      limits.limiter = limitsOf(next).limiter;
    }
    limits.action = next.rateLimitAction;
    // a reload also reopens the query log file, so logrotate can move it first
    pipeline.observers.queryLog?.reopen(next.queryLogSample);
    drainMs = Math.max(drainMs, next.queryTimeoutMs);
    current = next;
  };
  return { listening: listeners.map((l) => l.address), probe, hear: (news) => pool.hear(news), reconfigure, stats, close };
}

/** The figures of several workers as one: counts add up; an upstream is up while any worker has it in service. */
export function sumStats(all: ServingStats[]): ServingStats {
  const queries = sumFigures(all.map((s) => s.queries));
  const total: ServingStats = {
    counts: outcomeTotals(queries),
    queries,
    rejectedReplies: 0, timeouts: 0, overloaded: 0, cacheHits: 0, cacheMisses: 0, cachedNames: 0, changes: 0, upstreams: [],
    tableViewsReady: 0, processes: all.flatMap((s) => s.processes), listener: emptyListenerCounts(),
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
