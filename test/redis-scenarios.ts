// Redis-only guarantees of RedisTable, written once and run on a single server
// (redis-table.test.ts) and on a cluster (redis-cluster.test.ts).

import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Cluster, Redis } from 'ioredis';
import { redisTable, type RedisTable } from './helpers/tables.js';
import { HISTORY_LENGTH } from '../src/table/table.js';
import { type ChangeEvent, type Entry, type EntryData } from '../src/entry/entry.js';
import { uniquePrefix } from './helpers/redis.js';

export interface SharedStore {
  url: string;
  /** Every node, as redis:// URLs. */
  nodes: string[];
  dropPrefix(prefix: string): Promise<void>;
}

const data = (a: string[], aaaa: string[] = []): EntryData => ({ a, aaaa, ttl: 30 });

/** Polls until `check` holds, failing after `ms`. */
export async function eventually(what: string, ms: number, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`${what}: not within ${ms} ms`);
    await sleep(10);
  }
}

/** Collects a table's events and resync calls. */
export function watch(table: RedisTable): { events: ChangeEvent[]; resyncs: number } {
  const seen = { events: [] as ChangeEvent[], resyncs: 0 };
  table.onChange((e) => seen.events.push(e));
  table.onResync(() => seen.resyncs++);
  return seen;
}

const event = (entry: Entry): ChangeEvent => ({ name: entry.name, entry, version: entry.version });
const byVersion = (events: ChangeEvent[]) => [...events].sort((x, y) => x.version - y.version);

export function sharedStoreSuite(label: string, store: () => SharedStore): void {
  describe(`RedisTable on ${label}: shared between processes`, () => {
    const fresh = (t: TestContext) => {
      const prefix = uniquePrefix('shared');
      t.after(() => store().dropPrefix(prefix));
      return prefix;
    };
    const open = async (t: TestContext, prefix: string) => {
      const table = await redisTable({ url: store().url, prefix });
      t.after(() => table.close());
      return table;
    };
    /** A client for inspecting keys: a Cluster client on a cluster, so keys are found where they live. */
    const inspector = (t: TestContext): Redis | Cluster => {
      const { nodes } = store();
      const client =
        nodes.length > 1
          ? new Cluster(nodes.map((u) => ({ host: new URL(u).hostname, port: Number(new URL(u).port) })))
          : new Redis(nodes[0]);
      t.after(() => client.disconnect());
      return client;
    };

    it('delivers every change to the other tables within 1 s, and each own change once', async (t) => {
      const prefix = fresh(t);
      const writer = await open(t, prefix);
      const reader = await open(t, prefix);
      const w = watch(writer);
      const r = watch(reader);
      const expected: ChangeEvent[] = [];
      const arrival: number[] = [];
      const expect = async (events: ChangeEvent[]) => {
        const wrote = Date.now();
        expected.push(...events);
        await eventually('reader got the change', 1000, () => r.events.length >= expected.length);
        arrival.push(Date.now() - wrote);
      };
      await expect([event(await writer.put('p.test', data(['192.0.2.1'])))]);
      await expect([event(await writer.put('q.test', data(['192.0.2.1'], ['2001:db8::1'])))]);
      await expect(
        (
          await writer.importEntries(
            new Map([
              ['i.test', data(['192.0.2.1'])],
              ['j.test', data([])],
            ]),
          )
        ).map(event),
      );
      await expect((await writer.divert('192.0.2.1', '192.0.2.9')).changed.map(event));
      await expect((await writer.seed(new Map([['s.test', data(['192.0.2.2'])]]))).map(event));
      await writer.delete('j.test');
      const deleted = w.events[w.events.length - 1];
      assert.equal(deleted.entry, null);
      await expect([deleted]);
      const fromReader = event(await reader.put('r.test', data(['192.0.2.3'])));
      await eventually('writer got the reader change', 1000, () => w.events.length === expected.length + 1);

      await sleep(200); // time for any duplicate to show up
      assert.deepEqual(byVersion(r.events), byVersion([...expected, fromReader]), 'reader: each change once, as written');
      assert.deepEqual(byVersion(w.events), byVersion([...expected, fromReader]), 'writer: own changes once, and the other one');
      assert.deepEqual(r.events.slice(0, expected.length), expected, 'in the order written');
      assert.ok(
        arrival.every((ms) => ms < 1000),
        `arrival times ${arrival}`,
      );
      assert.equal(r.resyncs + w.resyncs, 0);
    });

    it('publishes {name, entry, version} on <prefix>changes, entry null on delete', async (t) => {
      const prefix = fresh(t);
      const table = await open(t, prefix);
      const subscriber = new Redis(store().nodes[store().nodes.length - 1]);
      t.after(() => subscriber.disconnect());
      const messages: unknown[] = [];
      subscriber.on('message', (channel: string, message: string) => {
        if (channel === `${prefix}changes`) messages.push(JSON.parse(message));
      });
      await subscriber.subscribe(`${prefix}changes`);
      const entry = await table.put('m.test', { a: [], aaaa: ['2001:db8::5'], ttl: 7 });
      await table.delete('m.test');
      await eventually('both messages', 1000, () => messages.length === 2);
      assert.deepEqual(messages[0], { name: 'm.test', entry: { ...entry }, version: entry.version });
      assert.deepEqual(messages[1], { name: 'm.test', entry: null, version: entry.version + 1 });
    });

    /** Subscriptions to the changes channel, over all nodes. */
    const subscribers = async (prefix: string) => {
      let n = 0;
      for (const url of store().nodes) {
        const client = new Redis(url);
        const reply = (await client.call('PUBSUB', 'NUMSUB', `${prefix}changes`)) as [string, number];
        client.disconnect();
        n += Number(reply[1]);
      }
      return n;
    };

    it('tells listeners to resync when its subscription was cut, and keeps receiving', async (t) => {
      const prefix = fresh(t);
      const writer = await open(t, prefix);
      const reader = await open(t, prefix);
      const r = watch(reader);
      const w = watch(writer);
      await writer.put('before.test', data(['192.0.2.1']));
      await eventually('first change', 1000, () => r.events.length === 1);

      let killed = 0;
      for (const url of store().nodes) {
        const admin = new Redis(url);
        killed += Number(await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub'));
        admin.disconnect();
      }
      assert.ok(killed >= 2, `killed ${killed} subscriber connections`);
      await eventually('reader resynced', 5000, () => r.resyncs >= 1);
      await eventually('writer resynced', 5000, () => w.resyncs >= 1);
      // On a cluster a subscriber may have moved to a node not yet swept and been cut
      // again (and resynced again): wait until both are subscribed somewhere.
      await eventually('both subscribed again', 5000, async () => (await subscribers(prefix)) === 2);

      const after = await writer.put('after.test', data(['192.0.2.2']));
      await eventually('change after the resync', 1000, () => r.events.length === 2);
      assert.deepEqual(r.events[1], event(after));
      await sleep(200);
      assert.equal(w.events.length, 2, 'no duplicates on the writer');
      assert.equal(r.events.length, 2);
    });

    it('keeps the reverse index of addresses right through every kind of write', async (t) => {
      const prefix = fresh(t);
      const table = await open(t, prefix);
      const raw = inspector(t);
      const key = (address: string) => `${prefix}{table}:addr:${address}`;
      const index = async (): Promise<Record<string, string[]>> => {
        const out: Record<string, string[]> = {};
        for (const address of ['192.0.2.1', '192.0.2.2', '192.0.2.3', '192.0.2.4', '2001:db8::1', '2001:db8::2']) {
          const names = (await raw.smembers(key(address))).sort();
          if (names.length > 0) out[address] = names;
        }
        return out;
      };
      await table.put('a.test', data(['192.0.2.1', '192.0.2.2'], ['2001:db8::1']));
      await table.put('b.test', data(['192.0.2.1']));
      assert.deepEqual(await index(), {
        '192.0.2.1': ['a.test', 'b.test'],
        '192.0.2.2': ['a.test'],
        '2001:db8::1': ['a.test'],
      });
      await table.put('a.test', data(['192.0.2.2'], ['2001:db8::1']));
      await table.seed(
        new Map([
          ['c.test', data(['192.0.2.1'])],
          ['a.test', data(['192.0.2.4'])],
        ]),
      );
      await table.importEntries(
        new Map([
          ['b.test', data(['192.0.2.2'])],
          ['d.test', data([], ['2001:db8::1'])],
        ]),
      );
      assert.deepEqual(await index(), {
        '192.0.2.1': ['c.test'],
        '192.0.2.2': ['a.test', 'b.test'],
        '2001:db8::1': ['a.test', 'd.test'],
      });
      await table.divert('192.0.2.2', '192.0.2.3');
      await table.divert('2001:db8::1', '2001:db8::2');
      await table.delete('c.test');
      assert.deepEqual(await index(), {
        '192.0.2.3': ['a.test', 'b.test'],
        '2001:db8::2': ['a.test', 'd.test'],
      });
      await table.delete('a.test');
      assert.deepEqual(await index(), { '192.0.2.3': ['b.test'], '2001:db8::2': ['d.test'] });
      assert.equal(await raw.exists(key('192.0.2.1'), key('192.0.2.2'), key('2001:db8::1')), 0, 'empty sets are gone');

      // A stale member (the entry no longer lists the address) is dropped, not diverted.
      await raw.sadd(key('192.0.2.3'), 'd.test');
      const changed = (await table.divert('192.0.2.3', '192.0.2.4')).changed;
      assert.deepEqual(
        changed.map((e) => e.name),
        ['b.test'],
      );
      assert.deepEqual((await table.get('d.test'))?.aaaa, ['2001:db8::2']);
      assert.deepEqual(await index(), { '192.0.2.4': ['b.test'], '2001:db8::2': ['d.test'] });
    });

    it('loses and duplicates nothing when 50 diverts run at once from two tables', async (t) => {
      const prefix = fresh(t);
      const tables = [await open(t, prefix), await open(t, prefix)];
      const seen = tables.map(watch);
      const from = (i: number) => `10.1.0.${i}`;
      const to = (i: number) => `10.2.0.${i}`;
      const n = 50;
      const names = ['e0.test', 'e1.test', 'e2.test', 'e3.test', 'e4.test'];
      // each entry lists all 50 addresses, rotated differently, so order is checked too
      const lists = names.map((_, k) => Array.from({ length: n }, (_, i) => from((i + 7 * k) % n)));
      const initial = await tables[0].importEntries(new Map(names.map((name, k) => [name, data(lists[k])])));

      const results = await Promise.all(Array.from({ length: n }, (_, i) => tables[i % 2].divert(from(i), to(i), { by: `d${i}` }))).then(
        (all) => all.map((diverted) => diverted.changed),
      );
      for (const changed of results)
        assert.deepEqual(
          changed.map((e) => e.name),
          names,
        );
      const versions = results.flat().map((e) => e.version);
      assert.equal(new Set(versions).size, n * names.length, 'one version per entry per divert');

      for (const [k, name] of names.entries()) {
        const entry = await tables[1].get(name);
        assert.deepEqual(
          entry?.a,
          lists[k].map((address) => to(Number(address.split('.')[3]))),
        );
        assert.equal(entry?.version, Math.max(...results.map((changed) => changed[k].version)));
        const history = await tables[0].history(name);
        assert.equal(history.length, HISTORY_LENGTH);
        assert.ok(history.every((r) => r.op === 'divert'));
        // each step changed exactly one address, and the steps chain up
        for (let i = 0; i + 1 < history.length; i++) assert.deepEqual(history[i].old, history[i + 1].new);
        for (const r of history) {
          const differ = (r.new?.a ?? []).filter((address, j) => address !== r.old?.a[j]);
          assert.equal(differ.length, 1);
        }
      }
      const total = initial.length + n * names.length;
      for (const s of seen) await eventually('every change seen', 2000, () => s.events.length >= total);
      await sleep(200);
      for (const s of seen) {
        assert.equal(s.events.length, total);
        assert.equal(new Set(s.events.map((e) => e.version)).size, total, 'no duplicates');
      }
      const raw = inspector(t);
      for (let i = 0; i < n; i++) {
        assert.equal(await raw.exists(`${prefix}{table}:addr:${from(i)}`), 0);
        assert.deepEqual((await raw.smembers(`${prefix}{table}:addr:${to(i)}`)).sort(), names);
      }
    });
  });
}
