// Network fuzzer, part: the admin port (HTTP, served by the primary next to the table).
// Conversations over raw TCP: valid API calls with random bodies (names only under
// adm.fuzz.test and addresses only in 198.18.0.0/15, so the control answers never
// change), requests without the token or with a wrong one (from many loopback
// addresses), garbage, headers that never end or are too large, bad chunked bodies,
// pipelined and mutated requests, event streams left unread. Every response must be
// below 500 (but 503 TOO_MANY_STREAMS) and every error in divert's format; a control
// client with the token must read a name of the zone throughout.

import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Rng } from './netfuzz-rng.js';

export const ADMIN_ZONE = 'adm.fuzz.test';

export interface AdminFuzzReport {
  conversations: number;
  byKind: Record<string, number>;
  /** Responses by status. */
  statuses: Record<string, number>;
  /** Responses that break the rules: a 5xx, or an error not in divert's format. */
  bad: string[];
  controlOk: number;
  controlFailed: string[];
}

const KINDS = [
  'api',
  'api',
  'api',
  'no-token',
  'wrong-token',
  'garbage',
  'slow-headers',
  'huge-headers',
  'bad-chunked',
  'pipelined',
  'mutated',
  'events',
  'abrupt',
] as const;

function address(rng: Rng): string {
  return rng.chance(0.8)
    ? `198.18.${rng.int(4)}.${1 + rng.int(8)}`
    : rng.pick(['2001:db8::1', '198.19.0.1', 'not-an-address', '', '300.1.1.1']);
}

function name(rng: Rng): string {
  const label = rng.pick(['a', 'b', 'www', '*', 'x-y', 'c\\032d', 'UP', '%41', '..', 'é', 'long'.repeat(20)]);
  return rng.chance(0.9)
    ? `${label}.${ADMIN_ZONE}`
    : rng.pick(['', ADMIN_ZONE, `${'a.'.repeat(130)}${ADMIN_ZONE}`, '%zz', 'x'.repeat(2000)]);
}

/** Random JSON of the shape an entry has, often wrong. */
function json(rng: Rng, depth = 0): unknown {
  switch (rng.int(depth > 3 ? 5 : 8)) {
    case 0:
      return rng.int(100_000) - 10;
    case 1:
      return rng.pick(['', 'x', '22:00', 'mon', 'Europe/London', '10.0.0.0/8', address(rng)]);
    case 2:
      return rng.chance(0.5);
    case 3:
      return null;
    case 4:
      return address(rng);
    case 5:
      return Array.from({ length: rng.int(4) }, () => json(rng, depth + 1));
    default: {
      const keys = ['a', 'aaaa', 'ttl', 'weights', 'pick', 'rules', 'networks', 'days', 'from', 'to', 'tz', 'x'];
      return Object.fromEntries(Array.from({ length: rng.int(5) }, () => [rng.pick(keys), json(rng, depth + 1)]));
    }
  }
}

function entryBody(rng: Rng): string {
  if (rng.chance(0.4)) return JSON.stringify({ a: Array.from({ length: rng.int(4) }, () => address(rng)), ttl: rng.int(100) });
  if (rng.chance(0.2)) return '['.repeat(1 + rng.int(5000)) + ']'.repeat(rng.int(5000));
  return JSON.stringify(json(rng));
}

function zoneText(rng: Rng): string {
  const lines = Array.from({ length: rng.int(30) }, () => {
    const owner = rng.pick(['a', 'b', 'c', '@', 'x\\032y', '*.w']);
    return rng.chance(0.9)
      ? `${owner} ${rng.int(100)} IN ${rng.pick(['A', 'AAAA', 'MX'])} ${address(rng)}`
      : rng.pick(['$TTL 1h', '(', ';divert a {"pick":1}', 'junk here']);
  });
  return lines.join('\n') + '\n';
}

/** One API request as text: method, path, and body (with its content type). */
function apiRequest(rng: Rng): { method: string; path: string; type?: string; body?: string } {
  const n = encodeURIComponent(name(rng));
  switch (rng.int(11)) {
    case 0:
      return {
        method: 'GET',
        path: `/v1/names?prefix=${encodeURIComponent(rng.pick(['', 'a', ADMIN_ZONE, '%']))}&limit=${rng.pick(['1', '1000', '0', 'x', '-1'])}&cursor=${rng.pick(['', 'abc', '%ff'])}`,
      };
    case 1:
      return { method: 'GET', path: `/v1/names/${n}` };
    case 2:
      return { method: 'GET', path: `/v1/names/${n}/history` };
    case 3:
    case 4:
      return { method: 'PUT', path: `/v1/names/${n}`, type: 'application/json', body: entryBody(rng) };
    case 5:
      return { method: 'DELETE', path: `/v1/names/${n}` };
    case 6:
      return {
        method: 'POST',
        path: '/v1/diversions',
        type: 'application/json',
        body: JSON.stringify({ from: address(rng), to: address(rng), ...(rng.chance(0.1) ? { x: 1 } : {}) }),
      };
    case 7:
      return {
        method: 'POST',
        path: `/v1/import?origin=${ADMIN_ZONE}&file=fuzz.zone`,
        type: rng.pick(['text/dns', 'text/plain', 'application/json']),
        body: zoneText(rng),
      };
    case 8:
      return { method: 'GET', path: rng.pick(['/healthz', '/metrics', '/v1/stats/names']) };
    case 9:
      return { method: rng.pick(['PATCH', 'OPTIONS', 'TRACE', 'FOO']), path: rng.pick(['/', '/v1/names', `/v1/names/${n}`]) };
    default:
      return { method: 'GET', path: rng.pick(['/nope', '/v1/', '/v1/names/%', '//', '/v1/names/a/b/c', `/${'x'.repeat(3000)}`]) };
  }
}

function requestText(rng: Rng, token: string | null, req = apiRequest(rng), close = true): string {
  const body = req.body ?? '';
  const headers = [`${req.method} ${req.path} HTTP/1.1`, 'Host: divert'];
  if (token !== null) headers.push(`Authorization: Bearer ${token}`);
  if (req.type) headers.push(`Content-Type: ${req.type}`);
  if (req.body !== undefined) headers.push(`Content-Length: ${Buffer.byteLength(body)}`);
  if (rng.chance(0.1)) headers.push(`X-Divert-Client: ${'fuzz'.repeat(rng.int(60))}`);
  if (close) headers.push('Connection: close');
  return headers.join('\r\n') + '\r\n\r\n' + body;
}

/** Status lines and JSON error bodies of the responses in `text` (pipelined ones too). */
function checkResponses(text: string, report: AdminFuzzReport, kind: string): void {
  let at = 0;
  while ((at = text.indexOf('HTTP/1.1 ', at)) >= 0) {
    const status = Number(text.slice(at + 9, at + 12));
    const headEnd = text.indexOf('\r\n\r\n', at);
    report.statuses[status] = (report.statuses[status] ?? 0) + 1;
    if (headEnd < 0) break;
    const head = text.slice(at, headEnd).toLowerCase();
    const length = /content-length: (\d+)/.exec(head);
    const body = length ? text.slice(headEnd + 4, headEnd + 4 + Number(length[1])) : '';
    // GET /healthz answers 503 with its report while not ready (an upstream the fuzz made
    // time out is backed off): that is its contract, not an error
    const unready = status === 503 && body.startsWith('{"ok":false,');
    if (status >= 500 && !unready && !(status === 503 && body.includes('"TOO_MANY_STREAMS"')))
      report.bad.push(`${kind}: HTTP ${status} ${body.slice(0, 200)}`);
    if (status >= 400 && length && !unready && !/^\{"error":\{"code":"[A-Z_]+","message":"/.test(body))
      report.bad.push(`${kind}: HTTP ${status} not in divert's format: ${body.slice(0, 200)}`);
    at = headEnd + 4 + (length ? Number(length[1]) : 0);
  }
}

async function conversation(
  rng: Rng,
  port: number,
  token: string,
  report: AdminFuzzReport,
  mutate: (rng: Rng, b: Buffer) => Buffer,
  end: number,
): Promise<void> {
  const kind = rng.pick(KINDS);
  report.conversations++;
  report.byKind[kind] = (report.byKind[kind] ?? 0) + 1;
  const localAddress =
    kind === 'no-token' || kind === 'wrong-token' || kind === 'garbage' ? `127.0.${1 + rng.int(200)}.${1 + rng.int(250)}` : '127.0.0.1';
  const socket = connect({ port, host: '127.0.0.1', localAddress });
  let received = '';
  socket.on('data', (c: Buffer) => (received += c.toString('latin1')));
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const write = (t: string | Buffer) => {
    if (!socket.destroyed) socket.write(t);
  };
  // how long the server may take to answer and close after our last byte
  let waitMs = 5000;
  switch (kind) {
    case 'api':
      write(requestText(rng, token));
      break;
    case 'no-token':
      write(requestText(rng, null));
      break;
    case 'wrong-token':
      write(requestText(rng, `wrong-${rng.next()}-0123456789`));
      break;
    case 'garbage':
      write(Buffer.from(Array.from({ length: 1 + rng.int(2000) }, () => rng.int(256))));
      break;
    case 'slow-headers':
      write(`GET /v1/names HTTP/1.1\r\nHost: divert\r\nAuthorization: Bearer ${token}\r\n`);
      waitMs = 15_000; // the headers timeout (10 s), checked every second
      break;
    case 'huge-headers':
      write(`GET /v1/names HTTP/1.1\r\nHost: divert\r\nX-Big: ${'y'.repeat(20_000 + rng.int(50_000))}\r\nConnection: close\r\n\r\n`);
      break;
    case 'bad-chunked':
      write(
        `PUT /v1/names/${encodeURIComponent(name(rng))} HTTP/1.1\r\nHost: divert\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${rng.pick(['zz', '5', '-1', '3'])}\r\n{"a"\r\n0\r\n\r\n`,
      );
      break;
    case 'pipelined': {
      const count = 2 + rng.int(5);
      write(Array.from({ length: count }, (_, i) => requestText(rng, token, apiRequest(rng), i === count - 1)).join(''));
      break;
    }
    case 'mutated':
      write(mutate(rng, Buffer.from(requestText(rng, rng.chance(0.5) ? token : null))));
      break;
    case 'events':
      write(`GET /v1/events HTTP/1.1\r\nHost: divert\r\nAuthorization: Bearer ${token}\r\n\r\n`);
      socket.pause(); // and never read: the server must not hold its changes for it without bound
      await sleep(rng.int(3000));
      socket.destroy();
      await closed;
      return;
    case 'abrupt':
      write(requestText(rng, token).slice(0, 10 + rng.int(60)));
      socket.destroy();
      await closed;
      return;
  }
  if (rng.chance(0.5) && kind !== 'slow-headers' && kind !== 'bad-chunked') socket.end();
  // once the run is over, a conversation is not waited for beyond a few seconds (nor judged)
  const wait = Math.min(waitMs, Math.max(0, end + 3000 - Date.now()));
  const inTime = await Promise.race([closed.then(() => true), sleep(wait).then(() => false)]);
  if (!inTime) {
    // a request the server can answer must be answered and the connection closed (we asked for close)
    if (wait === waitMs && kind !== 'mutated' && kind !== 'garbage')
      report.bad.push(`${kind}: the server did not close within ${waitMs} ms (received ${received.slice(0, 80)})`);
    socket.destroy();
  }
  checkResponses(received, report, kind);
}

/** The token holder reads a name of the fuzz zone (which the fuzzer never changes): 200 with its entry. */
async function control(port: number, token: string): Promise<string | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/v1/names/www.fuzz.test`, {
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(3000),
    });
    const body = await res.text();
    return res.status === 200 && body.includes('"192.0.2.10"') ? null : `GET /v1/names/www.fuzz.test: ${res.status} ${body.slice(0, 100)}`;
  } catch (err) {
    return `GET /v1/names/www.fuzz.test: ${(err as Error).message}`;
  }
}

export async function fuzzAdmin(options: {
  port: number;
  token: string;
  rng: Rng;
  concurrency: number;
  running: () => boolean;
  mutate: (rng: Rng, b: Buffer) => Buffer;
  start: number;
  end: number;
}): Promise<AdminFuzzReport> {
  const report: AdminFuzzReport = { conversations: 0, byKind: {}, statuses: {}, bad: [], controlOk: 0, controlFailed: [] };
  const workers = Array.from({ length: options.concurrency }, async () => {
    while (options.running()) await conversation(options.rng, options.port, options.token, report, options.mutate, options.end);
  });
  const controls = (async () => {
    while (options.running()) {
      const failure = await control(options.port, options.token);
      if (failure) report.controlFailed.push(`${((Date.now() - options.start) / 1000).toFixed(1)} s: ${failure}`);
      else report.controlOk++;
      await sleep(1000);
    }
  })();
  await Promise.all([controls, ...workers]);
  return report;
}
