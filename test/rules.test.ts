// Local rules and load sharing without a server: what the table accepts (and the message
// of what it refuses), and what a compiled entry answers a given client at a given time.

import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import dnsPacket from 'dns-packet';
import { isDivertError } from '../src/errors.js';
import { compileEntry } from '../src/rules/compile.js';
import { checkEntryData, type EntryInput } from '../src/entry/check.js';
import type { EntryData } from '../src/entry/entry.js';
import type { Ecs } from '../src/wire/edns.js';
import { compileAnswers, type AnswerRecords, type CompiledAnswers } from '../src/wire/answers.js';

// ---------------------------------------------------------------------------------
// Helpers

/** The addresses of encoded answer records, in order. */
function addressesOf(records: Buffer, count: number, size: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const rdata = records.subarray(i * size + 12, (i + 1) * size);
    out.push(
      size === 16
        ? [...rdata].join('.')
        : (dnsPacket as unknown as { aaaa: { decode(b: Buffer, o: number): string } }).aaaa.decode(records, i * size + 10),
    );
  }
  return out;
}

const aOf = (answers: AnswerRecords) => addressesOf(answers.a, answers.aCount, 16);
const aaaaOf = (answers: AnswerRecords) => addressesOf(answers.aaaa, answers.aaaaCount, 28);

function compiled(input: EntryInput): CompiledAnswers {
  return compileEntry(checkEntryData(input));
}

/** What an entry answers a client: each family as the query path selects it for a query of that type. */
interface Choice {
  answers: AnswerRecords;
  scope: number | null;
}

function choose(answers: CompiledAnswers, client: string, now = Date.parse('2026-01-05T12:00:00Z'), ecs: Ecs | null = null): Choice {
  assert.ok(answers.select, 'an entry with rules or sharing has select');
  const a = answers.select(client, ecs, now, 1, { records: Buffer.alloc(0), count: 0, scope: null });
  const aaaa = answers.select(client, ecs, now, 28, { records: Buffer.alloc(0), count: 0, scope: null });
  assert.equal(a.scope, aaaa.scope, 'the scope does not depend on the type asked');
  return { answers: { a: a.records, aCount: a.count, aaaa: aaaa.records, aaaaCount: aaaa.count }, scope: a.scope };
}

/** A small seeded generator (mulberry32), so counts over many draws are reproducible. */
function seededRandom(t: TestContext, seed: number): void {
  let state = seed >>> 0;
  t.mock.method(Math, 'random', () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let x = state;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  });
}

function refusal(input: EntryInput): string {
  try {
    checkEntryData(input);
  } catch (err) {
    assert.ok(isDivertError(err, 'BAD_RULE'), `expected BAD_RULE, got ${String(err)}`);
    return err.message;
  }
  assert.fail('expected the entry to be refused');
}

// ---------------------------------------------------------------------------------
// Validation

describe('checkEntryData with load sharing and rules', () => {
  test('a plain entry reads back exactly as before: no rules, weights or pick keys', () => {
    assert.deepEqual(Object.keys(checkEntryData({ a: ['192.0.2.1'], ttl: 5 })), ['a', 'aaaa', 'ttl']);
    assert.deepEqual(checkEntryData({ a: ['192.0.2.1'], rules: [], weights: {} }), { a: ['192.0.2.1'], aaaa: [], ttl: 30 });
    assert.deepEqual(checkEntryData({ a: ['192.0.2.1'], rules: null, weights: null, pick: null }), { a: ['192.0.2.1'], aaaa: [], ttl: 30 });
  });

  test('canonical form: networks, IPv6 keys, days in week order, empty lists dropped', () => {
    const out = checkEntryData({
      a: ['192.0.2.1', '192.0.2.2'],
      aaaa: ['2001:DB8::1'],
      weights: { '192.0.2.2': 3, '2001:0db8:0:0::1': 2 },
      pick: 2,
      rules: [
        {
          networks: ['10.1.0.0/16', '2001:DB8:0:0::/32', '::ffff:10.2.0.0/112', '10.9.9.9'],
          days: ['FRI', 'mon'],
          from: '09:00',
          to: '24:00',
          tz: 'Europe/London',
          a: ['192.0.2.9'],
        },
        { networks: [], days: ['sun'] },
        { weights: { '192.0.2.1': 0 } },
      ],
    });
    assert.deepEqual(out, {
      a: ['192.0.2.1', '192.0.2.2'],
      aaaa: ['2001:db8::1'],
      ttl: 30,
      weights: { '192.0.2.2': 3, '2001:db8::1': 2 },
      pick: 2,
      rules: [
        {
          networks: ['10.1.0.0/16', '2001:db8::/32', '10.2.0.0/16', '10.9.9.9/32'],
          days: ['mon', 'fri'],
          from: '09:00',
          to: '24:00',
          tz: 'Europe/London',
          a: ['192.0.2.9'],
        },
        { days: ['sun'] },
        { weights: { '192.0.2.1': 0 } },
      ],
    });
    // checking the canonical form again changes nothing
    assert.deepEqual(checkEntryData(out), out);
  });

  test('a rule may weigh its own addresses', () => {
    const out = checkEntryData({
      a: ['192.0.2.1'],
      rules: [{ days: ['mon'], a: ['192.0.2.7', '192.0.2.8'], weights: { '192.0.2.8': 4 }, pick: 1 }],
    });
    assert.deepEqual(out.rules, [{ days: ['mon'], a: ['192.0.2.7', '192.0.2.8'], weights: { '192.0.2.8': 4 }, pick: 1 }]);
  });

  const longRules = Array.from({ length: 65 }, () => ({ days: ['mon'] }));
  const manyNetworks = Array.from({ length: 257 }, (_, i) => `10.0.${i >> 8}.${i & 255}/32`);
  const refused: { name: string; input: EntryInput; message: RegExp }[] = [
    {
      name: 'host bits set',
      input: { rules: [{ days: ['mon'] }, { days: ['tue'] }, { networks: ['10.1.2.3/16'] }] },
      message: /^rules\[2\]\.networks\[0\]: "10\.1\.2\.3\/16" has host bits set; did you mean 10\.1\.0\.0\/16\?$/,
    },
    {
      name: 'IPv6 host bits set',
      input: { rules: [{ networks: ['2001:db8::1/32'] }] },
      message: /rules\[0\]\.networks\[0\]: .* did you mean 2001:db8::\/32\?/,
    },
    { name: 'not a network', input: { rules: [{ networks: ['10/8'] }] }, message: /rules\[0\]\.networks\[0\]: "10\/8" is not a network/ },
    { name: 'prefix too long', input: { rules: [{ networks: ['10.0.0.0/33'] }] }, message: /rules\[0\]\.networks\[0\]: "10\.0\.0\.0\/33"/ },
    { name: 'network not a string', input: { rules: [{ networks: [42] }] }, message: /rules\[0\]\.networks\[0\]: 42/ },
    { name: 'networks not a list', input: { rules: [{ networks: '10.0.0.0/8' }] }, message: /rules\[0\]\.networks: expected a list/ },
    {
      name: 'network twice',
      input: { rules: [{ networks: ['10.0.0.0/8', '10.0.0.0/8'] }] },
      message: /rules\[0\]\.networks\[1\]: .* listed twice/,
    },
    {
      name: 'too many networks',
      input: { rules: [{ networks: manyNetworks }] },
      message: /rules\[0\]\.networks: 257 networks; the limit is 256/,
    },
    { name: 'unknown day', input: { rules: [{ days: ['mon', 'funday'] }] }, message: /rules\[0\]\.days\[1\]: "funday" is not a day/ },
    { name: 'day twice', input: { rules: [{ days: ['mon', 'Mon'] }] }, message: /rules\[0\]\.days\[1\]: "Mon" is listed twice/ },
    {
      name: 'from without to',
      input: { rules: [{ from: '09:00' }] },
      message: /rules\[0\]: "from" and "to" come together; only "from" is given/,
    },
    { name: 'to without from', input: { rules: [{ to: '09:00' }] }, message: /only "to" is given/ },
    { name: 'from 24:00', input: { rules: [{ from: '24:00', to: '01:00' }] }, message: /rules\[0\]\.from: "24:00" is not a time/ },
    { name: 'to 24:30', input: { rules: [{ from: '09:00', to: '24:30' }] }, message: /rules\[0\]\.to: "24:30" is not a time/ },
    { name: 'time without leading zero', input: { rules: [{ from: '9:00', to: '17:00' }] }, message: /rules\[0\]\.from: "9:00"/ },
    { name: 'minute 60', input: { rules: [{ from: '09:60', to: '17:00' }] }, message: /rules\[0\]\.from: "09:60"/ },
    {
      name: 'empty window',
      input: { rules: [{ from: '09:00', to: '09:00' }] },
      message: /rules\[0\]\.to: the window 09:00–09:00 is empty/,
    },
    {
      name: 'unknown zone',
      input: { rules: [{ days: ['mon'], tz: 'Mars/Olympus' }] },
      message: /rules\[0\]\.tz: "Mars\/Olympus" is not an IANA time zone/,
    },
    {
      name: 'zone without days or window',
      input: { rules: [{ networks: ['10.0.0.0/8'], tz: 'UTC' }] },
      message: /rules\[0\]\.tz: a time zone needs/,
    },
    { name: 'unknown key', input: { rules: [{ days: ['mon'], network: ['10.0.0.0/8'] }] }, message: /rules\[0\]: unknown key "network"/ },
    {
      name: 'rule with nothing',
      input: { a: ['192.0.2.1'], rules: [{ days: ['mon'] }, { a: ['192.0.2.2'] }] },
      message: /rules\[1\]: has no condition/,
    },
    { name: 'rule with pick only', input: { a: ['192.0.2.1'], rules: [{ pick: 1 }] }, message: /rules\[0\]: has no condition/ },
    { name: 'rule not an object', input: { rules: ['10.0.0.0/8'] }, message: /rules\[0\]: expected an object/ },
    { name: 'rules not a list', input: { rules: { networks: ['10.0.0.0/8'] } }, message: /^rules: expected a list of rules/ },
    { name: 'too many rules', input: { rules: longRules }, message: /^rules: 65 rules; the limit is 64/ },
    {
      name: 'rule address',
      input: { rules: [{ days: ['mon'], a: ['192.0.2.300'] }] },
      message: /rules\[0\]\.a\[0\]: "192\.0\.2\.300" is not an IPv4 address/,
    },
    {
      name: 'rule IPv6 address',
      input: { rules: [{ days: ['mon'], aaaa: ['192.0.2.1'] }] },
      message: /rules\[0\]\.aaaa\[0\]: "192\.0\.2\.1" is not an IPv6 address/,
    },
    {
      name: 'weight of an address not in the answer',
      input: { a: ['192.0.2.1'], weights: { '192.0.2.9': 1 } },
      message: /^weights\["192\.0\.2\.9"\]: "192\.0\.2\.9" is not one of the answer's a addresses \(192\.0\.2\.1\)/,
    },
    {
      name: 'weight of an address not among many: the message lists ten of them, not all',
      input: { a: Array.from({ length: 5000 }, (_, i) => `10.0.${i >> 8}.${i & 255}`), weights: { '192.0.2.9': 1 } },
      message:
        /^weights\["192\.0\.2\.9"\]: "192\.0\.2\.9" is not one of the answer's a addresses \(10\.0\.0\.0, 10\.0\.0\.1, [\d., ]*10\.0\.0\.9 and 4990 more\)$/,
    },
    {
      name: 'weight key not an address',
      input: { a: ['192.0.2.1'], weights: { primary: 1 } },
      message: /^weights\["primary"\]: "primary" is not an address/,
    },
    {
      name: 'weight too large',
      input: { a: ['192.0.2.1'], weights: { '192.0.2.1': 1001 } },
      message: /^weights\["192\.0\.2\.1"\]: 1001 is not a whole number from 0 to 1000/,
    },
    { name: 'weight fractional', input: { a: ['192.0.2.1'], weights: { '192.0.2.1': 0.5 } }, message: /^weights\["192\.0\.2\.1"\]: 0\.5/ },
    { name: 'weight negative', input: { a: ['192.0.2.1'], weights: { '192.0.2.1': -1 } }, message: /^weights\["192\.0\.2\.1"\]: -1/ },
    { name: 'weight as text', input: { a: ['192.0.2.1'], weights: { '192.0.2.1': '3' } }, message: /^weights\["192\.0\.2\.1"\]: "3"/ },
    {
      name: 'same address weighted twice',
      input: { aaaa: ['2001:db8::1'], weights: { '2001:db8::1': 1, '2001:DB8::1': 2 } },
      message: /weighted twice/,
    },
    { name: 'weights not an object', input: { a: ['192.0.2.1'], weights: [1] }, message: /^weights: expected an object/ },
    { name: 'pick 0', input: { a: ['192.0.2.1'], pick: 0 }, message: /^pick: 0 is not a whole number from 1 to 64/ },
    { name: 'pick 65', input: { a: ['192.0.2.1'], pick: 65 }, message: /^pick: 65/ },
    {
      name: "rule weights over the entry's addresses when the rule has its own",
      input: { a: ['192.0.2.1'], rules: [{ days: ['mon'], a: ['192.0.2.7'], weights: { '192.0.2.1': 2 } }] },
      message: /^rules\[0\]\.weights\["192\.0\.2\.1"\]: .* not one of the answer's a addresses \(192\.0\.2\.7\)/,
    },
    { name: 'rule pick', input: { a: ['192.0.2.1'], rules: [{ days: ['mon'], pick: 1.5 }] }, message: /^rules\[0\]\.pick: 1\.5/ },
  ];
  for (const c of refused) {
    test(`refused: ${c.name}`, () => {
      assert.match(refusal(c.input), c.message);
    });
  }

  test('a/aaaa/ttl errors keep their codes', () => {
    assert.throws(
      () => checkEntryData({ a: ['nope'], rules: [{ days: ['mon'] }] }),
      (err) => isDivertError(err, 'BAD_ADDRESS'),
    );
    assert.throws(
      () => checkEntryData({ ttl: -1, weights: {} }),
      (err) => isDivertError(err, 'BAD_TTL'),
    );
  });
});

// ---------------------------------------------------------------------------------
// compileEntry and select

describe('compileEntry', () => {
  test('a plain entry compiles exactly as before, without select', () => {
    const data: EntryData = { a: ['192.0.2.1', '192.0.2.2'], aaaa: ['2001:db8::1'], ttl: 60 };
    const out = compileEntry(data);
    assert.equal(out.select, undefined);
    assert.deepEqual(out, compileAnswers(data));
  });

  const byNetwork = compiled({
    a: ['192.0.2.10'],
    aaaa: ['2001:db8::10'],
    rules: [
      { networks: ['127.0.0.2/32'], a: ['192.0.2.2'] },
      { networks: ['127.0.0.3/32'], a: ['192.0.2.3'] },
      { networks: ['2001:db8:aa::/48', 'fd00::/8'], aaaa: ['2001:db8::6'] },
      { networks: ['127.0.0.0/8'], a: ['192.0.2.8'], aaaa: [] },
    ],
  });

  const networkCases: { client: string; a: string[]; aaaa: string[]; why: string }[] = [
    { client: '127.0.0.2', a: ['192.0.2.2'], aaaa: ['2001:db8::10'], why: 'first rule; AAAA from the entry' },
    { client: '127.0.0.3', a: ['192.0.2.3'], aaaa: ['2001:db8::10'], why: 'second rule' },
    { client: '127.0.0.4', a: ['192.0.2.8'], aaaa: [], why: 'the /8 rule, later in order; its empty AAAA list' },
    { client: '::ffff:127.0.0.2', a: ['192.0.2.2'], aaaa: ['2001:db8::10'], why: 'IPv4-mapped matches as IPv4' },
    { client: '2001:db8:aa:1::5', a: ['192.0.2.10'], aaaa: ['2001:db8::6'], why: 'IPv6 network' },
    { client: 'fd12::1', a: ['192.0.2.10'], aaaa: ['2001:db8::6'], why: 'second network of the rule' },
    { client: 'fe80::1%eth0', a: ['192.0.2.10'], aaaa: ['2001:db8::10'], why: 'link-local with a zone: no rule' },
    { client: '2001:db8:ab::1', a: ['192.0.2.10'], aaaa: ['2001:db8::10'], why: 'just outside the /48' },
    { client: '192.0.2.99', a: ['192.0.2.10'], aaaa: ['2001:db8::10'], why: 'no rule: the default' },
    { client: 'garbage', a: ['192.0.2.10'], aaaa: ['2001:db8::10'], why: 'unreadable: no network holds it' },
  ];
  for (const c of networkCases) {
    test(`networks: ${c.client} (${c.why})`, () => {
      // twice: the second answer comes from the remembered verdict
      for (let i = 0; i < 2; i++) {
        const { answers, scope } = choose(byNetwork, c.client);
        assert.deepEqual(aOf(answers), c.a);
        assert.deepEqual(aaaaOf(answers), c.aaaa);
        assert.equal(scope, null, 'no ECS: no scope');
      }
    });
  }

  test('networks: verdicts stay right after the memo of clients overflows', () => {
    for (let i = 0; i < 25_000; i++) {
      const client = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
      assert.deepEqual(aOf(choose(byNetwork, client).answers), ['192.0.2.10']);
    }
    assert.deepEqual(aOf(choose(byNetwork, '127.0.0.3').answers), ['192.0.2.3']);
  });

  test('first match wins, and a rule matches only when every condition holds', () => {
    const entry = compiled({
      a: ['192.0.2.10'],
      rules: [
        { networks: ['10.0.0.0/8'], days: ['sat', 'sun'], a: ['192.0.2.1'] },
        { networks: ['10.1.0.0/16'], a: ['192.0.2.2'] },
        { networks: ['10.0.0.0/8'], a: ['192.0.2.3'] },
      ],
    });
    const monday = Date.parse('2026-01-05T12:00:00Z');
    const saturday = Date.parse('2026-01-10T12:00:00Z');
    assert.deepEqual(aOf(choose(entry, '10.1.2.3', saturday).answers), ['192.0.2.1']);
    assert.deepEqual(aOf(choose(entry, '10.1.2.3', monday).answers), ['192.0.2.2']);
    assert.deepEqual(aOf(choose(entry, '10.2.2.3', monday).answers), ['192.0.2.3']);
    assert.deepEqual(aOf(choose(entry, '11.0.0.1', saturday).answers), ['192.0.2.10']);
  });
});

describe('time windows', () => {
  const at = (iso: string) => Date.parse(iso);
  const office = (tz: string) =>
    compiled({
      a: ['192.0.2.10'],
      rules: [{ days: ['mon', 'tue', 'wed', 'thu', 'fri'], from: '09:00', to: '17:00', tz, a: ['192.0.2.1'] }],
    });
  const inOffice = (entry: CompiledAnswers, iso: string) => aOf(choose(entry, '192.0.2.200', at(iso)).answers)[0] === '192.0.2.1';

  const cases: { tz: string; iso: string; inside: boolean; why: string }[] = [
    // New York: EST (UTC−5) in winter, EDT (UTC−4) from 2026-03-08
    { tz: 'America/New_York', iso: '2026-01-05T13:59:59.999Z', inside: false, why: 'winter Monday 08:59:59.999 EST' },
    { tz: 'America/New_York', iso: '2026-01-05T14:00:00.000Z', inside: true, why: 'winter Monday 09:00 EST' },
    { tz: 'America/New_York', iso: '2026-01-05T21:59:59.999Z', inside: true, why: 'winter Monday 16:59 EST' },
    { tz: 'America/New_York', iso: '2026-01-05T22:00:00.000Z', inside: false, why: 'winter Monday 17:00 EST: the end is excluded' },
    { tz: 'America/New_York', iso: '2026-07-06T12:59:59.999Z', inside: false, why: 'summer Monday 08:59 EDT' },
    { tz: 'America/New_York', iso: '2026-07-06T13:00:00.000Z', inside: true, why: 'summer Monday 09:00 EDT' },
    { tz: 'America/New_York', iso: '2026-07-06T21:00:00.000Z', inside: false, why: 'summer Monday 17:00 EDT' },
    { tz: 'America/New_York', iso: '2026-03-09T13:00:00.000Z', inside: true, why: 'first weekday after the change: 09:00 EDT' },
    { tz: 'America/New_York', iso: '2026-03-06T13:30:00.000Z', inside: false, why: 'last Friday before the change: 08:30 EST' },
    { tz: 'America/New_York', iso: '2026-01-10T15:00:00.000Z', inside: false, why: 'Saturday 10:00 EST: not a listed day' },
    { tz: 'America/New_York', iso: '2026-01-06T03:00:00.000Z', inside: false, why: 'Tuesday in UTC, Monday 22:00 in New York' },
    // London: GMT in winter, BST (UTC+1) from 2026-03-29
    { tz: 'Europe/London', iso: '2026-01-05T08:59:59.999Z', inside: false, why: 'winter Monday 08:59 GMT' },
    { tz: 'Europe/London', iso: '2026-01-05T09:00:00.000Z', inside: true, why: 'winter Monday 09:00 GMT' },
    { tz: 'Europe/London', iso: '2026-01-05T17:00:00.000Z', inside: false, why: 'winter Monday 17:00 GMT' },
    { tz: 'Europe/London', iso: '2026-03-27T08:00:00.000Z', inside: false, why: 'Friday before the change: 08:00 GMT' },
    { tz: 'Europe/London', iso: '2026-03-30T08:00:00.000Z', inside: true, why: 'Monday after the change: 09:00 BST' },
    { tz: 'Europe/London', iso: '2026-03-30T15:59:59.999Z', inside: true, why: 'Monday after the change: 16:59 BST' },
    { tz: 'Europe/London', iso: '2026-03-30T16:00:00.000Z', inside: false, why: 'Monday after the change: 17:00 BST' },
  ];
  for (const c of cases) {
    test(`09:00–17:00 weekdays in ${c.tz}: ${c.why}`, () => {
      assert.equal(inOffice(office(c.tz), c.iso), c.inside);
    });
  }

  test('one compiled entry follows the clock back and forth (the cached verdict expires)', () => {
    const entry = office('Europe/London');
    const sequence: [string, boolean][] = [
      ['2026-01-05T08:59:30.000Z', false],
      ['2026-01-05T08:59:59.999Z', false],
      ['2026-01-05T09:00:00.000Z', true],
      ['2026-01-05T09:00:30.000Z', true],
      ['2026-01-05T08:59:59.000Z', false],
      ['2026-07-06T08:30:00.000Z', true],
      ['2026-07-06T16:00:00.000Z', false],
    ];
    for (const [iso, inside] of sequence) assert.equal(inOffice(entry, iso), inside, iso);
  });

  test('a window past midnight belongs to the day it starts on', () => {
    const night = compiled({ a: ['192.0.2.10'], rules: [{ days: ['fri'], from: '22:00', to: '06:00', a: ['192.0.2.1'] }] });
    const cases: [string, boolean][] = [
      ['2026-01-09T21:59:00Z', false], // Friday 21:59
      ['2026-01-09T22:00:00Z', true], // Friday 22:00
      ['2026-01-09T23:59:00Z', true],
      ['2026-01-10T00:00:00Z', true], // Saturday 00:00, the window started on Friday
      ['2026-01-10T05:59:00Z', true],
      ['2026-01-10T06:00:00Z', false], // the end is excluded
      ['2026-01-10T23:00:00Z', false], // Saturday's own night is not listed
      ['2026-01-09T05:00:00Z', false], // Friday early: that window started on Thursday
    ];
    for (const [iso, inside] of cases) assert.equal(inOffice(night, iso), inside, iso);
  });

  test('a window past midnight in a zone with DST (New York, the night the clocks go forward)', () => {
    const night = compiled({
      a: ['192.0.2.10'],
      rules: [{ days: ['sat'], from: '23:00', to: '03:00', tz: 'America/New_York', a: ['192.0.2.1'] }],
    });
    // Saturday 2026-03-07 23:00 EST = 04:00Z; 02:00 EST becomes 03:00 EDT at 07:00Z
    assert.equal(inOffice(night, '2026-03-08T03:59:00Z'), false);
    assert.equal(inOffice(night, '2026-03-08T04:00:00Z'), true);
    assert.equal(inOffice(night, '2026-03-08T06:59:00Z'), true); // 01:59 EST
    assert.equal(inOffice(night, '2026-03-08T07:00:00Z'), false); // 03:00 EDT
  });

  test('days alone, "24:00" as the end of the day, and UTC by default', () => {
    const weekend = compiled({ a: ['192.0.2.10'], rules: [{ days: ['sat', 'sun'], a: ['192.0.2.1'] }] });
    assert.equal(inOffice(weekend, '2026-01-09T23:59:59Z'), false);
    assert.equal(inOffice(weekend, '2026-01-10T00:00:00Z'), true);
    assert.equal(inOffice(weekend, '2026-01-11T23:59:59Z'), true);
    assert.equal(inOffice(weekend, '2026-01-12T00:00:00Z'), false);
    const evening = compiled({ a: ['192.0.2.10'], rules: [{ from: '18:00', to: '24:00', a: ['192.0.2.1'] }] });
    assert.equal(inOffice(evening, '2026-01-05T17:59:00Z'), false);
    assert.equal(inOffice(evening, '2026-01-05T18:00:00Z'), true);
    assert.equal(inOffice(evening, '2026-01-05T23:59:59Z'), true);
    assert.equal(inOffice(evening, '2026-01-06T00:00:00Z'), false);
  });
});

describe('load sharing', () => {
  const DRAWS = 10_000;

  function firstAddresses(entry: CompiledAnswers, family: 'a' | 'aaaa' = 'a'): Map<string, number> {
    const counts = new Map<string, number>();
    for (let i = 0; i < DRAWS; i++) {
      const { answers } = choose(entry, '192.0.2.200');
      const first = (family === 'a' ? aOf(answers) : aaaaOf(answers))[0];
      counts.set(first, (counts.get(first) ?? 0) + 1);
    }
    return counts;
  }

  function assertShares(counts: Map<string, number>, expected: Record<string, number>): void {
    assert.deepEqual(
      [...counts.keys()].sort(),
      Object.keys(expected)
        .filter((k) => expected[k] > 0)
        .sort(),
    );
    for (const [address, share] of Object.entries(expected)) {
      const got = (counts.get(address) ?? 0) / DRAWS;
      assert.ok(Math.abs(got - share) <= 0.03, `${address}: ${(got * 100).toFixed(1)} % of first places, expected ${share * 100} %`);
    }
  }

  test('pick 1: one address per answer, as often as its weight says', (t) => {
    seededRandom(t, 1);
    const entry = compiled({
      a: ['192.0.2.1', '192.0.2.2', '192.0.2.3'],
      weights: { '192.0.2.1': 5, '192.0.2.2': 3, '192.0.2.3': 2 },
      pick: 1,
    });
    assert.equal(choose(entry, '192.0.2.200').answers.aCount, 1);
    assertShares(firstAddresses(entry), { '192.0.2.1': 0.5, '192.0.2.2': 0.3, '192.0.2.3': 0.2 });
  });

  test('without pick: every address, the first by weight, the others by descending weight', (t) => {
    seededRandom(t, 2);
    const entry = compiled({
      a: ['192.0.2.1', '192.0.2.2', '192.0.2.3', '192.0.2.4'],
      weights: { '192.0.2.1': 1, '192.0.2.2': 6, '192.0.2.4': 0 },
    });
    // 192.0.2.3 has no weight: it weighs 1; 192.0.2.4 weighs 0: never first, still answered
    assertShares(firstAddresses(entry), { '192.0.2.1': 0.125, '192.0.2.2': 0.75, '192.0.2.3': 0.125, '192.0.2.4': 0 });
    const orders = new Set<string>();
    for (let i = 0; i < 200; i++) orders.add(aOf(choose(entry, '192.0.2.200').answers).join(' '));
    assert.deepEqual([...orders].sort(), [
      '192.0.2.1 192.0.2.2 192.0.2.3 192.0.2.4',
      '192.0.2.2 192.0.2.1 192.0.2.3 192.0.2.4',
      '192.0.2.3 192.0.2.2 192.0.2.1 192.0.2.4',
    ]);
  });

  test('every address of a family at weight 0 (all standby): shared equally, never refused', (t) => {
    seededRandom(t, 4);
    const entry = compiled({
      a: ['192.0.2.1', '192.0.2.2'],
      aaaa: ['2001:db8::1'],
      weights: { '192.0.2.1': 0, '192.0.2.2': 0, '2001:db8::1': 0 },
      pick: 1,
    });
    assertShares(firstAddresses(entry), { '192.0.2.1': 0.5, '192.0.2.2': 0.5 });
    assert.deepEqual(aaaaOf(choose(entry, '192.0.2.200').answers), ['2001:db8::1']);
  });

  test('pick without weights: a uniform first address, pick of them answered; IPv6 too', (t) => {
    seededRandom(t, 3);
    const entry = compiled({ a: ['192.0.2.1', '192.0.2.2'], aaaa: ['2001:db8::1', '2001:db8::2', '2001:db8::3'], pick: 2 });
    const { answers } = choose(entry, '192.0.2.200');
    assert.equal(answers.aCount, 2);
    assert.equal(answers.aaaaCount, 2);
    assertShares(firstAddresses(entry, 'aaaa'), { '2001:db8::1': 1 / 3, '2001:db8::2': 1 / 3, '2001:db8::3': 1 / 3 });
  });

  test('the default fields are the answer in weight order, pick applied', () => {
    const entry = compiled({ a: ['192.0.2.1', '192.0.2.2', '192.0.2.3'], weights: { '192.0.2.3': 9 }, pick: 2 });
    assert.deepEqual(aOf(entry), ['192.0.2.3', '192.0.2.1']);
  });

  test("a rule's sharing: its own, else the entry's for a family it takes from the entry", (t) => {
    seededRandom(t, 4);
    const entry = compiled({
      a: ['192.0.2.1', '192.0.2.2'],
      weights: { '192.0.2.1': 0 },
      pick: 1,
      rules: [
        { networks: ['10.0.0.0/8'], weights: { '192.0.2.1': 1, '192.0.2.2': 0 } },
        { networks: ['11.0.0.0/8'], a: ['192.0.2.7', '192.0.2.8'] },
        { networks: ['12.0.0.0/8'], days: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] },
      ],
    });
    for (let i = 0; i < 50; i++) {
      assert.deepEqual(aOf(choose(entry, '10.0.0.1').answers), ['192.0.2.1', '192.0.2.2'], "the rule's weights, no pick");
      assert.deepEqual(aOf(choose(entry, '11.0.0.1').answers), ['192.0.2.7', '192.0.2.8'], 'own addresses: no sharing');
      assert.deepEqual(aOf(choose(entry, '12.0.0.1').answers), ['192.0.2.2'], "the entry's weights and pick");
      assert.deepEqual(aOf(choose(entry, '13.0.0.1').answers), ['192.0.2.2'], "no rule: the entry's sharing");
    }
  });

  test('a rule of weights alone always matches', (t) => {
    seededRandom(t, 5);
    const entry = compiled({ a: ['192.0.2.1', '192.0.2.2'], rules: [{ weights: { '192.0.2.1': 1, '192.0.2.2': 3 }, pick: 1 }] });
    assertShares(firstAddresses(entry), { '192.0.2.1': 0.25, '192.0.2.2': 0.75 });
  });
});

describe('choose with EDNS Client Subnet', () => {
  const v4 = (address: string, sourcePrefix: number): Ecs => ({ family: 1, sourcePrefix, address });
  const v6 = (address: string, sourcePrefix: number): Ecs => ({ family: 2, sourcePrefix, address });
  const entry = compiled({
    a: ['192.0.2.10'],
    aaaa: ['2001:db8::10'],
    rules: [
      { networks: ['127.0.0.2/32'], a: ['192.0.2.2'] },
      { networks: ['10.1.0.0/16', '2001:db8:aa::/48'], a: ['192.0.2.16'] },
      { networks: ['10.1.5.0/24'], a: ['192.0.2.24'] },
      { networks: ['10.0.0.0/8'], a: ['192.0.2.8'] },
    ],
  });

  const cases: { name: string; ecs: Ecs; a: string; scope: number }[] = [
    { name: "the subnet inside a rule's network: that network's prefix", ecs: v4('10.1.2.0', 24), a: '192.0.2.16', scope: 16 },
    { name: "the ECS address is used, not the resolver's", ecs: v4('127.0.0.2', 32), a: '192.0.2.2', scope: 32 },
    { name: 'the scope is capped at the source prefix', ecs: v4('10.0.0.0', 12), a: '192.0.2.8', scope: 12 },
    { name: 'a subnet wider than the network does not match it', ecs: v6('2001:db8::', 32), a: '192.0.2.10', scope: 32 },
    // 10.1.0.0/16 and 10.1.5.0/24 lie inside 10.0.0.0/8 and come first: the answer holds for a /24 only
    { name: 'narrower rules before the one that matched lengthen the scope', ecs: v4('10.2.0.0', 24), a: '192.0.2.8', scope: 24 },
    { name: 'no rule: the longest prefix examined, capped', ecs: v4('192.0.2.0', 24), a: '192.0.2.10', scope: 24 },
    { name: 'no rule, source /32: the longest prefix examined', ecs: v4('192.0.2.1', 32), a: '192.0.2.10', scope: 32 },
    { name: 'IPv6 subnet', ecs: v6('2001:db8:aa:100::', 56), a: '192.0.2.16', scope: 48 },
    { name: 'IPv6 subnet, no rule: only IPv6 networks count', ecs: v6('2001:db8:bb::', 56), a: '192.0.2.10', scope: 48 },
    { name: 'source prefix 0: no client information, network rules do not match', ecs: v4('0.0.0.0', 0), a: '192.0.2.10', scope: 0 },
  ];
  for (const c of cases) {
    test(c.name, () => {
      for (let i = 0; i < 2; i++) {
        const { answers, scope } = choose(entry, '127.0.0.2', undefined, c.ecs);
        assert.deepEqual(aOf(answers), [c.a]);
        assert.equal(scope, c.scope);
      }
    });
  }

  test('the matched /24 after an overlapping /16 rule that did not match', () => {
    // 10.1.5.0/24 lies inside 10.1.0.0/16, which comes first: a 10.1.5.x client gets the /16 rule
    const { answers, scope } = choose(entry, '127.0.0.1', undefined, v4('10.1.5.0', 24));
    assert.deepEqual(aOf(answers), ['192.0.2.16']);
    assert.equal(scope, 16);
  });

  test('an entry without network conditions answers with scope 0', () => {
    const timed = compiled({ a: ['192.0.2.10'], rules: [{ days: ['mon'], a: ['192.0.2.1'] }] });
    assert.equal(choose(timed, '127.0.0.1', undefined, v4('10.1.2.0', 24)).scope, 0);
    const shared = compiled({ a: ['192.0.2.1', '192.0.2.2'], pick: 1 });
    assert.equal(choose(shared, '127.0.0.1', undefined, v4('10.1.2.0', 24)).scope, 0);
  });

  test('a rule without networks after network rules: the longest prefix before it', () => {
    const mixed = compiled({
      a: ['192.0.2.10'],
      rules: [
        { networks: ['10.1.0.0/16'], a: ['192.0.2.1'] },
        { days: ['mon'], a: ['192.0.2.2'] },
      ],
    });
    const monday = Date.parse('2026-01-05T12:00:00Z');
    const { answers, scope } = choose(mixed, '127.0.0.1', monday, v4('172.16.0.0', 20));
    assert.deepEqual(aOf(answers), ['192.0.2.2']);
    assert.equal(scope, 16);
  });
});
