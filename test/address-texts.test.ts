// The batched UDP listener's cache of client address texts (src/transport/address-texts.ts):
// the text for an address is the one the addon wrote for that address, whatever shares its
// slot, IPv4 or IPv6.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AddressTexts } from '../src/transport/address-texts.js';

const NAME = 32;

/** A sockaddr_in (16 bytes) or sockaddr_in6 (28 bytes) for `address`, as recvmmsg fills it, at `names[at]`. */
function sockaddr(names: Buffer, at: number, address: string, port: number): number {
  names.fill(0, at, at + NAME);
  names.writeUInt16BE(port, at + 2);
  if (!address.includes(':')) {
    names.writeUInt16LE(2, at);
    address.split('.').forEach((octet, i) => names.writeUInt8(Number(octet), at + 4 + i));
    return 16;
  }
  names.writeUInt16LE(10, at);
  const [head, tail = ''] = address.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = [...left, ...new Array<string>(8 - left.length - right.length).fill('0'), ...right];
  groups.forEach((g, i) => names.writeUInt16BE(parseInt(g, 16), at + 8 + i * 2));
  return 28;
}

/** What the listener asks for: the address at slot 0 of a one-datagram batch. */
function textOf(cache: AddressTexts, address: string, port = 5300): string {
  const names = Buffer.alloc(NAME);
  const length = sockaddr(names, 0, address, port);
  const text = Buffer.from(address, 'latin1');
  return cache.textOf(new Int32Array(names.buffer, names.byteOffset, NAME / 4), 0, length, text, 0, text.length);
}

test('each address gets its own text, from any port, and the text is made once', () => {
  const cache = new AddressTexts();
  const addresses = ['127.0.0.1', '127.0.0.2', '10.1.2.3', '::1', '2001:db8::1', '2001:db8::2', '::ffff:127.0.0.1'];
  for (let round = 0; round < 3; round++) {
    for (const [i, a] of addresses.entries()) assert.equal(textOf(cache, a, 1024 + round * 10 + i), a);
  }
  // the second time, the cached string itself (the text buffer is not read)
  const names = Buffer.alloc(NAME);
  const length = sockaddr(names, 0, '10.1.2.3', 9);
  const garbage = Buffer.from('not an address');
  assert.equal(cache.textOf(new Int32Array(names.buffer, 0, NAME / 4), 0, length, garbage, 0, garbage.length), '10.1.2.3');
});

/** Asks for `address` with `text` as what the addon wrote: the cache answers with its own text when it has one. */
function ask(cache: AddressTexts, address: string, text: string): string {
  const names = Buffer.alloc(NAME);
  const length = sockaddr(names, 0, address, 53);
  return cache.textOf(new Int32Array(names.buffer, names.byteOffset, NAME / 4), 0, length, Buffer.from(text), 0, text.length);
}

test('addresses that share a slot each get their own text, however they alternate', () => {
  // addresses that take 10.0.0.0's slot: after one of them, 10.0.0.0's text is made anew
  const probe = new AddressTexts();
  const first = '10.0.0.0';
  ask(probe, first, first);
  const colliding: string[] = [];
  for (let n = 1; n < 1 << 20 && colliding.length < 2; n++) {
    const a = `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
    ask(probe, a, a);
    if (ask(probe, first, 'made anew') === 'made anew') {
      colliding.push(a);
      ask(probe, first, first);
    }
  }
  assert.equal(colliding.length, 2, `two addresses sharing 10.0.0.0's slot: ${colliding.join(', ')}`);
  const cache = new AddressTexts();
  for (let i = 0; i < 20; i++) {
    for (const a of [first, ...colliding]) assert.equal(textOf(cache, a), a);
  }
  // an IPv6 address whose first word is an IPv4 address's is another address
  assert.equal(textOf(cache, 'a00::'), 'a00::');
  assert.equal(textOf(cache, first), first);
  assert.equal(ask(cache, 'a00::', 'other'), 'a00::');
});
