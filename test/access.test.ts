// Who may query: the default list admits local and private networks only, so divert is
// never an open resolver; --allow replaces it.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { isDivertError } from '../src/errors.js';
import { AccessList, parseCidr } from '../src/net/cidr.js';
import { DEFAULT_ALLOW } from '../src/config/options.js';

describe('DEFAULT_ALLOW', () => {
  const acl = new AccessList(DEFAULT_ALLOW);
  const cases: { address: string; allowed: boolean; why: string }[] = [
    { address: '127.0.0.1', allowed: true, why: 'IPv4 loopback' },
    { address: '127.255.255.254', allowed: true, why: 'anywhere in 127/8' },
    { address: '::1', allowed: true, why: 'IPv6 loopback' },
    { address: '10.1.2.3', allowed: true, why: 'RFC 1918 10/8' },
    { address: '172.16.0.1', allowed: true, why: 'start of RFC 1918 172.16/12' },
    { address: '172.20.0.1', allowed: true, why: 'RFC 1918 172.16/12' },
    { address: '172.31.255.255', allowed: true, why: 'end of RFC 1918 172.16/12' },
    { address: '192.168.1.1', allowed: true, why: 'RFC 1918 192.168/16' },
    { address: '100.64.0.1', allowed: true, why: 'RFC 6598 shared space' },
    { address: '100.127.255.254', allowed: true, why: 'end of RFC 6598 shared space' },
    { address: 'fd00::1', allowed: true, why: 'unique local' },
    { address: 'fc00::1', allowed: true, why: 'unique local, lower half of fc00::/7' },
    { address: 'fe80::1', allowed: true, why: 'IPv6 link-local' },
    { address: 'fe80::1%eth0', allowed: true, why: 'IPv6 link-local with a zone, as sockets report it' },
    { address: '169.254.1.1', allowed: true, why: 'IPv4 link-local' },
    { address: '::ffff:192.168.1.1', allowed: true, why: 'IPv4-mapped private address from a dual-stack socket' },
    { address: '::ffff:127.0.0.1', allowed: true, why: 'IPv4-mapped loopback' },
    { address: '8.8.8.8', allowed: false, why: 'public IPv4' },
    { address: '172.32.0.1', allowed: false, why: 'just past 172.16/12' },
    { address: '172.15.255.255', allowed: false, why: 'just before 172.16/12' },
    { address: '100.128.0.1', allowed: false, why: 'just past 100.64/10' },
    { address: '192.169.0.1', allowed: false, why: 'just past 192.168/16' },
    { address: '2001:db8::1', allowed: false, why: 'global IPv6' },
    { address: 'fec0::1', allowed: false, why: 'site-local is not link-local' },
    { address: '::ffff:8.8.8.8', allowed: false, why: 'IPv4-mapped public address' },
    { address: '0.0.0.0', allowed: false, why: 'unspecified IPv4' },
    { address: '::', allowed: false, why: 'unspecified IPv6' },
    { address: 'garbage', allowed: false, why: 'not an address' },
    { address: '', allowed: false, why: 'empty' },
    { address: '1.2.3.4.5', allowed: false, why: 'five octets' },
    { address: '10.0.0.1/8', allowed: false, why: 'a network is not a client address' },
  ];
  for (const c of cases) {
    test(`${JSON.stringify(c.address)} ${c.allowed ? 'admitted' : 'refused'} (${c.why})`, () => {
      assert.equal(acl.allows(c.address), c.allowed);
    });
  }

  test('the verdict is the same when asked again (cached)', () => {
    const list = new AccessList(DEFAULT_ALLOW);
    for (let i = 0; i < 3; i++) {
      assert.equal(list.allows('192.168.1.1'), true);
      assert.equal(list.allows('8.8.8.8'), false);
    }
  });
});

describe('a custom list', () => {
  const cases: { name: string; cidrs: string[]; allowed: string[]; refused: string[] }[] = [
    {
      name: 'one IPv4 network replaces the defaults',
      cidrs: ['203.0.113.0/24'],
      allowed: ['203.0.113.1', '203.0.113.254', '::ffff:203.0.113.9'],
      refused: ['127.0.0.1', '::1', '192.168.1.1', '203.0.114.1'],
    },
    {
      name: 'IPv4 and IPv6 networks',
      cidrs: ['198.51.100.0/25', '2001:db8:1::/48'],
      allowed: ['198.51.100.127', '2001:db8:1::1', '2001:db8:1:ffff::1'],
      refused: ['198.51.100.128', '2001:db8:2::1', '10.0.0.1'],
    },
    {
      name: 'a bare IPv4 address is a network of one',
      cidrs: ['192.0.2.7'],
      allowed: ['192.0.2.7', '::ffff:192.0.2.7'],
      refused: ['192.0.2.6', '192.0.2.8'],
    },
    {
      name: 'a bare IPv6 address is a network of one',
      cidrs: ['2001:db8::7'],
      allowed: ['2001:db8::7', '2001:0db8:0000::0007'],
      refused: ['2001:db8::6', '2001:db8::8'],
    },
    {
      name: 'host bits set in the network are ignored',
      cidrs: ['10.9.8.7/8'],
      allowed: ['10.0.0.1', '10.255.255.255'],
      refused: ['11.0.0.1'],
    },
    {
      name: '0.0.0.0/0 admits every IPv4 client, no IPv6 one',
      cidrs: ['0.0.0.0/0'],
      allowed: ['8.8.8.8', '::ffff:8.8.8.8'],
      refused: ['2001:db8::1'],
    },
    {
      name: '::/0 admits every IPv6 client',
      cidrs: ['::/0'],
      allowed: ['2001:db8::1', '::1'],
      refused: ['8.8.8.8'],
    },
    {
      name: 'an empty list admits nobody',
      cidrs: [],
      allowed: [],
      refused: ['127.0.0.1', '::1'],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const acl = new AccessList(c.cidrs);
      for (const a of c.allowed) assert.equal(acl.allows(a), true, `${a} should be admitted`);
      for (const a of c.refused) assert.equal(acl.allows(a), false, `${a} should be refused`);
    });
  }

  // Clients on a dual-stack socket show up as ::ffff:a.b.c.d and are matched as IPv4, so a
  // network written in the same IPv4-mapped form must match them too (it is accepted as valid).
  test('an IPv4-mapped network admits the clients it names', () => {
    const acl = new AccessList(['::ffff:10.0.0.0/104']);
    assert.equal(acl.allows('::ffff:10.0.0.1'), true, '::ffff:10.0.0.1 should be admitted by ::ffff:10.0.0.0/104');
    assert.equal(acl.allows('::ffff:11.0.0.1'), false);
  });
});

describe('parseCidr', () => {
  const good: { text: string; address: string; bits: number }[] = [
    { text: '192.168.0.0/16', address: '192.168.0.0', bits: 16 },
    { text: 'fd00::/8', address: 'fd00::', bits: 8 },
    { text: '0.0.0.0/0', address: '0.0.0.0', bits: 0 },
    { text: '192.0.2.7', address: '192.0.2.7', bits: 32 },
    { text: '2001:db8::7', address: '2001:db8::7', bits: 128 },
  ];
  for (const c of good) {
    test(`${c.text} → ${c.address}/${c.bits}`, () => {
      const [address, bits] = parseCidr(c.text);
      assert.equal(address.toString(), c.address);
      assert.equal(bits, c.bits);
    });
  }

  const bad = [
    '10.0.0.0/33',
    '2001:db8::/129',
    'office',
    '',
    '192.168.0.0/',
    '192.168.0.0/16/1',
    '/8',
    '10.0.0.0/-1',
    ' 10.0.0.0/8',
    '999.0.0.0/8',
  ];
  for (const text of bad) {
    test(`${JSON.stringify(text)} is refused with a message that quotes it`, () => {
      assert.throws(
        () => parseCidr(text),
        (err) => {
          assert.ok(isDivertError(err, 'BAD_CONFIG'), `expected BAD_CONFIG, got ${String(err)}`);
          assert.equal(err.message, `"${text}" is not a network in CIDR form (e.g. 192.168.0.0/16 or fd00::/8)`);
          return true;
        },
      );
    });
  }

  test('a list with one bad network cannot be built', () => {
    assert.throws(
      () => new AccessList(['10.0.0.0/8', 'nope']),
      (err) => isDivertError(err, 'BAD_CONFIG') && err.message.includes('"nope"'),
    );
  });
});
