// The admin port: the HTTP API through which a monitor or an operator rewrites the
// address table (PRODUCT.md, "Admin API"). Every request needs the bearer token. A write
// returns only once the table has applied it — and, through the table's change event,
// once this instance's query path answers with it.

import { createServer } from 'node:http';
import Fastify, { LogController, type FastifyReply } from 'fastify';
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import { DivertError } from '../errors.js';
import { throttledLog } from '../log.js';
import type { AddressTable } from '../table/address-table.js';
import { normalizeName } from '../entry/names.js';
import { parseZone } from '../table/zone/parse.js';
import type { Settled } from '../serving/handle.js';
import { diversionFromBody, entryFromBody, ifMatch, limitOf } from './bodies.js';
import type { EventStreams } from './events.js';
import { clientErrorHandler, errorHandler, frameworkErrorHandler, sendError } from './http-errors.js';
import { tokenMatcher } from './token-match.js';
import { isPublicRoute, registerDashboard } from './dashboard-assets.js';
import type { RecentLoadSampler } from './recent-load.js';
import { monitorStatusReader, type RelayedStatus } from './status-relay.js';
import { proxyStatusReader } from './proxy-status.js';

export interface Health {
  ok: boolean;
  [detail: string]: unknown;
}

export interface AdminOptions {
  table: AddressTable;
  token: string;
  log: Logger;
  health: () => Promise<Health>;
  /** Intercepted queries per table entry since start, summed over the workers (OTHER_NAMES: names over the limit). */
  nameQueries: () => Promise<Map<string, number>>;
  /** Resolves once the query path answers with every change made so far. */
  settle: () => Promise<Settled>;
  metrics: () => Promise<{ contentType: string; body: string }>;
  /** GET /v1/events: the streams, their limits and figures. */
  events: EventStreams;
  /** GET /v1/stats/recent: queries per second over the last minutes, upstreams and workers (the dashboard's load chart). */
  recentLoad: RecentLoadSampler;
  /** GET /v1/dashboard/monitor: the status of the monitor given by --dashboard-monitor (none: url null). */
  monitorStatus?: () => Promise<RelayedStatus>;
  /** GET /v1/dashboard/proxy: the status, targets and newest connections of the proxy given by --dashboard-proxy (none: url null). */
  proxyStatus?: () => Promise<RelayedStatus>;
}

const JSON_BODY_LIMIT = 64 * 1024;
/** Connections open at once; more are closed at accept (event streams are capped lower, by --events-max-streams). */
const MAX_CONNECTIONS = 1024;
/** Time a request's headers, and the whole request, may take to arrive. */
const HEADERS_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 60_000;
/**
 * The longest name still fits in a path segment written the longest way: its at most 250
 * octets each as \DDD, percent-encoded (%5CDDD, 6 characters), and its 4 dots. (The
 * router measures the segment decoded, so this leaves room to spare.)
 */
const MAX_NAME_SEGMENT = 250 * 6 + 4;
const ZONE_BODY_LIMIT = 16 * 1024 * 1024;

/** Who made a change, for the history: the X-Divert-Client header, else "admin". */
function clientOf(header: string | string[] | undefined): string {
  const value = (Array.isArray(header) ? header[0] : header)?.trim();
  return value ? value.slice(0, 100) : 'admin';
}

/** Wrong tokens one client address may send within AUTH_WINDOW_MS... */
const AUTH_FAILURES_ALLOWED = 10;
const AUTH_WINDOW_MS = 60_000;
/** ...before every request from it without the right token is refused (429) for this long. */
const AUTH_LOCKOUT_MS = 60_000;

/** Failed authentications per client address, in a fixed window; bounded in memory. */
class AuthFailures {
  private readonly byAddress = new LRUCache<string, { count: number; since: number; lockedUntil: number }>({ max: 10_000 });

  /** ms left of the address's lockout (0: not locked out). */
  lockedFor(address: string, now = Date.now()): number {
    const record = this.byAddress.get(address);
    return record && record.lockedUntil > now ? record.lockedUntil - now : 0;
  }

  /** Counts a failure; true when it starts a lockout. */
  fail(address: string, now = Date.now()): boolean {
    let record = this.byAddress.get(address);
    if (!record || now - record.since > AUTH_WINDOW_MS) {
      record = { count: 0, since: now, lockedUntil: 0 };
      this.byAddress.set(address, record);
    }
    record.count++;
    if (record.count < AUTH_FAILURES_ALLOWED) return false;
    record.lockedUntil = now + AUTH_LOCKOUT_MS;
    record.count = 0;
    record.since = now;
    return true;
  }
}

function nameParam(params: unknown): string {
  return normalizeName((params as { name: string }).name);
}

export function buildAdmin(options: AdminOptions) {
  const { table, log } = options;
  const app = Fastify({
    loggerInstance: log,
    bodyLimit: JSON_BODY_LIMIT,
    // a monitor polls and writes often: one line per request would drown the log
    logController: new LogController({ disableRequestLogging: true }),
    routerOptions: { maxParamLength: MAX_NAME_SEGMENT },
    frameworkErrors: frameworkErrorHandler(MAX_NAME_SEGMENT),
    clientErrorHandler,
    // its 503 while closing is in fastify's format; the hook below answers in divert's
    return503OnClosing: false,
    // A client may not hold a request open: its headers must arrive within 10 s and the
    // whole of it (a 16 MiB import included) within a minute, checked every second (node
    // checks every 30 s by default); an idle kept-alive connection is closed after 10 s.
    serverFactory: (handler) =>
      createServer({ headersTimeout: HEADERS_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS, connectionsCheckingInterval: 1000 }, handler),
    requestTimeout: REQUEST_TIMEOUT_MS,
    keepAliveTimeout: 10_000,
  });
  // each connection is a descriptor of the primary, which also holds the table: bounded
  app.server.maxConnections = MAX_CONNECTIONS;
  const tokenMatches = tokenMatcher(options.token);

  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler((request, reply) => sendError(reply, 404, 'NOT_FOUND', `no route ${request.method} ${request.url}`));
  app.addContentTypeParser(['text/dns', 'text/plain'], { parseAs: 'string', bodyLimit: ZONE_BODY_LIMIT }, (_req, body, done) =>
    done(null, body),
  );

  // a request on a kept-alive connection while the port closes: refused before the token
  // is checked and before any handler (the query path and the table are closing too)
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onRequest', async (_request, reply) => {
    if (closing)
      return sendError(
        reply.header('connection', 'close'),
        503,
        'SHUTTING_DOWN',
        'divert is shutting down; ask another replica, or again once it is back',
      );
  });

  // every reply: a browser takes a JSON error or a zone file for what it says it is, never for a page
  app.addHook('onSend', async (_request, reply) => {
    reply.header('x-content-type-options', 'nosniff');
  });

  const failures = new AuthFailures();
  // anyone who reaches the port can send requests without the token: the lines are throttled
  const warnAuth = throttledLog((details, message) => log.warn(details, message));
  app.addHook('onRequest', async (request, reply) => {
    // the dashboard's static files hold no data; what the page shows, it asks the API for with the token
    if (isPublicRoute(request.routeOptions.config)) return;
    const header = request.headers.authorization ?? '';
    const given = header.startsWith('Bearer ') ? header.slice(7).trim() : '';
    // Valid credentials are never locked out: only failing attempts are throttled, so a
    // neighbour guessing from the same address (or everyone behind one reverse proxy)
    // cannot keep the monitor's failover writes out.
    if (given !== '' && tokenMatches(given)) return;
    const lockedFor = failures.lockedFor(request.ip);
    if (lockedFor > 0) {
      // nothing is logged per request while locked out
      reply.header('retry-after', String(Math.ceil(lockedFor / 1000)));
      return sendError(
        reply,
        429,
        'TOO_MANY_FAILURES',
        `too many failed authentications from ${request.ip}; try again in ${Math.ceil(lockedFor / 1000)} s (the right token is still accepted)`,
      );
    }
    warnAuth(
      { ip: request.ip, url: request.url.slice(0, 200) },
      given === '' ? 'admin request without a token' : 'admin request with a wrong token',
    );
    // only wrong tokens count: a missing one guesses nothing (a scraper without its token, say)
    if (given !== '' && failures.fail(request.ip)) {
      log.warn(
        { ip: request.ip, failures: AUTH_FAILURES_ALLOWED, lockoutSeconds: AUTH_LOCKOUT_MS / 1000 },
        'too many failed admin authentications; wrong tokens from this address get 429 for a while',
      );
    }
    return sendError(reply, 401, 'UNAUTHORIZED', 'missing or wrong bearer token (Authorization: Bearer TOKEN)');
  });

  app.get('/v1/names', async (request) => {
    const query = request.query as { prefix?: string; cursor?: string; limit?: string };
    const page = await table.list({ prefix: query.prefix, cursor: query.cursor, limit: limitOf(query.limit) });
    return page.cursor ? { names: page.entries, cursor: page.cursor } : { names: page.entries };
  });

  app.get('/v1/names/:name', async (request, reply) => {
    const name = nameParam(request.params);
    const entry = await table.get(name);
    if (!entry) throw new DivertError('NOT_FOUND', `"${name}" is not intercepted`);
    return reply.header('etag', `"${entry.version}"`).send(entry);
  });

  /**
   * A write is acknowledged (200, 204) once every process answering queries answers with
   * it. A worker that does not confirm within its time is named, and the reply is 202: the
   * change is stored (and that worker answers with it once it catches up, or is replaced),
   * but not yet known to be answered everywhere.
   */
  const acknowledge = async (reply: FastifyReply, what: string, success = 200): Promise<void> => {
    const { unconfirmed } = await options.settle();
    if (unconfirmed.length === 0) {
      reply.code(success);
      return;
    }
    log.warn(
      { write: what, unconfirmed },
      `a write is stored, but worker ${unconfirmed.join(', ')} did not confirm in time that it answers with it`,
    );
    reply.code(202).header('x-divert-unconfirmed', unconfirmed.join(','));
  };

  app.put('/v1/names/:name', async (request, reply) => {
    const name = nameParam(request.params);
    const data = entryFromBody(request.body);
    const ifVersion = ifMatch(request.headers['if-match']);
    const entry = await table.put(name, data, { ifVersion, by: clientOf(request.headers['x-divert-client']) });
    await acknowledge(reply, `put ${name}`);
    return reply.header('etag', `"${entry.version}"`).send(entry);
  });

  app.delete('/v1/names/:name', async (request, reply) => {
    const name = nameParam(request.params);
    await table.delete(name, { ifVersion: ifMatch(request.headers['if-match']), by: clientOf(request.headers['x-divert-client']) });
    await acknowledge(reply, `delete ${name}`, 204);
    return reply.send();
  });

  app.get('/v1/names/:name/history', async (request) => {
    const name = nameParam(request.params);
    return { name, history: await table.history(name) };
  });

  // `from` and `to` as given; `diversion` is the record kept for from (its to followed
  // through a diversion of to already in force), or null when this diverted back and undid one
  app.post('/v1/diversions', async (request, reply) => {
    const { from, to } = diversionFromBody(request.body);
    const { changed, diversion } = await table.divert(from, to, { by: clientOf(request.headers['x-divert-client']) });
    await acknowledge(reply, `divert ${from}`);
    return reply.send({ from, to, changed, diversion });
  });

  app.get('/v1/diversions', async () => ({ diversions: await table.diversions() }));

  // The record only: the entries keep answering its to (diverting back moves them back).
  // Nothing the query path answers changes, so there is nothing for the workers to confirm.
  app.delete('/v1/diversions/:from', async (request) => {
    const from = (request.params as { from: string }).from;
    const diversion = await table.deleteDiversion(from, { by: clientOf(request.headers['x-divert-client']) });
    return { diversion };
  });

  // A zone file (Content-Type: text/dns) applied in one atomic step; ?file= names it in errors.
  app.post('/v1/import', async (request, reply) => {
    if (typeof request.body !== 'string') throw new DivertError('BAD_REQUEST', 'body: expected a zone file with Content-Type: text/dns');
    const query = request.query as { file?: string; origin?: string };
    const entries = parseZone(request.body, query.file ?? 'import', { origin: query.origin });
    const changed = await table.importEntries(entries, { by: clientOf(request.headers['x-divert-client']) });
    await acknowledge(reply, 'import');
    return reply.send({ changed });
  });

  app.get('/v1/events', (request, reply) => options.events.open(request, reply));
  // before the server stops listening: it waits for open connections, and a stream never ends by itself
  app.addHook('preClose', async () => options.events.closeAll());

  // what a monitor reads to see each name's load: the counts of divert_name_queries_total as JSON
  app.get('/v1/stats/names', async () => ({ names: Object.fromEntries(await options.nameQueries()) }));

  app.get('/v1/stats/recent', async () => options.recentLoad.recent());
  app.addHook('onClose', async () => options.recentLoad.stop());
  const monitorStatus = options.monitorStatus ?? monitorStatusReader(undefined);
  app.get('/v1/dashboard/monitor', async () => monitorStatus());
  const proxyStatus = options.proxyStatus ?? proxyStatusReader(undefined);
  app.get('/v1/dashboard/proxy', async () => proxyStatus());

  registerDashboard(app);

  app.get('/healthz', async (_request, reply) => {
    const health = await options.health();
    return reply.code(health.ok ? 200 : 503).send(health);
  });

  app.get('/metrics', async (_request, reply) => {
    const { contentType, body } = await options.metrics();
    return reply.header('content-type', contentType).send(body);
  });

  return app;
}
