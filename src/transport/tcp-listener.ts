// DNS over TCP as RFC 7766 wants it: many queries per connection, answered as each
// completes (out of order), an idle timeout, and caps on connections (in all and per
// client network), on the time a message may take to arrive, on queries in flight per
// connection and on unsent replies, so a client that stops or crawls cannot hold memory.
//
// Admission happens at accept, before a byte is read: a client the owner does not admit
// is reset at once, and so is one whose network already holds its share of connections.
// When every slot is taken, the least recently active idle connection is closed to make
// room (RFC 7766 6.2.3), so idle or abandoned connections cannot lock clients out; only
// when every connection has a query in flight is the newcomer refused.

import { createServer, type Server, type Socket } from 'node:net';
import { lengthPrefix, TcpFramer } from './tcp-framer.js';
import type { Handler, Reply } from './handler.js';
import type { ListenerReport } from './listener-events.js';

export interface TcpLimits {
  idleTimeoutMs: number;
  maxConnections: number;
  /** Queries in flight on one connection before reading from it pauses. */
  maxInFlight: number;
  /** Unsent reply bytes after which a connection is closed. */
  maxPendingWriteBytes: number;
  /** Connections open at once from one client network (see TcpAdmission.networkOf). */
  maxPerClient: number;
}

export const DEFAULT_TCP_LIMITS: TcpLimits = {
  idleTimeoutMs: 10_000,
  maxConnections: 1_000,
  maxInFlight: 100,
  maxPendingWriteBytes: 1024 * 1024,
  maxPerClient: 64,
};

/** Who may connect, and which connections count together against maxPerClient. */
export interface TcpAdmission {
  /** Read at every accept, so a reload's new list applies to the next connection. */
  admits(address: string): boolean;
  /** The client's network as the rate limiter counts it (a /24, a /56): one IPv6 client
   * has whole networks of addresses, so counting single addresses would cap nothing. */
  networkOf(address: string): string;
}

export const ADMIT_ALL: TcpAdmission = { admits: () => true, networkOf: (address) => address };

/** One open connection, as the slot keeper sees it. */
interface Connection {
  socket: Socket;
  network: string;
  inFlight: number;
}

/**
 * The open connections in order of last activity (a Map keeps insertion order; touching
 * a connection moves it to the end), so the least recently active comes first.
 */
class Slots {
  private readonly byActivity = new Map<Socket, Connection>();
  private readonly perNetwork = new Map<string, number>();

  constructor(
    private readonly limits: TcpLimits,
    private readonly report: ListenerReport,
  ) {}

  /** The new connection's slot, or null when it was refused (and reset). */
  take(socket: Socket, admission: TcpAdmission): Connection | null {
    const address = socket.remoteAddress;
    if (address === undefined || !admission.admits(address)) return this.refuse(socket, 'tcp_not_allowed');
    const network = admission.networkOf(address);
    const open = this.perNetwork.get(network) ?? 0;
    if (open >= this.limits.maxPerClient) return this.refuse(socket, 'tcp_client_limit');
    if (this.byActivity.size >= this.limits.maxConnections && !this.evictIdle()) return this.refuse(socket, 'tcp_full');
    const connection: Connection = { socket, network, inFlight: 0 };
    this.byActivity.set(socket, connection);
    this.perNetwork.set(network, open + 1);
    socket.once('close', () => this.release(connection));
    return connection;
  }

  touch(connection: Connection): void {
    if (this.byActivity.delete(connection.socket)) this.byActivity.set(connection.socket, connection);
  }

  private release(connection: Connection): void {
    if (!this.byActivity.delete(connection.socket)) return;
    const left = (this.perNetwork.get(connection.network) ?? 1) - 1;
    if (left > 0) this.perNetwork.set(connection.network, left);
    else this.perNetwork.delete(connection.network);
  }

  /** Closes the least recently active connection with nothing in flight; false when there is none. */
  private evictIdle(): boolean {
    for (const connection of this.byActivity.values()) {
      if (connection.inFlight > 0) continue;
      this.release(connection);
      connection.socket.destroy();
      this.report.counts.tcp_evicted_idle++;
      return true;
    }
    return false;
  }

  private refuse(socket: Socket, event: 'tcp_not_allowed' | 'tcp_client_limit' | 'tcp_full'): null {
    this.report.counts[event]++;
    // a reset, not a FIN: no TIME_WAIT left on this side for each refused client
    socket.resetAndDestroy();
    return null;
  }
}

/** What a TCP server needs besides its handler; `accepting()` false: messages are dropped unread (a drain has begun). */
export interface TcpServing {
  limits: TcpLimits;
  admission: TcpAdmission;
  report: ListenerReport;
  accepting: () => boolean;
  onError: (err: Error) => void;
  /** Told of every connection admitted, for the drain. */
  onConnection: (socket: Socket) => void;
}

export function createTcpServer(handler: Handler, serving: TcpServing): Server {
  const { limits, admission, report } = serving;
  const slots = new Slots(limits, report);
  const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    socket.on('error', () => socket.destroy());
    const connection = slots.take(socket, admission);
    if (!connection) return;
    serving.onConnection(socket);
    serveConnection(connection, handler, serving, slots);
  });
  server.on('error', serving.onError);
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

function serveConnection(connection: Connection, handler: Handler, { limits, report, accepting }: TcpServing, slots: Slots): void {
  const { socket } = connection;
  const framer = new TcpFramer();
  const client = { transport: 'tcp' as const, address: socket.remoteAddress ?? '' };
  let ended = false;

  socket.setTimeout(limits.idleTimeoutMs);
  socket.on('timeout', () => {
    // idle means: nothing asked and nothing owed; a half-sent message does not count
    if (connection.inFlight === 0) socket.destroy();
  });
  socket.on('end', () => {
    ended = true;
    if (connection.inFlight === 0) socket.end();
  });

  const settle = () => {
    connection.inFlight--;
    if (socket.destroyed) return;
    if (ended && connection.inFlight === 0) socket.end();
    else if (socket.isPaused() && connection.inFlight < limits.maxInFlight) socket.resume();
  };
  const reply = (bytes: Reply) => {
    if (bytes && !socket.destroyed) {
      slots.touch(connection);
      socket.cork();
      socket.write(lengthPrefix(bytes));
      socket.write(bytes);
      socket.uncork();
      if (socket.writableLength > limits.maxPendingWriteBytes) socket.destroy();
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
  socket.on('data', (chunk) => {
    const now = Date.now();
    if (partialSince !== 0 && now - partialSince > limits.idleTimeoutMs) {
      socket.destroy();
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
    if (connection.inFlight >= limits.maxInFlight) socket.pause();
  });
}
