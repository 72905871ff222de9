// The PROXY protocol, version 2 (haproxy.org's proxy-protocol.txt, section 2.2): a binary
// header sent to the target before the client's first byte, naming the client's address
// and port and the address and port it connected to, for targets that want to see the
// client instead of the proxy. TCP over IPv4 or IPv6; for UDP (transport DGRAM) the header
// leads every datagram to the target, as dnsdist and HAProxy send it. Off unless a service
// asks for it.

import ipaddr from 'ipaddr.js';

const SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** Version 2, command PROXY. */
const VERSION_PROXY = 0x21;
/** Address family (high nibble: 1 IPv4, 2 IPv6) and transport (low nibble: 1 STREAM, 2 DGRAM). */
const FAMILY_TRANSPORT = { tcp: { v4: 0x11, v6: 0x21 }, udp: { v4: 0x12, v6: 0x22 } } as const;

/** 16 bytes of an IPv6 address; an IPv4 one as its IPv4-mapped form (::ffff:a.b.c.d). */
function ipv6Bytes(address: ipaddr.IPv4 | ipaddr.IPv6): number[] {
  return (address.kind() === 'ipv4' ? (address as ipaddr.IPv4).toIPv4MappedAddress() : address).toByteArray();
}

/** The header for a connection (or a UDP flow) from `client` to `local` (the proxy's listen side). */
export function proxyHeader(
  client: { address: string; port: number },
  local: { address: string; port: number },
  transport: 'tcp' | 'udp' = 'tcp',
): Buffer {
  // ipaddr.process: an IPv4 address as Node shows it on a dual-stack socket (::ffff:a.b.c.d) in its plain form
  const from = ipaddr.process(client.address);
  const to = ipaddr.process(local.address);
  const v4 = from.kind() === 'ipv4' && to.kind() === 'ipv4';
  const body = Buffer.alloc(v4 ? 12 : 36);
  if (v4) {
    body.set(from.toByteArray(), 0);
    body.set(to.toByteArray(), 4);
    body.writeUInt16BE(client.port, 8);
    body.writeUInt16BE(local.port, 10);
  } else {
    // one side IPv4 and the other IPv6: both as IPv6 (the IPv4 one mapped)
    body.set(ipv6Bytes(from), 0);
    body.set(ipv6Bytes(to), 16);
    body.writeUInt16BE(client.port, 32);
    body.writeUInt16BE(local.port, 34);
  }
  const head = Buffer.alloc(16);
  SIGNATURE.copy(head, 0);
  head[12] = VERSION_PROXY;
  head[13] = FAMILY_TRANSPORT[transport][v4 ? 'v4' : 'v6'];
  head.writeUInt16BE(body.length, 14);
  return Buffer.concat([head, body]);
}
