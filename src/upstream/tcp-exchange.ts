// One query to one upstream over TCP (RFC 7766), on a connection of its own that is
// closed after the reply. Used for queries that reached divert over TCP, so a reply too
// large for UDP reaches the client whole.

import { connect } from 'node:net';
import { isReplyTo } from '../wire/message.js';
import { lengthPrefix, TcpFramer } from '../transport/tcp-framer.js';
import type { Exchange } from './udp-exchange.js';
import type { Upstream } from './upstream-pool.js';

export function tcpExchange(
  query: Buffer,
  questionEnd: number,
  upstream: Upstream,
  onRejected: () => void,
): Exchange {
  const socket = connect({ host: upstream.host, port: upstream.port, noDelay: true });
  const framer = new TcpFramer();
  let done = false;
  let settle!: (reply: Buffer | null) => void;
  const reply = new Promise<Buffer | null>((resolve) => (settle = resolve));
  const finish = (value: Buffer | null) => {
    if (done) return;
    done = true;
    socket.destroy();
    settle(value);
  };
  socket.on('error', () => finish(null));
  socket.on('close', () => finish(null));
  socket.on('data', (chunk) => {
    for (const msg of framer.push(chunk)) {
      if (!isReplyTo(msg, query, questionEnd)) {
        onRejected();
        continue;
      }
      // the framer hands out views into its buffer; the reply outlives it
      finish(Buffer.from(msg));
      return;
    }
  });
  socket.write(Buffer.concat([lengthPrefix(query), query]));
  return { reply, cancel: () => finish(null) };
}
