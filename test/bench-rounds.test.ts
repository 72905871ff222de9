// npm run bench with BENCH_ROUNDS (bench/rounds.ts): run.sh's rounds merged into one run —
// per server, mix and transport the round with the median QPS, its own CPU and latency
// kept with it; a cell only one round has (the Node ceilings) kept as it is; RSS the most
// of any round.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Cell, PeerRun } from '../bench/peerbench.js';
import { mergeRounds, mergeRss } from '../bench/rounds.js';

function cell(label: string, mix: string, qps: number, usPerQuery: number, otherCpuPct = 1): Cell {
  return {
    label,
    mix,
    proto: 'udp',
    setting: '-c 20 -T 1 -q 500',
    reps: 1,
    qps,
    minQps: qps,
    maxQps: qps,
    maxLossPct: 0,
    avgMs: 1,
    sdMs: 0,
    srvCpuPct: 100,
    usPerQuery,
    otherCpuPct,
    noerrorPct: 100,
  };
}

const run = (cells: Cell[], exitCode = 0): PeerRun => ({ exitCode, cells, latency: [], markdownPath: undefined });

test('each cell is its median round, with that round figures; a cell of one round stays', () => {
  const merged = mergeRounds([
    run([cell('divert', 'a', 90_000, 9.5), cell('dnsdist', 'a', 80_000, 10.3), cell('node (i)', 'a', 70_000, 12)]),
    run([cell('divert', 'a', 140_000, 5.7, 8), cell('dnsdist', 'a', 76_000, 11.2)]),
    run([cell('divert', 'a', 120_000, 6.8), cell('dnsdist', 'a', 78_000, 10.9)]),
  ]);
  const find = (label: string) => merged.cells.find((c) => c.label === label);
  assert.deepEqual(
    [find('divert')?.qps, find('divert')?.usPerQuery, find('divert')?.reps, find('divert')?.minQps, find('divert')?.maxQps],
    [120_000, 6.8, 3, 90_000, 140_000],
  );
  assert.equal(find('divert')?.otherCpuPct, 8, 'the busiest round the rest of the machine had');
  assert.deepEqual([find('dnsdist')?.qps, find('dnsdist')?.usPerQuery], [78_000, 10.9]);
  assert.deepEqual([find('node (i)')?.qps, find('node (i)')?.reps], [70_000, 1]);
  assert.equal(merged.cells.length, 3);
  assert.equal(merged.exitCode, 0);
});

test('two rounds: the lower middle; a failed round shows in the exit code; RSS is the most of any round', () => {
  const merged = mergeRounds([run([cell('divert', 'b', 70_000, 13)]), run([cell('divert', 'b', 60_000, 15)], 1)]);
  assert.deepEqual([merged.cells[0].qps, merged.cells[0].usPerQuery], [60_000, 15]);
  assert.equal(merged.exitCode, 1);
  const rss = mergeRss([
    { primaryMb: 101, largestWorkerMb: 116, workers: 2, samples: 200 },
    { primaryMb: 110, largestWorkerMb: 141, workers: 2, samples: 220 },
    { primaryMb: undefined, largestWorkerMb: undefined, workers: 0, samples: 0 },
  ]);
  assert.deepEqual(rss, { primaryMb: 110, largestWorkerMb: 141, workers: 2, samples: 420 });
});
