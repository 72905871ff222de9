// `divert names …`: the operator's view of the address table, read and changed through the admin API (never the store itself).

import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import type { Argv } from 'yargs';
import type { EntryData } from '../entry/entry.js';
import { AdminClient, AdminError } from '../client/admin-client.js';
import { connectionOptions, resolveConnection, usage } from './connection.js';
import { entriesTable, historyTable, note, printJson, rulesText } from './render.js';

// The entry model's checks and the zone file writer (with the CIDR code below them) are
// imported by set and export alone, so that list and get start with less.

type Args = Record<string, unknown>;

/** How often `set` retries when the entry changed between reading it and writing. */
const KEEP_TTL_TRIES = 3;

const client = (argv: Args) => new AdminClient(resolveConnection(argv), undefined, note);

function jsonOption(yargs: Argv, what: string): Argv {
  return yargs.option('json', { type: 'boolean', describe: `print ${what} as JSON instead of a table` });
}

/** A whole number given as text; yargs' own number type would turn "ten" into NaN without a word. */
function wholeNumber(argv: Args, flag: string): number | undefined {
  const value = argv[flag];
  if (value === undefined) return undefined;
  if (Array.isArray(value)) throw usage(`--${flag} is given ${value.length} times; it takes one value`);
  const text = typeof value === 'string' ? value : JSON.stringify(value);
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
      throw usage(
        `"${address}" is not an IPv4 or IPv6 address (divert names set NAME ADDRESS... takes addresses, such as 192.0.2.10 or 2001:db8::10)`,
      );
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
  process.stdout.write(entriesTable([entry]) + rulesText(entry));
}

/** `--weight 192.0.2.10=3` (repeatable) as an address → weight map. */
function weightsOf(argv: Args): Record<string, number> | undefined {
  const given = argv.weight;
  if (given === undefined) return undefined;
  const weights: Record<string, number> = {};
  for (const text of (Array.isArray(given) ? given : [given]).map(String)) {
    const match = /^(.+)=(\d{1,4})$/.exec(text);
    if (!match) throw usage(`--weight "${text}" is not ADDRESS=WEIGHT (as in --weight 192.0.2.10=3)`);
    weights[match[1]] = Number(match[2]);
  }
  return weights;
}

/** `--rules` as JSON text, or @FILE holding it: the entry's rules (an empty list removes them). */
async function rulesOf(argv: Args): Promise<unknown[] | undefined> {
  const given = argv.rules;
  if (given === undefined) return undefined;
  let text = typeof given === 'string' ? given : JSON.stringify(given);
  if (text.startsWith('@')) {
    try {
      text = await readFile(text.slice(1), 'utf8');
    } catch (err) {
      throw usage(`--rules ${text}: cannot read the file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  }
  let rules: unknown;
  try {
    rules = JSON.parse(text);
  } catch (err) {
    throw usage(
      `--rules is not valid JSON (${(err as Error).message}); expected a list of rules, as in '[{"networks":["10.1.0.0/16"],"a":["192.0.2.30"]}]'`,
    );
  }
  if (!Array.isArray(rules)) throw usage('--rules is not a JSON list (expected [{...}, ...])');
  return rules as unknown[];
}

/**
 * The entry `set` writes: the addresses given, and what the command line does not say
 * taken from the current entry (TTL, rules, pick; the weights of addresses still listed:
 * withAddresses),
 * so that changing addresses does not reset what someone else chose.
 */
async function merged(given: Pick<EntryData, 'a' | 'aaaa'>, options: Partial<EntryData>, current: EntryData | null): Promise<EntryData> {
  const [{ withAddresses }, { DEFAULT_TTL_SECONDS }] = await Promise.all([import('../entry/entry-ops.js'), import('../entry/check.js')]);
  const data = current ? withAddresses(current, given.a, given.aaaa) : { ...given, ttl: DEFAULT_TTL_SECONDS };
  if (options.ttl !== undefined) data.ttl = options.ttl;
  if (options.weights !== undefined) data.weights = options.weights;
  if (options.pick !== undefined) data.pick = options.pick;
  if (options.rules !== undefined && options.rules.length > 0) data.rules = options.rules;
  else if (options.rules !== undefined) delete data.rules;
  return data;
}

async function set(argv: Args): Promise<void> {
  const name = argv.name as string;
  const addresses = sortAddresses((argv.addresses as unknown[]).map(String));
  const options: Partial<EntryData> = {
    ttl: wholeNumber(argv, 'ttl'),
    pick: wholeNumber(argv, 'pick'),
    weights: weightsOf(argv),
    rules: (await rulesOf(argv)) as EntryData['rules'],
  };
  const ifVersion = wholeNumber(argv, 'if-version');
  const admin = client(argv);
  let entry;
  // Write only over the version the rest was read from, so a concurrent change of the TTL
  // or the rules is not lost; with --if-version, over that version only.
  for (let attempt = 1; ; attempt++) {
    const current = await admin.get(name).catch((err: unknown) => {
      if (err instanceof AdminError && err.status === 404) return null;
      throw err;
    });
    try {
      entry = await admin.put(name, await merged(addresses, options, current), ifVersion ?? current?.version ?? 0);
      break;
    } catch (err) {
      const raced = err instanceof AdminError && err.status === 412 && ifVersion === undefined;
      if (!raced || attempt === KEEP_TTL_TRIES) throw err;
    }
  }
  if (argv.json) return printJson(entry);
  process.stdout.write(entriesTable([entry]) + rulesText(entry));
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
  const { formatZone } = await import('../table/zone/format.js');
  const entries = await client(argv).listAll(prefix);
  if (entries.length === 0)
    note(prefix ? `no intercepted name starts with "${prefix}"; the zone is empty` : 'no names are intercepted; the zone is empty');
  process.stdout.write(formatZone(entries));
}

async function history(argv: Args): Promise<void> {
  const reply = await client(argv).history(argv.name as string);
  if (argv.json) return printJson(reply);
  if (reply.history.length === 0) return note(`no change of ${reply.name} is on record`);
  process.stdout.write(historyTable(reply.history));
}

const nameArg = (yargs: Argv) =>
  yargs.positional('name', { type: 'string', describe: 'the name, as in www.shop.example or *.cdn.shop.example' });
const ifVersionOption = (yargs: Argv, what: string) =>
  yargs.option('if-version', {
    type: 'string',
    requiresArg: true,
    describe: `${what} only if the entry is still at this version (as get shows it); 0: only if the name is not intercepted yet`,
  });

/** The `names` command's subcommands; main.ts registers it. */
export function namesCommand(yargs: Argv): Argv {
  return yargs
    .usage(
      '$0 names <command> [options]\n\nRead and change the names divert answers itself, through the admin API of a running divert serve.',
    )
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
      (y) =>
        connectionOptions(jsonOption(nameArg(y), 'the entry')).example('$0 names get www.shop.example', 'its addresses, TTL and version'),
      (argv) => get(argv),
    )
    .command(
      'set <name> <addresses..>',
      'intercept a name, or replace its addresses',
      (y) =>
        connectionOptions(jsonOption(ifVersionOption(nameArg(y), 'replace it'), 'the new entry'))
          .positional('addresses', {
            type: 'string',
            array: true,
            describe: 'IPv4 and IPv6 addresses; the name answers A and AAAA with them',
          })
          .option('ttl', {
            type: 'string',
            requiresArg: true,
            describe: 'seconds clients may cache the answer (0 to 86400)',
            defaultDescription: "the entry's current TTL, or 30 for a new name",
          })
          .option('weight', {
            type: 'string',
            array: true,
            requiresArg: true,
            describe: 'ADDRESS=WEIGHT (0 to 1000, repeatable): load sharing; each answer puts one address first, chosen by weight',
            defaultDescription: 'the current weights of the addresses still listed',
          })
          .option('pick', {
            type: 'string',
            requiresArg: true,
            describe: 'answer only this many addresses of each family, chosen by weight',
            defaultDescription: "the entry's current pick, or all",
          })
          .option('rules', {
            type: 'string',
            requiresArg: true,
            describe: 'local rules as a JSON list, or @FILE holding one ([] removes them); see the README',
            defaultDescription: "the entry's current rules",
          })
          .example('$0 names set www.shop.example 192.0.2.20 2001:db8::20', 'answer A with 192.0.2.20 and AAAA with 2001:db8::20')
          .example(
            '$0 names set www.shop.example 192.0.2.10 192.0.2.20 --weight 192.0.2.10=3 --pick 1',
            'one address per answer: 192.0.2.10 three times in four',
          )
          .example(
            '$0 names set www.shop.example 192.0.2.10 --rules \'[{"networks":["10.1.0.0/16"],"a":["192.0.2.30"]}]\'',
            'clients in 10.1.0.0/16 get 192.0.2.30, everyone else 192.0.2.10',
          )
          .example('$0 names set api.shop.example 192.0.2.21 --ttl 5 --if-version 7', 'only if nobody changed it since version 7'),
      (argv) => set(argv),
    )
    .command(
      'delete <name>',
      'stop intercepting a name (its queries are forwarded again)',
      (y) =>
        connectionOptions(ifVersionOption(nameArg(y), 'delete it')).example(
          '$0 names delete www.shop.example',
          'forward www.shop.example upstream again',
        ),
      (argv) => remove(argv),
    )
    .command(
      'import <file>',
      'apply a zone file: all of its names at once, or none',
      (y) =>
        connectionOptions(jsonOption(y, 'the entries written'))
          .positional('file', {
            type: 'string',
            describe: 'an RFC 1035 master file (/dev/stdin: standard input); its A and AAAA records become entries',
          })
          .option('origin', { type: 'string', requiresArg: true, describe: "origin of relative names before the file's first $ORIGIN" })
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
      (y) =>
        connectionOptions(jsonOption(nameArg(y), 'the history')).example(
          '$0 names history www.shop.example',
          'who changed it, when, and from what to what',
        ),
      (argv) => history(argv),
    )
    .demandCommand(1, 'name a names command (divert names --help lists them)');
}
