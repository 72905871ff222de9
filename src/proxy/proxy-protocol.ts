// The PROXY protocol, version 2 (haproxy.org's proxy-protocol.txt, section 2.2): a binary
// header sent to the target before the client's first byte, naming the client's address
// and port and the address and port it connected to, for targets that want to see the
// client instead of the proxy. TCP over IPv4 or IPv6; off unless a service asks for it.

import { isIPv4 } from 'node:net';

const SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** Version 2, command PROXY. */
const VERSION_PROXY = 0x21;
const TCP_OVER_IPV4 = 0x11;
const TCP_OVER_IPV6 = 0x21;

/** An IPv4 address as Node shows it on a dual-stack socket (::ffff:a.b.c.d) in its plain form. */
function plain(address: string): string {
  return address.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address;
}

/** 16 bytes of an IPv6 address; an IPv4 one as its IPv4-mapped form (::ffff:a.b.c.d). */
function ipv6Bytes(address: string): Buffer {
  const out = Buffer.alloc(16);
  if (isIPv4(address)) {
    out[10] = 0xff;
    out[11] = 0xff;
    Buffer.from(address.split('.').map(Number)).copy(out, 12);
    return out;
  }
  const [head, tail] = address.includes('::') ? address.split('::') : [address, ''];
  const groups = (text: string) => (text ? text.split(':') : []);
  const left = groups(head);
  const right = groups(tail);
  const all = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  all.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** The header for a connection from `client` to `local` (the proxy's listen side). */
export function proxyHeader(client: { address: string; port: number }, local: { address: string; port: number }): Buffer {
  const from = plain(client.address);
  const to = plain(local.address);
  const v4 = isIPv4(from) && isIPv4(to);
  const body = Buffer.alloc(v4 ? 12 : 36);
  if (v4) {
    Buffer.from(from.split('.').map(Number)).copy(body, 0);
    Buffer.from(to.split('.').map(Number)).copy(body, 4);
    body.writeUInt16BE(client.port, 8);
    body.writeUInt16BE(local.port, 10);
  } else {
    // one side IPv4 and the other IPv6: both as IPv6 (the IPv4 one mapped)
    ipv6Bytes(from).copy(body, 0);
    ipv6Bytes(to).copy(body, 16);
    body.writeUInt16BE(client.port, 32);
    body.writeUInt16BE(local.port, 34);
  }
  const head = Buffer.alloc(16);
  SIGNATURE.copy(head, 0);
  head[12] = VERSION_PROXY;
  head[13] = v4 ? TCP_OVER_IPV4 : TCP_OVER_IPV6;
  head.writeUInt16BE(body.length, 14);
  return Buffer.concat([head, body]);
}
