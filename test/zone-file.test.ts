// Zone-file reader: what a user writes in a *.zone file and what divert makes of it.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDivertError } from '../src/errors.js';
import type { EntryData } from '../src/entry/entry.js';
import { parseZone } from '../src/table/zone/parse.js';
import { readZones } from '../src/table/zone/read.js';
import { formatZone } from '../src/table/zone/format.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Entries in the order the reader produced them, so file order is checked too. */
function listOf(entries: Map<string, EntryData>): [string, EntryData][] {
  return [...entries];
}

const REPRESENTATIVE = `$ORIGIN shop.example.
$TTL 1h30m
@   IN SOA ns1 hostmaster ( 2024010101 ; serial
        7200 3600 1209600 300 )   ; parentheses span lines
    IN NS ns1
    IN MX 10 mail
www 300 IN A 192.0.2.1
    IN 60 A 192.0.2.2             ; blank owner, class before TTL
    AAAA 2001:DB8:0:0::1          ; takes $TTL, canonicalised
WWW IN A 192.0.2.1                ; same name again, address already known
api A 192.0.2.10
*.cdn 2m IN A 192.0.2.20
*.cdn IN 1h A 192.0.2.21
downloads.example.net. IN 45 AAAA 2001:db8::2
note IN TXT "a ; not a comment ( nor a parenthesis"
`;

const parseCases: { name: string; text: string; origin?: string; expected: [string, EntryData][] }[] = [
  {
    name: 'representative zone: parentheses, blank owner, units, TTL/class order, wildcard, merge, min TTL',
    text: REPRESENTATIVE,
    expected: [
      ['www.shop.example', { a: ['192.0.2.1', '192.0.2.2'], aaaa: ['2001:db8::1'], ttl: 60 }],
      ['api.shop.example', { a: ['192.0.2.10'], aaaa: [], ttl: 5400 }],
      ['*.cdn.shop.example', { a: ['192.0.2.20', '192.0.2.21'], aaaa: [], ttl: 120 }],
      ['downloads.example.net', { a: [], aaaa: ['2001:db8::2'], ttl: 45 }],
    ],
  },
  {
    name: 'no $TTL: a record takes the previous record TTL, the first one DEFAULT_TTL_SECONDS',
    text: 'a.example. IN A 192.0.2.1\nb.example. 77 IN A 192.0.2.2\nc.example. IN A 192.0.2.3\n',
    expected: [
      ['a.example', { a: ['192.0.2.1'], aaaa: [], ttl: 30 }],
      ['b.example', { a: ['192.0.2.2'], aaaa: [], ttl: 77 }],
      ['c.example', { a: ['192.0.2.3'], aaaa: [], ttl: 77 }],
    ],
  },
  {
    name: 'the origin option serves relative names and @; $ORIGIN replaces it',
    text: '@ 10 A 192.0.2.1\nwww 10 A 192.0.2.2\n$ORIGIN other.example.\nwww 10 A 192.0.2.3\n',
    origin: 'Shop.Example.',
    expected: [
      ['shop.example', { a: ['192.0.2.1'], aaaa: [], ttl: 10 }],
      ['www.shop.example', { a: ['192.0.2.2'], aaaa: [], ttl: 10 }],
      ['www.other.example', { a: ['192.0.2.3'], aaaa: [], ttl: 10 }],
    ],
  },
  {
    name: 'TTL units and a lower-case type, class and directive',
    text: '$origin example.\n$ttl 1w\na 1d in a 192.0.2.1\nb 2h30m10s a 192.0.2.2\nc 0 aaaa ::1\n',
    expected: [
      ['a.example', { a: ['192.0.2.1'], aaaa: [], ttl: 86400 }],
      ['b.example', { a: ['192.0.2.2'], aaaa: [], ttl: 9010 }],
      ['c.example', { a: [], aaaa: ['::1'], ttl: 0 }],
    ],
  },
  {
    name: 'a zone with no address records gives no entries',
    text: '; only comments\n\n$ORIGIN example.\n@ IN NS ns1\nx IN TYPE65280 \\# 0\n',
    expected: [],
  },
];

describe('parseZone', () => {
  for (const c of parseCases) {
    test(c.name, () => {
      const entries = parseZone(c.text, 'test.zone', c.origin === undefined ? {} : { origin: c.origin });
      assert.deepEqual(listOf(entries), c.expected);
    });
  }

  test('CRLF line endings read like LF', () => {
    const entries = parseZone(REPRESENTATIVE.replace(/\n/g, '\r\n'), 'test.zone');
    assert.deepEqual(listOf(entries), parseCases[0].expected);
  });

  test('zones/example.zone parses to the entries its comments promise', async () => {
    const path = join(repoRoot, 'zones', 'example.zone');
    const entries = parseZone(await readFile(path, 'utf8'), 'zones/example.zone');
    assert.deepEqual(listOf(entries), [
      ['www.shop.example', { a: ['192.0.2.10', '192.0.2.11'], aaaa: ['2001:db8::10'], ttl: 30 }],
      ['api.shop.example', { a: ['192.0.2.20'], aaaa: [], ttl: 60 }],
      ['*.cdn.shop.example', { a: ['192.0.2.30', '192.0.2.31'], aaaa: [], ttl: 30 }],
      ['admin.shop.example', { a: ['192.0.2.40'], aaaa: [], ttl: 30 }],
      ['downloads.example.net', { a: ['192.0.2.50'], aaaa: [], ttl: 300 }],
    ]);
  });
});

describe('formatZone', () => {
  const entries = [
    { name: 'www.shop.example', a: ['192.0.2.1', '192.0.2.2'], aaaa: ['2001:db8::1'], ttl: 60 },
    { name: '*.cdn.shop.example', a: ['192.0.2.20'], aaaa: [], ttl: 0 },
    { name: 'api.shop.example', a: [], aaaa: ['2001:db8::a'], ttl: 86400 },
  ];

  test('writes one absolute record per line, sorted by name', () => {
    assert.equal(
      formatZone(entries),
      [
        '*.cdn.shop.example. 0 IN A 192.0.2.20',
        'api.shop.example. 86400 IN AAAA 2001:db8::a',
        'www.shop.example. 60 IN A 192.0.2.1',
        'www.shop.example. 60 IN A 192.0.2.2',
        'www.shop.example. 60 IN AAAA 2001:db8::1',
        '',
      ].join('\n'),
    );
  });

  test('parseZone reads the output back to the same entries', () => {
    const back = parseZone(formatZone(entries), 'export.zone');
    assert.deepEqual(Object.fromEntries(back), Object.fromEntries(entries.map(({ name, ...data }) => [name, data])));
  });

  test('the example zone survives a round trip', async () => {
    const original = parseZone(await readFile(join(repoRoot, 'zones', 'example.zone'), 'utf8'), 'example.zone');
    const text = formatZone([...original].map(([name, data]) => ({ name, ...data })));
    assert.deepEqual(Object.fromEntries(parseZone(text, 'export.zone')), Object.fromEntries(original));
  });
});

describe(';divert lines: rules and load sharing', () => {
  const ZONE = `$ORIGIN shop.example.
$TTL 60
;divert www {"weights":{"192.0.2.1":3},"pick":1,"rules":[{"networks":["10.1.0.0/16"],"a":["192.0.2.9"]}]}
www IN A 192.0.2.1
www IN A 192.0.2.2
;divert blocked.shop.example. {"ttl":5}
; an ordinary comment, skipped
`;

  test('attach rules and weights to the records of the same name, relative to $ORIGIN', () => {
    const entries = parseZone(ZONE, 'rules.zone');
    assert.deepEqual(entries.get('www.shop.example'), {
      a: ['192.0.2.1', '192.0.2.2'],
      aaaa: [],
      ttl: 60,
      weights: { '192.0.2.1': 3 },
      pick: 1,
      rules: [{ networks: ['10.1.0.0/16'], a: ['192.0.2.9'] }],
    });
    assert.deepEqual(entries.get('blocked.shop.example'), { a: [], aaaa: [], ttl: 5 }, 'a name with no records, blocked (NODATA)');
  });

  test('export and import give back the same entries, rules included', () => {
    const entries = parseZone(ZONE, 'rules.zone');
    const text = formatZone([...entries].map(([name, data]) => ({ name, ...data })));
    assert.match(text, /^;divert www\.shop\.example\. \{"weights"/m);
    assert.deepEqual(Object.fromEntries(parseZone(text, 'export.zone')), Object.fromEntries(entries));
  });

  for (const [line, message] of [
    [';divert www {"rules":[{"networks":["10.1.2.3/16"]}]}\nwww A 192.0.2.1', /bad\.zone:1: .*rules\[0\]\.networks\[0\]/],
    [';divert www {"color":"red"}', /bad\.zone:1: "color" in the ;divert line of www\.shop\.example is not known/],
    [';divert www {"weights":', /bad\.zone:1: the ;divert line of www\.shop\.example is not valid JSON/],
    [';divert www {}\n;divert www {}', /bad\.zone:2: www\.shop\.example has a second ;divert line \(the first is on line 1\)/],
    [';divert www {"weights":{"192.0.2.7":1}}\nwww A 192.0.2.1', /bad\.zone:1: .*192\.0\.2\.7/],
    [';divert {"pick":1}', /bad\.zone:1: ";divert" needs an owner name/],
    [
      'www 60 A 192.0.2.1\n;divert www {"ttl":5}',
      /bad\.zone:2: the ;divert line of www\.shop\.example says ttl 5 but its records have TTL 60/,
    ],
  ] as const) {
    test(`refuses ${JSON.stringify(line.split('\n')[0])} with the line and the reason`, () => {
      assert.throws(
        () => parseZone(`${line}\n`, 'bad.zone', { origin: 'shop.example' }),
        (err: unknown) => isDivertError(err, 'BAD_ZONE') && message.test(err.message),
      );
    });
  }
});

describe('readZones', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'divert-zones-'));
    await mkdir(join(dir, 'zones'));
    await mkdir(join(dir, 'zones', 'nested.zone'));
    await mkdir(join(dir, 'empty'));
    await writeFile(join(dir, 'zones', 'b.zone'), '$ORIGIN shop.example.\nwww 20 IN A 192.0.2.3\n        IN A 192.0.2.1\n');
    await writeFile(join(dir, 'zones', 'a.zone'), '$ORIGIN shop.example.\nwww 50 IN A 192.0.2.1\napi 50 IN A 192.0.2.9\n');
    await writeFile(join(dir, 'zones', 'notes.txt'), 'not a zone file at all (\n');
    await writeFile(join(dir, 'empty', 'readme.txt'), 'nothing here\n');
    await writeFile(join(dir, 'extra.zone'), 'www.shop.example. 10 IN AAAA 2001:db8::1\n');
    await writeFile(join(dir, 'broken.zone'), '$ORIGIN shop.example.\n\nwww IN A 192.0.2.999\n');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('a folder: its *.zone files in name order, merged like records of one file', async () => {
    const entries = await readZones([join(dir, 'zones')]);
    assert.deepEqual(listOf(entries), [
      ['www.shop.example', { a: ['192.0.2.1', '192.0.2.3'], aaaa: [], ttl: 20 }],
      ['api.shop.example', { a: ['192.0.2.9'], aaaa: [], ttl: 50 }],
    ]);
  });

  test('a folder and a file together', async () => {
    const entries = await readZones([join(dir, 'zones'), join(dir, 'extra.zone')]);
    assert.deepEqual(entries.get('www.shop.example'), { a: ['192.0.2.1', '192.0.2.3'], aaaa: ['2001:db8::1'], ttl: 10 });
  });

  const fileErrors: { name: string; path: () => string; message: () => string }[] = [
    {
      name: 'missing file',
      path: () => join(dir, 'missing.zone'),
      message: () => `${join(dir, 'missing.zone')}: cannot read zone file: no such file or folder`,
    },
    {
      name: 'folder without *.zone files',
      path: () => join(dir, 'empty'),
      message: () => `${join(dir, 'empty')}: the folder holds no *.zone file`,
    },
    {
      name: 'error inside a file names that file and line',
      path: () => join(dir, 'broken.zone'),
      message: () => `${join(dir, 'broken.zone')}:3: "192.0.2.999" is not an IPv4 address (A record of www.shop.example)`,
    },
  ];
  for (const c of fileErrors) {
    test(c.name, async () => {
      await assert.rejects(readZones([c.path()]), (err: unknown) => {
        assert.ok(isDivertError(err, 'BAD_ZONE'), String(err));
        assert.equal(err.message, c.message());
        return true;
      });
    });
  }
});

describe('parseZone errors', () => {
  const O = '$ORIGIN shop.example.\n';
  const cases: { name: string; text: string; message: string }[] = [
    {
      name: 'bad IPv4 address',
      text: O + '\nwww IN A 300.1.1.1\n',
      message: 'z.zone:3: "300.1.1.1" is not an IPv4 address (A record of www.shop.example)',
    },
    {
      name: 'bad IPv6 address, on the line of the address inside parentheses',
      text: O + 'www IN AAAA (\n  2001:db8::g )\n',
      message: 'z.zone:3: "2001:db8::g" is not an IPv6 address (AAAA record of www.shop.example)',
    },
    {
      name: 'IPv4 address in an AAAA record',
      text: O + 'www IN AAAA 192.0.2.1\n',
      message: 'z.zone:2: "192.0.2.1" is not an IPv6 address (AAAA record of www.shop.example)',
    },
    {
      name: 'unknown type token',
      text: O + 'www IN AXX 192.0.2.1\n',
      message: 'z.zone:2: "AXX" is not a record type (expected a TTL, the class IN or a record type such as A or AAAA)',
    },
    {
      name: 'bad TTL token',
      text: O + 'www 1x IN A 192.0.2.1\n',
      message: 'z.zone:2: "1x" is not a TTL (expected seconds, or counts with units as in 1h30m, 2d or 1w)',
    },
    {
      name: 'bad $TTL unit',
      text: '$TTL 1y\n',
      message: 'z.zone:1: "1y" is not a TTL (expected seconds, or counts with units as in 1h30m, 2d or 1w)',
    },
    {
      name: 'extra word after $TTL',
      text: '$TTL 5 minutes\n',
      message: 'z.zone:1: "minutes" is unexpected after $TTL 5 (expected the end of the line)',
    },
    {
      name: 'TTL above the table limit, reported where the TTL stands',
      text: O + '$TTL 2d\nwww IN A 192.0.2.1\n',
      message:
        'z.zone:2: "172800" is not a whole number of seconds from 0 to 86400 (TTL "2d" of the A record of www.shop.example on line 3)',
    },
    {
      name: '$INCLUDE',
      text: O + '$INCLUDE other.zone\n',
      message: 'z.zone:2: $INCLUDE is not supported (write the records into this file, or into another *.zone file of the same folder)',
    },
    {
      name: 'unknown directive',
      text: '$ORIGN shop.example.\n',
      message: 'z.zone:1: "$ORIGN" is not a directive (expected $ORIGIN or $TTL)',
    },
    {
      name: 'relative $ORIGIN',
      text: '$ORIGIN shop.example\n',
      message: 'z.zone:1: $ORIGIN "shop.example" is not an absolute name (expected a name ending in ".")',
    },
    {
      name: 'relative name without an origin',
      text: 'a.example. IN A 192.0.2.1\nwww IN A 192.0.2.1\n',
      message:
        'z.zone:2: "www" is a relative name and needs an origin (expected a $ORIGIN line before it, or an absolute name ending in ".")',
    },
    {
      name: '@ without an origin',
      text: '@ IN NS ns1.example.\n',
      message: 'z.zone:1: "@" needs an origin (expected a $ORIGIN line before it, or an absolute name ending in ".")',
    },
    {
      name: 'class other than IN',
      text: O + 'www CH A 192.0.2.1\n',
      message: 'z.zone:2: class "CH" is not supported (expected IN: divert answers only Internet names)',
    },
    {
      name: 'unterminated parenthesis, reported where it opened',
      text: O + '@ IN SOA ns1 hostmaster (\n  1 2 3 4 5\nwww IN A 192.0.2.1\n',
      message: 'z.zone:2: "(" is never closed (expected ")" before the end of the file)',
    },
    {
      name: 'closing parenthesis without an opening one',
      text: O + 'www IN A 192.0.2.1 )\n',
      message: 'z.zone:2: ")" without an opening "("',
    },
    {
      name: 'unterminated string',
      text: O + 'www IN TXT "hello\n',
      message: 'z.zone:2: string "hello… is not closed (expected \'"\' before the end of the line)',
    },
    {
      name: 'label over 63 octets in the owner name',
      text: O + `${'x'.repeat(64)} IN A 192.0.2.1\n`,
      message: `z.zone:2: name "${'x'.repeat(64)}.shop.example" has a label of 64 octets, "${'x'.repeat(64)}"; the limit is 63 (owner of the A record)`,
    },
    {
      name: 'bad escape in the owner name',
      text: O + 'bad\\25x IN A 192.0.2.1\n',
      message:
        'z.zone:2: name "bad\\25x.shop.example" has a bad escape "\\25x" (expected \\DDD, three digits from 000 to 255) (owner of the A record)',
    },
    {
      name: 'bad owner of a blank-owner record, reported where the name stands',
      text: O + 'bad\\25x IN TXT "skipped"\n  IN A 192.0.2.1\n',
      message:
        'z.zone:2: name "bad\\25x.shop.example" has a bad escape "\\25x" (expected \\DDD, three digits from 000 to 255) (owner of the A record on line 3)',
    },
    {
      name: 'blank owner on the first record',
      text: '  IN A 192.0.2.1\n',
      message:
        'z.zone:1: the line starts with a blank, but there is no previous record to take the owner name from (expected a name at the start of the line)',
    },
    {
      name: 'record without a type',
      text: O + 'www 30 IN\n',
      message: 'z.zone:2: the record of "www.shop.example" has no type (expected a record type such as A or AAAA)',
    },
    {
      name: 'A record without an address',
      text: O + 'www IN A\n',
      message: 'z.zone:2: the A record of www.shop.example has no address (expected an IPv4 address after "A")',
    },
    {
      name: 'two addresses in one A record',
      text: O + 'www IN A 192.0.2.1 192.0.2.2\n',
      message: 'z.zone:2: "192.0.2.2" is unexpected after the address of the A record of www.shop.example (expected the end of the record)',
    },
  ];

  for (const c of cases) {
    test(c.name, () => {
      assert.throws(
        () => parseZone(c.text, 'z.zone'),
        (err: unknown) => {
          assert.ok(isDivertError(err, 'BAD_ZONE'), String(err));
          assert.equal(err.message, c.message);
          return true;
        },
      );
    });
  }
});

describe('large files of one name: read in one pass, merged like small ones', () => {
  /** The i-th of 65,536 distinct IPv4 addresses. */
  const v4 = (i: number) => `10.0.${i >> 8}.${i & 255}`;

  test('80,000 records of one name, each address twice: every address once, in file order, the lowest TTL', () => {
    const distinct = 40_000;
    const lines = ['$ORIGIN big.example.', '$TTL 300'];
    for (let i = 0; i < distinct; i++) lines.push(`www IN A ${v4(i)}`);
    // the same addresses again, backwards, one of them with the lowest TTL of the file
    for (let i = distinct - 1; i >= 0; i--) lines.push(i === 12_345 ? `www 7 IN A ${v4(i)}` : `www IN A ${v4(i)}`);
    // one IPv6 address in three spellings
    lines.push('www IN AAAA 2001:DB8::1', 'WWW.big.example. IN AAAA 2001:db8:0:0::1', '    IN AAAA 2001:db8::1');
    const entries = parseZone(lines.join('\n') + '\n', 'big.zone');
    assert.deepEqual([...entries.keys()], ['www.big.example']);
    const entry = entries.get('www.big.example')!;
    assert.equal(entry.a.length, distinct);
    assert.deepEqual(
      entry.a,
      Array.from({ length: distinct }, (_, i) => v4(i)),
    );
    assert.deepEqual(entry.aaaa, ['2001:db8::1']);
    assert.equal(entry.ttl, 7);
  });

  test('a file of one name made of a few addresses repeated many times gives those few', () => {
    const few = ['192.0.2.3', '192.0.2.1', '192.0.2.2'];
    const lines = ['$ORIGIN big.example.'];
    for (let i = 0; i < 100_000; i++) lines.push(`www ${60 - (i % 5)} IN ${i % 4 === 3 ? `AAAA 2001:db8::${i % 2}` : `A ${few[i % 3]}`}`);
    const entries = parseZone(lines.join('\n') + '\n', 'repeated.zone');
    assert.deepEqual(entries.get('www.big.example'), { a: few, aaaa: ['2001:db8::1'], ttl: 56 });
  });

  test('a ;divert line weighs addresses of records anywhere in the file, above or below it', () => {
    const first = v4(40_000);
    const lines = ['$ORIGIN big.example.', `www 30 IN A ${first}`];
    lines.push(`;divert www {"weights":{"${v4(5)}":3,"${first}":2,"${v4(25_600)}":0},"pick":2}`);
    for (let i = 0; i < 50_000; i++) lines.push(`www 30 IN A ${v4(i)}`);
    const entry = parseZone(lines.join('\n') + '\n', 'weights.zone').get('www.big.example')!;
    assert.equal(entry.a.length, 50_000);
    assert.equal(entry.a[0], first, 'the first record is first; it is not listed twice');
    assert.deepEqual(entry.weights, { [first]: 2, [v4(5)]: 3, [v4(25_600)]: 0 });
    assert.deepEqual(
      Object.keys(entry.weights),
      [first, v4(5), v4(25_600)],
      'in the order of the addresses, as every weights object reads back',
    );
    assert.equal(entry.pick, 2);
  });

  test('readZones merges one name over several large files: first file first, each address once, the lowest TTL', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'divert-big-zones-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    // three files of 20,000 addresses each, every one overlapping half of the one before
    for (let f = 0; f < 3; f++) {
      const lines = ['$ORIGIN big.example.'];
      for (let i = f * 10_000; i < f * 10_000 + 20_000; i++) lines.push(`www ${100 - f} IN A ${v4(i)}`);
      // weights name addresses of their own file's records
      if (f === 1) lines.push(`;divert www {"weights":{"${v4(15_000)}":4}}`);
      await writeFile(join(dir, `${f}.zone`), lines.join('\n') + '\n');
    }
    const entries = await readZones([dir]);
    assert.deepEqual(entries.get('www.big.example'), {
      a: Array.from({ length: 40_000 }, (_, i) => v4(i)),
      aaaa: [],
      ttl: 98,
      weights: { [v4(15_000)]: 4 },
    });
  });
});
