// What GET /v1/dashboard/monitor and /v1/dashboard/proxy answer, as the server writes it
// and the dashboard reads it: a plain type, no imports, so the front-end's build uses it too.

export interface RelayedStatus {
  /** The status address, or null when its flag is not given. */
  url: string | null;
  ok: boolean;
  /** What the status endpoint answered, as the reader shaped it (ok only). */
  status?: unknown;
  error?: string;
}
