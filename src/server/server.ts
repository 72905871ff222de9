// Builds and starts `divert serve`: the table and the admin API here, the query path
// (serving/) here too or in worker processes (cluster/primary.ts). Everything that can
// be wrong with the configuration (zone files, upstreams, Redis) is found before the
// first port is bound, and a failure to bind releases the ports already bound, so a
// failed start leaves nothing listening.

import type { Logger } from 'pino';
import { componentLogger } from '../log.js';
import type { HostPort } from '../net/host-port.js';
import type { UpstreamSpec } from '../net/upstream-spec.js';
import { maskUrl } from '../redact.js';
import type { ServeConfig } from '../config/options.js';
import { buildAdmin } from '../admin/admin-server.js';
import { RecentLoadSampler } from '../admin/recent-load.js';
import { monitorStatusReader } from '../admin/status-relay.js';
import { proxyStatusReader } from '../admin/proxy-status.js';
import { EventStreams } from '../admin/events.js';
import { createMetrics } from '../admin/metrics.js';
import { startWorkers } from '../cluster/primary.js';
import { bindError } from '../serving/bind-error.js';
import { inProcess, type ServingHandle } from '../serving/handle.js';
import { startServing } from '../serving/serving.js';
import type { ServingStats } from '../serving/stats.js';
import type { AddressTable } from '../table/address-table.js';
import { openTable } from '../table/backend.js';
import { readZones } from '../table/zone/read.js';
import { WritePolicy } from '../table/write-policy.js';
import { createReloader, type ReloadResult } from '../reload.js';
import { resolveUpstreams } from '../upstream/resolv-conf.js';
import { loadUpdateKeys, startUpdateServer, type UpdateServer } from '../update/update-server.js';
import { resolveAdminToken } from './admin-token.js';
import { healthOf, listenerList } from './health.js';
import { loadTlsCredentials, validityProblem } from '../serving/tls-credentials.js';
import type { EncryptedAddresses } from '../transport/listener-set.js';

export interface RunningServer {
  /** The addresses actually bound (a requested port 0 replaced by the one given). */
  listening: HostPort[];
  /** The DoT and DoH addresses bound. */
  encrypted: EncryptedAddresses;
  admin: HostPort;
  /** The DNS UPDATE port (--update-listen), when it is on. */
  update?: HostPort;
  adminToken: string;
  upstreams: UpstreamSpec[];
  table: AddressTable;
  /** Processes answering queries (1: this one). */
  workers: number;
  /** Query and cache figures, summed over the workers. */
  stats(): Promise<ServingStats>;
  /** Reads the configuration and zone files again and applies them (src/reload.ts); SIGHUP calls it. */
  reload(): Promise<ReloadResult>;
  close(): Promise<void>;
  /** For tests and debugging: each worker's figures, its reply to a query without a socket, its process ID. */
  readonly debug: ServingHandle['debug'];
}

export interface StartOptions {
  /** The time the rules' windows see, in a server of one process (tests inject one). */
  clock?: () => number;
  /** How a reload reads the configuration again (the CLI: the same flags and variables,
   * the --config file anew); by default, the starting configuration (zone files and
   * --resolv-conf are still read again). */
  reloadConfig?: () => ServeConfig;
}

export async function startServer(config: ServeConfig, log: Logger, options: StartOptions = {}): Promise<RunningServer> {
  // a worker process has its own clock: one injected here could not reach it
  if (options.clock && config.workers > 1) throw new Error('an injected clock needs workers: 1');
  const upstreams = await resolveUpstreams(config);
  // what a write may put in the table: read here to name the zone file of a refusal (the table layer holds every write to it)
  const seed = await readZones(config.zones, new WritePolicy(config));
  const updateLog = componentLogger(log, 'update');
  const updateKeys = await loadUpdateKeys(config, updateLog);
  // a certificate that does not load or match stops the start; an expired one is served, with a warning
  // (DoT and DoH clients refuse it, but plain DNS must not go down with it)
  const tls = loadTlsCredentials(config);
  const expiry = tls ? validityProblem(tls) : undefined;
  if (expiry)
    componentLogger(log, 'serve').error(
      { tlsCert: config.tlsCert },
      `--tls-cert "${config.tlsCert}" ${expiry}: DoT and DoH clients will refuse it`,
    );
  const adminToken = resolveAdminToken(config, componentLogger(log, 'serve'));
  const tableLog = componentLogger(log, 'table');
  if (config.redis) tableLog.info({ redis: maskUrl(config.redis), prefix: config.redisPrefix }, 'address table in Redis');
  const opened = await openTable(config, {
    serving: config.workers === 1,
    onError: (err) => tableLog.warn({ err: err.message }, 'redis table'),
  });
  const { table } = opened;

  let serving: ServingHandle | undefined;
  let admin: ReturnType<typeof buildAdmin> | undefined;
  let update: UpdateServer | undefined;
  // Both stop accepting at once and finish what they have begun (the queries in flight,
  // the admin requests); the table closes last, since both may still be using it.
  const close = async () => {
    await Promise.all([admin?.close(), update?.close(), serving?.close()]);
    await table.close();
  };

  try {
    if (seed.size > 0) {
      const inserted = await table.seed(seed);
      tableLog.info({ names: seed.size, inserted: inserted.length, kept: seed.size - inserted.length }, 'seeded table from zone files');
    }
    serving =
      config.workers > 1
        ? await startWorkers(config, opened, upstreams, componentLogger(log, 'cluster'), tls?.pem ?? null)
        : inProcess(
            await startServing(config, table, upstreams, componentLogger(log, 'dns'), {
              exclusive: true,
              clock: options.clock,
              tls: tls?.pem ?? null,
            }),
          );
    const { stats, workers } = serving;
    const reloader = createReloader({
      config,
      upstreams,
      table,
      serving,
      tls,
      log: componentLogger(log, 'reload'),
      load: options.reloadConfig ?? (() => config),
      resolveUpstreams,
    });
    const listeners = {
      dns: serving.listening,
      dot: serving.encrypted.dot,
      doh: serving.encrypted.doh,
    };

    const adminLog = componentLogger(log, 'admin');
    const events = new EventStreams(table, config.eventsMaxStreams, adminLog);
    admin = buildAdmin({
      table,
      token: adminToken,
      log: adminLog,
      events,
      metrics: createMetrics({
        stats,
        workerRestarts: () => workers().restarts,
        tableReady: () => table.isReady(),
        tableSize: () => table.size(),
        backend: opened.backend,
        updateListener: () => update?.listenerCounts,
        events: () => events.figures(),
        certificate: reloader.certificate,
        listeners: () => listenerList(listeners),
      }),
      health: async () => healthOf(table, await stats(), config, workers(), { listeners, certificate: reloader.certificate() }),
      nameQueries: async () => (await stats()).queries.names,
      recentLoad: new RecentLoadSampler(stats),
      monitorStatus: monitorStatusReader(config.dashboardMonitor),
      proxyStatus: proxyStatusReader(config.dashboardProxy),
      // a write is acknowledged once every worker answers with it
      settle: serving.settle,
    });
    let adminAddress: HostPort;
    try {
      await admin.listen({ host: config.admin.host, port: config.admin.port });
      adminAddress = { host: config.admin.host, port: (admin.server.address() as { port: number }).port };
    } catch (err) {
      throw bindError(err as NodeJS.ErrnoException, config.admin);
    }
    if (updateKeys && config.updateListen) {
      // DNS UPDATE writes as the admin API does, and is acknowledged once every worker answers with it
      update = await startUpdateServer({
        listen: config.updateListen,
        keys: updateKeys.keys,
        grants: updateKeys.grants,
        table,
        settle: serving.settle,
        log: updateLog,
      });
    }
    return {
      listening: serving.listening,
      encrypted: serving.encrypted,
      admin: adminAddress,
      update: update?.address,
      adminToken,
      upstreams,
      table,
      workers: config.workers,
      stats,
      close,
      debug: serving.debug,
      reload: reloader.reload,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
