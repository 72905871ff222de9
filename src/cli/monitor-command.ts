// `divert monitor`: runs the network monitor (health checks → answers → admin API), and
// `divert monitor status` shows a running monitor's view of its mirrors and services.

import type { Argv } from 'yargs';
import { formatHostPort } from '../net/host-port.js';
import { DivertError } from '../errors.js';
import type { StatusReport } from '../monitor/monitor.js';
import { connectionOptions, resolveConnection, usage } from './connection.js';
import { connectionArgs, getStatusText, given, logLevel, LOG_LEVELS, statusAddress, stopOnSignals, type Args } from './daemon-options.js';
import { note, printJson, textTable } from './render.js';

export const DEFAULT_STATUS = '127.0.0.1:5381';
/** A monitor must notice a stuck admin port long before an operator's shell would give up. */
const ADMIN_TIMEOUT_MS = 5000;

function statusOption(yargs: Argv, describe: string): Argv {
  return yargs.option('status', {
    type: 'string',
    requiresArg: true,
    describe: `${describe} [env DIVERT_MONITOR_STATUS]`,
    defaultDescription: DEFAULT_STATUS,
  });
}

function runOptions(yargs: Argv): Argv {
  const withOwn = statusOption(yargs, 'HOST:PORT of the read-only status endpoint (GET /status, GET /metrics)')
    .usage('$0 monitor [run] --config FILE [options]\n\nChecks the mirrors of each service in FILE; keeps its names on the healthy ones.')
    .option('config', {
      type: 'string',
      requiresArg: true,
      describe:
        "YAML or JSON file of services, mirrors, checks, policies and passive health (divert proxy's connect failures) (see docker/monitor.example.yaml) [env DIVERT_MONITOR_CONFIG]",
    })
    .option('log-level', {
      type: 'string',
      requiresArg: true,
      describe: `least severe log level written (${LOG_LEVELS.join(', ')}) [env DIVERT_MONITOR_LOG_LEVEL]`,
      defaultDescription: 'info',
    })
    .example('$0 monitor --config /etc/divert/monitor.yaml', 'monitor with the admin API and token divert serve uses on this machine')
    .example(
      '$0 monitor --config monitor.yaml --admin http://10.0.0.5:5380 --token-file /run/secrets/divert',
      'against a divert serve elsewhere',
    )
    .epilogue(
      "Passive health: a service with `passive: { proxy: 127.0.0.1:5382, failures: 3, window: 10s }` also reads divert proxy's GET /v1/stats/targets; that many new connect failures to a mirror within the window mark it down at once (as `fall` failed checks would). Only active checks bring it back.",
    );
  // the monitor's writer name defaults to the config's id, not to the user's
  return connectionOptions(withOwn).option('client', {
    type: 'string',
    requiresArg: true,
    group: 'Connection:',
    describe: "the monitor's name in each name's history (X-Divert-Client) [env DIVERT_CLIENT]",
    defaultDescription: '"id" in the config, else "monitor"',
  });
}

export async function runMonitor(argv: Args, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const configPath = given(argv, 'config', 'DIVERT_MONITOR_CONFIG', env);
  if (!configPath) throw usage('divert monitor needs --config FILE (or DIVERT_MONITOR_CONFIG): the services, mirrors and checks to run');
  const level = logLevel(argv, 'DIVERT_MONITOR_LOG_LEVEL', env);
  const listen = statusAddress(argv, 'DIVERT_MONITOR_STATUS', DEFAULT_STATUS, env);
  // the monitor's own modules only when it runs: `divert monitor status` and --help need none of them
  const [{ pino }, { loadMonitorConfig }, { MonitorMetrics }, { Monitor }, { startStatusServer }, { AdminClient }] = await Promise.all([
    import('pino'),
    import('../monitor/config.js'),
    import('../monitor/metrics.js'),
    import('../monitor/monitor.js'),
    import('../net/status-server.js'),
    import('../client/admin-client.js'),
  ]);
  const config = loadMonitorConfig(configPath.value);
  const merged = connectionArgs(argv, config, env);
  if (merged.client === undefined && !env.DIVERT_CLIENT) merged.client = config.id;
  const connection = resolveConnection(merged, env);
  if (merged.token === config.token && config.token !== undefined) connection.tokenSource = `"token" in ${configPath.value}`;

  const log = pino({ level, base: { component: 'monitor' } });
  const metrics = new MonitorMetrics();
  const monitor = new Monitor(config, new AdminClient(connection, ADMIN_TIMEOUT_MS), connection.client, log, metrics);
  let server;
  try {
    server = await startStatusServer(listen, { '/status': () => monitor.status() }, metrics.registry);
  } catch (err) {
    throw new DivertError(
      'LISTEN_FAILED',
      `--status ${formatHostPort(listen)}: cannot listen (${(err as NodeJS.ErrnoException).code ?? String(err)}); give another HOST:PORT`,
    );
  }
  monitor.start();
  const mirrors = config.services.reduce((n, s) => n + s.mirrors.length, 0);
  const statusAt = formatHostPort(server.address);
  log.info(
    { status: statusAt, admin: connection.url.href, id: connection.client, services: config.services.map((s) => s.name) },
    `monitoring ${config.services.length} service(s), ${mirrors} mirror(s); writing to ${connection.url.href} as "${connection.client}"; status on http://${statusAt}/status`,
  );

  stopOnSignals(log, () => Promise.all([monitor.stop(), server.close()]));
}

const time = (iso: string | null) => (iso === null ? '-' : iso.replace(/\.\d+Z$/, 'Z'));

/** The readable form of GET /status: services, the names they steer, and every mirror. */
export function renderStatus(report: StatusReport): string {
  const admin = report.admin.up ? 'reachable' : `UNREACHABLE since ${time(report.admin.since)} (${report.admin.error})`;
  const header = `monitor "${report.id}" since ${time(report.startedAt)}; admin API ${report.admin.url} ${admin}\n\n`;
  const services = textTable(
    ['SERVICE', 'POLICY', 'ANSWER', 'STATE'],
    report.services.map((s) => {
      const answer = s.answer === null ? '-' : s.answer.map((a) => (s.weights ? `${a}(w${s.weights[a] ?? 1})` : a)).join(',');
      const state = !s.ready ? 'starting (not every mirror checked yet)' : s.allDown ? 'ALL MIRRORS DOWN: last answer kept' : 'ok';
      return [s.name, s.policy, answer, state];
    }),
  );
  const names = textTable(
    ['NAME', 'SERVICE', 'TABLE', 'VERSION', 'QUERIES/S', 'SYNC'],
    report.services.flatMap((s) =>
      s.names.map((n) => {
        const table =
          n.table === undefined
            ? '(not read yet)'
            : n.table === null
              ? '(not intercepted)'
              : [...n.table.a, ...n.table.aaaa].join(',') || '(no addresses)';
        const sync = n.hold
          ? `HELD: changed by ${n.hold.by} (v${n.hold.version}); ${n.hold.until ? `monitor writes again at ${time(n.hold.until)}` : 'until the monitor restarts'}`
          : n.error
            ? `error: ${n.error}`
            : n.inSync
              ? 'in sync'
              : s.answer === null
                ? 'waiting for checks'
                : 'pending write';
        return [
          n.name,
          s.name,
          table,
          n.table ? String(n.table.version) : '-',
          n.queriesPerSecond === null ? '-' : String(n.queriesPerSecond),
          sync,
        ];
      }),
    ),
  );
  const mirrors = textTable(
    ['SERVICE', 'MIRROR', 'SITE', 'PRIO', 'WEIGHT', 'STATE', 'IN ANSWER', 'LAST CHECK', 'RESULT', 'LATENCY', 'LOAD'],
    report.services.flatMap((s) =>
      s.mirrors.map((m) => [
        s.name,
        `${m.address.includes(':') ? `[${m.address}]` : m.address}:${m.port}`,
        m.site ?? '-',
        String(m.priority),
        String(m.weight),
        m.state + (m.overloaded ? ' (overloaded)' : '') + (m.state === 'down' && m.reason?.startsWith('passive:') ? ` (${m.reason})` : ''),
        m.inAnswer ? 'yes' : 'no',
        time(m.lastCheck),
        m.lastResult === null ? '-' : m.lastResult === 'ok' ? 'ok' : `fail: ${m.error}`,
        m.latencyMs === null ? '-' : `${m.latencyMs} ms`,
        m.load === null ? '-' : String(m.load),
      ]),
    ),
  );
  const passive = report.services.filter((s) => s.passive !== null);
  const proxies =
    passive.length === 0
      ? ''
      : '\n' +
        textTable(
          ['SERVICE', 'PASSIVE HEALTH VIA PROXY', 'MARKS DOWN AT', 'STATE', 'LAST READ'],
          passive.map(({ name, passive: p }) => [
            name,
            p!.proxy,
            `${p!.failures} connect failures in ${p!.windowMs / 1000} s`,
            p!.up === null
              ? 'starting'
              : p!.up
                ? `reading every ${p!.intervalMs} ms`
                : `PAUSED: proxy unreachable since ${time(p!.since)} (${p!.error}); active checks go on`,
            time(p!.lastRead),
          ]),
        );
  return `${header}${services}\n${names}\n${mirrors}${proxies}`;
}

async function showStatus(argv: Args): Promise<void> {
  const at = formatHostPort(statusAddress(argv, 'DIVERT_MONITOR_STATUS', DEFAULT_STATUS, process.env));
  let report: StatusReport;
  try {
    report = JSON.parse(await getStatusText(`http://${at}/status`)) as StatusReport;
  } catch (err) {
    throw new Error(
      `cannot read the monitor's status at http://${at}/status (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); is divert monitor running with --status ${at}?`,
      { cause: err },
    );
  }
  if (argv.json) return printJson(report);
  process.stdout.write(renderStatus(report));
  if (report.services.some((s) => s.allDown)) note('a service has every mirror down (see STATE)');
}

/** `divert monitor` and `divert monitor status`; main.ts registers it. */
export function monitorCommand(yargs: Argv): Argv {
  return yargs
    .command(['run', '$0'], 'run the monitor (the default)', runOptions, (argv) => runMonitor(argv))
    .command(
      'status',
      "show a running monitor's mirrors, their checks and each service's answer",
      (y) =>
        statusOption(y, "HOST:PORT where the monitor's status endpoint listens")
          .option('json', { type: 'boolean', describe: 'print the status as JSON instead of tables' })
          .example('$0 monitor status', 'the monitor on this machine')
          .example('$0 monitor status --status 127.0.0.1:5391 --json', 'another one, as JSON'),
      (argv) => showStatus(argv),
    );
}
