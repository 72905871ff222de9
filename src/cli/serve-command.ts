// `divert serve`: loads the configuration, starts the server, reloads it on SIGHUP, and
// stops it cleanly on SIGTERM or SIGINT. A start-up failure is one line on stderr and a
// non-zero exit.

import { componentLogger, createLogger } from '../log.js';
import { formatHostPort, type HostPort } from '../net/host-port.js';
import { formatUpstream } from '../net/upstream-spec.js';
import { loadServeConfig } from '../config/load.js';
import type { RunningServer } from '../server/server.js';

/** ", DoT on …, DoH on …" for the listening line, or nothing. */
function encryptedText({ dot, doh }: RunningServer['encrypted']): string {
  const list = (addresses: HostPort[]) => addresses.map(formatHostPort).join(', ');
  return `${dot.length > 0 ? `, DoT on ${list(dot)}` : ''}${doh.length > 0 ? `, DoH on https://${list(doh)}/dns-query` : ''}`;
}

/** How long a stop may take beyond the query timeout before the process exits anyway. */
const STOP_MARGIN_MS = 5000;

export async function runServe(argv: Record<string, unknown>): Promise<void> {
  // a reload reads the same flags and variables (they cannot change) and the --config file anew
  const env = { ...process.env };
  const config = loadServeConfig(argv, env);
  const root = createLogger(config.logLevel);
  const log = componentLogger(root, 'serve');
  // SIGHUP reloads (src/reload.ts); one that comes while starting waits for the start
  let running: RunningServer | undefined;
  let hangupWhileStarting = false;
  let stopping = false;
  let queryTimeoutMs = config.queryTimeoutMs;
  const reload = () => {
    if (stopping) return;
    if (!running) {
      hangupWhileStarting = true;
      return;
    }
    log.info({ signal: 'SIGHUP' }, 'reloading the configuration');
    void running.reload().then((result) => {
      if (result.ok) queryTimeoutMs = Math.max(queryTimeoutMs, result.config.queryTimeoutMs);
    });
  };
  process.on('SIGHUP', reload);
  // the server's modules (Redis, HTTP, metrics) are loaded once the configuration is good:
  // a refused start-up has no use for them
  const { startServer } = await import('../server/server.js');
  const server = await startServer(config, root, { reloadConfig: () => loadServeConfig(argv, env) });
  running = server;
  log.info(
    {
      listen: server.listening.map(formatHostPort),
      admin: formatHostPort(server.admin),
      upstreams: server.upstreams.map(formatUpstream),
      ...(server.update ? { update: formatHostPort(server.update) } : {}),
      ...(server.encrypted.dot.length > 0 ? { dot: server.encrypted.dot.map(formatHostPort) } : {}),
      ...(server.encrypted.doh.length > 0 ? { doh: server.encrypted.doh.map(formatHostPort) } : {}),
    },
    `listening on ${server.listening.map(formatHostPort).join(', ')} (UDP and TCP)${encryptedText(server.encrypted)}; admin API on http://${formatHostPort(server.admin)}`,
  );
  // On a signal: stop accepting, let the queries and admin requests in flight finish
  // (a query takes at most --query-timeout-ms), then exit 0. A close that hangs beyond
  // that (a worker or a Redis connection that does not let go) ends in exit 1.
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    const started = Date.now();
    log.info({ signal }, 'stopping: finishing the queries in flight');
    setTimeout(() => {
      log.error({ afterMs: Date.now() - started }, 'stopping took too long; exiting anyway');
      process.exit(1);
    }, queryTimeoutMs + STOP_MARGIN_MS).unref();
    server.close().then(
      () => {
        log.info({ afterMs: Date.now() - started }, 'stopped');
        process.exit(0);
      },
      (err: Error) => {
        log.error({ err: err.message }, 'stopping failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  if (hangupWhileStarting) reload();
}
