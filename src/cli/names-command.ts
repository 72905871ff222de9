// `divert names …`: the operator's view of the address table, read and changed through the admin API (never the store itself).

import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import type { Argv } from 'yargs';
import { formatZone } from '../table/zone-file.js';
import type { EntryData } from '../table/table.js';
import { AdminClient, AdminError } from './admin-client.js';
import { connectionOptions, resolveConnection, usage } from './connection.js';
import { entriesTable, historyTable, note, printJson } from './render.js';

type Args = Record<string, unknown>;

/** How often `set` without --ttl retries when the entry changed between reading its TTL and writing. */
const KEEP_TTL_TRIES = 3;

const client = (argv: Args) => new AdminClient(resolveConnection(argv));

function jsonOption(yargs: Argv, what: string): Argv {
  return yargs.option('json', { type: 'boolean', describe: `print ${what} as JSON instead of a table` });
}

/** A whole number given as text; yargs' own number type would turn "ten" into NaN without a word. */
function wholeNumber(argv: Args, flag: string): number | undefined {
  const value = argv[flag];
  if (value === undefined) return undefined;
  if (Array.isArray(value)) throw usage(`--${flag} is given ${value.length} times; it takes one value`);
  const text = String(value);
  if (!/^\d{1,15}$/.test(text)) throw usage(`--${flag} "${text}" is not a whole number`);
  return Number(text);
}

/** IPv4 addresses go to `a`, IPv6 to `aaaa`; anything else is a mistake on the command line, not a request to send. */
export function sortAddresses(addresses: string[]): Pick<EntryData, 'a' | 'aaaa'> {
  const a: string[] = [];
  const aaaa: string[] = [];
  const seen = new Set<string>();
  for (const address of addresses) {
    const family = isIP(address);
    if (family === 0 || address.includes('%')) {
      throw usage(`"${address}" is not an IPv4 or IPv6 address (divert names set NAME ADDRESS... takes addresses, such as 192.0.2.10 or 2001:db8::10)`);
    }
    // The same address in two spellings (2001:db8::1, 2001:DB8:0::1) is still a duplicate.
    const canonical = family === 4 ? address : new URL(`http://[${address}]/`).hostname;
    if (seen.has(canonical)) throw usage(`"${address}" is given twice`);
    seen.add(canonical);
    (family === 4 ? a : aaaa).push(address);
  }
  return { a, aaaa };
}

async function list(argv: Args): Promise<void> {
  const prefix = argv.prefix as string | undefined;
  const entries = await client(argv).listAll(prefix);
  if (argv.json) return printJson(entries);
  if (entries.length === 0) return note(prefix ? `no intercepted name starts with "${prefix}"` : 'no names are intercepted');
  process.stdout.write(entriesTable(entries));
}

async function get(argv: Args): Promise<void> {
  const entry = await client(argv).get(argv.name as string);
  if (argv.json) return printJson(entry);
  process.stdout.write(entriesTable([entry]));
}

async function set(argv: Args): Promise<void> {
  const name = argv.name as string;
  const addresses = sortAddresses((argv.addresses as unknown[]).map(String));
  const ttl = wholeNumber(argv, 'ttl');
  const ifVersion = wholeNumber(argv, 'if-version');
  const admin = client(argv);
  let entry;
  if (ttl !== undefined) {
    entry = await admin.put(name, { ...addresses, ttl }, ifVersion);
  } else {
    // Changing addresses should not reset a TTL someone chose: keep the entry's own, and
    // write only over the version it was read from, so a concurrent TTL change is not lost.
    for (let attempt = 1; ; attempt++) {
      const current = await admin.get(name).catch((err: unknown) => {
        if (err instanceof AdminError && err.status === 404) return null;
        throw err;
      });
      try {
        entry = await admin.put(name, { ...addresses, ...(current && { ttl: current.ttl }) }, ifVersion ?? current?.version ?? 0);
        break;
      } catch (err) {
        const raced = err instanceof AdminError && err.status === 412 && ifVersion === undefined;
        if (!raced || attempt === KEEP_TTL_TRIES) throw err;
      }
    }
  }
  if (argv.json) return printJson(entry);
  process.stdout.write(entriesTable([entry]));
}

async function remove(argv: Args): Promise<void> {
  const name = argv.name as string;
  await client(argv).delete(name, wholeNumber(argv, 'if-version'));
  process.stdout.write(`deleted ${name}\n`);
}

async function importZone(argv: Args): Promise<void> {
  const file = argv.file;
  // yargs turns a lone "-" into "" (or true): say how to read standard input instead.
  if (typeof file !== 'string' || file === '') throw usage('import needs the path of a zone file (for standard input, give /dev/stdin)');
  let zone: string;
  try {
    zone = await readFile(file, 'utf8');
  } catch (err) {
    throw usage(`${file}: cannot read the zone file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  // ?file= is the path as given, so the server's "FILE:LINE:" points at what the operator typed.
  const { changed } = await client(argv).importZone(zone, file, argv.origin as string | undefined);
  if (argv.json) return printJson({ changed });
  if (changed.length === 0) return note(`${file} holds no A or AAAA record; nothing changed`);
  process.stdout.write(entriesTable(changed));
}

async function exportZone(argv: Args): Promise<void> {
  const prefix = argv.prefix as string | undefined;
  const entries = await client(argv).listAll(prefix);
  if (entries.length === 0) note(prefix ? `no intercepted name starts with "${prefix}"; the zone is empty` : 'no names are intercepted; the zone is empty');
  process.stdout.write(formatZone(entries));
}

async function history(argv: Args): Promise<void> {
  const reply = await client(argv).history(argv.name as string);
  if (argv.json) return printJson(reply);
  if (reply.history.length === 0) return note(`no change of ${reply.name} is on record`);
  process.stdout.write(historyTable(reply.history));
}

const nameArg = (yargs: Argv) => yargs.positional('name', { type: 'string', describe: 'the name, as in www.shop.example or *.cdn.shop.example' });
const ifVersionOption = (yargs: Argv, what: string) =>
  yargs.option('if-version', { type: 'string', requiresArg: true, describe: `${what} only if the entry is still at this version (as get shows it); 0: only if the name is not intercepted yet` });

/** The `names` command's subcommands; main.ts registers it. */
export function namesCommand(yargs: Argv): Argv {
  return yargs
    .usage('$0 names <command> [options]\n\nRead and change the names divert answers itself, through the admin API of a running divert serve.')
    .command(
      'list',
      'list the intercepted names',
      (y) =>
        connectionOptions(jsonOption(y, 'all entries (one array)'))
          .option('prefix', { type: 'string', requiresArg: true, describe: 'only names starting with this text' })
          .example('$0 names list', 'every intercepted name, as a table')
          .example('$0 names list --prefix www. --json', 'the entries whose names start with "www.", as a JSON array'),
      (argv) => list(argv),
    )
    .command(
      'get <name>',
      'show one intercepted name',
      (y) => connectionOptions(jsonOption(nameArg(y), 'the entry')).example('$0 names get www.shop.example', 'its addresses, TTL and version'),
      (argv) => get(argv),
    )
    .command(
      'set <name> <addresses..>',
      'intercept a name, or replace its addresses',
      (y) =>
        connectionOptions(jsonOption(ifVersionOption(nameArg(y), 'replace it'), 'the new entry'))
          .positional('addresses', { type: 'string', array: true, describe: 'IPv4 and IPv6 addresses; the name answers A and AAAA with them' })
          .option('ttl', { type: 'string', requiresArg: true, describe: 'seconds clients may cache the answer (0 to 86400)', defaultDescription: 'the entry\'s current TTL, or 30 for a new name' })
          .example('$0 names set www.shop.example 192.0.2.20 2001:db8::20', 'answer A with 192.0.2.20 and AAAA with 2001:db8::20')
          .example('$0 names set api.shop.example 192.0.2.21 --ttl 5 --if-version 7', 'only if nobody changed it since version 7'),
      (argv) => set(argv),
    )
    .command(
      'delete <name>',
      'stop intercepting a name (its queries are forwarded again)',
      (y) => connectionOptions(ifVersionOption(nameArg(y), 'delete it')).example('$0 names delete www.shop.example', 'forward www.shop.example upstream again'),
      (argv) => remove(argv),
    )
    .command(
      'import <file>',
      'apply a zone file: all of its names at once, or none',
      (y) =>
        connectionOptions(jsonOption(y, 'the entries written'))
          .positional('file', { type: 'string', describe: 'an RFC 1035 master file (/dev/stdin: standard input); its A and AAAA records become entries' })
          .option('origin', { type: 'string', requiresArg: true, describe: 'origin of relative names before the file\'s first $ORIGIN' })
          .example('$0 names import zones/example.zone', 'create or replace every name the file holds')
          .example('$0 names export > backup.zone && $0 names import backup.zone', 'an export imports back as it was'),
      (argv) => importZone(argv),
    )
    .command(
      'export',
      'print the intercepted names as a zone file',
      (y) =>
        connectionOptions(y)
          .option('prefix', { type: 'string', requiresArg: true, describe: 'only names starting with this text' })
          .example('$0 names export > backup.zone', 'a zone file that divert names import takes back'),
      (argv) => exportZone(argv),
    )
    .command(
      'history <name>',
      'show the recent changes of a name, newest first',
      (y) => connectionOptions(jsonOption(nameArg(y), 'the history')).example('$0 names history www.shop.example', 'who changed it, when, and from what to what'),
      (argv) => history(argv),
    )
    .demandCommand(1, 'name a names command (divert names --help lists them)');
}
