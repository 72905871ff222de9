// The admin API's bearer token: given (--admin-token), or generated on first start into
// a file only its owner can read, which the CLI finds by itself. Compared in constant time.

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { DivertError } from '../errors.js';

/** Where `divert serve` writes a generated token and where the CLI looks for it. */
export function defaultTokenFile(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME || join(homedir(), '.config');
  return join(base, 'divert', 'admin-token');
}

export function readTokenFile(path: string): string | null {
  try {
    const token = readFileSync(path, 'utf8').trim();
    return token === '' ? null : token;
  } catch {
    return null;
  }
}

/** The token in `path`, or a new one written there with mode 0600. */
export function loadOrCreateToken(path: string): { token: string; created: boolean } {
  const existing = readTokenFile(path);
  if (existing) return { token: existing, created: false };
  const token = randomBytes(32).toString('base64url');
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    writeFileSync(path, token + '\n', { mode: 0o600, flag: 'wx' });
    chmodSync(path, 0o600);
  } catch (err) {
    throw new DivertError('BAD_CONFIG', `--admin-token-file "${path}": cannot write a new token there (${(err as NodeJS.ErrnoException).code}); give --admin-token or another --admin-token-file`);
  }
  return { token, created: true };
}

/** Compares digests, so neither the content nor the length of the token leaks through timing. */
export function tokenMatcher(token: string): (given: string) => boolean {
  const expected = createHash('sha256').update(token).digest();
  return (given) => timingSafeEqual(createHash('sha256').update(given).digest(), expected);
}
