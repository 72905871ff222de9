// TLS on either side of a TCP service (the design's mediating proxy): terminating clients'
// TLS with the service's certificate and key, and originating TLS to the target, verified
// against the system's CAs (or a given CA file) for the name the target is known by.

import { readFileSync } from 'node:fs';
import { createSecureContext, type ConnectionOptions } from 'node:tls';
import { DivertError } from '../errors.js';
import type { ProxyService } from './config.js';

/** TLS 1.2 and 1.3 only, with Node's default (modern) cipher list. */
export const MIN_TLS_VERSION = 'TLSv1.2';

function readPem(path: string, what: string, service: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new DivertError(
      'BAD_CONFIG',
      `service "${service}": tls.${what} "${path}": cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
    );
  }
}

/** The listen side's certificate and key, checked to load and to match; null without tls. */
export function listenContext(service: ProxyService): { cert: Buffer; key: Buffer } | null {
  if (!service.tls) return null;
  const cert = readPem(service.tls.cert, 'cert', service.name);
  const key = readPem(service.tls.key, 'key', service.name);
  try {
    createSecureContext({ cert, key, minVersion: MIN_TLS_VERSION });
    return { cert, key };
  } catch (err) {
    throw new DivertError(
      'BAD_CONFIG',
      `service "${service.name}": tls: the certificate and key do not load as a pair (${(err as Error).message})`,
    );
  }
}

/** How to speak TLS to the target, or null for plain TCP. SNI and the name checked: targetTls.servername, else a name target's name. */
export function targetTlsOptions(service: ProxyService): ConnectionOptions | null {
  const option = service.targetTls;
  if (option === false || option === undefined) return null;
  const settings = option === true ? {} : option;
  const servername = settings.servername ?? ('name' in service.target ? service.target.name : undefined);
  return {
    servername,
    ca: settings.ca ? readPem(settings.ca, 'ca', service.name) : undefined,
    rejectUnauthorized: true,
    minVersion: MIN_TLS_VERSION,
  };
}

/** Every service's TLS files loaded once, so that a bad one stops the start with one line before any worker runs. */
export function checkTlsFiles(services: readonly ProxyService[]): void {
  for (const service of services) {
    listenContext(service);
    targetTlsOptions(service);
  }
}
