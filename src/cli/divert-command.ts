// `divert divert FROM TO`: every name that answers one address answers another instead, in one step — moving clients off a mirror server.

import { isIP } from 'node:net';
import type { Argv } from 'yargs';
import { AdminClient } from '../client/admin-client.js';
import { connectionOptions, resolveConnection, usage } from './connection.js';
import { entriesTable, note, printJson } from './render.js';

type Args = Record<string, unknown>;

export function divertOptions(yargs: Argv): Argv {
  const withArgs = yargs
    .usage('$0 divert <from> <to> [options]\n\nEvery intercepted name that answers FROM answers TO instead, all in one step.')
    // (an epilogue, not more usage lines: yargs wraps a usage of several lines badly)
    .epilogue(
      'Both addresses must be of the same family. The diversion is also kept as a record (divert diversions list),\n' +
        'which divert proxy follows for address targets: diversions to FROM now go to TO as well, and diverting\n' +
        'back (divert divert TO FROM) removes FROM → TO instead of recording TO → FROM.',
    )
    .positional('from', { type: 'string', describe: 'the address to move away from (an overloaded or failed server)' })
    .positional('to', { type: 'string', describe: 'the address to answer instead' });
  return connectionOptions(withArgs)
    .option('json', { type: 'boolean', describe: "print the server's reply ({from, to, changed, diversion}) as JSON instead of a table" })
    .example('$0 divert 192.0.2.10 192.0.2.20', 'every name answering 192.0.2.10 answers 192.0.2.20 instead')
    .example('$0 divert 2001:db8::10 2001:db8::20 --json', 'the same for an IPv6 address; the changed entries as JSON');
}

export async function runDiversion(argv: Args): Promise<void> {
  const from = String(argv.from);
  const to = String(argv.to);
  for (const [which, address] of [
    ['FROM', from],
    ['TO', to],
  ]) {
    if (isIP(address) === 0 || address.includes('%')) throw usage(`${which} "${address}" is not an IPv4 or IPv6 address`);
  }
  if (isIP(from) !== isIP(to))
    throw usage(`"${from}" and "${to}" are of different families (an A record cannot answer an IPv6 address, nor AAAA an IPv4 one)`);
  const reply = await new AdminClient(resolveConnection(argv), undefined, note).divert(from, to);
  if (argv.json) return printJson(reply);
  // what the record says, when it is not simply FROM → TO (divert diversions list shows them all)
  if (reply.diversion === null) note(`this diverted back: ${to} → ${from} is no longer in force`);
  else if (reply.diversion.to !== reply.to) note(`${reply.to} is diverted to ${reply.diversion.to}: traffic for ${from} goes there`);
  if (reply.changed.length === 0) return note(`no intercepted name answers ${from}; no name changed`);
  process.stdout.write(entriesTable(reply.changed));
}
