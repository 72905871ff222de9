// Upstream order with a clock the test moves by hand: healthy upstreams in the order
// given, failing ones at the back for a back-off that doubles up to a cap.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  carryHealth,
  DEFAULT_POOL_OPTIONS,
  UpstreamPool,
  type PoolNews,
  type PoolOptions,
  type Upstream,
} from '../src/upstream/upstream-pool.js';

const ADDRESSES = [
  { host: '192.0.2.1', port: 53 },
  { host: '192.0.2.2', port: 5353 },
  { host: '2001:db8::3', port: 53 },
];

function setup(options: Partial<PoolOptions> = {}) {
  let now = 1_000_000;
  const pool = new UpstreamPool(ADDRESSES, {
    failuresToMarkDown: 3,
    initialBackoffMs: 2_000,
    maxBackoffMs: 16_000,
    ...options,
    now: () => now,
  });
  const [a, b, c] = pool.upstreams;
  return {
    pool,
    a,
    b,
    c,
    advance: (ms: number) => {
      now += ms;
    },
    order: () => pool.order().map((u) => u.label),
    failTimes: (u: Upstream, n: number) => {
      for (let i = 0; i < n; i++) pool.failed(u);
    },
  };
}

const A = '192.0.2.1:53';
const B = '192.0.2.2:5353';
const C = '[2001:db8::3]:53';

describe('UpstreamPool', () => {
  test('labels and families', () => {
    const { pool } = setup();
    assert.deepEqual(
      pool.upstreams.map((u) => [u.label, u.family, u.host, u.port]),
      [
        [A, 4, '192.0.2.1', 53],
        [B, 4, '192.0.2.2', 5353],
        [C, 6, '2001:db8::3', 53],
      ],
    );
  });

  test('default options: 3 failures, 2 s back-off, 60 s cap', () => {
    assert.deepEqual(DEFAULT_POOL_OPTIONS, { failuresToMarkDown: 3, initialBackoffMs: 2_000, maxBackoffMs: 60_000 });
  });

  test('order is kept while all are healthy, and with successes in any order', () => {
    const { pool, a, b, c, order, advance } = setup();
    assert.deepEqual(order(), [A, B, C]);
    pool.succeeded(c, 5);
    pool.succeeded(a, 50);
    advance(10_000);
    assert.deepEqual(order(), [A, B, C]);
    assert.equal(c.lastRttMs, 5);
    assert.equal(b.lastRttMs, 0);
  });

  const belowThreshold: { name: string; failures: number; down: boolean; order: string[] }[] = [
    { name: 'one failure keeps it in place', failures: 1, down: false, order: [A, B, C] },
    { name: 'failuresToMarkDown - 1 failures keep it in place', failures: 2, down: false, order: [A, B, C] },
    { name: 'failuresToMarkDown failures move it to the back', failures: 3, down: true, order: [B, C, A] },
  ];
  for (const c of belowThreshold) {
    test(c.name, () => {
      const s = setup();
      s.failTimes(s.a, c.failures);
      assert.equal(s.pool.isDown(s.a), c.down);
      assert.deepEqual(s.order(), c.order);
      assert.equal(s.a.consecutiveFailures, c.failures);
    });
  }

  test('a middle upstream that goes down moves behind the healthy ones', () => {
    const s = setup();
    s.failTimes(s.b, 3);
    assert.deepEqual(s.order(), [A, C, B]);
  });

  test('failuresToMarkDown 1: the first failure moves it to the back', () => {
    const s = setup({ failuresToMarkDown: 1 });
    s.pool.failed(s.a);
    assert.deepEqual(s.order(), [B, C, A]);
  });

  test('back-off: initial, then doubling with each further failure, up to the cap', () => {
    const s = setup();
    const seen: number[] = [];
    s.failTimes(s.a, 3);
    seen.push(s.a.backoffMs);
    for (let i = 0; i < 5; i++) {
      s.pool.failed(s.a);
      seen.push(s.a.backoffMs);
    }
    assert.deepEqual(seen, [2_000, 4_000, 8_000, 16_000, 16_000, 16_000]);
  });

  test('back-off doubling stops at a cap that is not a power-of-two multiple', () => {
    const s = setup({ initialBackoffMs: 3_000, maxBackoffMs: 10_000 });
    const seen: number[] = [];
    s.failTimes(s.a, 2);
    for (let i = 0; i < 4; i++) {
      s.pool.failed(s.a);
      seen.push(s.a.backoffMs);
    }
    assert.deepEqual(seen, [3_000, 6_000, 10_000, 10_000]);
  });

  test('it is down for exactly its back-off, measured from the last failure', () => {
    const s = setup();
    s.failTimes(s.a, 3);
    s.advance(1_999);
    assert.equal(s.pool.isDown(s.a), true);
    assert.deepEqual(s.order(), [B, C, A]);
    s.advance(1);
    assert.equal(s.pool.isDown(s.a), false);
    assert.deepEqual(s.order(), [A, B, C], 'back in its own place once the back-off ends');
  });

  test('a probe that fails after the back-off sends it back for twice as long', () => {
    const s = setup();
    s.failTimes(s.a, 3);
    s.advance(2_000);
    assert.deepEqual(s.order(), [A, B, C]);
    s.pool.failed(s.a);
    assert.deepEqual(s.order(), [B, C, A]);
    s.advance(3_999);
    assert.deepEqual(s.order(), [B, C, A]);
    s.advance(1);
    assert.deepEqual(s.order(), [A, B, C]);
  });

  test('a success resets failures and back-off', () => {
    const s = setup();
    s.failTimes(s.a, 5);
    assert.equal(s.a.backoffMs, 8_000);
    s.pool.succeeded(s.a, 12);
    assert.equal(s.pool.isDown(s.a), false);
    assert.deepEqual(s.order(), [A, B, C]);
    assert.equal(s.a.consecutiveFailures, 0);
    assert.equal(s.a.backoffMs, 0);
    assert.equal(s.a.lastRttMs, 12);
    // counting starts again: two failures keep it up, the third gives the initial back-off
    s.failTimes(s.a, 2);
    assert.deepEqual(s.order(), [A, B, C]);
    s.pool.failed(s.a);
    assert.deepEqual(s.order(), [B, C, A]);
    assert.equal(s.a.backoffMs, 2_000);
  });

  test('a success between failures restarts the count', () => {
    const s = setup();
    s.failTimes(s.a, 2);
    s.pool.succeeded(s.a, 1);
    s.failTimes(s.a, 2);
    assert.deepEqual(s.order(), [A, B, C]);
  });

  test('when all are down, all are still returned', () => {
    const s = setup();
    for (const u of [s.a, s.b, s.c]) s.failTimes(u, 3);
    const order = s.order();
    assert.equal(order.length, 3);
    assert.deepEqual([...order].sort(), [A, B, C].sort());
    for (const u of s.pool.upstreams) assert.equal(s.pool.isDown(u), true);
  });

  test('two down: the healthy one first, then the down ones', () => {
    const s = setup();
    s.failTimes(s.a, 3);
    s.failTimes(s.c, 3);
    const order = s.order();
    assert.equal(order[0], B);
    assert.deepEqual(order.slice(1).sort(), [A, C].sort());
  });

  test('upstreams recover independently as their own back-offs end', () => {
    const s = setup();
    s.failTimes(s.a, 4); // 4 s
    s.failTimes(s.b, 3); // 2 s
    assert.deepEqual(s.order()[0], C);
    s.advance(2_000);
    assert.deepEqual(s.order(), [B, C, A]);
    s.advance(2_000);
    assert.deepEqual(s.order(), [A, B, C]);
  });

  test('an empty pool orders to nothing', () => {
    const pool = new UpstreamPool([], { failuresToMarkDown: 3, initialBackoffMs: 1, maxBackoffMs: 2, now: () => 0 });
    assert.deepEqual(pool.order(), []);
  });
});

describe('pools sharing upstreams (one per worker)', () => {
  test('failures heard from another pool count here, and a recovery heard there clears them', () => {
    const here = setup();
    const there = setup();
    const news: PoolNews[] = [];
    there.pool.onNews = (n) => news.push(n);
    there.failTimes(there.a, 2);
    here.failTimes(here.a, 1);
    for (const n of news) here.pool.hear(n);
    assert.deepEqual(here.order(), [B, '[2001:db8::3]:53', A], 'two failures there and one here: down');
    assert.deepEqual(
      news.map((n) => n.event),
      ['failed', 'failed'],
    );

    news.length = 0;
    there.pool.succeeded(there.a, 5);
    there.pool.succeeded(there.a, 5);
    assert.deepEqual(news, [{ upstream: A, event: 'recovered' }], 'only the first success after failures is news');
    here.pool.hear(news[0]);
    assert.deepEqual(here.order(), [A, B, '[2001:db8::3]:53']);
  });

  test('failures of an upstream already down are not news', () => {
    const { pool, a, failTimes } = setup();
    const news: PoolNews[] = [];
    pool.onNews = (n) => news.push(n);
    failTimes(a, 5);
    assert.equal(news.length, 3);
  });
});

describe('a reload keeps an upstream’s health (carryHealth)', () => {
  test('a backed-off upstream stays at the back with its figures; its certificate check is the new list’s', () => {
    const options = { ...DEFAULT_POOL_OPTIONS, now: () => 1_000_000 };
    const dot = (ca: string) => ({ host: '192.0.2.1', port: 853, tls: { name: 'dns.test', ca } });
    const old = new UpstreamPool([dot('OLD CA'), ADDRESSES[1]], options);
    for (let i = 0; i < 3; i++) old.failed(old.upstreams[0]);
    old.succeeded(old.upstreams[1], 12);
    const next = new UpstreamPool([dot('NEW CA'), ADDRESSES[1]], options);
    for (const u of next.upstreams)
      carryHealth(
        u,
        old.upstreams.find((p) => p.label === u.label)!,
      );
    const [tls, plain] = next.upstreams;
    assert.equal(next.isDown(tls), true, 'still backed off after the reload');
    assert.deepEqual(
      next.order().map((u) => u.label),
      [plain.label, tls.label],
    );
    assert.equal(tls.tls?.ca, 'NEW CA', 'the reloaded CA, not the one carried over');
    assert.deepEqual([plain.answered, plain.lastRttMs], [1, 12], 'figures carried over');
  });
});
