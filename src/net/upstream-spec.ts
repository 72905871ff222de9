// An upstream as --upstream spells it: HOST[:PORT] (plain DNS, UDP and TCP, port 53) or
// tls://HOST[:PORT][#AUTH-NAME] (DNS over TLS, RFC 7858, port 853). HOST is an IP literal,
// as for every address divert is given: nothing is resolved before the resolver is up. A
// DoT upstream's certificate must carry AUTH-NAME among its DNS names when one is given,
// and HOST among its IP addresses when none is (RFC 8310's "authentication domain name").

import { isIP } from 'node:net';
import { formatHostPort, parseHostPort, type HostPort } from './host-port.js';

export const DNS_PORT = 53;
export const DOT_PORT = 853;

export interface UpstreamTls {
  /** The name the certificate must carry; absent: HOST, an IP address, must be in its IP SANs. */
  name?: string;
  /** PEM of the CAs its certificate must chain to (--upstream-ca); absent: the system's CAs. */
  ca?: string;
}

export interface UpstreamSpec extends HostPort {
  /** Present for a DoT upstream. */
  tls?: UpstreamTls;
}

const TLS_SCHEME = 'tls://';

/** A DNS name fit for a certificate check: dot-separated LDH labels, no trailing dot needed. */
function nameProblem(name: string): string | undefined {
  const bare = name.endsWith('.') ? name.slice(0, -1) : name;
  if (bare === '' || bare.length > 253) return `"${name}" is not a DNS name`;
  if (isIP(bare) !== 0) return `"${name}" is an address: the part after # is the name the certificate carries`;
  for (const label of bare.split('.')) {
    if (!/^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/i.test(label)) return `"${name}" is not a DNS name`;
  }
  return undefined;
}

/** Parses "9.9.9.9", "[::1]:5353", "tls://9.9.9.9", "tls://[2620:fe::fe]:853#dns.quad9.net"; a message when it cannot. */
export function parseUpstream(text: string): UpstreamSpec | string {
  if (!text.toLowerCase().startsWith(TLS_SCHEME)) {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text))
      return `"${text.split('://')[0]}://" is not a known scheme: use HOST[:PORT] or tls://HOST[:PORT][#NAME]`;
    if (text.includes('#')) return '#NAME is for DoT upstreams only: tls://HOST[:PORT]#NAME';
    return parseHostPort(text, DNS_PORT);
  }
  const rest = text.slice(TLS_SCHEME.length);
  const hash = rest.indexOf('#');
  const address = hash === -1 ? rest : rest.slice(0, hash);
  const hostPort = parseHostPort(address, DOT_PORT);
  if (typeof hostPort === 'string') return `tls:// upstream: ${hostPort}`;
  if (hash === -1) return { ...hostPort, tls: {} };
  const name = rest.slice(hash + 1);
  const problem = nameProblem(name);
  if (problem !== undefined) return `tls:// upstream: ${problem}`;
  return { ...hostPort, tls: { name: name.toLowerCase().replace(/\.$/, '') } };
}

/** "9.9.9.9:53", "tls://9.9.9.9:853", "tls://[2620:fe::fe]:853#dns.quad9.net": the label of logs, metrics and /healthz. */
export function formatUpstream(u: UpstreamSpec): string {
  if (!u.tls) return formatHostPort(u);
  return `${TLS_SCHEME}${formatHostPort(u)}${u.tls.name === undefined ? '' : `#${u.tls.name}`}`;
}

/** Same upstreams, in the same order, with the same certificate checks. */
export function sameUpstreams(a: readonly UpstreamSpec[], b: readonly UpstreamSpec[]): boolean {
  return a.length === b.length && a.every((u, i) => formatUpstream(u) === formatUpstream(b[i]) && u.tls?.ca === b[i].tls?.ca);
}
