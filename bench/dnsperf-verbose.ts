// Reads a fixed-rate dnsperf run made with -v. dnsperf 2.10 prints no percentiles, but with
// -v one line per answer, "> NOERROR www1.shop.test A 0.000326" (rcode, query, latency in
// seconds as the last field); a lost query ("> T www1.shop.test A") and every other line
// have no latency there and are skipped. Average and p99 (nearest rank) come from those
// lines; achieved QPS and lost % from dnsperf's summary. So that a gap in the average can be
// told apart as the body (every answer a little slower) or the tail (a few answers much
// slower), the median, the average of the answers within 1 ms and the share of answers over
// 1 ms with their part of the average come from the same lines.

/** One fixed-rate run of one server on one query mix. */
export interface FixedRate {
  label: string;
  mix: string;
  /** dnsperf's "Queries per second" (NaN when missing). */
  qps: number;
  /** dnsperf's "Queries lost" % (NaN when missing). */
  lossPct: number;
  /** Answers with a latency line. */
  answers: number;
  /** Mean of the answers' latencies, ms (NaN without answers). */
  avgMs: number;
  /** 99th percentile (nearest rank) of the answers' latencies, ms (NaN without answers). */
  p99Ms: number;
  /** Median (nearest rank), ms (NaN without answers). */
  p50Ms: number;
  /** Mean of the answers within SLOW_MS, ms (NaN when there are none). */
  bodyAvgMs: number;
  /** Share of the answers slower than SLOW_MS, % (NaN without answers). */
  slowPct: number;
  /** The slow answers' part of the average: their latencies summed over every answer, ms (NaN without answers). */
  slowPartMs: number;
  /** Runs this one is the median of (by average), when more than one was made. */
  runs?: number;
}

export type VerboseStats = Omit<FixedRate, 'label' | 'mix'>;

/** An answer slower than this (ms) counts to the tail. */
export const SLOW_MS = 1;

const ANSWER = /^>\s+\S+\s+.*\s(\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*$/;

export function parseVerbose(text: string): VerboseStats {
  const seconds: number[] = [];
  for (const line of text.split('\n')) {
    const match = ANSWER.exec(line);
    if (match) seconds.push(Number(match[1]));
  }
  const sorted = Float64Array.from(seconds, (s) => s * 1000).sort();
  const n = sorted.length;
  let sum = 0;
  let slowSum = 0;
  let slow = 0;
  for (const ms of sorted) {
    sum += ms;
    if (ms > SLOW_MS) {
      slowSum += ms;
      slow++;
    }
  }
  const summary = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
  return {
    qps: summary(/Queries per second:\s+([\d.]+)/),
    lossPct: summary(/Queries lost:\s+\d+ \(([\d.]+)%\)/),
    answers: n,
    avgMs: n > 0 ? sum / n : NaN,
    p99Ms: percentile(sorted, 99),
    p50Ms: percentile(sorted, 50),
    bodyAvgMs: n > slow ? (sum - slowSum) / (n - slow) : NaN,
    slowPct: n > 0 ? (slow / n) * 100 : NaN,
    slowPartMs: n > 0 ? slowSum / n : NaN,
  };
}

/** Nearest rank: the smallest value with at least p % of the values at or below it; NaN when empty. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1];
}
