// The admin API as the page uses it: every request with the bearer token in its
// Authorization header (never in a URL or a cookie), errors in divert's shape thrown as
// ApiError so a view can tell a refused token (401) and a conflict (412) from the rest.

import type { Entry, EntryData, HistoryRecord } from '../../entry/entry.js';

export type { Entry, HistoryRecord };
import type { LoadSample, RecentLoad } from '../../admin/recent-load-shape.js';
import type { ProcessFigures, UpstreamState } from '../../serving/stats-shapes.js';
import type { RelayedStatus } from '../../admin/status-relay-shape.js';

export type { LoadSample, ProcessFigures, RecentLoad, RelayedStatus, UpstreamState };

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface NamesPage {
  names: Entry[];
  cursor?: string;
}

export interface DiversionResult {
  changed: Entry[];
}

export interface Diversion {
  from: string;
  to: string;
  by: string;
  at: string;
}

/** Who the history names as the author of the page's writes (X-Divert-Client). */
const CLIENT = 'dashboard';

const path = (name: string) => `/v1/names/${encodeURIComponent(name)}`;

export class Api {
  constructor(private readonly token: string) {}

  private async send(
    method: string,
    url: string,
    options: { body?: unknown; version?: number; signal?: AbortSignal } = {},
  ): Promise<Response> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}`, 'x-divert-client': CLIENT };
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    if (options.version !== undefined) headers['if-match'] = String(options.version);
    const res = await fetch(url, {
      method,
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      signal: options.signal,
      cache: 'no-store',
      credentials: 'omit',
    });
    if (!res.ok) {
      let code = `HTTP_${res.status}`;
      let message = `${method} ${url}: ${res.status} ${res.statusText}`;
      try {
        const body = (await res.json()) as { error?: { code?: string; message?: string } };
        code = body.error?.code ?? code;
        message = body.error?.message ?? message;
      } catch {
        // not divert's JSON (a proxy in between): the status line says enough
      }
      throw new ApiError(res.status, code, message);
    }
    return res;
  }

  private async json<T>(method: string, url: string, options: { body?: unknown; version?: number } = {}): Promise<T> {
    return (await (await this.send(method, url, options)).json()) as T;
  }

  listNames(prefix: string, cursor: string | undefined, limit: number): Promise<NamesPage> {
    const query = new URLSearchParams({ limit: String(limit) });
    if (prefix) query.set('prefix', prefix);
    if (cursor) query.set('cursor', cursor);
    return this.json('GET', `/v1/names?${query.toString()}`);
  }

  getName(name: string): Promise<Entry> {
    return this.json('GET', path(name));
  }

  history(name: string): Promise<{ history: HistoryRecord[] }> {
    return this.json('GET', `${path(name)}/history`);
  }

  /** Replaces the entry only if it is still at `version` (412 otherwise). */
  putName(name: string, data: EntryData, version: number): Promise<Entry> {
    return this.json('PUT', path(name), { body: data, version });
  }

  async deleteName(name: string, version: number): Promise<void> {
    await this.send('DELETE', path(name), { version });
  }

  divert(from: string, to: string): Promise<DiversionResult> {
    return this.json('POST', '/v1/diversions', { body: { from, to } });
  }

  diversions(): Promise<{ diversions: Diversion[] }> {
    return this.json('GET', '/v1/diversions');
  }

  async deleteDiversion(from: string): Promise<void> {
    await this.send('DELETE', `/v1/diversions/${encodeURIComponent(from)}`);
  }

  recentLoad(): Promise<RecentLoad> {
    return this.json('GET', '/v1/stats/recent');
  }

  /** What divert serve relays of the monitor (--dashboard-monitor) or the proxy (--dashboard-proxy). */
  relayed(of: 'monitor' | 'proxy'): Promise<RelayedStatus> {
    return this.json('GET', `/v1/dashboard/${of}`);
  }

  /** The change stream: a fetch (EventSource cannot send the header), read by feed.ts. */
  events(signal: AbortSignal): Promise<Response> {
    return this.send('GET', '/v1/events', { signal });
  }
}
