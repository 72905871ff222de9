// Diversions kept as records, through the admin API of a real divert serve on each table
// backend: POST /v1/diversions records them (chains collapse, a diversion back undoes
// one), GET lists them, DELETE forgets one (the entries stay), each change is an event of
// its own on /v1/events, and with Redis they outlive the process and are shared by replicas.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startDivert, TEST_TOKEN, type TestServer } from './helpers/divert.js';
import { BACKENDS } from './helpers/backends.js';
import { openEvents } from './helpers/sse.js';

interface Diversion {
  from: string;
  to: string;
  by: string;
  at: string;
}

const post = (body: unknown, client = 'test') => ({
  method: 'POST',
  headers: { 'content-type': 'application/json', 'x-divert-client': client },
  body: JSON.stringify(body),
});
const put = (a: string[], aaaa: string[] = []) => ({
  method: 'PUT',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ a, aaaa }),
});

async function diversions(divert: TestServer): Promise<[string, string][]> {
  const response = await divert.api('/v1/diversions');
  assert.equal(response.status, 200);
  const body = (await response.json()) as { diversions: Diversion[] };
  return body.diversions.map((r) => [r.from, r.to]);
}

async function divertOf(divert: TestServer, from: string, to: string, client?: string) {
  const response = await divert.api('/v1/diversions', post({ from, to }, client));
  assert.equal(response.status, 200, await response.clone().text());
  return (await response.json()) as { from: string; to: string; changed: { name: string }[]; diversion: Diversion | null };
}

async function clear(divert: TestServer): Promise<void> {
  for (const [from] of await diversions(divert)) {
    assert.equal((await divert.api(`/v1/diversions/${encodeURIComponent(from)}`, { method: 'DELETE' })).status, 200);
  }
}

for (const [backend, makeBackend] of BACKENDS) {
  describe(`diversion records (${backend} table)`, () => {
    let divert: TestServer;
    let options: Record<string, unknown>;
    let cleanup: () => Promise<void>;

    before(async () => {
      ({ options, cleanup } = await makeBackend('diversions'));
      divert = await startDivert({ ...options, upstream: ['127.0.0.1:9'], 'query-timeout-ms': '200' });
    });
    after(async () => {
      await divert.close();
      await cleanup();
    });

    test('POST keeps the record {from, to, by, at} besides rewriting the entries; GET lists them by from, in address order', async () => {
      await clear(divert);
      await divert.api('/v1/names/r1.div.test', put(['192.0.2.10']));
      const started = Date.now();
      const reply = await divertOf(divert, '192.0.2.10', '192.0.2.20', 'monitor-a');
      assert.deepEqual(
        reply.changed.map((e) => e.name),
        ['r1.div.test'],
      );
      assert.deepEqual(await divert.resolver.resolve4('r1.div.test'), ['192.0.2.20']);
      assert.deepEqual({ ...reply.diversion, at: undefined }, { from: '192.0.2.10', to: '192.0.2.20', by: 'monitor-a', at: undefined });
      const at = Date.parse(reply.diversion!.at);
      assert.ok(at >= started - 1000 && at <= Date.now() + 1000, `at ${reply.diversion!.at} is the time of the write`);

      // nothing answers these: still recorded (a proxy's address target may point there)
      await divertOf(divert, '192.0.2.9', '192.0.2.90');
      await divertOf(divert, '2001:DB8:0::1', '2001:db8::2');
      await divertOf(divert, '10.0.0.1', '10.0.0.2');
      const listed = (await (await divert.api('/v1/diversions')).json()) as { diversions: Diversion[] };
      assert.deepEqual(
        listed.diversions.map((r) => [r.from, r.to]),
        [
          ['10.0.0.1', '10.0.0.2'],
          ['192.0.2.9', '192.0.2.90'],
          ['192.0.2.10', '192.0.2.20'],
          ['2001:db8::1', '2001:db8::2'],
        ],
      );
      assert.deepEqual(listed.diversions[2], reply.diversion);
    });

    test('chains collapse: A → X then X → Y makes A → Y; X → Y while Y → Z is in force records X → Z', async () => {
      await clear(divert);
      await divertOf(divert, '198.51.100.1', '198.51.100.2');
      const collapsed = await divertOf(divert, '198.51.100.2', '198.51.100.3', 'second');
      assert.equal(collapsed.diversion?.to, '198.51.100.3');
      assert.deepEqual(await diversions(divert), [
        ['198.51.100.1', '198.51.100.3'],
        ['198.51.100.2', '198.51.100.3'],
      ]);
      const list = (await (await divert.api('/v1/diversions')).json()) as { diversions: Diversion[] };
      assert.equal(list.diversions[0].by, 'second', 'a record a diversion moved is that diversion’s');

      // .9 → .1 while .1 → .3: traffic for .9 goes to .3, one lookup away
      const followed = await divertOf(divert, '198.51.100.9', '198.51.100.1');
      assert.deepEqual([followed.to, followed.diversion?.to], ['198.51.100.1', '198.51.100.3']);
      assert.deepEqual(await diversions(divert), [
        ['198.51.100.1', '198.51.100.3'],
        ['198.51.100.2', '198.51.100.3'],
        ['198.51.100.9', '198.51.100.3'],
      ]);
    });

    test('a diversion back undoes one: X → Y then Y → X leaves no record of either, and moves the entries back', async () => {
      await clear(divert);
      await divert.api('/v1/names/back.div.test', put(['203.0.113.1']));
      await divertOf(divert, '203.0.113.1', '203.0.113.2');
      await divertOf(divert, '203.0.113.5', '203.0.113.2'); // another one to .2 follows .2's answers
      const back = await divertOf(divert, '203.0.113.2', '203.0.113.1');
      assert.equal(back.diversion, null);
      assert.deepEqual(await diversions(divert), [['203.0.113.5', '203.0.113.1']]);
      assert.deepEqual(await divert.resolver.resolve4('back.div.test'), ['203.0.113.1']);
    });

    test('DELETE forgets a record (200 with it) and leaves the entries; then 404; a bad address 400; IPv6 canonicalised', async () => {
      await clear(divert);
      await divert.api('/v1/names/del.div.test', put([], ['2001:db8::10']));
      await divertOf(divert, '2001:db8::10', '2001:db8::20', 'monitor-d');
      const events = await openEvents(divert.adminUrl + '/v1/events', TEST_TOKEN);
      try {
        const removed = await divert.api(`/v1/diversions/${encodeURIComponent('2001:DB8:0:0::10')}`, {
          method: 'DELETE',
          headers: { 'x-divert-client': 'op' },
        });
        assert.equal(removed.status, 200);
        const { diversion } = (await removed.json()) as { diversion: Diversion };
        assert.deepEqual([diversion.from, diversion.to, diversion.by], ['2001:db8::10', '2001:db8::20', 'monitor-d']);
        const [event] = await events.waitFor(1);
        const data = event.data as Diversion & { action: string };
        assert.deepEqual(
          [event.event, data.action, data.from, data.to, data.by],
          ['diversion', 'delete', '2001:db8::10', '2001:db8::20', 'op'],
        );
      } finally {
        events.close();
      }
      assert.deepEqual(await diversions(divert), []);
      assert.deepEqual(await divert.resolver.resolve6('del.div.test'), ['2001:db8::20'], 'the entries keep their answers');

      const again = await divert.api('/v1/diversions/2001:db8::10', { method: 'DELETE' });
      assert.equal(again.status, 404);
      const missing = (await again.json()) as { error: { code: string; message: string } };
      assert.equal(missing.error.code, 'NOT_FOUND');
      assert.match(missing.error.message, /2001:db8::10/);

      const bad = await divert.api('/v1/diversions/not-an-address', { method: 'DELETE' });
      assert.equal(bad.status, 400);
      const error = ((await bad.json()) as { error: { code: string; message: string } }).error;
      assert.equal(error.code, 'BAD_ADDRESS');
      assert.match(error.message, /from: "not-an-address" is not an IPv4 or IPv6 address/);

      const anonymous = await fetch(divert.adminUrl + '/v1/diversions');
      assert.equal(anonymous.status, 401, 'behind the admin token like the rest of /v1');
    });

    test('each change of the records is a `diversion` event on /v1/events, after the changes of the entries', async () => {
      await clear(divert);
      await divert.api('/v1/names/ev.div.test', put(['192.0.2.100']));
      await divertOf(divert, '192.0.2.99', '192.0.2.100');
      const events = await openEvents(divert.adminUrl + '/v1/events', TEST_TOKEN);
      try {
        await divertOf(divert, '192.0.2.100', '192.0.2.101', 'monitor-e');
        const got = await events.waitFor(3);
        await new Promise((r) => setTimeout(r, 100));
        assert.equal(events.events.length, 3);
        assert.deepEqual(
          got.map((e) => [e.event, (e.data as { name?: string; action?: string; from?: string; to?: string }).name ?? e.data]),
          [
            ['change', 'ev.div.test'],
            ['diversion', { action: 'set', from: '192.0.2.99', to: '192.0.2.101', by: 'monitor-e', at: (got[1].data as Diversion).at }],
            ['diversion', { action: 'set', from: '192.0.2.100', to: '192.0.2.101', by: 'monitor-e', at: (got[2].data as Diversion).at }],
          ],
        );
      } finally {
        events.close();
      }
    });

    if (backend === 'redis') {
      test('in Redis: a second replica sees the records and their events; a restarted divert serve lists them', async () => {
        await clear(divert);
        const replica = await startDivert({ ...options, upstream: ['127.0.0.1:9'] });
        try {
          const events = await openEvents(replica.adminUrl + '/v1/events', TEST_TOKEN);
          try {
            await divertOf(divert, '192.0.2.150', '192.0.2.151', 'elsewhere');
            const [event] = await events.waitFor(1);
            assert.equal(event.event, 'diversion');
            assert.deepEqual((event.data as Diversion).from, '192.0.2.150');
          } finally {
            events.close();
          }
          assert.deepEqual(await diversions(replica), [['192.0.2.150', '192.0.2.151']]);
          assert.equal((await replica.api('/v1/diversions/192.0.2.150', { method: 'DELETE' })).status, 200);
          assert.deepEqual(await diversions(divert), []);
        } finally {
          await replica.close();
        }

        await divertOf(divert, '192.0.2.160', '192.0.2.161', 'before-restart');
        await divert.close();
        divert = await startDivert({ ...options, upstream: ['127.0.0.1:9'], 'query-timeout-ms': '200' });
        const kept = (await (await divert.api('/v1/diversions')).json()) as { diversions: Diversion[] };
        assert.deepEqual(
          kept.diversions.map((r) => [r.from, r.to, r.by]),
          [['192.0.2.160', '192.0.2.161', 'before-restart']],
        );
      });
    }
  });
}
