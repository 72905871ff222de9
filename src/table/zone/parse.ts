// Zone files (RFC 1035 master files) read into the address table's form: A and AAAA
// records become entries, `;divert` lines add their rules and load sharing, every other
// record type is skipped.

import { DivertError } from '../../errors.js';
import type { EntryData } from '../../entry/entry.js';
import { canonicalAddress, notAnAddress } from '../../entry/addresses.js';
import { checkEntryData, checkTtl, DEFAULT_TTL_SECONDS } from '../../entry/check.js';
import { normalizeName } from '../../entry/names.js';
import { isAbsoluteName } from '../../wire/name.js';
import { tokenize, type Fail, type Row, type Token } from './lexer.js';
import { MergedEntries } from './merge.js';

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

/** The keys a `;divert` line may hold (see DIVERT_COMMENT in lexer.ts). */
const DIVERT_KEYS = new Set(['weights', 'pick', 'rules', 'ttl']);

interface Ttl {
  seconds: number;
  line: number;
  text: string;
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
      if (!previousOwner)
        fail(
          tokens[0].line,
          'the line starts with a blank, but there is no previous record to take the owner name from (expected a name at the start of the line)',
        );
    } else {
      previousOwner = { name: ownerName(tokens[0]), line: tokens[0].line };
      k = 1;
    }
    const owner = previousOwner;
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
    const ttl = explicitTtl ??
      defaultTtl ??
      previousTtl ?? { seconds: DEFAULT_TTL_SECONDS, line: typeToken.line, text: String(DEFAULT_TTL_SECONDS) };
    previousTtl = ttl;

    const type = typeToken.quoted ? '' : typeToken.text.toUpperCase();
    if (type !== 'A' && type !== 'AAAA') {
      if (/^TYPE(?:1|28)$/.test(type.replace(/^TYPE0+/, 'TYPE'))) {
        fail(
          typeToken.line,
          `"${typeToken.text}" is the generic form of an address record, which divert does not read (expected ${type.endsWith('1') ? 'A' : 'AAAA'} and the address in text form)`,
        );
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
    if (!address)
      fail(
        typeToken.line,
        `the ${type} record of ${name} has no address (expected an ${type === 'A' ? 'IPv4' : 'IPv6'} address after "${typeToken.text}")`,
      );
    if (extra)
      fail(extra.line, `"${extra.text}" is unexpected after the address of the ${type} record of ${name} (expected the end of the record)`);
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
    if (space === 0 || space === body.length)
      fail(line, `";divert" needs an owner name and a JSON object, as in ;divert www {"rules":[...]}`);
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
    if (unknown !== undefined)
      fail(line, `"${unknown}" in the ;divert line of ${name} is not known (expected weights, pick, rules or ttl)`);
    const earlier = diverts.get(name);
    if (earlier) fail(line, `${name} has a second ;divert line (the first is on line ${earlier.line})`);
    diverts.set(name, { data: data as Record<string, unknown>, line });
  };

  // The tokenizer's errors (quotes, parentheses) win over the records', wherever they are
  // in the file, as when the whole file was tokenized first: so after a record's error the
  // rest is only tokenized.
  let recordError: Error | undefined;
  tokenize(text, fail, (row) => {
    if (recordError !== undefined) return;
    try {
      if (row.divert) divertComment(row.divert);
      else if (!row.tokens[0].quoted && row.tokens[0].text.startsWith('$')) directive(row.tokens);
      else record(row);
    } catch (err) {
      recordError = err instanceof Error ? err : new Error(String(err));
    }
  });
  if (recordError !== undefined) throw recordError;
  const { entries } = merged;
  // after every record, so the weights can name the addresses of records below the comment
  for (const [name, { data, line }] of diverts) {
    const records = entries.get(name);
    if (records && data.ttl !== undefined && data.ttl !== records.ttl) {
      fail(
        line,
        `the ;divert line of ${name} says ttl ${JSON.stringify(data.ttl)} but its records have TTL ${records.ttl} (give ttl only for a name without records)`,
      );
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
