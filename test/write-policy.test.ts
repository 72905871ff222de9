// What a write may put in the table (--max-addresses, --allow-tld-wildcards), at every edge
// where a write enters: the admin API's PUT and import (with each table backend), zone
// seeds at start and on reload, and the options themselves. DNS UPDATE is covered in
// update.test.ts. Checked as a user would: HTTP statuses and messages, DNS answers, exit
// status and the one line a refused start writes.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { loadServeConfig } from '../src/config/load.js';
import { isDivertError } from '../src/errors.js';
import { BACKENDS } from './helpers/backends.js';
import { decode, query, startDivert, tcpAsk, type TestServer } from './helpers/divert.js';
import { runDivert } from './helpers/process.js';
import { tempFiles } from './helpers/temp-files.js';
import { dropPrefix, testRedis, uniquePrefix } from './helpers/redis.js';

const writeTemp = tempFiles('write-policy', '.zone');

/** `count` distinct IPv4 addresses: 10.0.x.y. */
const v4 = (count: number, from = 0) => Array.from({ length: count }, (_, i) => `10.0.${(from + i) >> 8}.${(from + i) & 255}`);
/** `count` distinct IPv6 addresses: 2001:db8::x. */
const v6 = (count: number) => Array.from({ length: count }, (_, i) => `2001:db8::${(i + 1).toString(16)}`);

const json = (body: unknown, method = 'PUT') => ({ method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
const zoneBody = (text: string) => ({ method: 'POST', headers: { 'content-type': 'text/dns' }, body: text });

async function errorOf(response: Response): Promise<{ status: number; code: string; message: string }> {
  const body = (await response.json()) as { error: { code: string; message: string } };
  return { status: response.status, ...body.error };
}

/** The error a start with `flags` fails with; a server that starts all the same is closed. */
async function refusedStart(flags: Record<string, unknown>): Promise<Error> {
  let started: TestServer;
  try {
    started = await startDivert({ upstream: ['127.0.0.1:9'], ...flags });
  } catch (err) {
    return err as Error;
  }
  await started.close();
  return assert.fail('divert started');
}

/** A zone file giving `name` these A records. */
function zoneOf(name: string, addresses: string[]): string {
  return addresses.map((address) => `${name}. 60 IN A ${address}`).join('\n') + '\n';
}

/** The A addresses divert answers for `name`, asked over TCP so that no size limit cuts them. */
async function answerOf(divert: TestServer, name: string): Promise<string[]> {
  const reply = decode(await tcpAsk(divert.port, query(name, 'A')));
  return (reply.answers ?? []).map((a) => String((a as { data: unknown }).data)).sort();
}

for (const [backend, makeBackend] of BACKENDS) {
  describe(`the address cap and TLD wildcards over the admin API (${backend} table)`, () => {
    let divert: TestServer;
    let cleanup: () => Promise<void>;

    before(async () => {
      const b = await makeBackend('write-policy');
      cleanup = b.cleanup;
      divert = await startDivert({ ...b.options, upstream: ['127.0.0.1:9'], 'query-timeout-ms': '200' });
    });
    after(async () => {
      await divert?.close();
      await cleanup?.();
    });

    test('PUT: 64 addresses (IPv4 and IPv6 together) are taken; 65 get 400 BAD_ADDRESS naming the count, the limit and the flag, and change nothing', async () => {
      const atCap = await divert.api('/v1/names/cap.corp.test', json({ a: v4(40), aaaa: v6(24) }));
      assert.equal(atCap.status, 200);
      assert.equal((await answerOf(divert, 'cap.corp.test')).length, 40);
      const before = await (await divert.api('/v1/names/cap.corp.test')).json();

      const over = await errorOf(await divert.api('/v1/names/cap.corp.test', json({ a: v4(40), aaaa: v6(25) })));
      assert.equal(over.status, 400);
      assert.equal(over.code, 'BAD_ADDRESS');
      assert.equal(over.message, '"cap.corp.test": a and aaaa hold 65 addresses (40 IPv4, 25 IPv6); the limit is 64 (--max-addresses)');
      assert.deepEqual(await (await divert.api('/v1/names/cap.corp.test')).json(), before, 'the entry is unchanged');

      const newName = await errorOf(await divert.api('/v1/names/new.corp.test', json({ a: v4(3000) })));
      assert.equal(newName.status, 400);
      assert.match(newName.message, /hold 3000 addresses/);
      assert.equal((await divert.api('/v1/names/new.corp.test')).status, 404, 'not created');
    });

    test("PUT: a rule that answers with more than the cap (its own list and the entry's other family) is refused", async () => {
      const body = {
        a: v4(1),
        aaaa: v6(20),
        rules: [
          { days: ['mon'], a: v4(10, 100) },
          { networks: ['10.1.0.0/16'], a: v4(50, 200) },
        ],
      };
      const e = await errorOf(await divert.api('/v1/names/rules.corp.test', json(body)));
      assert.equal(e.status, 400);
      assert.equal(e.code, 'BAD_ADDRESS');
      assert.equal(
        e.message,
        '"rules.corp.test": rules[1] answers with 70 addresses (50 IPv4, 20 IPv6), its own lists or else the entry\'s; the limit is 64 (--max-addresses)',
      );
      body.rules[1].a = v4(44, 200);
      assert.equal((await divert.api('/v1/names/rules.corp.test', json(body))).status, 200, 'at the cap');
    });

    test('import: an entry over the cap refuses the whole file, naming the name and its count', async () => {
      const text = zoneOf('fine.import.test', v4(2)) + zoneOf('big.import.test', v4(65));
      const e = await errorOf(await divert.api('/v1/import', zoneBody(text)));
      assert.equal(e.status, 400);
      assert.equal(e.code, 'BAD_ADDRESS');
      assert.equal(
        e.message,
        'import "big.import.test": a and aaaa hold 65 addresses (65 IPv4, 0 IPv6); the limit is 64 (--max-addresses)',
      );
      assert.equal((await divert.api('/v1/names/fine.import.test')).status, 404, 'nothing of the file is written');
      const ok = await divert.api('/v1/import', zoneBody(zoneOf('fine.import.test', v4(2)) + zoneOf('big.import.test', v4(64))));
      assert.equal(ok.status, 200);
      assert.equal((await answerOf(divert, 'big.import.test')).length, 64);
    });

    test('a diversion never takes an entry over the cap: it replaces an address or drops it', async () => {
      await divert.api('/v1/names/full.corp.test', json({ a: v4(64) }));
      const moved = await divert.api('/v1/diversions', json({ from: '10.0.0.5', to: '192.0.2.200' }, 'POST'));
      assert.equal(moved.status, 200);
      const answer = await answerOf(divert, 'full.corp.test');
      assert.equal(answer.length, 64);
      assert.ok(answer.includes('192.0.2.200'));
    });

    test('*.com is refused by PUT and import (400 BAD_NAME naming the flag); *.shop.com and "com" itself are taken', async () => {
      const put = await errorOf(await divert.api('/v1/names/*.com', json({ a: ['192.0.2.1'] })));
      assert.equal(put.status, 400);
      assert.equal(put.code, 'BAD_NAME');
      assert.equal(
        put.message,
        '"*.com": a wildcard directly below the top-level domain "com" would answer for every name under it; refused unless the operator gives --allow-tld-wildcards',
      );
      const imported = await errorOf(await divert.api('/v1/import', zoneBody('*.net. 60 IN A 192.0.2.1\n')));
      assert.equal(imported.status, 400);
      assert.equal(imported.code, 'BAD_NAME');
      assert.match(imported.message, /^import "\*\.net": a wildcard directly below the top-level domain "net"/);
      assert.equal((await divert.api('/v1/names/*.com')).status, 404);
      assert.equal((await divert.api('/v1/names/*.net')).status, 404);
      // the root is no table name at all
      assert.equal((await errorOf(await divert.api('/v1/names/.', json({ a: ['192.0.2.1'] })))).code, 'BAD_NAME');

      assert.equal((await divert.api('/v1/names/*.shop.com', json({ a: ['192.0.2.2'] }))).status, 200);
      assert.equal((await divert.api('/v1/names/com', json({ a: ['192.0.2.3'] }))).status, 200);
      assert.deepEqual(await answerOf(divert, 'www.shop.com'), ['192.0.2.2']);
    });
  });
}

describe('--allow-tld-wildcards', () => {
  test('with it, PUT and import take *.com, and divert answers every name below it', async () => {
    const divert = await startDivert({ upstream: ['127.0.0.1:9'], 'query-timeout-ms': '200', 'allow-tld-wildcards': true });
    try {
      assert.equal((await divert.api('/v1/names/*.com', json({ a: ['192.0.2.1'] }))).status, 200);
      assert.equal((await divert.api('/v1/import', zoneBody('*.net. 60 IN A 192.0.2.2\n'))).status, 200);
      assert.deepEqual(await answerOf(divert, 'anything.com'), ['192.0.2.1']);
      assert.deepEqual(await answerOf(divert, 'anything.net'), ['192.0.2.2']);
    } finally {
      await divert.close();
    }
  });

  test('true or false from a flag, a DIVERT_* variable or the config file; anything else is BAD_CONFIG naming it', () => {
    const config = writeTemp('allow-tld-wildcards: true\nmax-addresses: 10\n', '.yaml');
    assert.equal(loadServeConfig({}, {}).allowTldWildcards, false);
    assert.equal(loadServeConfig({ 'allow-tld-wildcards': true }, {}).allowTldWildcards, true);
    assert.equal(loadServeConfig({}, { DIVERT_ALLOW_TLD_WILDCARDS: 'true' }).allowTldWildcards, true);
    assert.equal(loadServeConfig({ config }, {}).allowTldWildcards, true);
    assert.equal(loadServeConfig({ config }, {}).maxAddresses, 10);
    assert.equal(loadServeConfig({ config, 'allow-tld-wildcards': false }, {}).allowTldWildcards, false, 'the flag wins');
    assert.equal(
      loadServeConfig({ config }, { DIVERT_ALLOW_TLD_WILDCARDS: 'false' }).allowTldWildcards,
      false,
      'the variable wins over the file',
    );
    assert.throws(
      () => loadServeConfig({}, { DIVERT_ALLOW_TLD_WILDCARDS: 'yes' }),
      (err: unknown) =>
        isDivertError(err, 'BAD_CONFIG') &&
        err.message === '--allow-tld-wildcards "yes" (from DIVERT_ALLOW_TLD_WILDCARDS): expected true or false',
    );
  });

  test('--max-addresses takes 1 to 1000', () => {
    assert.equal(loadServeConfig({ 'max-addresses': '1000' }, {}).maxAddresses, 1000);
    for (const [value, expected] of [
      ['0', 'expected at least 1'],
      ['1001', 'expected at most 1000'],
      ['many', 'expected a whole number'],
    ]) {
      assert.throws(
        () => loadServeConfig({ 'max-addresses': value }, {}),
        (err: unknown) => isDivertError(err, 'BAD_CONFIG') && err.message === `--max-addresses "${value}": ${expected}`,
      );
    }
  });

  test('divert validate: a seed of *.com fails without it; the switch alone, =true or the variable let it pass', async () => {
    const zone = writeTemp('*.com. 60 IN A 192.0.2.1\n');
    const base = ['validate', '--zones', zone, '--upstream', '127.0.0.1:9', '--listen', '127.0.0.1:0'];
    const refused = runDivert(base);
    assert.equal(await refused.exited(), 2);
    assert.equal(
      refused.stderr(),
      `divert: ${zone}: "*.com": a wildcard directly below the top-level domain "com" would answer for every name under it; refused unless the operator gives --allow-tld-wildcards\n`,
    );
    // the switch takes no value: the option after it is read as usual
    for (const [args, env] of [
      [['--allow-tld-wildcards', ...base.slice(1)], {}],
      [[...base, '--allow-tld-wildcards=true'], {}],
      [base, { DIVERT_ALLOW_TLD_WILDCARDS: 'true' }],
    ] as const) {
      const run = runDivert(['validate', ...args.filter((a) => a !== 'validate')], { env });
      assert.equal(await run.exited(), 0, `${args.join(' ')} ${JSON.stringify(env)}: ${run.stderr()}`);
      assert.match(run.stdout(), /^config OK: 1 zone name from /);
    }
    const off = runDivert([...base, '--allow-tld-wildcards=false'], { env: { DIVERT_ALLOW_TLD_WILDCARDS: 'true' } });
    assert.equal(await off.exited(), 2, 'the flag wins over the variable');
  });
});

describe('zone seeds', () => {
  test('a seed over the cap stops the start with one line naming the file and the name', async () => {
    const fine = writeTemp(zoneOf('fine.seed.test', v4(3)));
    const big = writeTemp(zoneOf('big.seed.test', v4(65)));
    const err = await refusedStart({ zones: [fine, big] });
    assert.ok(isDivertError(err, 'BAD_ZONE'), String(err));
    assert.equal(err.message, `${big}: "big.seed.test": a and aaaa hold 65 addresses (65 IPv4, 0 IPv6); the limit is 64 (--max-addresses)`);
    const serve = runDivert([
      'serve',
      '--listen',
      '127.0.0.1:0',
      '--upstream',
      '127.0.0.1:9',
      '--workers',
      '1',
      '--zones',
      fine,
      '--zones',
      big,
    ]);
    try {
      assert.equal(await serve.exited(), 2);
      assert.equal(
        serve.stderr(),
        `divert: ${big}: "big.seed.test": a and aaaa hold 65 addresses (65 IPv4, 0 IPv6); the limit is 64 (--max-addresses)\n`,
      );
    } finally {
      await serve.stop();
    }
    // a higher cap lets it start
    const divert = await startDivert({ upstream: ['127.0.0.1:9'], zones: [fine, big], 'max-addresses': '65' });
    try {
      assert.equal((await answerOf(divert, 'big.seed.test')).length, 65);
    } finally {
      await divert.close();
    }
  });

  test('a name in two files is held against the cap as merged: the file that takes it over is named', async () => {
    const first = writeTemp(zoneOf('split.seed.test', v4(40)));
    const second = writeTemp(zoneOf('split.seed.test', v4(30, 40)));
    const err = await refusedStart({ zones: [first, second] });
    assert.ok(isDivertError(err, 'BAD_ZONE'), String(err));
    assert.ok(err.message.startsWith(`${second}: "split.seed.test": a and aaaa hold 70 addresses`), err.message);
  });

  test('*.com in a seed stops the start; with --allow-tld-wildcards it is seeded and answered', async () => {
    const zone = writeTemp('$ORIGIN com.\n* 60 IN A 192.0.2.7\n');
    const err = await refusedStart({ zones: [zone] });
    assert.ok(isDivertError(err, 'BAD_ZONE'), String(err));
    assert.ok(err.message.startsWith(`${zone}: "*.com": a wildcard directly below the top-level domain "com"`), err.message);
    const divert = await startDivert({ upstream: ['127.0.0.1:9'], zones: [zone], 'allow-tld-wildcards': 'true' });
    try {
      assert.deepEqual(await answerOf(divert, 'www.example.com'), ['192.0.2.7']);
    } finally {
      await divert.close();
    }
  });

  test('a reload whose zone file goes over the cap is refused whole, naming the file and the name', async () => {
    const zone = writeTemp(zoneOf('kept.reload.test', v4(2)));
    const divert = await startDivert({ upstream: ['127.0.0.1:9'], zones: [zone] });
    try {
      writeFileSync(zone, zoneOf('kept.reload.test', v4(2)) + zoneOf('added.reload.test', v4(1)) + zoneOf('big.reload.test', v4(65)));
      const result = await divert.reload();
      assert.equal(result.ok, false);
      assert.equal(
        (result as { error: string }).error,
        `${zone}: "big.reload.test": a and aaaa hold 65 addresses (65 IPv4, 0 IPv6); the limit is 64 (--max-addresses)`,
      );
      assert.equal((await divert.api('/v1/names/added.reload.test')).status, 404, 'nothing of the file was seeded');
      assert.equal((await divert.api('/v1/names/big.reload.test')).status, 404);
      assert.deepEqual(await answerOf(divert, 'kept.reload.test'), v4(2));
    } finally {
      await divert.close();
    }
  });
});

describe('entries already in Redis', () => {
  test('a replica with a lower cap reads and answers what another wrote under a higher one, and refuses to write it', async () => {
    const redis = await testRedis();
    const prefix = uniquePrefix('write-policy-replica');
    const options = { redis: redis.url, 'redis-prefix': prefix, upstream: ['127.0.0.1:9'], 'query-timeout-ms': '200' };
    let high: TestServer | undefined;
    let low: TestServer | undefined;
    try {
      high = await startDivert({ ...options, 'max-addresses': '200' });
      assert.equal((await high.api('/v1/names/wide.replica.test', json({ a: v4(100) }))).status, 200);
      low = await startDivert(options);
      const entry = (await (await low.api('/v1/names/wide.replica.test')).json()) as { a: string[] };
      assert.equal(entry.a.length, 100);
      assert.equal((await answerOf(low, 'wide.replica.test')).length, 100);
      assert.equal((await low.api('/v1/names/wide.replica.test', json({ a: v4(100) }))).status, 400, 'the cap holds for writes');
      assert.equal((await low.api('/v1/names/wide.replica.test', json({ a: v4(64) }))).status, 200, 'and it can bring it down');
    } finally {
      await low?.close();
      await high?.close();
      await dropPrefix(redis.url, prefix);
      await redis.stop();
    }
  });
});
