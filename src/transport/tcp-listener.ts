// DNS over TCP as RFC 7766 wants it: many queries per connection, answered as each
// completes (out of order), an idle timeout, and caps on connections (in all and per
// client address), on the time a message may take to arrive, on queries in flight per
// connection and on unsent replies, so a client that stops or crawls cannot hold memory.

import { createServer, type Server, type Socket } from 'node:net';
import { lengthPrefix, TcpFramer } from './tcp-framer.js';
import type { Handler } from './udp-listener.js';
import type { Result } from '../pipeline/pipeline.js';

export interface TcpLimits {
  idleTimeoutMs: number;
  maxConnections: number;
  /** Queries in flight on one connection before reading from it pauses. */
  maxInFlight: number;
  /** Unsent reply bytes after which a connection is closed. */
  maxPendingWriteBytes: number;
  /** Connections open at once from one client address; more are closed at once. */
  maxPerClient: number;
}

export const DEFAULT_TCP_LIMITS: TcpLimits = {
  idleTimeoutMs: 10_000,
  maxConnections: 1_000,
  maxInFlight: 100,
  maxPendingWriteBytes: 1024 * 1024,
  maxPerClient: 64,
};

export function createTcpServer(handler: Handler, limits: TcpLimits, onError: (err: Error) => void): Server {
  const perClient = new Map<string, number>();
  const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    // one client may not take every connection slot: the rest of its connections are closed at once
    const address = socket.remoteAddress ?? '';
    const open = perClient.get(address) ?? 0;
    if (open >= limits.maxPerClient) {
      socket.destroy();
      return;
    }
    perClient.set(address, open + 1);
    socket.once('close', () => {
      const left = (perClient.get(address) ?? 1) - 1;
      if (left > 0) perClient.set(address, left);
      else perClient.delete(address);
    });
    serveConnection(socket, handler, limits);
  });
  server.maxConnections = limits.maxConnections;
  server.on('error', onError);
  return server;
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

function serveConnection(socket: Socket, handler: Handler, limits: TcpLimits): void {
  const framer = new TcpFramer();
  const client = { transport: 'tcp' as const, address: socket.remoteAddress ?? '' };
  let inFlight = 0;
  let ended = false;

  socket.setTimeout(limits.idleTimeoutMs);
  socket.on('timeout', () => {
    // idle means: nothing asked and nothing owed; a half-sent message does not count
    if (inFlight === 0) socket.destroy();
  });
  socket.on('error', () => socket.destroy());
  socket.on('end', () => {
    ended = true;
    if (inFlight === 0) socket.end();
  });

  const reply = (result: Result) => {
    inFlight--;
    if (socket.destroyed) return;
    if (result.reply) {
      socket.cork();
      socket.write(lengthPrefix(result.reply));
      socket.write(result.reply);
      socket.uncork();
      if (socket.writableLength > limits.maxPendingWriteBytes) {
        socket.destroy();
        return;
      }
    }
    if (ended && inFlight === 0) socket.end();
    else if (socket.isPaused() && inFlight < limits.maxInFlight) socket.resume();
  };

  // A message must arrive whole within the idle timeout of its first byte: a client that
  // trickles a byte now and then (slowloris) keeps the socket active but is cut off.
  let partialSince = 0;
  socket.on('data', (chunk) => {
    const now = Date.now();
    if (partialSince !== 0 && now - partialSince > limits.idleTimeoutMs) {
      socket.destroy();
      return;
    }
    const messages = framer.push(chunk);
    partialSince = framer.pendingBytes === 0 ? 0 : messages.length > 0 || partialSince === 0 ? now : partialSince;
    for (const msg of messages) {
      inFlight++;
      const result = handler(msg, client);
      if (result instanceof Promise) void result.then(reply);
      else reply(result);
    }
    if (inFlight >= limits.maxInFlight) socket.pause();
  });
}
