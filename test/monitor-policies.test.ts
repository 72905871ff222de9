// The monitor's pure parts: rise/fall counting, the four policies, answer comparison.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  choose,
  nextHealth,
  UNKNOWN,
  type Health,
  type MirrorView,
  type PolicyMemory,
  type PolicyParams,
} from '../src/monitor/policies.js';
import { sameContent } from '../src/monitor/table-sync.js';
import { wantedOf } from '../src/monitor/monitor.js';
import { parseMonitorConfig } from '../src/monitor/config.js';

const EMPTY: PolicyMemory = { members: [], overloaded: [] };
const params = (policy: PolicyParams['policy'], extra: Partial<PolicyParams> = {}): PolicyParams => ({
  policy,
  count: 1,
  overload: 0.9,
  hysteresis: 0.1,
  ...extra,
});
const m = (address: string, extra: Partial<MirrorView> = {}): MirrorView => ({ address, priority: 0, weight: 1, up: true, ...extra });

function run(results: boolean[], rise = 2, fall = 3): Health['state'][] {
  let h: Health = UNKNOWN;
  return results.map((ok) => (h = nextHealth(h, ok, rise, fall)).state);
}

describe('rise and fall', () => {
  test('the first result sets the state at once', () => {
    assert.deepEqual(run([true]), ['up']);
    assert.deepEqual(run([false]), ['down']);
  });

  test('an up mirror goes down only after fall failures in a row', () => {
    assert.deepEqual(run([true, false, false, true, false, false, false]), ['up', 'up', 'up', 'up', 'up', 'up', 'down']);
  });

  test('a down mirror comes back only after rise successes in a row', () => {
    assert.deepEqual(run([false, true, false, true, true], 2, 3), ['down', 'down', 'down', 'down', 'up']);
  });
});

describe('failover', () => {
  test('the healthy mirrors of the best priority', () => {
    const mirrors = [m('10.0.0.3', { priority: 1 }), m('10.0.0.1'), m('10.0.0.2'), m('2001:db8::1', { priority: 0 })];
    assert.deepEqual(choose(mirrors, params('failover'), EMPTY).answer, { addresses: ['10.0.0.1', '10.0.0.2', '2001:db8::1'] });
  });

  test('the next priority when every mirror of the best one is down', () => {
    const mirrors = [m('10.0.0.1', { up: false }), m('10.0.0.3', { priority: 5 }), m('10.0.0.4', { priority: 9 })];
    assert.deepEqual(choose(mirrors, params('failover'), EMPTY).answer, { addresses: ['10.0.0.3'] });
  });

  test('no answer when every mirror is down: the caller keeps the last one', () => {
    assert.equal(choose([m('10.0.0.1', { up: false })], params('failover'), EMPTY).answer, null);
  });
});

test('all-healthy: every healthy mirror, whatever its priority, sorted', () => {
  const mirrors = [m('10.0.0.10', { priority: 3 }), m('10.0.0.9'), m('10.0.0.2', { up: false })];
  assert.deepEqual(choose(mirrors, params('all-healthy'), EMPTY).answer, { addresses: ['10.0.0.9', '10.0.0.10'] });
});

test('weighted: the healthy mirrors with their weights, and only theirs', () => {
  const mirrors = [m('10.0.0.1', { weight: 3 }), m('10.0.0.2', { weight: 1, up: false }), m('10.0.0.3', { weight: 0 })];
  assert.deepEqual(choose(mirrors, params('weighted'), EMPTY).answer, {
    addresses: ['10.0.0.1', '10.0.0.3'],
    weights: { '10.0.0.1': 3, '10.0.0.3': 0 },
  });
});

describe('least-loaded', () => {
  const ll = (extra: Partial<PolicyParams> = {}) => params('least-loaded', { count: 2, ...extra });
  const step = (mirrors: MirrorView[], memory: PolicyMemory, extra?: Partial<PolicyParams>) => choose(mirrors, ll(extra), memory);

  test('the N least-loaded healthy mirrors', () => {
    const mirrors = [
      m('10.0.0.1', { load: 0.5 }),
      m('10.0.0.2', { load: 0.1 }),
      m('10.0.0.3', { load: 0.2 }),
      m('10.0.0.4', { load: 0.05, up: false }),
    ];
    assert.deepEqual(step(mirrors, EMPTY).answer, { addresses: ['10.0.0.2', '10.0.0.3'] });
  });

  test('a member is replaced only by a mirror lower by more than the hysteresis', () => {
    const first = step([m('10.0.0.1', { load: 0.2 }), m('10.0.0.2', { load: 0.3 }), m('10.0.0.3', { load: 0.4 })], EMPTY);
    assert.deepEqual(first.answer!.addresses, ['10.0.0.1', '10.0.0.2']);
    // 10.0.0.3 is now lower than member 10.0.0.2, but by 0.05 only: no swap
    const second = step([m('10.0.0.1', { load: 0.2 }), m('10.0.0.2', { load: 0.3 }), m('10.0.0.3', { load: 0.25 })], first.memory);
    assert.deepEqual(second.answer!.addresses, ['10.0.0.1', '10.0.0.2']);
    // by 0.15: it takes the place of the worst member
    const third = step([m('10.0.0.1', { load: 0.2 }), m('10.0.0.2', { load: 0.4 }), m('10.0.0.3', { load: 0.25 })], second.memory);
    assert.deepEqual(third.answer!.addresses, ['10.0.0.1', '10.0.0.3']);
  });

  test('an overloaded mirror leaves, and returns only below overload − hysteresis', () => {
    const loads = (a: number) => [m('10.0.0.1', { load: a }), m('10.0.0.2', { load: 0.5 }), m('10.0.0.3', { load: 0.6 })];
    let c = step(loads(0.1), EMPTY);
    assert.deepEqual(c.answer!.addresses, ['10.0.0.1', '10.0.0.2']);
    c = step(loads(0.95), c.memory);
    assert.deepEqual(c.answer!.addresses, ['10.0.0.2', '10.0.0.3']);
    assert.deepEqual(c.memory.overloaded, ['10.0.0.1']);
    c = step(loads(0.85), c.memory); // below overload, not below overload − hysteresis
    assert.deepEqual(c.answer!.addresses, ['10.0.0.2', '10.0.0.3']);
    c = step(loads(0.1), c.memory);
    assert.deepEqual(c.answer!.addresses, ['10.0.0.1', '10.0.0.2']);
    assert.deepEqual(c.memory.overloaded, []);
  });

  test('when every healthy mirror is overloaded, the least loaded of them still answer', () => {
    const c = step([m('10.0.0.1', { load: 0.99 }), m('10.0.0.2', { load: 0.95 }), m('10.0.0.3', { load: 0.97 })], EMPTY, { count: 1 });
    assert.deepEqual(c.answer!.addresses, ['10.0.0.2']);
  });

  test('fewer healthy mirrors than N: all of them', () => {
    const c = step([m('10.0.0.1', { load: 0.1 }), m('10.0.0.2', { load: 0.2, up: false })], EMPTY, { count: 3 });
    assert.deepEqual(c.answer!.addresses, ['10.0.0.1']);
  });
});

describe('answers as the table holds them', () => {
  const service = (policy: string, extra: Record<string, unknown> = {}) =>
    parseMonitorConfig(
      {
        services: [
          { name: 's', names: ['x.example'], policy, check: { type: 'tcp', port: 1 }, mirrors: [{ address: '10.0.0.1' }], ...extra },
        ],
      },
      't',
    ).services[0];

  test('addresses are sorted into a and aaaa; only weighted carries weights and pick', () => {
    assert.deepEqual(wantedOf(service('failover'), { addresses: ['10.0.0.1', '2001:db8::1'] }), { a: ['10.0.0.1'], aaaa: ['2001:db8::1'] });
    assert.deepEqual(wantedOf(service('weighted', { pick: 1 }), { addresses: ['10.0.0.1'], weights: { '10.0.0.1': 4 } }), {
      a: ['10.0.0.1'],
      aaaa: [],
      weights: { '10.0.0.1': 4 },
      pick: 1,
    });
  });

  test('compared as sets; a missing weight counts as 1', () => {
    const entry = { a: ['10.0.0.2', '10.0.0.1'], aaaa: [], ttl: 30 };
    assert.ok(sameContent(entry, { a: ['10.0.0.1', '10.0.0.2'], aaaa: [] }));
    assert.ok(!sameContent(entry, { a: ['10.0.0.1'], aaaa: [] }));
    assert.ok(sameContent(entry, { a: ['10.0.0.1', '10.0.0.2'], aaaa: [], weights: { '10.0.0.1': 1, '10.0.0.2': 1 } }));
    assert.ok(!sameContent(entry, { a: ['10.0.0.1', '10.0.0.2'], aaaa: [], weights: { '10.0.0.1': 3, '10.0.0.2': 1 } }));
    assert.ok(!sameContent(null, { a: [], aaaa: [] }));
  });
});
