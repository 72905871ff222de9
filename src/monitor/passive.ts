// Passive health: divert proxy counts, per target, the connects that failed; the monitor
// reads those counters (GET /v1/stats/targets on the proxy's --status endpoint) and counts
// their growth as failed checks of the mirror behind each target.

import { httpRequest } from '../client/http-request.js';
import { formatHostPort, type HostPort } from '../net/host-port.js';

/** A read must end well before the monitor would give up on a stuck proxy; the next read comes anyway. */
export function readTimeout(intervalMs: number): number {
  return Math.min(Math.max(intervalMs, 1000), 5000);
}

/** Target ("ADDRESS:PORT") → its connect failures so far, as the proxy at `at` counts them. */
export async function readConnectFailures(at: HostPort, timeoutMs: number): Promise<Map<string, number>> {
  const url = new URL(`http://${formatHostPort(at)}/v1/stats/targets`);
  let text: string;
  try {
    const reply = await httpRequest(url, { signal: AbortSignal.timeout(timeoutMs) });
    if (reply.status !== 200) throw new Error(`HTTP ${reply.status} from GET /v1/stats/targets: is it a divert proxy's --status?`);
    text = await reply.text();
  } catch (err) {
    if (err instanceof Error && err.name === 'TimeoutError') throw new Error(`no answer within ${timeoutMs} ms`, { cause: err });
    const code = (err as NodeJS.ErrnoException).code;
    throw typeof code === 'string' ? new Error(code, { cause: err }) : err;
  }
  let targets: unknown;
  try {
    targets = (JSON.parse(text) as { targets?: unknown }).targets;
  } catch {
    targets = undefined;
  }
  if (targets === null || typeof targets !== 'object' || Array.isArray(targets))
    throw new Error('GET /v1/stats/targets did not answer {"targets": {...}}: is it a divert proxy\'s --status?');
  const out = new Map<string, number>();
  for (const [target, stats] of Object.entries(targets)) {
    const failures = (stats as { connectFailures?: unknown } | null)?.connectFailures;
    if (typeof failures === 'number' && Number.isFinite(failures) && failures >= 0) out.set(target, failures);
  }
  return out;
}

/**
 * The new failures between two reads of a counter that only grows; a smaller count means
 * the proxy restarted and counted this many since.
 */
export function growth(before: number | undefined, after: number | undefined): number {
  const now = after ?? 0;
  const then = before ?? 0;
  return now >= then ? now - then : now;
}

/** Failures seen in the last `windowMs`: each read's growth, with the time it was read. */
export class FailureWindow {
  private events: { at: number; count: number }[] = [];

  constructor(private readonly windowMs: number) {}

  /** Adds `count` failures read at `at`; returns how many the window holds now. */
  add(at: number, count: number): number {
    this.events = this.events.filter((e) => e.at > at - this.windowMs);
    if (count > 0) this.events.push({ at, count });
    return this.events.reduce((sum, e) => sum + e.count, 0);
  }

  clear(): void {
    this.events = [];
  }
}
