// DNS over TCP as RFC 7766 wants it: many queries per connection, answered as each
// completes (out of order), an idle timeout, and caps on connections (in all and per
// client network, connection-slots.ts), on the time a message may take to arrive, on
// queries in flight per connection and on unsent replies, so a client that stops or
// crawls cannot hold memory. DNS over TLS (dot-listener.ts) is the same framing on a TLS
// stream, and DNS over HTTPS (doh-listener.ts) takes over its accepted connections too:
// every stream listener takes its connections here, under the same caps, and is drained
// and counted the same way.

import { createServer, type Server, type Socket } from 'node:net';
import { lengthPrefix, TcpFramer } from './tcp-framer.js';
import type { Handler, Reply, Transport } from './handler.js';
import type { ListenerReport } from './listener-events.js';
import { Slots, type Connection, type TcpAdmission, type TcpLimits } from './connection-slots.js';

/** What a stream server needs besides its handler; `accepting()` false: messages are dropped unread (a drain has begun). */
export interface TcpServing {
  limits: TcpLimits;
  admission: TcpAdmission;
  report: ListenerReport;
  accepting: () => boolean;
  onError: (err: Error) => void;
  /** Told of every connection admitted, for the drain. */
  onConnection: (socket: Socket) => void;
}

/** Serves one admitted connection: `socket` is the accepted one; `slots.touch(connection)` marks it active. */
export type ConnectionService = (socket: Socket, connection: Connection, slots: Slots) => void;

/** A listener whose connections are admitted (connection-slots.ts) and then handed to `service`. */
export function createStreamServer(serving: TcpServing, service: ConnectionService): Server {
  const slots = new Slots(serving.limits, serving.report);
  const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    socket.on('error', () => socket.destroy());
    const connection = slots.take(socket, serving.admission);
    if (!connection) return;
    serving.onConnection(socket);
    service(socket, connection, slots);
  });
  server.on('error', serving.onError);
  return server;
}

/** Plain DNS over TCP. */
export function createTcpServer(handler: Handler, serving: TcpServing): Server {
  return createStreamServer(serving, (socket, connection, slots) => serveFramed(socket, 'tcp', connection, slots, handler, serving));
}

/** `exclusive: false` shares the listening socket with the other cluster workers. */
export function listenTcp(server: Server, host: string, port: number, exclusive = true): Promise<number> {
  return new Promise((resolve, reject) => {
    const fail = (err: Error) => reject(err);
    server.once('error', fail);
    server.listen({ host, port, exclusive, ipv6Only: host.includes(':') }, () => {
      server.removeListener('error', fail);
      resolve((server.address() as { port: number }).port);
    });
  });
}

/**
 * Reads length-prefixed messages from `stream` (the accepted socket, or the TLS socket
 * over it) and writes each reply as it comes. The connection's slot counts its queries
 * in flight, so that eviction spares it while it has any.
 */
export function serveFramed(
  stream: Socket,
  transport: Transport,
  connection: Connection,
  slots: Slots,
  handler: Handler,
  { limits, report, accepting }: TcpServing,
): void {
  const framer = new TcpFramer();
  const client = { transport, address: stream.remoteAddress ?? connection.socket.remoteAddress ?? '' };
  let ended = false;

  stream.setTimeout(limits.idleTimeoutMs);
  stream.on('timeout', () => {
    // idle means: nothing asked and nothing owed; a half-sent message does not count
    if (connection.inFlight === 0) stream.destroy();
  });
  stream.on('end', () => {
    ended = true;
    if (connection.inFlight === 0) stream.end();
  });

  const settle = () => {
    connection.inFlight--;
    if (stream.destroyed) return;
    if (ended && connection.inFlight === 0) stream.end();
    else if (stream.isPaused() && connection.inFlight < limits.maxInFlight) stream.resume();
  };
  const reply = (bytes: Reply) => {
    if (bytes && !stream.destroyed) {
      slots.touch(connection);
      stream.cork();
      stream.write(lengthPrefix(bytes));
      stream.write(bytes);
      stream.uncork();
      if (stream.writableLength > limits.maxPendingWriteBytes) stream.destroy();
    }
    settle();
  };
  const failed = (err: unknown) => {
    report.fault('handler_error', err);
    settle();
  };

  // A message must arrive whole within the idle timeout of its first byte: a client that
  // trickles a byte now and then (slowloris) keeps the socket active but is cut off.
  let partialSince = 0;
  stream.on('data', (chunk: Buffer) => {
    const now = Date.now();
    if (partialSince !== 0 && now - partialSince > limits.idleTimeoutMs) {
      stream.destroy();
      return;
    }
    const messages = framer.push(chunk);
    partialSince = framer.pendingBytes === 0 ? 0 : messages.length > 0 || partialSince === 0 ? now : partialSince;
    if (messages.length > 0) slots.touch(connection);
    for (const msg of messages) {
      if (!accepting()) break;
      connection.inFlight++;
      let result: Reply | Promise<Reply>;
      try {
        result = handler(msg, client);
      } catch (err) {
        failed(err);
        continue;
      }
      if (result instanceof Promise) result.then(reply, failed);
      else reply(result);
    }
    if (connection.inFlight >= limits.maxInFlight) stream.pause();
  });
}
