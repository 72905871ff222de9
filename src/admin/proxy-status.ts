// GET /v1/dashboard/proxy: what the dashboard's proxy panel shows of a divert proxy
// (--dashboard-proxy URL): its GET /status (services, open connections per service, its
// view of divert serve), its per-target figures (GET /v1/stats/targets) and the newest of
// its open connections (GET /v1/connections) — at most SHOWN_CONNECTIONS of them, and none
// when the list is too large to read (the count is in the status).

import { statusRelay, TooLarge, type RelayedStatus } from './status-relay.js';

/** Open connections passed on to the page, newest first. */
export const SHOWN_CONNECTIONS = 50;
/** The connection list read from the proxy at most (its --max-connections may be 10,000s). */
const CONNECTIONS_MAX_BYTES = 4 * 1024 * 1024;

interface ConnectionLike {
  startedAt: number;
}

export function proxyStatusReader(url: string | undefined): () => Promise<RelayedStatus> {
  return statusRelay(url, async (get) => {
    const [status, targets, connections] = await Promise.all([
      get('/status'),
      get('/v1/stats/targets'),
      get('/v1/connections', CONNECTIONS_MAX_BYTES).catch((err: unknown) => {
        if (err instanceof TooLarge) return null;
        throw err;
      }),
    ]);
    const list = (connections as { connections?: ConnectionLike[] } | null)?.connections;
    return {
      status,
      targets: (targets as { targets?: unknown }).targets ?? {},
      connections: list ? [...list].sort((a, b) => b.startedAt - a.startedAt).slice(0, SHOWN_CONNECTIONS) : null,
    };
  });
}
