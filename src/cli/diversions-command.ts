// `divert diversions list|delete`: the diversions in force (an original destination and
// the address its traffic goes to), as `divert divert` and the monitor leave them, which
// `divert proxy` follows for address targets.

import { isIP } from 'node:net';
import type { Argv } from 'yargs';
import { AdminClient } from '../client/admin-client.js';
import { connectionOptions, resolveConnection, usage } from './connection.js';
import { diversionsTable, note, printJson } from './render.js';

type Args = Record<string, unknown>;

const client = (argv: Args) => new AdminClient(resolveConnection(argv), undefined, note);

async function list(argv: Args): Promise<void> {
  const records = await client(argv).diversions();
  if (argv.json) return printJson(records);
  if (records.length === 0) return note('no diversion is in force');
  process.stdout.write(diversionsTable(records));
}

async function remove(argv: Args): Promise<void> {
  const from = String(argv.from);
  if (isIP(from) === 0 || from.includes('%')) throw usage(`FROM "${from}" is not an IPv4 or IPv6 address`);
  const record = await client(argv).deleteDiversion(from);
  if (argv.json) return printJson(record);
  process.stdout.write(
    `deleted the diversion ${record.from} → ${record.to} (names answering ${record.to} still do; divert divert ${record.to} ${record.from} moves them back)\n`,
  );
}

/** The `diversions` command's subcommands; main.ts registers it. */
export function diversionsCommand(yargs: Argv): Argv {
  return (
    yargs
      .usage('$0 diversions <command> [options]\n\nThe diversions in force, as divert divert and the monitor leave them.')
      // (an epilogue, not more usage lines: yargs wraps a usage of several lines badly)
      .epilogue(
        'Each is an original destination FROM and the address TO its traffic goes to; divert proxy follows them for\n' +
          'address targets. Diverting X to Y while Z goes to X makes Z go to Y too; diverting back (Y to X) removes X → Y.\n' +
          'Deleting one leaves the names as they are: divert divert TO FROM moves them back.',
      )
      .command(
        'list',
        'list the diversions in force (FROM, TO, BY, AT)',
        (y) =>
          connectionOptions(y)
            .option('json', { type: 'boolean', describe: 'print the records ({from, to, by, at}) as a JSON array instead of a table' })
            .example('$0 diversions list', 'every diversion in force, as a table'),
        (argv) => list(argv),
      )
      .command(
        'delete <from>',
        'forget the diversion of FROM; the names keep their answers (divert divert TO FROM moves them back)',
        (y) =>
          connectionOptions(y)
            .positional('from', { type: 'string', describe: 'the original destination address, IPv4 or IPv6' })
            .option('json', { type: 'boolean', describe: 'print the removed record as JSON' })
            .example('$0 diversions delete 192.0.2.10', 'address targets of 192.0.2.10 connect to 192.0.2.10 again'),
        (argv) => remove(argv),
      )
      .demandCommand(1, 'name a diversions command (divert diversions --help lists them)')
  );
}
