// The admin API's bearer token: given (--admin-token), or generated on first start into
// a file only its owner can read, which the CLI finds by itself. A token file is trusted
// only as ssh trusts a private key: this user's own, read by no one else, not a link, in a
// folder no one else can write. Compared in constant time (token-match.ts, apart: the
// CLI reads token files too, and node:crypto's ES module would load Web Crypto with it).

import {
  closeSync,
  constants,
  fchmodSync,
  fstatSync,
  mkdirSync,
  openSync,
  readSync,
  statSync,
  unlinkSync,
  writeSync,
  type Stats,
} from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { tokenProblem } from '../config/token-rule.js';
import { DivertError } from '../errors.js';

/** More than any token needs: a larger file is not read into memory. */
const MAX_TOKEN_FILE_BYTES = 4096;
/** The sticky bit: in such a folder (/tmp) only a file's owner may rename or delete it. */
const STICKY = 0o1000;

/** Where `divert serve` writes a generated token and where the CLI looks for it. */
export function defaultTokenFile(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME || join(homedir(), '.config');
  return join(base, 'divert', 'admin-token');
}

function refused(path: string, problem: string): DivertError {
  return new DivertError('BAD_CONFIG', `admin token file "${path}" ${problem}`);
}

const octal = (mode: number) => (mode & 0o7777).toString(8).padStart(4, '0');

/** Unset where there are no POSIX users (Windows): there the checks of owner and mode are left out. */
const ownUid = (): number | undefined => process.getuid?.();

/** Like ssh with a private key: this user's, and no one else's to read or change. */
function checkFile(path: string, stats: Stats, uid: number): void {
  if (stats.uid !== uid)
    throw refused(path, `is owned by uid ${stats.uid}, not by this user (uid ${uid}); chown ${uid} ${path}, or give a file of your own`);
  if (stats.mode & 0o077) throw refused(path, `has mode ${octal(stats.mode)}: group or others have access to it; chmod 600 ${path}`);
}

/** Someone else who may write the folder may swap the file for one of theirs. */
function checkFolder(path: string, uid: number): void {
  const folder = dirname(path);
  let stats: Stats;
  try {
    stats = statSync(folder);
  } catch (err) {
    throw refused(path, `is in the folder "${folder}", which cannot be examined (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  if (stats.uid !== uid && stats.uid !== 0) {
    throw refused(
      path,
      `is in the folder "${folder}" owned by uid ${stats.uid}, neither this user (uid ${uid}) nor root; chown ${uid} ${folder}, or use a folder of your own`,
    );
  }
  if (stats.mode & 0o022 && !(stats.mode & STICKY)) {
    throw refused(path, `is in the folder "${folder}" of mode ${octal(stats.mode)}, which group or others may write; chmod go-w ${folder}`);
  }
}

/** The token held in a file already open and checked; never part of a message. */
function readToken(path: string, fd: number): string {
  const buffer = Buffer.alloc(MAX_TOKEN_FILE_BYTES + 1);
  let length = 0;
  while (length < buffer.length) {
    const read = readSync(fd, buffer, length, buffer.length - length, null);
    if (read === 0) break;
    length += read;
  }
  if (length > MAX_TOKEN_FILE_BYTES)
    throw refused(path, `holds more than ${MAX_TOKEN_FILE_BYTES} bytes, too many for a token; put only the token in it`);
  const token = buffer.subarray(0, length).toString('utf8').trim();
  const problem = tokenProblem(token);
  if (problem !== undefined) {
    const fix =
      'write a token of 16 or more printable characters there (e.g. openssl rand -hex 32), or delete the file for divert serve to generate one';
    throw refused(path, `holds a token of ${token.length} character${token.length === 1 ? '' : 's'}: ${problem}; ${fix}`);
  }
  return token;
}

/**
 * The token in the file at `path`, or null if there is no such file. Opened without
 * following a link, and the open file itself is checked, so that nothing can be swapped
 * in between the check and the read. A file that fails a check is a BAD_CONFIG error
 * whose message names the file and the fix.
 */
export function readTokenFile(path: string): string | null {
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO planted there must not hang the process (it is refused below)
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    if (code === 'ELOOP') throw refused(path, 'is a symbolic link, which could point anywhere; replace the link with the file itself');
    throw refused(path, `cannot be opened (${code ?? String(err)}); check the path and that this user may read it`);
  }
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile()) throw refused(path, 'is not a regular file; put the token in a plain file there');
    const uid = ownUid();
    if (uid !== undefined) {
      checkFile(path, stats, uid);
      checkFolder(path, uid);
    }
    return readToken(path, fd);
  } finally {
    closeSync(fd);
  }
}

function cannotWrite(path: string, err: unknown): DivertError {
  const code = (err as NodeJS.ErrnoException).code ?? String(err);
  return new DivertError(
    'BAD_CONFIG',
    `--admin-token-file "${path}": cannot write a new token there (${code}); give --admin-token or another --admin-token-file`,
  );
}

/**
 * The token in `path`, or a new one written there: its folder made 0700 if missing,
 * the file created 0600 by this call alone (O_EXCL), never through a link.
 */
export function loadOrCreateToken(path: string): { token: string; created: boolean } {
  const existing = readTokenFile(path);
  if (existing !== null) return { token: existing, created: false };
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  } catch (err) {
    throw cannotWrite(path, err);
  }
  const uid = ownUid();
  if (uid !== undefined) checkFolder(path, uid);
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  } catch (err) {
    // another process (a second divert serve starting) wrote one meanwhile: that one, if it passes
    const raced = (err as NodeJS.ErrnoException).code === 'EEXIST' ? readTokenFile(path) : null;
    if (raced !== null) return { token: raced, created: false };
    throw cannotWrite(path, err);
  }
  const token = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64url');
  try {
    fchmodSync(fd, 0o600); // a umask may have taken bits away, never added any
    const data = Buffer.from(token + '\n');
    for (let written = 0; written < data.length;) written += writeSync(fd, data, written);
  } catch (err) {
    // a half-written file would be refused at the next start
    closeSync(fd);
    try {
      unlinkSync(path);
    } catch {
      // the error that matters is the one above
    }
    throw cannotWrite(path, err);
  }
  closeSync(fd);
  return { token, created: true };
}
