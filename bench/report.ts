// The bench's markdown: divert against dnsdist and the Node ceilings (one row per mix),
// the Redis table with 1,000 against 1,000,000 names, and the RSS of every run.

import { SLOW_MS, type FixedRate } from './dnsperf-verbose.js';
import type { Cell, PeerRun } from './peerbench.js';
import type { RssSummary } from './rss-sampler.js';

export const SUT = { memory: 'divert', redis1k: 'divert redis 1k', redis1m: 'divert redis 1M' } as const;
export const DNSDIST = 'dnsdist lua / pc off';
const ECHO = 'node (i) byte echo';
const ECHO_X2 = 'node (iv) echo x2 cluster';
const RELAY = 'node (iii) raw forwarder';
const RSS_LIMIT_MB = 150;
/** divert's server CPU per query may be at most this many times dnsdist's on (b), (c), (b'). */
const CPU_PER_QUERY_MAX = 1.5;
/** divert's average latency at the fixed rate on (c) may be at most this many times dnsdist's. */
const LATENCY_AVG_MAX = 1.5;
/** 1M names may cost at most this much throughput against 1k. */
const REDIS_SCALE_MIN = 0.9;

export interface ReportInput {
  /** Worker processes divert ran with; picks the (a) ceiling: (iv) 2 workers when ≥ 2, else (i). */
  workers: number;
  memory: PeerRun | undefined;
  redis1k: PeerRun | undefined;
  redis1m: PeerRun | undefined;
  rss: { run: string; summary: RssSummary }[];
  latencyQps: number;
  /** The fixed-rate dnsperf -v runs after run.sh (bench/latency-runs.ts). */
  fixedRate: FixedRate[];
}

interface Row {
  name: string;
  mix: string;
  proto: string;
  peer: { label: string; mix: string; proto: string; min: number; cpuMax?: number };
  ceiling?: { label: string; mix: string; min?: number };
}

export function renderReport(input: ReportInput): string[] {
  return [...mainTable(input), '', ...latencyTable(input), '', ...redisTable(input), '', ...rssTable(input)];
}

function mainTable(input: ReportInput): string[] {
  const cells = input.memory?.cells ?? [];
  const echo = input.workers >= 2 ? ECHO_X2 : ECHO;
  const rows: Row[] = [
    {
      name: '(a) intercepted',
      mix: 'a',
      proto: 'udp',
      peer: { label: DNSDIST, mix: 'a', proto: 'udp', min: 1.5 },
      ceiling: { label: echo, mix: 'a', min: 0.9 },
    },
    {
      name: '(b) forwarded 10k',
      mix: 'b',
      proto: 'udp',
      peer: { label: DNSDIST, mix: 'b', proto: 'udp', min: 1.0, cpuMax: CPU_PER_QUERY_MAX },
      ceiling: { label: RELAY, mix: 'b' },
    },
    {
      name: '(c) 90 % fwd / 10 % int',
      mix: 'c',
      proto: 'udp',
      peer: { label: DNSDIST, mix: 'c', proto: 'udp', min: 1.0, cpuMax: CPU_PER_QUERY_MAX },
    },
    {
      name: "(b') forwarded unique [run.sh's u] (vs dnsdist's b)",
      mix: 'u',
      proto: 'udp',
      peer: { label: DNSDIST, mix: 'b', proto: 'udp', min: 1.0, cpuMax: CPU_PER_QUERY_MAX },
      ceiling: { label: RELAY, mix: 'b' },
    },
    { name: '(b) forwarded 10k, TCP', mix: 'b', proto: 'tcp', peer: { label: DNSDIST, mix: 'b', proto: 'tcp', min: 1.0 } },
  ];
  const out = [
    '| mix | divert QPS | loss % | avg ms | dnsdist QPS | divert / dnsdist | divert CPU µs/q | dnsdist CPU µs/q | CPU/q divert / dnsdist | Node ceiling | ceiling QPS | divert / ceiling | target | met |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---|',
  ];
  for (const row of rows) {
    const sut = find(cells, SUT.memory, row.mix, row.proto);
    const peer = find(cells, row.peer.label, row.peer.mix, row.peer.proto);
    const ceiling = row.ceiling && find(cells, row.ceiling.label, row.ceiling.mix, 'udp');
    const toPeer = ratio(sut?.qps, peer?.qps);
    const toCeiling = ratio(sut?.qps, ceiling?.qps);
    const cpuToPeer = ratio(sut?.usPerQuery, peer?.usPerQuery);
    const checks: Check[] = [{ value: toPeer, min: row.peer.min }];
    const targets = [`≥ ${row.peer.min.toFixed(1)}× dnsdist`];
    if (row.peer.cpuMax !== undefined) {
      checks.push({ value: cpuToPeer, max: row.peer.cpuMax });
      targets.push(`CPU/q ≤ ${row.peer.cpuMax.toFixed(1)}× dnsdist`);
    }
    if (row.ceiling?.min !== undefined) {
      checks.push({ value: toCeiling, min: row.ceiling.min });
      targets.push(`≥ ${row.ceiling.min.toFixed(1)}× ceiling`);
    }
    out.push(
      `| ${row.name} | ${qps(sut)} | ${num(sut?.maxLossPct, 2)} | ${num(sut?.avgMs, 2)} | ${qps(peer)} | ${times(toPeer)} | ${num(sut?.usPerQuery, 1)} | ${num(peer?.usPerQuery, 1)} | ${times(cpuToPeer)} | ${row.ceiling ? row.ceiling.label : '—'} | ${qps(ceiling)} | ${times(toCeiling)} | ${targets.join(', ')} | ${verdict(checks)} |`,
    );
  }
  return [
    `### divert against dnsdist (Lua table, packet cache off) and the Node ceilings, memory table, ${input.workers} worker${input.workers === 1 ? '' : 's'}`,
    '',
    ...out,
    '',
    `Ceiling for (a): ${echo} (${input.workers >= 2 ? 'divert runs ≥ 2 workers' : 'divert runs 1 process'}); for (b) and (b'): ${RELAY} on (b), for reference only. ` +
      "(b') has no dnsdist figure (run.sh measures dnsdist with packet cache off on a, b, c), so it is held against dnsdist's (b). " +
      'QPS: median of the runs with the best client setting under 1 % loss; loss and avg latency are at that saturating load. ' +
      "CPU µs/q: run.sh's srv us/q, the server's CPU time (all its processes and threads) per answered query, median of the same runs.",
    '',
    `Rest of the machine (other sessions) during these cells: up to ${num(Math.max(...cells.map((c) => c.otherCpuPct)), 0)} % of one core ` +
      '(run.sh\'s "other" column); ratios taken while it is high are unreliable.',
  ];
}

function latencyTable(input: ReportInput): string[] {
  const rate = input.latencyQps.toLocaleString('en');
  const runs = Math.max(1, ...input.fixedRate.map((r) => r.runs ?? 1));
  const how = runs === 1 ? 'one run each' : `the median of ${runs} runs each, by average`;
  const out = [
    `### Latency at a fixed ${rate} QPS (dnsperf -Q ${input.latencyQps} -c 20 -T 1 -q 100 -l 5 -v, ${how}, after run.sh)`,
    '',
    '| mix | divert QPS | divert loss % | divert avg ms | divert p99 ms | dnsdist QPS | dnsdist loss % | dnsdist avg ms | dnsdist p99 ms | avg divert / dnsdist | p99 divert / dnsdist | target | met |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|',
  ];
  for (const [mix, name, max] of [
    ['a', '(a) intercepted', undefined],
    ['c', '(c) 90 % fwd / 10 % int', LATENCY_AVG_MAX],
  ] as const) {
    const sut = findFixedRate(input.fixedRate, SUT.memory, mix);
    const peer = findFixedRate(input.fixedRate, DNSDIST, mix);
    const avg = ratio(sut?.avgMs, peer?.avgMs);
    const target = max === undefined ? 'report only' : `avg ≤ ${max.toFixed(1)}× dnsdist; p99 report only`;
    const met = max === undefined ? '—' : verdict([{ value: avg, max }]);
    const cols = (r: FixedRate | undefined) => [num(r?.qps, 0), num(r?.lossPct, 2), num(r?.avgMs, 3), num(r?.p99Ms, 3)];
    out.push(`| ${[name, ...cols(sut), ...cols(peer), times(avg), times(ratio(sut?.p99Ms, peer?.p99Ms)), target, met].join(' | ')} |`);
  }
  return [
    ...out,
    '',
    "Average and p99 (nearest rank) over every answer's latency from dnsperf -v; QPS and loss from its summary. " +
      'NSD, divert and dnsdist are started again from the configs run.sh rendered, one server at a time next to NSD, ' +
      'the two in turn and each started afresh for every run, warmed for 2 s; dnsdist is measured on (c) only, as run.sh does. ' +
      "run.sh's own fixed-rate runs (no p99) are in its report. The same runs split at " +
      `${SLOW_MS} ms below: a gap in the median and in the answers within it is in every answer's path (wake-ups, CPU per query); ` +
      'one in the answers over it is in stalls (GC, scheduling).',
    '',
    ...bodyAndTail(input.fixedRate),
  ];
}

/** The same runs split at SLOW_MS: whether a gap in the average is in every answer (the body) or in a few (the tail). */
function bodyAndTail(fixedRate: readonly FixedRate[]): string[] {
  const out = [
    `| server | mix | p50 ms | avg ms of answers ≤ ${SLOW_MS} ms | answers > ${SLOW_MS} ms % | their part of the avg, ms | avg ms |`,
    '|---|---|---:|---:|---:|---:|---:|',
  ];
  for (const [label, mix] of [
    [SUT.memory, 'a'],
    [SUT.memory, 'c'],
    [DNSDIST, 'c'],
  ] as const) {
    const r = findFixedRate(fixedRate, label, mix);
    out.push(
      `| ${label} | (${mix}) | ${[r?.p50Ms, r?.bodyAvgMs].map((v) => num(v, 3)).join(' | ')} | ${num(r?.slowPct, 2)} | ${num(r?.slowPartMs, 3)} | ${num(r?.avgMs, 3)} |`,
    );
  }
  return out;
}

function redisTable(input: ReportInput): string[] {
  if (!input.redis1k && !input.redis1m) return ['Redis 1k vs 1M names: not run (BENCH_MILLION=0).'];
  const out = [
    `### Address table in Redis: 1,000 against 1,000,000 names (target: 1M ≥ ${REDIS_SCALE_MIN}× 1k)`,
    '',
    '| mix | memory table QPS | Redis, 1k names QPS | Redis, 1M names QPS | 1M / 1k | within 10 % |',
    '|---|---:|---:|---:|---:|---|',
  ];
  for (const [mix, name] of [
    ['a', '(a) intercepted'],
    ['u', "(b') forwarded unique"],
  ]) {
    const memory = find(input.memory?.cells ?? [], SUT.memory, mix, 'udp');
    const small = find(input.redis1k?.cells ?? [], SUT.redis1k, mix, 'udp');
    const large = find(input.redis1m?.cells ?? [], SUT.redis1m, mix, 'udp');
    const scale = ratio(large?.qps, small?.qps);
    out.push(
      `| ${name} | ${qps(memory)} | ${qps(small)} | ${qps(large)} | ${times(scale)} | ${verdict([{ value: scale, min: REDIS_SCALE_MIN }])} |`,
    );
  }
  return out;
}

function rssTable(input: ReportInput): string[] {
  const out = [
    `### Resident set size while the server was up (max of ~1 s samples; target ≤ ${RSS_LIMIT_MB} MB per process)`,
    '',
    '| run | processes | primary MB | largest worker MB | samples | met |',
    '|---|---:|---:|---:|---:|---|',
  ];
  for (const { run, summary } of input.rss) {
    const sizes = [summary.primaryMb, ...(summary.workers > 0 ? [summary.largestWorkerMb] : [])];
    const met = summary.primaryMb === undefined ? 'n/a' : sizes.every((mb) => mb !== undefined && mb <= RSS_LIMIT_MB) ? 'met' : 'missed';
    out.push(
      `| ${run} | 1 + ${summary.workers} | ${num(summary.primaryMb, 0)} | ${summary.workers > 0 ? num(summary.largestWorkerMb, 0) : '—'} | ${summary.samples} | ${met} |`,
    );
  }
  return out;
}

function find(cells: Cell[], label: string, mix: string, proto: string): Cell | undefined {
  return cells.find((c) => c.label === label && c.mix === mix && c.proto === proto);
}

function findFixedRate(rows: readonly FixedRate[], label: string, mix: string): FixedRate | undefined {
  return rows.find((r) => r.label === label && r.mix === mix);
}

function ratio(a: number | undefined, b: number | undefined): number | undefined {
  return a !== undefined && b !== undefined && b > 0 && Number.isFinite(a) ? a / b : undefined;
}

/** A ratio held against a lower bound (min) or an upper bound (max). */
type Check = { value: number | undefined; min: number } | { value: number | undefined; max: number };

function verdict(checks: Check[]): string {
  if (checks.some((c) => c.value === undefined)) return 'n/a';
  return checks.every((c) => ('min' in c ? c.value! >= c.min : c.value! <= c.max)) ? 'met' : 'missed';
}

const qps = (cell: Cell | undefined) => (cell ? Math.round(cell.qps).toLocaleString('en') : 'n/a');
const times = (value: number | undefined) => (value === undefined ? 'n/a' : `${value.toFixed(2)}×`);
const num = (value: number | undefined, digits: number) => (value === undefined || !Number.isFinite(value) ? 'n/a' : value.toFixed(digits));
