// What GET /v1/stats/recent answers, as the server writes it and the dashboard reads it:
// plain types, no imports but other plain types, so the front-end's build uses them too.

import type { ProcessFigures, UpstreamState } from '../serving/stats-shapes.js';

/** Queries per second over one interval, ending at `at` (ms since the epoch). */
export interface LoadSample {
  at: number;
  total: number;
  intercepted: number;
  forwarded: number;
  /** Intercepted queries per second of the busiest names in it (at most 8), busiest first. */
  names: Record<string, number>;
}

export interface RecentLoad {
  intervalMs: number;
  /** Oldest first, at most `keep` of them. */
  samples: LoadSample[];
  upstreams: UpstreamState[];
  processes: ProcessFigures[];
}
