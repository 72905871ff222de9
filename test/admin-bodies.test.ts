// Request bodies of any shape through the real admin routes (fastify's inject(): no socket
// needed): a bad body is a 400 in divert's error format that names the field, and never a
// 500 — not even JSON nested thousands deep, which once overflowed the stack while the
// error message quoted it.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { pino } from 'pino';
import { buildAdmin } from '../src/admin/admin-server.js';
import { EventStreams } from '../src/admin/events.js';
import { RecentLoadSampler } from '../src/admin/recent-load.js';
import { memoryTable } from './helpers/tables.js';

const TOKEN = 'bodies-token-0123456789abcdef';
const silent = pino({ level: 'silent' });

/** JSON text of `depth` nested lists: [[[…1…]]]. Built as text: JSON.stringify itself overflows the stack on such values. */
function nested(depth: number): string {
  return '['.repeat(depth) + '1' + ']'.repeat(depth);
}

/** JSON text of `depth` nested objects: {"x":{"x":…}}. */
function nestedObject(depth: number): string {
  return '{"x":'.repeat(depth) + '1' + '}'.repeat(depth);
}

describe('admin request bodies of any shape', () => {
  const table = memoryTable();
  const app = buildAdmin({
    table,
    token: TOKEN,
    log: silent,
    health: async () => ({ ok: true }),
    nameQueries: async () => new Map(),
    settle: async () => ({ unconfirmed: [] }),
    metrics: async () => ({ contentType: 'text/plain', body: '' }),
    events: new EventStreams(table, 4, silent),
    recentLoad: new RecentLoadSampler(() => Promise.reject(new Error('no serving figures in this test'))),
  });
  before(async () => app.ready());
  after(async () => app.close());

  const put = (body: unknown) =>
    app.inject({
      method: 'PUT',
      url: '/v1/names/www.bodies.test',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      payload: typeof body === 'string' ? body : JSON.stringify(body),
    });
  const divert = (body: string) =>
    app.inject({
      method: 'POST',
      url: '/v1/diversions',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      payload: body,
    });

  /** A refusal in divert's format: 400 (or 413 for a body over the limit) with a code and a message. */
  function assertRefused(res: Awaited<ReturnType<typeof put>>, what: string): { code: string; message: string } {
    assert.ok(res.statusCode === 400 || res.statusCode === 413, `${what}: HTTP ${res.statusCode} ${res.body.slice(0, 200)}`);
    const error = res.json<{ error: { code: string; message: string } }>().error;
    assert.equal(typeof error.code, 'string');
    assert.equal(typeof error.message, 'string');
    assert.ok(error.message.length < 1000, `${what}: the message quotes the value cut short (${error.message.length} characters)`);
    return error;
  }

  // 10,000 levels fit the 64 KiB body limit as [[[…]]]
  const DEEP = 10_000;
  /** Where the deep value goes: the body as JSON text with DEEP standing for it. */
  const positions: [string, string, RegExp][] = [
    ['the body itself', 'DEEP', /^(body: |x: unknown field)/],
    ['a', '{"a": DEEP}', /^a/],
    ['a[0]', '{"a": [DEEP]}', /^a\[0\]: /],
    ['aaaa[0]', '{"aaaa": [DEEP]}', /^aaaa\[0\]: /],
    ['ttl', '{"a": [], "ttl": DEEP}', /^ttl: /],
    ['weights', '{"a": ["192.0.2.1"], "weights": DEEP}', /^weights/],
    ['a weight', '{"a": ["192.0.2.1"], "weights": {"192.0.2.1": DEEP}}', /^weights\["192\.0\.2\.1"\]: /],
    ['pick', '{"a": ["192.0.2.1"], "pick": DEEP}', /^pick: /],
    ['rules', '{"a": [], "rules": DEEP}', /^rules/],
    ['rules[0]', '{"a": [], "rules": [DEEP]}', /^rules\[0\]: /],
    ['rules[0].networks', '{"a": [], "rules": [{"networks": DEEP, "a": ["192.0.2.2"]}]}', /^rules\[0\]\.networks/],
    ['rules[0].networks[0]', '{"a": [], "rules": [{"networks": [DEEP], "a": ["192.0.2.2"]}]}', /^rules\[0\]\.networks\[0\]: /],
    ['rules[0].days[0]', '{"a": [], "rules": [{"days": [DEEP], "a": ["192.0.2.2"]}]}', /^rules\[0\]\.days\[0\]: /],
    ['rules[0].from', '{"a": [], "rules": [{"from": DEEP, "to": "06:00", "a": ["192.0.2.2"]}]}', /^rules\[0\]\.from: /],
    ['rules[0].tz', '{"a": [], "rules": [{"days": ["mon"], "tz": DEEP, "a": ["192.0.2.2"]}]}', /^rules\[0\]\.tz: /],
    ['rules[0].a[0]', '{"a": [], "rules": [{"days": ["mon"], "a": [DEEP]}]}', /^rules\[0\]\.a\[0\]: /],
    ['rules[0].pick', '{"a": [], "rules": [{"days": ["mon"], "a": ["192.0.2.2"], "pick": DEEP}]}', /^rules\[0\]\.pick: /],
  ];
  for (const [where, template, field] of positions) {
    for (const [shape, deep] of [
      ['lists', nested(DEEP)],
      ['objects', nestedObject(DEEP / 2)],
    ] as const) {
      test(`${DEEP} levels of ${shape} in ${where}: 400 naming the field, nothing written`, async () => {
        const error = assertRefused(await put(template.replace('DEEP', deep)), where);
        assert.match(error.message, field);
        assert.equal(await table.get('www.bodies.test'), null);
      });
    }
  }

  test('deep nesting in a diversion body: 400 naming the field', async () => {
    for (const body of [
      `{"from": ${nested(DEEP)}, "to": "192.0.2.9"}`,
      `{"from": "192.0.2.1", "to": ${nestedObject(DEEP / 2)}}`,
      nested(DEEP),
    ]) {
      const error = assertRefused(await divert(body), 'diversion');
      assert.match(error.message, /^(from|to|body): /);
    }
  });

  test('JSON that does not parse, and JSON nested deeper than the parser takes: 400', async () => {
    for (const text of ['{"a": [', '['.repeat(30_000), '{"__proto__": {"a": 1}}', '{"constructor": {"prototype": {}}}']) {
      assertRefused(await put(text), text.slice(0, 20));
    }
  });

  test("arbitrary JSON in every field (property): 200 or a 400 in divert's format, never a 500", async () => {
    // a deep list as a value JSON.stringify can still write (the deepest are above)
    const deepList = fc.integer({ min: 0, max: 1500 }).map((d) => JSON.parse(nested(d)) as unknown);
    const anyValue = fc.oneof(fc.jsonValue({ maxDepth: 6 }), deepList);
    const body = fc.oneof(
      anyValue,
      fc.record({ a: anyValue, aaaa: anyValue, ttl: anyValue, weights: anyValue, pick: anyValue, rules: anyValue }, { requiredKeys: [] }),
      fc.record({
        a: fc.constant(['192.0.2.1']),
        rules: fc.array(
          fc.dictionary(fc.constantFrom('networks', 'days', 'from', 'to', 'tz', 'a', 'aaaa', 'weights', 'pick', 'x'), anyValue),
          { maxLength: 3 },
        ),
      }),
    );
    await fc.assert(
      fc.asyncProperty(body, async (b) => {
        const res = await put(b);
        if (res.statusCode === 200) return;
        assertRefused(res, JSON.stringify(b)?.slice(0, 100) ?? String(b));
      }),
      { seed: 13, numRuns: 400 },
    );
  });
});
