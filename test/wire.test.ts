// The wire module as the query path uses it: reading a query's header and question,
// finding its OPT record, and building replies that a real DNS decoder accepts.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dnsPacket from 'dns-packet';
import { isPassedOn } from '../src/wire/header.js';
import { isReplyTo, isUnreadable, readQuery, type Query } from '../src/wire/query.js';
import { EDNS_UDP_PAYLOAD, readEdns, udpLimit, type Edns } from '../src/wire/edns.js';
import { compileAnswers, type CompiledAnswers } from '../src/wire/answers.js';
import { answerReply, errorReply, headerOnlyFormErr, headerOnlyReply } from '../src/wire/reply.js';

// ---------------------------------------------------------------------------------
// Building messages

const FLAG_QR = 0x8000;
const FLAG_RD = 0x0100;
const FLAG_CD = 0x0010;

/** A name in wire form from its labels, each given as text (latin1) or raw bytes. */
function wireName(...labels: (string | number[])[]): Buffer {
  const parts: Buffer[] = [];
  for (const label of labels) {
    const bytes = typeof label === 'string' ? Buffer.from(label, 'latin1') : Buffer.from(label);
    parts.push(Buffer.from([bytes.length]), bytes);
  }
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

interface RawMessage {
  id?: number;
  flags?: number;
  qdcount?: number;
  ancount?: number;
  nscount?: number;
  arcount?: number;
  /** Bytes after the header: question and any records, exactly as given. */
  body: Buffer;
}

function raw({ id = 0x1234, flags = FLAG_RD, qdcount = 1, ancount = 0, nscount = 0, arcount = 0, body }: RawMessage): Buffer {
  return Buffer.concat([u16(id), u16(flags), u16(qdcount), u16(ancount), u16(nscount), u16(arcount), body]);
}

/** A question: wire name, type, class. */
function question(name: Buffer, qtype = 1, qclass = 1): Buffer {
  return Buffer.concat([name, u16(qtype), u16(qclass)]);
}

/** An OPT record in wire form. */
function optRecord({
  owner = Buffer.from([0]),
  payload = 1232,
  extRcode = 0,
  version = 0,
  doBit = false,
  rdata = Buffer.alloc(0),
} = {}): Buffer {
  return Buffer.concat([owner, u16(41), u16(payload), Buffer.from([extRcode, version, doBit ? 0x80 : 0, 0]), u16(rdata.length), rdata]);
}

/** An A record in wire form whose owner is a pointer to the question name. */
function aRecordAtQuestion(address: number[], ttl = 60): Buffer {
  const ttlBytes = Buffer.alloc(4);
  ttlBytes.writeUInt32BE(ttl);
  return Buffer.concat([Buffer.from([0xc0, 0x0c]), u16(1), u16(1), ttlBytes, u16(4), Buffer.from(address)]);
}

type QType = 'A' | 'AAAA' | 'MX' | 'TXT' | 'NS';

/** A query as a stub resolver sends it, encoded by dns-packet (names keep their case). */
function query(
  name: string,
  type: QType = 'A',
  {
    id = 0x4242,
    flags = dnsPacket.RECURSION_DESIRED,
    edns,
  }: { id?: number; flags?: number; edns?: { payload?: number; do?: boolean } } = {},
): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id,
    flags,
    questions: [{ type, name, class: 'IN' }],
    additionals: edns
      ? [
          {
            type: 'OPT',
            name: '.',
            udpPayloadSize: edns.payload ?? 4096,
            extendedRcode: 0,
            ednsVersion: 0,
            flags: edns.do ? dnsPacket.DNSSEC_OK : 0,
            flag_do: edns.do ?? false,
            options: [],
          },
        ]
      : [],
  });
}

function mustRead(msg: Buffer): Query {
  const q = readQuery(msg);
  assert.ok(!isUnreadable(q), `expected a readable query, got ${String(q)}`);
  return q;
}

function mustEdns(msg: Buffer, q: Query): Edns | null {
  const edns = readEdns(msg, q);
  assert.notEqual(edns, 'formerr');
  return edns as Edns | null;
}

/** dns-packet's decoded message, with the fields its typings leave out. */
type Decoded = dnsPacket.DecodedPacket & { rcode: string; opcode: string };
/** An A or AAAA record as dns-packet decodes it. */
type AddressRecord = { name: string; type: string; class: string; ttl: number; data: string };
const addressRecords = (d: Decoded) => d.answers as unknown as AddressRecord[];
const decode = (msg: Buffer) => dnsPacket.decode(msg) as Decoded;

// ---------------------------------------------------------------------------------
// readQuery

describe('readQuery on good queries', () => {
  const cases: { name: string; msg: Buffer; expect: Partial<Query> }[] = [
    {
      name: 'mixed-case name is lower-cased, type A class IN',
      msg: raw({ id: 0xbeef, body: question(wireName('WwW', 'Example', 'COM'), 1, 1) }),
      expect: { id: 0xbeef, name: 'www.example.com', qtype: 1, qclass: 1, opcode: 0, questionEnd: 12 + 17 + 4 },
    },
    {
      name: 'AAAA in class CH',
      msg: raw({ body: question(wireName('version', 'bind'), 28, 3) }),
      expect: { name: 'version.bind', qtype: 28, qclass: 3 },
    },
    {
      name: 'root name is the empty string',
      msg: raw({ body: question(wireName(), 2, 1) }),
      expect: { name: '', qtype: 2, qclass: 1, questionEnd: 12 + 1 + 4 },
    },
    {
      name: 'digits, hyphen, underscore and star stand for themselves',
      msg: raw({ body: question(wireName('*', '_sip', '_TCP', 'a-1', 'example'), 33) }),
      expect: { name: '*._sip._tcp.a-1.example', qtype: 33 },
    },
    {
      name: 'a label holding a dot is escaped as \\046',
      msg: raw({ body: question(wireName('a.b', 'example')) }),
      expect: { name: 'a\\046b.example' },
    },
    {
      name: 'byte 0xC3 (and 0xA9) are escaped as \\195 \\169',
      msg: raw({ body: question(wireName([0x63, 0xc3, 0xa9], 'example')) }),
      expect: { name: 'c\\195\\169.example' },
    },
    {
      name: 'space, backslash, NUL and 0xFF are escaped with three digits',
      msg: raw({ body: question(wireName([0x20, 0x5c, 0x00, 0xff], 'x')) }),
      expect: { name: '\\032\\092\\000\\255.x' },
    },
    {
      name: 'upper-case letters inside an odd label are still lower-cased',
      msg: raw({ body: question(wireName([0x41, 0x2e, 0x5a])) }),
      expect: { name: 'a\\046z' },
    },
    {
      name: 'opcode STATUS (2) is reported',
      msg: raw({ flags: 2 << 11, body: question(wireName('example')) }),
      expect: { opcode: 2, flags: 2 << 11 },
    },
    {
      name: 'opcode NOTIFY (4) with RD and CD flags kept',
      msg: raw({ flags: (4 << 11) | FLAG_RD | FLAG_CD, body: question(wireName('example')) }),
      expect: { opcode: 4, flags: (4 << 11) | FLAG_RD | FLAG_CD },
    },
    {
      name: 'questionEnd stops before the additional section',
      msg: raw({ arcount: 1, body: Buffer.concat([question(wireName('example', 'org'), 255), optRecord()]) }),
      expect: { name: 'example.org', qtype: 255, questionEnd: 12 + 13 + 4 },
    },
    {
      name: 'a name of exactly 255 bytes (63+63+63+61 byte labels) is accepted',
      msg: raw({ body: question(wireName('a'.repeat(63), 'b'.repeat(63), 'c'.repeat(63), 'd'.repeat(61))) }),
      expect: { name: ['a'.repeat(63), 'b'.repeat(63), 'c'.repeat(63), 'd'.repeat(61)].join('.'), questionEnd: 12 + 255 + 4 },
    },
    {
      name: 'a name of 255 bytes made of odd bytes (every byte escaped) is read whole',
      msg: raw({ body: question(wireName(...[0, 1, 2].map(() => new Array(63).fill(0xc3)), new Array(61).fill(0xc3))) }),
      expect: { name: [63, 63, 63, 61].map((n) => '\\195'.repeat(n)).join('.') },
    },
    {
      name: 'dns-packet encoded query (RD set)',
      msg: query('Mail.Example.NET', 'MX', { id: 7 }),
      expect: { id: 7, name: 'mail.example.net', qtype: 15, qclass: 1, flags: FLAG_RD, opcode: 0 },
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const q = mustRead(c.msg);
      for (const [key, value] of Object.entries(c.expect)) {
        assert.deepEqual(q[key as keyof Query], value, `field ${key}`);
      }
    });
  }

  test('readQuery does not hand out a name that a later call overwrites', () => {
    const first = mustRead(raw({ body: question(wireName('first', 'example')) }));
    mustRead(raw({ body: question(wireName('second', 'example')) }));
    assert.equal(first.name, 'first.example');
  });
});

describe('readQuery verdicts on unreadable messages', () => {
  const good = question(wireName('www', 'example'));
  const cases: { name: string; msg: Buffer; verdict: 'drop' | 'formerr' }[] = [
    { name: 'empty message', msg: Buffer.alloc(0), verdict: 'drop' },
    { name: '11 bytes', msg: raw({ body: Buffer.alloc(0) }).subarray(0, 11), verdict: 'drop' },
    { name: 'QR set (a response)', msg: raw({ flags: FLAG_QR | FLAG_RD, body: good }), verdict: 'drop' },
    { name: 'QR set, even with no question', msg: raw({ flags: FLAG_QR, qdcount: 0, body: Buffer.alloc(0) }), verdict: 'drop' },
    { name: 'QDCOUNT 0', msg: raw({ qdcount: 0, body: good }), verdict: 'formerr' },
    { name: 'QDCOUNT 2', msg: raw({ qdcount: 2, body: Buffer.concat([good, good]) }), verdict: 'formerr' },
    { name: 'header only', msg: raw({ body: Buffer.alloc(0) }), verdict: 'formerr' },
    { name: 'compression pointer as the whole name', msg: raw({ body: Buffer.from([0xc0, 0x0c, 0, 1, 0, 1]) }), verdict: 'formerr' },
    {
      name: 'compression pointer after a label',
      msg: raw({ body: Buffer.concat([Buffer.from([3]), Buffer.from('www'), Buffer.from([0xc0, 0x0c, 0, 1, 0, 1])]) }),
      verdict: 'formerr',
    },
    {
      name: 'pointer loop (a pointer to itself)',
      msg: raw({ body: Buffer.concat([Buffer.from([1, 0x61, 0xc0, 0x0e]), u16(1), u16(1)]) }),
      verdict: 'formerr',
    },
    { name: 'reserved label type 0x40', msg: raw({ body: Buffer.from([0x41, 0x61, 0, 0, 1, 0, 1]) }), verdict: 'formerr' },
    { name: 'reserved label type 0x80', msg: raw({ body: Buffer.from([0x81, 0x61, 0, 0, 1, 0, 1]) }), verdict: 'formerr' },
    { name: 'label runs past the end', msg: raw({ body: Buffer.concat([Buffer.from([7]), Buffer.from('exa')]) }), verdict: 'formerr' },
    { name: 'name without its root label', msg: raw({ body: Buffer.concat([Buffer.from([3]), Buffer.from('www')]) }), verdict: 'formerr' },
    { name: 'type and class missing', msg: raw({ body: wireName('www', 'example') }), verdict: 'formerr' },
    { name: 'class missing', msg: raw({ body: Buffer.concat([wireName('www', 'example'), u16(1)]) }), verdict: 'formerr' },
    {
      name: 'class cut in half',
      msg: raw({ body: Buffer.concat([wireName('www', 'example'), u16(1), Buffer.from([0])]) }),
      verdict: 'formerr',
    },
    {
      name: 'name of 257 bytes (four 63-byte labels)',
      msg: raw({ body: question(wireName('a'.repeat(63), 'b'.repeat(63), 'c'.repeat(63), 'd'.repeat(63))) }),
      verdict: 'formerr',
    },
    {
      // RFC 1035 3.1: label octets and length octets, the root's zero included, at most 255.
      name: 'name of 256 bytes (63+63+63+62 byte labels, 254 characters as text)',
      msg: raw({ body: question(wireName('a'.repeat(63), 'b'.repeat(63), 'c'.repeat(63), 'd'.repeat(62))) }),
      verdict: 'formerr',
    },
    {
      name: 'name far longer than 255 bytes (200 one-byte labels)',
      msg: raw({ body: question(wireName(...new Array(200).fill('x'))) }),
      verdict: 'formerr',
    },
  ];
  for (const c of cases) {
    test(`${c.name} → ${c.verdict}`, () => {
      assert.equal(readQuery(c.msg), c.verdict);
    });
  }

  test('isUnreadable tells verdicts from queries', () => {
    assert.equal(isUnreadable('drop'), true);
    assert.equal(isUnreadable('formerr'), true);
    assert.equal(isUnreadable(mustRead(query('example.com'))), false);
  });
});

// ---------------------------------------------------------------------------------
// readEdns

describe('readEdns', () => {
  const q1 = question(wireName('www', 'example'));
  const cases: { name: string; msg: Buffer; expect: Edns | null | 'formerr' }[] = [
    { name: 'no records: none', msg: raw({ body: q1 }), expect: null },
    { name: 'dns-packet query without OPT: none', msg: query('example.com'), expect: null },
    {
      name: 'OPT with payload 4096 and DO',
      msg: query('example.com', 'A', { edns: { payload: 4096, do: true } }),
      expect: { udpPayload: 4096, version: 0, dnssecOk: true },
    },
    {
      name: 'OPT with payload 1232 and no DO',
      msg: query('example.com', 'A', { edns: { payload: 1232 } }),
      expect: { udpPayload: 1232, version: 0, dnssecOk: false },
    },
    {
      name: 'EDNS version 1 is reported (the pipeline answers BADVERS)',
      msg: raw({ arcount: 1, body: Buffer.concat([q1, optRecord({ version: 1, payload: 2048 })]) }),
      expect: { udpPayload: 2048, version: 1, dnssecOk: false },
    },
    {
      name: 'payload 100 is raised to 512',
      msg: raw({ arcount: 1, body: Buffer.concat([q1, optRecord({ payload: 100 })]) }),
      expect: { udpPayload: 512, version: 0, dnssecOk: false },
    },
    {
      name: 'payload 0 is raised to 512',
      msg: raw({ arcount: 1, body: Buffer.concat([q1, optRecord({ payload: 0 })]) }),
      expect: { udpPayload: 512, version: 0, dnssecOk: false },
    },
    {
      name: 'payload 512 stays 512',
      msg: raw({ arcount: 1, body: Buffer.concat([q1, optRecord({ payload: 512 })]) }),
      expect: { udpPayload: 512, version: 0, dnssecOk: false },
    },
    {
      name: 'OPT carrying options (rdata) after another additional record',
      msg: raw({
        arcount: 2,
        body: Buffer.concat([
          q1,
          aRecordAtQuestion([192, 0, 2, 1]),
          optRecord({ doBit: true, rdata: Buffer.from([0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]) }),
        ]),
      }),
      expect: { udpPayload: 1232, version: 0, dnssecOk: true },
    },
    {
      name: 'records in answer and authority are walked before the OPT',
      msg: raw({
        ancount: 1,
        nscount: 1,
        arcount: 1,
        body: Buffer.concat([q1, aRecordAtQuestion([192, 0, 2, 1]), aRecordAtQuestion([192, 0, 2, 2]), optRecord({ payload: 1400 })]),
      }),
      expect: { udpPayload: 1400, version: 0, dnssecOk: false },
    },
    {
      name: 'OPT in the answer section',
      msg: raw({ ancount: 1, body: Buffer.concat([q1, optRecord()]) }),
      expect: 'formerr',
    },
    {
      name: 'OPT in the authority section',
      msg: raw({ nscount: 1, body: Buffer.concat([q1, optRecord()]) }),
      expect: 'formerr',
    },
    {
      name: 'two OPT records',
      msg: raw({ arcount: 2, body: Buffer.concat([q1, optRecord(), optRecord()]) }),
      expect: 'formerr',
    },
    {
      name: 'OPT whose owner is not the root',
      msg: raw({ arcount: 1, body: Buffer.concat([q1, optRecord({ owner: Buffer.from([0xc0, 0x0c]) })]) }),
      expect: 'formerr',
    },
    {
      name: 'ARCOUNT 1 but no record bytes',
      msg: raw({ arcount: 1, body: q1 }),
      expect: 'formerr',
    },
    {
      name: 'record cut inside its fixed fields',
      msg: raw({ arcount: 1, body: Buffer.concat([q1, optRecord().subarray(0, 7)]) }),
      expect: 'formerr',
    },
    {
      name: 'rdlength running past the end',
      msg: raw({ arcount: 1, body: Buffer.concat([q1, optRecord({ rdata: Buffer.alloc(8) }).subarray(0, 11 + 4)]) }),
      expect: 'formerr',
    },
    {
      name: 'ARCOUNT 2 with only one record present',
      msg: raw({ arcount: 2, body: Buffer.concat([q1, optRecord()]) }),
      expect: 'formerr',
    },
    {
      name: 'record owner name running off the end',
      msg: raw({ arcount: 1, body: Buffer.concat([q1, Buffer.from([5, 0x61, 0x62])]) }),
      expect: 'formerr',
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const q = mustRead(c.msg);
      assert.deepEqual(readEdns(c.msg, q), c.expect);
    });
  }

  test('udpLimit: 512 without EDNS, the advertised payload with it, never above --max-udp-size (1232 by default)', () => {
    const edns = (udpPayload: number) => ({ udpPayload, version: 0, dnssecOk: false });
    assert.equal(udpLimit(null), 512);
    assert.equal(udpLimit(edns(1000)), 1000);
    assert.equal(udpLimit(edns(4096)), 1232);
    assert.equal(udpLimit(edns(65535)), 1232);
    assert.equal(udpLimit(edns(4096), 4096), 4096);
    assert.equal(udpLimit(edns(65535), 2048), 2048);
    assert.equal(udpLimit(null, 4096), 512, 'a client without EDNS takes 512 at most, whatever the cap');
  });
});

// ---------------------------------------------------------------------------------
// compileAnswers + answerReply

const ENTRY = {
  a: ['192.0.2.1', '192.0.2.2', '198.51.100.7'],
  aaaa: ['2001:db8::1', '::ffff:192.0.2.9'],
  ttl: 300,
};

describe('compileAnswers', () => {
  test('counts and TTL, records pre-encoded', () => {
    const compiled = compileAnswers(ENTRY);
    assert.equal(compiled.ttl, 300);
    assert.equal(compiled.aCount, 3);
    assert.equal(compiled.aaaaCount, 2);
    assert.equal(compiled.a.length, 3 * 16);
    assert.equal(compiled.aaaa.length, 2 * 28);
  });

  test('an entry with no addresses compiles to empty record sets', () => {
    const compiled = compileAnswers({ a: [], aaaa: [], ttl: 5 });
    assert.equal(compiled.aCount, 0);
    assert.equal(compiled.aaaaCount, 0);
    assert.equal(compiled.a.length, 0);
    assert.equal(compiled.aaaa.length, 0);
  });
});

describe('answerReply', () => {
  const compiled = compileAnswers(ENTRY);

  function reply(msg: Buffer, answers: CompiledAnswers = compiled, maxBytes = 0xffff): { q: Query; out: Buffer; d: Decoded } {
    const q = mustRead(msg);
    const out = answerReply(msg, q, answers, mustEdns(msg, q), maxBytes);
    return { q, out, d: decode(out) };
  }

  test('A: ID, flags, question echoed byte for byte, every A record with TTL and address', () => {
    const msg = query('WwW.ExAmple.COM', 'A', { id: 0xbeef });
    const { q, out, d } = reply(msg);
    assert.equal(d.id, 0xbeef);
    assert.equal(d.flag_qr, true);
    assert.equal(d.flag_aa, true);
    assert.equal(d.flag_rd, true);
    assert.equal(d.flag_ra, true);
    assert.equal(d.flag_tc, false);
    assert.equal(d.opcode, 'QUERY');
    assert.equal(d.rcode, 'NOERROR');
    assert.deepEqual(out.subarray(12, q.questionEnd), msg.subarray(12, q.questionEnd));
    assert.deepEqual(d.questions, [{ name: 'WwW.ExAmple.COM', type: 'A', class: 'IN' }]);
    assert.deepEqual(
      addressRecords(d).map((a) => ({ name: a.name, type: a.type, class: a.class, ttl: a.ttl, data: a.data })),
      ENTRY.a.map((data) => ({ name: 'WwW.ExAmple.COM', type: 'A', class: 'IN', ttl: 300, data })),
    );
    assert.equal(d.authorities!.length, 0);
    assert.equal(d.additionals!.length, 0, 'no OPT when the query had none');
  });

  test('AAAA: every AAAA record, an IPv4-mapped address included', () => {
    const msg = query('v6.example', 'AAAA');
    const { out, d } = reply(msg);
    assert.equal(d.rcode, 'NOERROR');
    assert.equal(d.flag_aa, true);
    assert.equal(d.answers!.length, 2);
    for (const a of addressRecords(d)) {
      assert.equal(a.type, 'AAAA');
      assert.equal(a.name, 'v6.example');
      assert.equal(a.ttl, 300);
    }
    assert.equal(addressRecords(d)[0].data, '2001:db8::1');
    // The rdata of the mapped address is ::ffff:c000:209, however a decoder prints it.
    const mapped = out.subarray(out.length - 16);
    assert.deepEqual([...mapped], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 9]);
  });

  test('RD clear in the query stays clear in the reply; CD is copied', () => {
    const { d } = reply(query('example.com', 'A', { flags: dnsPacket.CHECKING_DISABLED }));
    assert.equal(d.flag_rd, false);
    assert.equal(d.flag_cd, true);
    assert.equal(d.flag_ra, true);
  });

  const nodata: { name: string; type: QType; answers: CompiledAnswers }[] = [
    { name: 'MX for an intercepted name', type: 'MX', answers: compiled },
    { name: 'TXT for an intercepted name', type: 'TXT', answers: compiled },
    { name: 'AAAA when the entry has only IPv4', type: 'AAAA', answers: compileAnswers({ a: ['192.0.2.1'], aaaa: [], ttl: 30 }) },
    { name: 'A when the entry has only IPv6', type: 'A', answers: compileAnswers({ a: [], aaaa: ['2001:db8::5'], ttl: 30 }) },
  ];
  for (const c of nodata) {
    test(`NODATA: ${c.name}`, () => {
      const msg = query('Host.Example', c.type);
      const { q, out, d } = reply(msg, c.answers);
      assert.equal(d.rcode, 'NOERROR');
      assert.equal(d.flag_aa, true);
      assert.equal(d.flag_tc, false);
      assert.equal(d.answers!.length, 0);
      assert.equal(d.questions![0].type, c.type);
      assert.equal(out.length, q.questionEnd, 'header and question only');
    });
  }

  const ednsCases: { name: string; edns?: { payload?: number; do?: boolean }; opt: boolean; doBit?: boolean }[] = [
    { name: 'no OPT in the query → no OPT in the reply', opt: false },
    { name: 'OPT without DO → OPT without DO', edns: { payload: 4096 }, opt: true, doBit: false },
    { name: 'OPT with DO → OPT with DO copied', edns: { payload: 4096, do: true }, opt: true, doBit: true },
  ];
  for (const c of ednsCases) {
    test(`EDNS: ${c.name}`, () => {
      const { d } = reply(query('example.com', 'A', { edns: c.edns }));
      assert.equal(d.answers!.length, 3);
      const opts = d.additionals!.filter((r) => r.type === 'OPT');
      assert.equal(opts.length, c.opt ? 1 : 0);
      assert.equal(d.additionals!.length, opts.length);
      if (c.opt) {
        const opt = opts[0];
        assert.equal(opt.name, '.');
        assert.equal(opt.udpPayloadSize, EDNS_UDP_PAYLOAD);
        assert.equal(opt.ednsVersion, 0);
        assert.equal(opt.extendedRcode, 0);
        assert.equal(opt.flag_do, c.doBit);
        assert.deepEqual(opt.options, []);
      }
    });
  }

  const forty = compileAnswers({ a: Array.from({ length: 40 }, (_, i) => `192.0.2.${i + 1}`), aaaa: [], ttl: 60 });
  const truncation: { name: string; edns?: { payload?: number }; limit: number; tc: boolean; answers: number }[] = [
    { name: '40 A records over the 512-byte limit', limit: 512, tc: true, answers: 0 },
    { name: '40 A records with OPT, limit 512', edns: { payload: 512 }, limit: 512, tc: true, answers: 0 },
    { name: '40 A records within a 1232-byte limit', limit: 1232, tc: false, answers: 40 },
    { name: '40 A records over TCP (65535)', limit: 0xffff, tc: false, answers: 40 },
    // header 12 + question (13 + 4) + 40 × 16 = 669
    { name: 'reply exactly at the limit', limit: 669, tc: false, answers: 40 },
    { name: 'reply one byte over the limit', limit: 668, tc: true, answers: 0 },
  ];
  for (const c of truncation) {
    test(`TC: ${c.name}`, () => {
      const msg = query('big.example', 'A', { edns: c.edns });
      const { q, out, d } = reply(msg, forty, c.limit);
      assert.equal(d.flag_tc, c.tc);
      assert.equal(d.answers!.length, c.answers);
      assert.equal(out.readUInt16BE(6), c.answers, 'ANCOUNT');
      assert.equal(d.rcode, 'NOERROR');
      assert.deepEqual(out.subarray(12, q.questionEnd), msg.subarray(12, q.questionEnd));
      assert.ok(out.length <= c.limit, `reply of ${out.length} bytes fits the ${c.limit}-byte limit`);
      assert.equal(d.additionals!.length, c.edns ? 1 : 0);
    });
  }
});

// ---------------------------------------------------------------------------------
// errorReply and headerOnlyFormErr

describe('errorReply', () => {
  const cases: { name: string; rcode: number; edns?: { payload?: number; do?: boolean }; header: string; extended?: number }[] = [
    { name: 'REFUSED', rcode: 5, header: 'REFUSED' },
    { name: 'SERVFAIL', rcode: 2, header: 'SERVFAIL' },
    { name: 'NOTIMP', rcode: 4, header: 'NOTIMP' },
    { name: 'FORMERR', rcode: 1, header: 'FORMERR' },
    { name: 'SERVFAIL with OPT', rcode: 2, edns: { do: true }, header: 'SERVFAIL', extended: 0 },
    // BADVERS = 16: low four bits (0) in the header, the upper eight (1) in OPT.
    { name: 'BADVERS via OPT extended rcode', rcode: 16, edns: {}, header: 'NOERROR', extended: 1 },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const msg = query('Svc.Example.ORG', 'AAAA', { id: 0x0a0b, edns: c.edns });
      const q = mustRead(msg);
      const out = errorReply(msg, q, c.rcode, mustEdns(msg, q));
      const d = decode(out);
      assert.equal(d.id, 0x0a0b);
      assert.equal(d.flag_qr, true);
      assert.equal(d.flag_aa, false);
      assert.equal(d.flag_rd, true);
      assert.equal(d.flag_ra, true);
      assert.equal(d.flag_tc, false);
      assert.equal(d.rcode, c.header);
      assert.equal(out[3] & 0x0f, c.rcode & 0x0f);
      assert.equal(d.answers!.length, 0);
      assert.deepEqual(out.subarray(12, q.questionEnd), msg.subarray(12, q.questionEnd));
      if (c.extended === undefined) {
        assert.equal(d.additionals!.length, 0);
      } else {
        const opt = d.additionals![0] as dnsPacket.OptAnswer;
        assert.equal(opt.type, 'OPT');
        assert.equal(opt.extendedRcode, c.extended);
        assert.equal((opt.extendedRcode << 4) | (out[3] & 0x0f), c.rcode, 'full rcode');
        assert.equal(opt.flag_do, c.edns?.do ?? false);
      }
    });
  }

  test('errorReply without an edns argument carries no OPT', () => {
    const msg = query('example.com', 'A', { edns: { do: true } });
    const d = decode(errorReply(msg, mustRead(msg), 5));
    assert.equal(d.rcode, 'REFUSED');
    assert.equal(d.additionals!.length, 0);
  });

  test('the opcode of the query is copied (NOTIMP for NOTIFY)', () => {
    const msg = raw({ flags: 4 << 11, body: question(wireName('example')) });
    const out = errorReply(msg, mustRead(msg), 4);
    const d = decode(out);
    assert.equal(d.opcode, 'NOTIFY');
    assert.equal(d.rcode, 'NOTIMP');
    assert.equal(d.flag_rd, false);
  });
});

describe('headerOnlyFormErr', () => {
  const cases: { name: string; msg: Buffer; rd: boolean }[] = [
    { name: 'QDCOUNT 0, RD set', msg: raw({ id: 0x1111, qdcount: 0, body: Buffer.alloc(0) }), rd: true },
    {
      name: 'pointer in the question, RD clear',
      msg: raw({ id: 0x2222, flags: 0, body: Buffer.from([0xc0, 0x0c, 0, 1, 0, 1]) }),
      rd: false,
    },
    { name: 'name running off the end', msg: raw({ id: 0x3333, body: Buffer.from([9, 0x61]) }), rd: true },
  ];
  for (const c of cases) {
    test(c.name, () => {
      assert.equal(readQuery(c.msg), 'formerr');
      const out = headerOnlyFormErr(c.msg);
      assert.equal(out.length, 12);
      const d = decode(out);
      assert.equal(d.id, c.msg.readUInt16BE(0));
      assert.equal(d.flag_qr, true);
      assert.equal(d.flag_aa, false);
      assert.equal(d.flag_rd, c.rd);
      assert.equal(d.rcode, 'FORMERR');
      assert.equal(d.questions!.length, 0);
      assert.equal(d.answers!.length, 0);
      assert.equal(d.additionals!.length, 0);
    });
  }
});

// ---------------------------------------------------------------------------------
// Other opcodes: which are passed on, and how one without a readable question is read

describe('opcodes other than QUERY', () => {
  test('STATUS and unassigned opcodes are passed on; IQUERY, NOTIFY, UPDATE and DSO are not', () => {
    const passed = Array.from({ length: 16 }, (_, opcode) => opcode).filter(isPassedOn);
    assert.deepEqual(passed, [0, 2, 3, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
  });

  const cases: { name: string; msg: Buffer; opcode: number }[] = [
    { name: 'STATUS with QDCOUNT 0', msg: raw({ flags: 2 << 11, qdcount: 0, body: Buffer.alloc(0) }), opcode: 2 },
    {
      name: 'opcode 3 with QDCOUNT 2',
      msg: raw({ flags: 3 << 11, qdcount: 2, body: Buffer.concat([question(wireName('a', 'test')), question(wireName('b', 'test'))]) }),
      opcode: 3,
    },
    {
      name: 'opcode 15 with bytes that are no question',
      msg: raw({ flags: 15 << 11, body: Buffer.from('not a question at all') }),
      opcode: 15,
    },
    { name: 'NOTIFY with a pointer in the question', msg: raw({ flags: 4 << 11, body: Buffer.from([0xc0, 0x0c, 0, 6, 0, 1]) }), opcode: 4 },
  ];
  for (const c of cases) {
    test(`${c.name}: read by its header alone (a QUERY would be FORMERR)`, () => {
      const q = readQuery(c.msg);
      assert.ok(!isUnreadable(q));
      assert.equal(q.opcode, c.opcode);
      assert.equal(q.questionEnd, 12);
      assert.equal(q.name, '');
      const asQuery = Buffer.from(c.msg);
      asQuery.writeUInt16BE(asQuery.readUInt16BE(2) & ~0x7800, 2);
      assert.equal(readQuery(asQuery), 'formerr');
      // NOTIMP for it: the header only, with the opcode copied and no question
      const d = decode(errorReply(c.msg, q, 4));
      assert.equal(d.rcode, 'NOTIMP');
      assert.equal(d.questions!.length, 0);
      assert.equal(decode(headerOnlyReply(c.msg, 5)).rcode, 'REFUSED');
    });
  }

  test('a reply to a message sent by its header alone: same ID and opcode, no question or as many as sent', () => {
    const sent = raw({ id: 0x7777, flags: 3 << 11, qdcount: 2, body: Buffer.alloc(0) });
    const reply = (id: number, opcode: number, qdcount: number) =>
      raw({ id, flags: FLAG_QR | (opcode << 11) | 4, qdcount, body: Buffer.alloc(0) });
    assert.ok(isReplyTo(reply(0x7777, 3, 0), sent, 12));
    assert.ok(isReplyTo(reply(0x7777, 3, 2), sent, 12));
    assert.ok(!isReplyTo(reply(0x7778, 3, 0), sent, 12), 'another ID');
    assert.ok(!isReplyTo(reply(0x7777, 0, 0), sent, 12), 'another opcode');
    assert.ok(!isReplyTo(reply(0x7777, 3, 1), sent, 12), 'another number of questions');
    assert.ok(!isReplyTo(raw({ id: 0x7777, flags: 3 << 11, qdcount: 0, body: Buffer.alloc(0) }), sent, 12), 'not a response');
  });
});

// ---------------------------------------------------------------------------------
// isReplyTo

describe('isReplyTo', () => {
  const sent = query('www.Example.com', 'A', { id: 0x5151, edns: { payload: 1232 } });
  const q = mustRead(sent);

  function response(name: string, type: string, { id = 0x5151, klass = 'IN' }: { id?: number; klass?: string } = {}): Buffer {
    return dnsPacket.encode({
      type: 'response',
      id,
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
      questions: [{ name, type: type as 'A', class: klass as 'IN' }],
      answers: [{ name, type: 'A', class: 'IN', ttl: 30, data: '192.0.2.1' }],
    });
  }

  const withBytes = (msg: Buffer, edit: (b: Buffer) => void) => {
    const copy = Buffer.from(msg);
    edit(copy);
    return copy;
  };

  const cases: { name: string; reply: Buffer; expect: boolean }[] = [
    { name: 'same ID and question', reply: response('www.Example.com', 'A'), expect: true },
    { name: 'our own answerReply', reply: answerReply(sent, q, compileAnswers(ENTRY), null, 0xffff), expect: true },
    { name: 'name in different case (0x20 randomisation)', reply: response('WWW.eXAMPLE.COM', 'A'), expect: true },
    { name: 'different ID', reply: response('www.Example.com', 'A', { id: 0x5152 }), expect: false },
    { name: 'different type (AAAA)', reply: response('www.Example.com', 'AAAA'), expect: false },
    { name: 'different class (CH)', reply: response('www.Example.com', 'A', { klass: 'CH' }), expect: false },
    { name: 'different name of the same length', reply: response('www.example.org', 'A'), expect: false },
    { name: 'different name, shorter', reply: response('example.com', 'A'), expect: false },
    {
      name: 'QR not set',
      reply: withBytes(response('www.Example.com', 'A'), (b) => b.writeUInt16BE(b.readUInt16BE(2) & ~FLAG_QR, 2)),
      expect: false,
    },
    { name: 'QDCOUNT 0', reply: withBytes(response('www.Example.com', 'A'), (b) => b.writeUInt16BE(0, 4)), expect: false },
    { name: 'reply shorter than the question', reply: response('www.Example.com', 'A').subarray(0, q.questionEnd - 1), expect: false },
    { name: 'header only', reply: response('www.Example.com', 'A').subarray(0, 12), expect: false },
  ];
  for (const c of cases) {
    test(`${c.name} → ${c.expect}`, () => {
      assert.equal(isReplyTo(c.reply, sent, q.questionEnd), c.expect);
    });
  }

  // Non-letters differing only in bit 0x20 ('[' 0x5b vs '{' 0x7b, '@' vs '`') are different names.
  const lookalikes: { name: string; sent: string; got: string }[] = [
    { name: "'[' vs '{'", sent: 'a[b', got: 'a{b' },
    { name: "'@' vs '`'", sent: 'a@b', got: 'a`b' },
    { name: "'-' vs '\\r'", sent: 'a-b', got: 'a\rb' },
  ];
  for (const c of lookalikes) {
    test(`name bytes that are not letters must match exactly: ${c.name} → false`, () => {
      const s = raw({ id: 9, body: question(wireName(c.sent, 'example')) });
      const r = raw({ id: 9, flags: FLAG_QR, body: question(wireName(c.got, 'example')) });
      assert.equal(isReplyTo(r, s, mustRead(s).questionEnd), false);
    });
  }

  // QTYPE and QCLASS are numbers: bit 0x20 of their bytes is not a case bit.
  const numberCases: { name: string; sentType: number; gotType: number; sentClass: number; gotClass: number }[] = [
    { name: 'type HTTPS (65 = 0x0041) answered as type 97 (0x0061)', sentType: 65, gotType: 97, sentClass: 1, gotClass: 1 },
    { name: 'type 0x4100 answered as type 0x6100', sentType: 0x4100, gotType: 0x6100, sentClass: 1, gotClass: 1 },
    { name: 'class 0x0041 answered as class 0x0061', sentType: 1, gotType: 1, sentClass: 0x41, gotClass: 0x61 },
  ];
  for (const c of numberCases) {
    test(`different type or class whose bytes differ only in bit 0x20: ${c.name} → false`, () => {
      const s = raw({ id: 9, body: question(wireName('www', 'example'), c.sentType, c.sentClass) });
      const r = raw({ id: 9, flags: FLAG_QR, body: question(wireName('www', 'example'), c.gotType, c.gotClass) });
      assert.equal(isReplyTo(r, s, mustRead(s).questionEnd), false);
    });
  }
});
