// The file of TSIG keys that may send DNS UPDATE (--update-key-file), in BIND's format as
// `tsig-keygen` writes it. An error names FILE:LINE and never shows a secret.

import { readFile } from 'node:fs/promises';
import { DivertError } from '../errors.js';
import { nameToWire } from './records.js';
import { ALGORITHM, type TsigKey } from './tsig.js';

interface Token {
  text: string;
  line: number;
  quoted: boolean;
}

class KeyFileError extends Error {
  constructor(readonly line: number, message: string) {
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

/** `key NAME { algorithm hmac-sha256; secret "BASE64"; };` */
function readKey(reader: TokenReader): { key: TsigKey; line: number } {
  const start = reader.next('a statement');
  if (start.quoted || start.text !== 'key') {
    throw new KeyFileError(start.line, `expected a key statement (key "NAME" { algorithm hmac-sha256; secret "..."; };), found "${start.text}"`);
  }
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
        throw new KeyFileError(value.line, `key "${name}": algorithm "${value.text}" is not supported; divert accepts ${ALGORITHM} only (tsig-keygen -a ${ALGORITHM} NAME)`);
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

/** The keys of a key file's text; `file` names it in errors (DivertError BAD_CONFIG). */
export function parseKeyFile(text: string, file: string): Map<string, TsigKey> {
  const keys = new Map<string, TsigKey>();
  try {
    const reader = new TokenReader(tokenize(text));
    while (!reader.done) {
      const { key, line } = readKey(reader);
      if (keys.has(key.name)) throw new KeyFileError(line, `key "${key.name}" is defined twice`);
      keys.set(key.name, key);
    }
  } catch (err) {
    if (!(err instanceof KeyFileError)) throw err;
    throw new DivertError('BAD_CONFIG', `--update-key-file ${file}:${err.line}: ${err.message}`);
  }
  if (keys.size === 0) throw new DivertError('BAD_CONFIG', `--update-key-file ${file}: no key in it (expected key "NAME" { algorithm ${ALGORITHM}; secret "..."; }; as tsig-keygen writes it)`);
  return keys;
}

export async function readKeyFile(file: string): Promise<Map<string, TsigKey>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new DivertError('BAD_CONFIG', `--update-key-file ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  return parseKeyFile(text, file);
}
