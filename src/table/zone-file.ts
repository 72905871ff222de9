// Zone files (RFC 1035 master files) in and out of the address table's form: A and AAAA records become entries.

import type { Dirent } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DivertError } from '../errors.js';
import type { EntryData } from '../entry/entry.js';
import type { WritePolicy } from './write-policy.js';
import { canonicalAddress, notAnAddress } from '../entry/addresses.js';
import { checkEntryData, checkTtl, DEFAULT_TTL_SECONDS } from '../entry/check.js';
import { normalizeName } from '../entry/names.js';
import { isAbsoluteName } from '../wire/name.js';

// Legal in a zone file, so skipped rather than rejected: a real zone carries SOA, NS, MX...
// Anything else in the type position is far more likely a typo than a record type.
const SKIPPED_TYPES = new Set(
  `NS MD MF CNAME SOA MB MG MR NULL WKS PTR HINFO MINFO MX TXT RP AFSDB X25 ISDN RT NSAP NSAP-PTR
   SIG KEY PX GPOS LOC NXT EID NIMLOC SRV ATMA NAPTR KX CERT A6 DNAME SINK APL DS SSHFP IPSECKEY
   RRSIG NSEC DNSKEY DHCID NSEC3 NSEC3PARAM TLSA SMIMEA HIP NINFO RKEY TALINK CDS CDNSKEY OPENPGPKEY
   CSYNC ZONEMD SVCB HTTPS SPF UINFO UID GID UNSPEC NID L32 L64 LP EUI48 EUI64 URI CAA AVC DOA
   AMTRELAY RESINFO WALLET TA DLV`.split(/\s+/),
);
const CLASS = /^(?:IN|CH|CS|HS|ANY|NONE|CLASS\d+)$/;
const TTL_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
// RFC 2181 §8: a TTL is an unsigned 31-bit number.
const MAX_WIRE_TTL = 2 ** 31 - 1;

interface Token {
  text: string;
  line: number;
  quoted: boolean;
}

interface Row {
  tokens: Token[];
  /** The row's first line started with whitespace: the owner is the previous record's. */
  blankOwner: boolean;
  /** A `;divert OWNER JSON` comment line: the entry's rules and load sharing (see DIVERT_COMMENT). */
  divert?: { text: string; line: number };
}

/**
 * Rules and load sharing have no record type, so they travel in a comment that other
 * tools skip: `;divert OWNER {"weights":…,"pick":…,"rules":[…]}` at the start of a line,
 * OWNER relative to $ORIGIN like a record's. It also carries `ttl` for a name with no
 * address records, which a master file could not hold otherwise.
 */
const DIVERT_COMMENT = ';divert ';
const DIVERT_KEYS = new Set(['weights', 'pick', 'rules', 'ttl']);

interface Ttl {
  seconds: number;
  line: number;
  text: string;
}

type Fail = (line: number, message: string, cause?: unknown) => never;

// Character codes the tokenizer stops at.
const NL = 0x0a;
const CR = 0x0d;
const SPACE = 0x20;
const TAB = 0x09;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const SEMICOLON = 0x3b;
const OPEN = 0x28;
const CLOSE = 0x29;

/** Whether code `c` ends a word: blank, line end, comment, parenthesis or quote. */
function endsWord(c: number): boolean {
  return c === SPACE || c === TAB || c === CR || c === NL || c === SEMICOLON || c === OPEN || c === CLOSE || c === QUOTE;
}

/**
 * Splits the text into rows (records or directives), joining lines inside parentheses,
 * and hands each to `row` as it is complete: nothing of the file is kept but the text.
 */
function tokenize(text: string, fail: Fail, row: (row: Row) => void): void {
  let tokens: Token[] = [];
  let blankOwner = false;
  let line = 1;
  let openParenLine = 0;
  let lineStart = true;
  const end = text.length;
  for (let i = text.charCodeAt(0) === 0xfeff ? 1 : 0; i < end; ) {
    const c = text.charCodeAt(i);
    if (c === NL) {
      if (openParenLine === 0 && tokens.length > 0) {
        row({ tokens, blankOwner });
        tokens = [];
      }
      line++;
      i++;
      lineStart = true;
      continue;
    }
    if (lineStart && openParenLine === 0) blankOwner = c === SPACE || c === TAB;
    lineStart = false;
    if (c === SPACE || c === TAB || c === CR) {
      i++;
    } else if (c === SEMICOLON) {
      const from = i;
      i = text.indexOf('\n', i);
      if (i < 0) i = end;
      if (tokens.length === 0 && openParenLine === 0 && !blankOwner && text.startsWith(DIVERT_COMMENT, from)) {
        row({ tokens: [], blankOwner: false, divert: { text: text.slice(from + DIVERT_COMMENT.length, i).trim(), line } });
      }
    } else if (c === OPEN) {
      if (openParenLine !== 0) fail(line, `"(" inside parentheses opened on line ${openParenLine} (expected ")" first)`);
      openParenLine = line;
      i++;
    } else if (c === CLOSE) {
      if (openParenLine === 0) fail(line, '")" without an opening "("');
      openParenLine = 0;
      i++;
    } else if (c === QUOTE) {
      let j = i + 1;
      for (let d = text.charCodeAt(j); j < end && d !== QUOTE && d !== NL; d = text.charCodeAt(j)) {
        j += d === BACKSLASH && text.charCodeAt(j + 1) !== NL ? 2 : 1;
      }
      if (j >= end || text.charCodeAt(j) !== QUOTE) fail(line, `string ${text.slice(i, Math.min(j, i + 20))}… is not closed (expected '"' before the end of the line)`);
      tokens.push({ text: text.slice(i + 1, j), line, quoted: true });
      i = j + 1;
    } else {
      let j = i;
      for (let d = c; j < end && !endsWord(d); d = text.charCodeAt(j)) {
        j += d === BACKSLASH && j + 1 < end && text.charCodeAt(j + 1) !== NL ? 2 : 1;
      }
      tokens.push({ text: text.slice(i, j), line, quoted: false });
      i = j;
    }
  }
  if (openParenLine !== 0) fail(openParenLine, '"(" is never closed (expected ")" before the end of the file)');
  if (tokens.length > 0) row({ tokens, blankOwner });
}

/** Addresses of one name checked for repeats by a scan, up to this many; beyond, by a Set. */
const SCANNED = 8;

/**
 * Entries merged record by record, or file by file: each address once, where it was
 * first seen, and the lowest TTL. A name with many addresses has a Set, not a list scan
 * per record, so a file of many records for one name costs what its size does; a file of
 * many names with a few addresses each makes no Set at all.
 */
class MergedEntries {
  /** In the order the names were first seen. */
  readonly entries = new Map<string, EntryData>();
  /** Every address of an entry that has more than SCANNED. */
  private readonly seen = new Map<EntryData, Set<string>>();

  /** One address record: `field` is the family, `address` canonical. */
  addRecord(name: string, field: 'a' | 'aaaa', address: string, ttl: number): void {
    const data = this.entries.get(name);
    if (!data) {
      this.entries.set(name, field === 'a' ? { a: [address], aaaa: [], ttl } : { a: [], aaaa: [address], ttl });
      return;
    }
    if (ttl < data.ttl) data.ttl = ttl;
    this.addAddress(data, field, address);
  }

  /** One file's entry; rules, weights and pick may come from one file only. */
  addEntry(name: string, data: EntryData): void {
    let into = this.entries.get(name);
    if (!into) {
      into = { a: [], aaaa: [], ttl: data.ttl };
      this.entries.set(name, into);
    }
    for (const address of data.a) this.addAddress(into, 'a', address);
    for (const address of data.aaaa) this.addAddress(into, 'aaaa', address);
    into.ttl = Math.min(into.ttl, data.ttl);
    if (data.rules || data.weights || data.pick !== undefined) {
      if (into.rules || into.weights || into.pick !== undefined) {
        throw new DivertError('BAD_ZONE', `${name}: rules or weights are given in two zone files (expected one ;divert line per name)`);
      }
      if (data.weights !== undefined) into.weights = data.weights;
      if (data.pick !== undefined) into.pick = data.pick;
      if (data.rules !== undefined) into.rules = data.rules;
    }
  }

  /** Appends `address` to the entry's list of its family unless the entry has it already. */
  private addAddress(data: EntryData, field: 'a' | 'aaaa', address: string): void {
    const seen = this.seen.get(data);
    if (seen) {
      const before = seen.size;
      if (seen.add(address).size === before) return; // one hash lookup, not has() and add()
    } else {
      // IPv4 and IPv6 texts never collide: a scan of the one family's list is enough
      if (data[field].includes(address)) return;
      if (data.a.length + data.aaaa.length >= SCANNED) this.seen.set(data, new Set([...data.a, ...data.aaaa, address]));
    }
    data[field].push(address);
  }
}

/** Reads one master file; `fileName` only labels error messages. */
export function parseZone(text: string, fileName: string, options: { origin?: string } = {}): Map<string, EntryData> {
  const fail: Fail = (line, message, cause) => {
    throw new DivertError('BAD_ZONE', `${fileName}:${line}: ${message}`, { cause });
  };
  // validate.ts prefixes its messages with the field it checked; here the file, line and record say that better.
  const rethrow = (line: number, err: unknown, context = ''): never => {
    if (!(err instanceof DivertError)) throw err;
    return fail(line, err.message.replace(/^(?:a|aaaa)\[\d+\]: |^ttl: /, '') + context, err);
  };
  const absoluteOrigin = (tok: Token): string => {
    if (!isAbsoluteName(tok.text)) fail(tok.line, `$ORIGIN "${tok.text}" is not an absolute name (expected a name ending in ".")`);
    try {
      return normalizeName(tok.text);
    } catch (err) {
      return rethrow(tok.line, err);
    }
  };

  let origin: string | undefined;
  if (options.origin !== undefined) {
    try {
      origin = normalizeName(options.origin);
    } catch (err) {
      throw new DivertError('BAD_ZONE', `${fileName}: origin option: ${(err as Error).message}`, { cause: err });
    }
  }
  let defaultTtl: Ttl | undefined;
  let previousTtl: Ttl | undefined;
  let previousOwner: { name: string; line: number } | undefined;
  // a file of one name repeats its owner on every line: checked once while it repeats
  let lastOwner = '';
  let lastName = '';
  const merged = new MergedEntries();
  // and may repeat an IPv6 address as often: made canonical once
  const canonicalIPv6s = new Map<string, string | null>();
  const canonicalOf = (field: 'a' | 'aaaa', text: string): string | null => {
    if (field === 'a') return canonicalAddress('a', text);
    let canonical = canonicalIPv6s.get(text);
    if (canonical === undefined) {
      canonical = canonicalAddress('aaaa', text);
      canonicalIPv6s.set(text, canonical);
    }
    return canonical;
  };

  const ownerName = (tok: Token): string => {
    if (tok.text === '@' || !isAbsoluteName(tok.text)) {
      if (origin === undefined) {
        const what = tok.text === '@' ? '"@"' : `"${tok.text}" is a relative name and`;
        fail(tok.line, `${what} needs an origin (expected a $ORIGIN line before it, or an absolute name ending in ".")`);
      }
      return tok.text === '@' ? origin : `${tok.text}.${origin}`;
    }
    return tok.text;
  };

  const parseTtl = (tok: Token): Ttl => {
    const text = tok.text.toLowerCase();
    let seconds = 0;
    if (/^\d+$/.test(text)) seconds = Number(text);
    else if (/^(?:\d+[smhdw])+$/.test(text)) {
      for (const [, count, unit] of text.matchAll(/(\d+)([smhdw])/g)) seconds += Number(count) * TTL_UNITS[unit];
    } else fail(tok.line, `"${tok.text}" is not a TTL (expected seconds, or counts with units as in 1h30m, 2d or 1w)`);
    if (seconds > MAX_WIRE_TTL) fail(tok.line, `TTL "${tok.text}" is more than ${MAX_WIRE_TTL} seconds, the largest a TTL can be`);
    return { seconds, line: tok.line, text: tok.text };
  };

  const directive = (tokens: Token[]): void => {
    const [first, arg, extra] = tokens;
    const name = first.text.toUpperCase();
    if (name === '$INCLUDE' || name === '$GENERATE') {
      fail(first.line, `${name} is not supported (write the records into this file, or into another *.zone file of the same folder)`);
    }
    if (name !== '$ORIGIN' && name !== '$TTL') fail(first.line, `"${first.text}" is not a directive (expected $ORIGIN or $TTL)`);
    if (!arg) fail(first.line, `${name} has no value (expected ${name === '$TTL' ? 'a TTL' : 'an absolute name'} after it)`);
    if (extra) fail(extra.line, `"${extra.text}" is unexpected after ${name} ${arg.text} (expected the end of the line)`);
    if (name === '$ORIGIN') origin = absoluteOrigin(arg);
    else defaultTtl = parseTtl(arg);
  };

  const record = (row: Row): void => {
    const { tokens } = row;
    let k = 0;
    if (row.blankOwner) {
      if (!previousOwner) fail(tokens[0].line, 'the line starts with a blank, but there is no previous record to take the owner name from (expected a name at the start of the line)');
    } else {
      previousOwner = { name: ownerName(tokens[0]), line: tokens[0].line };
      k = 1;
    }
    const owner = previousOwner!;
    let explicitTtl: Ttl | undefined;
    let hasClass = false;
    let typeToken: Token | undefined;
    for (; k < tokens.length && !typeToken; k++) {
      const tok = tokens[k];
      const upper = tok.text.toUpperCase();
      if (/^\d/.test(tok.text)) {
        if (explicitTtl) fail(tok.line, `"${tok.text}" is a second TTL (expected the class IN or a record type)`);
        explicitTtl = parseTtl(tok);
      } else if (!tok.quoted && CLASS.test(upper)) {
        if (upper !== 'IN') fail(tok.line, `class "${tok.text}" is not supported (expected IN: divert answers only Internet names)`);
        if (hasClass) fail(tok.line, `"${tok.text}" is a second class (expected a TTL or a record type)`);
        hasClass = true;
      } else {
        typeToken = tok;
      }
    }
    const last = tokens[tokens.length - 1];
    if (!typeToken) return fail(last.line, `the record of "${owner.name}" has no type (expected a record type such as A or AAAA)`);
    const ttl = explicitTtl ?? defaultTtl ?? previousTtl ?? { seconds: DEFAULT_TTL_SECONDS, line: typeToken.line, text: String(DEFAULT_TTL_SECONDS) };
    previousTtl = ttl;

    const type = typeToken.quoted ? '' : typeToken.text.toUpperCase();
    if (type !== 'A' && type !== 'AAAA') {
      if (/^TYPE(?:1|28)$/.test(type.replace(/^TYPE0+/, 'TYPE'))) {
        fail(typeToken.line, `"${typeToken.text}" is the generic form of an address record, which divert does not read (expected ${type.endsWith('1') ? 'A' : 'AAAA'} and the address in text form)`);
      }
      if (SKIPPED_TYPES.has(type) || /^TYPE\d+$/.test(type)) return;
      fail(typeToken.line, `"${typeToken.text}" is not a record type (expected a TTL, the class IN or a record type such as A or AAAA)`);
    }

    let name = lastName;
    if (owner.name !== lastOwner) {
      try {
        name = normalizeName(owner.name);
      } catch (err) {
        const where = owner.line === typeToken.line ? '' : ` on line ${typeToken.line}`;
        return rethrow(owner.line, err, ` (owner of the ${type} record${where})`);
      }
      lastOwner = owner.name;
      lastName = name;
    }
    const address = tokens[k];
    const extra = tokens[k + 1];
    if (!address) fail(typeToken.line, `the ${type} record of ${name} has no address (expected an ${type === 'A' ? 'IPv4' : 'IPv6'} address after "${typeToken.text}")`);
    if (extra) fail(extra.line, `"${extra.text}" is unexpected after the address of the ${type} record of ${name} (expected the end of the record)`);
    const field = type === 'A' ? 'a' : 'aaaa';
    const canonical = canonicalOf(field, address.text);
    if (canonical === null) fail(address.line, `${notAnAddress(field, address.text)} (${type} record of ${name})`);
    let seconds: number;
    try {
      seconds = checkTtl(ttl.seconds);
    } catch (err) {
      const where = ttl.line === typeToken.line ? '' : ` on line ${typeToken.line}`;
      return rethrow(ttl.line, err, ` (TTL "${ttl.text}" of the ${type} record of ${name}${where})`);
    }
    merged.addRecord(name, field, canonical, seconds);
  };

  const diverts = new Map<string, { data: Record<string, unknown>; line: number }>();
  const divertComment = ({ text: body, line }: { text: string; line: number }): void => {
    // the owner ends at the first blank that is not escaped ("a\ b" is one name)
    const space = /^(?:\\[^]|[^\s\\])*/.exec(body)![0].length;
    if (space === 0 || space === body.length) fail(line, `";divert" needs an owner name and a JSON object, as in ;divert www {"rules":[...]}`);
    let name: string;
    try {
      name = normalizeName(ownerName({ text: body.slice(0, space), line, quoted: false }));
    } catch (err) {
      return rethrow(line, err, ' (owner of the ;divert line)');
    }
    let data: unknown;
    try {
      data = JSON.parse(body.slice(space));
    } catch (err) {
      return fail(line, `the ;divert line of ${name} is not valid JSON (${(err as Error).message})`, err);
    }
    if (typeof data !== 'object' || data === null || Array.isArray(data)) fail(line, `the ;divert line of ${name} is not a JSON object`);
    const unknown = Object.keys(data).find((key) => !DIVERT_KEYS.has(key));
    if (unknown !== undefined) fail(line, `"${unknown}" in the ;divert line of ${name} is not known (expected weights, pick, rules or ttl)`);
    const earlier = diverts.get(name);
    if (earlier) fail(line, `${name} has a second ;divert line (the first is on line ${earlier.line})`);
    diverts.set(name, { data: data as Record<string, unknown>, line });
  };

  // The tokenizer's errors (quotes, parentheses) win over the records', wherever they are
  // in the file, as when the whole file was tokenized first: so after a record's error the
  // rest is only tokenized.
  let recordError: unknown;
  tokenize(text, fail, (row) => {
    if (recordError !== undefined) return;
    try {
      if (row.divert) divertComment(row.divert);
      else if (!row.tokens[0].quoted && row.tokens[0].text.startsWith('$')) directive(row.tokens);
      else record(row);
    } catch (err) {
      recordError = err;
    }
  });
  if (recordError !== undefined) throw recordError;
  const { entries } = merged;
  // after every record, so the weights can name the addresses of records below the comment
  for (const [name, { data, line }] of diverts) {
    const records = entries.get(name);
    if (records && data.ttl !== undefined && data.ttl !== records.ttl) {
      fail(line, `the ;divert line of ${name} says ttl ${String(data.ttl)} but its records have TTL ${records.ttl} (give ttl only for a name without records)`);
    }
    const base = records ?? { a: [], aaaa: [], ttl: defaultTtl?.seconds ?? DEFAULT_TTL_SECONDS };
    try {
      entries.set(name, checkEntryData({ ...base, ...data }));
    } catch (err) {
      rethrow(line, err, ` (;divert line of ${name})`);
    }
  }
  return entries;
}

function cannotRead(path: string, err: unknown): never {
  const reasons: Record<string, string> = {
    ENOENT: 'no such file or folder',
    EACCES: 'permission denied',
    EISDIR: 'it is a folder',
    ENOTDIR: 'a part of the path is not a folder',
  };
  const code = (err as NodeJS.ErrnoException).code ?? '';
  const reason = reasons[code] ?? (err instanceof Error ? err.message : String(err));
  throw new DivertError('BAD_ZONE', `${path}: cannot read zone file: ${reason}`, { cause: err });
}

/** The files `path` names: itself, or the `*.zone` files directly in it, by name. */
async function zoneFiles(path: string): Promise<string[]> {
  let isFolder: boolean;
  try {
    isFolder = (await stat(path)).isDirectory();
  } catch (err) {
    return cannotRead(path, err);
  }
  if (!isFolder) return [path];
  let found: Dirent[];
  try {
    found = await readdir(path, { withFileTypes: true });
  } catch (err) {
    return cannotRead(path, err);
  }
  const names = found
    .filter((e) => e.name.endsWith('.zone') && !e.isDirectory())
    .map((e) => e.name)
    .sort();
  if (names.length === 0) throw new DivertError('BAD_ZONE', `${path}: the folder holds no *.zone file`);
  return names.map((name) => join(path, name));
}

/**
 * Reads zone files and folders of them; a name in several files gets one merged entry.
 * With a write policy, each name of each file (as merged so far) must pass it: a refusal
 * is BAD_ZONE naming the file and the name.
 */
export async function readZones(paths: string[], policy?: Pick<WritePolicy, 'checkEntry'>): Promise<Map<string, EntryData>> {
  const merged = new MergedEntries();
  for (const path of paths) {
    for (const file of await zoneFiles(path)) {
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch (err) {
        return cannotRead(file, err);
      }
      for (const [name, data] of parseZone(text, file)) {
        merged.addEntry(name, data);
        try {
          policy?.checkEntry(name, merged.entries.get(name)!);
        } catch (err) {
          if (err instanceof DivertError) throw new DivertError('BAD_ZONE', `${file}: ${err.message}`, { cause: err });
          throw err;
        }
      }
    }
  }
  return merged.entries;
}

/** A master file that parseZone reads back to the same entries. */
export function formatZone(entries: Iterable<EntryData & { name: string }>): string {
  const sorted = [...entries].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  const lines: string[] = [];
  for (const entry of sorted) {
    const owner = isAbsoluteName(entry.name) ? entry.name : `${entry.name}.`;
    for (const address of entry.a) lines.push(`${owner} ${entry.ttl} IN A ${address}`);
    for (const address of entry.aaaa) lines.push(`${owner} ${entry.ttl} IN AAAA ${address}`);
    // A master file has no way to say "this name, no addresses": the ;divert line carries its TTL.
    const extra: Record<string, unknown> = {};
    if (entry.a.length === 0 && entry.aaaa.length === 0) extra.ttl = entry.ttl;
    if (entry.weights) extra.weights = entry.weights;
    if (entry.pick !== undefined) extra.pick = entry.pick;
    if (entry.rules) extra.rules = entry.rules;
    if (Object.keys(extra).length > 0) lines.push(`${DIVERT_COMMENT}${owner} ${JSON.stringify(extra)}`);
  }
  return lines.length === 0 ? '' : lines.join('\n') + '\n';
}
