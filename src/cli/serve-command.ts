// `divert serve`: loads the configuration, starts the server, and stops it cleanly on
// SIGTERM or SIGINT. A start-up failure is one line on stderr and a non-zero exit.

import { pino } from 'pino';
import type { Argv } from 'yargs';
import { formatHostPort } from '../config/address.js';
import { envName, loadServeConfig } from '../config/load.js';
import { SERVE_OPTIONS, type OptionSpec } from '../config/options.js';
import { startServer } from '../server.js';

export function serveOptions(yargs: Argv): Argv {
  for (const spec of Object.values(SERVE_OPTIONS) as OptionSpec[]) {
    const shownDefault = spec.defaultDescription ?? (spec.default === undefined ? undefined : JSON.stringify(spec.default));
    yargs.option(spec.flag, {
      describe: `${spec.describe} [env ${envName(spec.flag)}]`,
      type: 'string',
      array: spec.repeatable ?? false,
      requiresArg: true,
      defaultDescription: shownDefault,
    });
  }
  return yargs.option('config', {
    describe: 'JSON or YAML file of options (keys are the flag names); flags and DIVERT_* variables win [env DIVERT_CONFIG]',
    type: 'string',
    requiresArg: true,
  });
}

export async function runServe(argv: Record<string, unknown>): Promise<void> {
  const config = loadServeConfig(argv, process.env);
  const log = pino({ level: config.logLevel, base: { component: 'serve' } });
  const server = await startServer(config, log);
  log.info(
    { listen: server.listening.map(formatHostPort), admin: formatHostPort(server.admin), upstreams: server.upstreams.map(formatHostPort) },
    `listening on ${server.listening.map(formatHostPort).join(', ')} (UDP and TCP); admin API on http://${formatHostPort(server.admin)}`,
  );
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    void server.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}
