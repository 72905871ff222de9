// BENCH_ROUNDS: run.sh measures dnsdist's cells, then divert's, minutes apart, and this
// machine's speed drifts over minutes (the same build's intercepted mix read 106k to 143k
// queries/s over six fresh starts in a row), so one run.sh run's ratio takes whatever the
// host did in between. With rounds, run.sh runs that many times — dnsdist then divert each
// time — and each server's cell is its round with the median QPS (the lower middle for an
// even count): a bad stretch in one round moves neither side's figure.

import type { PeerRun } from './peerbench.js';
import type { RssSummary } from './rss-sampler.js';

/** The runs grouped by `key` (in the order each group first appears), each group with its run of the median `value` (the lower middle for an even count). */
export function medians<T>(runs: readonly T[], key: (run: T) => string, value: (run: T) => number): { median: T; group: T[] }[] {
  const groups = new Map<string, T[]>();
  for (const run of runs) {
    const k = key(run);
    const group = groups.get(k);
    if (group) group.push(run);
    else groups.set(k, [run]);
  }
  return [...groups.values()].map((group) => {
    const sorted = group.toSorted((a, b) => value(a) - value(b));
    return { median: sorted[Math.floor((sorted.length - 1) / 2)], group };
  });
}

/** One PeerRun of several rounds: per server, mix and transport, the round with the median QPS. */
export function mergeRounds(runs: readonly PeerRun[]): PeerRun {
  if (runs.length === 1) return runs[0];
  const all = runs.flatMap((run) => run.cells);
  const byCell = medians(
    all,
    (cell) => `${cell.label}\u0000${cell.mix}\u0000${cell.proto}`,
    (cell) => cell.qps,
  );
  const cells = byCell.map(({ median, group: rounds }) => ({
    ...median,
    reps: rounds.reduce((sum, c) => sum + c.reps, 0),
    minQps: Math.min(...rounds.map((c) => c.minQps)),
    maxQps: Math.max(...rounds.map((c) => c.maxQps)),
    otherCpuPct: Math.max(...rounds.map((c) => c.otherCpuPct)),
  }));
  return {
    exitCode: runs.find((r) => r.exitCode !== 0)?.exitCode ?? 0,
    cells,
    latency: runs.flatMap((r) => r.latency),
    markdownPath: runs[0].markdownPath,
  };
}

/** The RSS over every round: the largest of each. */
export function mergeRss(summaries: readonly RssSummary[]): RssSummary {
  const most = (pick: (s: RssSummary) => number | undefined) => {
    const seen = summaries.map(pick).filter((v): v is number => v !== undefined);
    return seen.length === 0 ? undefined : Math.max(...seen);
  };
  return {
    primaryMb: most((s) => s.primaryMb),
    largestWorkerMb: most((s) => s.largestWorkerMb),
    workers: Math.max(...summaries.map((s) => s.workers)),
    samples: summaries.reduce((sum, s) => sum + s.samples, 0),
  };
}
