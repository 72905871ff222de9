// Moves datagrams between clients and the query path; nothing else.

import { createSocket, type Socket } from 'node:dgram';
import type { Client, Result } from '../pipeline/pipeline.js';

export type Handler = (msg: Buffer, client: Client) => Result | Promise<Result>;

/** A larger receive buffer rides out bursts that would otherwise be dropped by the kernel. */
const RECV_BUFFER_BYTES = 4 * 1024 * 1024;

/** `exclusive: false` shares the socket with the other cluster workers (the primary holds it). */
export function bindUdp(host: string, port: number, exclusive = true): Promise<Socket> {
  const socket = createSocket({ type: host.includes(':') ? 'udp6' : 'udp4', ipv6Only: host.includes(':') });
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ address: host, port, exclusive }, () => {
      socket.removeListener('error', reject);
      try {
        socket.setRecvBufferSize(RECV_BUFFER_BYTES);
      } catch {
        // the system limit is lower; the kernel default still works
      }
      resolve(socket);
    });
  });
}

export function serveUdp(socket: Socket, handler: Handler, onError: (err: Error) => void): void {
  socket.on('error', onError);
  socket.on('message', (msg, rinfo) => {
    const send = (result: Result) => {
      if (result.reply) socket.send(result.reply, rinfo.port, rinfo.address, (err) => err && onError(err));
    };
    const result = handler(msg, { transport: 'udp', address: rinfo.address });
    if (result instanceof Promise) void result.then(send);
    else send(result);
  });
}
