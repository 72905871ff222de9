// The dashboard's load ring (GET /v1/stats/recent): rates from running totals, sampled
// only while asked for, bounded, and a total that went down (a worker replaced) is no rate.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RecentLoadSampler, TOP_NAMES } from '../src/admin/recent-load.js';
import { sumStats, type ServingStats } from '../src/serving/stats.js';

function figures(intercepted: number, forwarded: number, refused = 0): ServingStats {
  const stats = sumStats([]);
  return { ...stats, counts: { ...stats.counts, intercepted, forwarded, refused } };
}

test('samples are queries per second between readings: total, intercepted and forwarded', async () => {
  let at = 1_000_000;
  const readings = [figures(0, 0), figures(100, 40, 10), figures(300, 40, 10)];
  let reads = 0;
  const sampler = new RecentLoadSampler(async () => readings[Math.min(reads++, readings.length - 1)], {
    now: () => at,
    intervalMs: 60_000,
  });
  try {
    assert.deepEqual((await sampler.recent()).samples, [], 'the first reading is only a baseline');
    at += 2000;
    await sampler.sample();
    at += 1000;
    await sampler.sample();
    assert.deepEqual((await sampler.recent()).samples, [
      { at: 1_002_000, total: 75, intercepted: 50, forwarded: 20, names: {} },
      { at: 1_003_000, total: 200, intercepted: 200, forwarded: 0, names: {} },
    ]);
  } finally {
    sampler.stop();
  }
});

test('the ring keeps the newest samples; a total that went down counts as no queries; idle, it stops and forgets', async () => {
  let at = 0;
  let intercepted = 0;
  const sampler = new RecentLoadSampler(async () => figures(intercepted, 0), {
    now: () => at,
    keep: 3,
    idleStopMs: 10_000,
    intervalMs: 60_000,
  });
  try {
    await sampler.recent();
    for (const next of [10, 30, 60, 5]) {
      at += 1000;
      intercepted = next;
      await sampler.sample();
    }
    assert.deepEqual(
      (await sampler.recent()).samples.map((s) => s.intercepted),
      [20, 30, 0],
    );
    at += 20_000;
    await sampler.sample(); // nobody asked for 20 s: sampling stops
    assert.deepEqual((await sampler.recent()).samples, [], 'asked again: a fresh ring, no rate across the gap');
  } finally {
    sampler.stop();
  }
});

test('a reading that fails leaves the ring as it was', async () => {
  let at = 0;
  let fail = false;
  const sampler = new RecentLoadSampler(async () => (fail ? Promise.reject(new Error('worker restarting')) : figures(5, 5)), {
    now: () => at,
    intervalMs: 60_000,
  });
  try {
    await sampler.recent();
    fail = true;
    at += 1000;
    await sampler.sample();
    const recent = await sampler.recent();
    assert.deepEqual(recent.samples, []);
    assert.ok(Array.isArray(recent.upstreams));
  } finally {
    sampler.stop();
  }
});

test('each sample names the busiest names of its second, at most TOP_NAMES, busiest first; a quiet name is left out, a new one counts from zero', async () => {
  let at = 0;
  let counts = new Map<string, number>();
  const reading = (): ServingStats => {
    const stats = figures(0, 0);
    return { ...stats, queries: { ...stats.queries, names: new Map(counts) } };
  };
  const sampler = new RecentLoadSampler(async () => reading(), { now: () => at, intervalMs: 60_000 });
  try {
    counts = new Map([
      ['quiet.example', 7],
      ['www.example', 100],
    ]);
    await sampler.recent();
    // 2 s later: www 40 more, api (new since the baseline) 10, quiet none; 12 busy names in all
    counts = new Map([
      ['quiet.example', 7],
      ['www.example', 140],
      ['api.example', 10],
      ...Array.from({ length: 10 }, (_, i): [string, number] => [`n${i}.example`, 2 + i]),
    ]);
    at += 2000;
    await sampler.sample();
    const [sample] = (await sampler.recent()).samples;
    assert.deepEqual(Object.entries(sample.names).slice(0, 3), [
      ['www.example', 20],
      ['n9.example', 5.5],
      ['api.example', 5], // a tie goes by name
    ]);
    assert.equal(Object.keys(sample.names).length, TOP_NAMES);
    assert.ok(!('quiet.example' in sample.names));
    assert.equal(Object.keys(sample.names).at(-1), 'n4.example');
  } finally {
    sampler.stop();
  }
});
