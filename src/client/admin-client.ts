// The admin API as the CLI calls it: one method per endpoint; a refusal or an unreachable port becomes an error main.ts prints on one line with exit status 1.

import type { Entry, EntryData, HistoryRecord } from '../entry/entry.js';
import type { DiversionRecord } from '../entry/diversions.js';
import type { Connection } from './connection.js';
import { httpRequest, type HttpResponse } from './http-request.js';

/** A stuck admin port must not hang an operator's shell or a script forever. */
const REQUEST_TIMEOUT_MS = 60_000;
/** The largest page the API serves: fewer round trips for export and list. */
const PAGE_LIMIT = 1000;

/** The server refused the request, or could not be talked to. Not a DivertError: main.ts exits 1 on it. */
export class AdminError extends Error {
  /** HTTP status; absent when no reply came. */
  readonly status?: number;
  /** The API's error code, as in {"error": {"code"}}. */
  readonly code?: string;

  constructor(message: string, status?: number, code?: string) {
    super(message);
    this.name = 'AdminError';
    this.status = status;
    this.code = code;
  }
}

export interface ListReply {
  names: Entry[];
  cursor?: string;
}

export interface HistoryReply {
  name: string;
  history: HistoryRecord[];
}

export interface DiversionReply {
  from: string;
  to: string;
  changed: Entry[];
  /** The record kept for from (its to may be further on: a diversion of to in force is followed); null when this undid one. */
  diversion: DiversionRecord | null;
}

export interface ImportReply {
  changed: Entry[];
}

interface Request {
  method?: string;
  query?: Record<string, string | undefined>;
  json?: unknown;
  /** A zone file, sent as text/dns. */
  zone?: string;
  /** Sent as If-Match: the write applies only to this version of the entry. */
  ifVersion?: number;
}

function namePath(name: string): string {
  return `v1/names/${encodeURIComponent(name)}`;
}

/** The reason a connection failed, as the OS names it (ECONNREFUSED…), else the error's own words. */
function reasonOf(err: unknown): string {
  let cause: unknown = err;
  while (cause instanceof Error) {
    const code = (cause as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return code;
    if (cause.cause === undefined) return cause.message;
    cause = cause.cause;
  }
  return String(cause);
}

export class AdminClient {
  /** `timeoutMs`: a monitor wants a shorter wait than an operator's shell. `warn`: told of a write stored but not confirmed by every worker (202). */
  constructor(
    private readonly connection: Connection,
    private readonly timeoutMs: number = REQUEST_TIMEOUT_MS,
    private readonly warn: (message: string) => void = () => {},
  ) {}

  /** The base URL without the trailing slash, as an operator would type it. */
  get where(): string {
    return this.connection.url.href.replace(/\/$/, '');
  }

  private async call<T>(path: string, request: Request = {}): Promise<T> {
    const url = new URL(path, this.connection.url);
    for (const [key, value] of Object.entries(request.query ?? {})) if (value !== undefined) url.searchParams.set(key, value);
    const headers: Record<string, string> = {
      authorization: `Bearer ${this.connection.token}`,
      'x-divert-client': this.connection.client,
      accept: 'application/json',
    };
    let body: string | undefined;
    if (request.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(request.json);
    } else if (request.zone !== undefined) {
      headers['content-type'] = 'text/dns';
      body = request.zone;
    }
    if (request.ifVersion !== undefined) headers['if-match'] = `"${request.ifVersion}"`;

    let response: HttpResponse;
    let text: string;
    try {
      response = await httpRequest(url, { method: request.method ?? 'GET', headers, body, signal: AbortSignal.timeout(this.timeoutMs) });
      text = await response.text();
    } catch (err) {
      if (err instanceof Error && err.name === 'TimeoutError') {
        throw new AdminError(`the admin API at ${this.where} did not answer within ${this.timeoutMs / 1000} s`);
      }
      throw new AdminError(
        `cannot reach the admin API at ${this.where} (${reasonOf(err)}); is divert serve running with its --admin there? Point to it with --admin URL or DIVERT_ADMIN_URL`,
      );
    }

    let data: unknown;
    try {
      data = text === '' ? undefined : JSON.parse(text);
    } catch {
      data = undefined;
    }
    if (!response.ok) {
      const error = (data as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
      if (typeof error?.message !== 'string') {
        throw new AdminError(
          `${url.origin}${url.pathname} answered HTTP ${response.status} without a divert error; is ${this.where} a divert admin port?`,
          response.status,
        );
      }
      const code = typeof error.code === 'string' ? error.code : undefined;
      // The server's message as it came; the status says which kind of refusal it was.
      const hint = response.status === 401 ? `; the token came from ${this.connection.tokenSource}` : '';
      throw new AdminError(`${error.message} (HTTP ${response.status}${code ? ' ' + code : ''}${hint})`, response.status, code);
    }
    const unconfirmed = response.status === 202 ? response.headers.get('x-divert-unconfirmed') : null;
    if (unconfirmed !== null)
      this.warn(
        `warning: the change is stored, but worker ${unconfirmed} of divert serve did not confirm in time that it answers with it (HTTP 202); that worker may answer the old addresses until it catches up or is replaced (see GET /healthz)`,
      );
    if (response.status !== 204 && data === undefined) {
      throw new AdminError(
        `${url.origin}${url.pathname} answered HTTP ${response.status} with a body that is not JSON; is ${this.where} a divert admin port?`,
        response.status,
      );
    }
    return data as T;
  }

  /** Every entry (with the prefix), paging until the server gives no cursor. */
  async listAll(prefix?: string): Promise<Entry[]> {
    const entries: Entry[] = [];
    const seen = new Set<string>();
    let cursor: string | undefined;
    do {
      const page: ListReply = await this.call('v1/names', { query: { prefix, cursor, limit: String(PAGE_LIMIT) } });
      entries.push(...page.names);
      cursor = page.cursor;
      // A server that hands back a cursor it gave before would keep this loop going forever.
      if (cursor !== undefined) {
        if (seen.has(cursor)) throw new AdminError(`${this.where} returned the list cursor "${cursor}" twice; the listing is incomplete`);
        seen.add(cursor);
      }
    } while (cursor !== undefined);
    return entries;
  }

  get(name: string): Promise<Entry> {
    return this.call(namePath(name));
  }

  put(name: string, data: Partial<EntryData>, ifVersion?: number): Promise<Entry> {
    return this.call(namePath(name), { method: 'PUT', json: data, ifVersion });
  }

  async delete(name: string, ifVersion?: number): Promise<void> {
    await this.call(namePath(name), { method: 'DELETE', ifVersion });
  }

  /** Intercepted queries per table entry since divert started (`_other`: names beyond --metrics-max-names). */
  nameQueries(): Promise<{ names: Record<string, number> }> {
    return this.call('v1/stats/names');
  }

  history(name: string): Promise<HistoryReply> {
    return this.call(`${namePath(name)}/history`);
  }

  divert(from: string, to: string): Promise<DiversionReply> {
    return this.call('v1/diversions', { method: 'POST', json: { from, to } });
  }

  /** The diversions in force, by from. */
  async diversions(): Promise<DiversionRecord[]> {
    return (await this.call<{ diversions: DiversionRecord[] }>('v1/diversions')).diversions;
  }

  /** Removes from's diversion record (the entries keep their answers); returns it. */
  async deleteDiversion(from: string): Promise<DiversionRecord> {
    return (await this.call<{ diversion: DiversionRecord }>(`v1/diversions/${encodeURIComponent(from)}`, { method: 'DELETE' })).diversion;
  }

  importZone(zone: string, file: string, origin?: string): Promise<ImportReply> {
    return this.call('v1/import', { method: 'POST', zone, query: { file, origin } });
  }
}
