// What a DNS over HTTPS request (RFC 8484) asks: the DNS message of a GET's `dns`
// parameter (base64url without padding) or of a POST's body (application/dns-message),
// or the HTTP status that refuses it. Pure functions of the request's parts, so every
// refusal is testable without a socket.

export const DOH_PATH = '/dns-query';
export const DNS_MESSAGE = 'application/dns-message';
/** A DNS message is at most 65535 bytes (its TCP length prefix's range). */
export const MAX_DNS_MESSAGE = 0xffff;

export const TOO_LARGE: Refusal = { status: 413, message: 'payload too large: a DNS message is at most 65535 bytes' };

export interface Refusal {
  /** 4xx for what the client sent; 429, 500 and 503 for what the server could not do. */
  status: 400 | 404 | 405 | 413 | 415 | 429 | 500 | 503;
  message: string;
}

export type DohAsk = { query: Buffer } | Refusal;

/** What a request's head alone decides: the GET's query, a refusal, or `body` (a POST whose body is to be read). */
export function readHead(method: string | undefined, url: string | undefined, contentType: string | undefined): DohAsk | 'body' {
  const target = url ?? '';
  const queryAt = target.indexOf('?');
  if (queryAt === -1 ? target !== DOH_PATH : queryAt !== DOH_PATH.length || !target.startsWith(DOH_PATH))
    return { status: 404, message: `not found: DNS over HTTPS is at ${DOH_PATH}` };
  if (method === 'GET') return readGet(queryAt === -1 ? '' : target.slice(queryAt + 1));
  if (method !== 'POST') return { status: 405, message: 'method not allowed: GET or POST' };
  const type = (contentType ?? '').split(';')[0].trim().toLowerCase();
  if (type !== DNS_MESSAGE) return { status: 415, message: `unsupported media type: a POST's body must be ${DNS_MESSAGE}` };
  return 'body';
}

const BASE64URL = /^[A-Za-z0-9_-]*$/;

/** The first dns= parameter's value; URLSearchParams only when something in the query is percent-encoded. */
function dnsParameter(search: string): string | null {
  if (search.includes('%')) return new URLSearchParams(search).get('dns');
  for (let at = 0; at < search.length;) {
    const end = search.indexOf('&', at);
    const next = end === -1 ? search.length : end;
    if (search.startsWith('dns=', at)) return search.slice(at + 4, next);
    at = next + 1;
  }
  return null;
}

function readGet(search: string): DohAsk {
  const dns = dnsParameter(search);
  if (dns === null || dns === '') return { status: 400, message: 'bad request: no dns parameter' };
  // base64url without padding (RFC 8484 4.1): a stray '=' or '+' is refused, as is a length no encoding gives
  if (!BASE64URL.test(dns) || dns.length % 4 === 1) return { status: 400, message: 'bad request: dns is not base64url' };
  if (Math.floor((dns.length * 3) / 4) > MAX_DNS_MESSAGE) return TOO_LARGE;
  return { query: Buffer.from(dns, 'base64url') };
}
