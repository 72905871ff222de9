// The DNS-serving half of `divert serve`: the answer cache in front of a view of the
// address table, the query path of the configuration in force, and the UDP/TCP (and
// DoT/DoH) listeners that hand it each message. It runs in the one process of `--workers 1`, or
// in every worker process (src/cluster/), where the table view is a replica fed by the
// primary or a Redis connection of the worker's own.

import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { ServeConfig } from '../config/options.js';
import { throttledLog } from '../log.js';
import type { HostPort } from '../net/host-port.js';
import type { UpstreamSpec } from '../net/upstream-spec.js';
import { InFlight } from '../pipeline/in-flight.js';
import type { Result } from '../pipeline/outcome.js';
import { QueryLog } from '../pipeline/query-log.js';
import { outcomeTotals, QueryStats } from '../pipeline/query-stats.js';
import { AnswerCache } from '../table/answer-cache.js';
import type { TableView } from '../table/table.js';
import type { Client, Handler, ReplySink } from '../transport/handler.js';
import { listenerReport } from '../transport/listener-events.js';
import { BindFailure, ListenerSet, type EncryptedAddresses } from '../transport/listener-set.js';
import type { TlsPem } from '../transport/tls-settings.js';
import { isUnreadable, readQuery } from '../wire/query.js';
import { minRecordTtl } from '../wire/ttl.js';
import { DEFAULT_TCP_LIMITS } from '../transport/connection-slots.js';
import { CONNECTED_ADDON_NAME, ConnectedUdp } from '../transport/connected-udp.js';
import { loadUdpBatch, udpBatchAddonPath, type UdpBatchAddon } from '../transport/udp-batch.js';
import type { PoolNews } from '../upstream/upstream-pool.js';
import { bindError } from './bind-error.js';
import { QueryPaths } from './query-paths.js';
import { processFigures, type ServingStats } from './stats.js';

export interface Serving {
  /** The addresses actually bound (a requested port 0 replaced by the one given). */
  listening: HostPort[];
  /** The DoT and DoH addresses bound. */
  encrypted: EncryptedAddresses;
  /** The DoT and DoH certificate for new connections (already checked: src/serving/tls-credentials.ts). */
  setCertificate(pem: TlsPem): void;
  /** A worker other than the first: the first worker is process `pid` from now (restarted), whose CPU decides when this one reads a shared UDP socket too. */
  setFirstReader(pid: number): void;
  /** Another worker's upstream news: the upstreams' health is one view for all workers. */
  hear(news: PoolNews): void;
  /** A reload (src/reload.ts): a new query path for the queries from now on; a query in
   * flight finishes on the path it came in on. */
  reconfigure(config: ServeConfig, upstreams: UpstreamSpec[]): void;
  stats(): ServingStats;
  close(): Promise<void>;
  /** For tests and debugging, not the query path: run one query through the path in force, without a socket. */
  readonly debug: { probe(query: Buffer, address: string): Promise<Result> };
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
  /** --udp-batch in a cluster worker: the UDP sockets the primary bound, as descriptors of this process, one per listen address. */
  udpFds?: readonly number[];
  /** With udpFds in a worker other than the first: the first worker's pid (0: not known yet). */
  firstReader?: number;
  /** The DoT and DoH listeners' certificate and key, checked (none without those listeners). */
  tls?: TlsPem | null;
}

/** --udp-batch's addons: the client listeners' and the upstream sockets', each null
 * (node:dgram) with a warning when it was not built. DIVERT_UDP_BATCH_ADDON points
 * elsewhere (tests use it to see the fallback); the upstream addon is looked for beside it. */
function udpBatchAddons(log: Logger): { listeners: UdpBatchAddon | null; upstreams: ConnectedUdp | null } {
  const path = udpBatchAddonPath();
  const listeners = loadUdpBatch(path);
  const upstreamPath = join(dirname(path), CONNECTED_ADDON_NAME);
  const upstreams = ConnectedUdp.load(upstreamPath);
  for (const [addon, at] of [
    [listeners, path],
    [upstreams, upstreamPath],
  ] as const)
    if (!addon)
      log.warn(
        { addon: at },
        '--udp-batch: the native addon is not built or does not load here (npm run build needs cc); UDP goes through node:dgram',
      );
  return { listeners, upstreams };
}

/** Beyond the query timeout, what the drain allows for the last replies to be sent. */
const DRAIN_MARGIN_MS = 250;

export async function startServing(
  config: ServeConfig,
  view: TableView,
  upstreams: UpstreamSpec[],
  log: Logger,
  options: ServingOptions,
): Promise<Serving> {
  // while the store is down every lookup fails the same way: one line per 10 s, with a count
  const lookupFailed = throttledLog((details, message) => log.warn(details, message), 1, 10_000);
  const answers = new AnswerCache(view, {
    maxNames: config.cacheNames,
    onLookupError: (err, name) =>
      lookupFailed({ err: (err as Error).message, name }, 'table lookup failed; forwarding names not seen before'),
  });
  let changes = 0;
  const stopCounting = view.onChange(() => changes++);
  const observers = {
    stats: new QueryStats(config.metricsMaxNames),
    queryLog: config.queryLog ? new QueryLog({ to: config.queryLog, sample: config.queryLogSample }) : null,
  };
  const inFlight = new InFlight();
  // a DoT upstream whose certificate is refused fails every connection: a few lines per 10 s
  const upstreamLog = throttledLog((details, message) => log.warn(details, message), 5, 10_000);
  const batch = config.udpBatch ? udpBatchAddons(log) : { listeners: null, upstreams: null };
  const paths = new QueryPaths(config, upstreams, {
    connectedUdp: batch.upstreams,
    answers,
    observers,
    inFlight,
    clock: options.clock ?? Date.now,
    onPoolNews: options.onPoolNews,
    workers: config.workers,
    onFault: (err) => log.error({ err }, 'query failed'),
    onUpstreamError: (upstream, err) =>
      upstreamLog(
        { upstream: upstream.label, err: err.message, code: (err as NodeJS.ErrnoException).code },
        `upstream ${upstream.label}: connection failed: ${err.message}`,
      ),
  });
  // a failure to serve one message is that message's loss; a peer can provoke it at will, so the log is throttled
  const faultLog = throttledLog((details, message) => log.warn(details, message));
  const report = listenerReport((event, err) =>
    faultLog({ event, err: err instanceof Error ? err.message : String(err) }, 'a message could not be served'),
  );
  const handler: Handler = Object.assign((msg: Buffer, client: Client) => paths.current.answer(msg, client), {
    into: <T>(msg: Buffer, client: Client, sink: ReplySink<T>, tag: T) => paths.current.answerInto(msg, client, sink, tag),
  });

  const release = async () => {
    paths.close();
    await observers.queryLog?.close();
    stopCounting();
    answers.close();
  };
  let listeners: ListenerSet;
  try {
    listeners = await ListenerSet.open(config.listen, handler, {
      limits: {
        ...DEFAULT_TCP_LIMITS,
        idleTimeoutMs: config.tcpIdleTimeoutMs,
        maxConnections: config.tcpMaxConnections,
        maxPerClient: config.tcpMaxPerClient,
      },
      admission: paths.admission,
      report,
      exclusive: options.exclusive,
      onError: (err) => log.warn({ err: err.message }, 'listener'),
      udpBatch: batch.listeners,
      udpFds: options.udpFds,
      spill: (options.worker ?? 1) > 1 ? { firstReader: options.firstReader ?? 0 } : undefined,
      encrypted: options.tls
        ? {
            dot: config.listenTls,
            doh: config.listenHttps,
            pem: options.tls,
            dns: { isQuery: (msg) => !isUnreadable(readQuery(msg)), minTtl: minRecordTtl },
          }
        : undefined,
    });
  } catch (err) {
    await release();
    throw err instanceof BindFailure ? bindError(err.cause, err.at) : err;
  }

  // Stop taking queries (new connections, datagrams and messages on open connections),
  // let the queries in flight get their answers, then close. A query waits at most the
  // query timeout for its upstreams (then it is SERVFAIL), so the wait is bounded by it.
  const close = async () => {
    listeners.stopAccepting();
    await inFlight.idle(paths.drainMs + DRAIN_MARGIN_MS);
    await listeners.close(DRAIN_MARGIN_MS);
    await release();
  };

  const readProcess = processFigures(
    options.worker ?? 1,
    () => listeners.openConnections,
    () => listeners.udpReading,
  );
  const stats = (): ServingStats => {
    const queries = observers.stats.snapshot();
    const forwarded = paths.forwarderStats;
    return {
      counts: outcomeTotals(queries),
      queries,
      rejectedReplies: forwarded.rejectedReplies,
      timeouts: forwarded.timeouts,
      overloaded: forwarded.overloaded,
      cacheHits: answers.hits,
      cacheMisses: answers.misses,
      cachedNames: answers.size,
      changes,
      upstreams: paths.upstreams,
      tableViewsReady: view.isReady() ? 1 : 0,
      processes: [readProcess()],
      listener: { ...report.counts },
    };
  };
  return {
    listening: listeners.addresses,
    encrypted: listeners.encryptedAddresses,
    setCertificate: (pem) => listeners.setCertificate(pem),
    setFirstReader: (pid) => listeners.setFirstReader(pid),
    hear: (news) => paths.hear(news),
    reconfigure: (next, nextUpstreams) => paths.reconfigure(next, nextUpstreams),
    stats,
    close,
    debug: { probe: async (query, address) => paths.current.handle(query, { transport: 'udp', address }) },
  };
}
