// The bench's markdown: divert against dnsdist and the Node ceilings (one row per mix),
// the Redis table with 1,000 against 1,000,000 names, and the RSS of every run.

import type { Cell, Latency, PeerRun } from './peerbench.js';
import type { RssSummary } from './rss-sampler.js';

export const SUT = { memory: 'divert', redis1k: 'divert redis 1k', redis1m: 'divert redis 1M' } as const;
const DNSDIST = 'dnsdist lua / pc off';
const ECHO = 'node (i) byte echo';
const ECHO_X2 = 'node (iv) echo x2 cluster';
const RELAY = 'node (iii) raw forwarder';
const RSS_LIMIT_MB = 150;
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
}

interface Row {
  name: string;
  mix: string;
  proto: string;
  peer: { label: string; mix: string; proto: string; min: number };
  ceiling?: { label: string; mix: string; min?: number };
}

export function renderReport(input: ReportInput): string[] {
  return [...mainTable(input), '', ...redisTable(input), '', ...rssTable(input)];
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
      peer: { label: DNSDIST, mix: 'b', proto: 'udp', min: 1.0 },
      ceiling: { label: RELAY, mix: 'b' },
    },
    { name: '(c) 90 % fwd / 10 % int', mix: 'c', proto: 'udp', peer: { label: DNSDIST, mix: 'c', proto: 'udp', min: 1.0 } },
    {
      name: "(u) unique names (vs dnsdist's b)",
      mix: 'u',
      proto: 'udp',
      peer: { label: DNSDIST, mix: 'b', proto: 'udp', min: 1.0 },
      ceiling: { label: RELAY, mix: 'b' },
    },
    { name: '(b) forwarded 10k, TCP', mix: 'b', proto: 'tcp', peer: { label: DNSDIST, mix: 'b', proto: 'tcp', min: 1.0 } },
  ];
  const out = [
    '| mix | divert QPS | loss % | avg ms | dnsdist QPS | divert / dnsdist | Node ceiling | ceiling QPS | divert / ceiling | target | met |',
    '|---|---:|---:|---:|---:|---:|---|---:|---:|---|---|',
  ];
  for (const row of rows) {
    const sut = find(cells, SUT.memory, row.mix, row.proto);
    const peer = find(cells, row.peer.label, row.peer.mix, row.peer.proto);
    const ceiling = row.ceiling && find(cells, row.ceiling.label, row.ceiling.mix, 'udp');
    const toPeer = ratio(sut?.qps, peer?.qps);
    const toCeiling = ratio(sut?.qps, ceiling?.qps);
    const checks = [{ value: toPeer, min: row.peer.min }];
    const targets = [`≥ ${row.peer.min.toFixed(1)}× dnsdist`];
    if (row.ceiling?.min !== undefined) {
      checks.push({ value: toCeiling, min: row.ceiling.min });
      targets.push(`≥ ${row.ceiling.min.toFixed(1)}× ceiling`);
    }
    out.push(
      `| ${row.name} | ${qps(sut)} | ${num(sut?.maxLossPct, 2)} | ${num(sut?.avgMs, 2)} | ${qps(peer)} | ${times(toPeer)} | ${row.ceiling ? row.ceiling.label : '—'} | ${qps(ceiling)} | ${times(toCeiling)} | ${targets.join(', ')} | ${verdict(checks)} |`,
    );
  }
  const lat = input.memory?.latency ?? [];
  for (const mix of ['a', 'c']) {
    const sut = findLatency(lat, SUT.memory, mix);
    const peer = findLatency(lat, DNSDIST, mix);
    if (!sut && !peer) continue;
    out.push(
      `| latency @ ${Math.round(input.latencyQps / 1000)}k QPS, (${mix}): avg ± sd ms | ${latency(sut)} | ${num(sut?.lossPct, 2)} | — | ${latency(peer)} | ${times(ratio(sut?.avgMs, peer?.avgMs))} | — | — | — | report only | — |`,
    );
  }
  return [
    `### divert against dnsdist (Lua table, packet cache off) and the Node ceilings, memory table, ${input.workers} worker${input.workers === 1 ? '' : 's'}`,
    '',
    ...out,
    '',
    `Ceiling for (a): ${echo} (${input.workers >= 2 ? 'divert runs ≥ 2 workers' : 'divert runs 1 process'}); for (b) and (u): ${RELAY} on (b), for reference only. ` +
      "(u) has no dnsdist figure (run.sh measures dnsdist with packet cache off on a, b, c), so it is held against dnsdist's (b). " +
      'QPS: median of the runs with the best client setting under 1 % loss; loss and avg latency are at that saturating load. ' +
      `Fixed-rate latency: run.sh's peer_cells runs it on mix (c) for dnsdist and the server under test (the node ceilings on their last mix); divert's (a) row is one more run of the same dnsperf command (-Q, -c 20, -q 100, 5 s) against divert alone after run.sh.`,
    '',
    `Rest of the machine (other sessions) during these cells: up to ${num(Math.max(...cells.map((c) => c.otherCpuPct)), 0)} % of one core ` +
      '(run.sh\'s "other" column); ratios taken while it is high are unreliable.',
  ];
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
    ['u', '(u) unique names'],
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

function findLatency(rows: Latency[], label: string, mix: string): Latency | undefined {
  return rows.find((r) => r.label === label && r.mix === mix && r.proto === 'udp');
}

function ratio(a: number | undefined, b: number | undefined): number | undefined {
  return a !== undefined && b !== undefined && b > 0 && Number.isFinite(a) ? a / b : undefined;
}

function verdict(checks: { value: number | undefined; min: number }[]): string {
  if (checks.some((c) => c.value === undefined)) return 'n/a';
  return checks.every((c) => c.value! >= c.min) ? 'met' : 'missed';
}

const qps = (cell: Cell | undefined) => (cell ? Math.round(cell.qps).toLocaleString('en') : 'n/a');
const times = (value: number | undefined) => (value === undefined ? 'n/a' : `${value.toFixed(2)}×`);
const num = (value: number | undefined, digits: number) => (value === undefined || !Number.isFinite(value) ? 'n/a' : value.toFixed(digits));
const latency = (row: Latency | undefined) => (row ? `${row.avgMs.toFixed(3)} ± ${row.sdMs.toFixed(3)}` : 'n/a');
