// Moves datagrams between clients and a handler; nothing else. A datagram that cannot be
// answered (from port 0), a handler that throws or rejects, and a reply the OS will not
// send each cost that one datagram, counted; never the process.

import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import type { Client, Result } from '../pipeline/pipeline.js';
import type { ListenerReport } from './listener-events.js';

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

export function serveUdp(socket: Socket, handler: Handler, report: ListenerReport, onError: (err: Error) => void): void {
  socket.on('error', onError);
  const sendFailed = (err: Error | null) => {
    if (err) report.fault('send_error', err);
  };
  const send = (result: Result, rinfo: RemoteInfo) => {
    if (!result.reply) return;
    try {
      // an address the OS will not send to fails here at once or in the callback
      socket.send(result.reply, rinfo.port, rinfo.address, sendFailed);
    } catch (err) {
      report.fault('send_error', err);
    }
  };
  const failed = (err: unknown) => report.fault('handler_error', err);
  socket.on('message', (msg, rinfo) => {
    // nothing can go back to port 0 (sending there throws): answering it, or forwarding
    // it upstream, would only spend work on a datagram that is spoofed or broken
    if (rinfo.port === 0) {
      report.counts.unreplyable_source++;
      return;
    }
    let result: Result | Promise<Result>;
    try {
      result = handler(msg, { transport: 'udp', address: rinfo.address });
    } catch (err) {
      failed(err);
      return;
    }
    if (result instanceof Promise) result.then((r) => send(r, rinfo), failed);
    else send(result, rinfo);
  });
}
