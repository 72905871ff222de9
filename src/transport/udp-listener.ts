// Moves datagrams between clients and a handler; nothing else. A datagram that cannot be
// answered (from port 0), a handler that throws or rejects, and a reply the OS will not
// send each cost that one datagram, counted; never the process.

import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import type { Handler, Reply } from './handler.js';
import type { ListenerReport } from './listener-events.js';

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

/** `accepting()` false: datagrams are dropped unread (a drain has begun). */
export function serveUdp(
  socket: Socket,
  handler: Handler,
  report: ListenerReport,
  onError: (err: Error) => void,
  accepting: () => boolean,
): void {
  socket.on('error', onError);
  const sendFailed = (err: Error | null) => {
    if (err) report.fault('send_error', err);
  };
  const send = (reply: Reply, rinfo: RemoteInfo) => {
    if (!reply) return;
    try {
      // an address the OS will not send to fails here at once or in the callback
      socket.send(reply, rinfo.port, rinfo.address, sendFailed);
    } catch (err) {
      report.fault('send_error', err);
    }
  };
  const failed = (err: unknown) => report.fault('handler_error', err);
  socket.on('message', (msg, rinfo) => {
    if (!accepting()) return;
    // nothing can go back to port 0 (sending there throws): answering it, or forwarding
    // it upstream, would only spend work on a datagram that is spoofed or broken
    if (rinfo.port === 0) {
      report.counts.unreplyable_source++;
      return;
    }
    let reply: Reply | Promise<Reply>;
    try {
      reply = handler(msg, { transport: 'udp', address: rinfo.address });
    } catch (err) {
      failed(err);
      return;
    }
    if (reply instanceof Promise) reply.then((r) => send(r, rinfo), failed);
    else send(reply, rinfo);
  });
}
