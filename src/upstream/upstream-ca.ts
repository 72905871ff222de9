// --upstream-ca: the CA certificates a DoT upstream's certificate must chain to, read
// from a PEM file at start, by `divert validate` and at each reload, and handed to every
// tls:// upstream with its spec. A file that cannot be read, holds no certificate or one
// that does not parse stops start-up (and is refused by a reload) with one line.

import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { DivertError } from '../errors.js';
import type { UpstreamSpec } from '../net/upstream-spec.js';

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** The PEM text of `path`, once every certificate in it has parsed. */
export async function readUpstreamCa(path: string): Promise<string> {
  const fail = (why: string) => new DivertError('BAD_CONFIG', `--upstream-ca "${path}": ${why}`);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw fail(`cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  const blocks = text.match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) throw fail('holds no PEM certificate (-----BEGIN CERTIFICATE-----)');
  blocks.forEach((block, i) => {
    try {
      new X509Certificate(block);
    } catch (err) {
      throw fail(`certificate ${i + 1} does not parse (${(err as Error).message})`);
    }
  });
  return blocks.join('\n') + '\n';
}

/** The upstreams with `ca` (the PEM of --upstream-ca, or none: the system's CAs) set on the tls:// ones. */
export function withUpstreamCa(upstreams: UpstreamSpec[], ca: string | undefined): UpstreamSpec[] {
  return upstreams.map((u) => (u.tls ? { ...u, tls: { ...u.tls, ...(ca === undefined ? {} : { ca }) } } : u));
}
