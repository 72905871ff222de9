// Property-based fuzzing of everything that reads untrusted bytes or text: the packet
// reader, the TCP framer, the zone-file reader and the admin request bodies. Each target
// first replays the kept corpus in test/fuzz-corpus/ (edge cases and every input that
// once failed), then runs fast-check with a fixed seed. FUZZ_RUNS raises the run count of
// every property for a long run; FUZZ_SEED picks another seed.

import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isIPv4, isIPv6 } from 'node:net';
import fc from 'fast-check';
import dnsPacket from 'dns-packet';
import { isReplyTo, readQuery, type Query } from '../src/wire/query.js';
import { readEdns, udpLimit, type Edns } from '../src/wire/edns.js';
import { compileAnswers, type AnswerRecords } from '../src/wire/answers.js';
import { answerReply, errorReply, headerOnlyFormErr } from '../src/wire/reply.js';
import { MAX_TCP_MESSAGE, TcpFramer, lengthPrefix } from '../src/transport/tcp-framer.js';
import { parseZone } from '../src/table/zone/parse.js';
import { formatZone } from '../src/table/zone/format.js';
import { canonicalIPv6 } from '../src/entry/addresses.js';
import { checkEntryData } from '../src/entry/check.js';
import { normalizeName } from '../src/entry/names.js';
import { diversionFromBody, entryFromBody, ifMatch } from '../src/admin/bodies.js';
import { DivertError } from '../src/errors.js';
import type { EntryData } from '../src/entry/entry.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CORPUS = join(ROOT, 'test', 'fuzz-corpus');
const RUNS = Number(process.env.FUZZ_RUNS ?? 0) || 0;
const SEED = Number(process.env.FUZZ_SEED ?? 20240611);

/** fast-check parameters: `base` runs in `npm test`, FUZZ_RUNS runs in a long fuzz. */
function params(base: number): fc.Parameters<unknown> {
  return { seed: SEED, numRuns: RUNS > 0 ? RUNS : base, endOnFailure: false };
}

/** Outcomes per target, printed after a long run (FUZZ_RUNS) or with FUZZ_STATS=1: shows the inputs reach past the first check. */
const outcomes: Record<string, number> = {};
const saw = (what: string) => void (outcomes[what] = (outcomes[what] ?? 0) + 1);
after(() => {
  if (RUNS > 0 || process.env.FUZZ_STATS)
    console.log(
      `fuzz outcomes (seed ${SEED}):\n${Object.entries(outcomes)
        .sort()
        .map(([k, n]) => `  ${k}: ${n}`)
        .join('\n')}`,
    );
});

// ---------------------------------------------------------------------------------
// Corpus

/** Non-empty lines of a corpus file that are not `#` comments. */
function corpusLines(file: string): string[] {
  return readFileSync(join(CORPUS, file), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

const hex = (text: string) => {
  assert.match(text, /^(?:[0-9a-f]{2})*$/i, `corpus line "${text}" is not hex`);
  return Buffer.from(text, 'hex');
};

// ---------------------------------------------------------------------------------
// Packets

const QR = 0x8000;
const TC = 0x0200;
const AA = 0x0400;

function isPlain(b: number): boolean {
  return (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) || b === 0x2d || b === 0x5f || b === 0x2a;
}

/** The wire labels a presentation name stands for, checking its form on the way. */
function labelsOf(name: string): Buffer[] {
  if (name === '') return [];
  return name.split('.').map((label) => {
    assert.match(label, /^(?:[a-z0-9_*-]|\\[0-9]{3})+$/, `label "${label}" of "${name}" has the allowed form`);
    const bytes: number[] = [];
    for (let i = 0; i < label.length;) {
      if (label[i] === '\\') {
        const b = Number(label.slice(i + 1, i + 4));
        assert.ok(
          b <= 255 && !isPlain(b) && !(b >= 0x41 && b <= 0x5a),
          `escape \\${label.slice(i + 1, i + 4)} in "${name}" is of a byte that needs one`,
        );
        bytes.push(b);
        i += 4;
      } else {
        bytes.push(label.charCodeAt(i));
        i += 1;
      }
    }
    assert.ok(bytes.length >= 1 && bytes.length <= 63, `label of ${bytes.length} bytes in "${name}"`);
    return Buffer.from(bytes);
  });
}

const lower = (b: Buffer) => Buffer.from([...b].map((x) => (x >= 0x41 && x <= 0x5a ? x | 0x20 : x)));

/** What every Query must be, against the bytes it was read from. */
function checkQuery(msg: Buffer, q: Query): void {
  assert.equal(q.id, msg.readUInt16BE(0));
  assert.equal(q.flags, msg.readUInt16BE(2));
  assert.equal(q.opcode, (q.flags >> 11) & 0xf);
  assert.equal(q.flags & QR, 0);
  assert.equal(msg.readUInt16BE(4), 1, 'QDCOUNT 1');
  assert.ok(q.questionEnd >= 17 && q.questionEnd <= msg.length, `questionEnd ${q.questionEnd} within ${msg.length}`);
  assert.ok(q.questionEnd - 12 - 4 <= 255, 'the name is at most 255 bytes on the wire');
  assert.equal(q.qtype, msg.readUInt16BE(q.questionEnd - 4));
  assert.equal(q.qclass, msg.readUInt16BE(q.questionEnd - 2));
  const labels = labelsOf(q.name);
  const octets = labels.reduce((n, l) => n + l.length, 0) + Math.max(0, labels.length - 1);
  assert.ok(octets <= 253, `"${q.name}" is ${octets} octets (limit 253)`);
  // the name read is exactly the question's name, lower-cased
  const wire = Buffer.concat([...labels.flatMap((l) => [Buffer.from([l.length]), l]), Buffer.from([0])]);
  assert.deepEqual(wire, lower(msg.subarray(12, q.questionEnd - 4)), 'the name reads back to the question bytes');
}

/** What every Edns must be. */
function checkEdns(edns: Edns): void {
  assert.ok(Number.isInteger(edns.udpPayload) && edns.udpPayload >= 512 && edns.udpPayload <= 0xffff);
  assert.ok(Number.isInteger(edns.version) && edns.version >= 0 && edns.version <= 255);
  assert.equal(typeof edns.dnssecOk, 'boolean');
  if (!edns.ecs) return;
  const { family, sourcePrefix, address } = edns.ecs;
  if (family === 1) {
    assert.ok(sourcePrefix <= 32 && isIPv4(address), `ECS ${address}/${sourcePrefix}`);
    const bits = address.split('.').reduce((n, o) => n * 256 + Number(o), 0);
    const hostBits = 32 - sourcePrefix;
    assert.equal(hostBits === 32 ? bits : bits % 2 ** hostBits, 0, `ECS ${address}/${sourcePrefix} has no host bits`);
  } else {
    assert.equal(family, 2);
    assert.ok(sourcePrefix <= 128 && isIPv6(address), `ECS ${address}/${sourcePrefix}`);
    assert.equal(address, canonicalIPv6(address), 'ECS address text is canonical');
  }
}

/** dns-packet's view of the message, or null when it cannot decode it. */
function tryDecode(msg: Buffer): dnsPacket.Packet | null {
  try {
    return dnsPacket.decode(msg);
  } catch {
    return null;
  }
}

type OptRecord = dnsPacket.Answer & { udpPayloadSize: number; ednsVersion: number; flag_do: boolean; options: Record<string, unknown>[] };

/** readEdns against dns-packet, where dns-packet can decode the whole message. */
function crossCheckEdns(msg: Buffer, edns: Edns | null): void {
  const packet = tryDecode(msg);
  if (!packet) return;
  const counts = [6, 8, 10].map((at) => msg.readUInt16BE(at));
  if (
    (packet.answers?.length ?? 0) !== counts[0] ||
    (packet.authorities?.length ?? 0) !== counts[1] ||
    (packet.additionals?.length ?? 0) !== counts[2]
  )
    return;
  const opts = (packet.additionals ?? []).filter((r) => r.type === 'OPT') as OptRecord[];
  if (opts.length === 0) return assert.equal(edns, null, 'no OPT record, no Edns');
  assert.ok(edns, 'dns-packet found the OPT record that readEdns found');
  assert.equal(edns.udpPayload, Math.max(512, opts[0].udpPayloadSize));
  assert.equal(edns.version, opts[0].ednsVersion);
  assert.equal(edns.dnssecOk, opts[0].flag_do);
  const ecs = opts[0].options.filter((o) => o.code === 8);
  assert.equal(ecs.length, edns.ecs ? 1 : 0, 'one ECS option exactly when readEdns has one');
  if (edns.ecs) {
    assert.equal(ecs[0].family, edns.ecs.family);
    assert.equal(ecs[0].sourcePrefixLength, edns.ecs.sourcePrefix);
    assert.equal(edns.ecs.family === 2 ? canonicalIPv6(ecs[0].ip as string) : ecs[0].ip, edns.ecs.address);
  }
}

const SMALL_ANSWERS = compileAnswers({ a: ['192.0.2.1', '192.0.2.2', '198.51.100.7'], aaaa: ['2001:db8::1', '2001:db8::2'], ttl: 30 });
// 60 AAAA records: 1680 bytes, more than 512 or 1232 bytes of UDP can take
const BIG_ANSWERS = compileAnswers({
  a: Array.from({ length: 40 }, (_, i) => `10.0.${i}.1`),
  aaaa: Array.from({ length: 60 }, (_, i) => `2001:db8::${(i + 1).toString(16)}`),
  ttl: 300,
});

/** What every reply built for `q` must be: decodable, its ID and question the query's, within maxBytes. */
function checkReply(msg: Buffer, q: Query, reply: Buffer, maxBytes: number, rcode: number, edns: Edns | null): dnsPacket.Packet {
  assert.ok(reply.length <= maxBytes, `reply of ${reply.length} bytes within ${maxBytes}`);
  assert.deepEqual(reply.subarray(12, q.questionEnd), msg.subarray(12, q.questionEnd), 'the question is echoed byte for byte');
  assert.ok(isReplyTo(reply, msg, q.questionEnd), 'isReplyTo(reply, query)');
  let packet: dnsPacket.Packet;
  try {
    packet = dnsPacket.decode(reply);
  } catch (err) {
    assert.fail(`dns-packet cannot decode the reply ${reply.toString('hex')}: ${(err as Error).message}`);
  }
  assert.equal(packet.id, q.id);
  assert.equal(packet.questions?.length, 1);
  assert.equal(reply.readUInt16BE(2) & QR, QR);
  assert.equal(reply.readUInt16BE(2) & 0xf, rcode & 0xf);
  assert.equal(reply.readUInt16BE(10), edns ? 1 : 0, 'an OPT record exactly when the query had one');
  if (edns) {
    const opt = packet.additionals![0] as OptRecord;
    assert.equal(opt.type, 'OPT');
    assert.equal(opt.flag_do, edns.dnssecOk, 'DO is copied');
  }
  return packet;
}

/** Every property of readQuery, readEdns and the replies, on one message. */
function checkPacket(msg: Buffer): void {
  const q = readQuery(msg);
  const readableHeader = msg.length >= 12 && (msg.readUInt16BE(2) & QR) === 0;
  saw(`packet: ${typeof q === 'string' ? q : 'query'}`);
  if (q === 'drop') return assert.ok(!readableHeader, 'dropped only when the header is unreadable or QR is set');
  assert.ok(readableHeader, 'a message without a readable header is dropped');
  if (q === 'formerr') {
    const reply = headerOnlyFormErr(msg);
    assert.equal(reply.readUInt16BE(0), msg.readUInt16BE(0));
    assert.equal(reply.readUInt16BE(2) & 0x800f, 0x8001, 'QR and FORMERR');
    assert.ok(tryDecode(reply), 'a header-only FORMERR decodes');
    return;
  }
  if (q.questionEnd === 12) {
    // another opcode whose question cannot be read: judged by its header alone
    saw('packet: header only (another opcode)');
    assert.notEqual(q.opcode, 0, 'only a message of another opcode is read by its header alone');
    const asQuery = Buffer.from(msg);
    asQuery.writeUInt16BE(asQuery.readUInt16BE(2) & ~0x7800, 2);
    assert.equal(readQuery(asQuery), 'formerr', 'the same bytes as a QUERY are FORMERR');
    for (const rcode of [4, 5]) {
      const reply = errorReply(msg, q, rcode);
      assert.equal(reply.length, 12);
      assert.equal(reply.readUInt16BE(0), q.id);
      assert.equal(reply.readUInt16BE(2) & 0xf, rcode);
      assert.equal(reply.readUInt16BE(4), 0, 'no question');
      assert.ok(tryDecode(reply), 'it decodes');
    }
    return;
  }
  checkQuery(msg, q);

  // a reply to this query, and any bytes at all, against isReplyTo: never throws
  const other = isReplyTo(msg, msg, q.questionEnd);
  assert.equal(other, false, 'a query is not a reply to itself (QR is clear)');
  const flipped = Buffer.from(msg);
  flipped.writeUInt16BE(flipped.readUInt16BE(2) | QR, 2);
  assert.equal(isReplyTo(flipped, msg, q.questionEnd), true, 'the query with QR set answers it');

  const edns = readEdns(msg, q);
  saw(
    `packet: edns ${edns === null ? 'none' : edns === 'formerr' ? 'formerr' : edns.ecs ? `with ECS family ${edns.ecs.family}` : 'without ECS'}`,
  );
  if (edns !== null && edns !== 'formerr') checkEdns(edns);
  if (edns !== 'formerr') crossCheckEdns(msg, edns);
  const usable = edns === 'formerr' ? null : edns;

  for (const answers of [SMALL_ANSWERS, BIG_ANSWERS]) {
    for (const maxBytes of [512, udpLimit(usable), 0xffff]) {
      for (const scope of [null, 0, usable?.ecs?.sourcePrefix ?? 24]) {
        const reply = answerReply(msg, q, answers, usable, maxBytes, scope);
        const packet = checkReply(msg, q, reply, maxBytes, 0, usable);
        checkAnswers(msg, q, reply, packet, answers, usable, maxBytes, scope);
      }
    }
  }
  for (const rcode of [1, 2, 4, 5]) {
    checkReply(msg, q, errorReply(msg, q, rcode, usable), 0xffff, rcode, usable);
    checkReply(msg, q, errorReply(msg, q, rcode), 0xffff, rcode, null);
  }
  if (usable) {
    const badvers = checkReply(msg, q, errorReply(msg, q, 16, usable), 0xffff, 16, usable);
    assert.equal((badvers.additionals![0] as unknown as { extendedRcode: number }).extendedRcode, 1, 'BADVERS in the extended rcode');
  }
}

function checkAnswers(
  msg: Buffer,
  q: Query,
  reply: Buffer,
  packet: dnsPacket.Packet,
  answers: AnswerRecords,
  edns: Edns | null,
  maxBytes: number,
  scope: number | null,
): void {
  const [records, count] =
    q.qtype === 1 ? [answers.a, answers.aCount] : q.qtype === 28 ? [answers.aaaa, answers.aaaaCount] : [Buffer.alloc(0), 0];
  const echo = scope !== null && edns?.ecs ? 8 + ((edns.ecs.sourcePrefix + 7) >> 3) : 0;
  const full = q.questionEnd + records.length + (edns ? 11 + echo : 0);
  const cut = full > maxBytes;
  assert.equal((reply.readUInt16BE(2) & TC) !== 0, cut, `TC exactly when ${full} bytes exceed ${maxBytes}`);
  assert.equal(reply.readUInt16BE(2) & AA, AA);
  assert.equal(reply.readUInt16BE(6), cut ? 0 : count, 'ANCOUNT');
  assert.equal(packet.answers?.length ?? 0, cut ? 0 : count);
  if (!cut && count > 0) assert.deepEqual(reply.subarray(q.questionEnd, q.questionEnd + records.length), records);
  if (edns) {
    const ecs = (packet.additionals![0] as OptRecord).options.filter((o) => o.code === 8);
    assert.equal(ecs.length, echo > 0 ? 1 : 0, 'ECS echoed exactly when a scope is given and the query had ECS');
    if (echo > 0) {
      assert.equal(ecs[0].sourcePrefixLength, edns.ecs!.sourcePrefix);
      assert.equal(ecs[0].scopePrefixLength, scope);
      assert.equal(edns.ecs!.family === 2 ? canonicalIPv6(ecs[0].ip as string) : ecs[0].ip, edns.ecs!.address);
    }
  }
}

// Real queries to start mutating from.
const ecs4 = (ip: string, source: number) => ({ code: 'CLIENT_SUBNET', family: 1, ip, sourcePrefixLength: source, scopePrefixLength: 0 });
const ecs6 = (ip: string, source: number) => ({ code: 'CLIENT_SUBNET', family: 2, ip, sourcePrefixLength: source, scopePrefixLength: 0 });
const optRecord = (options: unknown[] = [], flags = 0, udpPayloadSize = 1232) =>
  ({ type: 'OPT', name: '.', udpPayloadSize, flags, options }) as unknown as dnsPacket.Answer;
function seedQuery(name: string, type: string, additionals: dnsPacket.Answer[] = [], id = 0x1234): Buffer {
  return dnsPacket.encode({
    id,
    type: 'query',
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ name, type: type as dnsPacket.RecordType, class: 'IN' }],
    additionals,
  });
}
const SEED_QUERIES: Buffer[] = [
  seedQuery('www.shop.example', 'A'),
  seedQuery('WWW.Shop.Example', 'AAAA'),
  seedQuery('a.b', 'MX'),
  seedQuery('.', 'NS'),
  seedQuery('x.cdn.shop.example', 'TXT', [optRecord()]),
  seedQuery('www.shop.example', 'A', [optRecord([ecs4('192.0.2.0', 24)], 0x8000)]),
  seedQuery('www.shop.example', 'AAAA', [optRecord([ecs6('2001:db8::', 56)], 0, 4096)]),
  seedQuery('www.shop.example', 'A', [optRecord([ecs4('10.1.2.3', 32), { code: 'PADDING', length: 12 }])]),
  seedQuery('www.shop.example', 'A', [optRecord([ecs4('0.0.0.0', 0)])]),
  seedQuery('www.shop.example', 'A', [optRecord([ecs6('2001:db8:1:2:3:4:5:6', 128)])]),
  seedQuery(`${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`, 'A', [optRecord()]),
];

type Mutation =
  | { op: 'flip'; at: number; bit: number }
  | { op: 'set'; at: number; byte: number }
  | { op: 'insert'; at: number; bytes: Uint8Array }
  | { op: 'delete'; at: number; count: number }
  | { op: 'truncate'; at: number }
  | { op: 'count'; field: number; value: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { arbitrary: fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat({ max: 7 }) }), weight: 4 },
  {
    arbitrary: fc.record({
      op: fc.constant('set' as const),
      at: fc.nat(),
      byte: fc.constantFrom(0, 1, 8, 0x29, 0x3f, 0x40, 0x80, 0xc0, 0xc0 | 12, 0xff),
    }),
    weight: 3,
  },
  {
    arbitrary: fc.record({ op: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
    weight: 2,
  },
  { arbitrary: fc.record({ op: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 8 }) }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }), weight: 1 },
  {
    arbitrary: fc.record({ op: fc.constant('count' as const), field: fc.nat({ max: 3 }), value: fc.constantFrom(0, 1, 2, 0xffff) }),
    weight: 1,
  },
);

function mutate(seed: Buffer, mutations: Mutation[]): Buffer {
  let b = Buffer.from(seed);
  for (const m of mutations) {
    const at = b.length === 0 || m.op === 'count' ? 0 : m.at % (b.length + (m.op === 'insert' ? 1 : 0));
    if (m.op === 'flip' && b.length > 0) b[at] ^= 1 << m.bit;
    else if (m.op === 'set' && b.length > 0) b[at] = m.byte;
    else if (m.op === 'insert') b = Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]);
    else if (m.op === 'delete') b = Buffer.concat([b.subarray(0, at), b.subarray(at + m.count)]);
    else if (m.op === 'truncate') b = b.subarray(0, at);
    else if (m.op === 'count' && b.length >= 12) b.writeUInt16BE(m.value, 4 + m.field * 2);
  }
  return b;
}

const mutatedQuery = fc
  .tuple(fc.nat({ max: SEED_QUERIES.length - 1 }), fc.array(mutation, { minLength: 1, maxLength: 6 }))
  .map(([i, ms]) => mutate(SEED_QUERIES[i], ms));

/** A query with one hand-made OPT record: any ECS family, prefixes, address bytes and lengths. */
const ednsQuery = fc
  .record({
    question: fc.constantFrom(SEED_QUERIES[0].subarray(12, SEED_QUERIES[0].length - 0)),
    family: fc.constantFrom(0, 1, 2, 3),
    source: fc.oneof(fc.integer({ min: 0, max: 33 }), fc.integer({ min: 0, max: 255 })),
    scope: fc.constantFrom(0, 0, 0, 1, 24, 255),
    address: fc.uint8Array({ maxLength: 17 }),
    lengthDelta: fc.constantFrom(0, 0, 0, -1, 1, -4, 100),
    ecsCount: fc.constantFrom(0, 1, 1, 1, 2),
    before: fc.array(fc.record({ code: fc.constantFrom(3, 10, 12, 65001), data: fc.uint8Array({ maxLength: 6 }) }), { maxLength: 2 }),
    rdlengthDelta: fc.constantFrom(0, 0, 0, -1, 1, 3),
    version: fc.constantFrom(0, 0, 1),
    payload: fc.constantFrom(0, 511, 512, 1232, 4096, 0xffff),
    arcount: fc.constantFrom(1, 1, 1, 0, 2),
  })
  .map((c) => {
    const option = (code: number, data: Uint8Array, delta = 0) => {
      const head = Buffer.alloc(4);
      head.writeUInt16BE(code, 0);
      head.writeUInt16BE(Math.max(0, Math.min(0xffff, data.length + delta)), 2);
      return Buffer.concat([head, data]);
    };
    const ecsData = Buffer.concat([Buffer.from([c.family >> 8, c.family & 0xff, c.source, c.scope]), c.address]);
    const options = Buffer.concat([
      ...c.before.map((o) => option(o.code, o.data)),
      ...Array.from({ length: c.ecsCount }, () => option(8, ecsData, c.lengthDelta)),
    ]);
    const fixed = Buffer.alloc(11);
    fixed.writeUInt16BE(41, 1);
    fixed.writeUInt16BE(c.payload, 3);
    fixed[6] = c.version;
    fixed.writeUInt16BE(Math.max(0, Math.min(0xffff, options.length + c.rdlengthDelta)), 9);
    const header = Buffer.from(SEED_QUERIES[0].subarray(0, 12));
    header.writeUInt16BE(c.arcount, 10);
    return Buffer.concat([header, c.question, fixed, options]);
  });

describe('fuzz: packet reader and replies', () => {
  test('corpus (test/fuzz-corpus/packets.txt) and the seed queries', () => {
    for (const line of corpusLines('packets.txt')) checkPacket(hex(line));
    for (const seed of SEED_QUERIES) {
      const q = readQuery(seed);
      assert.ok(typeof q !== 'string', 'a seed query is readable');
      const edns = readEdns(seed, q);
      assert.notEqual(edns, 'formerr');
      checkPacket(seed);
    }
  });

  test('arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => checkPacket(Buffer.from(bytes))),
      params(3000),
    );
  });

  test('arbitrary bytes behind a valid header (QDCOUNT 1, QR clear)', () => {
    const header = Buffer.from('abcd0100000100000000', 'hex');
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.array(fc.nat({ max: 3 }), { minLength: 3, maxLength: 3 }), (bytes, counts) => {
        const msg = Buffer.concat([header, Buffer.from(counts.flatMap((c) => [0, c])), bytes]);
        checkPacket(msg);
      }),
      params(3000),
    );
  });

  test('mutated real queries', () => {
    fc.assert(
      fc.property(mutatedQuery, (msg) => checkPacket(msg)),
      params(3000),
    );
  });

  test('queries with hand-made OPT and ECS options', () => {
    fc.assert(
      fc.property(ednsQuery, (msg) => checkPacket(msg)),
      params(3000),
    );
  });

  test('isReplyTo on arbitrary bytes against a real query never throws, and is true only for a matching response', () => {
    const sent = SEED_QUERIES[1];
    const q = readQuery(sent) as Query;
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 80 }).map((b) => Buffer.from(b)),
          mutatedQuery,
        ),
        (reply) => {
          const verdict = isReplyTo(reply, sent, q.questionEnd);
          if (verdict) {
            assert.equal(reply.readUInt16BE(0), q.id);
            assert.ok(reply.readUInt16BE(2) & QR);
            assert.deepEqual(lower(reply.subarray(12, q.questionEnd)), lower(sent.subarray(12, q.questionEnd)));
          }
        },
      ),
      params(3000),
    );
  });
});

// ---------------------------------------------------------------------------------
// TCP framer

/** The messages a whole stream holds, read in one go, and the bytes left over. */
function referenceFrames(stream: Buffer): { messages: Buffer[]; rest: number } {
  const messages: Buffer[] = [];
  let pos = 0;
  while (stream.length - pos >= 2 && stream.length - pos - 2 >= stream.readUInt16BE(pos)) {
    messages.push(stream.subarray(pos + 2, pos + 2 + stream.readUInt16BE(pos)));
    pos += 2 + stream.readUInt16BE(pos);
  }
  return { messages, rest: stream.length - pos };
}

/** Feeds `chunks` one by one; the framer must hand out what the reference reads, keep no more than one message. */
function checkStream(chunks: Buffer[]): Buffer[] {
  const framer = new TcpFramer();
  const out: Buffer[] = [];
  let fed = 0;
  for (const chunk of chunks) {
    out.push(...framer.push(chunk));
    fed += chunk.length;
    const consumed = out.reduce((n, m) => n + 2 + m.length, 0);
    assert.equal(framer.pendingBytes, fed - consumed, 'pendingBytes is what was fed and not yet handed out');
    assert.ok(framer.pendingBytes <= MAX_TCP_MESSAGE + 1, `buffered ${framer.pendingBytes} bytes: never more than one message`);
  }
  const stream = Buffer.concat(chunks);
  const expected = referenceFrames(stream);
  assert.deepEqual(out, expected.messages, 'the same messages in the same order');
  assert.equal(framer.pendingBytes, expected.rest);
  return out;
}

/** Cuts `bytes` at the given offsets (taken modulo its length). */
function cut(bytes: Buffer, offsets: number[]): Buffer[] {
  const at = [...new Set(offsets.map((o) => (bytes.length === 0 ? 0 : o % (bytes.length + 1))))].sort((x, y) => x - y);
  const cuts = [0, ...at, bytes.length];
  return cuts.slice(1).map((end, i) => bytes.subarray(cuts[i], end));
}

const someMessage = fc.oneof(
  { arbitrary: fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.from(b)), weight: 20 },
  { arbitrary: fc.integer({ min: 60_000, max: MAX_TCP_MESSAGE }).map((n) => Buffer.alloc(n, n & 0xff)), weight: 1 },
);

describe('fuzz: TCP framer', () => {
  test('corpus (test/fuzz-corpus/tcp-streams.txt)', () => {
    for (const line of corpusLines('tcp-streams.txt')) checkStream(line.split(/\s+/).map((c) => (c === '-' ? Buffer.alloc(0) : hex(c))));
  });

  test('any messages, split into any chunks, come out whole and in order', () => {
    fc.assert(
      fc.property(fc.array(someMessage, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 40 }), (messages, offsets) => {
        const stream = Buffer.concat(messages.flatMap((m) => [lengthPrefix(m), m]));
        const out = checkStream(cut(stream, offsets));
        assert.equal(out.length, messages.length);
      }),
      params(1000),
    );
  });

  test('byte by byte', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 5 }), (messages) => {
        const stream = Buffer.concat(messages.map((m) => Buffer.concat([lengthPrefix(Buffer.from(m)), m])));
        checkStream([...stream].map((b) => Buffer.from([b])));
      }),
      params(500),
    );
  });

  test('garbage in any chunks: no throw, the reference reading, nothing whole kept back', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
          { maxLength: 10 },
        ),
        (chunks) => {
          checkStream(chunks);
        },
      ),
      params(2000),
    );
  });
});

// ---------------------------------------------------------------------------------
// Zone files

const ZONE_FILE = 'fuzz.zone';

/** parseZone either gives entries that are their own normal form and survive formatZone, or a BAD_ZONE "FILE:LINE:" error. */
function checkZone(text: string): Map<string, EntryData> | null {
  let entries: Map<string, EntryData>;
  try {
    entries = parseZone(text, ZONE_FILE);
  } catch (err) {
    saw('zone: BAD_ZONE');
    assert.ok(err instanceof DivertError, `parseZone threw ${(err as Error)?.name}: ${(err as Error)?.message}`);
    assert.equal(err.code, 'BAD_ZONE');
    const m = /^fuzz\.zone:(\d+): ./.exec(err.message);
    assert.ok(m, `message "${err.message}" starts with FILE:LINE:`);
    const lines = text.split('\n').length;
    assert.ok(Number(m[1]) >= 1 && Number(m[1]) <= lines, `line ${m[1]} is within the ${lines} lines`);
    return null;
  }
  saw(
    entries.size === 0
      ? 'zone: read, empty'
      : [...entries.values()].some((e) => e.rules || e.weights)
        ? 'zone: read, with rules or weights'
        : 'zone: read, plain',
  );
  for (const [name, data] of entries) {
    assert.equal(normalizeName(name), name, `"${name}" is a normal name`);
    assert.deepEqual(checkEntryData(data), data, `the entry of ${name} is its own normal form`);
  }
  const text2 = formatZone([...entries].map(([name, data]) => ({ name, ...data })));
  let again: Map<string, EntryData>;
  try {
    again = parseZone(text2, 'formatted.zone');
  } catch (err) {
    assert.fail(`formatZone wrote a file parseZone refuses: ${(err as Error).message}\n${text2}`);
  }
  assert.deepEqual(new Map([...again].sort()), new Map([...entries].sort()), 'formatZone then parseZone gives the same entries');
  return entries;
}

const EXAMPLE_ZONE = readFileSync(join(ROOT, 'zones', 'example.zone'), 'utf8');
const ZONE_SEEDS: string[] = [
  EXAMPLE_ZONE,
  ...readdirSync(join(CORPUS, 'zones'))
    .filter((f) => f.endsWith('.zone'))
    .sort()
    .map((f) => readFileSync(join(CORPUS, 'zones', f), 'utf8')),
];

const zoneToken = fc.constantFrom(
  '$ORIGIN',
  '$TTL',
  '$INCLUDE',
  'shop.example.',
  'example',
  '.',
  '@',
  'www',
  '*',
  '*.cdn',
  'a-b',
  '-x',
  'x_y',
  'ÿ',
  '\\046',
  'IN',
  'CH',
  'CLASS1',
  'A',
  'AAAA',
  'a',
  'MX',
  'SOA',
  'TYPE1',
  'TYPE028',
  'TYPE65000',
  '10',
  '192.0.2.1',
  '192.0.2.01',
  '::1',
  '2001:DB8::1',
  '::ffff:1.2.3.4',
  'fe80::1%eth0',
  '30',
  '0',
  '86400',
  '86401',
  '1h30m',
  '2w',
  '99999999999',
  '(',
  ')',
  ';',
  ';divert ',
  ';divert www ',
  '"',
  '"x y"',
  '\\',
  '\n',
  '\n',
  '\n',
  ' ',
  ' ',
  ' ',
  '\t',
  '\r\n',
  '{"ttl":5}',
  '{"pick":1}',
  '{"weights":{"192.0.2.1":3}}',
  '{"rules":[{"networks":["10.0.0.0/8"],"a":["192.0.2.9"]}]}',
  '{"rules":[{"days":["mon"],"from":"08:00","to":"24:00","tz":"Europe/London"}]}',
  '{"rules":[]}',
  '{"ttl":null}',
  '{"color":1}',
  '{',
  '[]',
  'null',
  '\uFEFF',
);
const tokenZone = fc.array(zoneToken, { maxLength: 60 }).map((ts) => ts.join(''));

type ZoneMutation =
  | { op: 'char'; at: number; text: string }
  | { op: 'delete'; at: number; count: number }
  | { op: 'line'; at: number; how: 'dup' | 'drop' | 'swap' | 'indent' };
const zoneMutation: fc.Arbitrary<ZoneMutation> = fc.oneof(
  fc.record({ op: fc.constant('char' as const), at: fc.nat(), text: fc.oneof(zoneToken, fc.string({ maxLength: 3, unit: 'binary' })) }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 12 }) }),
  fc.record({
    op: fc.constant('line' as const),
    at: fc.nat(),
    how: fc.constantFrom('dup' as const, 'drop' as const, 'swap' as const, 'indent' as const),
  }),
);

function mutateZone(text: string, mutations: ZoneMutation[]): string {
  for (const m of mutations) {
    if (m.op === 'char') {
      const at = m.at % (text.length + 1);
      text = text.slice(0, at) + m.text + text.slice(at);
    } else if (m.op === 'delete') {
      const at = m.at % (text.length + 1);
      text = text.slice(0, at) + text.slice(at + m.count);
    } else {
      const lines = text.split('\n');
      const i = m.at % lines.length;
      if (m.how === 'dup') lines.splice(i, 0, lines[i]);
      else if (m.how === 'drop') lines.splice(i, 1);
      else if (m.how === 'indent') lines[i] = ` ${lines[i]}`;
      else if (i + 1 < lines.length) [lines[i], lines[i + 1]] = [lines[i + 1], lines[i]];
      text = lines.join('\n');
    }
  }
  return text;
}

describe('fuzz: zone-file reader', () => {
  test('corpus (test/fuzz-corpus/zones/*.zone, zones.jsonl) and zones/example.zone', () => {
    for (const seed of ZONE_SEEDS) assert.ok(checkZone(seed), 'a seed zone reads');
    for (const line of corpusLines('zones.jsonl')) checkZone(JSON.parse(line) as string);
  });

  test('arbitrary text', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200, unit: 'binary' }), (text) => void checkZone(text)),
      params(2000),
    );
  });

  test('text made of zone-file tokens', () => {
    fc.assert(
      fc.property(tokenZone, (text) => void checkZone(text)),
      params(3000),
    );
  });

  test('mutated valid zone files (with ;divert lines)', () => {
    fc.assert(
      fc.property(
        fc.nat({ max: ZONE_SEEDS.length - 1 }),
        fc.array(zoneMutation, { minLength: 1, maxLength: 5 }),
        (i, ms) => void checkZone(mutateZone(ZONE_SEEDS[i], ms)),
      ),
      params(2000),
    );
  });
});

// ---------------------------------------------------------------------------------
// Admin request bodies

const ENTRY_FIELDS = ['a', 'aaaa', 'ttl', 'weights', 'pick', 'rules'];
/** A refusal names the field: "a[2]: …", "rules[0].networks[1]: …", "weights[\"::1\"]: …", "body: …". */
const FIELD_MESSAGE = /^(?:body|a|aaaa|ttl|weights|pick|rules|from|to)(?:\[[^\]]*\]|\.[a-z]+)*: \S/;

function checkRefusal(err: unknown, input: unknown, fields: string[]): void {
  assert.ok(err instanceof DivertError, `threw ${(err as Error)?.name}: ${(err as Error)?.message} for ${JSON.stringify(input)}`);
  assert.ok(['BAD_REQUEST', 'BAD_ADDRESS', 'BAD_TTL', 'BAD_RULE'].includes(err.code), `code ${err.code}`);
  const unknown = /^(.*): unknown field$/s.exec(err.message);
  if (unknown) {
    assert.equal(err.code, 'BAD_REQUEST');
    assert.ok(
      typeof input === 'object' && input !== null && Object.keys(input).includes(unknown[1]) && !fields.includes(unknown[1]),
      `"${unknown[1]}" is a field of the body that is not known`,
    );
    return;
  }
  assert.match(err.message, FIELD_MESSAGE, 'the message names the field');
}

function checkEntryBody(body: unknown): void {
  let entry: EntryData;
  try {
    entry = entryFromBody(body);
  } catch (err) {
    saw(`entry body: refused ${(err as DivertError).code}`);
    return checkRefusal(err, body, ENTRY_FIELDS);
  }
  saw(
    entry.rules
      ? 'entry body: valid, with rules'
      : entry.weights || entry.pick
        ? 'entry body: valid, with sharing'
        : 'entry body: valid, plain',
  );
  assert.deepEqual(checkEntryData(entry), entry, 'a valid entry is its own normal form');
  assert.deepEqual(entryFromBody(JSON.parse(JSON.stringify(entry))), entry, 'and reads back the same through the API');
  for (const key of Object.keys(entry)) assert.ok(ENTRY_FIELDS.includes(key), `no stray field "${key}"`);
}

function checkDiversionBody(body: unknown): void {
  let diversion: { from: string; to: string };
  try {
    diversion = diversionFromBody(body);
  } catch (err) {
    return checkRefusal(err, body, ['from', 'to']);
  }
  assert.deepEqual(Object.keys(diversion).sort(), ['from', 'to']);
  assert.equal(typeof diversion.from, 'string');
  assert.equal(typeof diversion.to, 'string');
}

function checkIfMatch(header: string | string[] | undefined): void {
  let version: number | undefined;
  try {
    version = ifMatch(header);
  } catch (err) {
    assert.ok(err instanceof DivertError, `threw ${(err as Error)?.name}: ${(err as Error)?.message} for ${JSON.stringify(header)}`);
    assert.equal(err.code, 'BAD_REQUEST');
    assert.match(err.message, /^If-Match: /);
    return;
  }
  if (header === undefined) return assert.equal(version, undefined);
  assert.ok(Number.isSafeInteger(version) && version! >= 0, `version ${version}`);
}

// near-valid entries: the values the checks look at, valid or just wrong
const address4 = fc.constantFrom('192.0.2.1', '192.0.2.2', '10.0.0.1', '192.0.2.01', '256.1.1.1', '1.2.3', '', ' 192.0.2.1');
const address6 = fc.constantFrom(
  '2001:db8::1',
  '2001:DB8::1',
  '2001:db8:0:0:0:0:0:2',
  '::ffff:192.0.2.1',
  '::',
  'fe80::1%eth0',
  '2001:db8::g',
  '1.2.3.4',
);
const anyAddress = fc.oneof(address4, address6, fc.constantFrom(5, null, {}, []));
const weightValue = fc.constantFrom(0, 1, 3, 1000, 1001, -1, 1.5, '2', null);
const weights = fc.oneof(fc.dictionary(fc.oneof(address4, address6), weightValue, { maxKeys: 4 }), fc.constantFrom(null, [], 'x', {}));
const pick = fc.constantFrom(undefined, null, 0, 1, 2, 64, 65, 1.5, '1');
const ttl = fc.constantFrom(undefined, null, 0, 30, 86400, 86401, -1, 1.5, '30', 1e21);
const rule = fc.oneof(
  {
    arbitrary: fc.record(
      {
        networks: fc.array(
          fc.constantFrom(
            '10.0.0.0/8',
            '10.1.2.3/16',
            '192.0.2.1',
            '::ffff:10.0.0.0/104',
            '::ffff:0.0.0.0/90',
            '2001:db8::/32',
            '2001:db8::1/32',
            '0.0.0.0/0',
            '::/0',
            '10/8',
            'x',
            '1.2.3.4/33',
            7,
          ),
          { maxLength: 3 },
        ),
        days: fc.array(fc.constantFrom('mon', 'TUE', 'Sun', 'sun', 'xyz', 1), { maxLength: 3 }),
        from: fc.constantFrom('00:00', '08:00', '23:59', '24:00', '7:00', '12:60', 8),
        to: fc.constantFrom('00:00', '17:30', '24:00', '25:00', null),
        tz: fc.constantFrom('UTC', 'Europe/London', 'America/New_York', 'Mars/Base', '', 0),
        a: fc.array(address4, { maxLength: 3 }),
        aaaa: fc.array(address6, { maxLength: 2 }),
        weights,
        pick,
        color: fc.constant('red'),
      },
      { requiredKeys: [] },
    ),
    weight: 8,
  },
  { arbitrary: fc.constantFrom(null, 1, 'rule', [], {}), weight: 1 },
);
const nearEntry = fc.record(
  {
    a: fc.oneof(
      { arbitrary: fc.array(address4, { maxLength: 4 }), weight: 5 },
      { arbitrary: fc.array(anyAddress, { maxLength: 3 }), weight: 1 },
      { arbitrary: fc.constantFrom('192.0.2.1', null), weight: 1 },
    ),
    aaaa: fc.oneof(
      { arbitrary: fc.array(address6, { maxLength: 3 }), weight: 5 },
      { arbitrary: fc.array(anyAddress, { maxLength: 2 }), weight: 1 },
    ),
    ttl,
    weights,
    pick,
    rules: fc.oneof({ arbitrary: fc.array(rule, { maxLength: 4 }), weight: 6 }, { arbitrary: fc.constantFrom(null, {}, 'x'), weight: 1 }),
    name: fc.constant('www.example'),
  },
  { requiredKeys: [] },
);
// rules built from valid parts only (so that most pass), and entries whose weights name their own addresses
const goodRule = fc
  .record(
    {
      networks: fc.uniqueArray(
        fc.constantFrom('10.0.0.0/8', '192.0.2.1', '::ffff:10.0.0.0/104', '2001:db8::/32', '0.0.0.0/0', '2001:DB8:0::/48'),
        { minLength: 1, maxLength: 3 },
      ),
      days: fc.uniqueArray(fc.constantFrom('mon', 'tue', 'sat', 'sun'), { minLength: 1, maxLength: 3 }),
      window: fc.constantFrom(['08:00', '17:30'], ['22:00', '06:00'], ['00:00', '24:00']),
      tz: fc.constantFrom('UTC', 'Europe/London', 'Asia/Kolkata'),
      a: fc.uniqueArray(fc.constantFrom('192.0.2.7', '192.0.2.8'), { maxLength: 2 }),
      aaaa: fc.uniqueArray(fc.constantFrom('2001:db8::7', '2001:db8::8'), { maxLength: 2 }),
      pick: fc.constantFrom(1, 2, 64),
      weighted: fc.boolean(),
    },
    { requiredKeys: ['networks'] },
  )
  .map(({ window, weighted, ...r }) => ({
    ...r,
    ...(window && r.days ? { from: window[0], to: window[1] } : {}),
    ...(r.tz && !r.days ? { tz: undefined } : {}),
    ...(weighted && r.a?.length ? { weights: { [r.a[0]]: 2 } } : {}),
  }));
const validEntry = fc
  .record({
    a: fc.uniqueArray(fc.constantFrom('192.0.2.1', '192.0.2.2', '10.0.0.1'), { maxLength: 3 }),
    rules: fc.array(fc.oneof({ arbitrary: goodRule, weight: 6 }, { arbitrary: rule, weight: 1 }), { maxLength: 4 }),
    shared: fc.boolean(),
    pick,
  })
  .map(({ shared, ...e }) => ({
    ...e,
    aaaa: ['2001:db8::1'],
    ...(shared ? { weights: Object.fromEntries(e.a.map((x, i) => [x, i])) } : {}),
  }));

describe('fuzz: admin request bodies', () => {
  test('corpus (test/fuzz-corpus/bodies.jsonl)', () => {
    for (const line of corpusLines('bodies.jsonl')) {
      const c = JSON.parse(line) as { fn: 'entry' | 'diversion' | 'ifMatch'; input?: unknown };
      if (c.fn === 'entry') checkEntryBody(c.input);
      else if (c.fn === 'diversion') checkDiversionBody(c.input);
      else checkIfMatch(c.input as string | string[] | undefined);
    }
  });

  test('entryFromBody on arbitrary JSON', () => {
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue(), fc.object()), (body) => checkEntryBody(body)),
      params(2000),
    );
  });

  test('entryFromBody on near-valid entries with rules', () => {
    fc.assert(
      fc.property(fc.oneof(nearEntry, validEntry), (body) => checkEntryBody(body)),
      params(4000),
    );
  });

  test('diversionFromBody on arbitrary JSON and near-valid bodies', () => {
    const near = fc.record(
      { from: fc.oneof(address4, address6, fc.jsonValue()), to: fc.oneof(address4, fc.jsonValue()), via: fc.string() },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue(), fc.object(), near), (body) => checkDiversionBody(body)),
      params(2000),
    );
  });

  test('ifMatch on arbitrary header values', () => {
    const text = fc.oneof(fc.string({ maxLength: 20 }), fc.stringMatching(/^\s*(W\/)?"?\d{0,17}"?\s*$/));
    fc.assert(
      fc.property(fc.oneof(text, fc.array(text, { maxLength: 3 }), fc.constant(undefined)), (header) => checkIfMatch(header)),
      params(2000),
    );
  });
});
