// Builds and starts `divert serve`: the table and the admin API here, the query path
// (serving.ts) here too or in worker processes (cluster/primary.ts). Everything that can
// be wrong with the configuration (zone files, upstreams, Redis) is found before the
// first port is bound, and a failure to bind releases the ports already bound, so a
// failed start leaves nothing listening.

import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { componentLogger } from './log.js';
import { DivertError } from './errors.js';
import { formatHostPort, type HostPort } from './net/host-port.js';
import { maskUrl } from './redact.js';
import type { ServeConfig } from './config/options.js';
import { buildAdmin, type Health } from './admin/admin-server.js';
import { EventStreams } from './admin/events.js';
import { createMetrics } from './admin/metrics.js';
import { defaultTokenFile, loadOrCreateToken } from './admin/token.js';
import { startWorkers, type ServingHandle, type WorkersState } from './cluster/primary.js';
import { AccessList } from './net/cidr.js';
import { bindError, startServing, type Serving, type ServingStats } from './serving.js';
import { MemoryTable } from './table/memory-table.js';
import { RedisTable } from './table/redis-table.js';
import type { AddressTable } from './table/table.js';
import { readZones } from './table/zone-file.js';
import { WritePolicy } from './table/write-policy.js';
import { createReloader, type ReloadResult } from './reload.js';
import { requireUpstreams, upstreamsFromResolvConf } from './upstream/resolv-conf.js';
import { loadUpdateKeys, startUpdateServer, type UpdateServer } from './update/update-server.js';

export interface RunningServer {
  /** The addresses actually bound (a requested port 0 replaced by the one given). */
  listening: HostPort[];
  admin: HostPort;
  /** The DNS UPDATE port (--update-listen), when it is on. */
  update?: HostPort;
  adminToken: string;
  upstreams: HostPort[];
  table: AddressTable;
  /** Processes answering queries (1: this one). */
  workers: number;
  /** Query and cache figures, summed over the workers. */
  stats(): Promise<ServingStats>;
  /** The same figures for each worker. */
  statsEach(): Promise<ServingStats[]>;
  /** The reply of each worker's query path to `query`: every worker must give the same. */
  probe(query: Buffer, address?: string): Promise<(Buffer | null)[]>;
  /** Process IDs of the processes answering queries. */
  pids(): number[];
  /** Reads the configuration and zone files again and applies them (src/reload.ts); SIGHUP calls it. */
  reload(): Promise<ReloadResult>;
  close(): Promise<void>;
}

/** The upstreams: --upstream, or the nameservers of --resolv-conf (minus divert's own addresses). */
export async function resolveUpstreams(config: ServeConfig): Promise<HostPort[]> {
  if (config.upstream) return config.upstream;
  let text: string;
  try {
    text = await readFile(config.resolvConf, 'utf8');
  } catch (err) {
    throw new DivertError('NO_UPSTREAM', `--resolv-conf "${config.resolvConf}": cannot read it (${(err as NodeJS.ErrnoException).code}); give --upstream HOST[:PORT]`);
  }
  return requireUpstreams(upstreamsFromResolvConf(text, config.listen), config.resolvConf);
}

async function openTable(config: ServeConfig, log: Logger): Promise<AddressTable> {
  if (!config.redis) return new MemoryTable();
  log.info({ redis: maskUrl(config.redis), prefix: config.redisPrefix }, 'address table in Redis');
  return RedisTable.connect({
    url: config.redis,
    prefix: config.redisPrefix,
    onError: (err) => log.warn({ err: err.message }, 'redis table'),
  });
}

/** Where an admin port may listen without an explicit token: this machine only. */
const LOOPBACK = new AccessList(['127.0.0.0/8', '::1/128']);

/** A generated token is for this machine: an admin port others can reach needs one given explicitly. */
export function checkAdminExposure(config: ServeConfig): void {
  if (!config.adminToken && !LOOPBACK.allows(config.admin.host)) {
    throw new DivertError('BAD_CONFIG', `--admin ${formatHostPort(config.admin)} is reachable from other machines: give --admin-token (or DIVERT_ADMIN_TOKEN) explicitly`);
  }
}

/** The admin token: given, or read from (or generated into) the token file. */
function resolveAdminToken(config: ServeConfig, log: Logger): string {
  checkAdminExposure(config);
  if (config.adminToken) return config.adminToken;
  const file = config.adminTokenFile ?? defaultTokenFile();
  const { token, created } = loadOrCreateToken(file);
  log.info({ file }, created ? 'admin token generated' : 'admin token read');
  return token;
}

/** What /healthz says of the workers when some are not serving: which are being replaced, after how many crashes, and when. */
function workersProblems({ configured, running, restarting }: WorkersState): string[] {
  const none = 'no worker is running: DNS queries go unanswered';
  if (restarting.length === 0) return running === 0 ? [none] : [];
  const each = restarting.map((r) =>
    `worker ${r.worker} after ${r.crashes} crash${r.crashes === 1 ? '' : 'es'} in a row (${r.state === 'starting' ? 'starting now' : `next start in ${(r.nextStartInMs! / 1000).toFixed(1)} s`})`);
  return [`workers restarting: ${each.join(', ')}; ${running === 0 ? none : `${running} of ${configured} workers answering`}`];
}

/** GET /healthz: ready when the table is reachable, at least one worker serves and at least one upstream is in service. */
function healthOf(table: AddressTable, stats: ServingStats, config: ServeConfig, workers: WorkersState): Health {
  const ready = table.isReady();
  const anyWorker = workers.running > 0;
  // with no worker running there are no upstream figures either: that says nothing of the upstreams
  const anyUpstream = !anyWorker || stats.upstreams.some((u) => u.up);
  return {
    ok: ready && anyWorker && anyUpstream,
    table: { backend: config.redis ? 'redis' : 'memory', ready, cachedNames: stats.cachedNames },
    workers: { configured: workers.configured, running: workers.running, restarting: workers.restarting },
    upstreams: stats.upstreams,
    problems: [
      ...(ready ? [] : ['the address table (Redis) is unreachable: intercepted names answer from cache, writes are refused']),
      ...workersProblems(workers),
      ...(anyUpstream ? [] : ['no upstream is answering: forwarded queries get SERVFAIL']),
    ],
  };
}

function inProcess(serving: Serving): ServingHandle {
  return {
    listening: serving.listening,
    stats: async () => serving.stats(),
    statsEach: async () => [serving.stats()],
    probe: async (query, address = '127.0.0.1') => [await serving.probe(query, address)],
    // the table tells the query path of a change before the write returns
    settle: async () => {},
    pids: () => [process.pid],
    // nothing to replace: when this process dies, DNS goes with it (its supervisor restarts it)
    workers: () => ({ configured: 1, running: 1, restarting: [], restarts: [0] }),
    reconfigure: async (config, upstreams) => {
      serving.reconfigure(config, upstreams);
      return [];
    },
    close: () => serving.close(),
  };
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
  // what a write may put in the table: the same at every edge (seeds, admin API, DNS UPDATE)
  const policy = new WritePolicy(config);
  const seed = await readZones(config.zones, policy);
  const updateLog = componentLogger(log, 'update');
  const updateKeys = await loadUpdateKeys(config, updateLog);
  const adminToken = resolveAdminToken(config, componentLogger(log, 'serve'));
  const tableLog = componentLogger(log, 'table');
  const table = await openTable(config, tableLog);

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
    serving = config.workers > 1
      ? await startWorkers(config, table, upstreams, componentLogger(log, 'cluster'))
      : inProcess(await startServing(config, table, upstreams, componentLogger(log, 'dns'), { exclusive: true, clock: options.clock }));
    const { stats, workers } = serving;

    const adminLog = componentLogger(log, 'admin');
    const events = new EventStreams(table, config.eventsMaxStreams, adminLog);
    admin = buildAdmin({
      table,
      policy,
      token: adminToken,
      log: adminLog,
      events,
      metrics: createMetrics({
        stats, workerRestarts: () => workers().restarts, tableReady: () => table.isReady(), tableSize: () => table.size(),
        backend: config.redis ? 'redis' : 'memory', updateListener: () => update?.listenerCounts, events: () => events.figures(),
      }),
      health: async () => healthOf(table, await stats(), config, workers()),
      nameQueries: async () => (await stats()).queries.names,
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
      update = await startUpdateServer({ listen: config.updateListen, keys: updateKeys.keys, grants: updateKeys.grants, policy, table, settle: serving.settle, log: updateLog });
    }
    return {
      listening: serving.listening, admin: adminAddress, update: update?.address, adminToken, upstreams, table, workers: config.workers,
      stats, statsEach: serving.statsEach, probe: serving.probe, pids: serving.pids, close,
      reload: createReloader({ config, upstreams, table, serving, log: componentLogger(log, 'reload'), load: options.reloadConfig ?? (() => config), resolveUpstreams }).reload,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
