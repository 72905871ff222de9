// Reads a fixed-rate dnsperf run made with -v. dnsperf 2.10 prints no percentiles, but with
// -v one line per answer, "> NOERROR www1.shop.test A 0.000326" (rcode, query, latency in
// seconds as the last field); a lost query ("> T www1.shop.test A") and every other line
// have no latency there and are skipped. Average and p99 (nearest rank) come from those
// lines; achieved QPS and lost % from dnsperf's summary.

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
  /** Runs this one is the median of (by average), when more than one was made. */
  runs?: number;
}

export type VerboseStats = Omit<FixedRate, 'label' | 'mix'>;

const ANSWER = /^>\s+\S+\s+.*\s(\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*$/;

export function parseVerbose(text: string): VerboseStats {
  const seconds: number[] = [];
  for (const line of text.split('\n')) {
    const match = ANSWER.exec(line);
    if (match) seconds.push(Number(match[1]));
  }
  const sorted = Float64Array.from(seconds).sort();
  const sum = sorted.reduce((total, s) => total + s, 0);
  const summary = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
  return {
    qps: summary(/Queries per second:\s+([\d.]+)/),
    lossPct: summary(/Queries lost:\s+\d+ \(([\d.]+)%\)/),
    answers: sorted.length,
    avgMs: sorted.length > 0 ? (sum / sorted.length) * 1000 : NaN,
    p99Ms: percentile(sorted, 99) * 1000,
  };
}

/** Nearest rank: the smallest value with at least p % of the values at or below it; NaN when empty. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1];
}
