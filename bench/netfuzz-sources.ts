// Network fuzzer, part: datagrams from the sources a normal socket cannot use — port 0,
// the server's own ports (a reply would come back to the server), the upstream's, low
// and high ports — and from many addresses, allowed and not (127.0.0.0/16 is allowed in
// the target, the rest of 127/8 is not), over IPv4 and IPv6. Sent with raw sockets
// (test/helpers/raw-udp.ts: root only), at every UDP listener: DNS and DNS UPDATE.

import type { Endpoint, RawUdp } from '../test/helpers/raw-udp.js';
import type { Rng } from './netfuzz-rng.js';

export interface SourceTargets {
  /** The UDP listeners to hit, IPv4 and IPv6. */
  listeners: Endpoint[];
  /** Ports worth pretending to come from: the target's own, its upstream's. */
  ports: number[];
}

const EDGE_PORTS = [0, 0, 0, 1, 7, 53, 65535];

function sourceAddress(rng: Rng, family: 4 | 6): string {
  if (family === 6) return '::1';
  switch (rng.int(6)) {
    case 0:
      return '127.0.0.1';
    case 1:
      return `127.0.${rng.int(256)}.${1 + rng.int(254)}`; // allowed
    case 2:
      return `127.${1 + rng.int(254)}.${rng.int(256)}.${1 + rng.int(254)}`; // outside --allow
    case 3:
      return '127.255.255.255';
    case 4:
      return `127.${rng.int(256)}.${rng.int(256)}.0`;
    default:
      return `127.0.0.${1 + rng.int(254)}`;
  }
}

/** Sends `count` datagrams made by `make` from edge sources; returns how many were sent. */
export function sendFromEdgeSources(raw: RawUdp, rng: Rng, targets: SourceTargets, count: number, make: (to: Endpoint) => Buffer): number {
  let sent = 0;
  for (let i = 0; i < count; i++) {
    const to = rng.pick(targets.listeners);
    const family = to.address.includes(':') ? 6 : 4;
    const port = rng.chance(0.6) ? rng.pick(EDGE_PORTS) : rng.chance(0.5) ? rng.pick(targets.ports) : rng.int(65536);
    const payload = make(to);
    // a raw UDP datagram carries at most 65,507 bytes of payload; the fuzz messages are far below
    if (payload.length === 0 || payload.length > 4000) continue;
    raw.send({ address: sourceAddress(rng, family), port }, to, payload);
    sent++;
  }
  return sent;
}
