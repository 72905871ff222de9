// The AddressTable contract, written once and run against MemoryTable and RedisTable.

import { after, before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { isDivertError } from '../src/errors.js';
import { memoryTable } from './helpers/tables.js';
import { redisTable } from './helpers/tables.js';
import { HISTORY_LENGTH } from '../src/table/table.js';
import { type AddressTable } from '../src/table/address-table.js';
import { type ChangeEvent, type EntryData } from '../src/entry/entry.js';
import type { DiversionChange } from '../src/entry/diversions.js';
import { dropPrefix, freePort, startRedis, startRedisCluster, testRedis, uniquePrefix, type RedisCluster } from './helpers/redis.js';

interface TableOptions {
  now?: () => Date;
}
/** Makes a fresh, empty table and registers its cleanup on `t`. */
type MakeTable = (t: TestContext, options?: TableOptions) => Promise<AddressTable>;

const FIXED = new Date('2024-05-06T07:08:09.000Z');
const data = (a: string, ttl = 30): EntryData => ({ a: [a], aaaa: [], ttl });
const code = (c: string) => (err: unknown) => isDivertError(err) && err.code === c;

function contract(name: string, makeTable: MakeTable): void {
  describe(`${name} contract`, () => {
    it('round-trips put/get and normalises name and addresses', async (t) => {
      const table = await makeTable(t, { now: () => FIXED });
      const entry = await table.put('WWW.Example.COM.', {
        a: ['10.0.0.1'],
        aaaa: ['2001:DB8:0:0:0:0:0:1'],
        ttl: 60,
      });
      assert.equal(entry.name, 'www.example.com');
      assert.deepEqual(entry.aaaa, ['2001:db8::1']);
      assert.deepEqual(entry.a, ['10.0.0.1']);
      assert.equal(entry.ttl, 60);
      assert.equal(entry.updatedAt, FIXED.toISOString());
      assert.ok(entry.version > 0);
      assert.deepEqual(await table.get('www.example.com'), entry);
      assert.deepEqual(await table.get('WWW.EXAMPLE.COM'), entry);
      assert.equal(await table.get('other.example.com'), null);
    });

    it('rejects invalid data without changing anything', async (t) => {
      const table = await makeTable(t);
      const events: ChangeEvent[] = [];
      table.onChange((e) => events.push(e));
      await assert.rejects(table.put('a.test', { a: ['300.1.1.1'], aaaa: [], ttl: 1 }), code('BAD_ADDRESS'));
      await assert.rejects(table.put('bad name.test', data('10.0.0.1')), code('BAD_NAME'));
      assert.equal(await table.size(), 0);
      assert.equal(events.length, 0);
    });

    it('gives strictly growing versions, also across delete and recreate', async (t) => {
      const table = await makeTable(t);
      const events: ChangeEvent[] = [];
      table.onChange((e) => events.push(e));
      const v1 = (await table.put('a.test', data('10.0.0.1'))).version;
      const v2 = (await table.put('a.test', data('10.0.0.2'))).version;
      const v3 = (await table.put('b.test', data('10.0.0.3'))).version;
      await table.delete('a.test');
      const v5 = (await table.put('a.test', data('10.0.0.4'))).version;
      const vDelete = events[3].version;
      assert.deepEqual(events[3], { name: 'a.test', entry: null, version: vDelete });
      const versions = [v1, v2, v3, vDelete, v5];
      for (let i = 1; i < versions.length; i++) assert.ok(versions[i] > versions[i - 1], `${versions}`);
    });

    it('honours ifVersion on put, with 0 meaning create-only', async (t) => {
      const table = await makeTable(t);
      const created = await table.put('cas.test', data('10.0.0.1'), { ifVersion: 0 });
      await assert.rejects(table.put('cas.test', data('10.0.0.2'), { ifVersion: 0 }), (err: unknown) => {
        assert.ok(isDivertError(err, 'VERSION_MISMATCH'));
        assert.match(err.message, /cas\.test/);
        assert.match(err.message, new RegExp(`\\b${created.version}\\b`));
        return true;
      });
      const updated = await table.put('cas.test', data('10.0.0.3'), { ifVersion: created.version });
      assert.ok(updated.version > created.version);
      await assert.rejects(table.put('cas.test', data('10.0.0.4'), { ifVersion: created.version }), (err: unknown) => {
        assert.ok(isDivertError(err, 'VERSION_MISMATCH'));
        assert.match(err.message, new RegExp(`expected version ${created.version}\\b`));
        assert.match(err.message, new RegExp(`current version is ${updated.version}\\b`));
        return true;
      });
      assert.deepEqual((await table.get('cas.test'))?.a, ['10.0.0.3']);
    });

    it('honours ifVersion on delete and reports NOT_FOUND for absent names', async (t) => {
      const table = await makeTable(t);
      const entry = await table.put('d.test', data('10.0.0.1'));
      await assert.rejects(table.delete('d.test', { ifVersion: entry.version + 1 }), code('VERSION_MISMATCH'));
      await assert.rejects(table.delete('d.test', { ifVersion: 0 }), code('VERSION_MISMATCH'));
      assert.ok(await table.get('d.test'));
      await table.delete('d.test', { ifVersion: entry.version });
      assert.equal(await table.get('d.test'), null);
      await assert.rejects(table.delete('d.test'), code('NOT_FOUND'));
      await assert.rejects(table.delete('never.test', { ifVersion: 3 }), code('NOT_FOUND'));
    });

    it('looks up exact name, then the closest wildcard, then farther ones', async (t) => {
      const table = await makeTable(t);
      await table.put('*.example.com', data('10.0.0.1'));
      await table.put('*.b.example.com', data('10.0.0.2'));
      await table.put('a.b.example.com', data('10.0.0.3'));
      const answer = async (n: string) => (await table.lookupName(n))?.name ?? null;
      assert.equal(await answer('a.b.example.com'), 'a.b.example.com');
      assert.equal(await answer('x.b.example.com'), '*.b.example.com');
      assert.equal(await answer('y.x.b.example.com'), '*.b.example.com');
      assert.equal(await answer('c.example.com'), '*.example.com');
      assert.equal(await answer('b.example.com'), '*.example.com');
      assert.equal(await answer('example.com'), null);
      assert.equal(await answer('other.org'), null);
    });

    it('seeds only absent names and returns the inserted entries', async (t) => {
      const table = await makeTable(t);
      const kept = await table.put('keep.test', data('10.0.0.1'));
      const events: ChangeEvent[] = [];
      table.onChange((e) => events.push(e));
      const inserted = await table.seed(
        new Map([
          ['keep.test', data('10.9.9.9')],
          ['New1.test', data('10.0.0.2')],
          ['new2.test', data('10.0.0.3')],
        ]),
      );
      assert.deepEqual(inserted.map((e) => e.name).sort(), ['new1.test', 'new2.test']);
      assert.deepEqual(await table.get('keep.test'), kept);
      assert.deepEqual(
        await table.get('new1.test'),
        inserted.find((e) => e.name === 'new1.test'),
      );
      assert.deepEqual(events.map((e) => [e.name, e.version]).sort(), inserted.map((e) => [e.name, e.version]).sort());
      assert.deepEqual(await table.seed(new Map([['new1.test', data('10.0.0.4')]])), []);
      assert.equal(await table.size(), 3);
    });

    it('lists by prefix, in order, paging each entry exactly once', async (t) => {
      const table = await makeTable(t);
      const names = Array.from({ length: 25 }, (_, i) => `h${String(i).padStart(2, '0')}.page.test`);
      for (const n of [...names].reverse()) await table.put(n, data('10.0.0.1'));
      await table.put('other.test', data('10.0.0.2'));
      await table.put('*.page.test', data('10.0.0.3'));
      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await table.list({ prefix: 'h', cursor, limit: 10 });
        assert.ok(page.entries.length <= 10);
        seen.push(...page.entries.map((e) => e.name));
        cursor = page.cursor;
        pages++;
      } while (cursor !== undefined && pages < 10);
      assert.equal(pages, 3);
      assert.deepEqual(seen, names);
      const all = await table.list({ limit: 100 });
      assert.deepEqual(
        all.entries.map((e) => e.name),
        ['*.page.test', ...names, 'other.test'],
      );
      assert.equal(all.cursor, undefined);
      // Glob metacharacters in the prefix are literal.
      assert.deepEqual(
        (await table.list({ prefix: '*.', limit: 10 })).entries.map((e) => e.name),
        ['*.page.test'],
      );
      assert.deepEqual((await table.list({ prefix: 'zz', limit: 10 })).entries, []);
    });

    it('emits exactly one event per change, before the write resolves', async (t) => {
      const table = await makeTable(t);
      const events: ChangeEvent[] = [];
      const off = table.onChange((e) => events.push(e));
      const pending = table.put('ev.test', data('10.0.0.1'));
      let seenAtResolve = -1;
      void pending.then(() => (seenAtResolve = events.length));
      const entry = await pending;
      assert.equal(seenAtResolve, 1);
      assert.deepEqual(events, [{ name: 'ev.test', entry, version: entry.version }]);
      await table.delete('ev.test').then(() => assert.equal(events.length, 2));
      assert.equal(events[1].entry, null);
      assert.ok(events[1].version > entry.version);
      await assert.rejects(table.delete('ev.test'), code('NOT_FOUND'));
      await assert.rejects(table.put('ev.test', data('10.0.0.1'), { ifVersion: 99 }), code('VERSION_MISMATCH'));
      assert.equal(events.length, 2, 'failed writes emit nothing');
      off();
      await table.put('ev.test', data('10.0.0.2'));
      assert.equal(events.length, 2, 'unsubscribed listener is not called');
    });

    it('keeps writing and notifying when a listener throws', async (t) => {
      const table = await makeTable(t);
      const events: ChangeEvent[] = [];
      table.onChange(() => {
        throw new Error('listener bug');
      });
      table.onChange((e) => events.push(e));
      const entry = await table.put('throw.test', data('10.0.0.1'));
      await table.delete('throw.test');
      assert.equal(events.length, 2);
      assert.equal(events[0].version, entry.version);
    });

    it('counts entries', async (t) => {
      const table = await makeTable(t);
      assert.equal(await table.size(), 0);
      await table.put('a.test', data('10.0.0.1'));
      await table.put('b.test', data('10.0.0.1'));
      await table.put('a.test', data('10.0.0.2'));
      assert.equal(await table.size(), 2);
      await table.delete('a.test');
      assert.equal(await table.size(), 1);
    });

    it('keeps each change in the history, newest first, with op, author and both states', async (t) => {
      let clock = Date.parse('2024-05-06T00:00:00.000Z');
      const table = await makeTable(t, { now: () => new Date((clock += 1000)) });
      assert.deepEqual(await table.history('h.test'), [], 'never written');
      await table.seed(new Map([['h.test', data('10.0.0.1')]]));
      const put = await table.put('H.test.', { a: [], aaaa: ['2001:DB8::1'], ttl: 60 }, { by: 'monitor-1' });
      await table.importEntries(new Map([['h.test', data('10.0.0.2')]]), { by: 'admin' });
      const [diverted] = (await table.divert('10.0.0.2', '10.0.0.3', { by: 'monitor-2' })).changed;
      await table.delete('h.test', { ifVersion: diverted.version });
      const history = await table.history('H.TEST');
      assert.deepEqual(
        history.map((r) => [r.op, r.by]),
        [
          ['delete', 'unknown'],
          ['divert', 'monitor-2'],
          ['import', 'admin'],
          ['put', 'monitor-1'],
          ['seed', 'zone seed'],
        ],
      );
      for (let i = 1; i < history.length; i++) assert.ok(history[i - 1].version > history[i].version);
      assert.equal(history[1].version, diverted.version);
      assert.equal(history[3].version, put.version);
      assert.equal(history[3].at, put.updatedAt);
      assert.ok(
        history.every((r) => /^2024-05-06T00:00:\d\d\.000Z$/.test(r.at)),
        JSON.stringify(history),
      );
      assert.deepEqual(history[4].old, null);
      assert.deepEqual(history[4].new, { a: ['10.0.0.1'], aaaa: [], ttl: 30 });
      assert.deepEqual(history[3].old, { a: ['10.0.0.1'], aaaa: [], ttl: 30 });
      assert.deepEqual(history[3].new, { a: [], aaaa: ['2001:db8::1'], ttl: 60 });
      assert.deepEqual(history[1].new, { a: ['10.0.0.3'], aaaa: [], ttl: 30 });
      assert.deepEqual(history[0].old, { a: ['10.0.0.3'], aaaa: [], ttl: 30 });
      assert.deepEqual(history[0].new, null);
      assert.equal(await table.get('h.test'), null, 'deleted, history kept');
      await assert.rejects(table.history('bad name.test'), code('BAD_NAME'));
    });

    it('says in each entry who made its last change (updatedBy), as its history does', async (t) => {
      const table = await makeTable(t);
      const events: ChangeEvent[] = [];
      table.onChange((e) => events.push(e));
      const [seeded] = await table.seed(new Map([['by.test', data('10.0.0.1')]]));
      assert.equal(seeded.updatedBy, 'zone seed');
      const first = await table.put('by.test', data('10.0.0.2'), { by: 'operator-a' });
      assert.equal(first.updatedBy, 'operator-a');
      assert.deepEqual(await table.get('by.test'), first);
      const second = await table.put('by.test', data('10.0.0.3'), { by: 'operator-b' });
      assert.equal(second.updatedBy, 'operator-b');
      assert.equal((await table.get('by.test'))?.updatedBy, 'operator-b');
      assert.equal((await table.list({ prefix: 'by.', limit: 10 })).entries[0].updatedBy, 'operator-b');
      assert.equal((await table.lookupName('by.test'))?.updatedBy, 'operator-b');
      const [imported] = await table.importEntries(new Map([['by.test', data('10.0.0.4')]]), { by: '<script>x</script>' });
      assert.equal(imported.updatedBy, '<script>x</script>');
      const [diverted] = (await table.divert('10.0.0.4', '10.0.0.5', { by: 'monitor-1' })).changed;
      assert.equal(diverted.updatedBy, 'monitor-1');
      assert.equal((await table.get('by.test'))?.updatedBy, 'monitor-1');
      const unsigned = await table.put('by.test', data('10.0.0.6'));
      assert.equal(unsigned.updatedBy, 'unknown', 'a write that names no author, as the history says');
      assert.deepEqual(
        events.map((e) => e.entry?.updatedBy),
        ['zone seed', 'operator-a', 'operator-b', '<script>x</script>', 'monitor-1', 'unknown'],
        'the change events carry it',
      );
      const history = await table.history('by.test');
      assert.deepEqual(
        history.map((r) => r.by),
        ['unknown', 'monitor-1', '<script>x</script>', 'operator-b', 'operator-a', 'zone seed'],
      );
    });

    it(`keeps exactly the last ${HISTORY_LENGTH} changes of a name`, async (t) => {
      const table = await makeTable(t);
      const versions: number[] = [];
      for (let i = 0; i < HISTORY_LENGTH + 5; i++) {
        versions.push((await table.put('many.test', data(`10.0.${i >> 8}.${i & 255}`), { by: `w${i}` })).version);
      }
      await table.put('other.test', data('10.0.0.1'));
      const history = await table.history('many.test');
      assert.equal(history.length, HISTORY_LENGTH);
      assert.deepEqual(
        history.map((r) => r.version),
        versions.slice(5).reverse(),
      );
      assert.equal(history[0].by, `w${HISTORY_LENGTH + 4}`);
      assert.equal(history[HISTORY_LENGTH - 1].by, 'w5');
      assert.deepEqual(history[HISTORY_LENGTH - 1].old, data('10.0.0.4'));
      assert.equal((await table.history('other.test')).length, 1);
    });

    it('imports all entries in one step, each with its own version and event', async (t) => {
      const table = await makeTable(t);
      const kept = await table.put('kept.test', data('10.0.0.1'));
      const old = await table.put('replaced.test', data('10.0.0.2'));
      const events: ChangeEvent[] = [];
      table.onChange((e) => events.push(e));
      const written = await table.importEntries(
        new Map([
          ['Replaced.test', { a: ['10.0.1.2'], aaaa: ['2001:DB8::2'], ttl: 5 }],
          ['new.test', data('10.0.1.3')],
          ['*.wild.test', { a: [], aaaa: [], ttl: 0 }],
        ]),
        { by: 'admin' },
      );
      assert.deepEqual(
        written.map((e) => e.name),
        ['replaced.test', 'new.test', '*.wild.test'],
      );
      assert.deepEqual(written[0].aaaa, ['2001:db8::2']);
      assert.deepEqual(written[2].a, []);
      assert.equal(new Set(written.map((e) => e.version)).size, 3);
      assert.ok(written.every((e) => e.version > old.version));
      for (const entry of written) assert.deepEqual(await table.get(entry.name), entry);
      assert.deepEqual(await table.get('kept.test'), kept);
      assert.deepEqual(
        events,
        written.map((entry) => ({ name: entry.name, entry, version: entry.version })),
      );
      assert.deepEqual(
        (await table.history('replaced.test')).map((r) => [r.op, r.by, r.old?.a]),
        [
          ['import', 'admin', ['10.0.0.2']],
          ['put', 'unknown', undefined],
        ],
      );
      assert.deepEqual(await table.importEntries(new Map()), []);
      assert.equal(await table.size(), 4);
    });

    it('imports nothing when one entry is bad, and names it', async (t) => {
      const table = await makeTable(t);
      const before = await table.put('a.test', data('10.0.0.1'));
      const events: ChangeEvent[] = [];
      table.onChange((e) => events.push(e));
      const good = ['a.test', data('10.0.0.9')] as const;
      await assert.rejects(
        table.importEntries(new Map([good, ['b.test', data('10.0.0.2')], ['c.test', { a: ['10.0.0.300'], aaaa: [], ttl: 30 }]])),
        (err: unknown) => isDivertError(err, 'BAD_ADDRESS') && /c\.test/.test(err.message) && /10\.0\.0\.300/.test(err.message),
      );
      await assert.rejects(
        table.importEntries(new Map([good, ['b.test', { a: [], aaaa: [], ttl: -1 }]])),
        (err: unknown) => isDivertError(err, 'BAD_TTL') && /b\.test/.test(err.message),
      );
      await assert.rejects(
        table.importEntries(new Map([good, ['bad name', data('10.0.0.2')]])),
        (err: unknown) => isDivertError(err, 'BAD_NAME') && /bad name/.test(err.message),
      );
      await assert.rejects(
        table.importEntries(new Map([good, ['A.TEST.', data('10.0.0.2')]])),
        (err: unknown) => isDivertError(err, 'BAD_NAME') && /A\.TEST/.test(err.message),
      );
      assert.deepEqual(await table.get('a.test'), before);
      assert.equal(await table.get('b.test'), null);
      assert.equal(await table.size(), 1);
      assert.equal(events.length, 0);
      assert.deepEqual(await table.history('b.test'), []);
      assert.equal((await table.history('a.test')).length, 1);
    });

    it('diverts exactly the entries that answer the address, one version step and event each', async (t) => {
      const table = await makeTable(t);
      const x = '192.0.2.1';
      const y = '192.0.2.2';
      const z = '192.0.2.3';
      await table.put('one.test', { a: ['10.0.0.1', x, '10.0.0.2'], aaaa: ['2001:db8::1'], ttl: 10 });
      await table.put('two.test', { a: [x], aaaa: [], ttl: 20 });
      await table.put('*.three.test', { a: [z, x], aaaa: [], ttl: 30 }); // already answers z
      const other = await table.put('other.test', { a: [y], aaaa: [], ttl: 40 });
      const before = new Map((await table.list({ limit: 10 })).entries.map((e) => [e.name, e]));
      const events: ChangeEvent[] = [];
      table.onChange((e) => events.push(e));

      const changed = (await table.divert(x, z, { by: 'monitor' })).changed;
      assert.deepEqual(
        changed.map((e) => e.name),
        ['*.three.test', 'one.test', 'two.test'],
      );
      assert.deepEqual(
        changed.map((e) => e.a),
        [[z], ['10.0.0.1', z, '10.0.0.2'], [z]],
      );
      assert.deepEqual(changed[1].aaaa, ['2001:db8::1']);
      assert.deepEqual(
        changed.map((e) => e.ttl),
        [30, 10, 20],
      );
      const versions = changed.map((e) => e.version);
      assert.equal(new Set(versions).size, 3);
      for (const entry of changed) {
        assert.ok(entry.version > (before.get(entry.name)?.version ?? Infinity));
        assert.deepEqual(await table.get(entry.name), entry);
        const [last] = await table.history(entry.name);
        assert.deepEqual([last.op, last.by, last.version], ['divert', 'monitor', entry.version]);
      }
      assert.equal(events.length, 3);
      assert.deepEqual(
        [...events].sort((p, q) => p.version - q.version),
        [...changed].sort((p, q) => p.version - q.version).map((entry) => ({ name: entry.name, entry, version: entry.version })),
      );
      assert.deepEqual(await table.get('other.test'), other);
      assert.deepEqual((await table.divert(x, z)).changed, [], 'nothing answers x any more');
      assert.equal(events.length, 3);
    });

    it('diverts IPv6 addresses, compared in canonical form', async (t) => {
      const table = await makeTable(t);
      await table.put('v6.test', { a: ['192.0.2.1'], aaaa: ['2001:db8::1', '2001:db8::2'], ttl: 30 });
      await table.put('v6b.test', { a: [], aaaa: ['2001:db8::1'], ttl: 30 });
      const changed = (await table.divert('2001:DB8:0:0:0:0:0:1', '2001:db8:0::0:a')).changed;
      assert.deepEqual(
        changed.map((e) => [e.name, e.aaaa]),
        [
          ['v6.test', ['2001:db8::a', '2001:db8::2']],
          ['v6b.test', ['2001:db8::a']],
        ],
      );
      assert.deepEqual(changed[0].a, ['192.0.2.1']);
      assert.deepEqual((await table.divert('2001:db8::a', '2001:db8::2')).changed, [
        await table.get('v6.test'),
        await table.get('v6b.test'),
      ]);
      assert.deepEqual((await table.get('v6.test'))?.aaaa, ['2001:db8::2']);
    });

    it('refuses diversions between families, to the same address, or of non-addresses', async (t) => {
      const table = await makeTable(t);
      await table.put('f.test', { a: ['192.0.2.1'], aaaa: ['2001:db8::1'], ttl: 30 });
      const events: ChangeEvent[] = [];
      table.onChange((e) => events.push(e));
      const names = (field: string) => (err: unknown) => isDivertError(err, 'BAD_ADDRESS') && err.message.startsWith(`${field}:`);
      await assert.rejects(table.divert('192.0.2.1', '2001:db8::1'), names('to'));
      await assert.rejects(table.divert('2001:db8::1', '192.0.2.1'), names('to'));
      await assert.rejects(table.divert('192.0.2.1', '192.0.2.1'), names('to'));
      await assert.rejects(table.divert('2001:db8::1', '2001:DB8:0::1'), names('to'));
      await assert.rejects(table.divert('f.test', '192.0.2.2'), names('from'));
      await assert.rejects(table.divert('192.0.2.1', '192.0.2.256'), names('to'));
      await assert.rejects(table.divert('fe80::1%eth0', 'fe80::2'), names('from'));
      assert.equal(events.length, 0);
      assert.equal((await table.get('f.test'))?.version, (await table.history('f.test'))[0].version);
    });

    it('keeps rules and weights, in history and change events, and diverts the addresses they name', async (t) => {
      const table = await makeTable(t);
      const events: ChangeEvent[] = [];
      table.onChange((e) => events.push(e));
      const written = await table.put('rules.test', {
        a: ['192.0.2.1', '192.0.2.2'],
        aaaa: [],
        ttl: 30,
        weights: { '192.0.2.1': 3, '192.0.2.2': 1 },
        pick: 1,
        rules: [
          { networks: ['10.1.0.0/16'], a: ['192.0.2.9', '192.0.2.1'], weights: { '192.0.2.9': 2 } },
          { days: ['sat', 'sun'], from: '08:00', to: '18:00', tz: 'Europe/London', aaaa: [] },
          { days: ['mon'], weights: { '192.0.2.2': 5 } },
        ],
      });
      assert.deepEqual(written.rules?.[0].networks, ['10.1.0.0/16']);
      assert.deepEqual(written.weights, { '192.0.2.1': 3, '192.0.2.2': 1 });
      const read = await table.get('rules.test');
      assert.deepEqual(read, written, 'get returns what put stored, rules and weights included');
      assert.deepEqual(read?.rules?.[1].aaaa, [], 'an empty list in a rule stays a list (NODATA for that family)');
      assert.deepEqual((await table.history('rules.test'))[0].new?.rules, written.rules);
      assert.equal(events.length, 1, 'a write has emitted its change when it resolves');
      assert.deepEqual(events[0].entry?.rules, written.rules, 'the change event carries the rules');

      // 192.0.2.1 is answered by the entry and by rule 1: both move, with their weights
      const [diverted] = (await table.divert('192.0.2.1', '192.0.2.5')).changed;
      assert.deepEqual(diverted.a, ['192.0.2.5', '192.0.2.2']);
      assert.deepEqual(diverted.weights, { '192.0.2.5': 3, '192.0.2.2': 1 });
      assert.deepEqual(diverted.rules?.[0].a, ['192.0.2.9', '192.0.2.5']);
      assert.deepEqual(diverted.rules?.[0].weights, { '192.0.2.9': 2 });
      assert.deepEqual(diverted.rules?.[1], written.rules?.[1]);
      assert.deepEqual(await table.get('rules.test'), diverted);

      // an address only a rule answers is found too (the Redis store's reverse index covers rules)
      const [again] = (await table.divert('192.0.2.9', '192.0.2.5')).changed;
      assert.deepEqual(again.rules?.[0].a, ['192.0.2.5'], 'to was listed already: from is dropped, not doubled');
      assert.deepEqual(again.rules?.[0].weights, { '192.0.2.5': 3 }, "its share goes to to: 2 + to's own 1");
      assert.deepEqual(again.a, ['192.0.2.5', '192.0.2.2'], 'the default answer did not name 192.0.2.9');

      // rule 3 lists no addresses of its own: its weights name the entry's, and follow them
      const [third] = (await table.divert('192.0.2.2', '192.0.2.7')).changed;
      assert.deepEqual(third.a, ['192.0.2.5', '192.0.2.7']);
      assert.deepEqual(third.weights, { '192.0.2.5': 3, '192.0.2.7': 1 });
      assert.deepEqual(third.rules?.[2], { days: ['mon'], weights: { '192.0.2.7': 5 } });
      assert.deepEqual(await table.get('rules.test'), third, 'what divert returned is what is stored (and reads back as valid)');

      await assert.rejects(
        table.put('rules.test', { a: ['192.0.2.1'], aaaa: [], ttl: 30, rules: [{ networks: ['10.1.2.3/16'], a: ['192.0.2.2'] }] }),
        code('BAD_RULE'),
      );
      assert.deepEqual(await table.get('rules.test'), third, 'a bad rule changes nothing');
    });

    it('keeps diversions as records: chains collapse, a diversion back undoes one, delete forgets one; each change once, after the entries', async (t) => {
      const table = await makeTable(t, { now: () => FIXED });
      const at = FIXED.toISOString();
      const order: number[] = [];
      const changes: DiversionChange[] = [];
      table.onChange((e) => order.push(e.version));
      table.onDiversion((c) => {
        changes.push(c);
        order.push(c.version);
      });
      await table.put('c.test', data('192.0.2.1'));
      const first = await table.divert('192.0.2.1', '192.0.2.2', { by: 'm' });
      assert.deepEqual(first.diversion, { from: '192.0.2.1', to: '192.0.2.2', by: 'm', at });
      assert.deepEqual(
        first.changed.map((e) => e.a),
        [['192.0.2.2']],
      );
      const second = await table.divert('192.0.2.2', '192.0.2.3', { by: 'n' });
      assert.deepEqual(second.diversion, { from: '192.0.2.2', to: '192.0.2.3', by: 'n', at });
      assert.deepEqual(await table.diversions(), [
        { from: '192.0.2.1', to: '192.0.2.3', by: 'n', at },
        { from: '192.0.2.2', to: '192.0.2.3', by: 'n', at },
      ]);
      const back = await table.divert('192.0.2.3', '192.0.2.2', { by: 'o' });
      assert.equal(back.diversion, null);
      assert.deepEqual((await table.get('c.test'))?.a, ['192.0.2.2']);
      assert.deepEqual(await table.diversions(), [{ from: '192.0.2.1', to: '192.0.2.2', by: 'o', at }]);
      assert.deepEqual(await table.deleteDiversion('192.0.2.1', { by: 'p' }), { from: '192.0.2.1', to: '192.0.2.2', by: 'o', at });
      assert.deepEqual(await table.diversions(), []);
      assert.deepEqual((await table.get('c.test'))?.a, ['192.0.2.2'], 'deleting a record leaves the entries');
      await assert.rejects(table.deleteDiversion('192.0.2.1'), code('NOT_FOUND'));
      await assert.rejects(table.deleteDiversion('c.test'), code('BAD_ADDRESS'));
      assert.equal((await table.divert('2001:DB8::1', '2001:db8:0::2')).diversion?.from, '2001:db8::1');
      assert.deepEqual(await table.deleteDiversion('2001:db8:0:0::1'), { from: '2001:db8::1', to: '2001:db8::2', by: 'unknown', at });

      await sleep(100); // a shared store's own messages come back on its feed: none may be delivered twice
      assert.deepEqual(
        changes.map((c) => [c.action, c.from, c.to, c.by, c.at]),
        [
          ['set', '192.0.2.1', '192.0.2.2', 'm', at],
          ['set', '192.0.2.1', '192.0.2.3', 'n', at],
          ['set', '192.0.2.2', '192.0.2.3', 'n', at],
          ['set', '192.0.2.1', '192.0.2.2', 'o', at],
          ['delete', '192.0.2.2', '192.0.2.3', 'o', at],
          ['delete', '192.0.2.1', '192.0.2.2', 'p', at],
          ['set', '2001:db8::1', '2001:db8::2', 'unknown', at],
          ['delete', '2001:db8::1', '2001:db8::2', 'unknown', at],
        ],
      );
      assert.deepEqual(
        order,
        [...order].sort((x, y) => x - y),
        'one sequence: the entries of a diversion, then its records',
      );
      assert.equal(new Set(order).size, order.length);
    });

    it('accepts resync listeners', async (t) => {
      const table = await makeTable(t);
      let calls = 0;
      const off = table.onResync(() => calls++);
      await table.put('r.test', data('10.0.0.1'));
      off();
      assert.equal(calls, 0);
    });
  });
}

contract('MemoryTable', async (_t, options) => memoryTable(options));

describe('MemoryTable only', () => {
  it('answers lookup synchronously', async () => {
    const table = memoryTable();
    await table.put('sync.test', data('10.0.0.1'));
    const result = table.lookupName('sync.test');
    assert.ok(!(result instanceof Promise));
    assert.equal(result?.name, 'sync.test');
  });
});

describe('RedisTable', () => {
  let redis: { url: string; stop(): Promise<void> };
  before(async () => {
    redis = await testRedis();
  });
  after(async () => {
    await redis.stop();
  });

  const open = async (t: TestContext, prefix: string, options: TableOptions & { onError?: (e: Error) => void } = {}) => {
    const table = await redisTable({ url: redis.url, prefix, ...options });
    t.after(() => table.close());
    return table;
  };
  const fresh = (t: TestContext) => {
    const prefix = uniquePrefix('table');
    t.after(() => dropPrefix(redis.url, prefix));
    return prefix;
  };

  contract('RedisTable', (t, options) => open(t, fresh(t), options));

  it('lets exactly one of 50 parallel puts with the same ifVersion win', async (t) => {
    const prefix = fresh(t);
    const tables = await Promise.all([open(t, prefix), open(t, prefix)]);
    const base = await tables[0].put('race.test', data('10.0.0.1'));
    const results = await Promise.allSettled(
      Array.from({ length: 50 }, (_, i) => tables[i % 2].put('race.test', data(`10.0.1.${i}`), { ifVersion: base.version })),
    );
    const won = results.filter((r) => r.status === 'fulfilled');
    assert.equal(won.length, 1);
    for (const r of results) if (r.status === 'rejected') assert.ok(isDivertError(r.reason, 'VERSION_MISMATCH'));
    assert.deepEqual(await tables[1].get('race.test'), (won[0] as PromiseFulfilledResult<unknown>).value);
  });

  it('shares writes between two tables on the same prefix', async (t) => {
    const prefix = fresh(t);
    const first = await open(t, prefix);
    const second = await open(t, prefix);
    const entry = await first.put('shared.test', data('10.0.0.1'));
    assert.deepEqual(await second.get('shared.test'), entry);
    assert.deepEqual(await second.lookupName('shared.test'), entry);
    assert.equal(await second.size(), 1);
    const next = await second.put('shared.test', data('10.0.0.2'), { ifVersion: entry.version });
    assert.ok(next.version > entry.version);
    await assert.rejects(first.delete('shared.test', { ifVersion: entry.version }), code('VERSION_MISMATCH'));
  });

  it('treats unreadable stored data as absent and reports it once', async (t) => {
    const prefix = fresh(t);
    const errors: Error[] = [];
    const table = await open(t, prefix, { onError: (e) => errors.push(e) });
    await table.put('*.bad.test', data('10.0.0.1'));
    const raw = new Redis(redis.url);
    t.after(() => raw.disconnect());
    await raw.hset(`${prefix}{table}:entries`, 'x.bad.test', '{not json');
    for (let i = 0; i < 3; i++) {
      assert.equal((await table.lookupName('x.bad.test'))?.name, '*.bad.test');
    }
    assert.equal(await table.get('x.bad.test'), null);
    assert.deepEqual(
      (await table.list({ limit: 10 })).entries.map((e) => e.name),
      ['*.bad.test'],
    );
    assert.equal(errors.length, 1);
    assert.match(errors[0].message, /x\.bad\.test/);
    // A create-only put may replace it, as it reads as absent.
    await table.put('x.bad.test', data('10.0.0.2'), { ifVersion: 0 });
    assert.equal((await table.get('x.bad.test'))?.a[0], '10.0.0.2');
  });

  it('fails fast while redis is down and recovers by itself', async (t) => {
    const server = await startRedis();
    t.after(() => server.stop());
    const table = await redisTable({ url: server.url, prefix: uniquePrefix('down') });
    t.after(() => table.close());
    await table.put('up.test', data('10.0.0.1'));
    assert.equal(table.isReady(), true);

    await server.kill();
    const started = Date.now();
    await assert.rejects(table.put('down.test', data('10.0.0.2')), code('BACKEND_UNAVAILABLE'));
    assert.ok(Date.now() - started < 1000, `took ${Date.now() - started} ms`);
    await assert.rejects(Promise.resolve(table.lookupName('up.test')), code('BACKEND_UNAVAILABLE'));
    assert.equal(table.isReady(), false);

    await server.restart();
    const deadline = Date.now() + 5000;
    for (;;) {
      try {
        await table.put('back.test', data('10.0.0.3'));
        break;
      } catch (err) {
        assert.ok(isDivertError(err, 'BACKEND_UNAVAILABLE'));
        if (Date.now() > deadline) throw err;
        await sleep(100);
      }
    }
    assert.equal(table.isReady(), true);
    assert.equal((await table.get('back.test'))?.a[0], '10.0.0.3');
  });

  it('rejects connect to a dead port with BACKEND_UNAVAILABLE, hiding the password', async () => {
    const port = await freePort();
    const started = Date.now();
    await assert.rejects(redisTable({ url: `redis://:s3cret@127.0.0.1:${port}`, prefix: 'x:', connectTimeoutMs: 300 }), (err: unknown) => {
      assert.ok(isDivertError(err, 'BACKEND_UNAVAILABLE'));
      assert.ok(!err.message.includes('s3cret'), err.message);
      assert.ok(!String(err.stack).includes('s3cret'));
      assert.match(err.message, /redis:\/\/:\*\*\*@127\.0\.0\.1/);
      return true;
    });
    assert.ok(Date.now() - started < 1300, `took ${Date.now() - started} ms`);
  });
});

// The whole contract again through a redis-cluster:// URL: every script must stay in one
// slot, and changes must reach the writer exactly once through a Cluster client.
describe('RedisTable on a cluster', () => {
  let cluster: RedisCluster;
  before(async () => {
    cluster = await startRedisCluster();
  });
  after(async () => {
    await cluster?.stop();
  });

  contract('RedisTable (cluster)', async (t, options) => {
    const prefix = uniquePrefix('cluster');
    t.after(() => cluster.dropPrefix(prefix));
    const table = await redisTable({ url: cluster.url, prefix, ...options });
    t.after(() => table.close());
    return table;
  });
});
