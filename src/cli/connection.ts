// Where the operator's CLI finds the admin API, its token and the client name: a flag, else a DIVERT_* variable, else the default (the token file `divert serve` writes).

import { userInfo } from 'node:os';
import type { Argv } from 'yargs';
import { defaultTokenFile, readTokenFile } from '../admin/token.js';
import { TOKEN_CHARS } from '../config/token-rule.js';
import { DivertError } from '../errors.js';
import type { Connection } from '../client/connection.js';

export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:5380';

const GROUP = 'Connection:';

/** The flags every command that talks to the admin port takes. */
export function connectionOptions(yargs: Argv): Argv {
  return yargs
    .option('admin', {
      type: 'string',
      requiresArg: true,
      group: GROUP,
      describe: 'URL of the admin API (where divert serve --admin listens) [env DIVERT_ADMIN_URL]',
      defaultDescription: DEFAULT_ADMIN_URL,
    })
    .option('token', {
      type: 'string',
      requiresArg: true,
      group: GROUP,
      describe: 'bearer token of the admin API [env DIVERT_ADMIN_TOKEN]',
      defaultDescription: 'read from --token-file',
    })
    .option('token-file', {
      type: 'string',
      requiresArg: true,
      group: GROUP,
      describe: 'file holding the token, as divert serve writes it [env DIVERT_ADMIN_TOKEN_FILE]',
      defaultDescription: '$XDG_CONFIG_HOME/divert/admin-token or ~/.config/divert/admin-token',
    })
    .option('client', {
      type: 'string',
      requiresArg: true,
      group: GROUP,
      describe: "who is making the change, kept in each name's history [env DIVERT_CLIENT]",
      defaultDescription: 'cli:<user name>',
    });
}

/** A usage error: main.ts prints it on one line and exits with status 2. */
export function usage(message: string): DivertError {
  return new DivertError('BAD_CONFIG', message);
}

/** One value of `flag`, else of `variable`; an empty variable counts as unset. */
function pick(
  argv: Record<string, unknown>,
  flag: string,
  env: NodeJS.ProcessEnv,
  variable: string,
): { value: string; from: string } | undefined {
  const given = argv[flag];
  if (Array.isArray(given)) throw usage(`--${flag} is given ${given.length} times; it takes one value`);
  if (typeof given === 'string') return { value: given, from: `--${flag}` };
  const fromEnv = env[variable];
  return fromEnv ? { value: fromEnv, from: variable } : undefined;
}

function adminUrl(text: string, from: string): URL {
  // `--admin 127.0.0.1:5380`, as divert serve spells it, means plain HTTP there.
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw usage(`${from} "${text}" is not a URL (expected one like ${DEFAULT_ADMIN_URL})`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw usage(`${from} "${text}": "${url.protocol}" is not http: or https: (expected a URL like ${DEFAULT_ADMIN_URL})`);
  }
  if (url.search || url.hash) throw usage(`${from} "${text}" has a query or fragment (expected a URL like ${DEFAULT_ADMIN_URL})`);
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return url;
}

function defaultClient(): string {
  let user: string;
  try {
    user = userInfo().username;
  } catch {
    // A container user without a passwd entry has no name; the variables may still have one.
    user = process.env.USER || process.env.LOGNAME || `uid ${process.getuid?.() ?? 'unknown'}`;
  }
  // A header carries ASCII only; an unusual user name must not stop the command.
  return `cli:${user.replace(/[^\x20-\x7e]/g, '?')}`;
}

export function resolveConnection(argv: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): Connection {
  const admin = pick(argv, 'admin', env, 'DIVERT_ADMIN_URL');
  const url = admin ? adminUrl(admin.value, admin.from) : new URL(DEFAULT_ADMIN_URL + '/');

  let token: string;
  let tokenSource: string;
  const given = pick(argv, 'token', env, 'DIVERT_ADMIN_TOKEN');
  if (given) {
    token = given.value.trim();
    tokenSource = given.from;
  } else {
    const file = pick(argv, 'token-file', env, 'DIVERT_ADMIN_TOKEN_FILE');
    const path = file?.value ?? defaultTokenFile(env);
    const read = readTokenFile(path);
    if (read === null) {
      const where = file ? `${file.from} "${path}"` : `"${path}" (the file divert serve writes)`;
      throw usage(
        `no admin token: --token and DIVERT_ADMIN_TOKEN are not set, and ${where} does not exist; give --token TOKEN, or --token-file PATH for the file your divert serve wrote`,
      );
    }
    token = read;
    tokenSource = `the file ${path}`;
  }
  // fetch would refuse such a header with a message about headers, not about the token.
  if (!TOKEN_CHARS.test(token)) throw usage(`the admin token from ${tokenSource} holds spaces or characters other than printable ASCII`);

  const named = pick(argv, 'client', env, 'DIVERT_CLIENT');
  const client = named ? named.value.trim() : defaultClient();
  if (!/^[\x20-\x7e]{1,100}$/.test(client)) {
    throw usage(`${named?.from ?? '--client'} "${client}" is not a client name (expected 1 to 100 printable ASCII characters)`);
  }
  return { url, token, tokenSource, client };
}
