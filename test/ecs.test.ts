// EDNS Client Subnet (RFC 7871) without a server: reading the option from a query,
// echoing it with a scope in a reply, and the query pipeline's use of it (trusted
// resolvers only, the chosen answer, the plain path untouched).

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dnsPacket from 'dns-packet';
import { AccessList } from '../src/net/cidr.js';
import { QueryPipeline } from '../src/pipeline/pipeline.js';
import { type Client } from '../src/transport/handler.js';
import { compileEntry } from '../src/rules/compile.js';
import { AnswerCache } from '../src/table/answer-cache.js';
import type { EntryData } from '../src/entry/entry.js';
import { EntryMap, type TableView } from '../src/table/table.js';
import { checkEntryData, type EntryInput } from '../src/entry/check.js';
import type { Forwarder } from '../src/upstream/forwarder.js';
import { isUnreadable, readQuery, type Query } from '../src/wire/query.js';
import { readEdns, type Ecs, type Edns } from '../src/wire/edns.js';
import { compileAnswers } from '../src/wire/answers.js';
import { answerReply } from '../src/wire/reply.js';

// ---------------------------------------------------------------------------------
// Building queries

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

/** An EDNS option in wire form. */
function option(code: number, data: Buffer): Buffer {
  return Buffer.concat([u16(code), u16(data.length), data]);
}

/** ECS option data exactly as given: family, source, scope, address bytes. */
function ecsData(family: number, source: number, scope: number, address: number[]): Buffer {
  return Buffer.concat([u16(family), Buffer.from([source, scope, ...address])]);
}

/** A query for `name` (type A unless given) whose OPT rdata is `rdata`. */
function queryWithOptions(rdata: Buffer, qtype = 1, name = 'www.example'): Buffer {
  const question = Buffer.concat([
    ...name.split('.').map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label)])),
    Buffer.from([0]),
    u16(qtype),
    u16(1),
  ]);
  const opt = Buffer.concat([Buffer.from([0]), u16(41), u16(1232), Buffer.from([0, 0, 0, 0]), u16(rdata.length), rdata]);
  const header = Buffer.concat([u16(0x1234), u16(0x0100), u16(1), u16(0), u16(0), u16(1)]);
  return Buffer.concat([header, question, opt]);
}

/** A query as dns-packet writes it, with an ECS option. */
function ecsQuery(name: string, type: 'A' | 'AAAA' | 'MX', ecs: { family: number; source: number; ip: string } | null): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id: 0x4242,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type, name, class: 'IN' }],
    additionals: [
      {
        type: 'OPT',
        name: '.',
        udpPayloadSize: 1232,
        options: ecs
          ? [{ code: 'CLIENT_SUBNET', family: ecs.family, sourcePrefixLength: ecs.source, scopePrefixLength: 0, ip: ecs.ip }]
          : [],
      } as unknown as dnsPacket.Answer,
    ],
  });
}

function mustRead(msg: Buffer): Query {
  const q = readQuery(msg);
  assert.ok(!isUnreadable(q));
  return q;
}

function ednsOf(msg: Buffer): Edns | null | 'formerr' {
  return readEdns(msg, mustRead(msg));
}

interface EcsOption {
  code: number;
  family: number;
  sourcePrefixLength: number;
  scopePrefixLength: number;
  ip: string;
}

function decoded(reply: Buffer) {
  return dnsPacket.decode(reply);
}

function optionsOf(reply: Buffer): EcsOption[] {
  const opt = (decoded(reply).additionals ?? []).find((r) => r.type === 'OPT') as { options?: EcsOption[] } | undefined;
  return opt?.options ?? [];
}

function answersOf(reply: Buffer): string[] {
  return (decoded(reply).answers ?? []).map((r) => (r as { data: string }).data);
}

// ---------------------------------------------------------------------------------
// readEdns

describe('readEdns: the client-subnet option', () => {
  const valid: { name: string; rdata: Buffer; ecs: Ecs }[] = [
    { name: 'IPv4 /24', rdata: option(8, ecsData(1, 24, 0, [10, 1, 2])), ecs: { family: 1, sourcePrefix: 24, address: '10.1.2.0' } },
    { name: 'IPv4 /32', rdata: option(8, ecsData(1, 32, 0, [192, 0, 2, 7])), ecs: { family: 1, sourcePrefix: 32, address: '192.0.2.7' } },
    {
      name: 'IPv4 /20, a partial last byte',
      rdata: option(8, ecsData(1, 20, 0, [10, 1, 0x30])),
      ecs: { family: 1, sourcePrefix: 20, address: '10.1.48.0' },
    },
    { name: 'IPv4 /0, no address bytes', rdata: option(8, ecsData(1, 0, 0, [])), ecs: { family: 1, sourcePrefix: 0, address: '0.0.0.0' } },
    {
      name: 'IPv6 /56',
      rdata: option(8, ecsData(2, 56, 0, [0x20, 0x01, 0x0d, 0xb8, 0x00, 0xaa, 0x01])),
      ecs: { family: 2, sourcePrefix: 56, address: '2001:db8:aa:100::' },
    },
    {
      name: 'IPv6 /128',
      rdata: option(8, ecsData(2, 128, 0, [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1])),
      ecs: { family: 2, sourcePrefix: 128, address: '2001:db8::1:0:0:1' }, // RFC 5952: the first of equal zero runs
    },
    { name: 'IPv6 /0', rdata: option(8, ecsData(2, 0, 0, [])), ecs: { family: 2, sourcePrefix: 0, address: '::' } },
    {
      name: 'after a cookie option',
      rdata: Buffer.concat([option(10, Buffer.from([1, 2, 3, 4, 5, 6, 7, 8])), option(8, ecsData(1, 16, 0, [172, 16]))]),
      ecs: { family: 1, sourcePrefix: 16, address: '172.16.0.0' },
    },
  ];
  for (const c of valid) {
    test(`valid: ${c.name}`, () => {
      assert.deepEqual(ednsOf(queryWithOptions(c.rdata)), { udpPayload: 1232, version: 0, dnssecOk: false, ecs: c.ecs });
    });
  }

  test('as dns-packet writes it', () => {
    const edns = ednsOf(ecsQuery('www.example', 'A', { family: 1, source: 24, ip: '198.51.100.0' }));
    assert.deepEqual(edns, {
      udpPayload: 1232,
      version: 0,
      dnssecOk: false,
      ecs: { family: 1, sourcePrefix: 24, address: '198.51.100.0' },
    });
  });

  test('no options, or options without ECS: no ecs field', () => {
    assert.deepEqual(ednsOf(queryWithOptions(Buffer.alloc(0))), { udpPayload: 1232, version: 0, dnssecOk: false });
    assert.deepEqual(ednsOf(queryWithOptions(option(10, Buffer.alloc(8)))), { udpPayload: 1232, version: 0, dnssecOk: false });
  });

  const malformed: { name: string; rdata: Buffer }[] = [
    { name: 'family 3', rdata: option(8, ecsData(3, 8, 0, [10])) },
    { name: 'family 0', rdata: option(8, ecsData(0, 0, 0, [])) },
    { name: 'IPv4 source prefix 33', rdata: option(8, ecsData(1, 33, 0, [10, 0, 0, 0, 0])) },
    { name: 'IPv6 source prefix 129', rdata: option(8, ecsData(2, 129, 0, new Array(17).fill(0))) },
    { name: 'address longer than the prefix needs', rdata: option(8, ecsData(1, 16, 0, [10, 1, 0])) },
    { name: 'address shorter than the prefix needs', rdata: option(8, ecsData(1, 24, 0, [10, 1])) },
    { name: 'bits set beyond the prefix', rdata: option(8, ecsData(1, 20, 0, [10, 1, 0x31])) },
    { name: 'scope prefix set in a query', rdata: option(8, ecsData(1, 24, 24, [10, 1, 2])) },
    { name: 'option shorter than its fixed fields', rdata: option(8, Buffer.from([0, 1, 24])) },
    { name: 'option running past the OPT data', rdata: Buffer.concat([u16(8), u16(7), ecsData(1, 24, 0, [10, 1])]) },
    { name: 'a stray byte after the options', rdata: Buffer.concat([option(8, ecsData(1, 8, 0, [10])), Buffer.from([0])]) },
    { name: 'two client subnets', rdata: Buffer.concat([option(8, ecsData(1, 8, 0, [10])), option(8, ecsData(1, 8, 0, [11]))]) },
  ];
  for (const c of malformed) {
    test(`malformed: ${c.name} → formerr`, () => {
      assert.equal(ednsOf(queryWithOptions(c.rdata)), 'formerr');
    });
  }
});

// ---------------------------------------------------------------------------------
// answerReply with a scope

describe('answerReply: the client-subnet option in the reply', () => {
  const answers = compileAnswers({ a: ['192.0.2.1', '192.0.2.2'], aaaa: [], ttl: 60 });

  function reply(msg: Buffer, scope: number | null, maxBytes = 0xffff): Buffer {
    const q = mustRead(msg);
    const edns = readEdns(msg, q);
    assert.notEqual(edns, 'formerr');
    return answerReply(msg, q, answers, edns as Edns | null, maxBytes, scope);
  }

  test('IPv4: family, source prefix and address echoed, the scope set', () => {
    const out = reply(ecsQuery('www.example', 'A', { family: 1, source: 24, ip: '10.1.2.0' }), 16);
    assert.deepEqual(answersOf(out), ['192.0.2.1', '192.0.2.2']);
    const [ecs, ...rest] = optionsOf(out);
    assert.equal(rest.length, 0);
    assert.deepEqual(
      { code: ecs.code, family: ecs.family, source: ecs.sourcePrefixLength, scope: ecs.scopePrefixLength, ip: ecs.ip },
      { code: 8, family: 1, source: 24, scope: 16, ip: '10.1.2.0' },
    );
    // option 8, length 7, family 1, source 24, scope 16, three address bytes, at the very end
    assert.deepEqual([...out.subarray(out.length - 11)], [0, 8, 0, 7, 0, 1, 24, 16, 10, 1, 2]);
    assert.equal(out.readUInt16BE(out.length - 13), 11, 'OPT rdlength');
  });

  test('IPv6: the address bytes the source prefix covers', () => {
    const out = reply(ecsQuery('www.example', 'A', { family: 2, source: 56, ip: '2001:db8:aa:100::' }), 48);
    const [ecs] = optionsOf(out);
    assert.equal(ecs.family, 2);
    assert.equal(ecs.sourcePrefixLength, 56);
    assert.equal(ecs.scopePrefixLength, 48);
    assert.equal(ecs.ip, '2001:db8:aa:100::');
    assert.deepEqual([...out.subarray(out.length - 7)], [0x20, 0x01, 0x0d, 0xb8, 0x00, 0xaa, 0x01]);
  });

  test('source /0: no address bytes', () => {
    const out = reply(ecsQuery('www.example', 'A', { family: 1, source: 0, ip: '0.0.0.0' }), 0);
    assert.deepEqual([...out.subarray(out.length - 8)], [0, 8, 0, 4, 0, 1, 0, 0]);
  });

  test('no scope (null), or no ECS in the query: no option, the same bytes as before', () => {
    const msg = ecsQuery('www.example', 'A', { family: 1, source: 24, ip: '10.1.2.0' });
    const q = mustRead(msg);
    const edns = readEdns(msg, q) as Edns;
    assert.deepEqual(reply(msg, null), answerReply(msg, q, answers, edns, 0xffff));
    assert.deepEqual(optionsOf(reply(msg, null)), []);
    assert.deepEqual(optionsOf(reply(ecsQuery('www.example', 'A', null), 24)), []);
  });

  test('TC: the option counts towards the size limit', () => {
    const msg = ecsQuery('www.example', 'A', { family: 1, source: 24, ip: '10.1.2.0' });
    // header 12 + question 17 + 2 × 16 + OPT 11 + option 11 = 83
    const full = reply(msg, 16);
    assert.equal(full.length, 83);
    const atLimit = reply(msg, 16, 83);
    assert.equal(decoded(atLimit).flag_tc, false);
    assert.equal(answersOf(atLimit).length, 2);
    const over = reply(msg, 16, 82);
    assert.equal(decoded(over).flag_tc, true);
    assert.equal(answersOf(over).length, 0);
    assert.ok(over.length <= 82);
    assert.equal(optionsOf(over)[0].scopePrefixLength, 16, 'the truncated reply still carries the option');
    // without the option the same reply fits in 72 bytes
    assert.equal(decoded(reply(msg, null, 72)).flag_tc, false);
  });
});

// ---------------------------------------------------------------------------------
// The pipeline

/** A table view of fixed entries, and a pipeline over it that never forwards. */
function pipelineOver(entries: Record<string, EntryInput>, now: () => number = Date.now): QueryPipeline {
  const table = new EntryMap();
  for (const [name, data] of Object.entries(entries)) {
    table.set(name, { name, version: 1, updatedAt: new Date(0).toISOString(), ...checkEntryData(data) });
  }
  const view: TableView = {
    lookupName: (name) => table.lookupName(name),
    onChange: () => () => {},
    onResync: () => () => {},
    isReady: () => true,
  };
  const forwarder = { forward: async () => null } as unknown as Forwarder;
  return new QueryPipeline({
    access: new AccessList(['127.0.0.0/8', '::1/128']),
    answers: new AnswerCache(view, { maxNames: 100 }),
    forwarder,
    rules: { trustEcs: new AccessList(['127.0.0.4/32']), clock: now },
  });
}

async function ask(pipeline: QueryPipeline, msg: Buffer, address: string): Promise<Buffer> {
  const client: Client = { transport: 'udp', address };
  const result = await pipeline.handle(msg, client);
  assert.equal(result.outcome, 'intercepted');
  assert.ok(result.reply);
  return result.reply;
}

describe('QueryPipeline with rules and ECS', () => {
  const ruled: EntryInput = {
    a: ['192.0.2.10'],
    rules: [
      { networks: ['127.0.0.2/32'], a: ['192.0.2.2'] },
      { networks: ['10.1.0.0/16'], a: ['192.0.2.16'] },
    ],
  };
  const plain: EntryInput = { a: ['192.0.2.1', '192.0.2.5'] };
  const pipeline = pipelineOver({ 'www.rules.test': ruled, 'plain.rules.test': plain });
  const subnet = { family: 1, source: 24, ip: '10.1.2.0' };

  test('the client address picks the rule', async () => {
    assert.deepEqual(answersOf(await ask(pipeline, ecsQuery('www.rules.test', 'A', null), '127.0.0.2')), ['192.0.2.2']);
    assert.deepEqual(answersOf(await ask(pipeline, ecsQuery('www.rules.test', 'A', null), '127.0.0.3')), ['192.0.2.10']);
    assert.deepEqual(answersOf(await ask(pipeline, ecsQuery('www.rules.test', 'A', null), '::ffff:127.0.0.2')), ['192.0.2.2']);
  });

  test("a trusted resolver's subnet picks the rule, and the reply carries the scope", async () => {
    const out = await ask(pipeline, ecsQuery('www.rules.test', 'A', subnet), '127.0.0.4');
    assert.deepEqual(answersOf(out), ['192.0.2.16']);
    const [ecs] = optionsOf(out);
    assert.deepEqual(
      { family: ecs.family, source: ecs.sourcePrefixLength, scope: ecs.scopePrefixLength, ip: ecs.ip },
      { family: 1, source: 24, scope: 16, ip: '10.1.2.0' },
    );
  });

  test("an untrusted client's subnet is ignored and not echoed", async () => {
    const out = await ask(pipeline, ecsQuery('www.rules.test', 'A', subnet), '127.0.0.2');
    assert.deepEqual(answersOf(out), ['192.0.2.2'], 'answered by its own address');
    assert.deepEqual(optionsOf(out), []);
  });

  test('NODATA for another type from a trusted resolver: scope 0', async () => {
    const out = await ask(pipeline, ecsQuery('www.rules.test', 'MX', subnet), '127.0.0.4');
    assert.deepEqual(answersOf(out), []);
    assert.equal(optionsOf(out)[0].scopePrefixLength, 0);
  });

  test('a plain entry: the same bytes as without rules support, no option', async () => {
    const msg = ecsQuery('plain.rules.test', 'A', subnet);
    const out = await ask(pipeline, msg, '127.0.0.4');
    const q = mustRead(msg);
    const data: EntryData = checkEntryData(plain);
    assert.equal(compileEntry(data).select, undefined);
    assert.deepEqual(out, answerReply(msg, q, compileAnswers(data), readEdns(msg, q) as Edns, 1232));
    assert.deepEqual(optionsOf(out), []);
  });

  test('the injected clock decides time rules', async () => {
    let now = Date.parse('2026-01-05T08:59:00Z');
    const timed = pipelineOver(
      { 'office.rules.test': { a: ['192.0.2.10'], rules: [{ from: '09:00', to: '17:00', tz: 'Europe/London', a: ['192.0.2.1'] }] } },
      () => now,
    );
    const msg = ecsQuery('office.rules.test', 'A', null);
    assert.deepEqual(answersOf(await ask(timed, msg, '127.0.0.1')), ['192.0.2.10']);
    now = Date.parse('2026-01-05T09:00:00Z');
    assert.deepEqual(answersOf(await ask(timed, msg, '127.0.0.1')), ['192.0.2.1']);
  });
});
