// `divert proxy`: relays the connections of the config's services to the addresses the
// table gives now, and moves them when it changes; `divert proxy status` shows a running
// proxy's services and its connection table.

import type { Argv } from 'yargs';
import { DivertError } from '../errors.js';
import { formatHostPort } from '../net/host-port.js';
import type { Connection as Relayed } from '../proxy/connections.js';
import type { ProxyStatus } from '../proxy/proxy.js';
import type { ProxyFigures } from '../proxy/figures.js';
import type { LimitFlags } from '../proxy/config.js';
import { parseDuration } from '../config/schema-parts.js';
import type { HostPort } from '../net/host-port.js';
import { availableParallelism } from 'node:os';
import { connectionOptions, resolveConnection, usage } from './connection.js';
import { connectionArgs, getStatusText, given, logLevel, LOG_LEVELS, statusAddress, stopOnSignals, type Args } from './daemon-options.js';
import { printJson, textTable } from './render.js';

export const DEFAULT_PROXY_STATUS = '127.0.0.1:5382';
const STATUS_VARIABLE = 'DIVERT_PROXY_STATUS';
/** The proxy must notice a stuck admin port quickly; it keeps its last table meanwhile. */
const ADMIN_TIMEOUT_MS = 5000;

function statusOption(yargs: Argv, describe: string): Argv {
  return yargs.option('status', {
    type: 'string',
    requiresArg: true,
    describe: `${describe} [env ${STATUS_VARIABLE}]`,
    defaultDescription: DEFAULT_PROXY_STATUS,
  });
}

function runOptions(yargs: Argv): Argv {
  const own = statusOption(yargs, 'HOST:PORT of the read-only status endpoint (GET /v1/connections, /v1/stats/targets, /status, /metrics)')
    .usage(
      "$0 proxy [run] --config FILE [options]\n\nRelays the TCP connections and UDP flows of the services in FILE to the address the table gives each client now;\nmoves them when divert serve's table changes (a name's entry, or a diversion for an address target).",
    )
    .option('config', {
      type: 'string',
      requiresArg: true,
      describe:
        'YAML or JSON file of services: listen, protocol, target, onChange (see docker/proxy.example.yaml) [env DIVERT_PROXY_CONFIG]',
    })
    .options(
      Object.fromEntries(
        Object.entries(LIMIT_FLAGS).map(([flag, spec]) => [
          flag,
          {
            type: 'string' as const,
            requiresArg: true,
            group: 'Limits:',
            describe: `${spec.describe} [env DIVERT_PROXY_${flag.toUpperCase().replace(/-/g, '_')}]`,
            defaultDescription: `the config's ${spec.key}, else ${spec.fallback}`,
          },
        ]),
      ),
    )
    .option('workers', {
      type: 'string',
      requiresArg: true,
      describe: 'processes relaying (each runs every service; TCP listeners shared, UDP ones one per worker) [env DIVERT_PROXY_WORKERS]',
      defaultDescription: 'one per CPU',
    })
    .option('native-relay', {
      type: 'boolean',
      describe:
        "relay plain TCP services (no TLS, onChange not move) through divert's native addon: accept, connect and bytes in C (--no-native-relay: node:net); node:net with a warning when the addon is not built [env DIVERT_PROXY_NATIVE_RELAY]",
      defaultDescription: 'true',
    })
    .option('log-level', {
      type: 'string',
      requiresArg: true,
      describe: `least severe log level written (${LOG_LEVELS.join(', ')}) [env DIVERT_PROXY_LOG_LEVEL]`,
      defaultDescription: 'info',
    })
    .example('$0 proxy --config /etc/divert/proxy.yaml', 'with the admin API and token divert serve uses on this machine');
  return connectionOptions(own);
}

/** The limit flags, proxy-wide: each wins over the config file's value (a service's own timeouts win for that service). */
const LIMIT_FLAGS = {
  'max-connections': {
    key: 'maxConnections',
    kind: 'count',
    describe: 'open TCP connections and UDP flows, all services together',
    fallback: '10000',
  },
  'max-connections-per-network': {
    key: 'maxConnectionsPerNetwork',
    kind: 'count',
    describe: 'the same, per client /24 or /56',
    fallback: '1000',
  },
  'connect-timeout': {
    key: 'connectTimeout',
    kind: 'duration',
    describe: 'for a connect to the target, all addresses tried together',
    fallback: '3s',
  },
  'idle-timeout': {
    key: 'idleTimeout',
    kind: 'duration',
    describe: 'a TCP connection with no byte either way for this long is closed',
    fallback: '1h',
  },
  'udp-idle-timeout': {
    key: 'udpIdleTimeout',
    kind: 'duration',
    describe: 'a UDP flow with no datagram either way for this long is forgotten',
    fallback: '1m',
  },
} as const;

function limitFlags(argv: Args, env: NodeJS.ProcessEnv): LimitFlags {
  const out: LimitFlags = {};
  for (const [flag, spec] of Object.entries(LIMIT_FLAGS)) {
    const chosen = given(argv, flag, `DIVERT_PROXY_${flag.toUpperCase().replace(/-/g, '_')}`, env);
    if (!chosen) continue;
    const value = spec.kind === 'count' ? Number(chosen.value) : parseDuration(chosen.value);
    if (value === undefined || !Number.isInteger(value) || value < 1)
      throw usage(
        `${chosen.from} "${chosen.value}": expected ${spec.kind === 'count' ? 'a whole number of at least 1' : 'a duration such as "500ms", "5s", "2m"'}`,
      );
    out[spec.key] = value;
  }
  return out;
}

/** --native-relay / --no-native-relay, else DIVERT_PROXY_NATIVE_RELAY (true or false, as serve's DIVERT_UDP_BATCH), else on. */
function nativeRelayWanted(argv: Args, env: NodeJS.ProcessEnv): boolean {
  const flag = argv['native-relay'];
  if (typeof flag === 'boolean') return flag;
  const text = env.DIVERT_PROXY_NATIVE_RELAY;
  if (!text) return true;
  if (text === 'true' || text === 'false') return text === 'true';
  throw usage(`DIVERT_PROXY_NATIVE_RELAY="${text}": expected true or false`);
}

/** --workers, else DIVERT_PROXY_WORKERS, else one per CPU. */
function workerCount(argv: Args, env: NodeJS.ProcessEnv): number {
  const chosen = given(argv, 'workers', 'DIVERT_PROXY_WORKERS', env);
  if (!chosen) return Math.max(1, availableParallelism());
  const n = Number(chosen.value);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw usage(`${chosen.from} "${chosen.value}": expected a whole number from 1 to 64`);
  return n;
}

export async function runProxy(argv: Args, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const configPath = given(argv, 'config', 'DIVERT_PROXY_CONFIG', env);
  if (!configPath) throw usage('divert proxy needs --config FILE (or DIVERT_PROXY_CONFIG): the services to relay');
  const level = logLevel(argv, 'DIVERT_PROXY_LOG_LEVEL', env);
  const listen = statusAddress(argv, STATUS_VARIABLE, DEFAULT_PROXY_STATUS, env);
  const workers = workerCount(argv, env);
  const [
    { pino },
    { loadProxyConfig },
    { Proxy, statusOf },
    { startStatusServer },
    { AdminClient },
    w,
    { proxyRegistry },
    { targetReport },
    { checkTlsFiles },
    { loadTcpRelay },
  ] = await Promise.all([
    import('pino'),
    import('../proxy/config.js'),
    import('../proxy/proxy.js'),
    import('../net/status-server.js'),
    import('../client/admin-client.js'),
    import('../proxy/workers.js'),
    import('../proxy/metrics.js'),
    import('../proxy/figures.js'),
    import('../proxy/tls.js'),
    import('../proxy/native-relay.js'),
  ]);
  const config = loadProxyConfig(configPath.value, limitFlags(argv, env));
  checkTlsFiles(config.services);
  const merged = connectionArgs(argv, config, env);
  if (merged.client === undefined && !env.DIVERT_CLIENT) merged.client = 'proxy';
  const connection = resolveConnection(merged, env);
  const worker = w.workerNumber();
  const log = pino({ level, base: { component: 'proxy', ...(worker === null ? {} : { worker }) } });
  const client = new AdminClient(connection, ADMIN_TIMEOUT_MS);
  const nativeWanted = nativeRelayWanted(argv, env);
  const nativeRelay = nativeWanted ? loadTcpRelay() : null;
  if (worker !== null) {
    const options = { firstId: w.firstIdOf(worker), share: workers, reusePort: true, nativeRelay, inherited: w.inheritedListeners() };
    return w.serveAsWorker(new Proxy(w.withChosenPorts(config), client, connection, log, options));
  }

  let running: {
    figures(): Promise<ProxyFigures>;
    listening(): Record<string, HostPort[]>;
    reloadTls(): void;
    stop(): Promise<void>;
  };
  try {
    if (nativeWanted && !nativeRelay)
      log.warn('--native-relay: the native addon is not built or does not load here (npm run build needs cc); node:net relays TCP');
    if (workers === 1) {
      const proxy = new Proxy(config, client, connection, log, { firstId: 1, share: 1, reusePort: false, nativeRelay });
      await proxy.start();
      running = {
        figures: () => Promise.resolve(proxy.figures()),
        listening: () => proxy.listening(),
        reloadTls: () => proxy.reloadTls(),
        stop: () => proxy.stop(),
      };
    } else {
      const primary = await w.ProxyPrimary.start(config, workers, log, nativeRelay);
      running = {
        figures: () => primary.figures(),
        listening: () => primary.listening,
        reloadTls: () => primary.reloadTls(),
        stop: () => primary.stop(),
      };
    }
  } catch (err) {
    if (err instanceof DivertError) throw err;
    throw new DivertError('LISTEN_FAILED', `${(err as Error).message}; free the port or give another listen address`);
  }
  const started = { at: new Date().toISOString(), workers, adminUrl: connection.url.href, nativeRelay: nativeRelay !== null };
  let server;
  try {
    server = await startStatusServer(
      listen,
      {
        '/status': async () => statusOf(config, running.listening(), await running.figures(), started),
        '/v1/connections': async () => ({ connections: (await running.figures()).connections }),
        '/v1/stats/targets': async () => targetReport(await running.figures()),
      },
      proxyRegistry(() => running.figures()),
    );
  } catch (err) {
    await running.stop();
    throw new DivertError(
      'LISTEN_FAILED',
      `--status ${formatHostPort(listen)}: cannot listen (${(err as NodeJS.ErrnoException).code ?? String(err)}); give another HOST:PORT`,
    );
  }
  if (!(await running.figures()).admin.up)
    log.warn(
      { admin: connection.url.href },
      `divert serve's admin API at ${connection.url.href} is unreachable: name targets refuse connections (reset) and address targets go to their own address until it is reached`,
    );
  const listening = Object.fromEntries(Object.entries(running.listening()).map(([name, at]) => [name, at.map(formatHostPort)]));
  log.info(
    { status: formatHostPort(server.address), admin: connection.url.href, listening, workers },
    `relaying ${config.services.length} service(s) with ${workers} worker(s); status on http://${formatHostPort(server.address)}/status`,
  );
  stopOnSignals(log, () => Promise.all([running.stop(), server.close()]));
  // SIGHUP: TLS services read their certificate and key again (rotation without a restart)
  process.on('SIGHUP', () => {
    log.info('SIGHUP: reloading the TLS certificates');
    running.reloadTls();
  });
}

const time = (ms: number) => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');

export function renderProxyStatus(status: ProxyStatus, connections: Relayed[]): string {
  const admin = status.admin.up ? 'reachable' : `UNREACHABLE since ${status.admin.since} (${status.admin.error}): last table kept`;
  const header = `proxy since ${status.startedAt}, ${status.workers} worker(s); admin API ${status.admin.url} ${admin}\n\n`;
  const services = textTable(
    ['SERVICE', 'PROTOCOL', 'LISTEN', 'TARGET', 'ON CHANGE', 'OPEN', 'RELAY'],
    status.services.map((s) => [s.name, s.protocol, s.listen.join(','), s.target, s.onChange, String(s.open), s.relay]),
  );
  const table = textTable(
    ['SERVICE', 'PROTO', 'CLIENT', 'LISTEN', 'SOURCE', 'TARGET', 'STARTED', 'IN', 'OUT', 'CONNECT', 'STATE'],
    connections.map((c) => [
      c.service,
      c.protocol,
      c.client,
      c.listen,
      c.source ?? '-',
      c.target ?? '-',
      time(c.startedAt),
      String(c.bytesIn),
      String(c.bytesOut),
      c.connectMs === null ? '-' : `${c.connectMs} ms`,
      c.drainEndsAt !== null ? `draining until ${time(c.drainEndsAt)}` : c.target === null ? 'connecting' : 'open',
    ]),
  );
  return `${header}${services}\n${table}`;
}

async function showStatus(argv: Args): Promise<void> {
  const at = formatHostPort(statusAddress(argv, STATUS_VARIABLE, DEFAULT_PROXY_STATUS, process.env));
  let status: ProxyStatus;
  let connections: Relayed[];
  try {
    status = JSON.parse(await getStatusText(`http://${at}/status`)) as ProxyStatus;
    connections = (JSON.parse(await getStatusText(`http://${at}/v1/connections`)) as { connections: Relayed[] }).connections;
  } catch (err) {
    throw new Error(
      `cannot read the proxy's status at http://${at}/status (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); is divert proxy running with --status ${at}?`,
      { cause: err },
    );
  }
  if (argv.json) return printJson({ ...status, connections });
  process.stdout.write(renderProxyStatus(status, connections));
}

/** `divert proxy` and `divert proxy status`; main.ts registers it. */
export function proxyCommand(yargs: Argv): Argv {
  return yargs
    .command(['run', '$0'], 'run the proxy (the default)', runOptions, (argv) => runProxy(argv))
    .command(
      'status',
      "show a running proxy's services and connection table",
      (y) =>
        statusOption(y, "HOST:PORT where the proxy's status endpoint listens")
          .option('json', { type: 'boolean', describe: 'print the status and connections as JSON instead of tables' })
          .example('$0 proxy status', 'the proxy on this machine'),
      (argv) => showStatus(argv),
    );
}
