// The admin API on one instance, with each table backend: every endpoint and error
// status, compare-and-set, atomic import and diversion, history, events, and a write
// answered by the very next DNS query.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { startDivert, TEST_TOKEN, TEST_WORKERS, type TestServer, decode, udpAsk } from './helpers/divert.js';
import { injectAdmin, tableOf, type InjectedAdmin } from './helpers/admin.js';
import { BACKENDS } from './helpers/backends.js';
import { openEvents } from './helpers/sse.js';
import { startRedis } from './helpers/redis.js';
import { sumOf } from './helpers/metrics.js';
import { LONGEST_NAME, rawQuery } from './helpers/raw.js';
import { buildAdmin } from '../src/admin/admin-server.js';
import { EventStreams } from '../src/admin/events.js';
import { RecentLoadSampler } from '../src/admin/recent-load.js';
import { memoryTable } from './helpers/tables.js';
import { pino } from 'pino';

const json = (body: unknown) => ({ method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
const post = (body: unknown) => ({ ...json(body), method: 'POST' });

async function errorOf(response: Response): Promise<{ status: number; code: string; message: string }> {
  const body = (await response.json()) as { error: { code: string; message: string } };
  return { status: response.status, ...body.error };
}

for (const [backend, makeBackend] of BACKENDS) {
  describe(`admin API (${backend} table)`, () => {
    let divert: TestServer;
    let options: Record<string, unknown>;
    let cleanup: () => Promise<void>;

    before(async () => {
      const b = await makeBackend('admin');
      ({ options, cleanup } = b);
      divert = await startDivert({ ...options, upstream: ['127.0.0.1:9'], 'query-timeout-ms': '200' });
    });
    after(async () => {
      await divert.close();
      await cleanup();
    });

    test('PUT creates, GET reads it back with its version, and the very next DNS query answers it', async () => {
      const put = await divert.api('/v1/names/WWW.Corp.Test', json({ a: ['192.0.2.10', '192.0.2.11'], aaaa: ['2001:DB8::10'], ttl: 60 }));
      assert.equal(put.status, 200);
      const entry = (await put.json()) as { name: string; a: string[]; aaaa: string[]; ttl: number; version: number; updatedAt: string };
      assert.equal(entry.name, 'www.corp.test');
      assert.deepEqual(entry.aaaa, ['2001:db8::10']);
      assert.equal(put.headers.get('etag'), `"${entry.version}"`);
      assert.deepEqual((await divert.resolver.resolve4('www.corp.test')).sort(), ['192.0.2.10', '192.0.2.11']);

      const get = await divert.api('/v1/names/www.corp.test');
      assert.deepEqual(await get.json(), entry);

      // a change is answered by the next query, not after some cache expires
      await divert.api('/v1/names/www.corp.test', json({ a: ['192.0.2.99'], ttl: 60 }));
      assert.deepEqual(await divert.resolver.resolve4('www.corp.test'), ['192.0.2.99']);
      await assert.rejects(divert.resolver.resolve6('www.corp.test'), { code: 'ENODATA' });
    });

    test('an entry says who made its last change (updatedBy: X-Divert-Client, else "admin"), in GET, the list and PUT replies', async () => {
      const as = (client: string) => ({ 'content-type': 'application/json', 'x-divert-client': client });
      const put = await divert.api('/v1/names/by.corp.test', { ...json({ a: ['192.0.2.40'] }), headers: as('operator-a') });
      assert.equal(((await put.json()) as { updatedBy?: string }).updatedBy, 'operator-a');
      await divert.api('/v1/names/by.corp.test', { ...json({ a: ['192.0.2.41'] }), headers: as('operator-b') });
      const got = (await (await divert.api('/v1/names/by.corp.test')).json()) as { a: string[]; updatedBy?: string };
      assert.deepEqual([got.a, got.updatedBy], [['192.0.2.41'], 'operator-b']);
      const listed = (await (await divert.api('/v1/names?prefix=by.corp.')).json()) as { names: unknown[] };
      assert.deepEqual(listed.names, [got]);
      await divert.api('/v1/names/by.corp.test', json({ a: ['192.0.2.42'] }));
      assert.equal(((await (await divert.api('/v1/names/by.corp.test')).json()) as { updatedBy?: string }).updatedBy, 'admin');
    });

    test('any DNS name (253 characters, escapes, upper case, octets over 127) is written, answered, read, kept in history and deleted', async () => {
      const high = Buffer.from([200, ...Buffer.from('HIGH')]);
      const names: [string, (string | Buffer)[], string][] = [
        [LONGEST_NAME, LONGEST_NAME.split('.'), LONGEST_NAME],
        ['Sp\\032Ace.Esc.Test', ['SP ACE', 'esc', 'TEST'], 'sp\\032ace.esc.test'],
        ['dot\\.in.esc.test', ['dot.in', 'esc', 'test'], 'dot\\046in.esc.test'],
        ['\\200high.esc.test', [high, 'esc', 'test'], '\\200high.esc.test'],
        ['a/b?c#d%e.esc.test', ['a/b?c#d%e', 'esc', 'test'], 'a\\047b\\063c\\035d\\037e.esc.test'],
        // a wildcard below an escaped name answers the names below it
        ['*.Sp\\ Ace.Esc.Test', ['deep', 'Er', 'SP ACE', 'esc', 'test'], '*.sp\\032ace.esc.test'],
      ];
      for (const [given, wire, canonical] of names) {
        const path = `/v1/names/${encodeURIComponent(given)}`;
        const put = await divert.api(path, json({ a: ['192.0.2.50'] }));
        assert.equal(put.status, 200, `PUT ${given}: ${await put.clone().text()}`);
        const entry = (await put.json()) as { name: string; version: number };
        assert.equal(entry.name, canonical);
        const reply = decode(await udpAsk(divert.port, rawQuery(wire)));
        assert.equal(reply.rcode, 'NOERROR', `the query for ${given}`);
        assert.deepEqual(
          reply.answers?.map((a) => (a as { data: string }).data),
          ['192.0.2.50'],
          `the query for ${given}`,
        );
        for (const spelling of [given, canonical]) {
          const get = await divert.api(`/v1/names/${encodeURIComponent(spelling)}`);
          assert.equal(get.status, 200, `GET ${spelling}`);
          assert.deepEqual(await get.json(), entry);
        }
        const history = (await (await divert.api(`${path}/history`)).json()) as {
          name: string;
          history: { op: string; version: number }[];
        };
        assert.equal(history.name, canonical);
        assert.deepEqual(
          history.history.map((h) => [h.op, h.version]),
          [['put', entry.version]],
        );
        assert.equal((await divert.api(path, { method: 'DELETE' })).status, 204, `DELETE ${given}`);
        assert.equal((await errorOf(await divert.api(path))).code, 'NOT_FOUND');
      }
      // the longest path segment a name takes: each of its 250 octets as \DDD, percent-encoded
      const escaped =
        LONGEST_NAME.split('.')
          .map((l) => [...l].map((c) => `\\${String(c.charCodeAt(0)).padStart(3, '0')}`).join(''))
          .join('.') + '.';
      assert.equal(encodeURIComponent(escaped).length, 1504);
      assert.equal((await divert.api(`/v1/names/${encodeURIComponent(escaped)}`, json({ a: ['192.0.2.51'] }))).status, 200);
      assert.equal(((await (await divert.api(`/v1/names/${LONGEST_NAME}`)).json()) as { a: string[] }).a[0], '192.0.2.51');
      assert.equal((await divert.api(`/v1/names/${encodeURIComponent(escaped)}`, { method: 'DELETE' })).status, 204);
    });

    test('If-Match: a stale version gets 412 and changes nothing; 0 means create-only', async () => {
      const v1 = ((await (await divert.api('/v1/names/cas.corp.test', json({ a: ['192.0.2.1'] }))).json()) as { version: number }).version;
      const ok = await divert.api('/v1/names/cas.corp.test', {
        ...json({ a: ['192.0.2.2'] }),
        headers: { 'content-type': 'application/json', 'if-match': `"${v1}"` },
      });
      assert.equal(ok.status, 200);
      const stale = await errorOf(
        await divert.api('/v1/names/cas.corp.test', {
          ...json({ a: ['192.0.2.3'] }),
          headers: { 'content-type': 'application/json', 'if-match': String(v1) },
        }),
      );
      assert.equal(stale.status, 412);
      assert.equal(stale.code, 'VERSION_MISMATCH');
      const createOnly = await divert.api('/v1/names/cas.corp.test', {
        ...json({ a: ['192.0.2.4'] }),
        headers: { 'content-type': 'application/json', 'if-match': '0' },
      });
      assert.equal(createOnly.status, 412);
      assert.deepEqual(await divert.resolver.resolve4('cas.corp.test'), ['192.0.2.2']);
      assert.equal(
        (
          await errorOf(
            await divert.api('/v1/names/cas.corp.test', {
              ...json({ a: ['192.0.2.4'] }),
              headers: { 'content-type': 'application/json', 'if-match': 'yesterday' },
            }),
          )
        ).status,
        400,
      );
    });

    test('50 parallel conditional PUTs with the same If-Match: exactly one succeeds', async () => {
      const v = ((await (await divert.api('/v1/names/race.corp.test', json({ a: ['192.0.2.1'] }))).json()) as { version: number }).version;
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          divert.api('/v1/names/race.corp.test', {
            ...json({ a: [`198.51.100.${i + 1}`] }),
            headers: { 'content-type': 'application/json', 'if-match': `"${v}"`, 'x-divert-client': `monitor-${i}` },
          }),
        ),
      );
      const statuses = results.map((r) => r.status);
      assert.equal(statuses.filter((s) => s === 200).length, 1, 'one winner');
      assert.equal(statuses.filter((s) => s === 412).length, 49, 'every other one told');
      const winner = results.findIndex((r) => r.status === 200);
      assert.deepEqual(await divert.resolver.resolve4('race.corp.test'), [`198.51.100.${winner + 1}`]);
      await Promise.all(results.map((r) => r.body?.cancel() ?? Promise.resolve()));
    });

    test('DELETE stops intercepting: the name is forwarded again', async () => {
      await divert.api('/v1/names/gone.corp.test', json({ a: ['192.0.2.1'] }));
      assert.deepEqual(await divert.resolver.resolve4('gone.corp.test'), ['192.0.2.1']);
      assert.equal((await divert.api('/v1/names/gone.corp.test', { method: 'DELETE' })).status, 204);
      // the upstream (nothing listens there) is asked now: SERVFAIL, not the old address
      await assert.rejects(divert.resolver.resolve4('gone.corp.test'), { code: 'ESERVFAIL' });
    });

    test('a wildcard added after names below it were seen as not intercepted takes them over at once, and lets go when deleted', async () => {
      // both names are forwarded first (SERVFAIL: nothing listens upstream), so the cache holds "not intercepted"
      await assert.rejects(divert.resolver.resolve4('a.late.test'), { code: 'ESERVFAIL' });
      await assert.rejects(divert.resolver.resolve4('b.c.late.test'), { code: 'ESERVFAIL' });
      assert.equal((await divert.api('/v1/names/*.late.test', json({ a: ['192.0.2.77'] }))).status, 200);
      assert.deepEqual(await divert.resolver.resolve4('a.late.test'), ['192.0.2.77']);
      assert.deepEqual(await divert.resolver.resolve4('b.c.late.test'), ['192.0.2.77']);
      // a closer wildcard takes over the names below it from the farther one
      assert.equal((await divert.api('/v1/names/*.c.late.test', json({ a: ['192.0.2.78'] }))).status, 200);
      assert.deepEqual(await divert.resolver.resolve4('b.c.late.test'), ['192.0.2.78']);
      assert.equal((await divert.api('/v1/names/*.late.test', { method: 'DELETE' })).status, 204);
      await assert.rejects(divert.resolver.resolve4('a.late.test'), { code: 'ESERVFAIL' });
      assert.deepEqual(await divert.resolver.resolve4('b.c.late.test'), ['192.0.2.78']);
    });

    test('import applies a zone file whole, or nothing with the line of the error', async () => {
      const good = '$ORIGIN imp.test.\na IN A 192.0.2.1\nb IN AAAA 2001:db8::2\n';
      const ok = await divert.api('/v1/import?file=good.zone', { method: 'POST', headers: { 'content-type': 'text/dns' }, body: good });
      assert.equal(ok.status, 200);
      assert.deepEqual(((await ok.json()) as { changed: { name: string }[] }).changed.map((e) => e.name).sort(), [
        'a.imp.test',
        'b.imp.test',
      ]);

      const bad = '$ORIGIN imp.test.\na IN A 198.51.100.1\nc IN A 198.51.100.3\nd IN A 999.1.1.1\n';
      const refused = await errorOf(
        await divert.api('/v1/import?file=bad.zone', { method: 'POST', headers: { 'content-type': 'text/dns' }, body: bad }),
      );
      assert.equal(refused.status, 400);
      assert.equal(refused.code, 'BAD_ZONE');
      assert.match(refused.message, /^bad\.zone:4: "999\.1\.1\.1"/);
      assert.deepEqual(await divert.resolver.resolve4('a.imp.test'), ['192.0.2.1'], 'a unchanged');
      assert.equal((await divert.api('/v1/names/c.imp.test')).status, 404, 'c not created');
    });

    test('import of 80,000 records of one name: each address once in file order, the lowest TTL, weights naming them', async () => {
      const v4 = Array.from({ length: 40 }, (_, i) => `198.51.100.${i + 1}`);
      const v6 = Array.from({ length: 8 }, (_, i) => `2001:DB8::${(i + 10).toString(16).toUpperCase()}`);
      const lines = ['$ORIGIN big.imp.test.', '$TTL 90', ';divert www {"weights":{"198.51.100.40":5,"2001:db8::11":2}}'];
      for (let i = 0; i < 80_000; i++) {
        // every address in many records, not in list order; one record, deep in the file, has the lowest TTL
        const ttl = i === 55_555 ? ' 20' : i % 3 === 0 ? ` ${60 + (i % 7)}` : '';
        lines.push(i % 5 === 4 ? `www${ttl} IN AAAA ${v6[(i * 3) % 8]}` : `www${ttl} IN A ${v4[(i * 7) % 40]}`);
      }
      // rows 4, 9, 14... are AAAA: the A records name 32 of the 40 addresses
      const named = new Set(
        Array.from({ length: 80_000 }, (_, i) => i)
          .filter((i) => i % 5 !== 4)
          .map((i) => v4[(i * 7) % 40]),
      );
      const firstSeen = (family: 'A' | 'AAAA') => [
        ...new Set(lines.filter((l) => l.includes(` ${family} `)).map((l) => l.split(' ').pop()!.toLowerCase())),
      ];
      const response = await divert.api('/v1/import?file=big.zone', {
        method: 'POST',
        headers: { 'content-type': 'text/dns' },
        body: lines.join('\n') + '\n',
      });
      assert.equal(response.status, 200);
      assert.deepEqual(
        ((await response.json()) as { changed: { name: string }[] }).changed.map((e) => e.name),
        ['www.big.imp.test'],
      );
      const entry = (await (await divert.api('/v1/names/www.big.imp.test')).json()) as {
        a: string[];
        aaaa: string[];
        ttl: number;
        weights: Record<string, number>;
      };
      assert.deepEqual(entry.a, firstSeen('A'));
      assert.deepEqual(entry.aaaa, firstSeen('AAAA'));
      assert.deepEqual(entry.a.slice(0, 3), ['198.51.100.1', '198.51.100.8', '198.51.100.15']);
      assert.equal(entry.ttl, 20);
      assert.deepEqual(entry.weights, { '198.51.100.40': 5, '2001:db8::11': 2 });
      assert.equal(entry.a.length, 32);
      assert.deepEqual((await divert.resolver.resolve4('www.big.imp.test')).sort(), [...named].sort());
      assert.deepEqual((await divert.resolver.resolve6('www.big.imp.test')).sort(), v6.map((a) => a.toLowerCase()).sort());
    });

    test('diversion: the three names answering X answer Z, one version step and one event each', async () => {
      const X = '203.0.113.10',
        Y = '203.0.113.20',
        Z = '203.0.113.30';
      const before: Record<string, number> = {};
      for (const [name, a] of [
        ['d1.div.test', [X]],
        ['d2.div.test', [X, Y]],
        ['d3.div.test', ['192.0.2.1', X]],
        ['d4.div.test', [Y]],
      ] as const) {
        before[name] = ((await (await divert.api(`/v1/names/${name}`, json({ a }))).json()) as { version: number }).version;
      }
      const events = await openEvents(divert.adminUrl + '/v1/events', TEST_TOKEN);
      try {
        const response = await divert.api('/v1/diversions', {
          ...post({ from: X, to: Z }),
          headers: { 'content-type': 'application/json', 'x-divert-client': 'monitor-test' },
        });
        assert.equal(response.status, 200);
        const changed = ((await response.json()) as { changed: { name: string; a: string[]; version: number; updatedBy?: string }[] })
          .changed;
        assert.deepEqual(changed.map((e) => e.name).sort(), ['d1.div.test', 'd2.div.test', 'd3.div.test']);
        assert.deepEqual(
          changed.map((e) => e.updatedBy),
          ['monitor-test', 'monitor-test', 'monitor-test'],
        );
        for (const e of changed) assert.ok(e.version > before[e.name], `${e.name} got a new version`);
        assert.deepEqual(await divert.resolver.resolve4('d1.div.test'), [Z]);
        assert.deepEqual((await divert.resolver.resolve4('d2.div.test')).sort(), [Y, Z].sort());
        assert.deepEqual((await divert.resolver.resolve4('d3.div.test')).sort(), ['192.0.2.1', Z].sort());
        assert.deepEqual(await divert.resolver.resolve4('d4.div.test'), [Y], 'the name answering Y is untouched');
        const all = await events.waitFor(4);
        await new Promise((r) => setTimeout(r, 100));
        assert.equal(events.events.length, 4, 'exactly one event per changed name, and one for the diversion record');
        const got = all.filter((e) => e.event === 'change');
        assert.deepEqual(got.map((e) => (e.data as { name: string }).name).sort(), ['d1.div.test', 'd2.div.test', 'd3.div.test']);
        assert.deepEqual(
          got.map((e) => (e.data as { entry: { updatedBy?: string } }).entry.updatedBy),
          ['monitor-test', 'monitor-test', 'monitor-test'],
          'the change stream carries who made each change',
        );
        assert.deepEqual(
          all.filter((e) => e.event !== 'change').map((e) => [e.event, (e.data as { action: string; from: string; to: string }).from]),
          [['diversion', X]],
        );
        const history = (
          (await (await divert.api('/v1/names/d2.div.test/history')).json()) as {
            history: { op: string; by: string; old: { a: string[] }; new: { a: string[] } }[];
          }
        ).history;
        assert.equal(history[0].op, 'divert');
        assert.equal(history[0].by, 'monitor-test');
        assert.deepEqual(history[0].old.a, [X, Y]);
        assert.deepEqual(history[0].new.a, [Z, Y]);
      } finally {
        events.close();
      }
      const mixed = await errorOf(await divert.api('/v1/diversions', post({ from: X, to: '2001:db8::1' })));
      assert.equal(mixed.status, 400);
      assert.equal((await errorOf(await divert.api('/v1/diversions', post({ from: X })))).status, 400);
    });

    test('/healthz and /metrics', async () => {
      const health = await divert.api('/healthz');
      const body = (await health.json()) as { table: { ready: boolean; backend: string } };
      assert.equal(body.table.ready, true);
      assert.equal(body.table.backend, backend);
      const metrics = await (await divert.api('/metrics')).text();
      assert.ok(sumOf(metrics, 'divert_queries_total', { outcome: 'intercepted' }) > 0, 'intercepted queries are counted');
      assert.match(metrics, /^divert_table_ready 1$/m);
    });

    // what a route answers, through inject() over a table of its own on this backend (the
    // same Redis, under a prefix of its own): no socket, no query path. The workers-admin-api
    // rerun has no worker to add to them: skipped there.
    describe('routes in process', { skip: TEST_WORKERS !== '1' && 'no worker takes part; admin-api.test.ts runs them' }, () => {
      let admin: InjectedAdmin;

      before(async () => {
        admin = await injectAdmin(await tableOf(options, 'routes:'), TEST_TOKEN);
      });
      after(async () => {
        await admin.close();
        await admin.table.close();
      });

      test('401 without a token or with a wrong one, on every route', async () => {
        for (const path of ['/v1/names', '/v1/names/www.corp.test', '/v1/events', '/healthz', '/metrics']) {
          const none = await admin.request(path);
          assert.equal(none.status, 401, path);
          assert.equal((await errorOf(none)).code, 'UNAUTHORIZED');
          const wrong = await admin.request(path, { headers: { authorization: 'Bearer not-the-token' } });
          assert.equal(wrong.status, 401, path);
          await wrong.body?.cancel();
        }
      });

      test('400 names the bad field and changes nothing', async () => {
        await admin.api('/v1/names/keep.corp.test', json({ a: ['192.0.2.1'] }));
        const cases: [unknown, string, RegExp][] = [
          [{ a: ['192.0.2.300'] }, 'BAD_ADDRESS', /^a\[0\]: "192\.0\.2\.300" is not an IPv4 address/],
          [{ aaaa: ['192.0.2.1'] }, 'BAD_ADDRESS', /^aaaa\[0\]: "192\.0\.2\.1" is not an IPv6 address/],
          [{ a: ['192.0.2.1', '192.0.2.1'] }, 'BAD_ADDRESS', /^a\[1\]: .* listed twice/],
          [{ a: ['192.0.2.1'], ttl: 86401 }, 'BAD_TTL', /^ttl: /],
          [{ a: ['192.0.2.1'], ttl: -1 }, 'BAD_TTL', /^ttl: /],
          [{ a: '192.0.2.1' }, 'BAD_REQUEST', /^a: /],
          [{ a: ['192.0.2.1'], weight: 3 }, 'BAD_REQUEST', /^weight: unknown field/],
          [[1, 2], 'BAD_REQUEST', /^body: expected a JSON object/],
        ];
        for (const [body, code, message] of cases) {
          const e = await errorOf(await admin.api('/v1/names/keep.corp.test', json(body)));
          assert.equal(e.status, 400, JSON.stringify(body));
          assert.equal(e.code, code, JSON.stringify(body));
          assert.match(e.message, message);
        }
        const badName = await errorOf(await admin.api('/v1/names/bad_-.corp..test', json({ a: ['192.0.2.1'] })));
        assert.equal(badName.code, 'BAD_NAME');
        assert.match((await errorOf(await admin.api('/v1/names/*', json({ a: ['192.0.2.1'] })))).message, /a wildcard needs a parent/);
        const badJson = await admin.api('/v1/names/keep.corp.test', {
          method: 'PUT',
          headers: { 'content-type': 'application/json' },
          body: '{"a": [',
        });
        assert.equal(badJson.status, 400);
        const tooBig = await admin.api(
          '/v1/names/keep.corp.test',
          json({ a: Array.from({ length: 9000 }, (_, i) => `10.${i >> 8}.${i & 255}.1`) }),
        );
        assert.equal(tooBig.status, 413);
        assert.deepEqual(((await (await admin.api('/v1/names/keep.corp.test')).json()) as { a: string[] }).a, ['192.0.2.1'], 'unchanged');
        assert.equal((await errorOf(await admin.api('/v1/names?limit=0'))).status, 400);
      });

      test('404 for a name that is not intercepted, on GET and DELETE', async () => {
        assert.equal((await errorOf(await admin.api('/v1/names/absent.corp.test'))).status, 404);
        assert.equal((await errorOf(await admin.api('/v1/names/absent.corp.test', { method: 'DELETE' }))).status, 404);
        assert.equal((await errorOf(await admin.api('/v1/nothing-here'))).status, 404);
      });

      test('a name one octet too long, a label of 64 octets or a bad escape: 400 BAD_NAME saying which, nothing written', async () => {
        const cases: [string, RegExp][] = [
          [`${LONGEST_NAME}x`, /is 256 octets long on the wire; the limit is 255/],
          [`${LONGEST_NAME.slice(0, -3)}\\100\\100\\100\\100`, /is 256 octets long on the wire/],
          [`${'x'.repeat(64)}.esc.test`, /has a label of 64 octets/],
          ['bad\\25x.esc.test', /has a bad escape "\\25x"/],
        ];
        for (const [name, message] of cases) {
          for (const init of [json({ a: ['192.0.2.1'] }), {}, { method: 'DELETE' }]) {
            const e = await errorOf(await admin.api(`/v1/names/${encodeURIComponent(name)}`, init));
            assert.deepEqual([e.status, e.code], [400, 'BAD_NAME'], `${init.method ?? 'GET'} ${name}`);
            assert.ok(e.message.startsWith(`name "${name}" `), e.message);
            assert.match(e.message, message);
          }
        }
      });

      test('GET /v1/names lists with a prefix and pages with a cursor', async () => {
        for (let i = 0; i < 7; i++) await admin.api(`/v1/names/p${i}.list.test`, json({ a: [`192.0.2.${i + 1}`] }));
        const seen: string[] = [];
        let cursor: string | undefined;
        do {
          const page = (await (
            await admin.api(`/v1/names?prefix=p&limit=3${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)
          ).json()) as { names: { name: string }[]; cursor?: string };
          assert.ok(page.names.length <= 3);
          seen.push(...page.names.map((n) => n.name));
          cursor = page.cursor;
        } while (cursor);
        assert.deepEqual(
          seen,
          Array.from({ length: 7 }, (_, i) => `p${i}.list.test`),
        );
      });

      test('history: when, what changed and who asked, newest first', async () => {
        const as = (client: string) => ({ 'content-type': 'application/json', 'x-divert-client': client });
        await admin.api('/v1/names/h.corp.test', { ...json({ a: ['192.0.2.1'] }), headers: as('monitor-a') });
        await admin.api('/v1/names/h.corp.test', { ...json({ a: ['192.0.2.2'] }), headers: as('operator') });
        await admin.api('/v1/names/h.corp.test', { method: 'DELETE', headers: { 'x-divert-client': 'monitor-b' } });
        const body = (await (await admin.api('/v1/names/h.corp.test/history')).json()) as {
          history: { op: string; by: string; at: string; old: unknown; new: unknown }[];
        };
        assert.deepEqual(
          body.history.map((h) => [h.op, h.by]),
          [
            ['delete', 'monitor-b'],
            ['put', 'operator'],
            ['put', 'monitor-a'],
          ],
        );
        assert.equal(body.history[0].new, null);
        assert.deepEqual((body.history[1].old as { a: string[] }).a, ['192.0.2.1']);
        assert.ok(!Number.isNaN(Date.parse(body.history[0].at)));
      });
    });
  });
}

/** One request written as is on a socket; the status and the JSON body of the reply. */
function rawHttp(port: number, request: string): Promise<{ status: number; type: string; body: unknown }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(request));
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(new Error('no reply in 5 s')), 5000);
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString();
      const [head, body] = [text.slice(0, text.indexOf('\r\n\r\n')), text.slice(text.indexOf('\r\n\r\n') + 4)];
      const type = /^content-type: *(.*)$/im.exec(head)?.[1] ?? '';
      try {
        resolve({ status: Number(head.split(' ')[1]), type, body: JSON.parse(body) });
      } catch {
        reject(new Error(`not a JSON reply: ${text.slice(0, 300)}`));
      }
    });
  });
}

/** The error of a reply: divert's {"error": {"code", "message"}} and nothing else. */
function divertError(status: number, type: string, body: unknown): { status: number; code: string; message: string } {
  assert.match(type, /^application\/json/);
  const error = (body as { error?: { code?: unknown; message?: unknown } }).error;
  assert.deepEqual(Object.keys(body as object), ['error'], JSON.stringify(body));
  assert.ok(typeof error?.code === 'string' && typeof error.message === 'string', JSON.stringify(body));
  return { status, code: error.code, message: error.message };
}

describe("errors in divert's format, before the token is checked and after", () => {
  let divert: TestServer;
  before(async () => {
    divert = await startDivert({ upstream: ['127.0.0.1:9'] });
  });
  after(() => divert.close());

  const host = 'Host: 127.0.0.1\r\nConnection: close\r\n';
  const token = `Authorization: Bearer ${TEST_TOKEN}\r\n`;

  test('a path segment longer than any name, and a URL that does not decode: 414 and 400, with the token or without', async () => {
    for (const auth of ['', token]) {
      for (const [path, status, code, message] of [
        [`/v1/names/${'a'.repeat(1505)}`, 414, 'URI_TOO_LONG', /longer than 1504 characters/],
        [`/v1/names/${'a.'.repeat(2000)}test/history`, 414, 'URI_TOO_LONG', /more than any name takes/],
        ['/v1/names/%zz', 400, 'BAD_REQUEST', /the URL "\/v1\/names\/%zz" cannot be read/],
        ['/v1/names/%E0%A4%A', 400, 'BAD_REQUEST', /cannot be read/],
      ] as const) {
        const reply = await rawHttp(divert.admin.port, `GET ${path} HTTP/1.1\r\n${host}${auth}\r\n`);
        const e = divertError(reply.status, reply.type, reply.body);
        assert.deepEqual([e.status, e.code], [status, code], `${path.slice(0, 40)} ${auth ? 'with' : 'without'} the token`);
        assert.match(e.message, message);
      }
    }
  });

  test('a request that is not HTTP, and headers too large: 400 and 431', async () => {
    for (const [request, status, code] of [
      ['GARBAGE\r\n\r\n', 400, 'BAD_REQUEST'],
      [`PUT /v1/names/a.test HTTP/1.1\r\n${host}${token}Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n`, 400, 'BAD_REQUEST'],
      [`GET /v1/names HTTP/1.1\r\n${host}${token}X-Padding: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'HEADERS_TOO_LARGE'],
    ] as const) {
      const reply = await rawHttp(divert.admin.port, request);
      assert.deepEqual(Object.values(divertError(reply.status, reply.type, reply.body)).slice(0, 2), [status, code], request.slice(0, 40));
    }
  });
});

describe(
  "errors in divert's format after the token, in process",
  { skip: TEST_WORKERS !== '1' && 'no worker takes part; admin-api.test.ts runs it' },
  () => {
    let admin: InjectedAdmin;
    before(async () => {
      admin = await injectAdmin(memoryTable(), TEST_TOKEN);
    });
    after(() => admin.close());

    test('what fastify refuses after the token: bad JSON, an empty or too large body, an unknown content type, no such route or method', async () => {
      const put = (headers: Record<string, string>, body: string) => ({ method: 'PUT', headers, body });
      for (const [path, init, status, code] of [
        ['/v1/names/a.test', put({ 'content-type': 'application/json' }, '{"a": ['), 400, 'BAD_REQUEST'],
        ['/v1/names/a.test', put({ 'content-type': 'application/json' }, ''), 400, 'BAD_REQUEST'],
        [
          '/v1/names/a.test',
          put({ 'content-type': 'application/json' }, JSON.stringify({ a: ['x'.repeat(70_000)] })),
          413,
          'BODY_TOO_LARGE',
        ],
        ['/v1/names/a.test', put({ 'content-type': 'image/png' }, 'ab'), 415, 'UNSUPPORTED_MEDIA_TYPE'],
        ['/v1/nothing', {}, 404, 'NOT_FOUND'],
        ['/v1/names/a.test', { method: 'PATCH' }, 404, 'NOT_FOUND'],
      ] as const) {
        const response = await admin.api(path, init);
        const e = divertError(response.status, response.headers.get('content-type') ?? '', await response.json());
        assert.deepEqual([e.status, e.code], [status, code], `${init.method ?? 'GET'} ${path}`);
      }
    });
  },
);

describe('a request while the admin port closes', () => {
  test("gets 503 SHUTTING_DOWN in divert's format and the connection is closed; the request taken in before is answered", async () => {
    // a write held in settle() keeps its connection open through the close, so another
    // request can follow on it once the close has begun
    let release = () => {};
    let entered = () => {};
    const inSettle = new Promise<void>((resolve) => (entered = resolve));
    const gate = new Promise<void>((resolve) => (release = resolve));
    const table = memoryTable();
    const app = buildAdmin({
      table,
      token: TEST_TOKEN,
      log: pino({ level: 'silent' }),
      health: async () => ({ ok: true }),
      events: new EventStreams(table, 4, pino({ level: 'silent' })),
      recentLoad: new RecentLoadSampler(() => Promise.reject(new Error('no serving figures in this test'))),
      nameQueries: async () => new Map(),
      metrics: async () => ({ contentType: 'text/plain', body: '' }),
      settle: async () => {
        entered();
        await gate;
        return { unconfirmed: [] };
      },
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const port = (app.server.address() as { port: number }).port;
    const socket = connect(port, '127.0.0.1');
    let raw = '';
    socket.on('data', (chunk: Buffer) => (raw += chunk.toString()));
    const ended = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    const closed = (async () => {
      await inSettle;
      const closing = app.close();
      // the port refuses connections only after fastify's preClose hooks ran: it is closing then
      for (let i = 0; i < 100; i++) {
        const refused = await new Promise<boolean>((resolve) => {
          const probe = connect(port, '127.0.0.1', () => {
            probe.destroy();
            resolve(false);
          });
          probe.on('error', () => resolve(true));
        });
        if (refused) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      socket.write(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TEST_TOKEN}\r\n\r\n`);
      release();
      await closing;
    })();
    try {
      socket.write(
        `PUT /v1/names/a.test HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TEST_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`,
      );
      await closed;
      await Promise.race([ended, new Promise((r) => setTimeout(r, 5000))]);
      const [first, second] = raw.split(/(?=HTTP\/1\.1 )/);
      assert.match(first ?? '', /^HTTP\/1\.1 200 /, raw);
      assert.match(second ?? '', /^HTTP\/1\.1 503 /, raw);
      assert.match(second, /\r\nconnection: close\r\n/i);
      assert.deepEqual(JSON.parse(second.slice(second.indexOf('\r\n\r\n') + 4)), {
        error: { code: 'SHUTTING_DOWN', message: 'divert is shutting down; ask another replica, or again once it is back' },
      });
    } finally {
      release();
      socket.destroy();
      await app.close();
    }
  });
});

describe('admin API shutdown', () => {
  test('closing the server ends open event streams instead of waiting for them', async () => {
    const divert = await startDivert({ upstream: ['127.0.0.1:9'] });
    const events = await openEvents(divert.adminUrl + '/v1/events', TEST_TOKEN);
    const started = Date.now();
    const outcome = await Promise.race([
      divert.close().then(() => 'closed'),
      new Promise((resolve) => setTimeout(() => resolve('still open after 3 s'), 3000)),
    ]);
    events.close();
    assert.equal(outcome, 'closed');
    assert.ok(Date.now() - started < 1000, `closed in ${Date.now() - started} ms`);
  });
});

describe('admin API with Redis stopped', () => {
  test('writes get 503 with a clear error, /healthz says what is wrong, answers stay; all resumes when Redis returns', async () => {
    const redis = await startRedis({ persist: true });
    const divert = await startDivert({
      redis: redis.url,
      'redis-prefix': 'divert-test:outage:',
      upstream: ['127.0.0.1:9'],
      'query-timeout-ms': '200',
    });
    try {
      await divert.api('/v1/names/www.corp.test', json({ a: ['192.0.2.1'] }));
      assert.deepEqual(await divert.resolver.resolve4('www.corp.test'), ['192.0.2.1']);
      await redis.kill();

      const write = await errorOf(await divert.api('/v1/names/www.corp.test', json({ a: ['192.0.2.2'] })));
      assert.equal(write.status, 503);
      assert.equal(write.code, 'BACKEND_UNAVAILABLE');
      assert.match(write.message, /redis/i);
      const health = await divert.api('/healthz');
      assert.equal(health.status, 503);
      const body = (await health.json()) as { table: { ready: boolean }; problems: string[] };
      assert.equal(body.table.ready, false);
      assert.match(body.problems.join(' '), /address table \(Redis\) is unreachable/);
      assert.deepEqual(await divert.resolver.resolve4('www.corp.test'), ['192.0.2.1'], 'the last known answer');

      await redis.restart();
      const deadline = Date.now() + 5000;
      let status = 0;
      while (Date.now() < deadline) {
        status = (await divert.api('/v1/names/www.corp.test', json({ a: ['192.0.2.3'] }))).status;
        if (status === 200) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(status, 200, 'writes work again without a restart');
      assert.deepEqual(await divert.resolver.resolve4('www.corp.test'), ['192.0.2.3']);
    } finally {
      await divert.close();
      await redis.stop();
    }
  });
});

describe('failed authentications', () => {
  test('ten wrong tokens within a minute: wrong tokens get 429 (Retry-After) for a while, the right token is still served; the log never holds a token', async () => {
    const lines: string[] = [];
    const divert = await startDivert(
      { upstream: ['127.0.0.1:9'], 'log-level': 'warn' },
      { logStream: { write: (line: string) => void lines.push(line) } },
    );
    try {
      const guess = (i: number) => fetch(divert.adminUrl + '/v1/names', { headers: { authorization: `Bearer guess-${i}-0123456789` } });
      for (let i = 1; i <= 10; i++) {
        const wrong = await guess(i);
        assert.equal(wrong.status, 401, `guess ${i}`);
        await wrong.body?.cancel();
      }
      const locked = await guess(11);
      assert.equal(locked.status, 429, 'a wrong token while locked out');
      assert.match(locked.headers.get('retry-after') ?? '', /^\d+$/);
      assert.equal((await errorOf(locked)).code, 'TOO_MANY_FAILURES');
      const missing = await fetch(divert.adminUrl + '/v1/names');
      assert.equal(missing.status, 429, 'no token while locked out');
      await missing.body?.cancel();
      // the monitor (or operator) with the right token from the same address is never kept out
      for (const method of ['GET', 'PUT']) {
        const ok = await divert.api(
          '/v1/names/locked.corp.test',
          method === 'PUT' ? { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ a: ['192.0.2.77'] }) } : {},
        );
        assert.equal(ok.status, method === 'PUT' ? 200 : 404, `${method} with the right token during the lockout`);
        await ok.body?.cancel();
      }
      assert.deepEqual(await divert.resolver.resolve4('locked.corp.test'), ['192.0.2.77']);
      const log = lines.join('');
      assert.match(log, /too many failed admin authentications/);
      assert.equal((log.match(/admin request with a wrong token/g) ?? []).length, 10, 'one line per failure, none while locked out');
      assert.doesNotMatch(log, /guess-\d+-0123456789/, 'no guessed token in the log');
      assert.ok(!log.includes(divert.adminToken), 'no real token in the log');
    } finally {
      await divert.close();
    }
  });
});
