// The flags of `divert serve` and `divert validate` (which reads what serve would), built from the option table;
// apart from the server itself, so that their --help loads the table and nothing of the server.

import type { Argv } from 'yargs';
import { envName, SERVE_OPTIONS, type OptionSpec } from '../config/options.js';

export function serveOptions(yargs: Argv): Argv {
  for (const spec of Object.values(SERVE_OPTIONS) as OptionSpec[]) {
    const shownDefault = spec.defaultDescription ?? (spec.default === undefined ? undefined : JSON.stringify(spec.default));
    yargs.option(spec.flag, {
      describe: `${spec.describe} [env ${envName(spec.flag)}]`,
      type: spec.boolean ? 'boolean' : 'string',
      array: spec.repeatable ?? false,
      requiresArg: !spec.boolean,
      defaultDescription: shownDefault,
    });
  }
  return yargs.option('config', {
    describe: 'JSON or YAML file of options (keys are the flag names); flags and DIVERT_* variables win [env DIVERT_CONFIG]',
    type: 'string',
    requiresArg: true,
  });
}

export function validateOptions(yargs: Argv): Argv {
  return serveOptions(yargs)
    .usage(
      '$0 validate [--config FILE] [options]\n\n' +
        'Checks the configuration divert serve would start with (the same options, DIVERT_* variables and --config file), ' +
        'its zone files, upstreams, Redis URL and TSIG key file, without binding a port or contacting Redis. ' +
        'Exit 0 with a summary on stdout; exit 2 with the first error on stderr.',
    )
    .example('$0 validate --config /etc/divert/divert.yaml', 'check a config file before a restart or a reload (SIGHUP)')
    .example('$0 validate --zones zones/ --upstream 9.9.9.9', 'check zone files');
}
