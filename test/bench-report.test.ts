// npm run bench's report (bench/report.ts) and the reading of its fixed-rate dnsperf -v
// runs (bench/dnsperf-verbose.ts), on a short dnsperf 2.10 sample and made-up cells in
// run.sh's cells format: CPU per query and p99 appear, and the verdicts follow the targets.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseVerbose, percentile } from '../bench/dnsperf-verbose.js';

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
  const none = parseVerbose('dnsperf: error: could not open file\n');
  assert.equal(none.answers, 0);
  assert.ok(Number.isNaN(none.avgMs) && Number.isNaN(none.p99Ms) && Number.isNaN(none.qps));
});

test('p99 is the nearest rank', () => {
  const upTo = (n: number) => Array.from({ length: n }, (_, i) => i + 1);
  assert.equal(percentile(upTo(100), 99), 99);
  assert.equal(percentile(upTo(200), 99), 198);
  assert.equal(percentile(upTo(1000), 99), 990);
  assert.equal(percentile([7], 99), 7);
  assert.ok(Number.isNaN(percentile([], 99)));
});
