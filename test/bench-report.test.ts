// npm run bench's report (bench/report.ts) and the reading of its fixed-rate dnsperf -v
// runs (bench/dnsperf-verbose.ts), on a short dnsperf 2.10 sample and made-up cells in
// run.sh's cells format: CPU per query and p99 appear, and the verdicts follow the targets.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseVerbose, percentile, type FixedRate } from '../bench/dnsperf-verbose.js';
import { parseCells } from '../bench/peerbench.js';
import { DNSDIST, renderReport, SUT } from '../bench/report.js';
import { medianRuns } from '../bench/latency-runs.js';
import { medianCells, renderEncrypted, type EncryptedCell } from '../bench/encrypted-runs.js';

const VERBOSE = `DNS Performance Testing Tool
Version 2.10.0

[Status] Command line: dnsperf -s 127.0.0.1 -p 15351 -d gen/mix90.txt -c 20 -T 1 -q 100 -Q 10000 -l 5 -v
[Status] Sending queries (to 127.0.0.1:15351)
[Status] Started at: Fri Dec  4 07:25:26 2026
[Status] Stopping after 5.000000 seconds
> NOERROR h00001.bench.test A 0.000400
> NOERROR www1.shop.test A 0.000200
> NXDOMAIN nope.bench.test A 0.000300
> T h00002.bench.test A
> NOERROR h00003.bench.test A 0.004100\r
> SERVFAIL h00004.bench.test A 0.001000
Warning: received a response with an unexpected (maybe timed out) id: 1234
[Status] Testing complete (time limit)

Statistics:

  Queries sent:         6
  Queries completed:    5 (83.33%)
  Queries lost:         1 (16.67%)

  Response codes:       NOERROR 3 (60.00%), NXDOMAIN 1 (20.00%), SERVFAIL 1 (20.00%)
  Run time (s):         5.000465
  Queries per second:   0.999907

  Average Latency (s):  0.001200 (min 0.000200, max 0.004100)
  Latency StdDev (s):   0.001552
`;

test('dnsperf -v: every answer line counts, lost queries and other lines are skipped', () => {
  const stats = parseVerbose(VERBOSE);
  assert.equal(stats.answers, 5);
  assert.ok(Math.abs(stats.avgMs - 1.2) < 1e-9, `avg ${stats.avgMs}`);
  assert.ok(Math.abs(stats.p99Ms - 4.1) < 1e-9, `p99 ${stats.p99Ms}`);
  assert.equal(stats.qps, 0.999907);
  assert.equal(stats.lossPct, 16.67);
  // 0.2, 0.3, 0.4 and 1.0 ms within 1 ms, 4.1 ms over it
  assert.ok(Math.abs(stats.p50Ms - 0.4) < 1e-9, `p50 ${stats.p50Ms}`);
  assert.ok(Math.abs(stats.bodyAvgMs - 0.475) < 1e-9, `body ${stats.bodyAvgMs}`);
  assert.equal(stats.slowPct, 20);
  assert.ok(Math.abs(stats.slowPartMs - 0.82) < 1e-9, `tail part ${stats.slowPartMs}`);
  const none = parseVerbose('dnsperf: error: could not open file\n');
  assert.equal(none.answers, 0);
  assert.ok(Number.isNaN(none.avgMs) && Number.isNaN(none.p99Ms) && Number.isNaN(none.qps));
  assert.ok(Number.isNaN(none.p50Ms) && Number.isNaN(none.bodyAvgMs) && Number.isNaN(none.slowPct));
});

test('p99 is the nearest rank', () => {
  const upTo = (n: number) => Array.from({ length: n }, (_, i) => i + 1);
  assert.equal(percentile(upTo(100), 99), 99);
  assert.equal(percentile(upTo(200), 99), 198);
  assert.equal(percentile(upTo(1000), 99), 990);
  assert.equal(percentile([7], 99), 7);
  assert.ok(Number.isNaN(percentile([], 99)));
});

// label|mix|proto|setting|n|qps|min|max|maxloss|avg|sd|srvcpu|us/q|up|perf|other|steal|cmd|noerror%
const cell = (label: string, mix: string, proto: string, qps: number, usPerQuery: number) =>
  `${label}|${mix}|${proto}|-c 20 -T 1 -q 100|1|${qps}|${qps}|${qps}|0.00|1.000|0.500|90|${usPerQuery}|40|95|3|0|dnsperf -m ${proto}|100.00`;
const CELLS = [
  cell(SUT.memory, 'a', 'udp', 70000, 12.0),
  cell(SUT.memory, 'b', 'udp', 50000, 30.0),
  cell(SUT.memory, 'c', 'udp', 47000, 25.0),
  cell(SUT.memory, 'u', 'udp', 40000, 26.0),
  cell(SUT.memory, 'b', 'tcp', 25000, 35.0),
  cell(DNSDIST, 'a', 'udp', 40000, 20.0),
  cell(DNSDIST, 'b', 'udp', 46000, 18.0),
  cell(DNSDIST, 'c', 'udp', 45000, 20.0),
  cell(DNSDIST, 'b', 'tcp', 20000, 40.0),
  cell('node (iv) echo x2 cluster', 'a', 'udp', 63000, 10.0),
  cell('node (iii) raw forwarder', 'b', 'udp', 27500, 30.0),
].join('\n');

const fixed = (label: string, mix: string, avgMs: number, p99Ms: number): FixedRate => ({
  label,
  mix,
  qps: 10000,
  lossPct: 0,
  answers: 50000,
  avgMs,
  p99Ms,
  p50Ms: avgMs / 2,
  bodyAvgMs: avgMs * 0.75,
  slowPct: 2,
  slowPartMs: avgMs / 4,
});

function render(fixedRate: FixedRate[]): string[] {
  const memory = { exitCode: 0, cells: parseCells(CELLS), latency: [], markdownPath: undefined };
  return renderReport({ workers: 2, memory, redis1k: undefined, redis1m: undefined, rss: [], latencyQps: 10000, fixedRate });
}

const columns = (line: string) => line.split('|').map((c) => c.trim());

/** The cells, by column name, of the row starting with `start` in the table whose header starts with `header`. */
function table(lines: string[], header: string): (start: string) => Record<string, string> {
  const names = columns(lines.find((l) => l.startsWith(`| ${header}`))!);
  return (start) => {
    const line = lines.find((l) => l.startsWith(`| ${start}`));
    assert.ok(line, `no row "${start}" in\n${lines.join('\n')}`);
    const cells = columns(line);
    return Object.fromEntries(names.map((name, i) => [name, cells[i]]));
  };
}

test('report: QPS and CPU per query against dnsdist, with their targets and verdicts', () => {
  const row = table(render([]), 'mix | divert QPS | loss %');
  // QPS ahead, but CPU/q over 1.5×
  assert.partialDeepStrictEqual(row('(b) forwarded 10k |'), {
    'divert / dnsdist': '1.09×',
    'divert CPU µs/q': '30.0',
    'dnsdist CPU µs/q': '18.0',
    'CPU/q divert / dnsdist': '1.67×',
    target: '≥ 1.0× dnsdist, CPU/q ≤ 1.5× dnsdist',
    met: 'missed',
  });
  assert.partialDeepStrictEqual(row('(c)'), { 'divert / dnsdist': '1.04×', 'CPU/q divert / dnsdist': '1.25×', met: 'met' });
  // held against dnsdist's (b): 0.87× the QPS
  assert.partialDeepStrictEqual(row("(b')"), { 'dnsdist QPS': '46,000', 'CPU/q divert / dnsdist': '1.44×', met: 'missed' });
  assert.partialDeepStrictEqual(row('(a)'), {
    'divert / dnsdist': '1.75×',
    'CPU/q divert / dnsdist': '0.60×',
    target: '≥ 1.5× dnsdist, ≥ 0.9× ceiling',
    met: 'met',
  });
  assert.partialDeepStrictEqual(row('(b) forwarded 10k, TCP'), { 'divert / dnsdist': '1.25×', target: '≥ 1.0× dnsdist', met: 'met' });
});

test('report: latency at the fixed rate, average and p99, the average held to 1.5× dnsdist on (c)', () => {
  const rate = (divertAvg: number) => [
    fixed(SUT.memory, 'a', 0.21, 0.9),
    fixed(SUT.memory, 'c', divertAvg, 2.5),
    fixed(DNSDIST, 'c', 0.4, 1.25),
  ];
  const lines = render(rate(0.5));
  assert.ok(lines.some((l) => l.startsWith('### Latency at a fixed 10,000 QPS')));
  const latency = (rendered: string[]) => table(rendered, 'mix | divert QPS | divert loss %');
  // p99 at 2× dnsdist's does not count
  assert.partialDeepStrictEqual(latency(lines)('(c) 90 % fwd / 10 % int | 10000'), {
    'divert avg ms': '0.500',
    'divert p99 ms': '2.500',
    'dnsdist p99 ms': '1.250',
    'avg divert / dnsdist': '1.25×',
    'p99 divert / dnsdist': '2.00×',
    target: 'avg ≤ 1.5× dnsdist; p99 report only',
    met: 'met',
  });
  assert.partialDeepStrictEqual(latency(lines)('(a) intercepted | 10000'), { 'divert p99 ms': '0.900', 'dnsdist avg ms': 'n/a', met: '—' });
  // the same runs as body and tail, each server's own row
  const split = table(lines, 'server | mix | p50 ms');
  assert.partialDeepStrictEqual(split(`${SUT.memory} | (c)`), {
    server: SUT.memory,
    mix: '(c)',
    'p50 ms': '0.250',
    'avg ms of answers ≤ 1 ms': '0.375',
    'answers > 1 ms %': '2.00',
    'their part of the avg, ms': '0.125',
    'avg ms': '0.500',
  });
  assert.partialDeepStrictEqual(split(`${DNSDIST} | (c)`), { 'p50 ms': '0.200', 'avg ms': '0.400' });
  assert.partialDeepStrictEqual(table(render([]), 'server | mix | p50 ms')(`${SUT.memory} | (a)`), {
    'p50 ms': 'n/a',
    'answers > 1 ms %': 'n/a',
  });
  const slow = latency(render(rate(0.8)))('(c) 90 % fwd / 10 % int | 10000');
  assert.partialDeepStrictEqual(slow, { 'avg divert / dnsdist': '2.00×', met: 'missed' });
  assert.equal(latency(render([]))('(c) 90 % fwd / 10 % int | n/a').met, 'n/a');
});

test('report: of several fixed-rate runs per server and mix, the median by average is shown, and how many there were', () => {
  const runs = [
    fixed(SUT.memory, 'c', 0.9, 5),
    fixed(DNSDIST, 'c', 0.3, 1),
    fixed(SUT.memory, 'c', 0.2, 2),
    fixed(DNSDIST, 'c', 0.1, 1),
    fixed(SUT.memory, 'c', 0.4, 3),
    fixed(DNSDIST, 'c', 0.2, 1),
    fixed(SUT.memory, 'a', 0.1, 0.5),
  ];
  const kept = medianRuns(runs);
  assert.deepEqual(
    kept.map((r) => [r.label, r.mix, r.avgMs, r.p99Ms, r.runs]),
    [
      [SUT.memory, 'c', 0.4, 3, 3],
      [DNSDIST, 'c', 0.2, 1, 3],
      [SUT.memory, 'a', 0.1, 0.5, 1],
    ],
  );
  const lines = render(kept);
  assert.ok(lines.some((l) => l.includes('the median of 3 runs each, by average')));
  const row = table(lines, 'mix | divert QPS | divert loss %')('(c) 90 % fwd / 10 % int | 10000');
  assert.partialDeepStrictEqual(row, {
    'divert avg ms': '0.400',
    'divert p99 ms': '3.000',
    'avg divert / dnsdist': '2.00×',
    met: 'missed',
  });
});

test('encrypted rows: of several runs per server, transport and mix, the median by QPS is shown, with its ratio and how many runs', () => {
  const cell = (label: string, transport: 'dot' | 'doh', mix: string, qps: number, usPerQuery: number): EncryptedCell => ({
    label,
    transport,
    mix,
    qps,
    lossPct: 0,
    avgMs: 1,
    usPerQuery,
    runs: 1,
  });
  const kept = medianCells([
    cell(SUT.memory, 'doh', 'a', 50_000, 30),
    cell(DNSDIST, 'doh', 'a', 109_000, 15),
    cell(SUT.memory, 'doh', 'a', 60_000, 28),
    cell(DNSDIST, 'doh', 'a', 47_000, 21),
    cell(SUT.memory, 'doh', 'a', 40_000, 33),
    cell(DNSDIST, 'doh', 'a', 55_000, 19),
    cell(SUT.memory, 'dot', 'c', 48_000, 21),
  ]);
  assert.deepEqual(
    kept.map((c) => [c.label, c.transport, c.mix, c.qps, c.usPerQuery, c.runs]),
    [
      [SUT.memory, 'doh', 'a', 50_000, 30, 3],
      [DNSDIST, 'doh', 'a', 55_000, 19, 3],
      [SUT.memory, 'dot', 'c', 48_000, 21, 1],
    ],
  );
  const lines = renderEncrypted(kept, SUT.memory, DNSDIST, 10);
  assert.ok(lines[0].includes('the median of 3 runs each by QPS'), lines[0]);
  const row = lines.find((l) => l.startsWith('| DoH (HTTP/2) | (a)'));
  assert.ok(row?.includes('| 50,000 | 55,000 | **0.91×** | 30 / 19 |'), row);
});
