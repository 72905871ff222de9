// A fast stand-in upstream for benchmarks, in its own process: answers every query with
// one A record by patching the query's bytes (no parsing), over UDP and TCP. It is not
// what is measured; it only has to be faster than divert.

import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import { lengthPrefix, TcpFramer } from '../src/transport/tcp-framer.js';

const port = Number(process.argv[2] ?? 0);
const answer = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 203, 0, 113, 1]);

function reply(query: Buffer): Buffer {
  const out = Buffer.concat([query, answer]);
  out[2] = 0x81 | (query[2] & 0x01); // QR, RD copied
  out[3] = 0x80; // RA, NOERROR
  out.writeUInt16BE(1, 6);
  return out;
}

const udp = createSocket('udp4');
udp.on('message', (msg, rinfo) => {
  if (msg.length >= 12) udp.send(reply(msg), rinfo.port, rinfo.address);
});
udp.bind(port, '127.0.0.1', () => {
  const bound = udp.address().port;
  const tcp = createServer((socket) => {
    const framer = new TcpFramer();
    socket.on('error', () => {});
    socket.on('data', (chunk) => {
      for (const query of framer.push(chunk)) {
        const r = reply(query);
        socket.write(Buffer.concat([lengthPrefix(r), r]));
      }
    });
  });
  tcp.listen(bound, '127.0.0.1', () => process.stdout.write(`${bound}\n`));
});
