// Local rules end to end: a real `divert serve` (in this process, or in worker processes
// with DIVERT_TEST_WORKERS), real sockets from different loopback source addresses, and
// dig where it is installed.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import dnsPacket from 'dns-packet';
import { decode, dig, findDig, query, startDivert, udpAsk, type TestServer } from './helpers/divert.js';
import { BACKENDS, type Backend } from './helpers/backends.js';

const NAME = 'www.rules.test';

interface EcsOption {
  code: number | string;
  family?: number;
  sourcePrefixLength?: number;
  scopePrefixLength?: number;
  ip?: string;
}

/** The A addresses of a reply, in answer order. */
function addressesOf(reply: Buffer | null): string[] {
  return (decode(reply).answers ?? []).flatMap((r) => (r.type === 'A' ? [r.data] : []));
}

function ecsQuery(name: string, ip: string, sourcePrefixLength: number): Buffer {
  return query(name, 'A', {
    additionals: [
      {
        type: 'OPT',
        name: '.',
        udpPayloadSize: 1232,
        options: [{ code: 'CLIENT_SUBNET', family: 1, sourcePrefixLength, scopePrefixLength: 0, ip }],
      } as unknown as dnsPacket.Answer,
    ],
  });
}

function ecsOf(reply: Buffer | null): EcsOption | undefined {
  const opt = (decode(reply).additionals ?? []).find((r) => r.type === 'OPT') as { options?: EcsOption[] } | undefined;
  return opt?.options?.find((o) => o.code === 8 || o.code === 'CLIENT_SUBNET');
}

async function put(divert: TestServer, name: string, body: unknown): Promise<void> {
  const res = await divert.api(`/v1/names/${name}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  assert.equal(res.status, 200, await res.text());
}

for (const [backendName, makeBackend] of BACKENDS) {
  describe(`local rules (${backendName} table)`, () => {
    let backend: Backend;
    let divert: TestServer;

    before(async () => {
      backend = await makeBackend('rules-serve');
      // 127.0.0.4 is a resolver whose client-subnet option is trusted; 127.0.0.5 is not
      divert = await startDivert({ ...backend.options, 'trust-ecs': ['127.0.0.4/32'] });
      await put(divert, NAME, {
        a: ['192.0.2.10'],
        aaaa: [],
        rules: [
          { networks: ['127.0.0.2/32'], a: ['192.0.2.2'] },
          { networks: ['127.0.0.3/32'], a: ['192.0.2.3'] },
          { networks: ['10.1.0.0/16'], a: ['192.0.2.16'] },
        ],
      });
    });
    after(async () => {
      await divert?.close();
      await backend?.cleanup();
    });

    it('answers clients at 127.0.0.2 and 127.0.0.3 differently, and everyone else with the default', async () => {
      assert.deepEqual(addressesOf(await udpAsk(divert.port, query(NAME), 3000, '127.0.0.1', '127.0.0.2')), ['192.0.2.2']);
      assert.deepEqual(addressesOf(await udpAsk(divert.port, query(NAME), 3000, '127.0.0.1', '127.0.0.3')), ['192.0.2.3']);
      assert.deepEqual(addressesOf(await udpAsk(divert.port, query(NAME), 3000, '127.0.0.1', '127.0.0.1')), ['192.0.2.10']);
    });

    it('gives dig -b the answer of its source address', async (t) => {
      if (!(await findDig())) return t.skip('dig is not installed');
      assert.equal((await dig(divert.port, ['-b', '127.0.0.2', '+short', NAME])).trim(), '192.0.2.2');
      assert.equal((await dig(divert.port, ['-b', '127.0.0.3', '+short', NAME])).trim(), '192.0.2.3');
    });

    it('matches the client subnet of a trusted resolver and sets the scope in the reply', async () => {
      const reply = await udpAsk(divert.port, ecsQuery(NAME, '10.1.2.0', 24), 3000, '127.0.0.1', '127.0.0.4');
      assert.deepEqual(addressesOf(reply), ['192.0.2.16'], 'the rule for 10.1.0.0/16 answers');
      const ecs = ecsOf(reply);
      assert.ok(ecs, 'the reply carries the client-subnet option');
      assert.equal(ecs.sourcePrefixLength, 24, 'source prefix echoed');
      assert.equal(ecs.scopePrefixLength, 16, 'the answer holds for the whole /16 the rule names');
      assert.equal(ecs.ip, '10.1.2.0');
    });

    it('ignores the client subnet of an untrusted resolver', async () => {
      const reply = await udpAsk(divert.port, ecsQuery(NAME, '10.1.2.0', 24), 3000, '127.0.0.1', '127.0.0.5');
      assert.deepEqual(addressesOf(reply), ['192.0.2.10'], 'answered by its own address, which no rule names');
      assert.equal(ecsOf(reply), undefined, 'no client-subnet option in the reply: the subnet was not used');
    });

    it('answers a plain entry as before: no option added, all addresses', async () => {
      await put(divert, 'plain.rules.test', { a: ['192.0.2.1', '192.0.2.5'] });
      const reply = await udpAsk(divert.port, ecsQuery('plain.rules.test', '10.1.2.0', 24), 3000, '127.0.0.1', '127.0.0.4');
      assert.deepEqual(addressesOf(reply), ['192.0.2.1', '192.0.2.5']);
    });

    it('shares load by weight: one address per answer, within 3 points of the weights over 10,000 queries', async () => {
      await put(divert, 'weighted.rules.test', {
        a: ['192.0.2.1', '192.0.2.2', '192.0.2.3'],
        weights: { '192.0.2.1': 5, '192.0.2.2': 3, '192.0.2.3': 2 },
        pick: 1,
      });
      const counts = new Map<string, number>();
      const total = 10_000;
      let next = 0;
      const deadline = Date.now() + 60_000;
      const client = async () => {
        while (next < total && Date.now() < deadline) {
          next++;
          const got = addressesOf(await udpAsk(divert.port, query('weighted.rules.test'), 3000));
          assert.equal(got.length, 1, 'pick 1: one address per answer');
          counts.set(got[0], (counts.get(got[0]) ?? 0) + 1);
        }
      };
      await Promise.all(Array.from({ length: 32 }, client));
      const answered = [...counts.values()].reduce((x, y) => x + y, 0);
      assert.equal(answered, total, 'every query answered');
      for (const [address, weight] of [
        ['192.0.2.1', 0.5],
        ['192.0.2.2', 0.3],
        ['192.0.2.3', 0.2],
      ] as const) {
        const share = (counts.get(address) ?? 0) / answered;
        assert.ok(Math.abs(share - weight) <= 0.03, `${address}: ${(share * 100).toFixed(1)} % of answers, weight ${weight * 100} %`);
      }
    });

    it('refuses a bad rule with 400 naming the field, and keeps the entry', async () => {
      const before = await (await divert.api(`/v1/names/${NAME}`)).json();
      const res = await divert.api(`/v1/names/${NAME}`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ a: ['192.0.2.10'], rules: [{ networks: ['127.0.0.2/32'], tz: 'Mars/Olympus', days: ['mon'] }] }),
      });
      assert.equal(res.status, 400);
      const { error } = (await res.json()) as { error: { code: string; message: string } };
      assert.equal(error.code, 'BAD_RULE');
      assert.match(error.message, /rules\[0\]\.tz/);
      assert.deepEqual(await (await divert.api(`/v1/names/${NAME}`)).json(), before);
      assert.deepEqual(addressesOf(await udpAsk(divert.port, query(NAME), 3000, '127.0.0.1', '127.0.0.2')), ['192.0.2.2']);
    });
  });
}

describe('time-of-day rules, with an injected clock', () => {
  let divert: TestServer;
  let now = Date.parse('2026-07-06T07:59:00Z'); // a Monday; 08:59 in London (BST)

  before(async () => {
    divert = await startDivert({ workers: '1' }, { clock: () => now });
    await put(divert, 'office.rules.test', {
      a: ['192.0.2.10'],
      rules: [{ days: ['mon', 'tue', 'wed', 'thu', 'fri'], from: '09:00', to: '17:30', tz: 'Europe/London', a: ['192.0.2.20'] }],
    });
  });
  after(async () => divert?.close());

  const ask = async () => addressesOf(await udpAsk(divert.port, query('office.rules.test')));

  it("answers the window's addresses only inside it, in the rule's time zone", async () => {
    assert.deepEqual(await ask(), ['192.0.2.10'], 'Monday 08:59 London: before the window');
    now = Date.parse('2026-07-06T08:00:00Z');
    assert.deepEqual(await ask(), ['192.0.2.20'], 'Monday 09:00 London: inside');
    now = Date.parse('2026-07-06T16:29:59Z');
    assert.deepEqual(await ask(), ['192.0.2.20'], 'Monday 17:29:59 London: inside');
    now = Date.parse('2026-07-06T16:30:00Z');
    assert.deepEqual(await ask(), ['192.0.2.10'], 'Monday 17:30 London: the end is excluded');
    now = Date.parse('2026-07-04T10:00:00Z');
    assert.deepEqual(await ask(), ['192.0.2.10'], 'Saturday 11:00: not a day of the rule');
    now = Date.parse('2026-12-07T09:00:00Z');
    assert.deepEqual(await ask(), ['192.0.2.20'], 'Monday 09:00 London in winter (GMT): inside');
  });
});
