// Node's process figures (CPU, memory, handles, event-loop lag) in a /metrics registry, as
// every divert process that serves one collects them.

import { collectDefaultMetrics, type Registry } from 'prom-client';

/**
 * The default metrics under `prefix`. The event-loop lag histogram samples every 100 ms,
 * not prom-client's 10: each sample wakes the process, and 100 wake-ups a second (an idle
 * proxy's or monitor's only activity, a busy one's extra loop turns) cost more than the
 * finer sampling is worth.
 */
export function collectProcessMetrics(registry: Registry, prefix: string): void {
  collectDefaultMetrics({ register: registry, prefix, eventLoopMonitoringPrecision: 100 });
}
