// The flags of `divert healthcheck` (what it does: healthcheck-command.ts), apart from the check itself so that
// `divert healthcheck --help` loads neither the option table nor the DNS codec.

import type { Argv } from 'yargs';

export const DEFAULT_HEALTHCHECK_TIMEOUT_MS = 3000;

export function healthcheckOptions(yargs: Argv): Argv {
  return yargs
    .usage(
      '$0 healthcheck [options]\n\n' +
        'Checks the divert serve on this machine: GET /healthz on its admin port must answer 200, and a DNS query over UDP must get ' +
        'an answer other than SERVFAIL or REFUSED. Exit 0: healthy; 1: not (one line on stderr says what failed); 2: bad usage. ' +
        "Without flags it reads divert serve's own DIVERT_* variables and --config file, so a container's HEALTHCHECK needs none.",
    )
    .option('server', {
      type: 'string',
      requiresArg: true,
      describe: 'DNS address HOST:PORT to query [env DIVERT_LISTEN: its first address]',
      defaultDescription: "divert serve's first --listen, with 0.0.0.0 and :: asked on 127.0.0.1 and ::1 (127.0.0.1:53)",
    })
    .option('admin', {
      type: 'string',
      requiresArg: true,
      describe: 'admin API HOST:PORT whose GET /healthz must answer 200 [env DIVERT_ADMIN]',
      defaultDescription: "divert serve's --admin, 0.0.0.0 and :: asked on loopback (127.0.0.1:5380)",
    })
    .option('admin-token', {
      type: 'string',
      requiresArg: true,
      describe: 'bearer token of the admin API [env DIVERT_ADMIN_TOKEN]',
      defaultDescription: 'read from --admin-token-file',
    })
    .option('admin-token-file', {
      type: 'string',
      requiresArg: true,
      describe: 'file holding the token, as divert serve writes it [env DIVERT_ADMIN_TOKEN_FILE]',
      defaultDescription: '$XDG_CONFIG_HOME/divert/admin-token or ~/.config/divert/admin-token',
    })
    .option('name', {
      type: 'string',
      requiresArg: true,
      describe: 'name to ask (type A); a name divert answers itself tests it without any network [env DIVERT_HEALTHCHECK_NAME]',
      defaultDescription: 'the first name in the table, else the root (NS, forwarded)',
    })
    .option('timeout-ms', {
      type: 'string',
      requiresArg: true,
      describe: 'the whole check must be done within this time [env DIVERT_HEALTHCHECK_TIMEOUT_MS]',
      defaultDescription: String(DEFAULT_HEALTHCHECK_TIMEOUT_MS),
    })
    .option('config', {
      type: 'string',
      requiresArg: true,
      describe: 'the JSON or YAML file divert serve reads, for its listen, admin and token [env DIVERT_CONFIG]',
    })
    .example('$0 healthcheck', "check the divert serve started with the same environment (a container's HEALTHCHECK)")
    .example(
      '$0 healthcheck --server 127.0.0.1:5353 --admin 127.0.0.1:5380 --name www.shop.example',
      'check one elsewhere on this machine',
    );
}
