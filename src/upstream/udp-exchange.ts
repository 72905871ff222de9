// One query to one upstream over UDP, from a socket of its own: a fresh source port the
// kernel picks at random for every query (RFC 5452 9.2), so a blind spoofer has to guess
// port and ID. Replies from elsewhere, or with the wrong ID or question, are dropped.

import { createSocket } from 'node:dgram';
import { isReplyTo } from '../wire/message.js';
import type { Upstream } from './upstream-pool.js';

export interface Exchange {
  /** The upstream's reply, or null when it failed or the exchange was cancelled. */
  readonly reply: Promise<Buffer | null>;
  cancel(): void;
}

/** Node reports a link-local peer with its zone (fe80::1%eth0); the zone may be spelt
 * differently in the configuration (%2), so only the address is compared then. */
function fromUpstream(address: string, upstream: Upstream): boolean {
  return address === upstream.host || (upstream.host.includes('%') && address.split('%')[0] === upstream.host.split('%')[0]);
}

export function udpExchange(
  query: Buffer,
  questionEnd: number,
  upstream: Upstream,
  onRejected: () => void,
): Exchange {
  const socket = createSocket(upstream.family === 6 ? 'udp6' : 'udp4');
  let settle!: (reply: Buffer | null) => void;
  const reply = new Promise<Buffer | null>((resolve) => {
    settle = (value) => {
      socket.removeAllListeners('message');
      socket.close();
      resolve(value);
    };
  });
  let done = false;
  const finish = (value: Buffer | null) => {
    if (done) return;
    done = true;
    settle(value);
  };
  socket.on('error', () => finish(null));
  socket.on('message', (msg, rinfo) => {
    if (!fromUpstream(rinfo.address, upstream) || rinfo.port !== upstream.port || !isReplyTo(msg, query, questionEnd)) {
      onRejected();
      return;
    }
    finish(msg);
  });
  socket.send(query, upstream.port, upstream.host, (err) => {
    if (err) finish(null);
  });
  return { reply, cancel: () => finish(null) };
}
