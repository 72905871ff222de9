// HOST:PORT and HOST[:PORT] as flags spell them; hosts are IP literals, never names
// that would need resolving before the resolver is up.

import { isIP } from 'node:net';

export interface HostPort {
  host: string;
  port: number;
}

export function formatHostPort({ host, port }: HostPort): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Parses "1.2.3.4:53", "[::1]:53" and, when defaultPort is given, "1.2.3.4" and "::1". */
export function parseHostPort(text: string, defaultPort?: number): HostPort | string {
  let host: string;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (bracketed) {
    [, host, portText] = bracketed;
  } else if (isIP(text) === 6) {
    host = text;
  } else {
    const colon = text.lastIndexOf(':');
    host = colon === -1 ? text : text.slice(0, colon);
    portText = colon === -1 ? undefined : text.slice(colon + 1);
  }
  if (isIP(host) === 0) return `"${host}" is not an IPv4 or IPv6 address`;
  if (portText === undefined) {
    if (defaultPort === undefined) return 'a port is required, as in 127.0.0.1:53 or [::1]:53';
    return { host, port: defaultPort };
  }
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65535) return `"${portText}" is not a port number (0-65535)`;
  return { host, port };
}

/** Listen addresses that take connections for any local address. */
const WILDCARDS = new Set(['0.0.0.0', '::']);

/** Whether a listener on `host` takes connections for any local address (its clients' destination must be asked per connection). */
export function isWildcard(host: string): boolean {
  return WILDCARDS.has(host);
}
