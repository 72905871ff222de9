// The DoH server's HPACK decoder (src/transport/hpack-decoder.ts) against RFC 7541's own
// examples (Appendix C: plain and Huffman-coded literals, the dynamic table carried from one
// block to the next, entries evicted from a 256-octet table), and blocks that break the
// format, each of which must be refused as a whole rather than read as something else.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HpackDecoder, huffmanDecode } from '../src/transport/hpack-decoder.js';
import { HUFFMAN_LENGTHS } from '../src/transport/hpack-tables.js';

/** A Huffman coder of the canonical code the lengths give (the RFC's own codes are checked by the examples below). */
function huffmanEncode(octets: Buffer): Buffer {
  const order = HUFFMAN_LENGTHS.map((length, symbol) => ({ length, symbol })).sort((a, b) => a.length - b.length || a.symbol - b.symbol);
  const codes = new Map<number, string>();
  let code = 0n;
  order.forEach(({ length, symbol }, i) => {
    if (i > 0) code = (code + 1n) << BigInt(length - order[i - 1].length);
    codes.set(symbol, code.toString(2).padStart(length, '0'));
  });
  let bits = [...octets].map((o) => codes.get(o)).join('');
  bits += '1'.repeat((8 - (bits.length % 8)) % 8);
  return Buffer.from(bits.match(/.{8}/g)!.map((b) => parseInt(b, 2)));
}

function decodeAll(decoder: HpackDecoder, hex: string, maxListSize = 16_384): { result: string; headers: [string, string][] } {
  const headers: [string, string][] = [];
  const result = decoder.decode(Buffer.from(hex.replace(/\s/g, ''), 'hex'), maxListSize, (name, value) => headers.push([name, value]));
  return { result, headers };
}

const REQUESTS: [string, string][][] = [
  [
    [':method', 'GET'],
    [':scheme', 'http'],
    [':path', '/'],
    [':authority', 'www.example.com'],
  ],
  [
    [':method', 'GET'],
    [':scheme', 'http'],
    [':path', '/'],
    [':authority', 'www.example.com'],
    ['cache-control', 'no-cache'],
  ],
  [
    [':method', 'GET'],
    [':scheme', 'https'],
    [':path', '/index.html'],
    [':authority', 'www.example.com'],
    ['custom-key', 'custom-value'],
  ],
];

test('RFC 7541 C.3: three requests with plain literals, the later ones naming entries the earlier ones added', () => {
  const decoder = new HpackDecoder();
  const blocks = [
    '828684410f7777772e6578616d706c652e636f6d',
    '828684be58086e6f2d6361636865',
    '828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565',
  ];
  blocks.forEach((hex, i) => assert.deepEqual(decodeAll(decoder, hex), { result: 'ok', headers: REQUESTS[i] }, `C.3.${i + 1}`));
});

test('RFC 7541 C.4: the same requests Huffman-coded', () => {
  const decoder = new HpackDecoder();
  const blocks = ['828684418cf1e3c2e5f23a6ba0ab90f4ff', '828684be5886a8eb10649cbf', '828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf'];
  blocks.forEach((hex, i) => assert.deepEqual(decodeAll(decoder, hex), { result: 'ok', headers: REQUESTS[i] }, `C.4.${i + 1}`));
});

test('RFC 7541 C.6: Huffman-coded blocks into a 256-octet table, the oldest entries evicted as new ones come', () => {
  const decoder = new HpackDecoder(256);
  const blocks = [
    '488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3',
    '4883640effc1c0bf',
    '88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007',
  ];
  const common = (status: string, date: string): [string, string][] => [
    [':status', status],
    ['cache-control', 'private'],
    ['date', `Mon, 21 Oct 2013 20:13:${date} GMT`],
    ['location', 'https://www.example.com'],
  ];
  assert.deepEqual(decodeAll(decoder, blocks[0]).headers, common('302', '21'));
  // 307's entry pushed 302's out; c1 c0 bf are then cache-control, date, location as the table holds them
  assert.deepEqual(decodeAll(decoder, blocks[1]).headers, common('307', '21'));
  assert.deepEqual(decodeAll(decoder, blocks[2]), {
    result: 'ok',
    headers: [
      ...common('200', '22'),
      ['content-encoding', 'gzip'],
      ['set-cookie', 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1'],
    ],
  });
});

test("Huffman: the code lengths make a complete prefix code (Kraft's sum is exactly 1), as RFC 7541's does", () => {
  // a length wrong by one anywhere breaks the sum; the examples below check actual codes
  const sum = HUFFMAN_LENGTHS.reduce((total, length) => total + 2 ** (30 - length), 0);
  assert.equal(HUFFMAN_LENGTHS.length, 257);
  assert.equal(sum, 2 ** 30);
});

test('Huffman: every octet value comes back as it went in, and bad padding or EOS is refused', () => {
  const every = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  const coded = huffmanEncode(every);
  assert.equal(huffmanDecode(coded, 0, coded.length), every.toString('latin1'));
  // "www.example.com" (C.4.1)
  assert.equal(huffmanDecode(Buffer.from('f1e3c2e5f23a6ba0ab90f4ff', 'hex'), 0, 12), 'www.example.com');
  assert.equal(huffmanDecode(Buffer.alloc(0), 0, 0), '');
  // "a" is 00011, then three bits of padding: ones (the start of EOS), not zeros
  assert.equal(huffmanDecode(Buffer.from('1f', 'hex'), 0, 1), 'a');
  assert.equal(huffmanDecode(Buffer.from('18', 'hex'), 0, 1), null);
  // a whole octet of padding more (more than 7 bits)
  assert.equal(huffmanDecode(Buffer.from('1fff', 'hex'), 0, 2), null);
  assert.equal(huffmanDecode(Buffer.from('f1e3c2e5f23a6ba0ab90f4ffff', 'hex'), 0, 13), null);
  // EOS itself (30 ones) inside the string
  assert.equal(huffmanDecode(Buffer.from('fffffffc', 'hex'), 0, 4), null);
});

test('blocks that break the format are refused whole', () => {
  const cases: [string, string][] = [
    ['index 0', '80'],
    ['an index past both tables', 'ff00'],
    ['a literal cut short', '410f7777'],
    ['a name literal with no value', '4003616263'],
    ['an integer running off the block', '7f'],
    ['an integer past 2^28', 'ffffffffff0f'],
    ['a table size update after a field', '8220'],
    ['a table size update past the size announced', '3fe21f'],
    ['a Huffman literal with zero padding', '4181180161'],
  ];
  for (const [what, hex] of cases) assert.equal(decodeAll(new HpackDecoder(), hex).result, 'malformed', what);
  // a size update at the start, within the size announced, is fine: to 0, then a field
  assert.deepEqual(decodeAll(new HpackDecoder(), '2082'), { result: 'ok', headers: [[':method', 'GET']] });
});

test('a header list over the limit is reported as such, and the dynamic table stays in step for the next block', () => {
  const decoder = new HpackDecoder();
  // custom-key: custom-value added to the table (C.3.3's last field), 54 octets by RFC 9113's count
  const added = decodeAll(decoder, '400a637573746f6d2d6b65790c637573746f6d2d76616c7565', 53);
  assert.equal(added.result, 'too-large');
  assert.deepEqual(added.headers, []);
  // the entry is there all the same: index 62 names it
  assert.deepEqual(decodeAll(decoder, 'be', 54), { result: 'ok', headers: [['custom-key', 'custom-value']] });
  // many references to it: each counts
  assert.equal(decodeAll(decoder, 'be'.repeat(10), 54 * 10 - 1).result, 'too-large');
});
