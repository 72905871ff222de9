// The admin routes in this process, over a table of the test's own, through fastify's
// inject() (no socket: for what a route does, not for what crosses a socket). Requests are
// written as for fetch and answered as a fetch Response, so an assertion reads the same
// whether the reply came through a socket or not.

import { pino } from 'pino';
import type { OutgoingHttpHeaders } from 'node:http';
import { buildAdmin, type AdminOptions } from '../../src/admin/admin-server.js';
import { EventStreams } from '../../src/admin/events.js';
import { RecentLoadSampler } from '../../src/admin/recent-load.js';
import type { AddressTable } from '../../src/table/address-table.js';
import { memoryTable, redisTable } from './tables.js';

export interface InjectedAdmin {
  table: AddressTable;
  /** A request as fetch takes it, with the token set (headers given win). */
  api(path: string, init?: RequestInit): Promise<Response>;
  /** A request as fetch takes it, without the token. */
  request(path: string, init?: RequestInit): Promise<Response>;
  close(): Promise<void>;
}

function responseOf(status: number, headers: OutgoingHttpHeaders, body: Buffer): Response {
  const out = new Headers();
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    for (const one of Array.isArray(value) ? value : [value]) out.append(name, String(one));
  }
  // a fetch Response may not carry a body with these statuses
  const empty = status === 204 || status === 304;
  return new Response(empty ? null : new Uint8Array(body), { status, headers: out });
}

/** The admin API over `table`; `options` replace the stand-ins (health, metrics, settle...). */
export async function injectAdmin(table: AddressTable, token: string, options: Partial<AdminOptions> = {}): Promise<InjectedAdmin> {
  const log = options.log ?? pino({ level: 'silent' });
  const app = buildAdmin({
    table,
    token,
    log,
    health: async () => ({ ok: true }),
    nameQueries: async () => new Map(),
    settle: async () => ({ unconfirmed: [] }),
    metrics: async () => ({ contentType: 'text/plain', body: '' }),
    events: new EventStreams(table, 4, log),
    recentLoad: new RecentLoadSampler(() => Promise.reject(new Error('no serving figures in this test'))),
    ...options,
  });
  await app.ready();
  const request = async (path: string, init: RequestInit = {}) => {
    const res = await app.inject({
      method: (init.method ?? 'GET') as 'GET',
      url: path,
      headers: init.headers as Record<string, string> | undefined,
      payload: init.body as string | undefined,
    });
    return responseOf(res.statusCode, res.headers, res.rawPayload);
  };
  return {
    table,
    request,
    api: (path, init = {}) =>
      request(path, { ...init, headers: { authorization: `Bearer ${token}`, ...(init.headers as Record<string, string>) } }),
    close: async () => {
      await app.close();
    },
  };
}

/** A table on the backend startDivert would open with these options (a Backend's): memory, or that Redis under `subPrefix` within the prefix (so the backend's cleanup drops it too). */
export async function tableOf(options: Record<string, unknown>, subPrefix = ''): Promise<AddressTable> {
  const url = options.redis as string | undefined;
  return url === undefined ? memoryTable() : redisTable({ url, prefix: `${options['redis-prefix'] as string}${subPrefix}` });
}
