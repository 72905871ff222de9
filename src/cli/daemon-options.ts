// What `divert monitor` and `divert proxy` read the same way: a flag or its DIVERT_*
// variable, the log level, the status endpoint's HOST:PORT, and the admin connection
// completed from the config file's admin, token and tokenFile.

import { httpRequest } from '../client/http-request.js';
import { parseHostPort, type HostPort } from '../net/host-port.js';
import { usage } from './connection.js';

export type Args = Record<string, unknown>;

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** A flag, else its variable (an empty one counts as unset). */
export function given(argv: Args, flag: string, variable: string, env: NodeJS.ProcessEnv): { value: string; from: string } | undefined {
  const value = argv[flag];
  if (Array.isArray(value)) throw usage(`--${flag} is given ${value.length} times; it takes one value`);
  if (typeof value === 'string') return { value, from: `--${flag}` };
  return env[variable] ? { value: env[variable], from: variable } : undefined;
}

export function logLevel(argv: Args, variable: string, env: NodeJS.ProcessEnv): LogLevel {
  const level = given(argv, 'log-level', variable, env) ?? { value: 'info', from: '--log-level' };
  if (!(LOG_LEVELS as readonly string[]).includes(level.value))
    throw usage(`${level.from} "${level.value}": expected one of ${LOG_LEVELS.join(', ')}`);
  return level.value as LogLevel;
}

/** --status, else its variable, else `fallback`. */
export function statusAddress(argv: Args, variable: string, fallback: string, env: NodeJS.ProcessEnv): HostPort {
  const chosen = given(argv, 'status', variable, env) ?? { value: fallback, from: '--status' };
  const parsed = parseHostPort(chosen.value);
  if (typeof parsed === 'string') throw usage(`${chosen.from} "${chosen.value}": ${parsed}`);
  return parsed;
}

/** Flags win over DIVERT_* variables, which win over the config file's admin, token and tokenFile. */
export function connectionArgs(argv: Args, config: { admin?: string; token?: string; tokenFile?: string }, env: NodeJS.ProcessEnv): Args {
  const out: Args = { ...argv };
  if (out.admin === undefined && !env.DIVERT_ADMIN_URL && config.admin) out.admin = config.admin;
  const tokenGiven =
    out.token !== undefined || out['token-file'] !== undefined || !!env.DIVERT_ADMIN_TOKEN || !!env.DIVERT_ADMIN_TOKEN_FILE;
  if (!tokenGiven) {
    if (config.token) out.token = config.token;
    else if (config.tokenFile) out['token-file'] = config.tokenFile;
  }
  return out;
}

const STATUS_TIMEOUT_MS = 5000;

/** A status page of a running monitor or proxy, through the admin client's HTTP request (client/http-request.ts). */
export async function getStatusText(url: string): Promise<string> {
  const reply = await httpRequest(new URL(url), { signal: AbortSignal.timeout(STATUS_TIMEOUT_MS) }).catch((err: unknown) => {
    throw err instanceof Error && err.name === 'TimeoutError' ? new Error(`no answer within ${STATUS_TIMEOUT_MS / 1000} s`) : err;
  });
  if (reply.status !== 200) throw new Error(`HTTP ${reply.status}`);
  return reply.text();
}

/** SIGTERM or SIGINT: logs it once, stops everything `stop` names, and exits 0. */
export function stopOnSignals(log: { info(fields: object, message: string): void }, stop: () => Promise<unknown>): void {
  let stopping = false;
  const onSignal = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    void stop().then(() => process.exit(0));
  };
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));
}
