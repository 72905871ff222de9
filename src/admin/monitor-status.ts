// GET /v1/dashboard/monitor: the status of a divert monitor (--dashboard-monitor URL),
// read by divert serve and passed on, so that the dashboard's page talks to its own
// origin only (its CSP allows no other). Read on request, bounded in time and size, and
// never following a redirect: the URL is the operator's, and nothing else is fetched.

export interface MonitorView {
  /** The monitor's status address, or null when --dashboard-monitor is not given. */
  url: string | null;
  ok: boolean;
  /** Its GET /status as it answered (ok only). */
  status?: unknown;
  error?: string;
}

const TIMEOUT_MS = 2000;
const MAX_BYTES = 1024 * 1024;

export function monitorStatusReader(url: string | undefined): () => Promise<MonitorView> {
  if (!url) return async () => ({ url: null, ok: false });
  const base = url.replace(/\/$/, '');
  return async () => {
    try {
      const res = await fetch(`${base}/status`, { redirect: 'error', signal: AbortSignal.timeout(TIMEOUT_MS) });
      if (!res.ok) return { url: base, ok: false, error: `GET /status: HTTP ${res.status}` };
      const text = await res.text();
      if (text.length > MAX_BYTES) return { url: base, ok: false, error: `GET /status: more than ${MAX_BYTES} bytes` };
      return { url: base, ok: true, status: JSON.parse(text) as unknown };
    } catch (err) {
      const reason = err instanceof Error ? ((err.cause as Error | undefined)?.message ?? err.message) : String(err);
      return { url: base, ok: false, error: `GET /status: ${reason}` };
    }
  };
}
