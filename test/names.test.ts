// Any name DNS can carry, as the table takes it: presentation format with escapes read into
// the very text the query path makes of the same wire name, the limits of the wire form
// refused with BAD_NAME, and zone files that carry such names out and back unchanged.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isDivertError } from '../src/errors.js';
import { normalizeName } from '../src/entry/names.js';
import { parseZone } from '../src/table/zone/parse.js';
import { formatZone } from '../src/table/zone/format.js';
import { nameText } from '../src/update/records.js';
import { isUnreadable, readQuery } from '../src/wire/query.js';
import { LONGEST_NAME, rawQuery } from './helpers/raw.js';

const SEED = 20250612;

/** The name the query path reads from a query for these wire labels. */
function queried(labels: readonly Buffer[]): string {
  const q = readQuery(rawQuery(labels));
  assert.ok(!isUnreadable(q), 'the query is readable');
  return q.name;
}

const bytes = (...list: number[]) => Buffer.from(list);
const ascii = (text: string) => Buffer.from(text, 'latin1');

const LONGEST = LONGEST_NAME;

describe('names in presentation format', () => {
  test("escapes, case and a trailing dot give the query path's text for the same wire name", () => {
    const cases: [string, Buffer[], string][] = [
      ['WWW.Example.COM.', [ascii('www'), ascii('example'), ascii('com')], 'www.example.com'],
      ['Sp\\032Ace.corp.test', [ascii('sp ace'), ascii('corp'), ascii('test')], 'sp\\032ace.corp.test'],
      ['sp\\ ace.corp.test', [ascii('sp ace'), ascii('corp'), ascii('test')], 'sp\\032ace.corp.test'],
      ['dot\\.in.corp.test', [ascii('dot.in'), ascii('corp'), ascii('test')], 'dot\\046in.corp.test'],
      ['\\200high.corp.test', [bytes(200, 0x68, 0x69, 0x67, 0x68), ascii('corp'), ascii('test')], '\\200high.corp.test'],
      ['back\\\\slash.test', [ascii('back\\slash'), ascii('test')], 'back\\092slash.test'],
      ['quote\\".test', [ascii('quote"'), ascii('test')], 'quote\\034.test'],
      ['\\065\\066c.test', [ascii('ABc'), ascii('test')], 'abc.test'],
      ['a/b?c#d%e@f.test', [ascii('a/b?c#d%e@f'), ascii('test')], 'a\\047b\\063c\\035d\\037e\\064f.test'],
      ['-lead.trail-.test', [ascii('-lead'), ascii('trail-'), ascii('test')], '-lead.trail-.test'],
      ['\\000\\255.test', [bytes(0, 255), ascii('test')], '\\000\\255.test'],
      ['*.wild.test', [ascii('*'), ascii('wild'), ascii('test')], '*.wild.test'],
      ['\\*.wild.test', [ascii('*'), ascii('wild'), ascii('test')], '*.wild.test'],
      ['a.*.star.test', [ascii('a'), ascii('*'), ascii('star'), ascii('test')], 'a.*.star.test'],
      [LONGEST, LONGEST.split('.').map(ascii), LONGEST],
    ];
    for (const [input, labels, expected] of cases) {
      assert.equal(normalizeName(input), expected, input);
      assert.equal(queried(labels), expected, `the query for ${input}`);
      assert.equal(nameText(labels), expected, `DNS UPDATE's text of ${input}`);
      assert.equal(normalizeName(expected), expected, `${expected} is its own normal form`);
    }
  });

  test('every wire name, however it is spelled, reads as the query for it', () => {
    const label = fc.uint8Array({ minLength: 1, maxLength: 63 });
    const name = fc.array(label, { minLength: 1, maxLength: 8 }).filter((ls) => ls.reduce((n, l) => n + 1 + l.length, 1) <= 255);
    // each octet written one of the ways presentation format allows
    const spelling = fc.array(fc.nat({ max: 3 }), { minLength: 255, maxLength: 255 });
    fc.assert(
      fc.property(name, spelling, (labels, ways) => {
        let k = 0;
        const text = labels.map((l) => [...l].map((b) => spell(b, ways[k++ % ways.length])).join('')).join('.');
        const expected = queried(labels.map((l) => Buffer.from(l)));
        assert.equal(normalizeName(text), expected, text);
        assert.equal(normalizeName(`${text}.`), expected, `${text}.`);
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  test('a name over the limits, or with a bad escape, is refused with BAD_NAME naming what is wrong', () => {
    const cases: [string, RegExp][] = [
      [`${LONGEST}x`, /is 256 octets long on the wire; the limit is 255 \(253 characters written without escapes\)/],
      [`${LONGEST.slice(0, -3)}\\100\\100\\100\\100`, /is 256 octets long on the wire/],
      [`${'x'.repeat(64)}.test`, /has a label of 64 octets, "x{64}"; the limit is 63/],
      [`${'x'.repeat(62)}\\.y.test`, /has a label of 64 octets/],
      ['a\\25x.test', /has a bad escape "\\25x" \(expected \\DDD, three digits from 000 to 255\)/],
      ['a\\256.test', /has a bad escape "\\256"/],
      ['trailing.test\\', /ends in a lone "\\"/],
      ['a..test', /has an empty label/],
      ['.test', /starts with "\."/],
      ['sp ace.test', /holds a space \(write it as \\032\)/],
      ['tab\t.test', /holds the control character "\\t" \(write it as \\009\)/],
      ['café.test', /holds the non-ASCII character "é"/],
      ['', /is empty \(the root cannot be intercepted\)/],
      ['.', /is empty/],
      ['*', /a wildcard needs a parent/],
    ];
    for (const [input, message] of cases) {
      assert.throws(
        () => normalizeName(input),
        (err: unknown) => {
          assert.ok(isDivertError(err, 'BAD_NAME'), `${input}: ${String(err)}`);
          assert.ok(err.message.startsWith(`name "${input}"`), err.message);
          assert.match(err.message, message);
          return true;
        },
      );
    }
  });

  test('a runaway name is quoted cut short in the message', () => {
    assert.throws(
      () => normalizeName('x.'.repeat(100_000)),
      (err: unknown) => isDivertError(err, 'BAD_NAME') && err.message.length < 1300,
    );
  });
});

describe('zone files with such names', () => {
  test('escaped owners, relative and absolute, and a ;divert line with an escaped blank', () => {
    const entries = parseZone(
      [
        '$ORIGIN Corp\\.Int.test.',
        'sp\\032ace A 192.0.2.1',
        'sp\\ ace AAAA 2001:db8::1',
        'dot\\. A 192.0.2.2',
        'back\\\\. A 192.0.2.3',
        '\\200high.OTHER.test. A 192.0.2.4',
        `${LONGEST}. A 192.0.2.5`,
        ';divert tab\\ x {"ttl": 60}',
      ].join('\n'),
      'z.zone',
    );
    assert.deepEqual([...entries.keys()].sort(), [
      '\\200high.other.test',
      LONGEST,
      'back\\092',
      'dot\\046.corp\\046int.test',
      'sp\\032ace.corp\\046int.test',
      'tab\\032x.corp\\046int.test',
    ]);
    assert.deepEqual(entries.get('sp\\032ace.corp\\046int.test'), { a: ['192.0.2.1'], aaaa: ['2001:db8::1'], ttl: 30 });
    assert.deepEqual(entries.get('tab\\032x.corp\\046int.test'), { a: [], aaaa: [], ttl: 60 });
  });

  test('formatZone writes them so that parseZone reads back the same entries', () => {
    const names = [
      LONGEST,
      '\\200high.corp.test',
      'dot\\046in.corp.test',
      'sp\\032ace.corp.test',
      'q\\034\\059\\040.test',
      '\\036origin.test',
      '\\064.test',
      '*.wild.test',
      'tab\\009x.test',
    ];
    const entries = names.map((name, i) => ({ name, a: [`192.0.2.${i + 1}`], aaaa: [], ttl: 30 }));
    entries.push({ name: 'empty\\032one.test', a: [], aaaa: [], ttl: 45 });
    const text = formatZone(entries);
    const back = parseZone(text, 'export.zone');
    assert.deepEqual(new Map([...back].sort()), new Map(entries.map(({ name, ...data }) => [name, data] as const).sort()), text);
  });

  test('a bad name in a zone file is refused with its line', () => {
    assert.throws(
      () => parseZone(`${'x'.repeat(64)}.test. A 192.0.2.1`, 'z.zone'),
      (err: unknown) => isDivertError(err, 'BAD_ZONE') && /^z\.zone:1: name "x{64}\.test\." has a label of 64 octets/.test(err.message),
    );
    assert.throws(
      () => parseZone('$ORIGIN test\\.\nwww A 192.0.2.1', 'z.zone'),
      (err: unknown) => isDivertError(err, 'BAD_ZONE') && /^z\.zone:1: \$ORIGIN "test\\\." is not an absolute name/.test(err.message),
    );
  });
});

/** One octet in one of the spellings presentation format allows; `way` picks which. */
function spell(b: number, way: number): string {
  const printable = b > 0x20 && b < 0x7f;
  const isDigit = b >= 0x30 && b <= 0x39;
  if (way === 0 || !printable) return `\\${String(b).padStart(3, '0')}`;
  if (way === 1 && !isDigit) return `\\${String.fromCharCode(b)}`;
  if (b === 0x2e || b === 0x5c) return `\\${String.fromCharCode(b)}`;
  const c = String.fromCharCode(b);
  return way === 3 ? c.toUpperCase() : c;
}
