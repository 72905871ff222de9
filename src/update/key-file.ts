// The file of TSIG keys that may send DNS UPDATE (--update-key-file), in BIND's format as
// `tsig-keygen` writes it, with the names each key may change in BIND's `update-policy`
// form (grants.ts). An error names FILE:LINE and never shows a secret.

import { readFile } from 'node:fs/promises';
import { DivertError } from '../errors.js';
import { normalizeName } from '../entry/names.js';
import type { Grant } from './grants.js';
import { nameToWire } from './records.js';
import { ALGORITHM, type TsigKey } from './tsig.js';
import type { Family } from './update.js';

export interface KeyFile {
  keys: Map<string, TsigKey>;
  /** The update-policy rules, in the file's order. */
  grants: Grant[];
}

interface Token {
  text: string;
  line: number;
  quoted: boolean;
}

class KeyFileError extends Error {
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(message);
  }
}

/** Words, quoted strings and `{ } ;`, with BIND's three comment styles skipped. */
function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let line = 1;
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '\n') {
      line++;
      i++;
    } else if (/\s/.test(c)) {
      i++;
    } else if (c === '#' || text.startsWith('//', i)) {
      while (i < text.length && text[i] !== '\n') i++;
    } else if (text.startsWith('/*', i)) {
      const end = text.indexOf('*/', i + 2);
      if (end < 0) throw new KeyFileError(line, 'a "/*" comment is never closed');
      for (let j = i; j < end; j++) if (text[j] === '\n') line++;
      i = end + 2;
    } else if (c === '{' || c === '}' || c === ';') {
      tokens.push({ text: c, line, quoted: false });
      i++;
    } else if (c === '"') {
      const end = text.indexOf('"', i + 1);
      if (end < 0 || text.slice(i + 1, end).includes('\n')) throw new KeyFileError(line, 'a quoted string is not closed on its line');
      tokens.push({ text: text.slice(i + 1, end), line, quoted: true });
      i = end + 1;
    } else {
      let end = i;
      while (end < text.length && !/[\s{};"]/.test(text[end])) end++;
      tokens.push({ text: text.slice(i, end), line, quoted: false });
      i = end;
    }
  }
  return tokens;
}

/** A key name as the TSIG record carries it: a domain name, compared in lower case. */
function checkKeyName(token: Token): string {
  const name = token.text.toLowerCase().replace(/\.$/, '');
  const labels = name.split('.');
  if (name === '' || labels.some((l) => l.length === 0 || l.length > 63) || nameToWire(name).length > 255 || /[\s\\]/.test(name)) {
    throw new KeyFileError(token.line, `key name "${token.text}" is not a domain name (labels of 1 to 63 characters, 255 bytes in all)`);
  }
  return name;
}

/** Base64 as tsig-keygen writes it; the secret itself is never repeated in a message. */
function checkSecret(token: Token, keyName: string): Buffer {
  const text = token.text.replace(/\s+/g, '');
  if (text === '' || text.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(text)) {
    throw new KeyFileError(token.line, `key "${keyName}": the secret is not valid base64`);
  }
  return Buffer.from(text, 'base64');
}

class TokenReader {
  private at = 0;

  constructor(private readonly tokens: Token[]) {}

  get done(): boolean {
    return this.at >= this.tokens.length;
  }

  /** The next token; `what` says what was expected when there is none. */
  next(what: string): Token {
    const token = this.tokens[this.at];
    if (!token) {
      const last = this.tokens[this.tokens.length - 1];
      throw new KeyFileError(last?.line ?? 1, `the file ends where ${what} was expected`);
    }
    this.at++;
    return token;
  }

  expect(text: string, context: string): Token {
    const token = this.next(`"${text}" ${context}`);
    if (token.quoted || token.text !== text) throw new KeyFileError(token.line, `expected "${text}" ${context}, found "${token.text}"`);
    return token;
  }
}

/** `key NAME { algorithm hmac-sha256; secret "BASE64"; };`, after the word `key` (`start`). */
function readKey(reader: TokenReader, start: Token): { key: TsigKey; line: number } {
  const nameToken = reader.next('the key\'s name after "key"');
  const name = checkKeyName(nameToken);
  reader.expect('{', `after key "${name}"`);
  let algorithm: Token | undefined;
  let secret: Buffer | undefined;
  for (;;) {
    const clause = reader.next(`a clause of key "${name}" or "}"`);
    if (clause.text === '}' && !clause.quoted) break;
    const value = reader.next(`a value for "${clause.text}"`);
    if (clause.text === 'algorithm') {
      const given = value.text.toLowerCase().replace(/\.$/, '');
      if (given !== ALGORITHM) {
        throw new KeyFileError(
          value.line,
          `key "${name}": algorithm "${value.text}" is not supported; divert accepts ${ALGORITHM} only (tsig-keygen -a ${ALGORITHM} NAME)`,
        );
      }
      algorithm = value;
    } else if (clause.text === 'secret') {
      secret = checkSecret(value, name);
    } else {
      throw new KeyFileError(clause.line, `key "${name}": unknown clause "${clause.text}" (expected algorithm or secret)`);
    }
    reader.expect(';', `after ${clause.text} of key "${name}"`);
  }
  reader.expect(';', `after the closing "}" of key "${name}"`);
  if (!algorithm) throw new KeyFileError(nameToken.line, `key "${name}" has no algorithm (expected algorithm ${ALGORITHM};)`);
  if (!secret) throw new KeyFileError(nameToken.line, `key "${name}" has no secret (expected secret "BASE64";)`);
  return { key: { name, algorithm: ALGORITHM, secret }, line: start.line };
}

const GRANT_SYNTAX = '(grant|deny) KEY (name|subdomain) NAME [A] [AAAA] [ANY];';
const FAMILIES: Record<string, readonly Family[]> = { A: ['a'], AAAA: ['aaaa'], ANY: ['a', 'aaaa'] };

/** The name of a rule: `.` is the root (for `subdomain` only), any other a name the table could hold. */
function grantName(token: Token, match: Grant['match']): string {
  if (!token.quoted && ['{', '}', ';'].includes(token.text))
    throw new KeyFileError(token.line, `expected the name after "${match}", found "${token.text}"`);
  if (token.text === '.') {
    if (match === 'name') throw new KeyFileError(token.line, 'name ".": the root is never a table name (subdomain . grants every name)');
    return '';
  }
  let name: string;
  try {
    name = normalizeName(token.text);
  } catch (err) {
    if (err instanceof DivertError) throw new KeyFileError(token.line, err.message);
    throw err;
  }
  if (match === 'subdomain' && name.startsWith('*.')) {
    throw new KeyFileError(token.line, `subdomain "${token.text}": give the domain (subdomain ${name.slice(2)}. covers ${name} too)`);
  }
  return name;
}

/** One rule of update-policy, `grant KEY subdomain NAME [TYPE...];`, after its first word. */
function readRule(reader: TokenReader, verb: Token): Grant {
  const key = checkKeyName(reader.next(`the key's name after "${verb.text}"`));
  const matchToken = reader.next(`a rule type (name or subdomain) after "${verb.text} ${key}"`);
  const match = matchToken.text.toLowerCase();
  if (match !== 'name' && match !== 'subdomain') {
    throw new KeyFileError(
      matchToken.line,
      `rule type "${matchToken.text}" is not supported: divert takes name (exactly that name) and subdomain (the name and every name below it), as in ${GRANT_SYNTAX}`,
    );
  }
  const name = grantName(reader.next(`the name after "${match}"`), match);
  const families = new Set<Family>();
  for (;;) {
    const token = reader.next('";" after the rule');
    if (token.text === ';' && !token.quoted) break;
    if (!token.quoted && (token.text === '{' || token.text === '}'))
      throw new KeyFileError(token.line, `expected ";" after the rule, found "${token.text}"`);
    const type = FAMILIES[token.text.toUpperCase()];
    if (!type)
      throw new KeyFileError(
        token.line,
        `record type "${token.text}": divert holds only A and AAAA records (ANY: both), as in ${GRANT_SYNTAX}`,
      );
    for (const family of type) families.add(family);
  }
  return { allow: verb.text === 'grant', key, match, name, families: families.size > 0 ? [...families] : FAMILIES.ANY, line: verb.line };
}

/** `update-policy { grant KEY subdomain NAME; ... };`, after the word `update-policy`. */
function readPolicy(reader: TokenReader, start: Token): Grant[] {
  const open = reader.next('"{" after update-policy');
  if (open.text !== '{' || open.quoted) {
    throw new KeyFileError(
      open.line,
      `expected "{" after update-policy, found "${open.text}" (divert has no session key for update-policy local; write update-policy { ${GRANT_SYNTAX} };)`,
    );
  }
  const rules: Grant[] = [];
  for (;;) {
    const verb = reader.next('a rule of update-policy or "}"');
    if (verb.text === '}' && !verb.quoted) break;
    if (verb.quoted || (verb.text !== 'grant' && verb.text !== 'deny')) {
      throw new KeyFileError(verb.line, `expected a rule of update-policy (${GRANT_SYNTAX}) or "}", found "${verb.text}"`);
    }
    rules.push(readRule(reader, verb));
  }
  reader.expect(';', 'after the closing "}" of update-policy');
  if (rules.length === 0) throw new KeyFileError(start.line, `update-policy has no rule (expected ${GRANT_SYNTAX})`);
  return rules;
}

/** The keys and grants of a key file's text; `file` names it in errors (DivertError BAD_CONFIG). */
export function parseKeyFile(text: string, file: string): KeyFile {
  const keys = new Map<string, TsigKey>();
  const grants: Grant[] = [];
  try {
    const reader = new TokenReader(tokenize(text));
    while (!reader.done) {
      const start = reader.next('a statement');
      if (!start.quoted && start.text === 'update-policy') {
        grants.push(...readPolicy(reader, start));
        continue;
      }
      if (start.quoted || start.text !== 'key') {
        throw new KeyFileError(
          start.line,
          `expected a key statement (key "NAME" { algorithm hmac-sha256; secret "..."; };) or update-policy { ... };, found "${start.text}"`,
        );
      }
      const { key, line } = readKey(reader, start);
      if (keys.has(key.name)) throw new KeyFileError(line, `key "${key.name}" is defined twice`);
      keys.set(key.name, key);
    }
    // after the whole file: a rule may come before its key
    const unknown = grants.find((g) => !keys.has(g.key));
    if (unknown)
      throw new KeyFileError(
        unknown.line,
        `${unknown.allow ? 'grant' : 'deny'} for key "${unknown.key}": no key of that name in this file`,
      );
  } catch (err) {
    if (!(err instanceof KeyFileError)) throw err;
    throw new DivertError('BAD_CONFIG', `--update-key-file ${file}:${err.line}: ${err.message}`);
  }
  if (keys.size === 0)
    throw new DivertError(
      'BAD_CONFIG',
      `--update-key-file ${file}: no key in it (expected key "NAME" { algorithm ${ALGORITHM}; secret "..."; }; as tsig-keygen writes it)`,
    );
  return { keys, grants };
}

export async function readKeyFile(file: string): Promise<KeyFile> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new DivertError(
      'BAD_CONFIG',
      `--update-key-file ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    );
  }
  return parseKeyFile(text, file);
}
