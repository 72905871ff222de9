// Builds and starts `divert serve`: table, cache, upstreams and the query path, then the
// listeners. Everything that can be wrong with the configuration (zone files, upstreams,
// Redis) is found before the first port is bound, and a failure to bind releases the
// ports already bound, so a failed start leaves nothing listening.

import { readFile } from 'node:fs/promises';
import type { Socket as UdpSocket } from 'node:dgram';
import type { Server, Socket } from 'node:net';
import type { Logger } from 'pino';
import { DivertError } from './errors.js';
import { formatHostPort, type HostPort } from './config/address.js';
import { maskUrl } from './redact.js';
import type { ServeConfig } from './config/options.js';
import { buildAdmin, type Health } from './admin/admin-server.js';
import { createMetrics } from './admin/metrics.js';
import { defaultTokenFile, loadOrCreateToken } from './admin/token.js';
import { AccessList } from './pipeline/access.js';
import { QueryPipeline } from './pipeline/pipeline.js';
import { AnswerCache } from './table/answer-cache.js';
import { MemoryTable } from './table/memory-table.js';
import { RedisTable } from './table/redis-table.js';
import type { AddressTable } from './table/table.js';
import { readZones } from './table/zone-file.js';
import { createTcpServer, listenTcp, DEFAULT_TCP_LIMITS } from './transport/tcp-listener.js';
import { bindUdp, serveUdp, type Handler } from './transport/udp-listener.js';
import { Forwarder } from './upstream/forwarder.js';
import { requireUpstreams, upstreamsFromResolvConf } from './upstream/resolv-conf.js';
import { UpstreamPool } from './upstream/upstream-pool.js';

export interface RunningServer {
  /** The addresses actually bound (a requested port 0 replaced by the one given). */
  listening: HostPort[];
  admin: HostPort;
  adminToken: string;
  upstreams: HostPort[];
  table: AddressTable;
  pipeline: QueryPipeline;
  forwarder: Forwarder;
  answers: AnswerCache;
  close(): Promise<void>;
}

async function resolveUpstreams(config: ServeConfig): Promise<HostPort[]> {
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

function bindError(err: NodeJS.ErrnoException, at: HostPort): DivertError {
  const where = formatHostPort(at);
  const reason =
    err.code === 'EADDRINUSE' ? `${where} is already in use (another DNS server?); stop it or choose another --listen`
    : err.code === 'EACCES' ? `no permission to listen on ${where}: ports below 1024 need root or CAP_NET_BIND_SERVICE (e.g. setcap cap_net_bind_service=+ep "$(command -v node)"), or use --listen with a port from 1024 up`
    : err.code === 'EADDRNOTAVAIL' ? `cannot listen on ${where}: ${at.host} is not an address of this machine`
    : `cannot listen on ${where}: ${err.message}`;
  return new DivertError('LISTEN_FAILED', reason, { cause: err });
}

/** While the store is down every query would fail the same way: one log line per 10 s, with a count. */
function everyTenSeconds(log: (err: unknown, name: string, suppressed: number) => void) {
  let last = 0;
  let suppressed = 0;
  return (err: unknown, name: string) => {
    const now = Date.now();
    if (now - last < 10_000) {
      suppressed++;
      return;
    }
    log(err, name, suppressed);
    last = now;
    suppressed = 0;
  };
}

/** Where an admin port may listen without an explicit token: this machine only. */
const LOOPBACK = new AccessList(['127.0.0.0/8', '::1/128']);

/** The admin token: given, or read from (or generated into) the token file. */
function resolveAdminToken(config: ServeConfig, log: Logger): string {
  if (config.adminToken) return config.adminToken;
  if (!LOOPBACK.allows(config.admin.host)) {
    throw new DivertError('BAD_CONFIG', `--admin ${formatHostPort(config.admin)} is reachable from other machines: give --admin-token (or DIVERT_ADMIN_TOKEN) explicitly`);
  }
  const file = config.adminTokenFile ?? defaultTokenFile();
  const { token, created } = loadOrCreateToken(file);
  log.info({ file }, created ? 'admin token generated' : 'admin token read');
  return token;
}

/** GET /healthz: ready when the table is reachable and at least one upstream is in service. */
function healthOf(table: AddressTable, pool: UpstreamPool, answers: AnswerCache, config: ServeConfig): Health {
  const upstreams = pool.upstreams.map((u) => ({ upstream: u.label, up: !pool.isDown(u), lastRttMs: u.lastRttMs }));
  const ready = table.isReady();
  const anyUpstream = upstreams.some((u) => u.up);
  return {
    ok: ready && anyUpstream,
    table: { backend: config.redis ? 'redis' : 'memory', ready, cachedNames: answers.size },
    upstreams,
    problems: [
      ...(ready ? [] : ['the address table (Redis) is unreachable: intercepted names answer from cache, writes are refused']),
      ...(anyUpstream ? [] : ['no upstream is answering: forwarded queries get SERVFAIL']),
    ],
  };
}

interface Listener {
  udp: UdpSocket;
  tcp: Server;
  address: HostPort;
}

/** UDP and TCP on one port; with port 0, retries until a port is free for both. */
async function listenBoth(at: HostPort, handler: Handler, config: ServeConfig, log: Logger, sockets: Set<Socket>): Promise<Listener> {
  const onError = (err: Error) => log.warn({ err: err.message }, 'listener');
  for (let tries = 0; ; tries++) {
    let udp: UdpSocket;
    try {
      udp = await bindUdp(at.host, at.port);
    } catch (err) {
      throw bindError(err as NodeJS.ErrnoException, at);
    }
    const port = udp.address().port;
    const tcp = createTcpServer(handler, { ...DEFAULT_TCP_LIMITS, idleTimeoutMs: config.tcpIdleTimeoutMs, maxConnections: config.tcpMaxConnections }, onError);
    tcp.on('connection', (socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    try {
      await listenTcp(tcp, at.host, port);
    } catch (err) {
      udp.close();
      if (at.port === 0 && (err as NodeJS.ErrnoException).code === 'EADDRINUSE' && tries < 20) continue;
      throw bindError(err as NodeJS.ErrnoException, { host: at.host, port });
    }
    serveUdp(udp, handler, onError);
    return { udp, tcp, address: { host: at.host, port } };
  }
}

export async function startServer(config: ServeConfig, log: Logger): Promise<RunningServer> {
  const upstreams = await resolveUpstreams(config);
  const seed = await readZones(config.zones);
  const adminToken = resolveAdminToken(config, log);
  const access = new AccessList(config.allow);
  const table = await openTable(config, log);

  const listeners: Listener[] = [];
  const sockets = new Set<Socket>();
  let answers: AnswerCache | undefined;
  let admin: ReturnType<typeof buildAdmin> | undefined;
  const close = async () => {
    await admin?.close();
    // stop accepting first, then drop open connections: tcp.close() waits for them
    const closed = listeners.map((l) => {
      l.udp.close();
      return new Promise<void>((resolve) => l.tcp.close(() => resolve()));
    });
    for (const socket of sockets) socket.destroy();
    await Promise.all(closed);
    answers?.close();
    await table.close();
  };

  try {
    if (seed.size > 0) {
      const inserted = await table.seed(seed);
      log.info({ names: seed.size, inserted: inserted.length, kept: seed.size - inserted.length }, 'seeded table from zone files');
    }
    answers = new AnswerCache(table, {
      maxNames: config.cacheNames,
      onLookupError: everyTenSeconds((err, name, suppressed) =>
        log.warn({ err: (err as Error).message, name, suppressed }, 'table lookup failed; forwarding names not seen before'),
      ),
    });
    const pool = new UpstreamPool(upstreams);
    const forwarder = new Forwarder(pool, { attemptTimeoutMs: config.upstreamTimeoutMs, queryTimeoutMs: config.queryTimeoutMs });
    const pipeline = new QueryPipeline(access, answers, forwarder, (err) => log.error({ err }, 'query failed'));
    const handler: Handler = (msg, client) => pipeline.handle(msg, client);

    for (const at of config.listen) listeners.push(await listenBoth(at, handler, config, log, sockets));

    const cache = answers;
    admin = buildAdmin({
      table,
      token: adminToken,
      log,
      metrics: createMetrics({ pipeline, forwarder, answers: cache, tableReady: () => table.isReady() }),
      health: () => healthOf(table, pool, cache, config),
    });
    let adminAddress: HostPort;
    try {
      await admin.listen({ host: config.admin.host, port: config.admin.port });
      adminAddress = { host: config.admin.host, port: (admin.server.address() as { port: number }).port };
    } catch (err) {
      throw bindError(err as NodeJS.ErrnoException, config.admin);
    }
    return { listening: listeners.map((l) => l.address), admin: adminAddress, adminToken, upstreams, table, pipeline, forwarder, answers, close };
  } catch (err) {
    await close();
    throw err;
  }
}
