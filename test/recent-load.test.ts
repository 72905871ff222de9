// The dashboard's load ring (GET /v1/stats/recent): rates from running totals, sampled
// only while asked for, bounded, and a total that went down (a worker replaced) is no rate.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RecentLoadSampler } from '../src/admin/recent-load.js';
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
      { at: 1_002_000, total: 75, intercepted: 50, forwarded: 20 },
      { at: 1_003_000, total: 200, intercepted: 200, forwarded: 0 },
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
