// GET /v1/dashboard/monitor and /v1/dashboard/proxy: the status of a divert monitor
// (--dashboard-monitor URL) and of a divert proxy (--dashboard-proxy URL), read by divert
// serve and passed on, so that the dashboard's page talks to its own origin only (its CSP
// allows no other). Read on request, bounded in time and size, and never following a
// redirect: the URL is the operator's, and nothing else is fetched.

import type { RelayedStatus } from './status-relay-shape.js';

export type { RelayedStatus };

const TIMEOUT_MS = 2000;
const MAX_BYTES = 1024 * 1024;

/** A page over the size given: the reader may do without it (a proxy's list of connections). */
export class TooLarge extends Error {}

/** Reads one JSON page of the endpoint: GET path, at most maxBytes of it. */
export type PageGetter = (path: string, maxBytes?: number) => Promise<unknown>;

async function bodyOf(res: Response, maxBytes: number): Promise<string> {
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  // counted as it arrives: a page far over the limit is not read to its end
  for await (const chunk of res.body ?? []) {
    bytes += chunk.byteLength;
    if (bytes > maxBytes) throw new TooLarge(`more than ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function page(url: string, maxBytes: number): Promise<unknown> {
  const res = await fetch(url, { redirect: 'error', signal: AbortSignal.timeout(TIMEOUT_MS) });
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  return JSON.parse(await bodyOf(res, maxBytes)) as unknown;
}

/** A reader of the endpoint at `url`: `read` asks for the pages it needs and shapes what the dashboard gets. */
export function statusRelay(url: string | undefined, read: (get: PageGetter) => Promise<unknown>): () => Promise<RelayedStatus> {
  if (!url) return async () => ({ url: null, ok: false });
  const base = url.replace(/\/$/, '');
  // every failure names the page; a fetch failure by its cause (ECONNREFUSED…), which says more
  const get: PageGetter = async (path, maxBytes = MAX_BYTES) => {
    try {
      return await page(`${base}${path}`, maxBytes);
    } catch (err) {
      const reason = err instanceof Error ? ((err.cause as Error | undefined)?.message ?? err.message) : String(err);
      throw err instanceof TooLarge ? new TooLarge(`GET ${path}: ${reason}`) : new Error(`GET ${path}: ${reason}`);
    }
  };
  return async () => {
    try {
      return { url: base, ok: true, status: await read(get) };
    } catch (err) {
      return { url: base, ok: false, error: err instanceof Error ? err.message : String(err) };
    }
  };
}

/** A divert monitor's GET /status, as it answered. */
export function monitorStatusReader(url: string | undefined): () => Promise<RelayedStatus> {
  return statusRelay(url, (get) => get('/status'));
}
